//! Restore in bounded batches: a snapshot restored a few items at a time
//! is the same tree, metadata and hard links included, as one restored in
//! a single batch, into a fresh target and over an existing one, with and
//! without include patterns.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use cairn::backend::{Backend, BackendResult, LocalBackend, ObjectInfo};
use cairn::repo::walk::Limits;
use cairn::repo::{pack_key, BlobKind, Repository};
use cairn::restore::{run_in_batches, RestoreOptions, RestoreReport};
use common::*;

/// Directories at several depths with files of one and of several chunks,
/// empty files and directories, hard-link groups whose members lie far
/// apart in the walk (so in different batches), symlinks, a FIFO, user
/// xattrs, a read-only directory with files in it, and set times.
fn varied_tree(src: &Path) {
    for d in 0..6 {
        let dir = src.join(format!("d{d}/inner"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..9 {
            std::fs::write(dir.join(format!("f{f}")), format!("{d}/{f} ").repeat(f * 3)).unwrap();
        }
        std::fs::write(src.join(format!("d{d}/big")), random_bytes(200_000 + d * 10_000, d as u64)).unwrap();
    }
    std::fs::create_dir_all(src.join("empty/deeper/still")).unwrap();
    // A group of three and a group of two, their members batches apart.
    std::fs::hard_link(src.join("d0/big"), src.join("d5/inner/big-again")).unwrap();
    std::fs::hard_link(src.join("d0/big"), src.join("zz-last-big")).unwrap();
    std::fs::hard_link(src.join("d1/inner/f4"), src.join("d4/f4-link")).unwrap();
    std::os::unix::fs::symlink("d1/inner/f2", src.join("d2/link")).unwrap();
    std::os::unix::fs::symlink("/nowhere", src.join("dangling")).unwrap();
    nix::unistd::mkfifo(&src.join("d3/fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    let _ = xattr::set(src.join("d2/inner/f5"), "user.note", b"kept");
    let _ = xattr::set(src.join("d3"), "user.dir", b"on a directory");
    std::fs::set_permissions(src.join("d4/inner/f1"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(src.join("d3/inner"), std::fs::Permissions::from_mode(0o555)).unwrap();
    // Times that a later write into the directory would change.
    let t = nix::sys::time::TimeSpec::new(1_500_000_000, 123_456_789);
    for d in ["d1", "d1/inner", "empty/deeper", "d3/inner", ""] {
        nix::sys::stat::utimensat(None, &src.join(d), &t, &t, nix::sys::stat::UtimensatFlags::NoFollowSymlink).unwrap();
    }
}

fn restore(env: &Env, target: &Path, include: &[&str], batch_items: usize, verify: bool) -> RestoreReport {
    let repo = forge::open(&env.repo, PASSWORD);
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let index = repo.load_index().unwrap();
    let opts =
        RestoreOptions { include: include.iter().map(|s| s.to_string()).collect(), ..fresh_into(target, verify) };
    run_in_batches(&repo, &index, &snap.tree, &opts, &Limits::default(), batch_items).unwrap()
}

fn backed_up(env: &Env) -> PathBuf {
    let src = env.path("src");
    varied_tree(&src);
    env.ok(&["backup", src.to_str().unwrap()]);
    src
}

/// Makes the read-only directories of a restored tree writable again, so
/// that the temporary directory can be removed when not running as root.
fn writable(p: &Path) {
    for e in walkdir(p) {
        if e.is_dir() && !e.is_symlink() {
            std::fs::set_permissions(&e, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}

fn walkdir(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![p.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let d = out[i].clone();
        i += 1;
        if d.is_dir() && !d.is_symlink() {
            out.extend(std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out
}

#[test]
fn a_restore_in_batches_of_five_items_is_the_tree_a_single_batch_restores() {
    let env = Env::new();
    let src = backed_up(&env);

    let whole = env.path("whole");
    let one = restore(&env, &whole, &[], usize::MAX, false);
    assert!(one.ok(), "{:?}", one.failures);
    assert_eq!(one.batches, 1);
    assert_same_tree(&src, &restored(&whole, &src));

    let small = env.path("small");
    let r = restore(&env, &small, &[], 5, true);
    assert!(r.ok(), "{:?}", r.failures);
    assert_same_tree(&src, &restored(&small, &src));
    assert_eq!((r.files, r.dirs, r.links, r.others), (one.files, one.dirs, one.links, one.others));
    assert_eq!(r.links, 3, "three names are hard links to files restored before them");
    assert_eq!(r.verified_files, r.files + r.links);
    // Every batch but one holding a file of several chunks stays within the bound.
    assert!(r.batches > 30, "{} batches", r.batches);
    let big_file_items = 1 + 16 + 8;
    assert!(r.largest_batch <= big_file_items, "a batch held {} items", r.largest_batch);

    // Again over the restored tree: everything is in place already, but
    // for the two files with other links, which are replaced, never
    // written into.
    let again = restore(&env, &small, &[], 5, true);
    assert!(again.ok(), "{:?}", again.failures);
    assert_eq!(again.files_unchanged, again.files - 2);
    assert_same_tree(&src, &restored(&small, &src));
    writable(&whole);
    writable(&small);
}

#[test]
fn include_patterns_pick_the_same_entries_in_batches_as_in_one() {
    let env = Env::new();
    backed_up(&env);
    let names = |root: &Path| -> Vec<(PathBuf, u32, i64)> {
        let mut v: Vec<_> = walkdir(root)
            .into_iter()
            .skip(1) // the target itself
            .map(|p| {
                let m = std::fs::symlink_metadata(&p).unwrap();
                (p.strip_prefix(root).unwrap().to_path_buf(), m.mode(), if m.is_dir() { m.mtime() } else { 0 })
            })
            .collect();
        v.sort();
        v
    };
    for include in [&["f4*"][..], &["/**/d3/**"], &["still"], &["big", "link"]] {
        let (a, b) = (env.path("a"), env.path("b"));
        let one = restore(&env, &a, include, usize::MAX, false);
        let many = restore(&env, &b, include, 3, false);
        assert!(one.ok() && many.ok(), "{include:?}: {:?} {:?}", one.failures, many.failures);
        assert!(many.batches > 1, "{include:?}");
        assert!(one.files + one.dirs > 2, "{include:?} picked almost nothing");
        assert_eq!(names(&a), names(&b), "{include:?}");
        writable(&a);
        writable(&b);
        std::fs::remove_dir_all(&a).unwrap();
        std::fs::remove_dir_all(&b).unwrap();
    }
}

const NOBODY: u32 = 65534;

/// A forged snapshot of `a/f`, twenty files in `m`, and `z/g`, a hard
/// link of `f`: with `--batch-items 5`, `a/f` is restored and `a`
/// finished batches before `z/g` links to it. `a` gets `a_mode`.
fn linked_across_batches(env: &Env, a_mode: u32) {
    let repo = forge::open(&env.repo, PASSWORD);
    let mut b = forge::Builder::new(&repo);
    let f = b.hard_linked(b"f", b"the first name's content\n", 42, 7, 2);
    let mut a = b.dir(b"a", vec![f]);
    a.mode = a_mode;
    let pad = (0..20).map(|i| b.file(format!("p{i:02}").as_bytes(), format!("pad {i}\n").as_bytes())).collect();
    let m = b.dir(b"m", pad);
    let g = b.hard_linked(b"g", b"the first name's content\n", 42, 7, 2);
    let z = b.dir(b"z", vec![g]);
    b.snapshot(vec![a, m, z]);
}

fn ino(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).unwrap().ino()
}

#[test]
fn bug_a_hard_link_of_a_later_batch_is_never_made_to_a_file_swapped_in_at_the_first_name() {
    let env = Env::new();
    linked_across_batches(&env, 0o755);
    let t = env.path("t");
    let mut pause = Pause::new(env.path("pause"));
    let mut cmd = env.command();
    cmd.args(["--json", "restore", "latest", "--verify", "--batch-items", "5", "--target"]).arg(&t);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    pause.arm(&mut cmd, "restore::between_batches");
    let child = cmd.spawn().unwrap();
    pause.wait_paused(std::time::Duration::from_secs(120));
    // After the first batch: `a/f` is restored, `z/g` not yet linked.
    assert!(t.join("a/f").is_file() && !t.join("z").exists());
    // Whoever may write to `a` replaces `f` by a copy of the same content.
    std::fs::rename(t.join("a/f"), t.join("a/f.restored")).unwrap();
    std::fs::copy(t.join("a/f.restored"), t.join("a/f")).unwrap();
    pause.release();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failures = report["report"]["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["path"], "z/g");
    let reason = failures[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("hard link to /a/f not made") && reason.contains("restored from its own content"),
        "{reason}"
    );
    // `z/g` is its own file with its own content, not the file swapped in.
    assert_ne!(ino(&t.join("z/g")), ino(&t.join("a/f")));
    assert_eq!(std::fs::read(t.join("z/g")).unwrap(), b"the first name's content\n");
    assert_eq!(std::fs::symlink_metadata(t.join("z/g")).unwrap().nlink(), 1);
}

/// Runs `cairn --json restore latest ARGS` as a user other than root: as
/// `nobody` when the test runs as root (root searches any directory), or
/// as the test's own user.
fn restore_unprivileged(env: &Env, target: &Path, args: &[&str]) -> std::process::Output {
    if !is_root() {
        let mut cmd = env.command();
        return cmd.args(["--json", "restore", "latest"]).args(args).arg("--target").arg(target).output().unwrap();
    }
    let base = env.dir.path();
    std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755)).unwrap();
    for e in walkdir(&env.repo) {
        let mode = if e.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&e, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::create_dir(target).unwrap();
    std::os::unix::fs::chown(target, Some(NOBODY), Some(NOBODY)).unwrap();
    let cairn = cairn_for_other_users();
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&cairn.path)
        .args(["--json", "restore", "latest"])
        .args(args)
        .arg("--target")
        .arg(target)
        .env("CAIRN_REPO", &env.repo)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env_remove("CAIRN_PASSWORD_FILE")
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn bug_a_directory_its_owner_may_not_search_still_lets_a_later_batch_link_to_a_file_in_it() {
    let env = Env::new();
    linked_across_batches(&env, 0o600);
    let t = env.path("t");
    let out = restore_unprivileged(&env, &t, &["--batch-items", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["report"]["links"], 1);
    assert!(report["report"]["batches"].as_u64().unwrap() > 2);
    // `a` has its mode, given once nothing needed to reach into it.
    assert_eq!(std::fs::symlink_metadata(t.join("a")).unwrap().mode() & 0o7777, 0o600);
    std::fs::set_permissions(t.join("a"), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(ino(&t.join("z/g")), ino(&t.join("a/f")));
    assert_eq!(std::fs::read(t.join("z/g")).unwrap(), b"the first name's content\n");
}

/// 600 files of 1 to 4 KB in 12 directories (each file one chunk), backed
/// up into 1 MiB packs.
fn small_files_in_small_packs() -> (Env, PathBuf) {
    let env = Env::with_init(&["--chunk-sizes", "16384,65536,262144", "--pack-size-mib", "1"]);
    let src = env.path("src");
    for d in 0..12 {
        let dir = src.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..50u64 {
            let n = d * 50 + f;
            std::fs::write(dir.join(format!("f{f:02}")), random_bytes(1_000 + (n as usize * 37) % 3_000, n)).unwrap();
        }
    }
    env.ok(&["backup", src.to_str().unwrap()]);
    (env, src)
}

/// A fresh restore into `target` with three threads.
fn fresh_into(target: &Path, verify: bool) -> RestoreOptions {
    RestoreOptions {
        target: target.to_path_buf(),
        include: Vec::new(),
        exclude: Vec::new(),
        verify,
        threads: 3,
        privileged: false,
    }
}

/// Restore in batches read a pack once per batch that needed some of it,
/// each time in ranges that batch's share made sparse: on the Linux tree,
/// 68 range reads of 17 packs (74 requests on Garage against 22 before
/// batches). Here 600 small files in 1 MiB packs, restored 50 files a
/// batch, so each pack's blobs fall in several batches.
#[test]
fn bug_a_pack_whose_blobs_fall_in_many_batches_is_read_once_not_once_per_batch() {
    let (env, src) = small_files_in_small_packs();

    let backend = Arc::new(FarAway::new(&env.repo));
    let repo = Repository::open(backend.clone(), PASSWORD.as_bytes()).unwrap();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let index = repo.load_index().unwrap();
    let data_packs: HashMap<String, u64> =
        index.packs().iter().filter(|p| p.kind == BlobKind::Data).map(|p| (pack_key(&p.id), p.size)).collect();
    assert!(data_packs.len() >= 2, "{} data packs", data_packs.len());
    backend.reads.lock().unwrap().clear();

    let target = env.path("target");
    let opts = fresh_into(&target, false);
    let r = run_in_batches(&repo, &index, &snap.tree, &opts, &Limits::default(), 100).unwrap();
    assert!(r.ok(), "{:?}", r.failures);
    assert_same_tree(&src, &restored(&target, &src));
    assert!(r.batches >= 12, "{} batches", r.batches);

    let reads = backend.reads.lock().unwrap();
    for key in data_packs.keys() {
        let n = reads.get(key).copied().unwrap_or(0);
        assert!(n <= 1, "pack {key} was read {n} times in {} batches", r.batches);
    }
    let total: u64 = data_packs.values().sum();
    assert!(r.bytes_fetched <= total, "{} bytes fetched of {total} in the data packs", r.bytes_fetched);
    assert_eq!(r.packs_fetched, data_packs.len() as u64);
}

/// A local repository that counts the range reads of each object, says
/// it is remote once `remote` is set (after opening it, so that no
/// metadata cache is made), and holds the first range read of `first`
/// until a range read of one of `others` has begun, or [`GIVE_UP`] passed.
struct FarAway {
    inner: LocalBackend,
    remote: AtomicBool,
    first: Mutex<Option<String>>,
    /// The other data packs (tree packs are read while planning).
    others: Mutex<Vec<String>>,
    other_begun: (Mutex<bool>, Condvar),
    gave_up: AtomicBool,
    /// Range reads of each object.
    reads: Mutex<HashMap<String, u64>>,
}

/// Only ever waited out when the test fails.
const GIVE_UP: Duration = Duration::from_secs(60);

impl FarAway {
    fn new(repo: &Path) -> FarAway {
        FarAway {
            inner: LocalBackend::new(repo),
            remote: AtomicBool::new(false),
            first: Mutex::new(None),
            others: Mutex::new(Vec::new()),
            other_begun: (Mutex::new(false), Condvar::new()),
            gave_up: AtomicBool::new(false),
            reads: Mutex::default(),
        }
    }
}

impl Backend for FarAway {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
        *self.reads.lock().unwrap().entry(key.to_string()).or_default() += 1;
        let first = self.first.lock().unwrap().clone();
        match first {
            Some(f) if f == key => {
                let (begun, cv) = &self.other_begun;
                let (b, waited) = cv.wait_timeout_while(begun.lock().unwrap(), GIVE_UP, |b| !*b).unwrap();
                if waited.timed_out() && !*b {
                    self.gave_up.store(true, Ordering::SeqCst);
                }
            }
            Some(_) if self.others.lock().unwrap().iter().any(|o| o == key) => {
                *self.other_begun.0.lock().unwrap() = true;
                self.other_begun.1.notify_all();
            }
            _ => {}
        }
        self.inner.get_range(key, offset, length)
    }
    fn put(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.inner.put(key, data)
    }
    fn put_mutable(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.inner.put_mutable(key, data)
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> BackendResult<()> {
        self.inner.delete(key)
    }
    fn stat(&self, key: &str) -> BackendResult<u64> {
        self.inner.stat(key)
    }
    fn concurrency(&self) -> usize {
        4
    }
    fn is_remote(&self) -> bool {
        self.remote.load(Ordering::SeqCst)
    }
}

/// On remote storage the packs later batches need are read while the
/// first batch waits for its own: the first batch needs one pack only,
/// whose read is held until another pack's read has begun, which only a
/// read ahead of the batches begins. The tree restored is the same, and
/// each pack is still read once.
#[test]
fn on_remote_storage_later_batches_packs_are_read_while_the_first_waits() {
    let (env, src) = small_files_in_small_packs();
    let backend = Arc::new(FarAway::new(&env.repo));
    let repo = Repository::open(backend.clone(), PASSWORD.as_bytes()).unwrap();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let index = repo.load_index().unwrap();
    let data_packs = index.packs().iter().filter(|p| p.kind == BlobKind::Data).count();
    assert!(data_packs >= 2, "{data_packs} data packs");
    // The pack of the first directory the walk meets: the first batch
    // (100 items, each file two) needs it and no other.
    let pack_of = |path: PathBuf| index.get(&repo.key().blob_id(&std::fs::read(path).unwrap())).expect("indexed").pack;
    let at = pack_of(src.join("d00/f00"));
    for f in 0..50 {
        assert_eq!(pack_of(src.join(format!("d00/f{f:02}"))), at, "d00 is in two packs");
    }
    let first = pack_key(&index.pack(at).id);
    let data = index.packs().iter().filter(|p| p.kind == BlobKind::Data).map(|p| pack_key(&p.id));
    *backend.others.lock().unwrap() = data.filter(|k| *k != first).collect();
    *backend.first.lock().unwrap() = Some(first);
    backend.remote.store(true, Ordering::SeqCst);

    let target = env.path("target");
    let opts = fresh_into(&target, true);
    let r = run_in_batches(&repo, &index, &snap.tree, &opts, &Limits::default(), 100).unwrap();
    assert!(!backend.gave_up.load(Ordering::SeqCst), "no other pack was read while the first batch waited");
    assert!(r.ok(), "{:?}", r.failures);
    assert!(r.batches >= 12, "{} batches", r.batches);
    assert_same_tree(&src, &restored(&target, &src));
    assert_eq!(r.packs_fetched, data_packs as u64, "a pack was read twice, or not at all");
    let reads = backend.reads.lock().unwrap();
    for p in index.packs().iter().filter(|p| p.kind == BlobKind::Data) {
        let n = reads.get(&pack_key(&p.id)).copied().unwrap_or(0);
        assert_eq!(n, 1, "pack {} was read {n} times", pack_key(&p.id));
    }
}
