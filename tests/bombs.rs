//! Invariant 9: forged data ends in a named error, never in unbounded
//! memory. Each test plants a decompression bomb — a small sealed object
//! that authenticates and expands to hundreds of MiB — as one kind of
//! object, runs the real binary against the repository, and measures the
//! child's peak memory (`ru_maxrss` from `wait4`): it must stay under
//! 200 MB, where expanding the bomb would take more than 300.

mod common;

use std::process::Output;

use cairn::repo::BlobKind;
use cairn::Id;
use common::forge::{self, put_blob_claiming, put_named, run_measured, sealed_bomb, Builder};
use common::{Env, PASSWORD};

/// What a bomb expands to: far above the memory bound.
const BOMB: usize = 320 << 20;
/// The peak memory every command must stay under, in KiB.
const MAX_RSS_KIB: u64 = 200 * 1024;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs cairn and asserts its peak memory stayed under the bound.
fn measured(env: &Env, args: &[&str]) -> Output {
    let (o, rss) = run_measured(env.command().args(args));
    assert!(rss < MAX_RSS_KIB, "cairn {args:?} peaked at {} MB (stderr: {})", rss / 1024, text(&o.stderr));
    o
}

fn assert_names(o: &Output, code: i32, needle: &str) {
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(code), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(needle) || err.contains(needle), "`{needle}` is not named:\nstdout:\n{out}\nstderr:\n{err}");
}

/// A repository with one ordinary snapshot of one small file.
fn env_with_backup() -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"an ordinary file\n").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    (env, src)
}

fn open(env: &Env) -> cairn::repo::Repository {
    forge::open(&env.repo, PASSWORD)
}

#[test]
fn a_config_bomb_is_refused_by_every_command_with_the_object_named() {
    let (env, _) = env_with_backup();
    let repo = open(&env);
    let bomb = sealed_bomb(repo.key(), BOMB, true);
    assert!(bomb.len() < 64 << 10, "the bomb is small: {} bytes", bomb.len());
    forge::replace(&repo, "config", &bomb);
    for cmd in [&["snapshots"][..], &["check"], &["backup", env.path("src").to_str().unwrap()]] {
        let o = measured(&env, cmd);
        assert_names(&o, 1, "object `config` is too large");
    }
}

#[test]
fn a_config_bomb_without_a_declared_size_stops_at_the_config_limit() {
    let (env, _) = env_with_backup();
    let repo = open(&env);
    forge::replace(&repo, "config", &sealed_bomb(repo.key(), BOMB, false));
    let o = measured(&env, &["snapshots"]);
    assert_names(&o, 1, "object `config` is too large: it expands past 65536 bytes");
}

#[test]
fn a_snapshot_bomb_is_listed_as_damaged_and_named_by_check() {
    let (env, src) = env_with_backup();
    let repo = open(&env);
    let id = put_named(&repo, "snapshots", &sealed_bomb(repo.key(), BOMB, true));
    let o = measured(&env, &["snapshots"]);
    assert_names(&o, 5, &format!("object `snapshots/{id}` is too large"));
    let o = measured(&env, &["check"]);
    assert_names(&o, 5, &format!("error: snapshots/{id}: object `snapshots/{id}` is too large"));
    // `latest` is not known any more, but the good snapshot, named, still restores.
    let o = measured(&env, &["restore", "latest", "--target", env.path("r").to_str().unwrap()]);
    assert_names(&o, 1, &format!("snapshot {} cannot be read", id.short()));
    let good = repo.list_snapshots().unwrap().snapshots[0].0.short();
    let o = measured(&env, &["restore", &good, "--target", env.path("r").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(std::fs::read(common::restored(&env.path("r"), &src).join("a.txt")).unwrap(), b"an ordinary file\n");
}

#[test]
fn an_undeclared_snapshot_bomb_stops_at_the_snapshot_limit() {
    let (env, _) = env_with_backup();
    let repo = open(&env);
    let id = put_named(&repo, "snapshots", &sealed_bomb(repo.key(), BOMB, false));
    let o = measured(&env, &["check"]);
    assert_names(&o, 5, &format!("object `snapshots/{id}` is too large: it expands past 1048576 bytes"));
}

#[test]
fn an_index_bomb_is_named_by_check_and_the_rest_still_restores() {
    let (env, src) = env_with_backup();
    let repo = open(&env);
    let id = put_named(&repo, "index", &sealed_bomb(repo.key(), BOMB, true));
    let o = measured(&env, &["check"]);
    assert_names(&o, 5, &format!("error: index/{id}: object `index/{id}` is too large: it claims {BOMB} bytes"));
    let o = measured(&env, &["restore", "latest", "--target", env.path("r").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(common::restored(&env.path("r"), &src).join("a.txt").exists());
    // A backup skips the bad index file and still works.
    let o = measured(&env, &["backup", src.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
}

/// A snapshot whose root tree's index entry claims 4 GiB, and whose sealed
/// blob does expand to 320 MiB.
#[test]
fn a_tree_whose_index_entry_claims_4_gib_is_damage_not_a_4_gib_buffer() {
    let env = Env::new();
    let repo = open(&env);
    let tree_id = Id::random();
    let index = put_blob_claiming(&repo, BlobKind::Tree, tree_id, &sealed_bomb(repo.key(), BOMB, true), u32::MAX);
    forge::save_snapshot(&repo, tree_id);
    for cmd in [&["ls", "latest"][..], &["restore", "latest", "--target", env.path("r").to_str().unwrap()]] {
        let o = measured(&env, cmd);
        assert!(!o.status.success(), "cairn {cmd:?} succeeded");
        assert!(text(&o.stderr).contains(&tree_id.short()), "{}", text(&o.stderr));
    }
    let o = measured(&env, &["check"]);
    assert_names(
        &o,
        5,
        &format!("error: index/{index}: malformed index file `index/{index}`: blob {}", tree_id.short()),
    );
    assert_names(&o, 5, "claims 4294967295 bytes, above the 134217728 bytes a tree blob may hold");
}

/// A file whose one chunk's index entry claims 4 GiB; the chunk's sealed
/// bytes expand to 320 MiB. The other file of the snapshot restores.
#[test]
fn a_data_blob_whose_index_entry_claims_4_gib_is_damage_and_its_file_is_named() {
    let env = Env::new();
    let repo = open(&env);
    let chunk = Id::random();
    let index = put_blob_claiming(&repo, BlobKind::Data, chunk, &sealed_bomb(repo.key(), BOMB, true), u32::MAX);
    let mut b = Builder::new(&repo);
    let bomb = b.file_of(b"bomb.bin", u32::MAX as u64, chunk);
    let good = b.file(b"good.txt", b"still here\n");
    b.snapshot(vec![bomb, good]);

    let target = env.path("r");
    let o = measured(&env, &["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_names(&o, 3, "bomb.bin");
    assert_eq!(std::fs::read(target.join("good.txt")).unwrap(), b"still here\n");
    let o = measured(&env, &["dump", "latest", "/bomb.bin"]);
    assert!(!o.status.success(), "dump of the bomb succeeded");
    let o = measured(&env, &["check", "--read-data"]);
    assert_names(&o, 5, &format!("error: index/{index}: malformed index file `index/{index}`: blob {}", chunk.short()));
    assert_names(&o, 5, "above the 262144 bytes a data blob may hold");
}

/// The same chunk listed with a length within the chunk limit, whose bytes
/// expand far past it: decompression stops at the recorded length.
#[test]
fn a_data_blob_that_expands_past_its_recorded_length_stops_there() {
    let env = Env::new();
    let repo = open(&env);
    let chunk = Id::random();
    put_blob_claiming(&repo, BlobKind::Data, chunk, &sealed_bomb(repo.key(), BOMB, false), 100_000);
    let mut b = Builder::new(&repo);
    let bomb = b.file_of(b"bomb.bin", 100_000, chunk);
    b.snapshot(vec![bomb]);
    let o = measured(&env, &["dump", "latest", "/bomb.bin"]);
    assert_names(&o, 1, "it expands past 100000 bytes");
    let o = measured(&env, &["check", "--read-data"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stdout));
}

// ------------------------------------------------------------ what the limits rest on

#[test]
fn a_forged_config_with_a_4_gib_pack_size_is_refused_at_open() {
    let env = Env::new();
    let repo = open(&env);
    let mut config = repo.config().clone();
    config.pack_size = u32::MAX;
    forge::replace(&repo, "config", &cairn::repo::blob::seal_object(repo.key(), &serde_json::to_vec(&config).unwrap()));
    let o = env.cairn(&["snapshots"]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains("malformed config: pack size 4294967295 is outside 1 MiB to 512 MiB"), "{err}");
}

#[test]
fn a_snapshot_above_its_limit_is_never_written() {
    let env = Env::new();
    let repo = open(&env);
    let mut b = forge::Builder::new(&repo);
    let root = b.tree(Vec::new());
    drop(b);
    let snap = cairn::repo::Snapshot {
        v: 1,
        time: chrono::Utc::now(),
        hostname: "h".into(),
        username: "u".into(),
        paths: vec!["/".into()],
        tags: vec!["t".repeat(1 << 20)],
        policy: None,
        parent: None,
        tree: root,
        program_version: "x".into(),
        original: None,
        summary: Default::default(),
    };
    let e = repo.save_snapshot(&snap).unwrap_err();
    assert!(matches!(e, cairn::Error::TooLarge { .. }), "{e}");
    assert!(repo.list_ids("snapshots").unwrap().is_empty());
}
