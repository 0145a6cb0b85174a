//! Builds a synthetic repository of many small blobs by writing packs
//! directly (no files to scan), for `benches/bigrepo.sh`:
//!
//! ```sh
//! CAIRN_PASSWORD=bench cargo bench --bench synth_repo -- REPO BLOBS
//! ```
//!
//! Blobs are 64–1024 bytes of random data (256 on average, like the
//! `--chunk-sizes 64,256,1024` of `benches/prune.sh`), sealed for real, in
//! 16 MiB packs. Files of 256 chunks sit 100 to a directory. Two snapshots:
//! `all` holds every directory, `most` every directory but each fifth, so
//! forgetting `all` leaves a fifth of the blobs to prune.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::exit,
    reason = "a bench tool prints its progress and exits with its usage code"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn::backend::LocalBackend;
use cairn::chunk::ChunkerParams;
use cairn::crypto::KdfParams;
use cairn::repo::blob::Encoder;
use cairn::repo::snapshot::SNAPSHOT_VERSION;
use cairn::repo::writer::RepoWriter;
use cairn::repo::{BlobKind, Index, InitOptions, Node, NodeKind, Repository, Snapshot, Summary, Tree};
use cairn::Id;

const CHUNKS_PER_FILE: u64 = 256;
const FILES_PER_DIR: u64 = 100;

/// A blob's bytes: its number, then xorshift noise, 64–1024 bytes long.
fn blob(n: u64) -> Vec<u8> {
    let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let len = 64 + (next() % 961) as usize;
    let mut b = n.to_le_bytes().to_vec();
    while b.len() < len {
        b.extend_from_slice(&next().to_le_bytes());
    }
    b.truncate(len);
    b
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    match &args[..] {
        [repo_dir, blobs] => {
            let blobs: u64 = blobs.parse().expect("a number of blobs");
            let password = std::env::var("CAIRN_PASSWORD").expect("CAIRN_PASSWORD");
            generate(repo_dir, blobs, &password);
        }
        // `cargo test --all-targets` runs this without arguments: a small
        // repository, which must hold every blob it was given.
        [] => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let repo_dir = dir.path().join("repo");
            let repo = generate(repo_dir.to_str().unwrap(), 3_000, "pw");
            let index = repo.load_index().expect("the index");
            let files = 3_000u64.div_ceil(CHUNKS_PER_FILE);
            // Data blobs, one tree per directory, and a `data` and a root
            // tree per snapshot: the same two for both below five directories.
            let dirs = files.div_ceil(FILES_PER_DIR);
            let trees = dirs + if dirs > 4 { 4 } else { 2 };
            assert_eq!(index.len() as u64, 3_000 + trees, "every blob is indexed");
            assert_eq!(repo.list_snapshots().expect("snapshots").complete().expect("every snapshot opens").len(), 2);
        }
        _ => {
            eprintln!("usage: synth_repo REPO BLOBS (password in CAIRN_PASSWORD)");
            std::process::exit(2);
        }
    }
}

/// Writes a repository of `blobs` data blobs at `repo_dir`.
fn generate(repo_dir: &str, blobs: u64, password: &str) -> Repository {
    let opts = InitOptions {
        chunker: ChunkerParams { min_size: 64, avg_size: 256, max_size: 1024, seed: 0 },
        kdf: KdfParams { memory_kib: KdfParams::MIN_MEMORY_KIB, iterations: 1, parallelism: 1 },
        ..Default::default()
    };
    let repo = Repository::init(Arc::new(LocalBackend::new(repo_dir)), password.as_bytes(), opts).expect("init");
    let writer = RepoWriter::new(&repo, 1, 64);
    let files = blobs.div_ceil(CHUNKS_PER_FILE);
    let dirs = files.div_ceil(FILES_PER_DIR);
    let started = std::time::Instant::now();

    // Data: two threads, each sealing whole directories' blobs in turn.
    let next_dir = AtomicU64::new(0);
    let dir_trees: Vec<std::sync::Mutex<Option<Id>>> = (0..dirs).map(|_| Default::default()).collect();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut enc = Encoder::new(repo.config().compression);
                loop {
                    let d = next_dir.fetch_add(1, Ordering::Relaxed);
                    if d >= dirs {
                        break;
                    }
                    let mut nodes = Vec::new();
                    for f in d * FILES_PER_DIR..((d + 1) * FILES_PER_DIR).min(files) {
                        let mut node = Node::new(format!("file-{f:07}").into_bytes(), NodeKind::File);
                        node.mode = 0o644;
                        for c in f * CHUNKS_PER_FILE..((f + 1) * CHUNKS_PER_FILE).min(blobs) {
                            let data = blob(c);
                            let id = repo.key().blob_id(&data);
                            let sealed = enc.encode(repo.key(), &data);
                            writer.add_blob(BlobKind::Data, id, data.len() as u32, &sealed).expect("add blob");
                            node.content.push(id);
                            node.size += data.len() as u64;
                        }
                        nodes.push(node);
                    }
                    let t = Tree::new(nodes).encode();
                    let (id, _) = writer.store_blob(&Index::new(), BlobKind::Tree, &t, &mut enc).expect("tree");
                    *dir_trees[d as usize].lock().unwrap() = Some(id);
                    if d.is_multiple_of(100) {
                        eprintln!("{d}/{dirs} directories, {:.0?}", started.elapsed());
                    }
                }
            });
        }
    });
    let dir_ids: Vec<Id> = dir_trees.into_iter().map(|m| m.into_inner().unwrap().expect("written")).collect();
    let mut enc = Encoder::new(repo.config().compression);
    let mut snapshot = |name: &str, keep: &dyn Fn(u64) -> bool| {
        let nodes = (0..dirs)
            .filter(|d| keep(*d))
            .map(|d| {
                let mut n = Node::new(format!("dir-{d:05}").into_bytes(), NodeKind::Dir);
                n.mode = 0o755;
                n.subtree = Some(dir_ids[d as usize]);
                n
            })
            .collect();
        let (data, _) = writer.store_blob(&Index::new(), BlobKind::Tree, &Tree::new(nodes).encode(), &mut enc).unwrap();
        let mut top = Node::new(b"data".to_vec(), NodeKind::Dir);
        top.mode = 0o755;
        top.subtree = Some(data);
        let (root, _) =
            writer.store_blob(&Index::new(), BlobKind::Tree, &Tree::new(vec![top]).encode(), &mut enc).unwrap();
        (name.to_string(), root)
    };
    let roots = [snapshot("all", &|_| true), snapshot("most", &|d| d % 5 != 4)];
    let stats = writer.finish().expect("finish");
    for (i, (name, tree)) in roots.into_iter().enumerate() {
        let snap = Snapshot {
            v: SNAPSHOT_VERSION,
            time: chrono::Utc::now() + chrono::Duration::seconds(i as i64),
            hostname: "synthetic".into(),
            username: "bench".into(),
            paths: vec!["/data".into()],
            tags: vec![name.clone()],
            policy: None,
            parent: None,
            tree,
            program_version: cairn::VERSION.into(),
            original: None,
            summary: Summary::default(),
        };
        let id = repo.save_snapshot(&snap).expect("snapshot");
        println!("snapshot {name} {id}");
    }
    println!("blobs {} packs {} bytes {} in {:.1?}", stats.blobs, stats.packs, stats.stored_bytes, started.elapsed());
    repo
}
