//! `cairn mount`, for real: the binary mounts through the kernel's FUSE,
//! the tests read the mount like any program would, and SIGTERM or
//! `fusermount3 -u` unmounts it.
//!
//! These tests need `/dev/fuse` and `fusermount3` (Debian: `apt-get
//! install fuse3`). Without them they fail, saying so: they never skip.

mod common;
mod garage;

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::forge;
use common::{assert_same_tree, random_bytes, restored, wait_exit, wait_until, Env, PASSWORD};

const LIMIT: Duration = Duration::from_secs(60);

fn require_fuse() {
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: the mount tests need FUSE (`modprobe fuse`; in a container, pass --device /dev/fuse)"
    );
    let found =
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("fusermount3").is_file()));
    assert!(found, "fusermount3 is missing: the mount tests need it; install fuse3 (`apt-get install fuse3`)");
}

/// The file system type mounted at `path`, from /proc/self/mountinfo.
fn mounted_type(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.to_str().unwrap();
    info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-")?;
        (f[4] == want).then(|| f[sep + 1].to_string())
    })
}

/// A running `cairn mount`; killed and unmounted if a test fails.
struct Mount {
    child: Option<Child>,
    at: PathBuf,
    log: PathBuf,
}

impl Mount {
    fn start(mut cmd: Command, at: &Path, extra: &[&str]) -> Mount {
        require_fuse();
        std::fs::create_dir_all(at).unwrap();
        let at = at.canonicalize().unwrap();
        let log = at.with_extension("log");
        let child = cmd
            .args(extra)
            .arg("mount")
            .arg(&at)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut m = Mount { child: Some(child), at, log };
        wait_until("the mount", LIMIT, || {
            if let Some(status) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("cairn mount exited ({status}): {}", m.stderr());
            }
            mounted_type(&m.at).is_some()
        });
        assert!(mounted_type(&m.at).unwrap().starts_with("fuse"), "not a FUSE mount: {:?}", mounted_type(&m.at));
        m
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn path(&self, p: &str) -> PathBuf {
        self.at.join(p)
    }

    /// Sends `sig`, waits for the exit, and checks that the mount is gone
    /// and the exit clean. Returns stderr.
    fn stop_with(mut self, sig: nix::sys::signal::Signal) -> String {
        let mut child = self.child.take().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        self.finish(&mut child)
    }

    fn finish(&self, child: &mut Child) -> String {
        let status = wait_exit(child, LIMIT);
        let err = self.stderr();
        assert!(status.success(), "cairn mount exited with {status}: {err}");
        assert_eq!(mounted_type(&self.at), None, "still mounted after the exit: {err}");
        assert!(err.contains("unmounted"), "{err}");
        err
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if mounted_type(&self.at).is_some() {
            let _ = nix::mount::umount2(&self.at, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Every kind of entry and metadata a backup keeps.
fn make_source(src: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(src.join("dir/deeper/deepest")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("big.bin"), random_bytes(6_000_000, 7)).unwrap();
    std::fs::write(src.join("text.txt"), "a line of text\n".repeat(20_000)).unwrap();
    std::fs::write(src.join("empty.txt"), b"").unwrap();
    std::fs::write(src.join("dir/deeper/deepest/leaf"), b"leaf\n").unwrap();
    std::fs::write(src.join("dir/name with spaces & ünïcode"), b"odd name\n").unwrap();
    std::fs::write(src.join("private"), b"secret\n").unwrap();
    std::fs::set_permissions(src.join("private"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(src.join("tool"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(src.join("tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    std::fs::set_permissions(src.join("empty"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(src.join("linked"), b"one inode, two names\n").unwrap();
    std::fs::hard_link(src.join("linked"), src.join("dir/linked-too")).unwrap();
    std::os::unix::fs::symlink("dir/deeper/deepest/leaf", src.join("rel-link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", src.join("dangling")).unwrap();
    nix::unistd::mkfifo(&src.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    if common::is_root() {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        mknod(&src.join("chardev"), SFlag::S_IFCHR, Mode::from_bits_truncate(0o620), makedev(1, 3)).unwrap();
        mknod(&src.join("blockdev"), SFlag::S_IFBLK, Mode::from_bits_truncate(0o660), makedev(7, 200)).unwrap();
    }
    xattr::set(src.join("text.txt"), "user.origin", b"the source").unwrap();
    xattr::set(src.join("dir"), "user.dir-attr", b"\x00\x01binary").unwrap();
    // Times with nanoseconds, one before the epoch.
    let t = |s, ns| nix::sys::time::TimeSpec::new(s, ns);
    for (p, s, ns) in
        [("text.txt", 1_600_000_000, 123_456_789), ("dir/deeper", 1_500_000_000, 5), ("empty.txt", -86_400, 0)]
    {
        nix::sys::stat::utimensat(
            None,
            &src.join(p),
            &t(s, ns),
            &t(s, ns),
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
}

#[test]
fn mount_shows_every_snapshot_as_restore_would_and_unmounts_on_sigterm() {
    let env = Env::new();
    let src = env.path("src");
    make_source(&src);
    let first = env.backup_json(&[&src], &["--host", "web1"]);
    std::fs::write(src.join("dir/deeper/deepest/leaf"), b"leaf, changed\n").unwrap();
    let second = env.backup_json(&[&src], &["--host", "web1"]);
    let other = env.backup_json(&[&src.join("dir")], &["--host", "db1"]);
    let snaps: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    let snaps = snaps.as_array().unwrap();
    let id = |v: &serde_json::Value| v["snapshot"].as_str().unwrap().to_string();
    let time_of = |sid: &str| {
        let s = snaps.iter().find(|s| s["id"] == sid).unwrap();
        let t: chrono::DateTime<chrono::Utc> = s["time"].as_str().unwrap().parse().unwrap();
        t.format("%Y-%m-%dT%H:%M:%S").to_string()
    };

    let m = Mount::start(env.command(), &env.path("mnt"), &[]);

    // The whole tree of the newest snapshot of web1, through hosts/, and
    // of the first one through ids/: names, types, contents, modes, owners,
    // nanosecond times, symlink targets, hard links, devices, xattrs.
    let web1 = m.path("hosts/web1");
    let (t1, t2) = (time_of(&id(&first)), time_of(&id(&second)));
    // Two backups in one second: their names carry their short ids.
    let name = |t: &str, s: &serde_json::Value| if t1 == t2 { format!("{t}_{}", &id(s)[..8]) } else { t.to_string() };
    let latest_web1 = std::fs::read_link(web1.join("latest")).unwrap();
    assert_eq!(latest_web1, Path::new(&name(&t2, &second)));
    assert_same_tree(&src, &restored(&web1.join(&latest_web1), &src));
    let old = m.path(&format!("ids/{}", &id(&first)[..8]));
    assert_eq!(std::fs::read(restored(&old, &src).join("dir/deeper/deepest/leaf")).unwrap(), b"leaf\n");
    let full = m.path(&format!("ids/{}", id(&first)));
    assert!(restored(&full, &src).join("big.bin").is_file(), "a full id works too");

    // The layout: ids/ lists every snapshot, hosts/ every host with its times.
    let mut ids: Vec<String> =
        std::fs::read_dir(m.path("ids")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    ids.sort();
    let mut want: Vec<String> = [&first, &second, &other].iter().map(|v| id(v)[..8].to_string()).collect();
    want.sort();
    assert_eq!(ids, want);
    let mut hosts: Vec<String> =
        std::fs::read_dir(m.path("hosts")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    hosts.sort();
    assert_eq!(hosts, ["db1", "web1"]);
    let mut times: Vec<String> =
        std::fs::read_dir(&web1).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    times.sort();
    let mut want_times = vec![name(&t1, &first), name(&t2, &second), "latest".to_string()];
    want_times.sort();
    assert_eq!(times, want_times);
    assert_eq!(std::fs::read_link(m.path("latest")).unwrap(), Path::new(&format!("ids/{}", &id(&other)[..8])));
    assert!(
        restored(&m.path("latest"), &src.join("dir")).join("deeper/deepest/leaf").is_file(),
        "latest is the newest snapshot of any host (db1's)"
    );
    assert!(m.path("hosts/db1/latest").join(restored(Path::new(""), &src.join("dir/linked-too"))).is_file());

    // Read-only.
    let w = std::fs::OpenOptions::new().write(true).open(restored(&old, &src).join("text.txt"));
    assert_eq!(w.unwrap_err().raw_os_error(), Some(libc::EROFS));
    assert!(std::fs::create_dir(restored(&old, &src).join("new")).is_err());

    let err = m.stop_with(nix::sys::signal::Signal::SIGTERM);
    assert!(err.contains("SIGTERM: unmounting"), "{err}");
}

#[test]
fn a_range_in_the_middle_of_a_large_file_reads_only_its_chunks() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let data = random_bytes(16_000_000, 3);
    std::fs::write(src.join("large"), &data).unwrap();
    env.backup_json(&[&src], &[]);
    // The file's chunks: 16/64/256 KiB chunking gives about 250.
    let chunks = {
        let repo = cairn::repo::Repository::open(
            std::sync::Arc::new(cairn::backend::LocalBackend::new(&env.repo)),
            PASSWORD.as_bytes(),
        )
        .unwrap();
        let (_, s) = repo.find_snapshot("latest").unwrap();
        let index = repo.load_index().unwrap();
        let path = src.join("large");
        let n = cairn::repo::tree::lookup(&repo, &index, &s.tree, path.to_str().unwrap().as_bytes()).unwrap().unwrap();
        n.content.len() as u64
    };
    assert!(chunks > 100, "{chunks} chunks");

    let m = Mount::start(env.command(), &env.path("mnt"), &["--stats"]);
    let file = restored(&m.path("latest"), &src).join("large");
    assert_eq!(std::fs::metadata(&file).unwrap().size(), data.len() as u64);
    let mut f = std::fs::File::open(&file).unwrap();
    let at = 9_876_543u64;
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut buf = vec![0u8; 100_000];
    f.read_exact(&mut buf).unwrap();
    assert!(buf == data[at as usize..at as usize + buf.len()], "the range differs from the source");
    drop(f);
    let err = m.stop_with(nix::sys::signal::Signal::SIGINT);
    let stats: serde_json::Value =
        serde_json::from_str(err.lines().find(|l| l.starts_with("{\"requests\"")).expect("--stats line")).unwrap();
    let range_reads = stats["requests"]["get_range"].as_u64().unwrap();
    // The trees on the way, the chunks under the range and the kernel's
    // read-ahead: a small part of the file's chunks.
    assert!(range_reads < chunks / 4, "{range_reads} range reads for a file of {chunks} chunks: {err}");
}

#[test]
fn fusermount_from_outside_ends_the_mount_cleanly() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    env.backup_json(&[&src], &[]);
    let mut m = Mount::start(env.command(), &env.path("mnt"), &[]);
    assert_eq!(std::fs::read(restored(&m.path("latest"), &src).join("f")).unwrap(), b"x");
    let out = Command::new("fusermount3").arg("-u").arg(&m.at).output().unwrap();
    assert!(out.status.success(), "fusermount3 -u: {}", String::from_utf8_lossy(&out.stderr));
    let mut child = m.child.take().unwrap();
    m.finish(&mut child);
}

#[test]
fn opening_the_mount_and_listing_ids_open_no_snapshot_and_a_mountpoint_in_use_is_refused() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    for _ in 0..5 {
        env.backup_json(&[&src], &[]);
    }
    // Every snapshot object damaged: whatever opens one says so.
    for e in std::fs::read_dir(env.repo.join("snapshots")).unwrap() {
        let p = e.unwrap().path();
        let mut b = std::fs::read(&p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 1;
        std::fs::write(&p, b).unwrap();
    }
    let m = Mount::start(env.command(), &env.path("mnt"), &[]);
    assert_eq!(std::fs::read_dir(m.path("ids")).unwrap().count(), 5, "ids/ lists the names");
    assert!(!m.stderr().contains("snapshot"), "no snapshot was opened to list ids/: {}", m.stderr());
    assert_eq!(std::fs::read_dir(m.path("hosts")).unwrap().count(), 0, "hosts/ needs them, and none opens");
    let err = m.stop_with(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(err.matches("skipping snapshot").count(), 5, "{err}");

    let full = env.path("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("x"), b"").unwrap();
    let out = env.cairn(&["mount", full.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn hostile_names_are_hidden_as_restore_refuses_them() {
    let env = Env::new();
    let repo = forge::open(&env.repo, PASSWORD);
    let mut b = forge::Builder::new(&repo);
    let first = b.file(b"dup", b"the first of two\n");
    let second = b.file(b"dup", b"the second of two\n");
    let inner = b.file(b"inner", b"inside\n");
    let dotdot = b.dir(b"..", vec![inner.clone()]);
    let dot = b.dir(b".", vec![inner.clone()]);
    let slash = b.file(b"a/b", b"slash\n");
    let nul = b.file(b"nul\0name", b"nul\n");
    let empty = b.file(b"", b"empty name\n");
    let keep = b.dir(b"keep", vec![inner]);
    let nul_link = b.symlink(b"nul-link", b"target\0tail");
    let ok_link = b.symlink(b"ok-link", b"keep/inner");
    let mut lost = b.file(b"lost-chunk", b"x");
    lost.content = vec![cairn::Id::hash_of(b"a chunk no index lists")];
    // The root keeps the order given: the first `dup` is the one restore takes.
    let root = b.tree(vec![dotdot, dot, slash, first, second, nul, empty, keep, nul_link, ok_link, lost]);
    b.snapshot_as(root, "../../etc");

    let m = Mount::start(env.command(), &env.path("mnt"), &[]);
    let root = m.path("latest");
    let mut names: Vec<String> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["dup", "keep", "lost-chunk", "nul-link", "ok-link"]);
    assert_eq!(std::fs::read(root.join("dup")).unwrap(), b"the first of two\n", "the first of two, as restore");
    assert_eq!(std::fs::read(root.join("ok-link")).unwrap(), b"inside\n");
    let e = std::fs::read_link(root.join("nul-link")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "a target restore could not create is an I/O error");
    assert!(std::fs::read_dir(m.path("hosts")).unwrap().next().is_none(), "an unsafe host name is not a directory");
    assert_eq!(std::fs::metadata(root.join("lost-chunk")).unwrap().len(), 1, "listed with its recorded size");
    let e = std::fs::File::open(root.join("lost-chunk")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "but a chunk restore would miss makes it unreadable");
    let err = m.stop_with(nix::sys::signal::Signal::SIGTERM);
    assert!(err.contains("left out: name is `.` or `..`"), "{err}");
    assert!(err.contains("left out: duplicate name in its directory"), "{err}");
    assert!(err.contains("lost-chunk: chunk") && err.contains("is missing from the repository"), "{err}");
}

#[test]
fn mount_works_on_s3_against_garage() {
    let g = garage::Garage::start();
    let dir = tempfile::tempdir().unwrap();
    let cmd = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        g.apply_env(&mut c);
        c.env("CAIRN_REPO", g.url("mounted"))
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_CACHE_DIR", dir.path().join("cache"))
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .stdin(Stdio::null());
        c
    };
    let ok = |args: &[&str]| {
        let out = cmd().args(args).output().unwrap();
        assert!(out.status.success(), "cairn {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    ok(&["init", "--kdf-memory-kib", "19456", "--chunk-sizes", "16384,65536,262144"]);
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("big.bin"), random_bytes(3_000_000, 5)).unwrap();
    std::fs::write(src.join("sub/small"), b"small\n").unwrap();
    std::os::unix::fs::symlink("sub/small", src.join("link")).unwrap();
    ok(&["backup", src.to_str().unwrap()]);

    let m = Mount::start(cmd(), &dir.path().join("mnt"), &[]);
    assert_same_tree(&src, &restored(&m.path("latest"), &src));
    let mut f = std::fs::File::open(restored(&m.path("latest"), &src).join("big.bin")).unwrap();
    f.seek(SeekFrom::Start(1_234_567)).unwrap();
    let mut buf = vec![0u8; 50_000];
    f.read_exact(&mut buf).unwrap();
    assert!(buf == random_bytes(3_000_000, 5)[1_234_567..1_234_567 + 50_000]);
    drop(f);
    m.stop_with(nix::sys::signal::Signal::SIGTERM);
}
