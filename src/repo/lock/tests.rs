//! Lock judgement, shared against exclusive, and the take race, driven
//! step by step through [`Claim`] on a local repository: no timing.

use std::sync::Arc;

use chrono::{Duration as Span, Utc};

use super::*;
use crate::backend::LocalBackend;
use crate::crypto::KdfParams;
use crate::repo::InitOptions;

fn repo() -> (tempfile::TempDir, Repository) {
    let d = tempfile::tempdir().unwrap();
    let opts = InitOptions { kdf: KdfParams::CHEAPEST, ..Default::default() };
    let r = Repository::init(Arc::new(LocalBackend::new(d.path().join("repo"))), b"lock tests", opts).unwrap();
    (d, r)
}

fn info(host: &str, pid: u32, exclusive: bool, refreshed_ago_min: i64) -> LockInfo {
    let t = Utc::now() - Span::minutes(refreshed_ago_min);
    LockInfo {
        exclusive,
        hostname: host.into(),
        username: "u".into(),
        pid,
        time: t,
        refreshed: t,
        purpose: if exclusive { "prune".into() } else { "backup".into() },
        marks: None,
    }
}

/// A host named `here` on which only pid 42 runs.
const HERE: Host<'static> = Host { name: "here", alive: &|pid| pid == 42 };

fn plant(r: &Repository, dir: &str, i: &LockInfo) -> String {
    let key = format!("{dir}/{}", Id::random());
    write_lock(r, &key, i).unwrap();
    key
}

#[test]
fn staleness_by_age_dead_process_and_future_time() {
    // A second later than the locks below were made, so that whole minutes come out exact.
    let now = Utc::now() + Span::seconds(1);
    assert_eq!(info("here", 42, false, 0).staleness(now, &HERE), None, "a fresh lock of a running process");
    assert_eq!(info("there", 7, false, 29).staleness(now, &HERE), None, "another host's pid is not judged here");
    assert_eq!(info("there", 7, false, 31).staleness(now, &HERE), Some(Staleness::Old { minutes: 31 }));
    assert_eq!(info("here", 43, false, 0).staleness(now, &HERE), Some(Staleness::DeadProcess { pid: 43 }));
    // Within the allowed skew a lock from the future is honoured …
    assert_eq!(info("there", 7, true, -4).staleness(now, &HERE), None);
    // … beyond it, it is stale and suspicious, however it was refreshed.
    let future = info("there", 7, true, -60 * 24 * 365 * 75);
    let s = future.staleness(now, &HERE).unwrap();
    assert!(matches!(s, Staleness::Future { minutes } if minutes > 60 * 24 * 365 * 74), "{s:?}");
    assert!(s.is_suspicious() && s.to_string().starts_with("suspicious: its time is"), "{s}");
    let mut later_time = info("there", 7, true, 0);
    later_time.time = now + Span::minutes(10);
    assert!(matches!(later_time.staleness(now, &HERE), Some(Staleness::Future { .. })));
    assert!(!Staleness::Old { minutes: 31 }.is_suspicious());
}

#[test]
fn shared_locks_coexist_and_exclusive_excludes_both_ways() {
    let (_d, r) = repo();
    let a = acquire(&r, false, "backup").unwrap();
    let b = acquire(&r, false, "backup").expect("two shared locks coexist");
    let Err(e) = acquire(&r, true, "prune") else { panic!("an exclusive lock beside shared ones") };
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    assert!(e.to_string().contains("backup of"), "{e}");
    drop((a, b));
    assert!(r.list_ids(REPOSITORY_LOCKS).unwrap().is_empty(), "dropped locks are removed");
    let x = acquire(&r, true, "prune").unwrap();
    assert!(matches!(acquire(&r, false, "backup"), Err(Error::Locked { .. })));
    assert!(matches!(acquire(&r, true, "prune"), Err(Error::Locked { .. })));
    // A lock elsewhere is not in the way.
    let _evidence = acquire_in(&r, EVIDENCE_LOCKS, true, "evidence append").unwrap();
    drop(x);
    assert_eq!(r.list_ids(REPOSITORY_LOCKS).unwrap().len(), 0, "losers removed their own locks");
}

#[test]
fn two_takers_that_write_before_either_looks_both_back_off() {
    let (_d, r) = repo();
    let a = Claim::write(&r, REPOSITORY_LOCKS, true, "prune").unwrap();
    let b = Claim::write(&r, REPOSITORY_LOCKS, true, "prune").unwrap();
    let (va, vb) = (a.look(), b.look());
    assert!(matches!(a.settle(va), Err(Error::Locked { .. })));
    assert!(matches!(b.settle(vb), Err(Error::Locked { .. })));
    assert!(r.list_ids(REPOSITORY_LOCKS).unwrap().is_empty(), "both removed their lock");
}

/// Every interleaving of two takers' steps (write, look, settle), for each
/// mix of shared and exclusive: never do two conflicting takers both hold
/// the lock, and one that looked before the other wrote always gets it.
#[test]
fn no_interleaving_lets_two_conflicting_takers_both_proceed() {
    // The 20 orders of a's three steps (true) among b's three.
    let mut orders = Vec::new();
    for mask in 0u32..64 {
        if mask.count_ones() == 3 {
            orders.push((0..6).map(|i| mask & (1 << i) != 0).collect::<Vec<bool>>());
        }
    }
    assert_eq!(orders.len(), 20);
    let (_d, r) = repo();
    for (ex_a, ex_b) in [(true, true), (true, false), (false, true), (false, false)] {
        for order in &orders {
            let mut claims: [Option<Claim<'_>>; 2] = [None, None];
            let mut verdicts: [Option<Verdict>; 2] = [None, None];
            let mut held: [Option<Result<Lock>>; 2] = [None, None];
            let mut steps = [0usize; 2];
            let mut looked_before_other_wrote = [false; 2];
            for &is_a in order {
                let t = if is_a { 0 } else { 1 };
                match steps[t] {
                    0 => {
                        claims[t] = Some(Claim::write(&r, REPOSITORY_LOCKS, [ex_a, ex_b][t], "x").unwrap());
                    }
                    1 => {
                        looked_before_other_wrote[t] = steps[1 - t] == 0;
                        verdicts[t] = Some(claims[t].as_ref().unwrap().look());
                    }
                    _ => held[t] = Some(claims[t].take().unwrap().settle(verdicts[t].take().unwrap())),
                }
                steps[t] += 1;
            }
            let ok = [held[0].as_ref().unwrap().is_ok(), held[1].as_ref().unwrap().is_ok()];
            let ctx = format!("order {order:?}, exclusive {ex_a}/{ex_b}: held {ok:?}");
            if ex_a || ex_b {
                assert!(!(ok[0] && ok[1]), "both proceeded: {ctx}");
            } else {
                assert!(ok[0] && ok[1], "shared takers never conflict: {ctx}");
            }
            for t in 0..2 {
                if looked_before_other_wrote[t] {
                    assert!(ok[t], "a taker alone when it looked must proceed: {ctx}");
                }
            }
            drop(held);
            assert!(r.list_ids(REPOSITORY_LOCKS).unwrap().is_empty(), "a lock was left behind: {ctx}");
        }
    }
}

#[test]
fn stale_and_unreadable_locks_do_not_block_and_live_ones_name_their_remedy() {
    let (_d, r) = repo();
    let me = crate::host::hostname();
    // A dead process of this host, an old lock, a lock "from 2100", garbage.
    plant(&r, REPOSITORY_LOCKS, &info(&me, dead_pid(), true, 0));
    plant(&r, REPOSITORY_LOCKS, &info("elsewhere", 1, true, 45));
    let mut future = info("elsewhere", 1, true, 0);
    future.time = "2100-01-01T00:00:00Z".parse().unwrap();
    future.refreshed = future.time;
    plant(&r, REPOSITORY_LOCKS, &future);
    r.backend().put(&format!("{REPOSITORY_LOCKS}/{}", Id::random()), b"not a lock").unwrap();
    drop(acquire(&r, true, "prune").expect("nothing live is in the way"));

    // A live lock of another host: wait, or remove it by hand if the host is down.
    let fresh = plant(&r, REPOSITORY_LOCKS, &info("elsewhere", 1, true, 1));
    let Err(e) = acquire(&r, false, "backup") else { panic!("the live lock was ignored") };
    let hint = e.hint().unwrap();
    assert!(hint.contains("wait for the prune on elsewhere") && hint.contains("cairn unlock --remove-all"), "{hint}");
    r.backend().delete(&fresh).unwrap();
    // One that missed its refreshes looks stale: say so.
    let silent = plant(&r, REPOSITORY_LOCKS, &info("elsewhere", 1, true, 20));
    let hint = acquire(&r, false, "backup").err().unwrap().hint().unwrap();
    assert!(hint.contains("it looks stale") && hint.contains("not refreshed it for 20 min"), "{hint}");
    r.backend().delete(&silent).unwrap();
    // Our own running process: wait for it (or stop it); unlock will not help.
    let _held = acquire(&r, true, "prune").unwrap();
    let hint = acquire(&r, false, "backup").err().unwrap().hint().unwrap();
    assert!(hint.contains(&format!("wait for process {} on this host", std::process::id())), "{hint}");
}

#[test]
fn unlock_removes_stale_locks_and_with_remove_all_every_lock_but_a_running_one_here() {
    let (_d, r) = repo();
    let dead = plant(&r, REPOSITORY_LOCKS, &info("here", 43, false, 0));
    let mut future = info("there", 1, true, 0);
    future.refreshed += Span::days(365 * 75);
    let forged = plant(&r, REPOSITORY_LOCKS, &future);
    let garbage = format!("evidence/locks/{}", Id::random());
    r.backend().put(&garbage, b"junk").unwrap();
    let live_there = plant(&r, REPOSITORY_LOCKS, &info("there", 1, false, 1));
    let running_here = plant(&r, EVIDENCE_LOCKS, &info("here", 42, true, 1));

    let rep = remove_stale_at(&r, false, Utc::now(), &HERE).unwrap();
    let mut removed: Vec<&str> = rep.removed.iter().map(|l| l.object.as_str()).collect();
    removed.sort();
    let mut want = vec![dead.as_str(), forged.as_str(), garbage.as_str()];
    want.sort();
    assert_eq!(removed, want);
    let forged_entry = rep.removed.iter().find(|l| l.object == forged).unwrap();
    assert!(forged_entry.suspicious && forged_entry.reason.contains("in the future"), "{forged_entry:?}");
    assert!(rep.removed.iter().find(|l| l.object == garbage).unwrap().suspicious);
    assert!(!rep.removed.iter().find(|l| l.object == dead).unwrap().suspicious);
    let kept: Vec<(&str, bool)> = rep.kept.iter().map(|k| (k.object.as_str(), k.running_here)).collect();
    assert_eq!(kept.len(), 2);
    assert!(kept.contains(&(live_there.as_str(), false)) && kept.contains(&(running_here.as_str(), true)));

    let rep = remove_stale_at(&r, true, Utc::now(), &HERE).unwrap();
    assert_eq!(rep.removed.iter().map(|l| l.object.as_str()).collect::<Vec<_>>(), vec![live_there.as_str()]);
    assert_eq!(rep.kept.len(), 1);
    assert!(rep.kept[0].running_here && rep.kept[0].holder.contains("pid 42"), "{:?}", rep.kept);
    assert!(r.backend().stat(&running_here).is_ok(), "a running process's lock is never removed");
}

#[test]
fn taking_a_lock_removes_the_locks_of_dead_processes_of_this_host_in_its_directory() {
    let (_d, r) = repo();
    let me = crate::host::hostname();
    let dead = plant(&r, REPOSITORY_LOCKS, &info(&me, dead_pid(), false, 0));
    let dead_evidence = plant(&r, EVIDENCE_LOCKS, &info(&me, dead_pid(), true, 0));
    let old_elsewhere = plant(&r, REPOSITORY_LOCKS, &info("elsewhere", 1, false, 90));
    let mine = plant(&r, REPOSITORY_LOCKS, &info(&me, std::process::id(), false, 0));
    drop(acquire(&r, false, "backup").unwrap());
    assert!(r.backend().stat(&dead).is_err(), "a dead process's lock survived");
    assert!(r.backend().stat(&dead_evidence).is_ok(), "another directory's locks are its takers' business");
    assert!(r.backend().stat(&old_elsewhere).is_ok(), "another host's lock is for `cairn unlock` to judge");
    assert!(r.backend().stat(&mine).is_ok());
    drop(acquire_in(&r, EVIDENCE_LOCKS, true, "evidence append").unwrap());
    assert!(r.backend().stat(&dead_evidence).is_err());
}

/// The pid of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    assert!(!process_alive(pid));
    pid
}

#[test]
fn prunes_exclude_each_other_and_nothing_else_and_an_older_builds_prune_keeps_them_out() {
    let (_d, r) = repo();
    let prune = acquire_prune(&r).unwrap();
    let Err(e) = acquire_prune(&r) else { panic!("two prunes at once") };
    assert!(e.to_string().contains("prune of"), "{e}");
    let marks = vec![Id::random()];
    let backup = acquire_honouring(&r, "backup", marks.clone()).expect("a backup beside a prune");
    let forget = acquire(&r, false, FORGET_PURPOSE).expect("a forget beside a prune");
    let seen: Vec<LockInfo> = live_locks_in(&r, REPOSITORY_LOCKS, None).unwrap().into_iter().map(|l| l.1).collect();
    assert!(seen.iter().any(|l| l.purpose == "backup" && l.marks.as_ref() == Some(&marks)), "{seen:?}");
    drop((prune, backup, forget));
    assert!(r.list_ids(PRUNE_LOCKS).unwrap().is_empty() && r.list_ids(REPOSITORY_LOCKS).unwrap().is_empty());
    // An exclusive lock under `locks/`, as builds before two-phase prune take.
    let older = acquire(&r, true, "prune").unwrap();
    assert!(matches!(acquire_prune(&r), Err(Error::Locked { .. })));
    assert!(matches!(acquire_honouring(&r, "backup", Vec::new()), Err(Error::Locked { .. })));
    drop(older);
    assert!(r.list_ids(PRUNE_LOCKS).unwrap().is_empty(), "the refused prune removed its lock");
}

/// Bug: a prune judged other hosts' locks by its own clock (and by the
/// times the locks say), so a wrong clock on either side aged a running
/// backup's lock, or made it look forged. By the storage's clock, a lock
/// the storage wrote a moment ago is live whatever time it says, and one
/// the storage last wrote 40 min ago is stale whatever time it says.
#[test]
fn bug_a_prune_judges_locks_by_the_storage_clock_not_by_the_times_they_say() {
    let (d, r) = repo();
    let dir = REPOSITORY_LOCKS;
    // Fresh on storage, but saying 40 min ago (its holder's clock is behind):
    plant(&r, dir, &info("there", 7, false, 40));
    // Fresh on storage, saying 40 min ahead (its holder's clock is ahead):
    let ahead = plant(&r, dir, &info("there", 8, false, -40));
    // Saying now, but last written 40 min ago by the file system's clock:
    let silent = plant(&r, dir, &info("there", 9, false, 0));
    let forty_min_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 60);
    let path = d.path().join("repo").join(&silent);
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(forty_min_ago).unwrap();

    let by_host: Vec<u32> = live_locks_in(&r, dir, None).unwrap().into_iter().map(|(_, l)| l.pid).collect();
    assert_eq!(by_host, [9], "the times the locks say (the old judgement, kept for unlock)");

    let j = judge_by_storage(&r, dir).unwrap();
    let mut live: Vec<u32> = j.live.iter().map(|l| l.pid).collect();
    live.sort();
    assert_eq!(live, [7, 8], "refreshed on storage within the stale time: live, whatever they say");
    assert_eq!(j.suspicious.len(), 1, "{:?}", j.suspicious);
    assert_eq!(j.suspicious[0].0, ahead);
    assert!(matches!(j.suspicious[0].2, Staleness::Future { minutes } if minutes >= 34), "{:?}", j.suspicious);
    let probe_age = (Utc::now() - j.now).num_seconds().abs();
    assert!(probe_age < 600, "the file system's clock is this machine's: {} vs now", j.now);
    assert!(r.backend().list(&format!("{CLOCK_PROBES}/")).unwrap().is_empty(), "the clock probe is removed");
}

/// The storage's clock on a local repository is the file system's: a probe
/// file's time. A probe left by a killed prune goes with the next probe.
#[test]
fn the_storage_clock_of_a_local_repository_is_a_probe_files_time_and_old_probes_are_swept() {
    let (d, r) = repo();
    let old = format!("{CLOCK_PROBES}/{}", Id::random());
    r.backend().put_mutable(&old, b"").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    let path = d.path().join("repo").join(&old);
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(two_hours_ago).unwrap();
    let before = Utc::now() - Span::seconds(1);
    let t = storage_clock(&r);
    assert!(t >= before && t <= Utc::now() + Span::seconds(1), "{t}");
    assert!(r.backend().list(&format!("{CLOCK_PROBES}/")).unwrap().is_empty(), "the old probe is swept");
    assert!(find_locks(&r, REPOSITORY_LOCKS, None, Utc::now(), &HERE).unwrap().is_empty(), "a probe is no lock");
}
