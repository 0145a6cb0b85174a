//! Known answers for the bytes of the version 1 format (`docs/FORMAT.md`),
//! so that a dependency upgrade (zstd, ciborium, serde_json, fastcdc,
//! BLAKE3, Argon2, XChaCha20-Poly1305) or a code change that alters them
//! fails here instead of quietly writing something else.
//!
//! Sealing draws a random nonce and no production path takes a fixed one,
//! so sealed bytes are pinned by opening frozen objects: a sealed value
//! below, and every object of the frozen repository `tests/fixtures/repo-v1`,
//! whose plaintexts are re-encoded by today's code and must come out the
//! same, byte for byte.
//!
//! If one of these fails after an upgrade: a changed plaintext encoding
//! (index, pack header, tree, JSON) or chunking is a format change. A
//! changed zstd frame is not (readers take any valid frame), but it changes
//! what is stored and must be a deliberate choice.

use std::path::Path;
use std::sync::Arc;

use cairn::backend::{Backend, LocalBackend};
use cairn::chunk::{Chunker, ChunkerParams};
use cairn::crypto::{self, KdfParams, MasterKey};
use cairn::repo::blob::{self, Encoder};
use cairn::repo::limits;
use cairn::repo::pack::{self, PackEntry};
use cairn::repo::{BlobKind, IndexFile, Node, NodeKind, PackInfo, Repository, Snapshot, Tree};
use cairn::Id;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// A fixed master key: bytes 0, 1, …, 63 (`enc` = 0..32, `id` = 32..64).
fn fixed_key() -> MasterKey {
    MasterKey::from_bytes(&(0u8..64).collect::<Vec<u8>>()).unwrap()
}

fn id(byte: u8) -> Id {
    Id([byte; 32])
}

/// Hex with spaces and line breaks ignored, so pins can be laid out by field.
fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

fn xorshift(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

// ---------------------------------------------------------------------
// Pure encodings, from fixed inputs.

#[test]
fn blob_ids_are_keyed_blake3_with_the_second_half_of_the_master_key() {
    let k = fixed_key();
    let id_key: [u8; 32] = k.to_bytes()[32..].try_into().unwrap();
    assert_eq!(k.blob_id(b"cairn").0, *blake3::keyed_hash(&id_key, b"cairn").as_bytes());
    assert_eq!(k.blob_id(b"cairn").to_hex(), "04ba66efc8a73747dfd95eab0f58bed4f140fabde638121bc4aa1f68dca74f75");
}

#[test]
fn a_seal_is_nonce_then_xchacha20poly1305_ciphertext_and_tag_with_no_associated_data() {
    let k = fixed_key();
    let enc: [u8; 32] = k.to_bytes()[..32].try_into().unwrap();
    let sealed = k.seal(b"pinned plaintext");
    assert_eq!(sealed.len(), 24 + 16 + 16);
    let cipher = XChaCha20Poly1305::new(&enc.into());
    let expected = cipher.encrypt(XNonce::from_slice(&sealed[..24]), &b"pinned plaintext"[..]).unwrap();
    assert_eq!(sealed[24..], expected[..]);
}

/// Sealed once by cairn 0.1 under [`fixed_key`]: it must open forever.
const FROZEN_SEALED: &str = "\
    2e30e01fbf9433e6bee5720294452aa2cf0c65c6c022b07e \
    655293a5d9dcaa7c4c2915904b6def667e375dfbd9424fb0fc6572cd9c7a941649cba11cf6937a3afcb8c098634caecba3da2a87d282 \
    468a012bdca570f370c2434d7d";

#[test]
fn a_frozen_sealed_object_opens_to_its_plaintext() {
    let k = fixed_key();
    let plain = blob::open_object(&k, &hex(FROZEN_SEALED), limits::CONFIG).unwrap();
    assert_eq!(plain, b"cairn frozen object, codec 0x00 and no compression");
}

#[test]
fn blob_payloads_codec_byte_and_zstd_frame_are_pinned() {
    let k = fixed_key();
    let payload = |data: &[u8]| k.open(&Encoder::new(3).encode(&k, data)).unwrap();
    // Compressible and at least 64 bytes: codec 1 and one zstd frame.
    let text = b"cairn cairn cairn cairn cairn cairn cairn cairn cairn cairn cairn cairn cairn".repeat(4);
    let pinned = "01 28b52ffd603400f5000060636169726e2020636169726e06000410000c0820000c480928a0a0a508";
    assert_eq!(payload(&text), hex(pinned));
    // Under 64 bytes: raw, whatever it compresses to.
    assert_eq!(payload(&[b'a'; 63]), [&[0u8][..], &[b'a'; 63]].concat());
    // Incompressible: raw.
    let noise = xorshift(200, 9);
    assert_eq!(payload(&noise), [&[0u8][..], &noise].concat());
    // Metadata objects use zstd level 3 too.
    assert_eq!(k.open(&blob::seal_object(&k, &text)).unwrap(), hex(pinned));
}

#[test]
fn pack_header_bytes_are_pinned() {
    let entries = [
        PackEntry { kind: BlobKind::Data, id: id(0xaa), offset: 0, length: 0x41, raw_length: 0x10 },
        PackEntry { kind: BlobKind::Data, id: id(0xbb), offset: 0x41, length: 0x0102, raw_length: 0x0304_0506 },
    ];
    let want = hex(&format!(
        "01 \
         00 {a} 00000000 41000000 10000000 \
         00 {b} 41000000 02010000 06050403",
        a = "aa".repeat(32),
        b = "bb".repeat(32)
    ));
    assert_eq!(pack::encode_header(&entries), want);
    assert_eq!(pack::decode_header(&want).unwrap(), entries);
}

#[test]
fn index_file_bytes_are_pinned() {
    let f = IndexFile {
        supersedes: vec![id(0x11)],
        packs: vec![(
            PackInfo { id: id(0x22), kind: BlobKind::Tree, size: 0x0102_0304_0506 },
            vec![PackEntry { kind: BlobKind::Tree, id: id(0x33), offset: 7, length: 0x50, raw_length: 0x60 }],
        )],
    };
    let want = hex(&format!(
        "43494458 01 \
         01000000 {s} \
         01000000 {p} 01 0605040302010000 01000000 \
         {b} 07000000 50000000 60000000",
        s = "11".repeat(32),
        p = "22".repeat(32),
        b = "33".repeat(32)
    ));
    assert_eq!(f.encode(), want);
    assert_eq!(IndexFile::decode(&want).unwrap(), f);
}

fn pinned_tree() -> Tree {
    let mut file = Node::new(b"f\xffile".to_vec(), NodeKind::File);
    file.mode = 0o644;
    file.uid = 1000;
    file.gid = 100;
    file.user = Some("alice".into());
    file.group = Some("users".into());
    file.mtime = 1_700_000_000;
    file.mtime_nsec = 5;
    file.ctime = -1;
    file.inode = 42;
    file.device = 7;
    file.links = 2;
    file.size = 3;
    file.content = vec![id(0x01)];
    file.xattrs = vec![cairn::repo::tree::Xattr { name: b"user.a".to_vec(), value: b"v".to_vec() }];
    let mut dir = Node::new(b"d".to_vec(), NodeKind::Dir);
    dir.mode = 0o755;
    dir.subtree = Some(id(0x02));
    let mut link = Node::new(b"l".to_vec(), NodeKind::Symlink);
    link.mode = 0o777;
    link.target = Some(b"../t".to_vec());
    let mut dev = Node::new(b"n".to_vec(), NodeKind::Chardev);
    dev.rdev = 0x0103;
    Tree::new(vec![file, dir, link, dev])
}

#[test]
fn tree_cbor_bytes_are_pinned() {
    let t = pinned_tree();
    let bytes = t.encode();
    // {"v": 1, "nodes": [4 nodes]}: a2 61 76 01 65 "nodes" 84 …
    assert_eq!(hex::encode(&bytes[..10]), "a2617601656e6f646573");
    let pinned = "\
        a2 6176 01 656e6f646573 84
          a6 646e616d65 4164 646b696e64 63646972 646d6f6465 1901ed 656d74696d65 00 656374696d65 00
             67737562747265655820 0202020202020202020202020202020202020202020202020202020202020202
          b0 646e616d65 4566ff696c65 646b696e64 6466696c65 646d6f6465 1901a4 63756964 1903e8 63676964 1864
             6475736572 65616c696365 6567726f7570 657573657273 656d74696d65 1a6553f100
             6a6d74696d655f6e736563 05 656374696d65 20 65696e6f6465 182a 66646576696365 07 656c696e6b73 02
             6473697a65 03 67636f6e74656e74 81 5820 0101010101010101010101010101010101010101010101010101010101010101
             66786174747273 81 a2 646e616d65 46757365722e61 6576616c7565 4176
          a6 646e616d65 416c 646b696e64 6773796d6c696e6b 646d6f6465 1901ff 656d74696d65 00 656374696d65 00
             66746172676574 442e2e2f74
          a6 646e616d65 416e 646b696e64 6763686172646576 646d6f6465 00 656d74696d65 00 656374696d65 00
             6472646576 190103";
    assert_eq!(bytes, hex(pinned));
    assert_eq!(Tree::decode(&bytes).unwrap(), t);
}

#[test]
fn snapshot_json_is_pinned() {
    let s = Snapshot {
        v: 1,
        time: "2025-03-01T02:00:00.103312Z".parse().unwrap(),
        hostname: "db1".into(),
        username: "root".into(),
        paths: vec!["/etc".into()],
        tags: vec!["nightly".into()],
        policy: Some("databases".into()),
        parent: Some(id(0x0a)),
        tree: id(0x0b),
        program_version: "0.1.0".into(),
        original: None,
        summary: cairn::repo::Summary { files_total: 2, bytes_total: 10, duration_secs: 0.5, ..Default::default() },
    };
    let json = serde_json::to_string(&s).unwrap();
    let pinned = concat!(
        r#"{"v":1,"time":"2025-03-01T02:00:00.103312Z","hostname":"db1","username":"root","paths":["/etc"],"#,
        r#""tags":["nightly"],"policy":"databases","#,
        r#""parent":"0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a","#,
        r#""tree":"0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b","program_version":"0.1.0","#,
        r#""summary":{"files_new":0,"files_changed":0,"files_unchanged":0,"dirs":0,"files_total":2,"#,
        r#""bytes_total":10,"bytes_read":0,"data_added":0,"bytes_added":0,"blobs_added":0,"packs_added":0,"#,
        r#""duration_secs":0.5}}"#
    );
    assert_eq!(json, pinned);
    assert_eq!(serde_json::to_string(&serde_json::from_str::<Snapshot>(&json).unwrap()).unwrap(), json);
}

fn cut_lengths(params: ChunkerParams, data: &[u8]) -> Vec<usize> {
    let mut lengths = Vec::new();
    Chunker::new(params)
        .chunk_stream::<_, std::io::Error>(data, |c| {
            lengths.push(c.len());
            Ok(())
        })
        .unwrap();
    assert_eq!(lengths.iter().sum::<usize>(), data.len());
    lengths
}

#[test]
fn chunk_boundaries_for_a_fixed_seed_and_input_are_pinned() {
    let small = ChunkerParams { min_size: 64, avg_size: 256, max_size: 1024, seed: 0x1234_5678_9abc_def1 };
    assert_eq!(
        cut_lengths(small, &xorshift(6000, 1)),
        [250, 306, 212, 314, 117, 291, 97, 180, 490, 161, 299, 347, 378, 290, 313, 361, 393, 400, 144, 377, 280]
    );
    let default = ChunkerParams { seed: 12_157_665_459_056_928_801, ..ChunkerParams::default() };
    assert_eq!(
        cut_lengths(default, &xorshift(12 << 20, 2)),
        [2_498_368, 1_849_298, 1_324_052, 1_356_961, 1_149_079, 1_137_949, 2_627_169, 640_036]
    );
}

#[test]
fn argon2id_slot_key_derivation_is_pinned() {
    let params = KdfParams { memory_kib: 19_456, iterations: 2, parallelism: 1 };
    let k = crypto::derive_slot_key(b"correct horse battery staple", &[7u8; 32], params).unwrap();
    assert_eq!(hex::encode(k), "c9a2cf1f81a33994e4c9adbce9891c6d9c8cf3708a3f5d754780d5bf0bb6dfe7");
}

#[test]
fn the_evidence_seal_key_derivation_is_pinned() {
    let k = fixed_key();
    let derived = k.derive("cairn evidence signing key seal v1");
    assert_eq!(derived, blake3::derive_key("cairn evidence signing key seal v1", &k.to_bytes()));
    assert_eq!(hex::encode(derived), "449d020424c6324079c32d28e34e5e2c84b7ae71d48a3f81cb07e31d64559f61");
}

// ---------------------------------------------------------------------
// The frozen repository: every object re-encodes to its stored plaintext.

const FIXTURE_PASSWORD: &str = "cairn fixture v1";

fn fixture() -> (Arc<LocalBackend>, Repository) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/repo-v1");
    let backend = Arc::new(LocalBackend::new(dir));
    let repo = Repository::open(backend.clone(), FIXTURE_PASSWORD.as_bytes()).unwrap();
    (backend, repo)
}

/// `open(sealed)` (codec byte and payload) equals what today's encoder
/// makes of `plain` at `level`, once opened: the same codec and bytes.
fn assert_reencodes(k: &MasterKey, sealed: &[u8], plain: &[u8], level: i32, what: &str) {
    let stored = k.open(sealed).unwrap_or_else(|_| panic!("{what} does not open"));
    let today = k.open(&Encoder::new(level).encode(k, plain)).unwrap();
    assert!(
        stored == today,
        "{what}: today's encoding of the same plaintext differs (codec {} vs {})",
        stored[0],
        today[0]
    );
}

#[test]
fn the_fixture_key_slot_unwraps_the_master_key_with_argon2id() {
    let (backend, repo) = fixture();
    let slots = backend.list("keys/").unwrap();
    assert_eq!(slots.len(), 1);
    let slot: cairn::repo::keys::KeySlot = serde_json::from_slice(&backend.get(&slots[0].key).unwrap()).unwrap();
    assert_eq!(slot.params, KdfParams { memory_kib: 19_456, iterations: 3, parallelism: 1 });
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let wrap =
        crypto::derive_slot_key(FIXTURE_PASSWORD.as_bytes(), &b64.decode(&slot.salt).unwrap(), slot.params).unwrap();
    let master = crypto::open_with(&wrap, &b64.decode(&slot.wrapped_key).unwrap()).unwrap();
    assert_eq!(master, repo.key().to_bytes());
}

#[test]
fn the_fixture_config_and_snapshots_reencode_to_their_stored_plaintext() {
    let (backend, repo) = fixture();
    let k = repo.key();
    let sealed = backend.get("config").unwrap();
    let plain = blob::open_object(k, &sealed, limits::CONFIG).unwrap();
    assert_eq!(plain, serde_json::to_vec(repo.config()).unwrap(), "config JSON");
    assert_reencodes(k, &sealed, &plain, 3, "config");
    assert_eq!(
        repo.config().chunker,
        ChunkerParams { min_size: 64, avg_size: 256, max_size: 1024, seed: repo.config().chunker.seed }
    );
    for sid in repo.list_ids("snapshots").unwrap() {
        let sealed = backend.get(&format!("snapshots/{sid}")).unwrap();
        assert_eq!(Id::hash_of(&sealed), sid);
        let plain = blob::open_object(k, &sealed, limits::SNAPSHOT).unwrap();
        let s: Snapshot = serde_json::from_slice(&plain).unwrap();
        assert_eq!(serde_json::to_vec(&s).unwrap(), plain, "snapshot {sid} JSON");
        assert_reencodes(k, &sealed, &plain, 3, &format!("snapshot {sid}"));
    }
}

#[test]
fn the_fixture_index_files_packs_blobs_and_trees_reencode_to_their_stored_bytes() {
    let (backend, repo) = fixture();
    let k = repo.key();
    let id_key: [u8; 32] = k.to_bytes()[32..].try_into().unwrap();
    let level = repo.config().compression;
    let (mut packs, mut blobs, mut trees) = (0, 0, 0);
    for iid in repo.list_ids("index").unwrap() {
        let sealed = backend.get(&format!("index/{iid}")).unwrap();
        assert_eq!(Id::hash_of(&sealed), iid);
        let plain = blob::open_object(k, &sealed, limits::INDEX_FILE).unwrap();
        let file = IndexFile::decode(&plain).unwrap();
        assert_eq!(file.encode(), plain, "index file {iid}");
        assert_reencodes(k, &sealed, &plain, 3, &format!("index file {iid}"));
        for (info, entries) in &file.packs {
            let key = cairn::repo::pack_key(&info.id);
            let bytes = backend.get(&key).unwrap();
            assert_eq!((Id::hash_of(&bytes), bytes.len() as u64), (info.id, info.size), "{key}");
            let hlen = pack::header_len_from_trailer(&bytes).unwrap() as usize;
            let header = k.open(&bytes[bytes.len() - 4 - hlen..bytes.len() - 4]).unwrap();
            assert_eq!(pack::decode_header(&header).unwrap(), *entries, "{key}: header and index agree");
            assert_eq!(pack::encode_header(entries), header, "{key}: header bytes");
            for e in entries {
                let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
                let plain = blob::decode(k, sealed, &e.id, e.raw_length as u64).unwrap();
                assert_eq!(*blake3::keyed_hash(&id_key, &plain).as_bytes(), e.id.0, "blob id");
                assert_reencodes(k, sealed, &plain, level, &format!("blob {} in {key}", e.id));
                if e.kind == BlobKind::Tree {
                    assert_eq!(Tree::decode(&plain).unwrap().encode(), plain, "tree {}", e.id);
                    trees += 1;
                }
                blobs += 1;
            }
            packs += 1;
        }
    }
    // As `check --read-data` reports it (tests/fixture_v1.rs).
    assert_eq!((packs, blobs, trees), (4, 39, 10));
}

#[test]
fn the_fixture_files_rechunk_to_the_stored_chunk_ids_with_the_repository_seed() {
    let (_, repo) = fixture();
    let index = repo.load_index().unwrap();
    let chunker = repo.config().chunker;
    let mut multi = 0;
    for (_, s) in repo.list_snapshots().unwrap().complete().unwrap() {
        cairn::repo::tree::walk(&repo, &index, &s.tree, b"", &mut |path, n| {
            if n.kind == NodeKind::File {
                let data: Vec<u8> = n.content.iter().flat_map(|c| repo.read_blob(&index, c).unwrap()).collect();
                let mut ids = Vec::new();
                Chunker::new(chunker)
                    .chunk_stream::<_, std::io::Error>(&data[..], |c| {
                        ids.push(repo.key().blob_id(c));
                        Ok(())
                    })
                    .unwrap();
                assert_eq!(ids, n.content, "{}: chunk boundaries moved", String::from_utf8_lossy(path));
                multi += usize::from(ids.len() > 1);
            }
            Ok(true)
        })
        .unwrap();
    }
    assert!(multi >= 2, "the fixture has multi-chunk files in both snapshots");
}
