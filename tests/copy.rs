//! `cairn copy`: snapshots copied into a second repository with its own
//! password, key and chunker parameters, checked and restored from there;
//! a second copy sends nothing; a copy killed part way resumes and sends
//! less; each copy leaves a `copy` evidence record in both repositories.
//! The kill needs `--features failpoints`.

mod common;

use std::path::{Path, PathBuf};

use common::copies::*;
use common::*;
use serde_json::Value;

/// Files of several sizes (many chunks, one chunk, none), a symlink, a
/// hard link and a nested directory.
fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(src.join("a/b/c")).unwrap();
    std::fs::write(src.join("big"), random_bytes(3_000_000, 1)).unwrap();
    std::fs::write(src.join("a/medium"), random_bytes(200_000, 2)).unwrap();
    std::fs::write(src.join("a/b/c/small"), b"small file").unwrap();
    std::fs::write(src.join("a/b/empty"), b"").unwrap();
    let mut repeated = random_bytes(150_000, 3);
    repeated.extend_from_within(..);
    std::fs::write(src.join("a/b/repeated"), repeated).unwrap();
    std::os::unix::fs::symlink("a/medium", src.join("link")).unwrap();
    std::fs::hard_link(src.join("a/b/c/small"), src.join("a/hardlink")).unwrap();
    src
}

fn restore_and_compare(env: &Env, dest: &Dest, src: &Path, name: &str) {
    let target = env.path(name);
    dest.ok(env, &["restore", "latest", "--target", target.to_str().unwrap(), "--verify"]);
    assert_same_tree(src, &restored(&target, src));
}

#[test]
fn a_copy_into_a_repository_with_its_own_password_and_chunk_sizes_checks_and_restores_byte_for_byte() {
    let env = Env::new();
    let src = source(&env);
    let backup = env.backup_json(&[&src], &[]);
    let source_id = backup["snapshot"].as_str().unwrap().to_string();
    let dest = Dest::new(&env, "offsite", &["--chunk-sizes", "8192,32768,131072"]);

    let r = copy(&env, &dest, &[]);
    assert_eq!(r["rechunked"], true, "{r}");
    let copied = r["copied"].as_array().unwrap();
    assert_eq!(copied.len(), 1, "{r}");
    assert_eq!(copied[0]["source"], source_id.as_str());
    let copy_id = copied[0]["snapshot"].as_str().unwrap().to_string();
    assert_ne!(copy_id, source_id, "the destination's key names the copy differently");
    assert!(r["packs_added"].as_u64().unwrap() > 0, "{r}");

    // The copy is cut by the destination's chunker: the 3 MB file is in
    // chunks of at most 128 KiB there (at most 256 KiB in the source).
    let ls: Value = serde_json::from_str(&dest.ok(&env, &["snapshots", "--json"])).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 1, "{ls}");
    // Whole, readable and recorded: check reads every byte, and its evidence
    // check finds the copy's record for the snapshot.
    dest.ok(&env, &["check", "--read-data"]);
    restore_and_compare(&env, &dest, &src, "restored");

    // The source's password does not open the copy.
    let out = env.command().env("CAIRN_REPO", &dest.repo).args(["snapshots"]).output().unwrap();
    assert!(!out.status.success(), "the source's password opened the destination");

    // One `copy` record in each repository, naming the snapshots on both sides.
    let here = records(&env, env.command(), "copy");
    assert_eq!(here.len(), 1, "{here:?}");
    assert_eq!(here[0]["payload"]["snapshots_copied"][0], source_id.as_str(), "{}", here[0]);
    assert_eq!(here[0]["payload"]["outcome"], "success");
    let there = records(&env, dest.command(&env), "copy");
    assert_eq!(there.len(), 1, "{there:?}");
    assert_eq!(there[0]["payload"]["snapshots_written"][0], copy_id.as_str(), "{}", there[0]);
    assert_eq!(there[0]["payload"]["sources"][0], source_id.as_str());
}

#[test]
fn a_second_copy_sends_nothing_and_a_new_snapshot_of_unchanged_files_sends_no_data() {
    let env = Env::new();
    let src = source(&env);
    env.backup_json(&[&src], &[]);
    let dest = Dest::new(&env, "offsite", &["--chunk-sizes", "8192,32768,131072"]);
    let first = copy(&env, &dest, &[]);
    assert_eq!(first["copied"].as_array().unwrap().len(), 1);

    let again = copy(&env, &dest, &[]);
    assert_eq!(again["copied"].as_array().unwrap().len(), 0, "{again}");
    assert_eq!(again["present"].as_array().unwrap().len(), 1, "{again}");
    assert_eq!((again["blobs_added"].as_u64(), again["packs_added"].as_u64()), (Some(0), Some(0)), "{again}");
    assert_eq!(again["chunks_added"], 0);
    assert!(first["chunks_added"].as_u64().unwrap() > 20, "{first}");

    // A new snapshot of the same files, every one read again: all their
    // chunks are there. (The trees of the directories above the source,
    // whose times other tests change, may be new.)
    let second = env.backup_json(&[&src], &["--force"]);
    let r = copy(&env, &dest, &["latest"]);
    let copied = r["copied"].as_array().unwrap();
    assert_eq!(copied.len(), 1, "{r}");
    assert_eq!(copied[0]["source"], second["snapshot"]);
    assert_eq!(r["chunks_added"], 0, "{r}");
    assert!(r["data_added"].as_u64().unwrap() < 4096, "only trees: {r}");
    // The source directory is the same as in the first copy: it is not read again.
    assert_eq!((r["files"].as_u64(), r["bytes"].as_u64()), (Some(0), Some(0)), "{r}");
    let ls: Value = serde_json::from_str(&dest.ok(&env, &["snapshots", "--json"])).unwrap();
    assert_eq!(ls.as_array().unwrap().len(), 2, "{ls}");
    dest.ok(&env, &["check", "--read-data"]);
}

/// A copy killed after some of its packs were stored: the next copy
/// indexes and reuses them, sends less than a whole copy does, and the
/// result checks and restores.
#[test]
fn a_copy_killed_part_way_resumes_and_sends_less() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    for f in 0..12 {
        std::fs::write(src.join(format!("f{f}")), random_bytes(1_000_000, 100 + f)).unwrap();
    }
    env.backup_json(&[&src], &[]);
    let init = ["--chunk-sizes", "8192,32768,131072", "--pack-size-mib", "1"];

    // A whole copy, for comparison.
    let whole = Dest::new(&env, "whole", &init);
    let full = copy(&env, &whole, &[]);
    let full_bytes = full["bytes_added"].as_u64().unwrap();
    assert!(full["packs_added"].as_u64().unwrap() >= 10, "{full}");

    let dest = Dest::new(&env, "offsite", &init);
    killed_at(copy_command(&env, &dest, &[]), "writer::pack_stored", 5);
    let ls: Value = serde_json::from_str(&dest.ok(&env, &["snapshots", "--json"])).unwrap();
    assert!(ls.as_array().unwrap().is_empty(), "a killed copy committed a snapshot: {ls}");

    let resumed = copy(&env, &dest, &[]);
    assert_eq!(resumed["copied"].as_array().unwrap().len(), 1, "{resumed}");
    assert!(resumed["packs_adopted"].as_u64().unwrap() >= 5, "{resumed}");
    let resumed_bytes = resumed["bytes_added"].as_u64().unwrap();
    assert!(
        resumed_bytes + 4 * 1024 * 1024 < full_bytes,
        "the resumed copy sent {resumed_bytes} bytes, a whole one {full_bytes}"
    );
    dest.ok(&env, &["check", "--read-data"]);
    restore_and_compare(&env, &dest, &src, "restored");
}

#[test]
fn a_copy_without_a_password_for_the_destination_says_how_to_give_one() {
    let env = Env::new();
    let dest = Dest::new(&env, "offsite", &[]);
    let out = env.command().env_remove("CAIRN_TO_PASSWORD").args(["copy", "--to", dest.url()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--to-password-file") && err.contains("CAIRN_TO_PASSWORD"), "{err}");
    // A password file works as well as the variable.
    let pw = env.path("to-pw");
    std::fs::write(&pw, format!("{OTHER_PASSWORD}\n")).unwrap();
    env.ok(&["copy", "--to", dest.url(), "--to-password-file", pw.to_str().unwrap()]);
    // And a command; a wrong one fails without showing what it printed.
    let cmd = format!("echo '{OTHER_PASSWORD}'");
    env.ok(&["copy", "--to", dest.url(), "--to-password-command", &cmd]);
    let out = env
        .command()
        .args(["copy", "--to", dest.url(), "--to-password-command", "echo wrong-secret"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("wrong-secret"));
}

#[test]
fn copying_a_repository_into_itself_is_refused() {
    let env = Env::new();
    let out = env
        .command()
        .env("CAIRN_TO_PASSWORD", PASSWORD)
        .args(["copy", "--to", env.repo.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the source repository"));
}

/// A policy `web` of the test's repository, with a `[copy]` into `dest`
/// (its password in a file): the policy directory and the state directory.
fn policy_with_copy(env: &Env, dest: &Dest) -> (PathBuf, PathBuf) {
    let root = env.dir.path().canonicalize().unwrap();
    let src = source(env).canonicalize().unwrap();
    let (pw, dest_pw) = (root.join("pw"), root.join("dest-pw"));
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    std::fs::write(&dest_pw, format!("{OTHER_PASSWORD}\n")).unwrap();
    let (policies, state) = (root.join("policies"), root.join("state"));
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("web.toml"),
        format!(
            "name = \"web\"\n[source]\npaths = [\"{}\"]\n[repository]\nurl = \"{}\"\npassword_file = \"{}\"\n\
             [objectives]\nrpo = \"1d\"\n[copy]\nto = \"{}\"\npassword_file = \"{}\"\nrpo = \"2d\"\n",
            src.display(),
            env.repo.display(),
            pw.display(),
            dest.repo.canonicalize().unwrap().display(),
            dest_pw.display()
        ),
    )
    .unwrap();
    (policies, state)
}

/// `cairn copy --policy web` runs the policy's `[copy]` by hand as the
/// daemon would: into the copy's repository with the copy's password
/// (none given on the command line), a `copy` record under the policy in
/// both chains, the run and the copy's point in the state (so `status`
/// shows the lag); a second run finds the snapshot there; `--to` beside
/// `--policy` is refused.
#[test]
fn copy_policy_runs_the_policys_copy_by_hand_with_the_daemons_evidence_and_lag() {
    use cairn::state::{JobKind, Outcome, State};

    let env = Env::new();
    let dest = Dest::new(&env, "offsite", &["--chunk-sizes", "8192,32768,131072"]);
    let (policies, state) = policy_with_copy(&env, &dest);
    let dirs = ["--policies", policies.to_str().unwrap(), "--state", state.to_str().unwrap()];
    env.ok(&[&["backup", "--policy", "web"][..], &dirs[..2]].concat());
    // No destination password anywhere but in the policy; the first
    // repository named only there too.
    let by_hand = || {
        let mut c = env.command();
        c.env_remove("CAIRN_PASSWORD").env("CAIRN_REPO", "/nonexistent");
        c.env_remove("CAIRN_TO_PASSWORD").env_remove("CAIRN_TO_REPO");
        c.args([&["copy", "--policy", "web", "--json"][..], &dirs].concat());
        c
    };
    let out = by_hand().output().unwrap();
    assert!(out.status.success(), "copy --policy: {}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let copied = r["copied"].as_array().unwrap();
    assert_eq!(copied.len(), 1, "{r}");
    let copy_id = copied[0]["snapshot"].as_str().unwrap().to_string();
    dest.ok(&env, &["check", "--read-data"]);
    let copies: Value = serde_json::from_str(&dest.ok(&env, &["snapshots", "--json"])).unwrap();
    assert_eq!(copies[0]["id"], copy_id.as_str(), "{copies}");
    assert_eq!(copies[0]["policy"], "web", "{copies}");

    // The daemon's evidence: one `copy` record under the policy in each chain.
    let here = records(&env, env.command(), "copy");
    assert_eq!((here.len(), &here[0]["policy"]), (1, &Value::from("web")), "{here:?}");
    let there = records(&env, dest.command(&env), "copy");
    assert_eq!((there.len(), &there[0]["policy"]), (1, &Value::from("web")), "{there:?}");
    assert_eq!(there[0]["payload"]["snapshots_written"][0], copy_id.as_str());

    // The run and the copy's point are in the state: status shows the lag.
    let st = State::open_existing(&state).unwrap().unwrap();
    let run = st.last_run("web", JobKind::Copy, &[Outcome::Success, Outcome::Failure]).unwrap().unwrap();
    assert_eq!(run.outcome, Outcome::Success, "{run:?}");
    let status: Value = serde_json::from_str(&env.ok(&[&["status", "--json"][..], &dirs].concat())).unwrap();
    let lag = &status["policies"][0]["copy"];
    assert_eq!((&lag["state"], &lag["newest"]["snapshot"]), (&Value::from("ok"), &Value::from(copy_id.as_str())));

    // Again: the snapshot is there, nothing is sent.
    let out = by_hand().output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((again["copied"].as_array().unwrap().len(), again["present"].as_array().unwrap().len()), (0, 1));
    assert_eq!(again["packs_added"], 0, "{again}");
    assert_eq!(records(&env, dest.command(&env), "copy").len(), 2);

    let out = by_hand().args(["--to", dest.url()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("leave out --to"));
}

/// A policy with `[copy]`: the daemon runs its copy on `run-now --kind
/// copy`, with evidence in both repositories; `status` shows the running
/// copy's progress, then the copy's lag against its own RPO; `drill
/// --from-copy` restores from the copy and signs into the copy's chain, and
/// `report --check-evidence` finds that drill's record there (review finding
/// 12: it read only the policy's repository and marked the drill unverified).
#[test]
fn a_policys_copy_runs_in_the_daemon_shows_its_lag_and_a_drill_restores_from_it() {
    use cairn::state::{JobKind, Outcome, State};
    use std::time::Duration;

    let env = Env::new();
    let dest = Dest::new(&env, "offsite", &["--chunk-sizes", "8192,32768,131072"]);
    let (policies, state) = policy_with_copy(&env, &dest);
    let dirs = ["--policies", policies.to_str().unwrap(), "--state", state.to_str().unwrap()];
    env.ok(&[&["backup", "--policy", "web"][..], &dirs[..2]].concat());

    // Before any copy: the copy has no point yet.
    let before: Value = serde_json::from_str(&env.ok(&[&["status", "--json"][..], &dirs].concat())).unwrap();
    assert_eq!(before["policies"][0]["copy"]["state"], "no-backup", "{before}");

    let source: Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    let files_total = source[0]["summary"]["files_total"].as_u64().unwrap();
    // The daemon's copy pauses once its snapshot is committed, so that
    // `status` sees it running.
    let mut pause = Pause::new(env.path("pause"));
    let mut daemon = env.command();
    pause.arm(&mut daemon, "copy::snapshot_committed");
    let mut daemon = daemon
        .env_remove("CAIRN_PASSWORD")
        .args([&["daemon", "--listen", "none"][..], &dirs].concat())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let socket = state.join("daemon.sock");
    wait_until("the control socket", Duration::from_secs(30), || socket.exists());
    env.ok(&["run-now", "web", "--kind", "copy", "--state", state.to_str().unwrap()]);
    pause.wait_paused(Duration::from_secs(120));
    // A running copy shows its progress against its totals, as a backup
    // does (asserted once the daemon is stopped).
    let text = env.ok(&[&["status"][..], &dirs].concat());
    pause.release();
    let finished = || {
        State::open_existing(&state)
            .ok()
            .flatten()
            .and_then(|s| s.last_run("web", JobKind::Copy, &[Outcome::Success, Outcome::Failure]).ok().flatten())
    };
    wait_until("the copy's run", Duration::from_secs(120), || finished().is_some());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(wait_exit(&mut daemon, Duration::from_secs(60)).success());
    let run = finished().unwrap();
    assert_eq!(run.outcome, Outcome::Success, "{run:?}");
    let running = text.lines().skip_while(|l| !l.starts_with("Running now:")).nth(1).unwrap_or_default().to_string();
    assert!(running.contains("web") && running.contains(" copy "), "{text}");
    assert!(running.contains(&format!("/{files_total} files, ")) && running.contains('%'), "{text}");

    let copies: Value = serde_json::from_str(&dest.ok(&env, &["snapshots", "--json"])).unwrap();
    let copies = copies.as_array().unwrap();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let copy_id = copies[0]["id"].as_str().unwrap().to_string();
    dest.ok(&env, &["check", "--read-data"]);
    assert_eq!(records(&env, env.command(), "copy").len(), 1);
    let there = records(&env, dest.command(&env), "copy");
    assert_eq!(there.len(), 1);
    assert_eq!(there[0]["policy"], "web");
    assert_eq!(there[0]["payload"]["snapshots_written"][0], copy_id.as_str());

    // The lag: the newest snapshot in the copy, judged against [copy] rpo.
    let status: Value = serde_json::from_str(&env.ok(&[&["status", "--json"][..], &dirs].concat())).unwrap();
    let lag = &status["policies"][0]["copy"];
    assert_eq!(lag["state"], "ok", "{status}");
    assert_eq!(lag["objective_s"], 2.0 * 86400.0, "{status}");
    assert_eq!(lag["newest"]["snapshot"], copy_id.as_str(), "{status}");
    assert!(lag["lag_s"].as_f64().unwrap() < 2.0 * 86400.0);
    let text = env.ok(&[&["status"][..], &dirs].concat());
    assert!(text.contains("Copies") && text.contains("ok "), "{text}");

    // A drill from the copy: restored from the off-site repository, signed there.
    let out = env
        .command()
        .env("CAIRN_REPO", "/nonexistent")
        .args([&["drill", "--policy", "web", "--from-copy", "--json"][..], &dirs].concat())
        .output()
        .unwrap();
    assert!(out.status.success(), "drill --from-copy: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["verdict"]["result"], "pass", "{report}");
    assert_eq!(report["recovery_point"]["snapshot_id"], copy_id.as_str(), "{report}");
    assert!(report["repository"]["location"].as_str().unwrap().ends_with("offsite"), "{}", report["repository"]);
    assert_eq!(records(&env, dest.command(&env), "drill").len(), 1, "the drill is signed into the copy's chain");
    assert!(records(&env, env.command(), "drill").is_empty());

    // The report from the state, checked against the evidence (review
    // finding 12): the drill from the copy is backed by the copy's chain,
    // which `--check-evidence` reads too. The auditor pins the keys both
    // repositories enrolled, each with its own legacy key.
    let mut keys = std::collections::BTreeMap::new();
    for listed in [env.ok(&["evidence", "keys"]), dest.ok(&env, &["evidence", "keys"])] {
        for line in listed.lines().filter(|l| !l.starts_with('#')) {
            keys.insert(line.split_whitespace().nth(1).unwrap().to_string(), format!("{line}\n"));
        }
    }
    assert_eq!(keys.values().filter(|l| l.starts_with("@legacy")).count(), 2, "{keys:?}");
    let keys_file = env.dir.path().join("auditor-keys");
    std::fs::write(&keys_file, keys.into_values().collect::<String>()).unwrap();
    let check = ["report", "--format", "json", "--check-evidence", "--keys", keys_file.to_str().unwrap()];
    let r: Value = serde_json::from_str(&env.ok(&[&check[..], &dirs].concat())).unwrap();
    let web = &r["policies"][0];
    assert_eq!(web["drills"]["count"], 1, "{}", web["drills"]);
    assert_eq!(web["evidence"]["unverified_drills"], serde_json::json!([]), "{}", web["evidence"]);
    assert_eq!(web["evidence"]["state"], "verified", "{}", web["evidence"]);
}

/// A copied snapshot deleted from the destination behind cairn's back:
/// the destination's `copy` record names it, so `check` there exits 5 and
/// says it was deleted. One removed by forget and prune in the destination
/// is covered by their records and stays clean.
#[test]
fn bug_a_copied_snapshot_deleted_from_the_destination_fails_its_check_and_a_forgotten_one_does_not() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), random_bytes(100_000, 7)).unwrap();
    env.backup_json(&[&src], &[]);
    std::fs::write(src.join("g"), b"second").unwrap();
    env.backup_json(&[&src], &[]);
    let dest = Dest::new(&env, "offsite", &[]);
    let r = copy(&env, &dest, &[]);
    let copied: Vec<String> =
        r["copied"].as_array().unwrap().iter().map(|c| c["snapshot"].as_str().unwrap().to_string()).collect();
    assert_eq!(copied.len(), 2, "{r}");
    dest.ok(&env, &["check"]);

    // The older copy forgotten and pruned in the destination: recorded, clean.
    dest.ok(&env, &["forget", "--keep-last", "1"]);
    dest.ok(&env, &["prune"]);
    dest.ok(&env, &["check"]);

    // The newer one deleted as an object.
    std::fs::remove_file(dest.repo.join("snapshots").join(&copied[1])).unwrap();
    let out = dest.command(&env).args(["check"]).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(5), "{text}");
    assert!(text.contains(&copied[1][..8]) && text.contains("deleted"), "{text}");
    assert!(!text.contains(&copied[0][..8]), "the forgotten copy is reported: {text}");
}

/// A copy that the source's evidence check holds snapshots back from (here
/// the source's chain was erased) copies the rest, names each one held in
/// `--json`, and exits 3: the off-site copy is incomplete until someone
/// looks. It used to exit 0, so a scheduled copy looked fine.
#[test]
fn bug_a_copy_that_holds_snapshots_back_exits_3_and_names_them() {
    let env = Env::new();
    let src = source(&env);
    let snap = env.backup_json(&[&src], &[])["snapshot"].as_str().unwrap().to_string();
    for dir in ["evidence/records", "evidence/heads"] {
        let _ = std::fs::remove_dir_all(env.repo.join(dir));
    }
    let dest = Dest::new(&env, "dest", &[]);
    let out = copy_command(&env, &dest, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stderr: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let held: Vec<&str> = v["held"].as_array().unwrap().iter().map(|h| h["snapshot"].as_str().unwrap()).collect();
    assert_eq!(held, [snap.as_str()]);
    assert!(v["copied"].as_array().unwrap().is_empty(), "{v}");
    assert!(stderr.contains(&format!("snapshot {} is not copied", &snap[..8])), "stderr: {stderr}");
}
