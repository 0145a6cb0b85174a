//! Invariant 9 for what snapshots say: forged or damaged snapshots and
//! trees end in a named error or exit 3/5, never in silent wrong data, an
//! abort, or unbounded memory or time. Each case is built with the
//! malicious-repository builder (`common::forge`) and run through the real
//! binary, under GNU time for its peak memory.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::process::Output;

use common::forge::{self, run_measured, Builder};
use common::{Env, PASSWORD};

/// The peak memory every command must stay under, in KiB.
const MAX_RSS_KIB: u64 = 200 * 1024;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn out_err(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status, text(&o.stdout), text(&o.stderr))
}

/// Runs cairn under GNU time; asserts it was not killed by a signal (an
/// abort, a stack overflow) and stayed under the memory bound.
fn measured(env: &Env, args: &[&str]) -> Output {
    let (o, rss) = run_measured(env.command().args(args));
    assert!(o.status.signal().is_none(), "cairn {args:?} died of a signal: {}", out_err(&o));
    // GNU time reports a command killed by a signal as its own exit status
    // 128 + n; no command of cairn exits above 5.
    assert!(o.status.code().is_some_and(|c| c <= 5), "cairn {args:?}: {}", out_err(&o));
    assert!(rss < MAX_RSS_KIB, "cairn {args:?} peaked at {} MB: {}", rss / 1024, out_err(&o));
    o
}

fn assert_exit(o: &Output, code: i32, needles: &[&str]) {
    let all = format!("{}{}", text(&o.stdout), text(&o.stderr));
    assert_eq!(o.status.code(), Some(code), "{}", out_err(o));
    for n in needles {
        assert!(all.contains(n), "`{n}` is not named: {}", out_err(o));
    }
}

fn open(env: &Env) -> cairn::repo::Repository {
    forge::open(&env.repo, PASSWORD)
}

/// Accepts a forged snapshot as an admin would: no backup record vouches
/// for it, which `check` names as a finding of its own (exit 5). The
/// tests that expect `check` to pass on a well-formed forgery accept it, so
/// that what remains is what they are about.
fn accept(env: &Env, sid: &cairn::id::Id) {
    env.ok(&["evidence", "accept", &sid.to_hex(), "--reason", "made by the test's forge"]);
}

// ------------------------------------------------------------ hard links and sizes

#[test]
fn a_hard_link_group_with_two_contents_is_damage_and_each_member_keeps_its_own() {
    let env = Env::new();
    let repo = open(&env);
    let mut b = Builder::new(&repo);
    let a = b.hard_linked(b"a", b"the content of a\n", 66, 1234, 2);
    let other = b.hard_linked(b"b", b"b has other content, longer\n", 66, 1234, 2);
    let sid = b.snapshot(vec![a, other]).short();

    let o = measured(&env, &["check", "--read-data"]);
    assert_exit(&o, 5, &[&format!("snapshot {sid}"), "/b", "/a", "hard link"]);

    let target = env.path("r");
    let o = measured(&env, &["restore", "latest", "--verify", "--target", target.to_str().unwrap()]);
    assert_exit(&o, 3, &["/b", "hard link"]);
    assert_eq!(std::fs::read(target.join("a")).unwrap(), b"the content of a\n");
    assert_eq!(std::fs::read(target.join("b")).unwrap(), b"b has other content, longer\n");
    let (ma, mb) = (std::fs::metadata(target.join("a")).unwrap(), std::fs::metadata(target.join("b")).unwrap());
    assert_ne!(ma.ino(), mb.ino(), "b was linked to a");
}

#[test]
fn a_hard_link_group_that_agrees_is_still_restored_as_one_inode() {
    let env = Env::new();
    let repo = open(&env);
    let mut b = Builder::new(&repo);
    let a = b.hard_linked(b"a", b"shared\n", 66, 1234, 2);
    let c = b.hard_linked(b"c", b"shared\n", 66, 1234, 2);
    let sid = b.snapshot(vec![a, c]);
    accept(&env, &sid);
    env.ok(&["check", "--read-data"]);
    let target = env.path("r");
    env.ok(&["restore", "latest", "--verify", "--target", target.to_str().unwrap()]);
    let (ma, mc) = (std::fs::metadata(target.join("a")).unwrap(), std::fs::metadata(target.join("c")).unwrap());
    assert_eq!(ma.ino(), mc.ino());
}

#[test]
fn a_size_that_disagrees_with_the_chunks_is_damage_and_the_chunks_are_restored() {
    let env = Env::new();
    let repo = open(&env);
    let mut b = Builder::new(&repo);
    let content = b"twenty-two bytes here\n";
    assert_eq!(content.len(), 22);
    let small = b.file_claiming(b"five", content, 5);
    let huge = b.file_claiming(b"huge", content, 1 << 40);
    let sid = b.snapshot(vec![small, huge]).short();

    let o = measured(&env, &["check"]);
    assert_exit(
        &o,
        5,
        &[
            &format!("snapshot {sid}"),
            "/five: its size says 5 bytes, its chunks hold 22",
            "/huge: its size says 1099511627776 bytes, its chunks hold 22",
        ],
    );

    let target = env.path("r");
    let o = measured(&env, &["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_exit(&o, 3, &["/five", "/huge", "its chunks hold 22"]);
    assert_eq!(std::fs::read(target.join("five")).unwrap(), content);
    assert_eq!(std::fs::read(target.join("huge")).unwrap(), content);
}

// ------------------------------------------------------------ the newest snapshot

/// Two backups; the newest snapshot file then loses a byte. Returns the
/// older snapshot's id and the damaged one's.
fn damaged_newest(env: &Env) -> (String, String) {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"first\n").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    std::fs::write(src.join("f"), b"second\n").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let list: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    let id = |i: usize| list[i]["id"].as_str().unwrap().to_string();
    let (older, newest) = (id(0), id(1));
    forge::flip_a_byte(&env.repo, &format!("snapshots/{newest}"));
    (older, newest)
}

#[test]
fn a_damaged_newest_snapshot_is_listed_as_damaged_and_latest_refuses() {
    let env = Env::new();
    let (older, newest) = damaged_newest(&env);
    let short = &newest[..8];

    let o = measured(&env, &["snapshots"]);
    assert_exit(&o, 5, &[&older[..8], &format!("{short}  damaged: ")]);
    let o = measured(&env, &["snapshots", "--json"]);
    assert_eq!(o.status.code(), Some(5), "{}", out_err(&o));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(list[0]["id"], older.as_str());
    assert_eq!(list[1]["id"], newest.as_str());
    assert!(list[1]["damaged"].as_str().unwrap().contains("failed authentication"), "{list}");

    let target = env.path("r");
    for cmd in [&["restore", "latest", "--target", target.to_str().unwrap()][..], &["ls", "latest"]] {
        let o = measured(&env, cmd);
        assert_exit(
            &o,
            1,
            &[&format!("snapshot {short} cannot be read"), "name a snapshot explicitly or run `cairn check`"],
        );
    }
    assert!(!target.exists(), "restore started anyway");
    let o = measured(&env, &["find", "f", "--snapshot", "latest"]);
    assert_exit(&o, 1, &[&format!("snapshot {short} cannot be read"), "name a snapshot explicitly"]);
    // A search of every snapshot searches the readable ones and names the other.
    let o = measured(&env, &["find", "f"]);
    assert_exit(&o, 3, &[&format!("not searched: snapshot {short} cannot be read"), &older[..8]]);
    // Named explicitly, the older snapshot restores.
    let o = measured(&env, &["restore", &older[..8], "--target", target.to_str().unwrap()]);
    assert_exit(&o, 0, &[]);
    let f = common::restored(&target, &env.path("src")).join("f");
    assert_eq!(std::fs::read(f).unwrap(), b"first\n");
}

#[test]
fn a_backup_names_a_damaged_snapshot_it_could_not_consider_as_parent() {
    let env = Env::new();
    let (_, newest) = damaged_newest(&env);
    let o = env.cairn(&["backup", env.path("src").to_str().unwrap()]);
    assert_exit(&o, 0, &[&format!("snapshot {} cannot be read", &newest[..8])]);
}

// ------------------------------------------------------------ deep and wide trees

#[test]
fn a_tree_10000_levels_deep_is_damage_not_a_crash() {
    let env = Env::new();
    let repo = open(&env);
    let mut b = Builder::new(&repo);
    let root = b.chain(10_000);
    let sid = b.snapshot_of(root).short();

    let target = env.path("r");
    for cmd in [&["restore", "latest", "--target", target.to_str().unwrap()][..], &["ls", "latest"], &["find", "f"]] {
        let o = measured(&env, cmd);
        assert_exit(&o, 1, &["directories nest deeper than 4096 levels"]);
    }
    assert!(!target.exists(), "restore started anyway");
    let o = measured(&env, &["check"]);
    assert_exit(&o, 5, &[&format!("snapshots/{}", sid), "directories nest deeper than 4096 levels"]);
}

#[test]
fn two_to_the_32_paths_in_34_blobs_are_checked_as_33_trees_and_refused_by_ls_and_restore() {
    let env = Env::new();
    let repo = open(&env);
    let mut b = Builder::new(&repo);
    let root = b.doubling(32);
    let sid = b.snapshot_of(root);
    accept(&env, &sid);

    let o = measured(&env, &["check", "--read-data", "--json"]);
    assert_exit(&o, 0, &[]);
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["trees"], 33, "{report}");
    assert_eq!(report["blobs_read"], 34, "{report}");

    let target = env.path("r");
    for cmd in [
        &["restore", "latest", "--target", target.to_str().unwrap()][..],
        &["ls", "latest"],
        &["ls", "latest", "--json"],
    ] {
        let o = measured(&env, cmd);
        assert_exit(&o, 1, &["expands to more than 100000000 entries", "--max-entries"]);
        assert!(o.stdout.is_empty(), "{cmd:?} printed before refusing: {}", out_err(&o));
    }
    assert!(!target.exists(), "restore started anyway");
    // A subtree of 2^4 paths below it lists, within a lower limit.
    let o = measured(&env, &["ls", "latest", &"/a".repeat(28), "--max-entries", "100"]);
    assert_exit(&o, 0, &[]);
    let files = text(&o.stdout).lines().filter(|l| l.ends_with("/f")).count();
    assert_eq!(files, 16, "{}", out_err(&o));
    // A raised limit is obeyed, and the refusal names it.
    let o = measured(&env, &["ls", "latest", "--max-entries", "1000"]);
    assert_exit(&o, 1, &["expands to more than 1000 entries"]);
    // find reads only what its patterns need, so it does not measure
    // first: it stops once it has examined more entries than allowed.
    let o = measured(&env, &["find", "nothing-by-this-name", "--max-entries", "100000"]);
    assert_exit(&o, 1, &["expands to more than 100000 entries"]);
}
