//! The planner: walks a snapshot's trees with an explicit stack and hands
//! out the plan batch by batch ([`Batches`]), keeping between batches only
//! the current path and the hard-link groups with members not seen yet.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{safe_name, ChunkRef, Filter, Ident, LinkTo, Made, Plan, PlannedDir, PlannedFile, PlannedLink, Written};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::{walk, Index, Node, NodeKind, Repository, Tree};
use crate::restore::spans::PackSpans;

/// A directory being planned: the entries of its tree not planned yet.
struct DirFrame {
    /// Its tree's nodes, last first (the next entry is popped).
    nodes: Vec<Node>,
    /// Length of the snapshot path (in the planner's buffer) of this directory.
    path_len: usize,
    rel: PathBuf,
    /// Whether an include pattern matched this directory or one above it.
    included: bool,
    /// Its own node (none for the target itself).
    node: Option<Node>,
    /// Whether it is to be made: something below it was planned, or an
    /// include pattern named it. Until then no batch holds it.
    made: bool,
    /// An earlier batch could not make it.
    failed: bool,
    /// The last batch that lists it, and its place in that batch's `dirs`.
    listed: Option<(u64, usize)>,
    /// A directory below it is finished only at the end ([`Batches::pop`]).
    holds_deferred: bool,
    seen: HashSet<Vec<u8>>,
}

impl DirFrame {
    fn new(tree: Tree, path_len: usize, rel: PathBuf, included: bool, node: Option<Node>) -> DirFrame {
        let mut nodes = tree.nodes;
        nodes.reverse();
        DirFrame {
            nodes,
            path_len,
            rel,
            included,
            node,
            made: false,
            failed: false,
            listed: None,
            holds_deferred: false,
            seen: HashSet::new(),
        }
    }
}

/// A file planned as a member of a hard-link group.
enum Member {
    /// A file of the batch being planned.
    InBatch(usize),
    /// A file of an earlier batch: only what later members need of it, so
    /// that a group that never completes (its other names lie outside the
    /// snapshot) costs a path and a few words, not a planned file.
    Done {
        rel: PathBuf,
        /// Its identity in the target; `None` when it was not restored.
        ident: Option<Ident>,
        /// [`content_hash`] of its content list.
        content: [u8; 32],
    },
}

/// A hash of a file's content list: members of a group are linked only
/// when theirs agree.
fn content_hash(content: &[Id]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&(content.len() as u64).to_le_bytes());
    for id in content {
        h.update(id.as_bytes());
    }
    *h.finalize().as_bytes()
}

/// The members of one hard-link group `(device, inode)` seen so far: more
/// than one when members disagree about their content.
struct LinkGroup {
    /// Names seen, and the most links a member claimed: once as many
    /// names are seen, the group is complete and forgotten.
    seen: u64,
    links: u64,
    members: Vec<Member>,
}

/// The plan of a snapshot, batch by batch: [`Batches::next_batch`] plans
/// the next batch, the caller executes it and tells what it did with
/// [`Batches::written`] before asking for the next.
pub struct Batches<'a> {
    repo: &'a Repository,
    index: &'a Index,
    filter: &'a Filter,
    root: Id,
    max_depth: usize,
    max_items: usize,
    stack: Vec<DirFrame>,
    /// The snapshot path of the entry being planned.
    path: Vec<u8>,
    /// Whether every directory on the stack is listed in the current batch.
    path_listed: bool,
    linked: HashMap<(u64, u64), LinkGroup>,
    /// Hard-link groups with a member in the current batch.
    touched: Vec<(u64, u64)>,
    batch: Plan,
    /// Items in `batch`.
    items: usize,
    /// The current batch's number, from 1.
    number: u64,
    /// Whether the current batch was handed out.
    handed_out: bool,
    written: Option<Written>,
    /// Directories finished only once the walk is over, children first:
    /// their owner may not search them (no `x` for the owner), and they
    /// held files that later hard links link to ([`Batches::pop`]).
    deferred: VecDeque<(PathBuf, Node)>,
    /// The trees the measure before the plan loaded, taken as planned.
    trees: walk::TreeCache,
    /// What the snapshot needs of each pack, noted by the measure.
    spans: Option<PackSpans>,
}

/// How many nodes of the trees measured before planning are kept for the
/// plan (about 8 MB, within the restore's fixed memory bound, see
/// `tests/scale.rs`): the first trees, up to this many nodes, are read,
/// decrypted and decoded once, not twice; the rest load again.
const PLAN_TREE_CACHE_NODES: usize = 1 << 15;

/// Plans the restore of the tree `root` within the default limits
/// ([`walk::Limits::default`]), as one batch.
pub fn plan(repo: &Repository, index: &Index, root: &Id, filter: &Filter) -> Result<Plan> {
    plan_within(repo, index, root, filter, &walk::Limits::default())
}

/// Plans the restore of the whole tree `root` as one batch, which holds
/// every path (see [`Batches::new`] for the limits).
pub fn plan_within(
    repo: &Repository,
    index: &Index,
    root: &Id,
    filter: &Filter,
    limits: &walk::Limits,
) -> Result<Plan> {
    let mut b = Batches::new(repo, index, root, filter, limits, usize::MAX)?;
    b.fill()?;
    Ok(std::mem::take(&mut b.batch))
}

fn shown(path: &[u8]) -> String {
    if path.is_empty() {
        "/".to_string()
    } else {
        String::from_utf8_lossy(path).into_owned()
    }
}

impl<'a> Batches<'a> {
    /// Plans the restore of the tree `root` in batches of at most
    /// `max_items` items. The tree is measured first ([`walk::measure`]):
    /// one that nests deeper than `limits.max_depth` or expands to more
    /// than `limits.max_entries` entries is refused before anything is
    /// planned.
    pub fn new(
        repo: &'a Repository,
        index: &'a Index,
        root: &Id,
        filter: &'a Filter,
        limits: &walk::Limits,
        max_items: usize,
    ) -> Result<Batches<'a>> {
        // One batch of everything (a drill's plan) holds every path anyway,
        // so it may as well keep every tree it measured.
        let budget = if max_items == usize::MAX { usize::MAX } else { PLAN_TREE_CACHE_NODES };
        let mut trees = walk::TreeCache::with_budget(budget);
        // The packs' spans are the snapshot's, so only worth noting when
        // the whole snapshot is restored, in several batches.
        let mut spans = (filter.is_empty() && max_items != usize::MAX).then(PackSpans::default);
        walk::measure_keeping(repo, index, root, limits, &mut trees, &mut |t| {
            if let Some(s) = spans.as_mut() {
                s.add_tree(index, t);
            }
        })?;
        let mut b = Batches {
            repo,
            index,
            filter,
            root: *root,
            max_depth: limits.max_depth,
            max_items: max_items.max(1),
            stack: Vec::new(),
            path: Vec::new(),
            path_listed: false,
            linked: HashMap::new(),
            touched: Vec::new(),
            batch: Plan::default(),
            items: 0,
            number: 1,
            handed_out: false,
            written: None,
            deferred: VecDeque::new(),
            trees,
            spans,
        };
        if let Some(tree) = b.load(root) {
            b.stack.push(DirFrame::new(tree, 0, PathBuf::new(), false, None));
            b.stack[0].made = true;
        }
        Ok(b)
    }

    /// What the snapshot needs of each pack, for reading each about once
    /// ([`crate::restore`]'s carry); `None` for a filtered restore.
    pub(crate) fn take_pack_spans(&mut self) -> Option<PackSpans> {
        self.spans.take()
    }

    /// Drops the batch handed out last and plans the next one; `None` once
    /// the whole tree is planned.
    pub fn next_batch(&mut self) -> Result<Option<&Plan>> {
        if self.handed_out {
            self.close_batch();
        }
        self.fill()?;
        if self.items == 0 {
            return Ok(None);
        }
        self.handed_out = true;
        Ok(Some(&self.batch))
    }

    /// Records what executing the batch handed out last did: later hard
    /// links to its files, and entries below its directories, depend on it.
    /// A batch not recorded counts as failed entirely.
    pub fn written(&mut self, written: Written) {
        self.written = Some(written);
    }

    /// Remembers what the batches after the current one need of it, and
    /// starts the next.
    fn close_batch(&mut self) {
        let written = self.written.take().unwrap_or_default();
        let mut batch = std::mem::take(&mut self.batch);
        for f in &mut self.stack {
            if let Some((n, at)) = f.listed {
                if n == self.number && !written.dirs_ok.get(at).copied().unwrap_or(false) {
                    f.failed = true;
                }
            }
        }
        for identity in self.touched.drain(..) {
            let Some(group) = self.linked.get_mut(&identity) else { continue };
            for m in &mut group.members {
                if let Member::InBatch(i) = *m {
                    let file = &mut batch.files[i];
                    let ident = written.files.get(i).copied().flatten();
                    *m = Member::Done {
                        rel: std::mem::take(&mut file.rel),
                        ident,
                        content: content_hash(&file.node.content),
                    };
                }
            }
        }
        self.items = 0;
        self.number += 1;
        self.path_listed = false;
        self.handed_out = false;
    }

    /// Plans until the walk ends or the next step would not fit the batch.
    fn fill(&mut self) -> Result<()> {
        loop {
            let depth = self.stack.len();
            let Some(top) = self.stack.last() else { return Ok(()) };
            // An upper bound of what the next step adds: the entry, its
            // chunks, and the directories on its path listed again.
            let cost = 1 + depth + top.nodes.last().map_or(0, |n| n.content.len());
            if self.items > 0 && self.items.saturating_add(cost) > self.max_items {
                return Ok(());
            }
            self.step()?;
        }
    }

    /// The tree at the current path, or `None` when it cannot be read
    /// (then it is refused, and the rest goes on).
    fn load(&mut self, tree: &Id) -> Option<Tree> {
        if let Some(t) = self.trees.take(tree) {
            return Some(t);
        }
        match self.repo.load_tree(self.index, tree) {
            Ok(t) => Some(t),
            Err(e) => {
                self.refuse(shown(&self.path), e.to_string());
                None
            }
        }
    }

    fn refuse(&mut self, path: String, why: String) {
        self.batch.refused.push((path, why));
        self.items += 1;
    }

    /// Lists every directory on the current path in the current batch,
    /// making those not made yet: an entry below them is being planned.
    fn list_path(&mut self) {
        if self.path_listed {
            return;
        }
        // The first frame is the target itself.
        for f in self.stack.iter_mut().skip(1) {
            if matches!(f.listed, Some((n, _)) if n == self.number) {
                continue;
            }
            let made = match (f.made, f.failed) {
                (false, _) => Made::Here,
                (true, false) => Made::Earlier,
                (true, true) => Made::Failed,
            };
            f.made = true;
            f.listed = Some((self.number, self.batch.dirs.len()));
            let node = f.node.clone().expect("only the target has no node");
            self.batch.dirs.push(PlannedDir { rel: f.rel.clone(), node, made });
            self.items += 1;
        }
        self.path_listed = true;
    }

    /// Plans the next entry of the directory on top of the stack, or
    /// finishes that directory when it has none left.
    fn step(&mut self) -> Result<()> {
        let top = self.stack.last_mut().expect("not empty");
        let Some(n) = top.nodes.pop() else {
            self.pop();
            return Ok(());
        };
        self.path.truncate(top.path_len);
        self.path.push(b'/');
        self.path.extend_from_slice(&n.name);
        let shown = String::from_utf8_lossy(&self.path).into_owned();
        if let Err(why) = safe_name(&n.name) {
            self.refuse(shown, format!("refused: {why}"));
            return Ok(());
        }
        if !top.seen.insert(n.name.clone()) {
            self.refuse(shown, "refused: duplicate name in its directory".into());
            return Ok(());
        }
        if self.filter.excluded(&self.path, &n.name) {
            return Ok(());
        }
        let included = top.included || self.filter.included(&self.path, &n.name);
        let rel = top.rel.join(OsStr::from_bytes(&n.name));
        match n.kind {
            NodeKind::Dir => {
                if self.stack.len() >= self.max_depth {
                    return Err(Error::TreeTooDeep {
                        tree: self.root.short(),
                        path: walk::abbreviate(&self.path, 120),
                        limit: self.max_depth,
                    });
                }
                let path_len = self.path.len();
                match n.subtree.and_then(|s| self.load(&s)) {
                    Some(tree) => {
                        self.stack.push(DirFrame::new(tree, path_len, rel, included, Some(n)));
                        self.path_listed = false;
                    }
                    // An included directory whose tree cannot be read is
                    // made, empty.
                    None if included => {
                        self.list_path();
                        let at = self.batch.dirs.len();
                        self.batch.dirs.push(PlannedDir { rel, node: n, made: Made::Here });
                        self.batch.finished.push(at);
                        self.items += 2;
                    }
                    None => {}
                }
            }
            _ if !included => {}
            NodeKind::File => {
                self.list_path();
                self.file(n, rel, shown);
            }
            _ => {
                self.list_path();
                self.batch.others.push((rel, n));
                self.items += 1;
            }
        }
        Ok(())
    }

    /// Leaves the directory on top of the stack, all its entries planned:
    /// one that is made is finished in this batch.
    fn pop(&mut self) {
        if self.stack.len() == 1 {
            // The target itself: the directories left for the end are
            // finished, one a step, and the walk is over.
            if let Some((rel, node)) = self.deferred.pop_front() {
                let at = self.batch.dirs.len();
                self.batch.dirs.push(PlannedDir { rel, node, made: Made::Earlier });
                self.batch.finished.push(at);
                self.items += 2;
                return;
            }
            self.stack.pop();
            return;
        }
        let top = self.stack.last().expect("not empty");
        if top.included && !top.made {
            // Named by an include pattern, with nothing planned below: made empty.
            self.list_path();
        }
        let done = self.stack.pop().expect("not empty");
        if !done.made || done.failed {
            return;
        }
        // A directory its owner may not search (mode 0600, say) is given
        // that mode only at the end while it holds a file that a later
        // hard link links to: a restore not run as root could not reach
        // that file through it any more.
        let searchable = done.node.as_ref().is_some_and(|n| n.mode & 0o100 != 0);
        if !searchable && (done.holds_deferred || self.holds_link_source(&done.rel)) {
            self.stack.last_mut().expect("the target is below").holds_deferred = true;
            self.deferred.push_back((done.rel, done.node.expect("only the target has no node")));
            return;
        }
        if done.holds_deferred {
            self.stack.last_mut().expect("the target is below").holds_deferred = true;
        }
        let at = match done.listed {
            Some((n, at)) if n == self.number => at,
            _ => {
                let at = self.batch.dirs.len();
                let node = done.node.expect("only the target has no node");
                self.batch.dirs.push(PlannedDir { rel: done.rel, node, made: Made::Earlier });
                self.items += 1;
                at
            }
        };
        self.batch.finished.push(at);
        self.items += 1;
    }

    /// Whether a member of a hard-link group with names still to come lies
    /// below `dir`. Asked only of directories their owner may not search,
    /// which are rare.
    fn holds_link_source(&self, dir: &Path) -> bool {
        self.linked.values().flat_map(|g| &g.members).any(|m| match m {
            Member::InBatch(i) => self.batch.files[*i].rel.starts_with(dir),
            Member::Done { rel, .. } => rel.starts_with(dir),
        })
    }

    /// Plans one file. Its size is what its chunks hold; a node that says
    /// otherwise is damage, and is named. A hard link whose content list
    /// differs from the other members' is damage too: it is restored from
    /// its own content, not linked, and named.
    fn file(&mut self, n: Node, rel: PathBuf, shown: String) {
        let mut chunks = Vec::with_capacity(n.content.len());
        let mut offset = 0u64;
        for id in &n.content {
            match self.index.get(id) {
                Some(l) => {
                    chunks.push(ChunkRef { id: *id, offset, length: l.raw_length });
                    offset += l.raw_length as u64;
                }
                None => {
                    self.refuse(shown, format!("chunk {} is missing from the repository", id.short()));
                    return;
                }
            }
        }
        if offset != n.size {
            self.refuse(
                shown.clone(),
                format!(
                    "its size says {} bytes, its chunks hold {offset}: restored from its chunks (the snapshot is damaged)",
                    n.size
                ),
            );
        }
        if n.links > 1 {
            let identity = (n.device, n.inode);
            let group =
                self.linked.entry(identity).or_insert_with(|| LinkGroup { seen: 0, links: 0, members: Vec::new() });
            group.seen += 1;
            group.links = group.links.max(n.links);
            let files = &self.batch.files;
            let hash = OnceCell::new();
            let same = |m: &&Member| match m {
                Member::InBatch(i) => files[*i].node.content == n.content,
                Member::Done { content, .. } => *content == *hash.get_or_init(|| content_hash(&n.content)),
            };
            let to = group.members.iter().find(same).map(|m| match m {
                Member::InBatch(i) => LinkTo::File(*i),
                Member::Done { rel: first, ident, .. } => LinkTo::Earlier {
                    first: first.clone(),
                    ident: *ident,
                    own: Box::new(PlannedFile {
                        rel: rel.clone(),
                        node: n.clone(),
                        chunks: chunks.clone(),
                        size: offset,
                    }),
                },
            });
            let mut differs = None;
            if to.is_none() {
                if let Some(first) = group.members.first() {
                    let first = match first {
                        Member::InBatch(i) => &files[*i].rel,
                        Member::Done { rel, .. } => rel,
                    };
                    differs = Some(format!(
                        "hard link to /{} not made: their contents differ (the snapshot is damaged); restored from \
                         its own content",
                        first.display()
                    ));
                }
                group.members.push(Member::InBatch(files.len()));
                self.touched.push(identity);
            }
            if group.seen >= group.links {
                self.linked.remove(&identity);
            }
            if let Some(to) = to {
                let link = PlannedLink { rel, to };
                self.items += link.items();
                self.batch.hardlinks.push(link);
                return;
            }
            if let Some(why) = differs {
                self.refuse(shown, why);
            }
        }
        self.batch.total_bytes += offset;
        self.items += 1 + chunks.len();
        self.batch.files.push(PlannedFile { rel, node: n, chunks, size: offset });
    }
}
