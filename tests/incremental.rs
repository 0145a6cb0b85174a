//! Fast incremental backups: an unchanged tree is not read again and adds
//! almost nothing; an edit in the middle of a file stores only the chunks
//! around it.

mod common;

use common::*;

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v["summary"][k].as_u64().unwrap_or_else(|| panic!("summary.{k} missing in {v}"))
}

fn tree(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    for d in 0..10 {
        let dir = src.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..20 {
            std::fs::write(dir.join(format!("f{f}.txt")), format!("file {d}/{f}\n").repeat(100 + f)).unwrap();
        }
    }
    std::fs::write(src.join("big.bin"), random_bytes(4 << 20, 7)).unwrap();
    src
}

#[test]
fn unchanged_tree_reads_no_content_and_adds_almost_nothing() {
    let env = Env::new();
    let src = tree(&env);
    let first = env.backup_json(&[&src], &[]);
    assert_eq!(u(&first, "files_new"), 201);
    assert!(u(&first, "bytes_read") >= 4 << 20);
    let size_before = env.repo_size();

    let second = env.backup_json(&[&src], &[]);
    assert_eq!(second["parent"], first["snapshot"], "the first snapshot is the parent");
    assert_eq!(u(&second, "bytes_read"), 0, "no file content may be read: {second}");
    assert_eq!(u(&second, "files_unchanged"), 201);
    assert_eq!(u(&second, "files_new") + u(&second, "files_changed"), 0);
    // Directories above the source (the shared temporary directory) may have
    // changed meanwhile; their few new tree blobs are all that may be added.
    assert!(u(&second, "data_added") < 2048, "{second}");
    assert!(u(&second, "packs_added") <= 1, "at most one small tree pack: {second}");
    let growth = env.repo_size() - size_before;
    assert!(growth < 8192, "an unchanged backup grew the repository by {growth} bytes");
}

/// An unchanged directory takes its tree in the parent snapshot as it is
/// (nothing encoded, hashed or looked up again), and only an unchanged one.
#[test]
fn unchanged_directories_keep_their_trees_and_a_change_writes_its_directory_and_those_above() {
    let env = Env::new();
    let src = tree(&env);
    let first = env.backup_json(&[&src], &[]);
    assert_eq!(first["summary"]["dirs_unchanged"], serde_json::Value::Null, "none, so not shown: {first}");
    let second = env.backup_json(&[&src], &[]);
    // d0…d9 and src; the directories above src are not compared.
    assert_eq!(u(&second, "dirs_unchanged"), 11, "{second}");
    restore_latest_and_compare(&env, &src, "second");

    std::fs::write(src.join("d3/f0.txt"), "changed\n").unwrap();
    let third = env.backup_json(&[&src], &[]);
    assert_eq!(u(&third, "files_changed"), 1, "{third}");
    assert_eq!(u(&third, "dirs_unchanged"), 9, "d3 and src are written again: {third}");
    restore_latest_and_compare(&env, &src, "third");
}

#[test]
fn an_edit_in_the_middle_stores_only_nearby_chunks() {
    let env = Env::new();
    let src = tree(&env);
    env.backup_json(&[&src], &[]);
    let big = src.join("big.bin");
    let mut data = std::fs::read(&big).unwrap();
    let mid = data.len() / 2;
    for b in &mut data[mid..mid + 100] {
        *b ^= 0x5a;
    }
    std::fs::write(&big, &data).unwrap();
    let third = env.backup_json(&[&src], &[]);
    assert_eq!(u(&third, "files_changed"), 1);
    assert_eq!(u(&third, "files_unchanged"), 200);
    assert_eq!(u(&third, "bytes_read"), data.len() as u64, "only the changed file is read");
    // Chunks average 64 KiB and are at most 256 KiB: a 100-byte edit may
    // touch two chunks; the rest of the 4 MiB file must be reused.
    let added = u(&third, "data_added");
    assert!(added < 2 * 262_144 + 64 * 1024, "stored {added} bytes again for a 100-byte edit");
    let t = env.path("t");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap(), "--verify"]);
    assert!(std::fs::read(restored(&t, &big)).unwrap() == data);
}

#[test]
fn force_reads_everything_again_but_stores_nothing_new() {
    let env = Env::new();
    let src = tree(&env);
    env.backup_json(&[&src], &[]);
    let before = data_blobs(&env);
    let again = env.backup_json(&[&src], &["--force"]);
    assert!(u(&again, "bytes_read") >= 4 << 20);
    // Only file contents are compared: the trees of the source's ancestors
    // (the shared temporary directory, which other tests touch) may change.
    assert_eq!(data_blobs(&env), before, "deduplication stores no file content twice");
}

/// The data blobs the repository's index lists, a blob stored twice twice.
fn data_blobs(env: &Env) -> Vec<cairn::Id> {
    let backend = std::sync::Arc::new(cairn::backend::LocalBackend::new(&env.repo));
    let repo = cairn::repo::Repository::open(backend, PASSWORD.as_bytes()).unwrap();
    let mut ids = Vec::new();
    for fid in repo.list_ids("index").unwrap() {
        let file = repo.load_index_file(&fid).unwrap();
        for (pack, entries) in file.packs {
            if pack.kind == cairn::repo::BlobKind::Data {
                ids.extend(entries.iter().map(|e| e.id));
            }
        }
    }
    assert!(!ids.is_empty(), "the index lists no data blob");
    ids.sort();
    ids
}

#[test]
fn parent_is_the_newest_snapshot_of_the_same_host_and_paths() {
    let env = Env::new();
    let src = tree(&env);
    let a = env.backup_json(&[&src], &["--host", "alpha"]);
    let _other_host = env.backup_json(&[&src], &["--host", "beta"]);
    let other_paths = env.backup_json(&[&src.join("d1")], &["--host", "alpha"]);
    assert_eq!(other_paths["parent"], serde_json::Value::Null);
    let b = env.backup_json(&[&src], &["--host", "alpha"]);
    assert_eq!(b["parent"], a["snapshot"]);
}

/// The directories above `src` in the snapshot: their xattrs are always
/// read (the parent snapshot is not consulted for them).
fn dirs_above(src: &std::path::Path) -> u64 {
    src.components().filter(|c| matches!(c, std::path::Component::Normal(_))).count() as u64 - 1
}

fn xattr_tree(env: &Env) -> std::path::PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/f"), b"f content\n").unwrap();
    std::fs::write(src.join("g"), b"g content\n").unwrap();
    xattr::set(src.join("d"), "user.on-dir", b"dir value").unwrap();
    xattr::set(src.join("d/f"), "user.on-file", &[0u8, 1, 2, 255]).unwrap();
    src
}

fn ctime(p: &std::path::Path) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.ctime(), m.ctime_nsec())
}

fn restore_latest_and_compare(env: &Env, src: &std::path::Path, name: &str) {
    let target = env.path(name);
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    assert_same_tree(src, &restored(&target, src));
}

#[test]
fn unchanged_entries_keep_their_xattrs_without_reading_them_again() {
    let env = Env::new();
    let src = xattr_tree(&env);
    let above = dirs_above(&src);
    let first = env.backup_json(&[&src], &[]);
    // The directories above, src itself, d, d/f and g.
    assert_eq!(u(&first, "xattrs_read"), above + 4, "{first}");

    let second = env.backup_json(&[&src], &[]);
    assert_eq!(u(&second, "files_unchanged"), 2, "{second}");
    assert_eq!(u(&second, "xattrs_read"), above, "only the directories above are read again: {second}");
    // What was not read again is still in the snapshot.
    restore_latest_and_compare(&env, &src, "target");
}

#[test]
fn an_xattr_change_alone_reaches_the_next_backup() {
    let env = Env::new();
    let src = xattr_tree(&env);
    let above = dirs_above(&src);
    env.backup_json(&[&src], &[]);

    let before: Vec<_> = ["d", "d/f", "g"].iter().map(|p| ctime(&src.join(p))).collect();
    xattr::remove(src.join("d"), "user.on-dir").unwrap();
    xattr::set(src.join("d/f"), "user.on-file", b"new value").unwrap();
    xattr::set(src.join("g"), "user.added", b"added").unwrap();
    let after: Vec<_> = ["d", "d/f", "g"].iter().map(|p| ctime(&src.join(p))).collect();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_ne!(b, a, "entry {i}: the xattr change did not move the ctime (the premise of the test)");
    }

    let second = env.backup_json(&[&src], &[]);
    // The restore has the new xattrs, the removed one gone.
    restore_latest_and_compare(&env, &src, "target");
    // Contents are the same, but the ctimes moved: the files count as
    // changed, and the xattrs of d, d/f and g are read again (not src's:
    // its own ctime did not move).
    assert_eq!(u(&second, "files_changed"), 2, "{second}");
    assert_eq!(u(&second, "xattrs_read"), above + 3, "{second}");
}
