//! `cairn find`: which snapshots hold paths that match a pattern.
//!
//! Patterns follow restore's `--include`: a glob with `/` matches the whole
//! absolute path (`*` stops at `/`, `**` crosses it), a glob without `/`
//! matches a name at any depth; with `--regex`, a regular expression is
//! searched for in the whole path.
//!
//! The walk reads only the trees that can hold a match: a directory is
//! entered only when some pattern could match below it ([`Matcher::may_match_below`]),
//! so `/etc/nginx/**` never loads `/home`. It goes through all the chosen
//! snapshots at once, in path order, from a frontier keyed by path: every
//! tree reached at one path (by one snapshot or by several) is read once,
//! and the trees that daily snapshots share are not read again for each.
//! The frontier is an explicit map, so the walk never recurses on
//! repository data.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use globset::{GlobBuilder, GlobMatcher};

use crate::browse::Reader;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::walk::Limits;
use crate::repo::{Node, NodeKind};

/// What a pattern says about directories: which ones can hold a match.
enum Below {
    /// Anything may match below any directory.
    Anything,
    /// The pattern's path components (the first is the empty one before
    /// the leading `/`); `None` stands for `**`.
    Components(Vec<Option<Component>>),
    /// Every match starts with one of these bytes.
    Prefixes(Vec<Vec<u8>>),
}

enum Component {
    Literal(Vec<u8>),
    Glob(GlobMatcher),
}

impl Component {
    fn matches(&self, name: &[u8]) -> bool {
        match self {
            Component::Literal(l) => l == name,
            Component::Glob(g) => g.is_match(OsStr::from_bytes(name)),
        }
    }
}

enum Test {
    /// A glob matched against the name only.
    Name(GlobMatcher),
    /// A glob matched against the whole path.
    Path(GlobMatcher),
    /// A regular expression searched for in the whole path.
    Regex(Box<regex_automata::meta::Regex>),
}

struct Pattern {
    test: Test,
    below: Below,
}

/// Some patterns; a path matches when any of them does.
pub struct Matcher {
    patterns: Vec<Pattern>,
}

const GLOB_META: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

fn glob(p: &str, literal_separator: bool) -> Result<GlobMatcher> {
    GlobBuilder::new(p)
        .literal_separator(literal_separator)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| Error::BadPattern { what: "pattern", pattern: p.to_string(), detail: e.to_string() })
}

/// Whether `s` has as many openings as closings of each bracket kind, so
/// that no class or alternation spans a `/`.
fn balanced(s: &str) -> bool {
    s.matches('{').count() == s.matches('}').count() && s.matches('[').count() == s.matches(']').count()
}

/// What a path glob says about directories. Matching it component by
/// component equals matching it whole when no bracket spans a `/` and
/// nothing is escaped; otherwise only its literal start is used.
fn glob_below(p: &str) -> Result<Below> {
    let parts: Vec<&str> = p.split('/').collect();
    if !p.contains('\\') && parts.iter().all(|c| balanced(c)) {
        let mut comps = Vec::with_capacity(parts.len());
        for c in parts {
            comps.push(match c {
                "**" => None,
                c if !c.contains(GLOB_META) => Some(Component::Literal(c.as_bytes().to_vec())),
                c => Some(Component::Glob(glob(c, true)?)),
            });
        }
        return Ok(Below::Components(comps));
    }
    let literal = p.find(GLOB_META).map_or(p, |i| &p[..i]);
    Ok(Below::Prefixes(vec![literal.as_bytes().to_vec()]))
}

/// What a regular expression says about directories: the literal starts
/// of its matches, when it is anchored at the start of the path.
fn regex_below(p: &str) -> Below {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    use regex_syntax::hir::Look;
    let Ok(hir) = regex_syntax::Parser::new().parse(p) else { return Below::Anything };
    if !hir.properties().look_set_prefix().contains(Look::Start) {
        return Below::Anything;
    }
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    match seq.literals() {
        Some(lits) => Below::Prefixes(lits.iter().map(|l| l.as_bytes().to_vec()).collect()),
        None => Below::Anything,
    }
}

impl Pattern {
    fn glob(p: &str) -> Result<Pattern> {
        if p.contains('/') {
            Ok(Pattern { test: Test::Path(glob(p, true)?), below: glob_below(p)? })
        } else {
            Ok(Pattern { test: Test::Name(glob(p, false)?), below: Below::Anything })
        }
    }

    fn regex(p: &str) -> Result<Pattern> {
        let re = regex_automata::meta::Regex::new(p).map_err(|e| Error::BadPattern {
            what: "regular expression",
            pattern: p.to_string(),
            detail: e.to_string(),
        })?;
        Ok(Pattern { test: Test::Regex(Box::new(re)), below: regex_below(p) })
    }

    fn matches(&self, path: &[u8], name: &[u8]) -> bool {
        match &self.test {
            Test::Name(g) => g.is_match(OsStr::from_bytes(name)),
            Test::Path(g) => g.is_match(OsStr::from_bytes(path)),
            Test::Regex(r) => r.is_match(path),
        }
    }

    fn may_match_below(&self, dir: &[u8]) -> bool {
        match &self.below {
            Below::Anything => true,
            Below::Prefixes(ps) => {
                let mut d = dir.to_vec();
                d.push(b'/');
                ps.iter().any(|p| p.starts_with(&d) || d.starts_with(p))
            }
            Below::Components(comps) => components_continue(comps, dir),
        }
    }
}

/// Whether a path below the directory `dir` can match the components:
/// runs them as an automaton over the directory's components (a `**`
/// takes any number of them) and asks whether a component is left for
/// what lies below.
fn components_continue(comps: &[Option<Component>], dir: &[u8]) -> bool {
    let n = comps.len();
    let close = |mut states: Vec<usize>| {
        let mut i = 0;
        while i < states.len() {
            let s = states[i];
            if s < n && comps[s].is_none() && !states.contains(&(s + 1)) {
                states.push(s + 1);
            }
            i += 1;
        }
        states
    };
    let mut states = close(vec![0]);
    for name in dir.split(|b| *b == b'/') {
        let mut next = Vec::new();
        for &s in &states {
            let to = match comps.get(s) {
                Some(None) => s,
                Some(Some(c)) if c.matches(name) => s + 1,
                _ => continue,
            };
            if !next.contains(&to) {
                next.push(to);
            }
        }
        states = close(next);
        if states.is_empty() {
            return false;
        }
    }
    states.iter().any(|&s| s < n)
}

impl Matcher {
    /// Glob patterns, with restore's `--include` rules.
    pub fn globs(patterns: &[String]) -> Result<Matcher> {
        Ok(Matcher { patterns: patterns.iter().map(|p| Pattern::glob(p)).collect::<Result<_>>()? })
    }

    /// Regular expressions, searched for in the whole path.
    pub fn regexes(patterns: &[String]) -> Result<Matcher> {
        Ok(Matcher { patterns: patterns.iter().map(|p| Pattern::regex(p)).collect::<Result<_>>()? })
    }

    /// Whether the entry at `path` (named `name`) matches.
    pub fn matches(&self, path: &[u8], name: &[u8]) -> bool {
        self.patterns.iter().any(|p| p.matches(path, name))
    }

    /// Whether anything below the directory at `dir` (`""` for the root,
    /// else `/a/b`) can match: when not, its tree need not be read.
    pub fn may_match_below(&self, dir: &[u8]) -> bool {
        self.patterns.iter().any(|p| p.may_match_below(dir))
    }
}

/// A directory that could not be read, and the snapshots that hold it.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub path: Vec<u8>,
    pub tree: Id,
    pub snapshots: Vec<usize>,
    pub error: String,
}

/// What a search went through.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub matches: u64,
    /// Trees read from the repository.
    pub trees_read: u64,
    /// Directories whose tree could not be read: their contents were not searched.
    pub unreadable: Vec<Unreadable>,
    /// Entries left out as restore leaves them out (unsafe or repeated names), with the reason.
    pub refused: Vec<(Vec<u8>, &'static str)>,
}

#[derive(Default)]
struct Pending {
    /// Trees to read at this path, with the snapshots (indices) that hold each.
    dirs: BTreeMap<Id, Vec<usize>>,
    /// Matches at this path: snapshot index and node.
    hits: Vec<(usize, Arc<Node>)>,
    /// Levels of directories above this path.
    depth: usize,
}

/// Called for each match: path, snapshot number, node.
pub type OnHit<'a> = dyn FnMut(&[u8], usize, &Node) -> Result<()> + 'a;

/// Searches the trees `roots` (one per snapshot; the index of a root is
/// the snapshot's number in the calls to `hit`). `hit(path, snapshot,
/// node)` is called in path order, and for one path in snapshot order.
///
/// Within `limits`: past `max_entries` entries examined (counted once per
/// path and tree, so a subtree repeated under many names counts each time)
/// the search stops with [`Error::TooManyEntries`], and past `max_depth`
/// levels with [`Error::TreeTooDeep`]. Memory stays flat either way: the
/// frontier holds the pending paths, not the visited ones. Measuring the
/// snapshots first, as `ls` does, would read every tree, which the
/// patterns exist to avoid.
pub fn search(reader: &Reader, roots: &[Id], m: &Matcher, limits: &Limits, hit: &mut OnHit<'_>) -> Result<Outcome> {
    let loaded_before = reader.trees_loaded();
    let mut out = Outcome::default();
    let mut examined: u64 = 0;
    let mut frontier: BTreeMap<Vec<u8>, Pending> = BTreeMap::new();
    if m.may_match_below(b"") {
        let root = frontier.entry(Vec::new()).or_default();
        for (i, t) in roots.iter().enumerate() {
            root.dirs.entry(*t).or_default().push(i);
        }
    }
    // A child's path sorts after its parent's, and all of a path's trees
    // are gathered when its parent's are read: popping the smallest path
    // sees each path once, with every snapshot that reaches it.
    while let Some((path, p)) = frontier.pop_first() {
        let mut hits = p.hits;
        hits.sort_by_key(|h| h.0);
        for (s, n) in &hits {
            out.matches += 1;
            hit(&path, *s, n)?;
        }
        for (tree, snaps) in p.dirs {
            let dir = match reader.dir(&tree) {
                Ok(d) => d,
                Err(e) => {
                    out.unreadable.push(Unreadable {
                        path: path.clone(),
                        tree,
                        snapshots: snaps,
                        error: e.to_string(),
                    });
                    continue;
                }
            };
            for (name, why) in dir.refused() {
                out.refused.push((child_path(&path, name), why));
            }
            examined += dir.nodes().len() as u64;
            if examined > limits.max_entries {
                let tree = roots[snaps[0]].short();
                return Err(Error::TooManyEntries { tree, entries: examined, limit: limits.max_entries });
            }
            for n in dir.nodes() {
                let child = child_path(&path, &n.name);
                let is_match = m.matches(&child, &n.name);
                let subtree = n.subtree.filter(|_| n.kind == NodeKind::Dir && m.may_match_below(&child));
                if !is_match && subtree.is_none() {
                    continue;
                }
                if p.depth + 1 > limits.max_depth && subtree.is_some() {
                    let path = crate::repo::walk::abbreviate(&child, 120);
                    return Err(Error::TreeTooDeep { tree: roots[snaps[0]].short(), path, limit: limits.max_depth });
                }
                let e = frontier.entry(child).or_default();
                e.depth = p.depth + 1;
                if is_match {
                    let node = Arc::new(n.clone());
                    e.hits.extend(snaps.iter().map(|&s| (s, node.clone())));
                }
                if let Some(t) = subtree {
                    e.dirs.entry(t).or_default().extend(&snaps);
                }
            }
        }
    }
    out.trees_read = reader.trees_loaded() - loaded_before;
    Ok(out)
}

fn child_path(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn globs(p: &[&str]) -> Matcher {
        Matcher::globs(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn regexes(p: &[&str]) -> Matcher {
        Matcher::regexes(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn an_anchored_glob_enters_only_the_directories_on_its_way() {
        let m = globs(&["/etc/nginx/sites-*/shop"]);
        assert!(m.may_match_below(b""));
        assert!(m.may_match_below(b"/etc"));
        assert!(m.may_match_below(b"/etc/nginx"));
        assert!(m.may_match_below(b"/etc/nginx/sites-enabled"));
        assert!(!m.may_match_below(b"/etc/nginx/sites-enabled/shop"), "nothing is deeper than the pattern");
        assert!(!m.may_match_below(b"/home"));
        assert!(!m.may_match_below(b"/etc/ssh"));
        assert!(!m.may_match_below(b"/etc/nginx/conf.d"));
        assert!(m.matches(b"/etc/nginx/sites-enabled/shop", b"shop"));
        assert!(!m.matches(b"/etc/nginx/sites-enabled/x/shop", b"shop"));
    }

    #[test]
    fn double_stars_and_names_open_what_they_must() {
        let m = globs(&["/home/*/.ssh/**"]);
        assert!(m.may_match_below(b"/home/alice"));
        assert!(m.may_match_below(b"/home/alice/.ssh/keys/old"));
        assert!(!m.may_match_below(b"/home/alice/Documents"));
        assert!(!m.may_match_below(b"/var"));
        let any = globs(&["**/shop"]);
        assert!(any.may_match_below(b"/var/lib/deep"));
        let name = globs(&["*.conf"]);
        assert!(name.may_match_below(b"/anything/at/all"));
        assert!(name.matches(b"/etc/nginx/nginx.conf", b"nginx.conf"));
        let both = globs(&["/etc/**", "*.log"]);
        assert!(both.may_match_below(b"/var"), "any pattern may open a directory");
    }

    #[test]
    fn brackets_across_a_slash_fall_back_to_the_literal_start() {
        let m = globs(&["/etc/{nginx/sites,apache}*"]);
        assert!(m.may_match_below(b"/etc"));
        assert!(m.may_match_below(b"/etc/nginx"));
        assert!(!m.may_match_below(b"/home"));
        assert!(m.matches(b"/etc/nginx/sites-enabled", b"sites-enabled"));
    }

    #[test]
    fn anchored_regexes_prune_by_their_literal_start() {
        let m = regexes(&["^/etc/nginx/.*\\.conf$"]);
        assert!(m.may_match_below(b""));
        assert!(m.may_match_below(b"/etc"));
        assert!(m.may_match_below(b"/etc/nginx/conf.d"));
        assert!(!m.may_match_below(b"/home"));
        assert!(!m.may_match_below(b"/etcetera"));
        assert!(m.matches(b"/etc/nginx/conf.d/a.conf", b"a.conf"));
        let alt = regexes(&["^/(etc|srv)/www"]);
        assert!(alt.may_match_below(b"/srv") && alt.may_match_below(b"/etc") && !alt.may_match_below(b"/home"));
        let loose = regexes(&["nginx"]);
        assert!(loose.may_match_below(b"/home"), "an unanchored expression can match anywhere");
        assert!(loose.matches(b"/etc/nginx", b"nginx"));
        let either = regexes(&["^/etc|shop"]);
        assert!(either.may_match_below(b"/home"), "an alternative without the anchor can match anywhere");
        assert!(Matcher::regexes(&["(".into()]).is_err());
    }

    fn component() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["", "a", "b", "ab", "*", "**", "a*", "?", "{a,b}", "[ab]", "*b"])
            .prop_map(String::from)
    }

    proptest! {
        /// Pruning never hides a match: every directory above a matching
        /// path may hold matches.
        #[test]
        fn pruning_never_hides_a_match(
            pat in prop::collection::vec(component(), 1..6),
            names in prop::collection::vec(prop::sample::select(vec!["a", "b", "ab", "ba", "c"]), 1..6),
        ) {
            let pattern = pat.join("/");
            let Ok(m) = Matcher::globs(std::slice::from_ref(&pattern)) else { return Ok(()) };
            let path = format!("/{}", names.join("/"));
            if m.matches(path.as_bytes(), names.last().unwrap().as_bytes()) {
                let mut dir = String::new();
                prop_assert!(m.may_match_below(b""), "root closed for {pattern} matching {path}");
                for n in &names[..names.len() - 1] {
                    dir.push('/');
                    dir.push_str(n);
                    prop_assert!(m.may_match_below(dir.as_bytes()), "{dir} closed for {pattern} matching {path}");
                }
            }
        }

        #[test]
        fn regex_pruning_never_hides_a_match(
            names in prop::collection::vec(prop::sample::select(vec!["a", "b", "ab", "etc"]), 1..5),
            re in prop::sample::select(vec!["^/a", "^/a/b", "^/(a|b)/", "^/etc/.*b$", "^/a?b", "^/[ab]+/a", "(?i)^/A"]),
        ) {
            let m = regexes(&[re]);
            let path = format!("/{}", names.join("/"));
            if m.matches(path.as_bytes(), names.last().unwrap().as_bytes()) {
                let mut dir = String::new();
                prop_assert!(m.may_match_below(b""));
                for n in &names[..names.len() - 1] {
                    dir.push('/');
                    dir.push_str(n);
                    prop_assert!(m.may_match_below(dir.as_bytes()), "{dir} closed for {re} matching {path}");
                }
            }
        }
    }
}
