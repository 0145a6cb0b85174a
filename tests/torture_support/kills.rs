//! Kill rounds: backup, forget + prune and key add, each killed with
//! SIGKILL at a failpoint pass that is certain to come.
//!
//! Each round first runs its commands un-killed on a scratch copy of the
//! repository, with `CAIRN_TEST_HITS_FILE` recording every failpoint pass
//! (`src/failpoint.rs`). The same commands on the same repository pass the
//! same points as often: each backup stores less new data than one pack
//! holds, so its packs and index files do not depend on how fast uploads
//! finish. The round then chooses one point the dry run passed, and a pass
//! of it no later than the last one seen, and runs the commands for real,
//! armed to die there. A command that is not killed fails the run.
//!
//! After each kill: `check` passes (a kill between a snapshot's write or
//! deletion and its evidence record leaves the one finding no record
//! covers; it is accepted with `cairn evidence accept`, as an admin would,
//! and any other finding fails), every listed snapshot is one the harness
//! made, none is lost (the newest K survive a forget), one chosen by the
//! seed restores byte-exact with `--verify`, and a follow-up backup
//! succeeds. At the end `check --read-data` passes and every snapshot
//! restores byte-exact.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;

use super::{read_content, restore, text, Content, Repo, Rng};
use crate::common::random_bytes;

/// What a full run counts.
#[derive(Default)]
pub struct KillStats {
    pub rounds: u64,
    pub kills: u64,
    pub restores: usize,
    /// Kills per failpoint.
    pub by_point: BTreeMap<String, u64>,
}

/// One command of a round: its arguments and extra environment.
struct Step {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Step {
    fn new(args: &[&str]) -> Step {
        Step { args: args.iter().map(|a| a.to_string()).collect(), env: Vec::new() }
    }
}

/// The repository and what the harness knows of it.
pub struct Model<'a> {
    repo: &'a Repo,
    pub src: PathBuf,
    /// Every snapshot that exists, with the content it must restore.
    pub known: BTreeMap<String, Content>,
    time: i64,
    slots: usize,
    pub restores: usize,
    dry_runs: usize,
}

/// New data per backup stays below one pack (1 MiB): three files of at
/// most 300 kB change. Its pack is then stored once, at the end, whatever
/// the timing of uploads, so a dry run's count of passes holds.
const MAX_FILE: usize = 300_000;

impl<'a> Model<'a> {
    pub fn new(repo: &'a Repo) -> Model<'a> {
        let src = repo.path("src");
        std::fs::create_dir_all(&src).unwrap();
        Model { repo, src, known: BTreeMap::new(), time: 1_767_225_600, slots: 1, restores: 0, dry_runs: 0 }
    }

    /// Changes a few files of the source.
    pub fn change_source(&mut self, rng: &mut Rng) {
        for _ in 0..1 + rng.below(3) {
            let name = format!("f{}", rng.below(8));
            let size = 1 + rng.below(MAX_FILE);
            std::fs::write(self.src.join(name), random_bytes(size, rng.next())).unwrap();
        }
        if rng.below(4) == 0 {
            let _ = std::fs::remove_file(self.src.join(format!("f{}", rng.below(8))));
        }
    }

    /// The arguments of the next backup (each an hour after the last).
    fn next_backup(&mut self) -> Step {
        self.time += 3600;
        let time = chrono::DateTime::from_timestamp(self.time, 0).unwrap().to_rfc3339();
        Step::new(&["backup", "--json", "--time", &time, self.src.to_str().unwrap()])
    }

    /// A backup that is not killed; records its snapshot.
    pub fn backup(&mut self) {
        let step = self.next_backup();
        let args: Vec<&str> = step.args.iter().map(String::as_str).collect();
        let out: serde_json::Value = serde_json::from_str(&self.repo.ok(&args)).unwrap();
        let id = out["snapshot"].as_str().unwrap_or_else(|| panic!("no snapshot id in {out}")).to_string();
        self.known.insert(id, read_content(&self.src));
    }

    /// Runs `steps` un-killed on a scratch copy of the repository and
    /// returns the failpoints each passed, in order.
    fn dry_run(&mut self, steps: &[Step]) -> Vec<Vec<String>> {
        self.dry_runs += 1;
        let name = format!("dry-{}", self.dry_runs);
        let scratch = self.repo.store.sibling(&name);
        scratch.remove_all();
        super::copy_into(&*self.repo.store, &*scratch);
        let mut passes = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            let hits = self.repo.path(&format!("{name}-hits-{i}"));
            let out = self
                .repo
                .command_on(&*scratch, &format!("{name}-home"))
                .args(&step.args)
                .envs(step.env.iter().map(|(k, v)| (k, v)))
                .env("CAIRN_TEST_HITS_FILE", &hits)
                .output()
                .unwrap();
            assert!(out.status.success(), "dry run of cairn {:?}: {:?}\n{}", step.args, out.status, text(&out.stderr));
            let lines = std::fs::read_to_string(&hits).unwrap_or_default();
            passes.push(lines.lines().map(String::from).collect());
            let _ = std::fs::remove_file(&hits);
        }
        scratch.remove_all();
        let _ = std::fs::remove_dir_all(self.repo.path(&format!("{name}-home")));
        passes
    }

    /// Runs `steps` for real, the one at `kill.0` armed to die at pass
    /// `kill.2` of point `kill.1`; the steps after it do not run. Asserts
    /// that the kill came.
    fn run_killed(&self, steps: &[Step], kill: &(usize, String, usize), count: usize, round: &str) -> String {
        let (at, point, nth) = kill;
        for step in &steps[..*at] {
            let args: Vec<&str> = step.args.iter().map(String::as_str).collect();
            let out = self.repo.command().args(&args).envs(step.env.iter().map(|(k, v)| (k, v))).output().unwrap();
            assert!(out.status.success(), "{round}: cairn {args:?}: {:?}\n{}", out.status, text(&out.stderr));
        }
        let step = &steps[*at];
        let out = self
            .repo
            .command()
            .args(&step.args)
            .envs(step.env.iter().map(|(k, v)| (k, v)))
            .env("CAIRN_TEST_KILL_AT", format!("{point}:{nth}"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "{round}: cairn {:?} armed at {point}:{nth} was not killed, though the dry run passed it {count} times: \
             {:?}\n{}",
            step.args,
            out.status,
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// The invariants after a round: check passes, nothing unknown is
    /// listed, none is lost unless it was `forgot`ten, and a snapshot
    /// chosen by the seed restores byte-exact.
    ///
    /// A kill between a snapshot's write or deletion and its evidence
    /// record leaves a finding no record covers (`left`: what it says);
    /// each such finding is accepted with `cairn evidence accept`, as an
    /// admin would, and then `check` must pass. Any other finding fails.
    fn verify(&mut self, rng: &mut Rng, round: &str, forgot: bool, left: Option<&str>) {
        let mut out = self.repo.cairn(&["check"]);
        if let (false, Some(what)) = (out.status.success(), left) {
            let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
            let errors: Vec<&str> = all.lines().filter(|l| l.starts_with("error: ")).collect();
            assert!(
                out.status.code() == Some(5) && !errors.is_empty() && errors.iter().all(|l| l.contains(what)),
                "check after {round}: only `{what}` may be found:\n{all}"
            );
            for e in errors {
                let id = e.strip_prefix("error: snapshots/").and_then(|r| r.split(':').next());
                let id = id.unwrap_or_else(|| panic!("after {round}: a finding that names no snapshot: {e}"));
                self.repo.ok(&["evidence", "accept", id, "--reason", "killed before its evidence record"]);
            }
            out = self.repo.cairn(&["check"]);
        }
        assert!(out.status.success(), "check after {round}: {}\n{}", text(&out.stdout), text(&out.stderr));
        let listed: Vec<String> = self.repo.snapshots().into_iter().map(|s| s.0).collect();
        for id in &listed {
            assert!(self.known.contains_key(id), "after {round}: snapshot {id} is not one the harness made");
        }
        if !forgot {
            for id in self.known.keys() {
                assert!(listed.contains(id), "after {round}: snapshot {id} is lost");
            }
        }
        self.known.retain(|id, _| listed.contains(id));
        if let Some(id) = listed.get(rng.below(listed.len().max(1))) {
            self.assert_restores(id, round);
        }
    }

    pub fn assert_restores(&mut self, id: &str, round: &str) {
        self.restores += 1;
        let (out, got) = restore(self.repo, id, &self.src, self.restores);
        assert!(out.status.success(), "after {round}: restore {id}: {}", text(&out.stderr));
        let want = &self.known[id];
        // An empty source restores as an empty directory, or none.
        assert_eq!(got.as_ref().unwrap_or(&Content::new()), want, "after {round}: snapshot {id} restored other bytes");
    }
}

/// How many of the `seen` passes of `point` in a dry run of `step` the same
/// command on the same repository is certain to make. Every count is exact
/// but one: prune repacks blobs into packs that go to the uploader once full
/// *and* the uploader is free (`RepoWriter::add_blob`), so how many packs
/// it stores depends on how fast each upload ends; only the first is
/// certain. A backup here stores less new data than one pack holds, so its
/// data and tree packs are each stored once, at the end.
fn certain(step: &Step, point: &str, seen: usize) -> usize {
    if point == "writer::pack_stored" && step.args[0] == "prune" {
        seen.min(1)
    } else {
        seen
    }
}

/// Chooses a kill among the passes of a dry run: a point the steps passed,
/// uniformly, then one of its passes certain to come again. Returns (step,
/// point, pass) and how often the dry run passed that point in that step.
fn choose(rng: &mut Rng, steps: &[Step], passes: &[Vec<String>], round: &str) -> ((usize, String, usize), usize) {
    let mut counts: BTreeMap<(usize, &str), usize> = BTreeMap::new();
    for (step, lines) in passes.iter().enumerate() {
        for l in lines {
            *counts.entry((step, l.as_str())).or_default() += 1;
        }
    }
    let points: Vec<((usize, &str), usize)> = counts.into_iter().collect();
    assert!(!points.is_empty(), "{round}: the dry run passed no failpoint, so there is nothing to kill at");
    let ((step, point), count) = *rng.pick(&points);
    let nth = 1 + rng.below(certain(&steps[step], point, count));
    ((step, point.to_string(), nth), count)
}

/// Runs `rounds` kill rounds on `repo`, seeded by `seed`; every round is a
/// SIGKILL. Panics at the first broken invariant.
pub fn run(repo: &Repo, seed: u64, rounds: u64) -> KillStats {
    if !cfg!(feature = "failpoints") {
        panic!(
            "this harness kills cairn at failpoints, which exist only with `--features failpoints` (as scripts/test.sh runs)"
        );
    }
    let mut rng = Rng::new(seed);
    let mut m = Model::new(repo);
    let mut stats = KillStats { rounds, ..Default::default() };
    m.change_source(&mut rng);
    m.backup();
    for r in 0..rounds {
        let op = rng.below(10);
        // What a kill before an evidence record leaves for `check` to find.
        let mut left = None;
        let mut forgot = false;
        let round = format!("round {r}");
        let (point, what) = match op {
            5..=7 => {
                // forget + prune. The newest `keep` must survive whatever is killed.
                let keep = 2 + rng.below(3);
                let mut by_time = m.repo.snapshots();
                by_time.sort_by(|a, b| a.1.cmp(&b.1));
                let must_stay: Vec<String> = by_time.iter().rev().take(keep).map(|s| s.0.clone()).collect();
                let keep_arg = keep.to_string();
                let steps =
                    [Step::new(&["forget", "--keep-last", &keep_arg]), Step::new(&["prune", "--max-unused", "0%"])];
                let passes = m.dry_run(&steps);
                let (kill, count) = choose(&mut rng, &steps, &passes, &round);
                let what = format!("{round}: forget --keep-last {keep} + prune killed at {}:{}", kill.1, kill.2);
                m.run_killed(&steps, &kill, count, &what);
                if kill.0 == 0 {
                    left = Some("no forget or prune record removed it");
                }
                forgot = true;
                let now: BTreeSet<String> = m.repo.snapshots().into_iter().map(|s| s.0).collect();
                for id in &must_stay {
                    assert!(now.contains(id), "{what}: snapshot {id}, among the newest {keep}, is gone");
                }
                (kill.1, what)
            }
            8..=9 if m.slots < 8 => {
                m.slots += 1;
                let password = format!("password {}", m.slots);
                let mut step = Step::new(&["key", "add", "--kdf-memory-kib", "19456"]);
                step.env.push(("CAIRN_NEW_PASSWORD".into(), password.clone()));
                let steps = [step];
                let passes = m.dry_run(&steps);
                let (kill, count) = choose(&mut rng, &steps, &passes, &round);
                let what = format!("{round}: key add killed at {}:{}", kill.1, kill.2);
                m.run_killed(&steps, &kill, count, &what);
                // Killed or not, the slot is stored and opens the repository.
                let out = m.repo.command().args(["snapshots"]).env("CAIRN_PASSWORD", &password).output().unwrap();
                assert!(out.status.success(), "{what}: the new password does not open: {}", text(&out.stderr));
                (kill.1, what)
            }
            _ => {
                m.change_source(&mut rng);
                let content = read_content(&m.src);
                let steps = [m.next_backup()];
                let passes = m.dry_run(&steps);
                // The premise of exact counts: one data pack and one tree pack at most.
                let packs = passes[0].iter().filter(|p| *p == "writer::pack_stored").count();
                assert!(packs <= 2, "{round}: the backup stored {packs} packs; the harness keeps new data under one");
                let (kill, count) = choose(&mut rng, &steps, &passes, &round);
                let what = format!("{round}: backup killed at {}:{}", kill.1, kill.2);
                m.run_killed(&steps, &kill, count, &what);
                if kill.1 == "backup::after_snapshot" {
                    left = Some("has no backup record");
                }
                let new: Vec<String> =
                    m.repo.snapshots().into_iter().map(|s| s.0).filter(|id| !m.known.contains_key(id)).collect();
                assert!(new.len() <= 1, "{what}: one backup left {} snapshots", new.len());
                for id in new {
                    m.known.insert(id, content.clone());
                }
                (kill.1, what)
            }
        };
        stats.kills += 1;
        *stats.by_point.entry(point).or_default() += 1;
        m.verify(&mut rng, &what, forgot, left);
        // The follow-up backup.
        m.change_source(&mut rng);
        m.backup();
        if (r + 1) % 25 == 0 {
            eprintln!("torture kills on {}: {} of {rounds} rounds", repo.store.url(), r + 1);
        }
    }
    let out = m.repo.cairn(&["check", "--read-data"]);
    assert!(out.status.success(), "check --read-data at the end: {}", text(&out.stdout));
    let ids: Vec<String> = m.known.keys().cloned().collect();
    for id in &ids {
        m.assert_restores(id, "the last round");
    }
    stats.restores = m.restores;
    stats
}
