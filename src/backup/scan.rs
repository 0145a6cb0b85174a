//! The scan: walk the sources depth-first, compare each file with the
//! parent snapshot, hand the files to read to the pipeline, and write each
//! directory's tree as soon as it is complete ([`super::dirs`]).
//!
//! A file whose size, mtime, ctime and inode match its node in the parent
//! snapshot (and whose chunks are all still indexed) reuses the parent's
//! chunk list and is never opened; a directory whose entries all come out
//! as its tree in the parent snapshot holds takes that tree as it is
//! ([`OpenDirs::close_unless_same`]). Every other regular file becomes a
//! [`FileJob`] for the content pipeline. The parent snapshot is walked in
//! step with the scan: a directory's tree in the parent is loaded when the
//! scan enters the directory and dropped when it leaves it. Memory thus
//! holds the current path (each directory's entry names and its parent
//! tree) and the directories with files in flight, whatever the number of
//! files. On remote storage the trees the scan enters next are fetched
//! ahead, several at once, within a fixed bound ([`super::prefetch`]).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use nix::sys::stat::FileStat;

use super::dirfd;
use super::dirs::{OpenDirs, Place};
use super::excludes::Excludes;
use super::held_dirs::{self, HeldDirs};
use super::pipeline::{Done, FileJob, FileOutcome, FilePipeline, ReadFile, MAX_IN_FLIGHT};
use super::prefetch::{ParentTree, TreesAhead};
use super::Progress;
use crate::error::{Error, Result};
use crate::fsmeta::{self, NameCache};
use crate::id::Id;
use crate::repo::snapshot::SkippedFile;
use crate::repo::{Index, Node, NodeKind, Summary, Tree};

/// How a file compares with the parent snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    New,
    Changed,
    Unchanged,
}

/// What a file job carries back: where its node is, and how it compared.
#[derive(Debug, Clone, Copy)]
pub struct Token {
    place: Place,
    status: FileStatus,
    /// The directory handle its job holds ([`HeldDirs`]).
    dir: usize,
    /// One of several links to an inode: other entries may wait for it.
    linked: bool,
}

type ReadResult = std::result::Result<ReadFile, String>;

/// A multiply-linked file (by device and inode) is read once for all its
/// entries in the backup.
enum Link {
    /// Being read; these entries wait for the result.
    Reading { waiters: Vec<(Token, PathBuf)>, seen: u64, links: u64 },
    /// Read; kept until its last link is seen.
    Read { result: ReadResult, seen: u64, links: u64 },
}

/// A directory of the current path, being scanned.
struct Frame {
    dir: u32,
    path: PathBuf,
    /// The directory's open handle, which its entries are looked up from
    /// (none when it could not be entered: it then lists no names).
    fd: Option<Arc<OwnedFd>>,
    names: std::vec::IntoIter<OsString>,
    /// The directory's tree in the parent snapshot.
    parent: Option<ParentTree>,
    dev: u64,
}

/// A directory above a backup path: it holds only what is backed up below it.
struct Above {
    name: Vec<u8>,
    dir: u32,
    parent: Option<ParentTree>,
}

/// The scan's result besides the root tree.
pub struct Scanned {
    pub root: Id,
    /// Counts, skipped files and files changed while read.
    pub summary: Summary,
    pub warnings: Vec<String>,
}

pub struct Walker<'a> {
    index: &'a Index,
    excludes: &'a Excludes,
    one_file_system: bool,
    names: NameCache,
    dirs: OpenDirs<'a>,
    pipe: FilePipeline<'a, Token>,
    linked: HashMap<(u64, u64), Link>,
    held: HeldDirs,
    /// Whether `/proc/self/fd` is there to read xattrs through a handle.
    proc_fd: bool,
    summary: Summary,
    warnings: Vec<String>,
    progress: &'a dyn Progress,
    /// Regular files found so far, and their bytes.
    found: (u64, u64),
    /// The virtual root and the directories above the current backup path.
    above: Vec<Above>,
    /// The last backup path that is a directory (paths come sorted, so
    /// those inside it follow it).
    last_dir: Option<PathBuf>,
    /// The parent snapshot's trees, fetched ahead of the scan.
    ahead: TreesAhead<'a>,
}

impl<'a> Walker<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: &'a Index,
        dirs: OpenDirs<'a>,
        excludes: &'a Excludes,
        one_file_system: bool,
        pipe: FilePipeline<'a, Token>,
        progress: &'a dyn Progress,
        parent: Option<Tree>,
        ahead: TreesAhead<'a>,
    ) -> Walker<'a> {
        let mut w = Walker {
            index,
            excludes,
            one_file_system,
            names: NameCache::default(),
            dirs,
            pipe,
            linked: HashMap::new(),
            held: HeldDirs::new(),
            proc_fd: Path::new("/proc/self/fd").is_dir(),
            summary: Summary::default(),
            warnings: Vec::new(),
            progress,
            found: (0, 0),
            above: Vec::new(),
            last_dir: None,
            ahead,
        };
        if !w.proc_fd {
            w.warnings.push(
                "/proc is not mounted: extended attributes are read by their paths, which a local user could swap \
                 during the backup"
                    .into(),
            );
        }
        if let Some(t) = &parent {
            w.ahead.root(t);
        }
        let parent = parent.map(|tree| ParentTree { tree, pos: Vec::new(), id: None });
        let mut node = Node::new(Vec::new(), NodeKind::Dir);
        node.mode = 0o755;
        let root = w.dirs.open(node, None);
        w.above.push(Above { name: Vec::new(), dir: root, parent });
        w
    }

    fn load_parent_subtree(&mut self, parent: Option<&ParentTree>, name: &[u8]) -> Option<ParentTree> {
        let parent = parent?;
        let at = parent.tree.position(name)?;
        let node = &parent.tree.nodes[at];
        if node.kind != NodeKind::Dir {
            return None;
        }
        let id = node.subtree?;
        let mut pos = parent.pos.clone();
        pos.push(at as u32);
        match self.ahead.take(&pos, &id) {
            Ok(tree) => Some(ParentTree { tree, pos, id: Some(id) }),
            Err(e) => {
                self.warnings.push(format!("parent tree {} unreadable, reading files again: {e}", id.short()));
                None
            }
        }
    }

    /// Backs up the absolute path `path` (and the directories above it).
    /// Paths must come sorted, parents before children.
    pub fn add_path(&mut self, path: &Path) -> Result<()> {
        if self.last_dir.as_ref().is_some_and(|d| path.starts_with(d)) {
            return Ok(()); // inside a directory backed up in full
        }
        // The backup path itself is looked up from its directory's handle,
        // like every entry below it.
        let up_fd = dirfd::open_dir(path.parent().unwrap_or(Path::new("/"))).map_err(|e| Error::io(path, e))?;
        let up_fd = Arc::new(up_fd);
        let comps: Vec<&OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let Some((last, above)) = comps.split_last() else {
            return Err(Error::BackupOfRoot);
        };
        let st = dirfd::lstat_at(up_fd.as_fd(), last).map_err(|e| Error::io(path, e))?;
        // Keep the directories above that this path shares with the last.
        let shared = above.iter().zip(&self.above[1..]).take_while(|(c, a)| c.as_bytes() == a.name).count();
        while self.above.len() > shared + 1 {
            let a = self.above.pop().expect("not the root");
            drop(a.parent);
            self.dirs.close(a.dir)?;
        }
        let mut prefix: PathBuf = std::iter::once(OsStr::new("/")).chain(above[..shared].iter().copied()).collect();
        for c in &above[shared..] {
            prefix.push(c);
            let name = c.as_bytes();
            // Directories above a backup path are followed if they are
            // symlinks: the snapshot shows the path as given.
            let dmd = std::fs::metadata(&prefix).map_err(|e| Error::io(&prefix, e))?;
            if !dmd.is_dir() {
                return Err(Error::NotADirectory { path: prefix });
            }
            let mut node = fsmeta::node_from_metadata(name, &dmd, &self.names);
            node.xattrs = fsmeta::read_xattrs(&prefix);
            self.summary.xattrs_read += 1;
            let top = self.above.last_mut().expect("the root");
            let (up_dir, up_tree) = (top.dir, top.parent.take());
            let parent = self.load_parent_subtree(up_tree.as_ref(), name);
            self.above.last_mut().expect("the root").parent = up_tree;
            let up = self.dirs.add_subdir(up_dir);
            let dir = self.dirs.open(node, Some(up));
            self.above.push(Above { name: name.to_vec(), dir, parent });
        }
        let top = self.above.last_mut().expect("the root");
        let (dir, up_tree) = (top.dir, top.parent.take());
        let is_dir = fsmeta::kind_of_mode(st.st_mode) == NodeKind::Dir;
        let frame = self.entry(&up_fd, path.to_path_buf(), last.as_bytes(), &st, dir, up_tree.as_ref(), None);
        self.above.last_mut().expect("the root").parent = up_tree;
        if let Some(f) = frame? {
            self.walk(f)?;
        }
        if is_dir {
            self.last_dir = Some(path.to_path_buf());
        }
        Ok(())
    }

    /// Scans a directory and everything below it, depth first.
    fn walk(&mut self, top: Frame) -> Result<()> {
        let mut stack = vec![top];
        while let Some(top) = stack.last_mut() {
            match top.names.next() {
                Some(name) => {
                    let child = top.path.join(&name);
                    // A frame without a handle lists no names.
                    let at = top.fd.clone().expect("a directory with names is open");
                    if !self.excludes.excluded(&child, name.as_bytes()) {
                        match dirfd::lstat_at(at.as_fd(), &name) {
                            Ok(st) => {
                                let (dir, dev) = (top.dir, top.dev);
                                let frame =
                                    self.entry(&at, child, name.as_bytes(), &st, dir, top.parent.as_ref(), Some(dev))?;
                                stack.extend(frame);
                            }
                            Err(e) => self.skip(&child, &e),
                        }
                    }
                }
                None => {
                    let done = stack.pop().expect("the top frame");
                    // The parent's tree served its purpose, but for one: a
                    // directory that comes out the same keeps its tree.
                    let same = done.parent.and_then(|p| Some((p.id?, p.tree)));
                    self.dirs.close_unless_same(done.dir, same)?;
                    self.progress.scanned(self.found.0, self.found.1);
                }
            }
            while let Some(d) = self.pipe.ready()? {
                self.done(d)?;
            }
        }
        Ok(())
    }

    /// Adds one entry, `name` in the directory whose handle is `at` and
    /// whose node is `dir`; a directory to descend into comes back as a
    /// frame.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &mut self,
        at_dir: &Arc<OwnedFd>,
        path: PathBuf,
        name: &[u8],
        st: &FileStat,
        dir: u32,
        parent: Option<&ParentTree>,
        root_dev: Option<u64>,
    ) -> Result<Option<Frame>> {
        let at = at_dir.as_fd();
        let mut node = fsmeta::node_from_stat(name, st, &self.names);
        let pnode = parent.and_then(|p| p.tree.find(name));
        // Setting or removing an xattr (an ACL too) changes the ctime.
        let reused = pnode.filter(|p| same_inode_state(p, &node)).map(|p| p.xattrs.clone());
        // A regular file either is unchanged (and so are its xattrs) or is
        // read, and its reader takes them from the descriptor it checked,
        // at the moment it takes the metadata it records.
        node.xattrs = match reused {
            Some(x) => x,
            None if node.kind == NodeKind::File => Vec::new(),
            None => self.read_xattrs(at_dir, &path, name),
        };
        match node.kind {
            NodeKind::Dir => {
                let sub_parent = self.load_parent_subtree(parent, name);
                let up = self.dirs.add_subdir(dir);
                let d = self.dirs.open(node, Some(up));
                let dev = root_dev.unwrap_or(st.st_dev);
                let fd = if !self.one_file_system || st.st_dev == dev {
                    match dirfd::open_subdir(at, OsStr::from_bytes(name), st) {
                        Ok(fd) => Some(fd),
                        Err(e) => {
                            self.skip(&path, &e);
                            None
                        }
                    }
                } else {
                    None
                };
                let names = fd.as_ref().map(|fd| self.names_in(fd, &path)).unwrap_or_default();
                Ok(Some(Frame {
                    dir: d,
                    path,
                    fd: fd.map(Arc::new),
                    names: names.into_iter(),
                    parent: sub_parent,
                    dev,
                }))
            }
            NodeKind::Symlink => {
                match dirfd::read_link_at(at, OsStr::from_bytes(name)) {
                    Ok(t) => {
                        node.target = Some(t.into_vec());
                        self.dirs.add(dir, node);
                    }
                    Err(e) => self.skip(&path, &e),
                }
                Ok(None)
            }
            NodeKind::File => {
                self.file(path, at_dir, node, dir, pnode)?;
                Ok(None)
            }
            _ => {
                self.dirs.add(dir, node);
                Ok(None)
            }
        }
    }

    /// The sorted names in a directory; none when it cannot be read or
    /// holds an exclude-if-present marker.
    fn names_in(&mut self, fd: &OwnedFd, path: &Path) -> Vec<OsString> {
        let listed = match dirfd::names(fd) {
            Ok(listed) => listed,
            Err(e) => {
                self.skip(path, &e);
                return Vec::new();
            }
        };
        let mut names: Vec<OsString> = Vec::new();
        for ent in listed {
            match ent {
                Ok(name) => names.push(name),
                Err(e) => self.skip(path, &e),
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        if self.excludes.marks_excluded(&names) {
            return Vec::new();
        }
        names
    }

    /// The extended attributes of `name` in `at`, through the handle.
    fn read_xattrs(&mut self, at: &Arc<OwnedFd>, path: &Path, name: &[u8]) -> Vec<crate::repo::tree::Xattr> {
        self.summary.xattrs_read += 1;
        if self.proc_fd {
            fsmeta::read_xattrs_at(at.as_fd(), OsStr::from_bytes(name))
        } else {
            fsmeta::read_xattrs(path)
        }
    }

    /// A regular file; `pnode` is its entry in the parent snapshot.
    fn file(&mut self, path: PathBuf, at: &Arc<OwnedFd>, mut node: Node, dir: u32, pnode: Option<&Node>) -> Result<()> {
        let status = match pnode {
            None => FileStatus::New,
            Some(p) if unchanged(p, &node, self.index) => FileStatus::Unchanged,
            Some(_) => FileStatus::Changed,
        };
        self.found.0 += 1;
        self.found.1 += node.size;
        if status == FileStatus::Unchanged {
            // `unchanged` implies the same inode state: its xattrs were reused.
            node.content = pnode.expect("parent node").content.clone();
            self.count(status, node.size);
            self.progress.file_done(&path, node.size);
            self.dirs.add(dir, node);
            return Ok(());
        }
        let (links, key, size) = (node.links, (node.device, node.inode), node.size);
        let place = self.dirs.add_pending(dir, node);
        let token = Token { place, status, dir: held_dirs::key_of(at), linked: links > 1 };
        if links > 1 {
            match self.linked.get_mut(&key) {
                Some(Link::Reading { waiters, seen, .. }) => {
                    *seen += 1;
                    waiters.push((token, path));
                    return Ok(());
                }
                Some(Link::Read { result, seen, links }) => {
                    *seen += 1;
                    let result = result.clone();
                    if *seen >= *links {
                        self.linked.remove(&key);
                    }
                    return self.apply(token, &path, result);
                }
                None => {
                    self.linked.insert(key, Link::Reading { waiters: Vec::new(), seen: 1, links });
                }
            }
        }
        while self.pipe.in_flight() >= MAX_IN_FLIGHT || !self.held.has_room(at) {
            let d = self.pipe.wait()?;
            self.done(d)?;
        }
        self.held.hold(at);
        self.progress.queued(&path);
        self.pipe.send(FileJob { path, dir: at.clone(), inode: key, size, token })
    }

    /// A file came back from the pipeline.
    fn done(&mut self, d: Done<Token>) -> Result<()> {
        self.held.release(d.token.dir);
        if matches!(d.outcome, FileOutcome::Read(_)) {
            self.summary.xattrs_read += 1; // by its reader
        }
        let result = match d.outcome {
            FileOutcome::Read(r) => Ok(r),
            FileOutcome::Failed(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err("vanished during the backup".to_string())
            }
            FileOutcome::Failed(e) => Err(e.to_string()),
        };
        if d.token.linked {
            let node = self.dirs.node_mut(d.token.place);
            let key = (node.device, node.inode);
            if let Some(Link::Reading { waiters, seen, links }) = self.linked.remove(&key) {
                for (t, p) in waiters {
                    self.apply(t, &p, result.clone())?;
                }
                if seen < links {
                    self.linked.insert(key, Link::Read { result: result.clone(), seen, links });
                }
            }
        }
        self.apply(d.token, &d.path, result)
    }

    /// Completes a file's entry with what reading it gave.
    fn apply(&mut self, t: Token, path: &Path, result: ReadResult) -> Result<()> {
        match result {
            Ok(r) => {
                // Describe the file as it was when read, not as scanned.
                let node = self.dirs.node_mut(t.place);
                node.content = r.content;
                node.size = r.size;
                node.xattrs = r.xattrs;
                node.mtime = r.opened.mtime;
                node.mtime_nsec = r.opened.mtime_nsec;
                node.ctime = r.opened.ctime;
                node.ctime_nsec = r.opened.ctime_nsec;
                node.mode = r.opened.mode;
                if r.changed {
                    let p = path.display().to_string();
                    self.warnings.push(format!("{p}: changed while it was read; stored as read"));
                    // Its ctime moved on, so the next backup reads it again.
                    self.summary.changed_during_backup.push(p);
                }
                self.count(t.status, r.size);
                self.progress.file_done(path, r.size);
                self.dirs.complete(t.place, true)
            }
            Err(reason) => {
                self.summary.skipped.push(SkippedFile { path: path.display().to_string(), reason });
                let found = self.dirs.node_mut(t.place).size;
                self.progress.skipped(path, Some(found));
                self.dirs.complete(t.place, false)
            }
        }
    }

    fn count(&mut self, status: FileStatus, size: u64) {
        match status {
            FileStatus::New => self.summary.files_new += 1,
            FileStatus::Changed => self.summary.files_changed += 1,
            FileStatus::Unchanged => self.summary.files_unchanged += 1,
        }
        self.summary.files_total += 1;
        self.summary.bytes_total += size;
    }

    fn skip(&mut self, path: &Path, e: &std::io::Error) {
        let reason = if e.kind() == std::io::ErrorKind::NotFound {
            "vanished during the backup".to_string()
        } else {
            e.to_string()
        };
        self.summary.skipped.push(SkippedFile { path: path.display().to_string(), reason });
        self.progress.skipped(path, None);
    }

    /// Waits for the last files, writes the remaining trees and returns
    /// the root's.
    pub fn finish(mut self) -> Result<Scanned> {
        while let Some(a) = self.above.pop() {
            drop(a.parent);
            self.dirs.close(a.dir)?;
        }
        self.pipe.close();
        while self.pipe.in_flight() > 0 {
            let d = self.pipe.wait()?;
            self.done(d)?;
        }
        self.progress.scanned(self.found.0, self.found.1);
        let root = self.dirs.root().expect("every directory is written once its files are");
        let mut summary = self.summary;
        summary.dirs = self.dirs.written;
        summary.dirs_unchanged = self.dirs.unchanged;
        // Files come back in the order they were read: list them by path.
        summary.skipped.sort_by(|a, b| a.path.cmp(&b.path));
        summary.changed_during_backup.sort();
        Ok(Scanned { root, summary, warnings: self.warnings })
    }
}

/// The change-detection rule: same size, mtime, ctime and inode, and every
/// chunk still in the index.
fn unchanged(old: &Node, new: &Node, index: &Index) -> bool {
    old.kind == NodeKind::File
        && same_inode_state(old, new)
        && (old.size == 0 || !old.content.is_empty())
        && old.content.iter().all(|c| index.contains(c))
}

/// The entry is the same inode, of the same kind, as in the parent
/// snapshot, and nothing about it has changed since: same size, mtime and
/// ctime. Every change to an inode's metadata, its extended attributes and
/// ACLs included, sets its ctime, so the parent's xattrs still hold and are
/// not read again (one `llistxattr` per entry saved on an unchanged tree).
fn same_inode_state(old: &Node, new: &Node) -> bool {
    old.kind == new.kind
        && old.size == new.size
        && old.mtime == new.mtime
        && old.mtime_nsec == new.mtime_nsec
        && old.ctime == new.ctime
        && old.ctime_nsec == new.ctime_nsec
        && old.inode == new.inode
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
