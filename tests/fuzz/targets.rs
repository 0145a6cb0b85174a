//! The fuzz targets: each feeds bytes to one parser the way cairn does
//! after the bytes were read (and, for sealed objects, opened: a holder of
//! the password can seal anything, so the plaintext parsers are the ones
//! that meet forged bytes). And the seeds: objects as cairn writes them.

use std::path::Path;

use cairn::chunk::ChunkerParams;
use cairn::id::Id;
use cairn::repo::index::{IndexFile, PackInfo};
use cairn::repo::pack::{self, PackEntry};
use cairn::repo::{limits, BlobKind, Config, Node, NodeKind, Snapshot, Tree};

pub type Target = fn(&[u8]) -> Result<(), String>;

pub const NAMES: [&str; 9] =
    ["pack", "index", "tree", "snapshot", "key_slot", "config", "evidence_record", "blob", "policy"];

pub fn by_name(name: &str) -> Target {
    match name {
        "pack" => pack_tail,
        "index" => index_file,
        "tree" => tree,
        "snapshot" => snapshot,
        "key_slot" => key_slot,
        "config" => config,
        "evidence_record" => evidence_record,
        "blob" => blob_payload,
        "policy" => policy,
        other => panic!("no fuzz target `{other}`"),
    }
}

/// A pack as check reads it, with its header in the clear: the trailer
/// gives the header's place, the header its entries, which must tile the
/// pack. (Sealing is [`cairn::crypto`]'s, and not a parser.)
fn pack_tail(b: &[u8]) -> Result<(), String> {
    let (start, len) = pack::header_range(b, b.len() as u64)?;
    let header = &b[start as usize..(start + len) as usize];
    let entries = pack::decode_header(header)?;
    pack::validate_layout(&entries, start)
}

fn index_file(b: &[u8]) -> Result<(), String> {
    let f = IndexFile::decode(b)?;
    f.check_sizes(limits::CHUNK, limits::TREE)
}

/// Differential: the tree decoder cairn uses (which reads the layout cairn
/// writes itself) and the generic CBOR decoder must agree on every input.
fn tree(b: &[u8]) -> Result<(), String> {
    let used = Tree::decode(b);
    let reference = Tree::decode_generic(b);
    assert!(used == reference, "the tree decoders disagree: {used:?} against {reference:?}");
    used.map(|_| ())
}

fn snapshot(b: &[u8]) -> Result<(), String> {
    Snapshot::decode(b).map(|_| ())
}

fn key_slot(b: &[u8]) -> Result<(), String> {
    cairn::repo::keys::judge_bytes(b)
}

fn config(b: &[u8]) -> Result<(), String> {
    Config::decode(b).map(|_| ())
}

/// The key every evidence seed is signed with.
fn evidence_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

fn evidence_record(b: &[u8]) -> Result<(), String> {
    cairn::evidence::record::check(b, &evidence_key().verifying_key()).map(|_| ())
}

/// A blob's plaintext after its seal is opened: a codec byte and the
/// (compressed) data, expanded within a limit.
fn blob_payload(b: &[u8]) -> Result<(), String> {
    cairn::repo::blob::decode_payload(b, 1 << 20).map(|_| ()).map_err(|e| e.to_string())
}

fn policy(b: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(b).map_err(|e| e.to_string())?;
    // The messages, not the positions: what the fuzzer tells apart.
    cairn::policy::load_str(text, Path::new("fuzz.toml"))
        .map(|_| ())
        .map_err(|d| d.iter().map(|d| format!("{}: {}", d.field, d.message)).collect::<Vec<_>>().join("; "))
}

// ------------------------------------------------------------ seeds

fn node(name: &str, kind: NodeKind) -> Node {
    let mut n = Node::new(name.as_bytes().to_vec(), kind);
    n.mode = 0o644;
    n.mtime = 1_700_000_000;
    n
}

fn seed_tree() -> Vec<Vec<u8>> {
    let mut file = node("file.txt", NodeKind::File);
    file.size = 70_000;
    file.content = vec![Id::hash_of(b"a"), Id::hash_of(b"b")];
    (file.inode, file.device, file.links) = (42, 66, 2);
    file.xattrs = vec![cairn::repo::tree::Xattr { name: b"user.x".to_vec(), value: b"y".to_vec() }];
    let mut dir = node("dir", NodeKind::Dir);
    dir.subtree = Some(Id::hash_of(b"sub"));
    let mut link = node("link", NodeKind::Symlink);
    link.target = Some(b"../file.txt".to_vec());
    let mut dev = node("tty", NodeKind::Chardev);
    dev.rdev = 0x0501;
    vec![Tree::new(vec![file, dir, link, dev]).encode(), Tree::new(Vec::new()).encode()]
}

fn entries(kind: BlobKind, n: u32) -> Vec<PackEntry> {
    (0..n)
        .map(|i| PackEntry { kind, id: Id::hash_of(&i.to_le_bytes()), offset: i * 100, length: 100, raw_length: 150 })
        .collect()
}

fn seed_pack() -> Vec<Vec<u8>> {
    [1, 3]
        .iter()
        .map(|&n| {
            let e = entries(BlobKind::Data, n);
            let mut bytes = vec![0xabu8; 100 * n as usize];
            let header = pack::encode_header(&e);
            bytes.extend_from_slice(&header);
            bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
            bytes
        })
        .collect()
}

fn seed_index() -> Vec<Vec<u8>> {
    let f = IndexFile {
        supersedes: vec![Id::hash_of(b"old")],
        packs: vec![
            (PackInfo { id: Id::hash_of(b"p1"), kind: BlobKind::Data, size: 404 }, entries(BlobKind::Data, 4)),
            (PackInfo { id: Id::hash_of(b"p2"), kind: BlobKind::Tree, size: 104 }, entries(BlobKind::Tree, 1)),
        ],
    };
    vec![f.encode(), IndexFile::default().encode()]
}

fn seed_snapshot() -> Vec<Vec<u8>> {
    let time = chrono::DateTime::parse_from_rfc3339("2024-05-01T02:03:04.5Z").unwrap().to_utc();
    let s = Snapshot {
        v: 1,
        time,
        hostname: "db1".into(),
        username: "root".into(),
        paths: vec!["/srv".into(), "/etc".into()],
        tags: vec!["nightly".into()],
        policy: Some("web".into()),
        parent: Some(Id::hash_of(b"parent")),
        tree: Id::hash_of(b"tree"),
        program_version: "0.1.0".into(),
        original: None,
        summary: cairn::repo::Summary {
            files_new: 3,
            bytes_total: 1 << 20,
            duration_secs: 1.5,
            skipped: vec![cairn::repo::snapshot::SkippedFile { path: "/srv/x".into(), reason: "gone".into() }],
            ..Default::default()
        },
    };
    vec![serde_json::to_vec(&s).unwrap()]
}

fn seed_config() -> Vec<Vec<u8>> {
    let c = Config {
        version: 1,
        id: Id::hash_of(b"repo"),
        chunker: ChunkerParams { seed: 12345, ..ChunkerParams::default() },
        compression: 3,
        pack_size: 16 << 20,
        created: chrono::DateTime::parse_from_rfc3339("2024-05-01T00:00:00Z").unwrap().to_utc(),
        storage: Default::default(),
    };
    vec![serde_json::to_vec(&c).unwrap()]
}

fn seed_key_slot() -> Vec<Vec<u8>> {
    // A slot as `init` writes it, made in a scratch repository.
    let dir = tempfile::tempdir().unwrap();
    let backend = std::sync::Arc::new(cairn::backend::LocalBackend::new(dir.path()));
    let key = cairn::crypto::MasterKey::random();
    let params = cairn::crypto::KdfParams {
        memory_kib: cairn::crypto::KdfParams::MIN_MEMORY_KIB,
        iterations: 1,
        parallelism: 1,
    };
    let id = cairn::repo::keys::add_slot(backend.as_ref(), &key, b"fuzz", params).unwrap();
    let mut slot: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("keys/{id}"))).unwrap()).unwrap();
    // Where and when it was made say nothing to a parser.
    slot["hostname"] = "backup-host".into();
    slot["username"] = "root".into();
    slot["created"] = "2024-05-01T00:00:00Z".into();
    vec![serde_json::to_vec_pretty(&slot).unwrap()]
}

fn seed_evidence() -> Vec<Vec<u8>> {
    let key = evidence_key();
    let mut out = Vec::new();
    for (seq, prev, payload) in [
        (0u64, serde_json::Value::Null, serde_json::json!({"repository_created": true})),
        (1, serde_json::Value::String("ab".repeat(32)), serde_json::json!({"snapshot": "cd".repeat(32), "files": 12})),
    ] {
        let serde_json::Value::Object(mut record) = serde_json::json!({
            "v": 1, "seq": seq, "time": "2024-05-01T00:00:00Z", "kind": if seq == 0 { "init" } else { "backup" },
            "policy": null, "repository": "ef".repeat(32), "prev": prev, "payload": payload,
        }) else {
            unreachable!()
        };
        let (_, signed) = cairn::evidence::record::sign(&key, &mut record).unwrap();
        out.push(signed);
    }
    out
}

fn seed_blob() -> Vec<Vec<u8>> {
    let text = b"a blob of text that compresses, a blob of text that compresses\n".repeat(20);
    let zstd = zstd::bulk::compress(&text, 3).unwrap();
    vec![[&[cairn::repo::blob::CODEC_ZSTD][..], &zstd].concat(), [&[0u8][..], &text[..100]].concat()]
}

fn seed_policy() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Every target's seeds.
pub fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("pack", seed_pack()),
        ("index", seed_index()),
        ("tree", seed_tree()),
        ("snapshot", seed_snapshot()),
        ("key_slot", seed_key_slot()),
        ("config", seed_config()),
        ("evidence_record", seed_evidence()),
        ("blob", seed_blob()),
        ("policy", seed_policy()),
    ]
}
