//! Invariant 4 under attack: root restores raced by an unprivileged user.
//!
//! A user owns directories inside the restore target. While root restores
//! (or drills) in a loop, that user keeps swapping directories of the
//! target for symlinks to a directory only root may enter, and back.
//! Whatever each restore reports, nothing outside the target may change:
//! not one byte, name, mode or owner of the root-only directory, nor of the
//! source tree. Each scenario (an existing target, fresh targets, drills
//! with their cleanup) runs for at least `MIN_RACE` and `MIN_ROUNDS`
//! rounds, however long that takes. Every other restore runs in batches
//! of a few items (`--batch-items 7`), so that directories one batch made
//! are looked up again by the next while they are being swapped.
//!
//! The swapper is a small Perl loop run as `nobody` through `setpriv`
//! (Perl is part of every Debian-like base system; a shell loop forks for
//! every rename and swaps too slowly). These tests need root: run as
//! another user, they fail and say so.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a test prints what it measured")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NOBODY: u32 = 65534;
const MIN_RACE: Duration = Duration::from_secs(10);
const MIN_ROUNDS: usize = 20;

/// Renames each of the given paths (relative to the newest numbered
/// target) aside, puts a symlink to the root-only directory in its place
/// for a moment, then puts the directory back; prints how many symlinks it
/// planted. A failed step is simply tried again on the next pass.
const SWAPPER: &str = r#"
use strict; use warnings;
my ($stop, $targets, $secret, @rel) = @ARGV;
my ($planted, $i) = (0, 0);
until (-e $stop) {
    select(undef, undef, undef, 0.0002);
    opendir(my $dh, $targets) or next;
    my ($t) = sort { $b <=> $a } grep { /^\d+$/ } readdir($dh);
    closedir($dh);
    next unless defined $t;
    for my $r (@rel) {
        my $p = "$targets/$t/$r";
        $i++;
        next unless rename($p, "$p.aside$i");
        if (symlink($secret, $p)) {
            $planted++;
            select(undef, undef, undef, 0.0005);
            unlink($p) if -l $p;
        }
        rename("$p.aside$i", $p);
        select(undef, undef, undef, 0.0005);
    }
}
print "$planted\n";
"#;

fn require_root() {
    assert!(
        is_root(),
        "tests/restore_race.rs races a root restore against an unprivileged user and must run as root \
         (for example `sudo -E cargo test --test restore_race`); it does not skip"
    );
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn own(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid)).unwrap();
}

fn write(p: &Path, data: &[u8], mode: u32, uid: u32) {
    std::fs::write(p, data).unwrap();
    chmod(p, mode);
    own(p, uid);
}

fn mkdir(p: &Path, mode: u32, uid: u32) {
    std::fs::create_dir(p).unwrap();
    chmod(p, mode);
    own(p, uid);
}

/// What `lstat` and a read say about one entry (atime left out).
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    mode: u32,
    owner: (u32, u32),
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    content: Option<Vec<u8>>,
    link: Option<PathBuf>,
}

/// Every entry below `root` (and `root` itself, as ""), never following a
/// symlink.
fn survey(root: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let p = root.join(&rel);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        if ft.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
        let seen = Seen {
            mode: m.mode(),
            owner: (m.uid(), m.gid()),
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            content: ft.is_file().then(|| std::fs::read(&p).unwrap()),
            link: ft.is_symlink().then(|| std::fs::read_link(&p).unwrap()),
        };
        out.insert(rel, seen);
    }
    out
}

/// A repository with one snapshot of a tree where a user owns
/// `home/user` and everything below it, a root-only directory holding
/// entries of the same names, and a directory for numbered targets.
struct Arena {
    env: Env,
    base: PathBuf,
    src: PathBuf,
    secret: PathBuf,
    targets: PathBuf,
    policies: PathBuf,
}

impl Arena {
    fn new() -> Arena {
        require_root();
        let env = Env::new();
        let base = env.dir.path().canonicalize().unwrap();
        // The user must reach the targets.
        chmod(&base, 0o755);
        let src = base.join("src");
        mkdir(&src, 0o755, 0);
        mkdir(&src.join("home"), 0o755, 0);
        let user = src.join("home/user");
        mkdir(&user, 0o755, NOBODY);
        write(&user.join("notes.txt"), b"the user's notes\n", 0o644, NOBODY);
        let sub = user.join("sub");
        mkdir(&sub, 0o777, NOBODY);
        for i in 0..150 {
            write(&sub.join(format!("f{i:03}")), format!("snapshot file {i}\n").repeat(8).as_bytes(), 0o644, NOBODY);
        }
        // Several chunks each (the test repository cuts 16-256 KiB chunks).
        write(&sub.join("big0"), &random_bytes(700_000, 1), 0o600, NOBODY);
        write(&sub.join("big1"), &random_bytes(500_000, 2), 0o666, NOBODY);
        std::os::unix::fs::symlink("f000", sub.join("link")).unwrap();
        own(&sub.join("link"), NOBODY);
        nix::unistd::mkfifo(&sub.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
        own(&sub.join("fifo"), NOBODY);
        let deep = sub.join("deep");
        mkdir(&deep, 0o777, NOBODY);
        write(&deep.join("x"), b"snapshot x\n", 0o644, NOBODY);
        write(&deep.join("y"), b"snapshot y\n", 0o755, NOBODY);

        // What a swapped `sub` or `sub/deep` would lead to.
        let secret = base.join("secret");
        mkdir(&secret, 0o700, 0);
        for name in ["f000", "f001", "f002", "f149", "big0", "big1", "link", "fifo", "x", "y", "notes.txt"] {
            write(&secret.join(name), format!("root only: {name}\n").as_bytes(), 0o600, 0);
        }
        mkdir(&secret.join("deep"), 0o700, 0);
        for name in ["x", "y"] {
            write(&secret.join("deep").join(name), format!("root only: deep/{name}\n").as_bytes(), 0o600, 0);
        }

        let policies = base.join("policies");
        std::fs::create_dir(&policies).unwrap();
        let policy = format!(
            "name = \"race\"\n[source]\npaths = [\"{}\"]\n[repository]\nurl = \"{}\"\n",
            src.display(),
            env.repo.display()
        );
        std::fs::write(policies.join("race.toml"), policy).unwrap();
        env.ok(&["backup", "--policy", "race", "--policies", policies.to_str().unwrap()]);
        let targets = base.join("targets");
        std::fs::create_dir(&targets).unwrap();
        chmod(&targets, 0o755);
        Arena { env, base, src, secret, targets, policies }
    }

    /// Where the user's `sub` lands inside a target, relative to it.
    fn sub_in_target(&self) -> PathBuf {
        self.src.strip_prefix("/").unwrap().join("home/user/sub")
    }

    /// The directories the swapper swaps, relative to a target: the
    /// target's first entry (movable when the user owns the target), the
    /// user's `sub` and `sub/deep`.
    fn swap_points(&self) -> Vec<PathBuf> {
        let top = self.src.strip_prefix("/").unwrap().components().next().unwrap();
        vec![PathBuf::from(top.as_os_str()), self.sub_in_target(), self.sub_in_target().join("deep")]
    }

    /// Everything outside the targets that a restore could reach.
    fn outside(&self) -> (BTreeSet<String>, BTreeMap<PathBuf, Seen>, BTreeMap<PathBuf, Seen>) {
        let names = std::fs::read_dir(&self.base)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        (names, survey(&self.secret), survey(&self.src))
    }

    fn assert_outside_unchanged(&self, before: &(BTreeSet<String>, BTreeMap<PathBuf, Seen>, BTreeMap<PathBuf, Seen>)) {
        let after = self.outside();
        assert_eq!(before.0, after.0, "entries appeared or vanished next to the targets");
        for (what, b, a) in [("root-only directory", &before.1, &after.1), ("source tree", &before.2, &after.2)] {
            for (rel, seen) in b {
                assert_eq!(Some(seen), a.get(rel), "{what}: `{}` changed", rel.display());
            }
            let new: Vec<&PathBuf> = a.keys().filter(|k| !b.contains_key(*k)).collect();
            assert!(new.is_empty(), "{what}: new entries {new:?}");
        }
    }

    /// A new numbered target, empty and owned by the user.
    fn user_target(&self, n: usize) -> PathBuf {
        let t = self.targets.join(n.to_string());
        mkdir(&t, 0o755, NOBODY);
        t
    }

    fn restore(&self, target: &Path) -> std::process::Output {
        self.env.cairn(&["restore", "latest", "--target", target.to_str().unwrap()])
    }

    /// A restore in batches of a few items, so that directories made by
    /// one batch are reached again by the next while the user swaps them.
    fn restore_in_batches(&self, target: &Path) -> std::process::Output {
        self.env.cairn(&["restore", "latest", "--batch-items", "7", "--target", target.to_str().unwrap()])
    }

    /// Round `n` of a race restores in small batches every other time.
    fn restore_round(&self, target: &Path, n: usize) -> std::process::Output {
        if n % 2 == 1 {
            self.restore_in_batches(target)
        } else {
            self.restore(target)
        }
    }
}

/// The swapper process, stopped (and waited for) on drop as well.
struct Swapper {
    child: Option<Child>,
    stop: PathBuf,
}

impl Swapper {
    fn start(a: &Arena) -> Swapper {
        // Not a number: the swapper never takes it for a target.
        let stop = a.targets.join("stop");
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "perl", "-e", SWAPPER])
            .arg(&stop)
            .arg(&a.targets)
            .arg(&a.secret)
            .args(a.swap_points())
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("cannot start `setpriv … perl` (setpriv is in util-linux; perl in perl-base)");
        Swapper { child: Some(child), stop }
    }

    /// Stops the swapper; returns how many symlinks it planted.
    fn finish(mut self) -> u64 {
        std::fs::write(&self.stop, b"").unwrap();
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the swapper failed: {stderr}");
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("swapper output: {stderr}"))
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = std::fs::write(&self.stop, b"");
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `round` until both `MIN_ROUNDS` rounds and `MIN_RACE` have passed,
/// with the swapper running; returns how many symlinks it planted.
fn race(a: &Arena, mut round: impl FnMut(usize)) -> u64 {
    let swapper = Swapper::start(a);
    let start = Instant::now();
    let mut n = 0;
    while n < MIN_ROUNDS || start.elapsed() < MIN_RACE {
        round(n);
        n += 1;
    }
    let planted = swapper.finish();
    eprintln!("{n} rounds in {:.1} s; the swapper planted {planted} symlinks", start.elapsed().as_secs_f64());
    planted
}

fn assert_finished(o: &std::process::Output, allowed: &[i32], what: &str) {
    let code = o.status.code();
    assert!(
        code.is_some_and(|c| allowed.contains(&c)),
        "{what} exited with {code:?}, not one of {allowed:?}:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn restores_into_an_existing_tree_raced_by_its_user_never_write_outside_the_target() {
    let a = Arena::new();
    let target = a.targets.join("0");
    let o = a.restore(&target);
    assert_finished(&o, &[0], "the first restore");
    assert_eq!(std::fs::symlink_metadata(target.join(a.sub_in_target())).unwrap().uid(), NOBODY);
    let before = a.outside();
    let planted = race(&a, |n| assert_finished(&a.restore_round(&target, n), &[0, 3], "a restore"));
    assert!(planted > 0, "the swapper never planted a symlink: the race did not happen");
    a.assert_outside_unchanged(&before);
}

#[test]
fn restores_into_fresh_targets_raced_by_their_owner_never_write_outside_the_target() {
    let a = Arena::new();
    let before = a.outside();
    let planted = race(&a, |n| {
        let target = a.user_target(n);
        assert_finished(&a.restore_round(&target, n), &[0, 3], "a restore");
        if n >= 2 {
            // std's remove_dir_all does not follow symlinks.
            std::fs::remove_dir_all(a.targets.join((n - 2).to_string())).unwrap();
        }
    });
    assert!(planted > 0, "the swapper never planted a symlink: the race did not happen");
    a.assert_outside_unchanged(&before);
}

#[test]
fn drills_and_their_cleanup_raced_by_the_owner_of_the_scratch_target_never_touch_anything_outside_it() {
    let a = Arena::new();
    let state = a.base.join("state");
    let before = a.outside();
    let mut completed = 0;
    let planted = race(&a, |n| {
        let target = a.user_target(n);
        let o = a
            .env
            .command()
            .args(["drill", "--policy", "race", "--full", "--json", "--policies"])
            .arg(&a.policies)
            .arg("--state")
            .arg(&state)
            .arg("--target")
            .arg(&target)
            .env("CAIRN_REPO", "/nonexistent")
            .output()
            .unwrap();
        // 0: passed; 5: the user's swaps made verification fail; 1: they
        // left something cleanup could not remove (and nothing else).
        assert_finished(&o, &[0, 1, 5], "a drill");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.code() != Some(1) || stderr.contains("error: cleaning up:"), "a drill failed:\n{stderr}");
        completed += 1;
        if n >= 2 {
            std::fs::remove_dir_all(a.targets.join((n - 2).to_string())).unwrap();
        }
    });
    assert!(planted > 0, "the swapper never planted a symlink: the race did not happen");
    assert!(completed >= MIN_ROUNDS);
    a.assert_outside_unchanged(&before);
}

/// A forged snapshot where root's file `home/user/f` lies in the user's
/// own directory and `srv/g`, a hard link of it, comes batches later.
fn snapshot_with_a_root_file_linked_from_a_users_directory(env: &Env) {
    let repo = common::forge::open(&env.repo, PASSWORD);
    let mut b = common::forge::Builder::new(&repo);
    let f = b.hard_linked(b"f", b"root's file\n", 42, 7, 2);
    let mut user = b.dir(b"user", vec![f]);
    user.uid = NOBODY;
    user.gid = NOBODY;
    let home = b.dir(b"home", vec![user]);
    let pad = (0..20).map(|i| b.file(format!("p{i:02}").as_bytes(), format!("pad {i}\n").as_bytes())).collect();
    let pad = b.dir(b"pad", pad);
    let g = b.hard_linked(b"g", b"root's file\n", 42, 7, 2);
    let srv = b.dir(b"srv", vec![g]);
    b.snapshot(vec![home, pad, srv]);
}

/// A root restore in batches gives `home/user` to its user in the batch
/// that restores `home/user/f`; before the batch that links `srv/g` to
/// `f`, the user (as `nobody`, at the failpoint `restore::between_batches`)
/// replaces `f` by her own copy. `srv/g` must never become her inode: it
/// is restored from its own content, root's, and named (exit 3).
#[test]
fn bug_a_user_who_swaps_a_file_between_batches_never_gets_a_later_hard_link_to_her_inode() {
    require_root();
    let env = Env::new();
    let base = env.dir.path().canonicalize().unwrap();
    chmod(&base, 0o755);
    snapshot_with_a_root_file_linked_from_a_users_directory(&env);
    let restore = |target: &Path, pause: Option<(&Pause, usize)>| {
        let mut cmd = env.command();
        cmd.args(["--json", "restore", "latest", "--verify", "--batch-items", "7", "--target"]).arg(target);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some((p, n)) = pause {
            p.arm(&mut cmd, &format!("restore::between_batches:{n}"));
        }
        cmd.spawn().unwrap()
    };
    let first = restore(&base.join("t0"), None).wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    let batches = serde_json::from_slice::<serde_json::Value>(&first.stdout).unwrap()["report"]["batches"]
        .as_u64()
        .unwrap() as usize;
    // The batch after which the user owns `home/user` and may reach it,
    // and `srv/g` is not linked yet.
    let mut swapped = None;
    for n in 1..batches {
        let target = base.join(format!("t{n}"));
        mkdir(&target, 0o755, 0);
        let mut pause = Pause::new(base.join(format!("pause{n}")));
        let child = restore(&target, Some((&pause, n)));
        pause.wait_paused(Duration::from_secs(120));
        let user = std::fs::symlink_metadata(target.join("home/user")).ok();
        let home = std::fs::symlink_metadata(target.join("home")).ok();
        let ready = user.is_some_and(|m| m.uid() == NOBODY)
            && home.is_some_and(|m| m.mode() & 0o777 == 0o755)
            && !target.join("srv/g").exists();
        if ready {
            let f = target.join("home/user/f");
            let racer = Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c"])
                .arg(r#"cat "$1" > "$1.mine" && mv -f "$1.mine" "$1""#)
                .arg("racer")
                .arg(&f)
                .env_clear()
                .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                .output()
                .unwrap();
            assert!(racer.status.success(), "the racer failed: {}", String::from_utf8_lossy(&racer.stderr));
            assert_eq!(std::fs::symlink_metadata(&f).unwrap().uid(), NOBODY);
        }
        pause.release();
        let out = child.wait_with_output().unwrap();
        if ready {
            swapped = Some((target, out));
            break;
        }
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let (target, out) = swapped.expect("no batch left `home/user` to its user before `srv/g` was linked");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failures = report["report"]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["path"], "srv/g");
    let reason = failures[0]["reason"].as_str().unwrap();
    assert!(reason.contains("not made") && reason.contains("restored from its own content"), "{reason}");
    let (f, g) = (target.join("home/user/f"), target.join("srv/g"));
    let (fm, gm) = (std::fs::symlink_metadata(&f).unwrap(), std::fs::symlink_metadata(&g).unwrap());
    assert_eq!(fm.uid(), NOBODY, "the user's own file stays hers");
    assert_eq!((gm.uid(), gm.nlink()), (0, 1), "`srv/g` is root's own inode");
    assert_ne!((gm.dev(), gm.ino()), (fm.dev(), fm.ino()));
    assert_eq!(std::fs::read(&g).unwrap(), b"root's file\n");
}
