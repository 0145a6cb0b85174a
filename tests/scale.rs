//! Backups of many files: memory that does not grow with the number of
//! files, and trees that are the same whether written while the scan goes
//! on or after it.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a test prints what it measured")]

mod common;

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use cairn::backend::LocalBackend;
use cairn::chunk::Chunker;
use cairn::fsmeta::{self, NameCache};
use cairn::repo::{tree, Node, NodeKind, Repository, Tree};
use cairn::Id;
use common::*;

/// Runs `cmd` to its end and returns its peak resident memory in KiB, from
/// the rusage the kernel keeps for that one child (reaped by `wait4`, not
/// by `Child::wait`), and what it wrote to stdout.
#[allow(clippy::zombie_processes)]
fn peak_rss_kib(mut cmd: Command, log: &Path) -> (i64, String) {
    let out = log.with_extension("out");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, with valid pointers.
    let r = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(r, child.id() as i32, "wait4: {}", std::io::Error::last_os_error());
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    assert!(ok, "{cmd:?} failed ({status}): {}", std::fs::read_to_string(log).unwrap_or_default());
    (usage.ru_maxrss, std::fs::read_to_string(out).unwrap())
}

/// Peak memory of a backup of 200,000 files, whatever their number: the
/// scan keeps the current path and the directories with files in flight,
/// not a node per file. Measured with this test's debug build: the scan
/// that held every node until the end peaked at 128,400 KiB, the streaming
/// one at 25,444 KiB.
const BACKUP_PEAK_KIB: i64 = 64 * 1024;

/// Peak memory of the restore of those files: it plans and writes a
/// bounded batch at a time. Measured with this test's debug build: the
/// restore that planned the whole snapshot at once peaked at 125,680 KiB.
const RESTORE_PEAK_KIB: i64 = 64 * 1024;

#[test]
fn a_backup_and_a_restore_of_200_000_empty_files_stay_within_a_fixed_memory_bound() {
    let env = Env::new();
    let src = env.path("src");
    for d in 0..2000 {
        let dir = src.join(format!("d{d:04}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            std::fs::File::create(dir.join(format!("empty-file-number-{f:03}"))).unwrap();
        }
    }
    let mut backup = env.command();
    backup.args(["--threads", "2", "backup", src.to_str().unwrap()]);
    let (peak, _) = peak_rss_kib(backup, &env.path("backup.log"));
    assert!(peak < BACKUP_PEAK_KIB, "the backup peaked at {peak} KiB");

    let t = env.path("t");
    let mut restore = env.command();
    restore.args(["--threads", "2", "--json", "restore", "latest", "--target", t.to_str().unwrap()]);
    let (restore_peak, out) = peak_rss_kib(restore, &env.path("restore.log"));
    eprintln!("peak RSS: backup {peak} KiB, restore {restore_peak} KiB");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let report = &report["report"];
    assert_eq!(report["files"], 200_000);
    // The plan of 202,000-odd items is held a bounded batch at a time.
    let (batches, largest) = (report["batches"].as_u64().unwrap(), report["largest_batch"].as_u64().unwrap());
    assert!(largest <= cairn::restore::plan::BATCH_ITEMS as u64, "a batch held {largest} items");
    assert!(batches >= 202_000 / cairn::restore::plan::BATCH_ITEMS as u64, "{batches} batches");
    assert!(restore_peak < RESTORE_PEAK_KIB, "the restore peaked at {restore_peak} KiB");
    let back = restored(&t, &src);
    let n: usize =
        std::fs::read_dir(&back).unwrap().map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count()).sum();
    assert_eq!(n, 200_000);
}

/// Peak memory of the restore of 100,000 files that each have a second
/// name outside the backed-up path (a partial backup of an rsnapshot store,
/// say): no hard-link group ever completes, so the planner keeps one entry
/// per file to the end. While each pending group kept its first member's
/// whole planned file (node and chunk list), the restore peaked at
/// 88,792 KiB even as a release build (a debug build holds more); keeping
/// only its path, identity and a hash of its content list, this test's
/// debug build peaked at 75,400 KiB.
const PENDING_LINKS_PEAK_KIB: i64 = 80 * 1024;

#[test]
fn bug_a_restore_of_100_000_files_linked_from_outside_the_snapshot_keeps_little_per_pending_link() {
    let env = Env::new();
    let src = env.path("src");
    let outside = env.path("outside");
    for d in 0..1000 {
        let (dir, other) = (src.join(format!("d{d:03}")), outside.join(format!("d{d:03}")));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        for f in 0..100 {
            let name = format!("linked-file-number-{f:03}");
            // One shared chunk: the backup stores it once.
            std::fs::write(dir.join(&name), b"the same few bytes\n").unwrap();
            std::fs::hard_link(dir.join(&name), other.join(&name)).unwrap();
        }
    }
    let mut backup = env.command();
    backup.args(["--threads", "2", "backup", src.to_str().unwrap()]);
    peak_rss_kib(backup, &env.path("backup.log"));
    // The second names are not needed any more.
    std::fs::remove_dir_all(&outside).unwrap();

    let t = env.path("t");
    let mut restore = env.command();
    restore.args(["--threads", "2", "--json", "restore", "latest", "--target", t.to_str().unwrap()]);
    let (restore_peak, out) = peak_rss_kib(restore, &env.path("restore.log"));
    eprintln!("peak RSS of the restore of 100,000 files linked from outside: {restore_peak} KiB");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let report = &report["report"];
    assert_eq!((report["files"].as_u64(), report["links"].as_u64()), (Some(100_000), Some(0)));
    assert!(report["batches"].as_u64().unwrap() > 1);
    assert!(restore_peak < PENDING_LINKS_PEAK_KIB, "the restore peaked at {restore_peak} KiB");
}

/// The tree of directory `dir` as the format defines it, computed from the
/// file system alone: nodes from `lstat`, content cut by the repository's
/// chunker, children first. This is what the whole-tree scan wrote before
/// trees were written during the scan.
fn expected_tree(repo: &Repository, names: &NameCache, dir: &Path) -> Id {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    entries.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let nodes = entries.iter().map(|n| expected_node(repo, names, &dir.join(n), n.as_bytes(), false)).collect();
    repo.key().blob_id(&Tree::new(nodes).encode())
}

fn expected_node(repo: &Repository, names: &NameCache, path: &Path, name: &[u8], follow: bool) -> Node {
    let md = if follow { std::fs::metadata(path) } else { std::fs::symlink_metadata(path) }.unwrap();
    let mut node = fsmeta::node_from_metadata(name, &md, names);
    node.xattrs = fsmeta::read_xattrs(path);
    match node.kind {
        NodeKind::Dir if !follow => node.subtree = Some(expected_tree(repo, names, path)),
        NodeKind::File => {
            let mut chunker = Chunker::new(repo.config().chunker);
            chunker
                .chunk_stream::<_, std::io::Error>(std::fs::File::open(path).unwrap(), |c| {
                    node.content.push(repo.key().blob_id(c));
                    Ok(())
                })
                .unwrap();
        }
        NodeKind::Symlink => node.target = Some(std::fs::read_link(path).unwrap().as_os_str().as_bytes().to_vec()),
        _ => {}
    }
    node
}

/// A directory above backup paths holds only what lies on the way to them.
enum Part {
    Full(PathBuf),
    Above(BTreeMap<Vec<u8>, Part>),
}

fn expected_above(repo: &Repository, names: &NameCache, dir: &Path, parts: &BTreeMap<Vec<u8>, Part>) -> Id {
    let nodes = parts
        .iter()
        .map(|(name, part)| match part {
            Part::Full(p) => expected_node(repo, names, p, name, false),
            Part::Above(below) => {
                let p = dir.join(std::ffi::OsStr::from_bytes(name));
                let mut node = expected_node(repo, names, &p, name, true);
                node.subtree = Some(expected_above(repo, names, &p, below));
                node
            }
        })
        .collect();
    repo.key().blob_id(&Tree::new(nodes).encode())
}

/// Directories, files of several chunks, empty files, hard links, symlinks
/// and a FIFO, with more entries than files in flight.
fn varied_tree(src: &Path) {
    for d in 0..12 {
        let dir = src.join(format!("a/d{d}/deeper"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..150 {
            std::fs::write(dir.join(format!("f{f}")), format!("{d}/{f} ").repeat(f)).unwrap();
        }
    }
    std::fs::create_dir_all(src.join("a/empty-dir")).unwrap();
    std::fs::write(src.join("a/big"), random_bytes(900_000, 3)).unwrap();
    std::fs::hard_link(src.join("a/big"), src.join("a/d3/big-again")).unwrap();
    std::fs::hard_link(src.join("a/d0/deeper/f7"), src.join("a/d9/f7-link")).unwrap();
    std::os::unix::fs::symlink("d1/deeper/f2", src.join("a/link")).unwrap();
    nix::unistd::mkfifo(&src.join("a/fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let _ = xattr::set(src.join("a/d2/deeper/f5"), "user.note", b"kept");
    std::fs::create_dir_all(src.join("c/d/e")).unwrap();
    std::fs::write(src.join("c/d/e/g"), b"below a path given twice").unwrap();
    std::fs::write(src.join("c/not-backed-up"), b"beside the path").unwrap();
}

#[test]
fn trees_written_during_the_scan_have_the_ids_of_the_whole_tree() {
    let env = Env::new();
    let src = env.path("src");
    varied_tree(&src);
    let (a, d) = (src.join("a"), src.join("c/d"));
    // Several paths: `a`, and `c/d` given together with a path inside it.
    env.ok(&["backup", a.to_str().unwrap(), d.join("e").to_str().unwrap(), d.to_str().unwrap()]);

    let repo = Repository::open(Arc::new(LocalBackend::new(&env.repo)), PASSWORD.as_bytes()).unwrap();
    let index = repo.load_index().unwrap();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    // `src` is the deepest directory above both paths: its tree holds `a`
    // and the way to `d`, and nothing outside the test's own directory.
    let got = tree::lookup(&repo, &index, &snap.tree, src.as_os_str().as_bytes()).unwrap().unwrap();
    let names = NameCache::default();
    let parts = BTreeMap::from([
        (b"a".to_vec(), Part::Full(a.clone())),
        (b"c".to_vec(), Part::Above(BTreeMap::from([(b"d".to_vec(), Part::Full(d.clone()))]))),
    ]);
    assert_eq!(got.subtree.unwrap(), expected_above(&repo, &names, &src, &parts));

    // Unchanged, with the first snapshot as parent: the same trees again.
    env.ok(&["backup", a.to_str().unwrap(), d.join("e").to_str().unwrap(), d.to_str().unwrap()]);
    let (_, again) = repo.find_snapshot("latest").unwrap();
    let index = repo.load_index().unwrap();
    let again = tree::lookup(&repo, &index, &again.tree, src.as_os_str().as_bytes()).unwrap().unwrap();
    assert_eq!(again.subtree, got.subtree);
}

/// The scan holds one directory handle per level it is inside. A tree 300
/// levels deep, backed up by a process whose soft open-file limit is 64 (as
/// a shell or a unit file can leave it), lost its deepest directories to
/// "Too many open files" (exit 3). cairn now raises the soft limit to the
/// hard one at start; the whole tree is backed up and restored.
#[test]
fn bug_a_deep_tree_under_a_low_soft_open_file_limit_is_backed_up_whole() {
    use std::os::unix::process::CommandExt;
    let env = Env::new();
    let src = env.path("deep");
    let mut leaf = src.clone();
    for _ in 0..300 {
        leaf.push("d");
    }
    std::fs::create_dir_all(&leaf).unwrap();
    std::fs::write(leaf.join("bottom"), b"the deepest file").unwrap();
    let mut cmd = env.command();
    cmd.args(["backup", "--json", src.to_str().unwrap()]);
    // SAFETY: setrlimit is async-signal-safe; the child only lowers its own soft limit.
    unsafe {
        cmd.pre_exec(|| {
            let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
            r.rlim_cur = 64;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let target = env.path("back");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
}
