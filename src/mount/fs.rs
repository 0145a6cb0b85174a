//! The FUSE file system: the kernel's requests answered from the catalog
//! of snapshots and the cached trees and blobs.
//!
//! Metadata requests are answered on the session's thread. Reads go to a
//! pool of workers ([`super::reads`]).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;
use fuser::{
    FileAttr, FileType, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyXattr, Request,
};
use libc::c_int;

use crate::browse::{Budgets, FileLayout, Reader};
use crate::id::Id;
use crate::repo::{Node, NodeKind, Repository};

use super::attr;
use super::catalog::{by_host, id_names, newest, Catalog};
use super::inodes::{Inodes, What, HOSTS, IDS, LATEST, ROOT};
use super::reads::{io_error, read_job, Job, OpenFile, Pool};

/// How long the kernel may keep what it learned about the top directories
/// (`/`, `/ids`, `/hosts`), which change when snapshots come and go.
const TTL_TOP: Duration = Duration::from_secs(1);
/// How long for a snapshot's root under `/ids` or `/hosts`.
const TTL_SNAPSHOT: Duration = Duration::from_secs(10);
/// How long for what is inside a snapshot, which never changes.
const TTL_CONTENT: Duration = Duration::from_secs(3600);
/// The `d_ino` of a directory entry the kernel has not looked up.
const UNKNOWN_INO: u64 = 0xffff_ffff;

/// What the workers share with the session.
pub struct Shared {
    repo: Repository,
    catalog: Catalog,
    budgets: Budgets,
    reader: OnceLock<Result<Arc<Reader>, String>>,
}

impl Shared {
    /// The reader, made with the index on first use. With locations, not
    /// compact: a file's layout places each chunk after the lengths the
    /// index gives the ones before it, so a missing chunk taken for its
    /// 6-byte prefix twin would shift every later chunk, and those read
    /// back as genuine blobs (restore fails such a file instead).
    fn reader(&self) -> Result<Arc<Reader>, c_int> {
        let r = self.reader.get_or_init(|| match self.repo.load_index() {
            Ok(index) => Ok(Arc::new(Reader::new(self.repo.clone(), Arc::new(index), self.budgets))),
            Err(e) => {
                self.repo.warn(format!("cannot load the repository index: {e}"));
                Err(e.to_string())
            }
        });
        r.clone().map_err(|_| libc::EIO)
    }
}

struct Listed {
    ino: u64,
    kind: FileType,
    name: Vec<u8>,
}

enum Handle {
    File(Arc<OpenFile>),
    Dir(Vec<Listed>),
}

/// Mount settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Bytes of decrypted blobs and decoded trees kept in memory.
    pub cache_bytes: usize,
    /// Worker threads for reads.
    pub threads: usize,
}

pub struct CairnFs {
    shared: Arc<Shared>,
    inodes: Inodes,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    pool: Pool,
    ahead: Arc<Sender<Job>>,
    owner: (u32, u32),
    started: SystemTime,
}

type Res<T> = Result<T, c_int>;

impl CairnFs {
    pub fn new(repo: Repository, opts: Options) -> CairnFs {
        let threads = opts.threads.max(repo.backend().concurrency()).clamp(2, 16);
        let budgets = Budgets { trees: opts.cache_bytes / 4, blobs: opts.cache_bytes - opts.cache_bytes / 4 };
        let catalog = Catalog::new(repo.clone(), threads);
        let shared = Arc::new(Shared { repo, catalog, budgets, reader: OnceLock::new() });
        let pool = Pool::new(threads);
        let ahead = Arc::new(pool.ahead.clone());
        CairnFs {
            shared,
            inodes: Inodes::new(),
            handles: HashMap::new(),
            next_fh: 1,
            pool,
            ahead,
            owner: (nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw()),
            started: SystemTime::now(),
        }
    }

    /// Loads the index in the background, so that the first look into a
    /// snapshot does not wait for it.
    pub fn warm_up(&self) {
        let shared = self.shared.clone();
        let _ = self.ahead.send(Box::new(move || {
            let _ = shared.reader();
        }));
    }

    fn top(&self, ino: u64) -> FileAttr {
        attr::synthetic_dir(ino, self.started, self.owner)
    }

    /// The target of `/latest` (`ids/<name>`) or `/hosts/<h>/latest` (`<time>`).
    fn link_target(&self, what: &What) -> Res<Vec<u8>> {
        // Not the newest snapshot that opens: while one is damaged, the
        // link cannot be read (EIO, logged with the snapshot's name).
        let all = self.shared.catalog.complete().map_err(|e| io_error(&self.shared.repo, "resolving latest", e))?;
        match what {
            What::Latest => {
                let (id, _) = newest(&all).ok_or(libc::ENOENT)?;
                let ids: Vec<Id> = all.iter().map(|s| s.0).collect();
                let name = id_names(&ids).into_iter().find(|n| n.1 == *id).map(|n| n.0).ok_or(libc::ENOENT)?;
                Ok(format!("ids/{name}").into_bytes())
            }
            What::HostLatest(h) => {
                let (hosts, _) = by_host(&all);
                let last = hosts.get(h).and_then(|l| l.last()).ok_or(libc::ENOENT)?;
                Ok(last.name.clone().into_bytes())
            }
            _ => Err(libc::EINVAL),
        }
    }

    fn attr_of(&self, ino: u64, what: &What) -> Res<(FileAttr, Duration)> {
        match what {
            What::Root | What::Ids | What::Hosts | What::Host(_) => Ok((self.top(ino), TTL_TOP)),
            What::Latest | What::HostLatest(_) => {
                let len = self.link_target(what)?.len();
                Ok((attr::synthetic_link(ino, len, self.started, self.owner), TTL_TOP))
            }
            What::Snapshot { time, .. } => {
                let t = attr::time(time.timestamp(), time.timestamp_subsec_nanos());
                Ok((attr::synthetic_dir(ino, t, self.owner), TTL_SNAPSHOT))
            }
            What::Node { node, .. } => {
                let reader = self.shared.reader()?;
                Ok((attr::of_node(ino, node, reader.index()), TTL_CONTENT))
            }
        }
    }

    /// The tree of a directory inode.
    fn tree_of(what: &What) -> Res<Id> {
        match what {
            What::Snapshot { tree, .. } => Ok(*tree),
            What::Node { node, .. } if node.kind == NodeKind::Dir => node.subtree.ok_or(libc::EIO),
            What::Node { .. } => Err(libc::ENOTDIR),
            _ => Err(libc::ENOTDIR),
        }
    }

    /// The snapshot root of an inode below `/ids` or `/hosts`.
    fn snapshot_dir(&self, id: Id) -> Res<What> {
        let s = self
            .shared
            .catalog
            .snapshot(&id)
            .map_err(|e| io_error(&self.shared.repo, &format!("snapshot {}", id.short()), e))?;
        Ok(What::Snapshot { tree: s.tree, time: s.time })
    }

    /// What `name` in the directory `parent` is, if anything.
    fn child(&self, parent: u64, name: &[u8]) -> Res<Option<What>> {
        let Some(pw) = self.inodes.get(parent) else { return Err(libc::ESTALE) };
        let text = std::str::from_utf8(name).ok();
        let catalog = &self.shared.catalog;
        match pw {
            What::Root => Ok(match text {
                Some("ids") => Some(What::Ids),
                Some("hosts") => Some(What::Hosts),
                Some("latest") => {
                    let ids = catalog.ids().map_err(|e| io_error(&self.shared.repo, "listing the snapshots", e))?;
                    (!ids.is_empty()).then_some(What::Latest)
                }
                _ => None,
            }),
            What::Ids => match text {
                Some(t) => {
                    match catalog.resolve(t).map_err(|e| io_error(&self.shared.repo, "listing the snapshots", e))? {
                        Some(id) => self.snapshot_dir(id).map(Some),
                        None => Ok(None),
                    }
                }
                None => Ok(None),
            },
            What::Hosts => {
                let all = catalog.all().map_err(|e| io_error(&self.shared.repo, "listing the snapshots", e))?;
                let (hosts, _) = by_host(&all);
                Ok(text.filter(|t| hosts.contains_key(*t)).map(|t| What::Host(t.to_string())))
            }
            What::Host(h) => {
                let all = catalog.all().map_err(|e| io_error(&self.shared.repo, "listing the snapshots", e))?;
                let (hosts, _) = by_host(&all);
                let Some(list) = hosts.get(h) else { return Ok(None) };
                if text == Some("latest") {
                    return Ok(Some(What::HostLatest(h.clone())));
                }
                match list.iter().find(|d| Some(d.name.as_str()) == text) {
                    Some(d) => self.snapshot_dir(d.id).map(Some),
                    None => Ok(None),
                }
            }
            What::Snapshot { .. } | What::Node { .. } => {
                let tree = Self::tree_of(pw)?;
                let root = match pw {
                    What::Node { root, .. } => *root,
                    _ => parent,
                };
                let reader = self.shared.reader()?;
                let dir = reader.dir(&tree).map_err(|e| io_error(&self.shared.repo, &self.inodes.path(parent), e))?;
                Ok(dir.get(name).map(|n| What::Node { node: Arc::new(n.clone()), root }))
            }
            What::Latest | What::HostLatest(_) => Err(libc::ENOTDIR),
        }
    }

    /// The entries of a directory, `.` and `..` first.
    fn list(&self, ino: u64) -> Res<Vec<Listed>> {
        let what = self.inodes.get(ino).ok_or(libc::ESTALE)?.clone();
        let parent = self.inodes.parent(ino).unwrap_or(ROOT);
        let mut out = vec![
            Listed { ino, kind: FileType::Directory, name: b".".to_vec() },
            Listed { ino: parent, kind: FileType::Directory, name: b"..".to_vec() },
        ];
        let catalog = &self.shared.catalog;
        let inodes = &self.inodes;
        let push = |out: &mut Vec<Listed>, name: &[u8], kind: FileType, node: Option<(&Node, u64)>| {
            let known = match node {
                Some((n, root)) => inodes.peek(ino, n, root),
                None => inodes.peek_name(ino, name),
            };
            out.push(Listed { ino: known.unwrap_or(UNKNOWN_INO), kind, name: name.to_vec() });
        };
        match &what {
            What::Root => {
                out.push(Listed { ino: IDS, kind: FileType::Directory, name: b"ids".to_vec() });
                out.push(Listed { ino: HOSTS, kind: FileType::Directory, name: b"hosts".to_vec() });
                if !catalog.ids().map_err(|e| io_error(&self.shared.repo, "listing the snapshots", e))?.is_empty() {
                    out.push(Listed { ino: LATEST, kind: FileType::Symlink, name: b"latest".to_vec() });
                }
            }
            What::Ids => {
                let ids = catalog.ids().map_err(|e| io_error(&self.shared.repo, "listing the snapshots", e))?;
                for (name, _) in id_names(&ids) {
                    push(&mut out, name.as_bytes(), FileType::Directory, None);
                }
            }
            What::Hosts => {
                let all = catalog.all().map_err(|e| io_error(&self.shared.repo, "listing the snapshots", e))?;
                let (hosts, refused) = by_host(&all);
                for h in refused {
                    self.shared
                        .repo
                        .warn(format!("host name {h:?} cannot be a directory name: its snapshots are only under /ids"));
                }
                for h in hosts.keys() {
                    push(&mut out, h.as_bytes(), FileType::Directory, None);
                }
            }
            What::Host(h) => {
                let all = catalog.all().map_err(|e| io_error(&self.shared.repo, "listing the snapshots", e))?;
                let (hosts, _) = by_host(&all);
                if let Some(list) = hosts.get(h) {
                    push(&mut out, b"latest", FileType::Symlink, None);
                    for d in list {
                        push(&mut out, d.name.as_bytes(), FileType::Directory, None);
                    }
                }
            }
            What::Snapshot { .. } | What::Node { .. } => {
                let tree = Self::tree_of(&what)?;
                let root = match &what {
                    What::Node { root, .. } => *root,
                    _ => ino,
                };
                let reader = self.shared.reader()?;
                let dir = reader.dir(&tree).map_err(|e| io_error(&self.shared.repo, &self.inodes.path(ino), e))?;
                for (name, why) in dir.refused() {
                    self.shared.repo.warn(format!(
                        "{}/{}: left out: {why}",
                        self.inodes.path(ino),
                        String::from_utf8_lossy(name)
                    ));
                }
                for n in dir.nodes() {
                    push(&mut out, &n.name, attr::file_type(n.kind), Some((n, root)));
                }
            }
            What::Latest | What::HostLatest(_) => return Err(libc::ENOTDIR),
        }
        Ok(out)
    }

    fn add_handle(&mut self, h: Handle) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, h);
        fh
    }

    fn open_file(&self, ino: u64) -> Res<OpenFile> {
        let path = self.inodes.path(ino);
        match self.inodes.get(ino) {
            Some(What::Node { node, .. }) if node.kind == NodeKind::File => {
                let reader = self.shared.reader()?;
                let layout =
                    FileLayout::new(node, reader.index()).map_err(|e| io_error(&self.shared.repo, &path, e))?;
                Ok(OpenFile { layout, path, next: AtomicU64::new(0) })
            }
            Some(What::Node { .. }) => Err(libc::EACCES),
            Some(_) => Err(libc::EISDIR),
            None => Err(libc::ESTALE),
        }
    }

    fn xattrs(&self, ino: u64) -> Vec<(&[u8], &[u8])> {
        let mut out: Vec<(&[u8], &[u8])> = Vec::new();
        if let Some(What::Node { node, .. }) = self.inodes.get(ino) {
            for x in &node.xattrs {
                // A name the kernel could not pass back is left out.
                if !x.name.is_empty() && !x.name.contains(&0) && !out.iter().any(|(n, _)| *n == x.name.as_slice()) {
                    out.push((&x.name, &x.value));
                }
            }
        }
        out
    }
}

/// Replies with the bytes of an extended attribute or of the list of
/// names: their size when asked for size 0, ERANGE when they do not fit.
fn reply_sized(reply: ReplyXattr, size: u32, bytes: &[u8]) {
    if size == 0 {
        reply.size(bytes.len() as u32);
    } else if bytes.len() > size as usize {
        reply.error(libc::ERANGE);
    } else {
        reply.data(bytes);
    }
}

impl fuser::Filesystem for CairnFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let r = self.child(parent, name.as_bytes()).and_then(|w| {
            let w = w.ok_or(libc::ENOENT)?;
            let ino = match w {
                What::Ids => IDS,
                What::Hosts => HOSTS,
                What::Latest => LATEST,
                w => self.inodes.lookup(parent, name.as_bytes(), w),
            };
            let what = self.inodes.get(ino).ok_or(libc::ESTALE)?.clone();
            match self.attr_of(ino, &what) {
                Ok(a) => Ok(a),
                Err(e) => {
                    self.inodes.forget(ino, 1);
                    Err(e)
                }
            }
        });
        match r {
            Ok((a, ttl)) => reply.entry(&ttl, &a, 0),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&mut self, _req: &Request<'_>, ino: u64, nlookup: u64) {
        self.inodes.forget(ino, nlookup);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        let Some(what) = self.inodes.get(ino).cloned() else { return reply.error(libc::ESTALE) };
        match self.attr_of(ino, &what) {
            Ok((a, ttl)) => reply.attr(&ttl, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let target = match self.inodes.get(ino) {
            Some(What::Node { node, .. }) if node.kind == NodeKind::Symlink => match &node.target {
                // Restore could not create these either.
                Some(t) if !t.is_empty() && !t.contains(&0) => Ok(t.clone()),
                _ => Err(io_error(
                    &self.shared.repo,
                    &self.inodes.path(ino),
                    "the symlink's target is empty or holds a NUL byte",
                )),
            },
            Some(w @ (What::Latest | What::HostLatest(_))) => self.link_target(&w.clone()),
            Some(_) => Err(libc::EINVAL),
            None => Err(libc::ESTALE),
        };
        match target {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(libc::EROFS);
        }
        match self.open_file(ino) {
            Ok(f) => {
                let fh = self.add_handle(Handle::File(Arc::new(f)));
                // Snapshot contents never change: the kernel may keep its cached pages.
                reply.opened(fh, fuser::consts::FOPEN_KEEP_CACHE);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let Some(Handle::File(f)) = self.handles.get(&fh) else { return reply.error(libc::EBADF) };
        let Ok(offset) = u64::try_from(offset) else { return reply.error(libc::EINVAL) };
        let reader = match self.shared.reader() {
            Ok(r) => r,
            Err(e) => return reply.error(e),
        };
        let (f, ahead) = (f.clone(), self.ahead.clone());
        let _ = self.pool.reads.send(Box::new(move || read_job(reader, f, ahead, offset, size, reply)));
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock_owner: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.handles.remove(&fh);
        reply.ok();
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.list(ino) {
            Ok(entries) => {
                let fh = self.add_handle(Handle::Dir(entries));
                reply.opened(fh, 0);
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let Some(Handle::Dir(entries)) = self.handles.get(&fh) else { return reply.error(libc::EBADF) };
        let start = usize::try_from(offset).unwrap_or(0);
        for (i, e) in entries.iter().enumerate().skip(start) {
            if reply.add(e.ino, (i + 1) as i64, e.kind, OsStr::from_bytes(&e.name)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&mut self, _req: &Request<'_>, _ino: u64, fh: u64, _flags: i32, reply: ReplyEmpty) {
        self.handles.remove(&fh);
        reply.ok();
    }

    fn getxattr(&mut self, _req: &Request<'_>, ino: u64, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = self.xattrs(ino).into_iter().find(|(n, _)| *n == name.as_bytes()).map(|(_, v)| v.to_vec());
        match value {
            Some(v) => reply_sized(reply, size, &v),
            None => reply.error(libc::ENODATA),
        }
    }

    fn listxattr(&mut self, _req: &Request<'_>, ino: u64, size: u32, reply: ReplyXattr) {
        let mut names = Vec::new();
        for (n, _) in self.xattrs(ino) {
            names.extend_from_slice(n);
            names.push(0);
        }
        reply_sized(reply, size, &names);
    }
}
