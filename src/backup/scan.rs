//! The scan: walk the sources into an in-memory tree of nodes, comparing
//! each file with the parent snapshot.
//!
//! A file whose size, mtime, ctime and inode match its node in the parent
//! snapshot (and whose chunks are all still indexed) reuses the parent's
//! chunk list and is never opened. Every other regular file becomes a
//! [`FileJob`] for the content pipeline. Directories of the parent are
//! loaded lazily, one tree per directory visited.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::fsmeta::{self, NameCache};
use crate::repo::snapshot::SkippedFile;
use crate::repo::{Index, Node, NodeKind, Repository, Tree};

/// How a file compares with the parent snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    New,
    Changed,
    Unchanged,
}

/// A regular file whose content must be read.
#[derive(Debug)]
pub struct FileJob {
    pub path: PathBuf,
    pub size: u64,
}

#[derive(Debug)]
pub enum Entry {
    /// Boxed: a directory is much larger than a file entry.
    Dir(Box<DirScan>),
    /// A regular file; `job` is its index into the job list when it must
    /// be read, `None` when its content came from the parent.
    File { node: Node, job: Option<usize>, status: FileStatus },
    /// Anything else: symlinks, FIFOs, devices, sockets.
    Leaf(Node),
}

#[derive(Debug)]
pub struct DirScan {
    pub node: Node,
    pub children: Vec<Entry>,
    pub parent: Option<Tree>,
    /// Whether the directory was scanned in full (false for the
    /// directories above a backup path, which hold only that path).
    pub full: bool,
}

impl DirScan {
    fn child_dir(&mut self, name: &[u8]) -> Option<&mut DirScan> {
        self.children.iter_mut().find_map(|e| match e {
            Entry::Dir(d) if d.node.name == name => Some(&mut **d),
            _ => None,
        })
    }
}

/// Which paths to leave out.
pub struct Excludes {
    by_name: GlobSet,
    by_path: GlobSet,
    if_present: Vec<String>,
}

impl Excludes {
    /// Patterns without a `/` match a name anywhere; patterns with one
    /// match the whole absolute path (`**` crosses directories).
    pub fn new(patterns: &[String], if_present: &[String]) -> Result<Excludes> {
        let mut by_name = GlobSetBuilder::new();
        let mut by_path = GlobSetBuilder::new();
        for p in patterns {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let bad = |e: globset::Error| Error::InvalidArgument(format!("exclude pattern `{p}`: {e}"));
            if p.contains('/') {
                let glob = globset::GlobBuilder::new(p).literal_separator(true).build().map_err(bad)?;
                by_path.add(glob);
                if !p.ends_with("/**") {
                    by_path.add(
                        globset::GlobBuilder::new(&format!("{p}/**")).literal_separator(true).build().map_err(bad)?,
                    );
                }
            } else {
                by_name.add(Glob::new(p).map_err(bad)?);
            }
        }
        Ok(Excludes {
            by_name: by_name.build().map_err(|e| Error::InvalidArgument(e.to_string()))?,
            by_path: by_path.build().map_err(|e| Error::InvalidArgument(e.to_string()))?,
            if_present: if_present.to_vec(),
        })
    }

    pub fn excluded(&self, path: &Path, name: &[u8]) -> bool {
        self.by_name.is_match(OsStr::from_bytes(name)) || self.by_path.is_match(path)
    }
}

/// Reads patterns from an exclude file: one per line, `#` starts a comment.
pub fn read_exclude_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
}

pub struct Scanner<'a> {
    pub repo: &'a Repository,
    pub index: &'a Index,
    pub excludes: &'a Excludes,
    pub one_file_system: bool,
    pub names: NameCache,
    pub jobs: Vec<FileJob>,
    pub skipped: Vec<SkippedFile>,
    pub warnings: Vec<String>,
    /// (device, inode) of multiply-linked files already given a job.
    linked: std::collections::HashMap<(u64, u64), usize>,
}

fn name_of(p: &Path) -> Vec<u8> {
    p.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default()
}

/// Makes a path absolute and lexically normal (no `.`/`..`), without
/// resolving symlinks.
pub fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    Ok(out)
}

impl<'a> Scanner<'a> {
    pub fn new(repo: &'a Repository, index: &'a Index, excludes: &'a Excludes, one_file_system: bool) -> Self {
        Scanner {
            repo,
            index,
            excludes,
            one_file_system,
            names: NameCache::default(),
            jobs: Vec::new(),
            skipped: Vec::new(),
            warnings: Vec::new(),
            linked: Default::default(),
        }
    }

    fn load_parent_subtree(&mut self, parent: Option<&Tree>, name: &[u8]) -> Option<Tree> {
        let node = parent?.find(name)?;
        if node.kind != NodeKind::Dir {
            return None;
        }
        let id = node.subtree?;
        match self.repo.load_tree(self.index, &id) {
            Ok(t) => Some(t),
            Err(e) => {
                self.warnings.push(format!("parent tree {} unreadable, reading files again: {e}", id.short()));
                None
            }
        }
    }

    /// Adds the absolute path `path` (and the directories above it) to
    /// `root`.
    pub fn add_path(&mut self, root: &mut DirScan, path: &Path) -> Result<()> {
        let md = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
        let comps: Vec<&OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let Some((last, above)) = comps.split_last() else {
            return Err(Error::InvalidArgument("backing up `/` itself: name the directories below it".into()));
        };
        let mut dir = root;
        let mut prefix = PathBuf::from("/");
        for c in above {
            prefix.push(c);
            let name = c.as_bytes();
            match dir.child_dir(name) {
                // Already backed up in full: this path is inside it.
                Some(d) if d.full => return Ok(()),
                Some(_) => {}
                None => {
                    // Directories above a backup path are followed if they
                    // are symlinks: the snapshot shows the path as given.
                    let dmd = std::fs::metadata(&prefix).map_err(|e| Error::io(&prefix, e))?;
                    if !dmd.is_dir() {
                        return Err(Error::InvalidArgument(format!("{} is not a directory", prefix.display())));
                    }
                    let mut node = fsmeta::node_from_metadata(name, &dmd, &self.names);
                    node.xattrs = fsmeta::read_xattrs(&prefix);
                    let parent = self.load_parent_subtree(dir.parent.as_ref(), name);
                    dir.children.push(Entry::Dir(Box::new(DirScan {
                        node,
                        children: Vec::new(),
                        parent,
                        full: false,
                    })));
                }
            }
            dir = dir.child_dir(name).expect("just inserted");
        }
        let name = last.as_bytes();
        if let Some(pos) = dir.children.iter().position(|e| entry_name(e) == name) {
            match &dir.children[pos] {
                // Only a path below it was added so far: scan it in full instead.
                Entry::Dir(d) if !d.full => {
                    dir.children.remove(pos);
                }
                _ => return Ok(()), // given twice
            }
        }
        let parent_tree = dir.parent.take();
        let entry = self.scan_entry(path, name, md, parent_tree.as_ref(), None);
        dir.parent = parent_tree;
        if let Some(e) = entry? {
            dir.children.push(e);
        }
        Ok(())
    }

    fn scan_entry(
        &mut self,
        path: &Path,
        name: &[u8],
        md: std::fs::Metadata,
        parent: Option<&Tree>,
        root_dev: Option<u64>,
    ) -> Result<Option<Entry>> {
        let mut node = fsmeta::node_from_metadata(name, &md, &self.names);
        node.xattrs = fsmeta::read_xattrs(path);
        match node.kind {
            NodeKind::Dir => {
                let sub_parent = self.load_parent_subtree(parent, name);
                let mut d = DirScan { node, children: Vec::new(), parent: sub_parent, full: true };
                let dev = root_dev.unwrap_or(md.dev());
                if !self.one_file_system || md.dev() == dev {
                    self.scan_dir(path, &mut d, dev)?;
                }
                Ok(Some(Entry::Dir(Box::new(d))))
            }
            NodeKind::Symlink => {
                match std::fs::read_link(path) {
                    Ok(t) => node.target = Some(t.as_os_str().as_bytes().to_vec()),
                    Err(e) => {
                        self.skip(path, &e);
                        return Ok(None);
                    }
                }
                Ok(Some(Entry::Leaf(node)))
            }
            NodeKind::File => {
                let pnode = parent.and_then(|t| t.find(name));
                let status = match pnode {
                    None => FileStatus::New,
                    Some(p) if unchanged(p, &node, self.index) => FileStatus::Unchanged,
                    Some(_) => FileStatus::Changed,
                };
                if status == FileStatus::Unchanged {
                    node.content = pnode.expect("parent node").content.clone();
                    return Ok(Some(Entry::File { node, job: None, status }));
                }
                let key = (node.device, node.inode);
                let job = if node.links > 1 {
                    if let Some(&j) = self.linked.get(&key) {
                        j
                    } else {
                        self.linked.insert(key, self.jobs.len());
                        self.push_job(path, node.size)
                    }
                } else {
                    self.push_job(path, node.size)
                };
                Ok(Some(Entry::File { node, job: Some(job), status }))
            }
            _ => Ok(Some(Entry::Leaf(node))),
        }
    }

    fn push_job(&mut self, path: &Path, size: u64) -> usize {
        self.jobs.push(FileJob { path: path.to_path_buf(), size });
        self.jobs.len() - 1
    }

    fn skip(&mut self, path: &Path, e: &std::io::Error) {
        let reason = if e.kind() == std::io::ErrorKind::NotFound {
            "vanished during the backup".to_string()
        } else {
            e.to_string()
        };
        self.skipped.push(SkippedFile { path: path.display().to_string(), reason });
    }

    fn scan_dir(&mut self, path: &Path, d: &mut DirScan, dev: u64) -> Result<()> {
        let rd = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) => {
                self.skip(path, &e);
                return Ok(());
            }
        };
        let mut names: Vec<std::ffi::OsString> = Vec::new();
        for ent in rd {
            match ent {
                Ok(ent) => names.push(ent.file_name()),
                Err(e) => self.skip(path, &e),
            }
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        if self.excludes.if_present.iter().any(|m| names.iter().any(|n| n.as_bytes() == m.as_bytes())) {
            return Ok(());
        }
        let parent = d.parent.take();
        for n in names {
            let child = path.join(&n);
            if self.excludes.excluded(&child, n.as_bytes()) {
                continue;
            }
            let md = match std::fs::symlink_metadata(&child) {
                Ok(md) => md,
                Err(e) => {
                    self.skip(&child, &e);
                    continue;
                }
            };
            if let Some(e) = self.scan_entry(&child, n.as_bytes(), md, parent.as_ref(), Some(dev))? {
                d.children.push(e);
            }
        }
        // The parent's tree served its purpose: free it now, not at the end.
        drop(parent);
        Ok(())
    }
}

pub fn entry_name(e: &Entry) -> &[u8] {
    match e {
        Entry::Dir(d) => &d.node.name,
        Entry::File { node, .. } | Entry::Leaf(node) => &node.name,
    }
}

/// The change-detection rule: same size, mtime, ctime and inode, and every
/// chunk still in the index.
fn unchanged(old: &Node, new: &Node, index: &Index) -> bool {
    old.kind == NodeKind::File
        && old.size == new.size
        && old.mtime == new.mtime
        && old.mtime_nsec == new.mtime_nsec
        && old.ctime == new.ctime
        && old.ctime_nsec == new.ctime_nsec
        && old.inode == new.inode
        && (old.size == 0 || !old.content.is_empty())
        && old.content.iter().all(|c| index.contains(c))
}

/// The virtual root that holds every backup path.
pub fn new_root(parent: Option<Tree>) -> DirScan {
    let mut node = Node::new(Vec::new(), NodeKind::Dir);
    node.mode = 0o755;
    DirScan { node, children: Vec::new(), parent, full: false }
}

pub fn path_name(p: &Path) -> Vec<u8> {
    name_of(p)
}
