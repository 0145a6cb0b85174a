//! Snapshots a backup would never write, built by hand with the library:
//! names with `/`, NUL, `.`, `..`, repeated names, odd symlink targets.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use cairn::backend::LocalBackend;
use cairn::repo::blob::Encoder;
use cairn::repo::snapshot::SNAPSHOT_VERSION;
use cairn::repo::tree::TREE_VERSION;
use cairn::repo::writer::RepoWriter;
use cairn::repo::{BlobKind, Index, Node, NodeKind, Repository, Snapshot, Summary, Tree};
use cairn::Id;

/// Writes the blobs of one hand-made snapshot into an existing repository.
pub struct Builder {
    repo: Repository,
    index: Index,
    writer: RepoWriter,
    enc: Encoder,
}

impl Builder {
    pub fn open(repo_path: &Path, password: &str) -> Builder {
        let repo = Repository::open(Arc::new(LocalBackend::new(repo_path)), password.as_bytes()).unwrap();
        let writer = RepoWriter::new(&repo, 1, 64);
        Builder { repo, index: Index::new(), writer, enc: Encoder::new(3) }
    }

    pub fn file(&mut self, name: &[u8], content: &[u8]) -> Node {
        let (id, _) = self.writer.store_blob(&self.index, BlobKind::Data, content, &mut self.enc).unwrap();
        let mut n = Node::new(name.to_vec(), NodeKind::File);
        n.mode = 0o644;
        n.mtime = 1_700_000_000;
        n.size = content.len() as u64;
        n.content = vec![id];
        n
    }

    /// A directory whose tree keeps `nodes` in the order given.
    pub fn dir(&mut self, name: &[u8], nodes: Vec<Node>) -> Node {
        let mut n = Node::new(name.to_vec(), NodeKind::Dir);
        n.mode = 0o755;
        n.mtime = 1_700_000_000;
        n.subtree = Some(self.tree(nodes));
        n
    }

    pub fn symlink(&mut self, name: &[u8], target: &[u8]) -> Node {
        let mut n = Node::new(name.to_vec(), NodeKind::Symlink);
        n.mode = 0o777;
        n.mtime = 1_700_000_000;
        n.target = Some(target.to_vec());
        n
    }

    pub fn tree(&mut self, nodes: Vec<Node>) -> Id {
        let t = Tree { v: TREE_VERSION, nodes };
        self.writer.store_blob(&self.index, BlobKind::Tree, &t.encode(), &mut self.enc).unwrap().0
    }

    /// Stores the root tree (nodes in the order given) and a snapshot of `host`.
    pub fn commit(mut self, nodes: Vec<Node>, host: &str) -> Id {
        let root = self.tree(nodes);
        self.writer.finish().unwrap();
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
        self.repo.save_snapshot(&snap).unwrap()
    }
}
