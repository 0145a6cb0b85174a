//! `cairn copy` between a local repository and S3 (Garage), both ways: a
//! copy to S3 killed after some of its packs were stored resumes and sends
//! less, the S3 copy checks and restores byte for byte, and a copy back
//! from S3 into a new local repository does too. Needs Garage (see
//! `tests/garage`) and `--features failpoints`.

mod common;
mod garage;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use garage::Garage;
use serde_json::Value;

const OTHER_PASSWORD: &str = "the off-site copy's own password";

struct Scene {
    env: Env,
    garage: Garage,
}

impl Scene {
    /// cairn on `repo` with `password`, able to reach Garage.
    fn command(&self, repo: &str, password: &str) -> Command {
        let mut c = self.env.command();
        self.garage.apply_env(&mut c);
        c.env("CAIRN_REPO", repo).env("CAIRN_PASSWORD", password);
        c
    }

    fn ok(&self, repo: &str, password: &str, args: &[&str]) -> String {
        let out = self.command(repo, password).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "cairn {args:?} on {repo} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `cairn copy --json --to TO` from `from`, the destination's password in CAIRN_TO_PASSWORD.
    fn copy_command(&self, from: (&str, &str), to: (&str, &str)) -> Command {
        let mut c = self.command(from.0, from.1);
        c.env("CAIRN_TO_PASSWORD", to.1).args(["copy", "--json", "--to", to.0]);
        c
    }

    fn copy(&self, from: (&str, &str), to: (&str, &str)) -> Value {
        let out = self.copy_command(from, to).output().unwrap();
        assert!(out.status.success(), "copy {} -> {}: {}", from.0, to.0, String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn restore_and_compare(&self, repo: (&str, &str), src: &Path, name: &str) {
        let target = self.env.path(name);
        self.ok(repo.0, repo.1, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
        assert_same_tree(src, &restored(&target, src));
    }
}

fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for f in 0..10u64 {
        std::fs::write(src.join(format!("f{f}")), random_bytes(700_000, 40 + f)).unwrap();
    }
    std::fs::write(src.join("sub/small"), b"small").unwrap();
    std::os::unix::fs::symlink("../f1", src.join("sub/link")).unwrap();
    src
}

#[test]
fn a_copy_to_s3_killed_part_way_resumes_and_a_copy_back_from_s3_restores_byte_for_byte() {
    let scene = Scene { env: Env::new(), garage: Garage::start() };
    let local = (scene.env.repo.to_str().unwrap().to_string(), PASSWORD);
    let local = (local.0.as_str(), local.1);
    let src = source(&scene.env);
    scene.ok(local.0, local.1, &["backup", src.to_str().unwrap()]);

    let s3_url = scene.garage.url("offsite");
    let s3 = (s3_url.as_str(), OTHER_PASSWORD);
    let init = ["init", "--kdf-memory-kib", "19456", "--chunk-sizes", "8192,32768,131072", "--pack-size-mib", "1"];
    scene.ok(s3.0, s3.1, &init);
    killed_at(scene.copy_command(local, s3), "writer::pack_stored", 3);
    let none: Value = serde_json::from_str(&scene.ok(s3.0, s3.1, &["snapshots", "--json"])).unwrap();
    assert!(none.as_array().unwrap().is_empty(), "a killed copy committed a snapshot: {none}");

    let resumed = scene.copy(local, s3);
    assert_eq!(resumed["copied"].as_array().unwrap().len(), 1, "{resumed}");
    assert!(resumed["packs_adopted"].as_u64().unwrap() >= 3, "the stored packs are reused: {resumed}");
    let total_chunks = {
        // A whole copy into a fresh local repository with the same parameters, for comparison.
        let whole = scene.env.path("whole");
        let whole = whole.to_str().unwrap();
        scene.ok(whole, OTHER_PASSWORD, &init);
        scene.copy(local, (whole, OTHER_PASSWORD))["chunks_added"].as_u64().unwrap()
    };
    assert!(
        resumed["chunks_added"].as_u64().unwrap() < total_chunks,
        "the resumed copy sent {} chunks, a whole one {total_chunks}: {resumed}",
        resumed["chunks_added"]
    );
    scene.ok(s3.0, s3.1, &["check", "--read-data"]);
    scene.restore_and_compare(s3, &src, "from-s3");

    // And back: from the S3 copy into a new local repository.
    let back = scene.env.path("back");
    let back = (back.to_str().unwrap(), "a third password");
    scene.ok(back.0, back.1, &["init", "--kdf-memory-kib", "19456"]);
    let r = scene.copy(s3, back);
    assert_eq!(r["copied"].as_array().unwrap().len(), 1, "{r}");
    scene.ok(back.0, back.1, &["check", "--read-data"]);
    scene.restore_and_compare(back, &src, "from-back");
    // It names the first backup as its original, so the first repository's
    // snapshot counts as present there.
    let again = scene.copy(local, back);
    assert_eq!((again["copied"].as_array().unwrap().len(), again["present"].as_array().unwrap().len()), (0, 1));
}
