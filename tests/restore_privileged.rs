//! Set-uid files, file capabilities and device nodes come back from a root
//! restore only when asked (`--restore-privileged`).
//!
//! The snapshots are real backups of files made as root (mknod needs it):
//! these tests need root, and fail with a hint otherwise.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;

const NOBODY: u32 = 65534;
/// A version 2 `security.capability` value granting CAP_NET_RAW
/// (permitted, effective).
const CAP_NET_RAW: [u8; 20] = [1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn require_root() {
    assert!(
        is_root(),
        "tests/restore_privileged.rs makes device nodes and set-uid root files and must run as root \
         (for example `sudo -E cargo test --test restore_privileged`); it does not skip"
    );
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mknod(p: &Path, kind: nix::sys::stat::SFlag, mode: u32, major: u64, minor: u64) {
    let mode = nix::sys::stat::Mode::from_bits_truncate(mode);
    nix::sys::stat::mknod(p, kind, mode, nix::sys::stat::makedev(major, minor)).unwrap();
    // mknod's mode went through the umask.
    chmod(p, mode.bits());
}

/// A backed-up tree holding every kind of privileged entry, and plain ones.
struct Scene {
    env: Env,
    src: PathBuf,
}

/// The entries a root restore leaves out without the flag, relative to `src`.
const WITHHELD: [&str; 6] = ["both", "cap", "disk", "null", "sgid", "suid"];

impl Scene {
    fn new() -> Scene {
        require_root();
        let env = Env::new();
        let src = env.dir.path().canonicalize().unwrap().join("src");
        std::fs::create_dir(&src).unwrap();
        for (name, mode) in [("plain", 0o644), ("suid", 0o4755), ("sgid", 0o2750), ("both", 0o6755), ("cap", 0o755)] {
            std::fs::write(src.join(name), format!("#!/bin/sh\necho {name}\n")).unwrap();
            chmod(&src.join(name), mode);
        }
        xattr::set(src.join("cap"), "security.capability", &CAP_NET_RAW).unwrap();
        use nix::sys::stat::SFlag;
        mknod(&src.join("null"), SFlag::S_IFCHR, 0o666, 1, 3);
        mknod(&src.join("disk"), SFlag::S_IFBLK, 0o666, 7, 200);
        nix::unistd::mkfifo(&src.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let shared = src.join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::write(shared.join("inside"), b"in a set-gid directory\n").unwrap();
        chmod(&shared, 0o2775);
        env.ok(&["backup", src.to_str().unwrap()]);
        Scene { env, src }
    }

    fn restore(&self, target: &Path, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["--json", "restore", "latest", "--target", target.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.env.cairn(&args)
    }

    fn copy(&self, target: &Path) -> PathBuf {
        restored(target, &self.src)
    }

    fn snapshot_path(&self, name: &str) -> String {
        format!("{}/{name}", self.src.strip_prefix("/").unwrap().display())
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn report(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["report"].clone()
}

#[test]
fn a_root_restore_leaves_out_set_id_bits_capabilities_and_devices_names_them_and_exits_3() {
    let s = Scene::new();
    let target = s.env.path("restored");
    let o = s.restore(&target, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("6 item(s) left out"), "{stderr}");
    for (name, why) in [
        ("suid", "restored without its set-uid bit"),
        ("sgid", "restored without its set-gid bit"),
        ("both", "restored without its set-uid and set-gid bits"),
        ("cap", "restored without its file capabilities"),
        ("null", "device node not restored"),
        ("disk", "device node not restored"),
    ] {
        let line = format!("  {}: {why} (pass --restore-privileged", s.snapshot_path(name));
        assert!(stderr.contains(&line), "{line:?} missing from:\n{stderr}");
    }
    let r = report(&o);
    let withheld: BTreeSet<String> =
        r["withheld"].as_array().unwrap().iter().map(|w| w["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(withheld, WITHHELD.iter().map(|n| s.snapshot_path(n)).collect());
    assert_eq!(r["failures"], serde_json::json!([]), "nothing failed: {r}");

    let copy = s.copy(&target);
    // The files are there, with their other bits; the devices are not.
    assert_eq!(mode(&copy.join("suid")), 0o755);
    assert_eq!(mode(&copy.join("sgid")), 0o750);
    assert_eq!(mode(&copy.join("both")), 0o755);
    assert_eq!(mode(&copy.join("cap")), 0o755);
    for name in ["suid", "sgid", "both", "cap", "plain"] {
        assert_eq!(std::fs::read(copy.join(name)).unwrap(), std::fs::read(s.src.join(name)).unwrap(), "{name}");
    }
    assert_eq!(xattr::get(copy.join("cap"), "security.capability").unwrap(), None, "file capabilities restored");
    for name in ["null", "disk"] {
        assert!(std::fs::symlink_metadata(copy.join(name)).is_err(), "device node {name} was created");
    }
    // What gives no privilege comes back as it was.
    assert_eq!(mode(&copy.join("plain")), 0o644);
    assert_eq!(mode(&copy.join("shared")), 0o2775, "a directory's set-gid bit is kept");
    assert!(std::fs::symlink_metadata(copy.join("fifo")).unwrap().file_type().is_fifo());

    // --verify checks contents: the stripped files still verify.
    let o = s.restore(&s.env.path("verified"), &["--verify"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(report(&o)["failures"], serde_json::json!([]), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn with_restore_privileged_set_id_bits_capabilities_and_devices_come_back_exactly() {
    let s = Scene::new();
    let target = s.env.path("restored");
    let o = s.restore(&target, &["--restore-privileged"]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(report(&o)["withheld"], serde_json::json!([]));
    let copy = s.copy(&target);
    assert_same_tree(&s.src, &copy);
    for name in ["null", "disk"] {
        let (a, b) =
            (std::fs::symlink_metadata(s.src.join(name)).unwrap(), std::fs::symlink_metadata(copy.join(name)).unwrap());
        assert_eq!((b.rdev(), b.mode()), (a.rdev(), a.mode()), "{name}");
    }
    assert_eq!(mode(&copy.join("both")), 0o6755);
    assert_eq!(xattr::get(copy.join("cap"), "security.capability").unwrap(), Some(CAP_NET_RAW.to_vec()));
}

#[test]
fn a_drill_of_a_policy_with_privileged_files_restores_them_and_passes() {
    let s = Scene::new();
    let policies = s.env.path("policies");
    std::fs::create_dir(&policies).unwrap();
    let policy = format!(
        "name = \"priv\"\n[source]\npaths = [\"{}\"]\n[repository]\nurl = \"{}\"\n",
        s.src.display(),
        s.env.repo.display()
    );
    std::fs::write(policies.join("priv.toml"), policy).unwrap();
    let p = policies.to_str().unwrap();
    s.env.ok(&["backup", "--policy", "priv", "--policies", p]);
    let state = s.env.path("state");
    let o = s
        .env
        .command()
        .args(["drill", "--policy", "priv", "--full", "--json", "--policies", p, "--state"])
        .arg(&state)
        .env("CAIRN_REPO", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["verdict"]["result"], "pass", "{r}");
    // Every file was checked, modes bit for bit, and both devices were made.
    assert_eq!(r["integrity"]["files_checked"], 6, "{r}");
    assert_eq!(r["integrity"]["mismatches"], 0, "{r}");
    assert_eq!(r["scope"]["others"], 3, "two devices and a FIFO: {r}");
    assert_eq!(r["cleanup"]["verified"], true);
}

#[test]
fn a_restore_not_run_as_root_leaves_no_set_id_bit_out_and_skips_devices_with_a_warning() {
    let s = Scene::new();
    // The unprivileged user must read the repository and write the target.
    let base = s.env.dir.path();
    chmod(base, 0o755);
    for e in walk(&s.env.repo) {
        chmod(&e, if e.is_dir() { 0o755 } else { 0o644 });
    }
    let target = base.join("mine");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::chown(&target, Some(NOBODY), Some(NOBODY)).unwrap();
    let cairn = common::cairn_for_other_users();
    let o = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&cairn.path)
        .args(["--json", "restore", "latest", "--target"])
        .arg(&target)
        .env("CAIRN_REPO", &s.env.repo)
        .env("CAIRN_PASSWORD", PASSWORD)
        .env_remove("CAIRN_PASSWORD_FILE")
        .env_remove("CAIRN_PASSWORD_COMMAND")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert_eq!(report(&o)["withheld"], serde_json::json!([]));
    assert!(stderr.contains("device node not restored (needs root)"), "{stderr}");
    let copy = s.copy(&target);
    // The user's own files: a set-uid bit there gives nothing the user had not.
    assert_eq!(std::fs::symlink_metadata(copy.join("both")).unwrap().uid(), NOBODY);
    assert_eq!(mode(&copy.join("suid")), 0o4755);
    assert_eq!(mode(&copy.join("both")), 0o6755);
    assert!(std::fs::symlink_metadata(copy.join("null")).is_err());
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![p.to_path_buf()];
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            out.extend(walk(&e.unwrap().path()));
        }
    }
    out
}
