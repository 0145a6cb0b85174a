//! The fixture of the drill tests (`tests/drill.rs`, `tests/drill_choices.rs`):
//! a source tree, a repository, a policy and a state directory, and the
//! real `cairn drill`.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;

use cairn::backend::LocalBackend;
use cairn::repo::tree::walk;
use cairn::repo::{pack_key, BlobKind, NodeKind, Repository};
use cairn::state::State;
use serde_json::Value;

use crate::common::*;

/// The variable a policy may name with `password_env`; backups and drills set it.
pub const PW_VAR: &str = "CAIRN_TEST_PW";

/// A source tree, a repository with 1 MiB packs, a policy `web` backing
/// the tree up to it, and a state directory.
pub struct Fixture {
    pub env: Env,
    pub src: PathBuf,
    pub policies: PathBuf,
    pub state: PathBuf,
}

impl Fixture {
    /// `extra` is appended to the policy (objectives, a [drill] table…).
    pub fn new(extra: &str) -> Fixture {
        let env = Env::with_init(&["--chunk-sizes", "16384,65536,262144", "--pack-size-mib", "1"]);
        let root = env.dir.path().canonicalize().unwrap();
        let src = root.join("src");
        std::fs::create_dir_all(src.join("docs/deep")).unwrap();
        for (i, len) in [700_000usize, 1_300_000, 900_000, 40_000, 5].iter().enumerate() {
            std::fs::write(src.join(format!("data{i}.bin")), random_bytes(*len, i as u64 + 1)).unwrap();
        }
        std::fs::write(src.join("docs/readme.txt"), b"restore drills prove backups\n").unwrap();
        std::fs::write(src.join("docs/deep/empty"), b"").unwrap();
        std::os::unix::fs::symlink("../data0.bin", src.join("docs/link")).unwrap();
        std::fs::hard_link(src.join("data3.bin"), src.join("docs/hard")).unwrap();
        let f = Fixture { src, policies: root.join("policies"), state: root.join("state"), env };
        f.write_policy(extra);
        f
    }

    pub fn write_policy(&self, extra: &str) {
        std::fs::create_dir_all(&self.policies).unwrap();
        let body = format!(
            "name = \"web\"\n[source]\npaths = [\"{}\"]\n[repository]\nurl = \"{}\"\n{extra}\n",
            self.src.display(),
            self.env.repo.display()
        );
        std::fs::write(self.policies.join("web.toml"), body).unwrap();
    }

    pub fn backup(&self, extra: &[&str]) {
        let mut args = vec!["backup", "--policy", "web", "--policies", self.policies.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = self.env.command().env(PW_VAR, PASSWORD).args(&args).output().unwrap();
        assert!(out.status.success(), "backup {extra:?}: {}", text(&out.stderr));
    }

    /// `cairn drill --policy web --json …`.
    pub fn drill(&self, extra: &[&str]) -> Output {
        let mut args =
            vec!["drill", "--policy", "web", "--policies", self.policies.to_str().unwrap(), "--json", "--state"];
        args.push(self.state.to_str().unwrap());
        args.extend_from_slice(extra);
        // The policy names the repository.
        self.env.command().args(&args).env("CAIRN_REPO", "/nonexistent").env(PW_VAR, PASSWORD).output().unwrap()
    }

    /// Runs a drill, checks its exit code, returns its JSON report.
    pub fn drill_report(&self, extra: &[&str], code: i32) -> Value {
        let out = self.drill(extra);
        assert_eq!(out.status.code(), Some(code), "drill {extra:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
    }

    pub fn state(&self) -> State {
        State::open(&self.state).unwrap()
    }

    pub fn snapshots(&self) -> Vec<Value> {
        serde_json::from_str(&self.env.ok(&["snapshots", "--json"])).unwrap()
    }

    fn open(&self) -> Repository {
        Repository::open(Arc::new(LocalBackend::new(&self.env.repo)), PASSWORD.as_bytes()).unwrap()
    }

    /// Flips a byte inside the largest blob of a data pack; returns the
    /// snapshot paths of the files that use that blob.
    pub fn damage_a_data_pack(&self) -> BTreeSet<String> {
        let repo = self.open();
        let index = repo.load_index().unwrap();
        // Full ids from the pack headers (the index keeps id prefixes).
        let by_pack: Vec<_> = index.packs().iter().map(|p| repo.read_pack_header(&p.id, p.size).unwrap()).collect();
        let (n, blob) = index
            .packs()
            .iter()
            .enumerate()
            .filter(|(_, p)| p.kind == BlobKind::Data)
            .flat_map(|(n, _)| by_pack[n].iter().map(move |e| (n, *e)))
            .max_by_key(|(_, e)| e.length)
            .unwrap();
        let path = self.env.repo.join(pack_key(&index.packs()[n].id));
        let mut data = std::fs::read(&path).unwrap();
        data[blob.offset as usize + blob.length as usize / 2] ^= 0x5a;
        std::fs::write(&path, data).unwrap();
        let (_, snap) = repo.find_snapshot("latest").unwrap();
        let mut affected = BTreeSet::new();
        walk(&repo, &index, &snap.tree, b"", &mut |p, node| {
            if node.kind == NodeKind::File && node.content.contains(&blob.id) {
                affected.insert(String::from_utf8(p.to_vec()).unwrap());
            }
            Ok(true)
        })
        .unwrap();
        assert!(!affected.is_empty());
        affected
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn phase<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["phases"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no phase {name}"))
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

/// The scratch space is gone and nothing else is left under `<state>/scratch`.
pub fn assert_scratch_removed(f: &Fixture, r: &Value) {
    let c = &r["cleanup"];
    assert_eq!(c["verified"], true, "{c}");
    assert_eq!(c["action"], "removed");
    let path = PathBuf::from(c["path"].as_str().unwrap());
    assert!(path.starts_with(f.state.join("scratch")), "{}", path.display());
    assert!(!path.exists(), "the scratch target is still there");
    assert_eq!(std::fs::read_dir(f.state.join("scratch")).unwrap().count(), 0);
}

/// A drill's start minus `time`, in seconds, as the drill computes an age
/// (whole milliseconds): what its `rpo` ages must equal exactly.
pub fn age_at_start(report: &Value, time: &Value) -> f64 {
    let t = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    (t(&report["times"]["started_at"]) - t(time)).num_milliseconds() as f64 / 1000.0
}
