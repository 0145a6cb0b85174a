//! Tests of garbage collection planning and execution.

use std::sync::Arc;

use super::*;
use crate::backend::LocalBackend;
use crate::crypto::KdfParams;
use crate::repo::blob::Encoder;
use crate::repo::{InitOptions, Node, Snapshot, Summary, Tree};

/// A repository of `n` data blobs (their stored bytes are fakes: a
/// plan never reads data) and one snapshot whose file uses every
/// other one.
fn repository_of(n: u32) -> (tempfile::TempDir, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let opts = InitOptions {
        kdf: KdfParams { memory_kib: KdfParams::MIN_MEMORY_KIB, iterations: 1, parallelism: 1 },
        pack_size: 1 << 20,
        ..Default::default()
    };
    let repo = Repository::init(Arc::new(LocalBackend::new(dir.path().join("repo"))), b"pw", opts).unwrap();
    let writer = RepoWriter::new(&repo, 1, 64);
    let ids: Vec<Id> = (0..n).map(|i| repo.key().blob_id(&i.to_le_bytes())).collect();
    for id in &ids {
        writer.add_blob(BlobKind::Data, *id, 4, &[0u8; 24]).unwrap();
    }
    let mut file = Node::new(b"f".to_vec(), NodeKind::File);
    file.content = ids.iter().step_by(2).copied().collect();
    let mut enc = Encoder::new(3);
    let (tree, _) =
        writer.store_blob(&Index::new(), BlobKind::Tree, &Tree::new(vec![file]).encode(), &mut enc).unwrap();
    writer.finish().unwrap();
    let snap = Snapshot {
        v: crate::repo::snapshot::SNAPSHOT_VERSION,
        time: chrono::Utc::now(),
        hostname: "h".into(),
        username: "u".into(),
        paths: vec!["/f".into()],
        tags: Vec::new(),
        policy: None,
        parent: None,
        tree,
        program_version: String::new(),
        original: None,
        summary: Summary::default(),
    };
    repo.save_snapshot(&snap).unwrap();
    (dir, repo)
}

#[test]
fn a_plan_holds_at_most_64_bytes_per_blob_all_included() {
    let n = 200_000;
    let (_dir, repo) = repository_of(n);
    let marking = Marking::read(&repo, marking::DEFAULT_SAFETY_MARGIN).unwrap();
    let plan = plan(&repo, 0.05, &marking).unwrap();
    assert_eq!(plan.index_blobs, n as usize + 1, "the blobs and the tree");
    assert_eq!(plan.used_blobs, n as usize / 2 + 1);
    assert!(plan.packs.len() > 1, "{} packs", plan.packs.len());
    let per_blob = plan.memory_bytes as f64 / plan.index_blobs as f64;
    assert!(per_blob <= 64.0, "{per_blob} bytes per blob");
    assert!(plan.memory_bytes >= plan.index_memory_bytes && per_blob >= 32.0, "{per_blob}: something is not counted");
}
