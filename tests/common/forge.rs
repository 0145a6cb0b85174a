//! The malicious-repository builder: forged snapshots, trees, blobs,
//! index entries, metadata objects, key slots and locks, written with the
//! library (and the master key) as a password holder on a compromised
//! host could write them. Tests then run the real binary against them.

use std::sync::Arc;

use cairn::backend::{Backend, LocalBackend};
use cairn::crypto::MasterKey;
use cairn::repo::blob::{Encoder, CODEC_ZSTD};
use cairn::repo::index::{IndexFile, PackInfo};
use cairn::repo::pack::PackBuilder;
use cairn::repo::snapshot::SNAPSHOT_VERSION;
use cairn::repo::tree::TREE_VERSION;
use cairn::repo::writer::RepoWriter;
use cairn::repo::{pack_key, BlobKind, Index, Node, NodeKind, Repository, Snapshot, Summary, Tree};
use cairn::Id;

/// Opens the repository at `path` with `password` through the library.
pub fn open(path: &std::path::Path, password: &str) -> Repository {
    Repository::open(Arc::new(LocalBackend::new(path)), password.as_bytes()).unwrap()
}

/// Writes blobs of a hand-made snapshot into a repository.
pub struct Builder<'a> {
    pub repo: &'a Repository,
    pub index: Index,
    writer: Option<RepoWriter>,
    enc: Encoder,
}

impl<'a> Builder<'a> {
    pub fn new(repo: &'a Repository) -> Builder<'a> {
        Builder { repo, index: Index::new(), writer: Some(RepoWriter::new(repo, 1, 64)), enc: Encoder::new(3) }
    }

    pub fn file(&mut self, name: &[u8], content: &[u8]) -> Node {
        let w = self.writer.as_ref().expect("the builder is still open");
        let (id, _) = w.store_blob(&self.index, BlobKind::Data, content, &mut self.enc).unwrap();
        let mut n = Node::new(name.to_vec(), NodeKind::File);
        n.mode = 0o644;
        n.mtime = 1_700_000_000;
        n.size = content.len() as u64;
        n.content = vec![id];
        n
    }

    /// A file whose content is the chunk `id`, however it is stored.
    pub fn file_of(&mut self, name: &[u8], size: u64, id: Id) -> Node {
        let mut n = Node::new(name.to_vec(), NodeKind::File);
        n.mode = 0o644;
        n.mtime = 1_700_000_000;
        n.size = size;
        n.content = vec![id];
        n
    }

    /// A directory whose tree keeps `nodes` in the order given (so that
    /// duplicate names come out in a chosen order).
    pub fn dir(&mut self, name: &[u8], nodes: Vec<Node>) -> Node {
        let subtree = self.tree(nodes);
        self.dir_of(name, subtree)
    }

    /// A directory whose tree is `subtree`, however it is stored.
    pub fn dir_of(&mut self, name: &[u8], subtree: Id) -> Node {
        let mut n = Node::new(name.to_vec(), NodeKind::Dir);
        n.mode = 0o755;
        n.mtime = 1_700_000_000;
        n.subtree = Some(subtree);
        n
    }

    pub fn symlink(&mut self, name: &[u8], target: &[u8]) -> Node {
        let mut n = Node::new(name.to_vec(), NodeKind::Symlink);
        n.mode = 0o777;
        n.mtime = 1_700_000_000;
        n.target = Some(target.to_vec());
        n
    }

    /// A file whose node claims `size` bytes, whatever its content holds.
    pub fn file_claiming(&mut self, name: &[u8], content: &[u8], size: u64) -> Node {
        let mut n = self.file(name, content);
        n.size = size;
        n
    }

    /// A file that says it is one of `links` hard links to the inode
    /// `(device, inode)`.
    pub fn hard_linked(&mut self, name: &[u8], content: &[u8], device: u64, inode: u64, links: u64) -> Node {
        let mut n = self.file(name, content);
        (n.device, n.inode, n.links) = (device, inode, links);
        n
    }

    /// A chain of `levels` directories named `d`, each holding the next,
    /// with one file at the bottom; returns the top tree.
    pub fn chain(&mut self, levels: usize) -> Id {
        let leaf = self.file(b"bottom.txt", b"at the bottom\n");
        let mut t = self.tree(vec![leaf]);
        for _ in 0..levels {
            let d = self.dir_of(b"d", t);
            t = self.tree(vec![d]);
        }
        t
    }

    /// `levels` levels whose two directories `a` and `b` share one subtree,
    /// over one file: 2^levels paths to it in `levels + 1` trees and one
    /// data blob. Returns the top tree.
    pub fn doubling(&mut self, levels: usize) -> Id {
        let leaf = self.file(b"f", b"one file, many paths\n");
        let mut t = self.tree(vec![leaf]);
        for _ in 0..levels {
            let (a, b) = (self.dir_of(b"a", t), self.dir_of(b"b", t));
            t = self.tree(vec![a, b]);
        }
        t
    }

    pub fn tree(&mut self, nodes: Vec<Node>) -> Id {
        let t = Tree { v: TREE_VERSION, nodes };
        let w = self.writer.as_ref().expect("the builder is still open");
        w.store_blob(&self.index, BlobKind::Tree, &t.encode(), &mut self.enc).unwrap().0
    }

    /// Stores the root tree of `nodes` (sorted by name, keeping the order
    /// of equal names), finishes the packs and commits a snapshot.
    pub fn snapshot(mut self, mut nodes: Vec<Node>) -> Id {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let root = self.tree(nodes);
        self.snapshot_of(root)
    }

    /// Finishes the packs and commits a snapshot of the root tree `root`.
    pub fn snapshot_of(self, root: Id) -> Id {
        self.snapshot_as(root, "evil-host")
    }

    /// Finishes the packs and commits a snapshot of the root tree `root`
    /// that claims the host name `host` (any bytes a forger likes).
    pub fn snapshot_as(mut self, root: Id, host: &str) -> Id {
        self.writer.take().unwrap().finish().unwrap();
        save_snapshot_as(self.repo, root, host)
    }
}

/// Commits a snapshot of the tree `root`, made by "mallory@evil-host".
pub fn save_snapshot(repo: &Repository, root: Id) -> Id {
    save_snapshot_as(repo, root, "evil-host")
}

/// Commits a snapshot of the tree `root`, made by "mallory" on `host`.
pub fn save_snapshot_as(repo: &Repository, root: Id, host: &str) -> Id {
    let snap = Snapshot {
        v: SNAPSHOT_VERSION,
        time: chrono::Utc::now(),
        hostname: host.into(),
        username: "mallory".into(),
        paths: vec!["/".into()],
        tags: Vec::new(),
        policy: None,
        parent: None,
        tree: root,
        program_version: "0.0.0-test".into(),
        original: None,
        summary: Summary::default(),
    };
    repo.save_snapshot(&snap).unwrap()
}

/// Flips one byte in the middle of the stored object `key`, as storage
/// damage would: it no longer authenticates.
pub fn flip_a_byte(repo: &std::path::Path, key: &str) {
    let path = repo.join(key);
    let mut b = std::fs::read(&path).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&path, b).unwrap();
}

// ------------------------------------------------------------ bombs

/// One zstd frame of `n` zero bytes: about 10 KB per 300 MiB (zstd
/// stores a block of zeros in a few bytes). With `declare_size` the frame
/// header states `n`, as zstd's one-shot compression writes it; without,
/// the size is only known by expanding. Streamed, so the test process
/// never holds the expanded bytes.
pub fn zstd_zeros(n: usize, declare_size: bool) -> Vec<u8> {
    use std::io::Write;
    let mut e = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    e.include_contentsize(declare_size).unwrap();
    if declare_size {
        e.set_pledged_src_size(Some(n as u64)).unwrap();
    }
    let block = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len());
        e.write_all(&block[..k]).unwrap();
        left -= k;
    }
    e.finish().unwrap()
}

/// A metadata object (or blob) that authenticates and expands to `n` bytes.
pub fn sealed_bomb(key: &MasterKey, n: usize, declare_size: bool) -> Vec<u8> {
    key.seal(&[&[CODEC_ZSTD][..], &zstd_zeros(n, declare_size)].concat())
}

/// Puts `bytes` in the place of the object `key`, as an attacker who may
/// delete does: cairn's own `put` never replaces an object.
pub fn replace(repo: &Repository, key: &str, bytes: &[u8]) {
    repo.backend().delete(key).unwrap();
    repo.backend().put(key, bytes).unwrap();
}

/// Stores `sealed` under `dir/<its hash>`, as a metadata object is named.
pub fn put_named(repo: &Repository, dir: &str, sealed: &[u8]) -> Id {
    let id = Id::hash_of(sealed);
    repo.backend().put(&format!("{dir}/{id}"), sealed).unwrap();
    id
}

/// Stores a pack of one blob with the given sealed bytes and a chosen raw
/// length, and an index file of its own that lists it with that raw
/// length; returns the index file's id. The blob id is `id`.
pub fn put_blob_claiming(repo: &Repository, kind: BlobKind, id: Id, sealed: &[u8], raw_length: u32) -> Id {
    let mut b = PackBuilder::new(kind, 0);
    b.add(id, raw_length, sealed);
    let p = b.finish(repo.key());
    repo.backend().put(&pack_key(&p.id), &p.bytes).unwrap();
    let f = IndexFile {
        supersedes: Vec::new(),
        packs: vec![(PackInfo { id: p.id, kind, size: p.bytes.len() as u64 }, p.entries)],
    };
    // Sealed by hand: the library's own save would pass, but say what is meant.
    put_named(repo, "index", &cairn::repo::blob::seal_object(repo.key(), &f.encode()))
}

// ------------------------------------------------------------ memory

/// Runs `cmd` to completion under GNU time and returns its output and its
/// peak resident memory in KiB. Measured by `/usr/bin/time` rather than
/// by this process's own `wait4`: a child spawned from here inherits this
/// (multi-threaded, bomb-building) process's peak into its `ru_maxrss`
/// when it execs, while `time`'s own child starts from `time`'s few
/// hundred KiB.
pub fn run_measured(cmd: &mut std::process::Command) -> (std::process::Output, u64) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("maxrss");
    let mut timed = std::process::Command::new("/usr/bin/time");
    timed.arg("-f").arg("%M").arg("-o").arg(&report).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        timed.current_dir(d);
    }
    let out = timed.stdin(std::process::Stdio::null()).output().expect("/usr/bin/time (GNU time) runs");
    let text = std::fs::read_to_string(&report).unwrap();
    // A killed command makes `time` write a line about the signal first.
    let kib = text.lines().last().and_then(|l| l.trim().parse().ok());
    (out, kib.unwrap_or_else(|| panic!("no peak memory in GNU time's report: {text:?}")))
}
