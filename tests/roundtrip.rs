//! Exact round trip: everything the issue lists comes back exactly.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let t = TimeSpec::new(sec, nsec);
    utimensat(None, p, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
}

/// Builds a tree with every kind of entry and awkward metadata.
fn build_tree(src: &Path) {
    std::fs::create_dir_all(src.join("dir/nested/deeper")).unwrap();
    std::fs::create_dir(src.join("empty-dir")).unwrap();
    std::fs::write(src.join("empty-file"), b"").unwrap();
    std::fs::write(src.join("small.txt"), b"hello, world\n").unwrap();
    std::fs::write(src.join("dir/nested/big.bin"), random_bytes(3_000_000, 1)).unwrap();
    std::fs::write(src.join("dir/text.txt"), "line\n".repeat(50_000)).unwrap();
    // Arbitrary-byte names: not UTF-8, a newline, 255 bytes.
    std::fs::write(src.join(OsStr::from_bytes(b"caf\xe9-latin1")), b"latin1").unwrap();
    std::fs::write(src.join("new\nline"), b"newline in name").unwrap();
    std::fs::write(src.join("x".repeat(255)), b"long name").unwrap();
    // Symlinks, one dangling, one with a non-UTF-8 target.
    std::os::unix::fs::symlink("small.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", src.join("dangling")).unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"odd\xfftarget"), src.join("odd-link")).unwrap();
    // Hard links, across directories.
    std::fs::write(src.join("linked-a"), b"shared content").unwrap();
    std::fs::hard_link(src.join("linked-a"), src.join("dir/linked-b")).unwrap();
    std::fs::hard_link(src.join("linked-a"), src.join("linked-c")).unwrap();
    // A sparse file: data, a hole of 8 MiB, data, and a trailing hole.
    let f = std::fs::File::create(src.join("sparse")).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"start", 0).unwrap();
    f.write_all_at(&random_bytes(10_000, 2), 8 << 20).unwrap();
    f.set_len(20 << 20).unwrap();
    drop(f);
    // FIFO.
    nix::unistd::mkfifo(&src.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    // Modes, including set-gid and sticky bits.
    std::fs::set_permissions(src.join("small.txt"), std::fs::Permissions::from_mode(0o751)).unwrap();
    std::fs::set_permissions(src.join("dir/nested"), std::fs::Permissions::from_mode(0o2750)).unwrap();
    std::fs::set_permissions(src.join("empty-dir"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    // User xattrs (if the file system supports them, it must keep them).
    xattr::set(src.join("small.txt"), "user.comment", b"a note").unwrap();
    xattr::set(src.join("dir"), "user.binary", &[0u8, 1, 2, 255]).unwrap();
    if is_root() {
        // Ownership and device nodes need root.
        std::os::unix::fs::lchown(src.join("small.txt"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(src.join("link"), Some(4321), Some(8765)).unwrap();
        nix::sys::stat::mknod(
            &src.join("null-dev"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
    }
    // Nanosecond mtimes everywhere, directories last.
    for (i, p) in ["small.txt", "empty-file", "sparse", "fifo", "dir/text.txt", "link", "dangling"].iter().enumerate() {
        set_mtime(&src.join(p), 1_600_000_000 + i as i64, 123_456_789 + i as i64);
    }
    for p in ["dir/nested/deeper", "dir/nested", "dir", "empty-dir"] {
        set_mtime(&src.join(p), 1_500_000_000, 987_654_321);
    }
}

#[test]
fn every_kind_of_entry_round_trips_exactly() {
    let env = Env::new();
    let src = env.path("src");
    build_tree(&src);
    set_mtime(&src, 1_400_000_000, 42);
    let snap = env.backup_json(&[&src], &[]);
    assert_eq!(snap["summary"]["skipped"], serde_json::Value::Null, "nothing skipped: {snap}");
    let target = env.path("target");
    // As root, the device node comes back only when asked.
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap(), "--verify", "--restore-privileged"]);
    assert_same_tree(&src, &restored(&target, &src));
    assert!(env.ok(&["check", "--read-data"]).is_empty(), "check printed problems");
}

#[test]
fn names_with_arbitrary_bytes_list_and_dump_exactly() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    let name = b"caf\xe9\nname";
    std::fs::write(src.join(OsStr::from_bytes(name)), b"content").unwrap();
    env.backup_json(&[&src], &[]);
    let out = env.command().args(["ls", "latest"]).output().unwrap();
    let mut expected = src.as_os_str().as_bytes().to_vec();
    expected.push(b'/');
    expected.extend_from_slice(name);
    assert!(out.stdout.windows(expected.len()).any(|w| w == expected.as_slice()), "ls output lacks the raw name");
    let path = format!("{}/{}", src.display(), "missing");
    let miss = env.cairn(&["dump", "latest", &path]);
    assert_eq!(miss.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&miss.stderr).contains("missing"));
}

#[test]
fn dump_writes_one_file_to_stdout() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir(&src).unwrap();
    let data = random_bytes(700_000, 9);
    std::fs::write(src.join("f.bin"), &data).unwrap();
    env.backup_json(&[&src], &[]);
    let out = env.cairn(&["dump", "latest", &format!("{}/f.bin", src.display())]);
    assert!(out.status.success());
    assert!(out.stdout == data, "dumped bytes differ");
}

#[test]
fn stdin_backup_stores_the_stream_as_a_named_file() {
    let env = Env::new();
    let data = random_bytes(1_500_000, 5);
    let mut child = env
        .command()
        .args(["backup", "--stdin", "--stdin-name", "app.sql", "--tag", "db"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(id.len(), 64, "backup prints the snapshot id: {id}");
    let dumped = env.cairn(&["dump", &id[..8], "/app.sql"]);
    assert!(dumped.stdout == data);
    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(snaps[0]["tags"][0], "db");
    assert_eq!(snaps[0]["id"], id);
}

#[test]
fn include_and_exclude_select_what_is_restored() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::create_dir_all(src.join("b")).unwrap();
    std::fs::write(src.join("a/keep.c"), b"c").unwrap();
    std::fs::write(src.join("a/skip.h"), b"h").unwrap();
    std::fs::write(src.join("b/other.c"), b"o").unwrap();
    env.backup_json(&[&src], &[]);
    let t = env.path("t");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap(), "--include", "*.c", "--exclude", "other.c"]);
    let r = restored(&t, &src);
    assert!(r.join("a/keep.c").exists());
    assert!(!r.join("a/skip.h").exists());
    assert!(!r.join("b/other.c").exists());
}

#[test]
fn backup_excludes_by_name_path_file_and_marker() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("cache")).unwrap();
    std::fs::create_dir_all(src.join("tmpdir")).unwrap();
    std::fs::create_dir_all(src.join("data")).unwrap();
    std::fs::write(src.join("a.log"), b"x").unwrap();
    std::fs::write(src.join("cache/CACHEDIR.TAG"), b"x").unwrap();
    std::fs::write(src.join("cache/blob"), b"x").unwrap();
    std::fs::write(src.join("tmpdir/t"), b"x").unwrap();
    std::fs::write(src.join("data/keep"), b"x").unwrap();
    let ex = env.path("excludes");
    std::fs::write(&ex, format!("# comment\n\n{}/tmpdir\n", src.display())).unwrap();
    env.ok(&[
        "backup",
        src.to_str().unwrap(),
        "--exclude",
        "*.log",
        "--exclude-file",
        ex.to_str().unwrap(),
        "--exclude-if-present",
        "CACHEDIR.TAG",
    ]);
    let ls = env.ok(&["ls", "latest", src.to_str().unwrap()]);
    assert!(ls.contains("data/keep"), "{ls}");
    assert!(!ls.contains("a.log"), "{ls}");
    assert!(!ls.contains("tmpdir/t"), "{ls}");
    assert!(!ls.contains("cache/blob"), "{ls}");
}

#[test]
fn bug_a_path_given_before_its_parent_dropped_the_rest_of_the_parent() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("a/in-a"), b"1").unwrap();
    std::fs::write(src.join("beside-a"), b"2").unwrap();
    env.ok(&["backup", src.join("a").to_str().unwrap(), src.to_str().unwrap()]);
    let ls = env.ok(&["ls", "latest", src.to_str().unwrap()]);
    assert!(ls.contains("/src/a/in-a") && ls.contains("/src/beside-a"), "{ls}");
}

#[test]
fn bug_a_symlinked_directory_above_the_backup_path_hid_everything_below_it() {
    let env = Env::new();
    let real = env.path("real");
    std::fs::create_dir_all(real.join("data")).unwrap();
    std::fs::write(real.join("data/file"), b"content").unwrap();
    let via = env.path("via");
    std::os::unix::fs::symlink(&real, &via).unwrap();
    env.ok(&["backup", via.join("data").to_str().unwrap()]);
    let t = env.path("t");
    env.ok(&["restore", "latest", "--target", t.to_str().unwrap()]);
    assert_eq!(std::fs::read(restored(&t, &via.join("data/file"))).unwrap(), b"content");
    assert!(std::fs::symlink_metadata(restored(&t, &via)).unwrap().is_dir());
}

#[test]
fn init_refuses_a_location_that_is_not_empty() {
    let env = Env::new();
    let out = env.cairn(&["init", "--kdf-memory-kib", "19456"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[test]
fn an_empty_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["-r", dir.path().join("r").to_str().unwrap(), "init"])
        .env("CAIRN_PASSWORD", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("password is empty"));
    assert!(!dir.path().join("r").exists(), "nothing was created");
}

/// Was a unit test that changed the working directory of the whole test
/// process (racing the tests beside it); the binary has its own.
#[test]
fn bug_a_relative_root_failed_to_create_its_first_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .current_dir(dir.path())
        .args(["init", "--kdf-memory-kib", "19456"])
        .env("CAIRN_REPO", "repo")
        .env("CAIRN_PASSWORD", common::PASSWORD)
        .env_remove("CAIRN_PASSWORD_FILE")
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("repo/keys").read_dir().unwrap().next().is_some(), "the key slot is in ./repo/keys");
}
