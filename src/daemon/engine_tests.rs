//! The engine against a hand-driven clock: every "now" is an argument.

use chrono::{Duration, TimeZone, Utc};

use super::*;
use crate::policy::jitter_delay;
use crate::state::State;

fn policy(name: &str, repo: &str, extra: &str) -> Policy {
    crate::policy::for_tests(name, repo, extra)
}

fn every(cron: &str) -> String {
    format!("[schedule]\nbackup = \"{cron}\"\n")
}

fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap()
}

fn names(jobs: &[JobSpec]) -> Vec<String> {
    jobs.iter().map(|j| format!("{}:{}:{}", j.policy.name, j.kind, j.trigger.as_str())).collect()
}

/// Runs the engine from `from` to `to`, jumping from wake-up to wake-up,
/// every job finishing at once with `ok`; returns the jobs started and when.
fn simulate(e: &mut Engine, state: &State, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(DateTime<Utc>, JobSpec)> {
    let mut now = from;
    let mut started = Vec::new();
    while now <= to {
        for job in e.tick(state, now) {
            e.finished(&job, true, now);
            started.push((now, job));
        }
        match e.next_wakeup(now) {
            Some(t) if t > now => now = t,
            Some(_) => {}
            None => break,
        }
    }
    started
}

#[test]
fn a_day_of_ten_minute_backups_starts_exactly_144_jobs_at_their_slots() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let mut e = Engine::new(Limits::default());
    e.load(vec![policy("web", "/r", &every("*/10 * * * *"))], &state, at(1, 0, 0) - Duration::seconds(1));
    let jobs = simulate(&mut e, &state, at(1, 0, 0) - Duration::seconds(1), at(1, 23, 59));
    assert_eq!(jobs.len(), 144);
    assert!(jobs.iter().all(|(t, j)| Some(*t) == j.slot && j.trigger == Trigger::Schedule));
    assert_eq!(jobs[1].0, at(1, 0, 10));
    // The next due time is remembered for `cairn status` and the next start.
    assert_eq!(state.next_due("web", JobKind::Backup).unwrap().map(|d| d.0), Some(at(2, 0, 0)));
}

#[test]
fn a_nightly_slot_in_the_skipped_hour_fires_once_each_day_across_the_dst_change() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let mut e = Engine::new(Limits::default());
    let tz = "[schedule]\nbackup = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\n";
    e.load(vec![policy("web", "/r", tz)], &state, at(27, 12, 0));
    let jobs = simulate(&mut e, &state, at(27, 12, 0), at(31, 12, 0));
    let times: Vec<String> = jobs.iter().map(|(t, _)| t.format("%d %H:%M").to_string()).collect();
    // 02:30 CET is 01:30 UTC; on the 29th 02:30 does not exist and fires at
    // 03:30 CEST (01:30 UTC); from then on 02:30 CEST is 00:30 UTC.
    assert_eq!(times, ["28 01:30", "29 01:30", "30 00:30", "31 00:30"]);
}

#[test]
fn slots_missed_while_the_daemon_was_down_run_once_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let hourly = every("0 * * * *");
    let mut e = Engine::new(Limits::default());
    e.load(vec![policy("web", "/r", &hourly)], &state, at(1, 0, 30));
    drop(e);
    // Down from 00:30 to 03:10: slots 01:00, 02:00 and 03:00 were missed.
    let mut e = Engine::new(Limits::default());
    e.load(vec![policy("web", "/r", &hourly)], &state, at(1, 3, 10));
    let started = e.tick(&state, at(1, 3, 10));
    assert_eq!(names(&started), ["web:backup:catch-up"]);
    assert_eq!(started[0].slot, Some(at(1, 1, 0)), "the first missed slot is named");
    e.finished(&started[0], true, at(1, 3, 11));
    assert!(e.tick(&state, at(1, 3, 59)).is_empty(), "once, not once per missed slot");
    assert_eq!(e.next_wakeup(at(1, 3, 59)), Some(at(1, 4, 0)));

    // With catch_up = false, the missed slots are let go.
    let no_catch_up = format!("{hourly}catch_up = false\n");
    let mut e = Engine::new(Limits::default());
    e.load(vec![policy("web", "/r", &no_catch_up)], &state, at(1, 9, 10));
    assert!(e.tick(&state, at(1, 9, 10)).is_empty());
    assert_eq!(e.next_wakeup(at(1, 9, 10)), Some(at(1, 10, 0)));
}

#[test]
fn a_job_never_overlaps_itself_and_a_busy_slot_is_skipped_not_stacked() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let mut e = Engine::new(Limits { max_jobs: 4, max_per_repo: 4 });
    let p = format!("{}[drill]\nschedule = \"5 * * * *\"\n", every("0 * * * *"));
    e.load(vec![policy("web", "/r", &p)], &state, at(1, 0, 30));
    let backup = e.tick(&state, at(1, 1, 0));
    assert_eq!(names(&backup), ["web:backup:schedule"]);
    // The backup runs for hours: the drill waits for the policy's lock and
    // the next backup slots are skipped.
    assert!(e.tick(&state, at(1, 1, 5)).is_empty());
    assert!(e.tick(&state, at(1, 2, 0)).is_empty());
    assert!(e.tick(&state, at(1, 3, 0)).is_empty());
    assert_eq!(e.queued().len(), 1, "only the drill waits: {:?}", e.queued());
    e.finished(&backup[0], true, at(1, 3, 1));
    assert_eq!(names(&e.tick(&state, at(1, 3, 1))), ["web:drill:schedule"]);
}

#[test]
fn jobs_wait_for_the_per_repository_and_overall_limits_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let mut e = Engine::new(Limits { max_jobs: 2, max_per_repo: 1 });
    let h = every("0 * * * *");
    let ps = vec![policy("a", "/shared", &h), policy("b", "/shared", &h), policy("c", "/c", &h), policy("d", "/d", &h)];
    e.load(ps, &state, at(1, 0, 30));
    let first = e.tick(&state, at(1, 1, 0));
    assert_eq!(names(&first), ["a:backup:schedule", "c:backup:schedule"], "b shares a's repository; 2 at most");
    e.finished(&first[0], true, at(1, 1, 10));
    assert_eq!(names(&e.tick(&state, at(1, 1, 10))), ["b:backup:schedule"]);
    e.finished(&first[1], true, at(1, 1, 20));
    assert_eq!(names(&e.tick(&state, at(1, 1, 20))), ["d:backup:schedule"]);
}

#[test]
fn a_failed_backup_is_retried_with_doubling_delays_then_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let mut e = Engine::new(Limits::default());
    let p = format!("{}retries = 2\nretry_delay = \"5m\"\n", every("0 0 * * *"));
    e.load(vec![policy("web", "/r", &p)], &state, at(1, 12, 0));
    let job = e.tick(&state, at(2, 0, 0)).remove(0);
    assert_eq!(e.finished(&job, false, at(2, 0, 1)), Some(at(2, 0, 6)));
    assert!(e.tick(&state, at(2, 0, 5)).is_empty(), "not before the delay");
    let retry = e.tick(&state, at(2, 0, 6)).remove(0);
    assert_eq!((retry.trigger, retry.attempt, retry.slot), (Trigger::Retry, 2, Some(at(2, 0, 0))));
    assert_eq!(e.finished(&retry, false, at(2, 0, 7)), Some(at(2, 0, 17)), "the delay doubles");
    let last = e.tick(&state, at(2, 0, 17)).remove(0);
    assert_eq!(last.attempt, 3);
    assert_eq!(e.finished(&last, false, at(2, 0, 18)), None, "two retries, then the next slot");
    assert_eq!(e.next_wakeup(at(2, 0, 18)), Some(at(3, 0, 0)));
    assert_eq!(retry_delay(std::time::Duration::from_secs(300), 30), MAX_RETRY_DELAY);
}

#[test]
fn nothing_starts_once_stopping_and_run_now_requests_are_not_stacked() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let mut e = Engine::new(Limits::default());
    e.load(vec![policy("web", "/r", "")], &state, at(1, 0, 0));
    assert_eq!(e.next_wakeup(at(1, 0, 0)), None, "no schedule: the policy runs only when asked");
    assert_eq!(e.request("web", JobKind::Backup, at(1, 0, 0)), Requested::Queued);
    assert_eq!(e.request("web", JobKind::Backup, at(1, 0, 0)), Requested::AlreadyQueued);
    assert_eq!(e.stop(), 0);
    assert!(e.tick(&state, at(1, 0, 1)).is_empty());
}

#[test]
fn a_reload_drops_removed_policies_and_reschedules_changed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let mut e = Engine::new(Limits::default());
    e.load(vec![policy("a", "/a", &every("0 * * * *")), policy("b", "/b", &every("0 * * * *"))], &state, at(1, 0, 30));
    e.request("b", JobKind::Prune, at(1, 0, 30));
    e.load(vec![policy("a", "/a", &every("*/15 * * * *"))], &state, at(1, 0, 31));
    assert!(e.queued().is_empty(), "b's queued job went with b");
    assert_eq!(e.next_wakeup(at(1, 0, 31)), Some(at(1, 0, 45)));
    assert_eq!(state.next_due("b", JobKind::Backup).unwrap(), None, "b no longer shows a next run");
    assert!(e.policy("b").is_none());
}

#[test]
fn bug_a_restart_between_a_slot_and_its_jittered_start_dropped_that_night() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let p = || policy("web", "/r", "[schedule]\nbackup = \"0 1 * * *\"\njitter = \"2h\"\n");
    let slot = at(2, 1, 0);
    let due = slot + chrono::Duration::from_std(jitter_delay("web", slot, p().schedule.jitter)).unwrap();
    assert!(due > at(2, 1, 1), "the test needs a jitter past 01:01 (got {due})");
    // Started (or reloaded) after the slot, before its jittered start.
    let mut e = Engine::new(Limits::default());
    e.load(vec![p()], &state, at(2, 1, 1));
    assert_eq!(e.next_wakeup(at(2, 1, 1)), Some(due), "tonight's run is still ahead");
    e.load(vec![p()], &state, at(2, 1, 1) + Duration::seconds(1));
    assert_eq!(e.next_wakeup(at(2, 1, 1)), Some(due), "a reload keeps it too");
    let started = e.tick(&state, due);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].slot, Some(slot));
}

#[test]
fn bug_a_job_waiting_for_a_lock_made_the_loop_spin() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let mut e = Engine::new(Limits { max_jobs: 4, max_per_repo: 1 });
    let h = every("0 * * * *");
    e.load(vec![policy("a", "/shared", &h), policy("b", "/shared", &h)], &state, at(1, 0, 30));
    assert_eq!(e.tick(&state, at(1, 1, 0)).len(), 1, "b waits for a's repository");
    let now = at(1, 1, 0) + Duration::seconds(5);
    let wake = e.next_wakeup(now).unwrap();
    assert!(wake > now, "the loop would wake at once, again and again: {wake}");
    assert_eq!(wake, at(1, 2, 0), "the next slot; a's end wakes the loop for b");
}

#[test]
fn runs_interrupted_by_a_stop_run_again_at_start_up_unless_catch_up_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let mut e = Engine::new(Limits::default());
    let h = every("0 3 * * *");
    e.load(vec![policy("web", "/r", &h), policy("off", "/o", &format!("{h}catch_up = false\n"))], &state, at(2, 9, 0));
    e.rerun_interrupted("web", JobKind::Backup, Some(at(2, 3, 0)), at(2, 9, 0));
    e.rerun_interrupted("web", JobKind::Backup, Some(at(2, 3, 0)), at(2, 9, 0));
    e.rerun_interrupted("off", JobKind::Backup, Some(at(2, 3, 0)), at(2, 9, 0));
    let started = e.tick(&state, at(2, 9, 0));
    assert_eq!(names(&started), ["web:backup:catch-up"], "once, and not for the policy that lets slots go");
    assert_eq!(started[0].slot, Some(at(2, 3, 0)));
}

#[test]
fn a_copy_with_a_schedule_runs_at_its_slots_after_the_backup_and_one_without_never() {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(dir.path()).unwrap();
    let mut e = Engine::new(Limits::default());
    let copy = "[copy]\nto = \"/offsite\"\npassword_env = \"PW\"\nschedule = \"30 2 * * *\"\n";
    let unscheduled = "[copy]\nto = \"/offsite\"\npassword_env = \"PW\"\n";
    e.load(
        vec![
            policy("web", "/r", &(every("0 2 * * *") + copy)),
            policy("db", "/d", &(every("0 2 * * *") + unscheduled)),
        ],
        &state,
        at(1, 0, 0),
    );
    let jobs = simulate(&mut e, &state, at(1, 0, 0), at(2, 23, 0));
    let seen: Vec<String> =
        jobs.iter().map(|(t, j)| format!("{} {}:{}", t.format("%d %H:%M"), j.policy.name, j.kind)).collect();
    assert_eq!(
        seen,
        [
            "01 02:00 db:backup",
            "01 02:00 web:backup",
            "01 02:30 web:copy",
            "02 02:00 db:backup",
            "02 02:00 web:backup",
            "02 02:30 web:copy"
        ]
    );
    assert_eq!(state.next_due("web", JobKind::Copy).unwrap().map(|d| d.0), Some(at(3, 2, 30)));
    assert_eq!(state.next_due("db", JobKind::Copy).unwrap(), None);
}
