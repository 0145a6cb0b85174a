//! Twenty rounds of a backup and a prune side by side, each prune deleting
//! real garbage: the same rounds on a local repository (`tests/prune.rs`)
//! and on Garage (`tests/prune_s3.rs`).
//!
//! The commands run with a safety margin of zero (the tests' setting), so a
//! prune deletes a ripe mark's packs at once. Every round:
//!
//! 1. **Garbage, marked.** A snapshot with a scratch file of its own is
//!    made and forgotten: the packs its backup wrote (the scratch file's
//!    data and the snapshot's root tree) are what it alone held. A prune
//!    with a margin of an hour marks exactly those and deletes nothing.
//! 2. **Garbage, not marked yet.** A second such snapshot, forgotten.
//! 3. **The pair.** A backup of a changed source and a prune run side by
//!    side: every other round the backup is held right after it loaded its
//!    index for the whole prune; in the others both just run. The backup
//!    lists the marks before it writes its lock, so it names step 1's
//!    mark, and the prune deletes the packs of step 1 in every round. It
//!    also marks those of step 2 and, in a second pass, deletes them unless
//!    a running backup does not name that new mark: in a held round they
//!    always wait, and the next round's prune deletes them.
//!
//! Each round's prune must delete every pack of step 1 (and what an earlier
//! round left marked), report as many packs deleted as vanished and some
//! bytes freed, and delete only packs that a dry run just before found no
//! snapshot using. Every command exits 0.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::common::{random_bytes, wait_exit, Pause};

pub const ROUNDS: u64 = 20;

/// Runs the rounds. `cairn` makes a command for the repository (margin
/// zero), `src` holds the source files `f0`…`f3`, already backed up once.
pub fn run(cairn: &dyn Fn() -> Command, src: &Path, pause: &mut Pause, limit: Duration) {
    let run = |args: &[&str]| -> serde_json::Value { json(&cairn().args(args).output().unwrap(), args) };
    let packs = || Packs::of(&run(&["prune", "--dry-run", "--json", "--max-unused", "0%"]));
    let src_arg = src.to_str().unwrap();
    // Makes a snapshot with a scratch file and forgets it; the packs its
    // backup wrote, which it alone used.
    let forgotten_scratch = |seed: u64| -> BTreeSet<String> {
        let before = packs();
        std::fs::write(src.join("scratch"), random_bytes(300_000, seed)).unwrap();
        run(&["backup", "--tag", "scratch", "--json", src_arg]);
        std::fs::remove_file(src.join("scratch")).unwrap();
        let written: BTreeSet<String> = packs().ids().difference(&before.ids()).cloned().collect();
        assert!(!written.is_empty(), "the scratch backup wrote no pack");
        let forgot = run(&["forget", "--tag", "scratch", "--keep-tag", "no-such-tag", "--json"]);
        assert_eq!(forgot["removed"].as_array().unwrap().len(), 1, "{forgot}");
        written
    };
    let mut left: BTreeSet<String> = BTreeSet::new();
    // Where each pack came from, for the messages.
    let origin = std::cell::RefCell::new(BTreeMap::<String, String>::new());
    let seen = |p: &Packs, what: &str| {
        for id in p.0.keys() {
            origin.borrow_mut().entry(id.clone()).or_insert_with(|| what.to_string());
        }
    };
    for round in 0..ROUNDS {
        let held = round % 2 == 0;
        // 1. Garbage, marked by a prune whose margin keeps it from deleting.
        let first = forgotten_scratch(1000 + round);
        for p in &first {
            origin.borrow_mut().insert(p.clone(), format!("round {round}: the first scratch backup"));
        }
        let marking = run(&["prune", "--json", "--max-unused", "0%", "--safety-margin", "1h"]);
        assert_eq!(marking["report"]["packs_deleted"], 0, "round {round}: {marking}");
        let marked_now: BTreeSet<String> = Packs::of(&marking).with_step("new");
        assert_eq!(marked_now, first, "round {round}: the marks are not what the forgotten snapshot alone held");
        // 2. Garbage for the pair's prune to mark.
        let second = forgotten_scratch(3000 + round);
        for p in &second {
            origin.borrow_mut().insert(p.clone(), format!("round {round}: the second scratch backup"));
        }
        std::fs::write(src.join(format!("f{}", round % 4)), random_bytes(300_000, 2000 + round)).unwrap();
        // 3. The pair.
        let before = packs();
        seen(&before, &format!("round {round}: before the pair"));
        let mut backup = cairn();
        backup.args(["backup", src_arg]).stdout(Stdio::null()).stderr(Stdio::piped());
        let (prune, mut child) = if held {
            pause.arm(&mut backup, "backup::index_loaded");
            let child = backup.spawn().unwrap();
            pause.wait_paused(limit);
            let prune = cairn().args(["prune", "--json", "--max-unused", "0%"]).output().unwrap();
            pause.release();
            (prune, child)
        } else {
            let child = backup.spawn().unwrap();
            (cairn().args(["prune", "--json", "--max-unused", "0%"]).output().unwrap(), child)
        };
        let status = wait_exit(&mut child, limit);
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(status.success(), "round {round}: the backup failed: {err}");
        let prune = json(&prune, &["round", &round.to_string(), "prune"]);
        let after = packs();
        seen(&after, &format!("round {round}: after the pair"));
        let deleted: BTreeSet<String> = before.ids().difference(&after.ids()).cloned().collect();
        let report = &prune["report"];
        assert_eq!(report["packs_deleted"], deleted.len(), "round {round}: {prune}");
        assert!(report["bytes_freed"].as_u64().unwrap() > 0, "round {round}: nothing freed: {prune}");
        let missed: Vec<_> = first.union(&left).filter(|p| !deleted.contains(*p)).collect();
        assert!(missed.is_empty(), "round {round}: marked garbage not deleted: {missed:?}; {prune}");
        // Garbage: what the dry run before the pair found no snapshot using.
        // Besides the scratch packs, that can be a pack a backup wrote
        // beside the previous prune, which marked it while it was not
        // indexed yet, once a later backup stored its blobs again.
        let garbage = before.garbage();
        assert!(first.is_subset(&garbage) && second.is_subset(&garbage), "round {round}: {before:?}");
        let wrong: Vec<_> = deleted.difference(&garbage).collect();
        assert!(
            wrong.is_empty(),
            "round {round}: deleted packs a snapshot used: {wrong:?} (from {:?}); {prune}",
            wrong.iter().map(|p| origin.borrow().get(*p).cloned()).collect::<Vec<_>>()
        );
        if held {
            // The held backup's lock, written before the mark of step 2,
            // does not name it: those packs wait for the next round.
            let kept = second.is_subset(&after.ids());
            assert!(kept, "round {round}: deleted under a backup that does not honour the mark: {prune}");
        }
        // What is left unused is marked, for the next round's prune.
        left = after.garbage();
        for p in &left {
            assert!(after.marked(p), "round {round}: garbage left unmarked: {p}");
        }
    }
}

/// The packs of a prune plan (a dry run's or a prune's), with the step of
/// each in the two phases.
#[derive(Debug)]
struct Packs(BTreeMap<String, String>);

impl Packs {
    fn of(out: &serde_json::Value) -> Packs {
        let plan = &out["plan"];
        let all = plan["packs"].as_array().unwrap().iter().chain(plan["unindexed"].as_array().unwrap());
        Packs(
            all.map(|p| (p["id"].as_str().unwrap().to_string(), p["mark"]["step"].as_str().unwrap().into())).collect(),
        )
    }

    fn ids(&self) -> BTreeSet<String> {
        self.0.keys().cloned().collect()
    }

    /// The packs no snapshot uses (to delete or repack), marked or not.
    fn garbage(&self) -> BTreeSet<String> {
        self.0.iter().filter(|(_, s)| *s != "none").map(|(id, _)| id.clone()).collect()
    }

    fn with_step(&self, step: &str) -> BTreeSet<String> {
        self.0.iter().filter(|(_, s)| *s == step).map(|(id, _)| id.clone()).collect()
    }

    /// Named by a mark made earlier (waiting, or ripe for the next prune).
    fn marked(&self, id: &str) -> bool {
        self.0.get(id).is_some_and(|s| s == "waiting" || s == "delete_now")
    }
}

fn json(out: &Output, what: &[&str]) -> serde_json::Value {
    assert!(out.status.success(), "cairn {what:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("cairn {what:?}: not JSON ({e})"))
}
