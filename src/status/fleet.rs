//! The handover screen of a fleet (`cairn status --repo … --keys`): for
//! every host in the repositories' verified evidence and each of its
//! policies, the last verified backup and its age against the RPO, the last
//! drill, and the hosts that have gone silent. Built from the evidence
//! alone (no state database, no password): a pure function of the digest
//! ([`crate::evidence::fleet`]) and now.
//!
//! - **last verified backup**: the newest backup record that counts and
//!   saved a snapshot; its age is now minus its snapshot's time;
//! - **RPO objective**: the one the newest drill record of that host and
//!   policy carries (policy files are not read: the hosts have their own);
//!   none before a first drill;
//! - **silent**: no record that counts, of any kind, within `silent_after`
//!   before now. An administrator's key (it signed revocations or
//!   acceptances alone) is listed in `admins` instead: it backs nothing up.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{DrillState, RpoState, AT_RISK};
use crate::evidence::fleet::{silent, FlaggedSnapshot, Fleet, PolicyFacts, RepositorySummary, Uncounted};

pub const SCHEMA: &str = "cairn.fleet-status/1";

/// The newest backup that counts.
#[derive(Debug, Clone, Serialize)]
pub struct LastBackup {
    pub snapshot: Option<String>,
    /// The snapshot's time: the data is as of then.
    pub data_as_of: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// The record: `<key id>/<seq>` in `repository`.
    pub record: String,
    pub repository: String,
}

/// The last drill that counts.
#[derive(Debug, Clone, Serialize)]
pub struct LastDrill {
    pub started_at: DateTime<Utc>,
    pub verdict: String,
    pub rto_measured_s: Option<f64>,
    pub rto_objective_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostPolicy {
    pub policy: String,
    pub last_backup: Option<LastBackup>,
    /// The newest backup record did not save a snapshot.
    pub failing: bool,
    pub last_failure: Option<DateTime<Utc>>,
    pub rpo_state: RpoState,
    pub rpo_age_s: Option<f64>,
    pub rpo_objective_s: Option<f64>,
    pub drill_state: DrillState,
    pub last_drill: Option<LastDrill>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub last_record: Option<DateTime<Utc>>,
    pub silent: bool,
    pub keys: Vec<String>,
    pub policies: Vec<HostPolicy>,
}

/// The whole screen, and its `--json` form.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    pub schema: &'static str,
    pub generated_at: DateTime<Utc>,
    pub silent_after_s: f64,
    pub repositories: Vec<RepositorySummary>,
    pub hosts: Vec<HostStatus>,
    /// The hosts that have gone silent.
    pub silent: Vec<String>,
    /// The hosts of keys that signed administration alone (revocations,
    /// acceptances): no hosts, never silent.
    pub admins: Vec<String>,
    pub not_counted: Vec<Uncounted>,
    pub flagged: Vec<FlaggedSnapshot>,
}

fn secs(d: chrono::Duration) -> f64 {
    d.num_milliseconds().max(0) as f64 / 1000.0
}

fn policy(name: &str, p: &PolicyFacts, now: DateTime<Utc>) -> HostPolicy {
    let backups: Vec<_> = p.backups.iter().filter(|b| b.time <= now).collect();
    let last_saved = backups.iter().rev().find(|b| b.saved());
    let last_failure = backups.iter().rev().find(|b| !b.saved()).map(|b| b.time);
    let drills: Vec<_> = p.drills.iter().filter(|d| d.started_at <= now).collect();
    let objective = drills.iter().rev().find_map(|d| d.rpo_objective_s);
    let age = last_saved.map(|b| secs(now - b.started()));
    let rpo_state = match (objective, age) {
        (None, _) => RpoState::NoObjective,
        (Some(_), None) => RpoState::NoBackup,
        (Some(o), Some(a)) if a > o => RpoState::Breached,
        (Some(o), Some(a)) if a > AT_RISK * o => RpoState::AtRisk,
        _ => RpoState::Ok,
    };
    let last = drills.last();
    HostPolicy {
        policy: name.to_string(),
        last_backup: last_saved.map(|b| LastBackup {
            snapshot: b.snapshot.clone(),
            data_as_of: b.started(),
            recorded_at: b.time,
            record: format!("{}/{}", b.signer, b.seq),
            repository: b.repository.clone(),
        }),
        failing: backups.last().is_some_and(|b| !b.saved()),
        last_failure,
        rpo_state,
        rpo_age_s: age,
        rpo_objective_s: objective,
        drill_state: match last {
            None => DrillState::Never,
            Some(d) if d.verdict == "pass" => DrillState::Pass,
            Some(_) => DrillState::Fail,
        },
        last_drill: last.map(|d| LastDrill {
            started_at: d.started_at,
            verdict: d.verdict.clone(),
            rto_measured_s: d.rto_measured_s,
            rto_objective_s: d.rto_objective_s,
        }),
    }
}

/// The screen of `fleet` at `now`.
pub fn build(fleet: &Fleet, now: DateTime<Utc>, silent_after: chrono::Duration) -> FleetStatus {
    let hosts: Vec<HostStatus> = fleet
        .hosts
        .values()
        .map(|h| HostStatus {
            host: h.host.clone(),
            last_record: h.last_record_until(now),
            silent: silent(h.last_record_until(now), now, silent_after),
            keys: h.keys.iter().cloned().collect(),
            policies: h.policies.iter().map(|(n, p)| policy(n, p, now)).collect(),
        })
        .collect();
    FleetStatus {
        schema: SCHEMA,
        generated_at: now,
        silent_after_s: secs(silent_after),
        repositories: fleet.repositories.clone(),
        silent: hosts.iter().filter(|h| h.silent).map(|h| h.host.clone()).collect(),
        admins: fleet.admins.keys().cloned().collect(),
        hosts,
        not_counted: fleet.not_counted.clone(),
        flagged: fleet.flagged.clone(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::evidence::fleet::{digest, Source};
    use crate::evidence::synthetic::Synthetic;

    fn day(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap()
    }

    #[test]
    fn each_host_gets_its_last_verified_backup_rpo_and_drill_and_the_silent_one_is_named() {
        let mut s = Synthetic::new(0x31);
        let db = s.host("db1", true, day(1, 0));
        let quiet = s.host("quiet", true, day(1, 0));
        let rogue = s.host("rogue", false, day(1, 0));
        s.backup(quiet, "pg", day(2, 2), 5);
        s.drill(quiet, "pg", day(2, 6), true, 600, (26 * 3600, 3600));
        s.drill(db, "pg", day(9, 6), false, 600, (8 * 3600, 3600));
        s.backup(db, "pg", day(10, 2), 5);
        s.backup(db, "pg", day(10, 8), 5);
        // A newer backup by a key nobody pinned: it must not refresh db1's RPO.
        s.backup(rogue, "pg", day(10, 11), 5);
        let fleet = digest(&[Source { location: "/srv/r".into(), read: Ok(s.verify(day(10, 12))) }]);
        let st = build(&fleet, day(10, 12), Duration::hours(26));
        assert_eq!(st.silent, ["quiet"]);
        let db1 = &st.hosts[0];
        assert_eq!((db1.host.as_str(), db1.silent), ("db1", false));
        let pg = &db1.policies[0];
        let last = pg.last_backup.as_ref().unwrap();
        assert_eq!(last.data_as_of, day(10, 8));
        assert_eq!(last.record, format!("{}/3", s.key_id(db)));
        // 4 h old against the 8 h objective of its drill: past 80 %? no, 50 %.
        assert_eq!((pg.rpo_state, pg.rpo_age_s, pg.rpo_objective_s), (RpoState::Ok, Some(4.0 * 3600.0), Some(28800.0)));
        assert_eq!(pg.drill_state, DrillState::Fail);
        let q = &st.hosts[1].policies[0];
        assert_eq!((q.rpo_state, q.drill_state), (RpoState::Breached, DrillState::Pass));
        assert_eq!(st.not_counted.len(), 1);
        assert_eq!(st.not_counted[0].reason, "untrusted");
        let json = serde_json::to_value(&st).unwrap();
        assert_eq!(json["schema"], SCHEMA);
        assert_eq!(json["hosts"][0]["policies"][0]["rpo_state"], "ok");
    }
    #[test]
    fn an_administrators_key_is_named_as_such_and_never_silent() {
        let mut s = Synthetic::new(0x33);
        let db = s.host("db1", true, day(1, 0));
        let admin = s.host("admin", true, day(1, 0));
        s.host("fresh", true, day(1, 0));
        s.backup(db, "pg", day(10, 2), 5);
        s.append(admin, "accept", None, day(2, 3), serde_json::json!({"snapshot": "3".repeat(64)}));
        let fleet = digest(&[Source { location: "/srv/r".into(), read: Ok(s.verify(day(10, 12))) }]);
        let st = build(&fleet, day(10, 12), Duration::hours(26));
        assert_eq!(st.silent, ["fresh"], "the admin's key backs nothing up: it is not silent");
        assert_eq!(st.admins, ["admin"]);
        assert_eq!(st.hosts.iter().map(|h| h.host.as_str()).collect::<Vec<_>>(), ["db1", "fresh"]);
    }

    #[test]
    fn bug_a_record_dated_ahead_kept_a_host_from_going_silent_on_the_handover_screen() {
        let mut s = Synthetic::new(0x32);
        let quiet = s.host("quiet", true, day(1, 0));
        s.backup(quiet, "pg", day(2, 2), 5);
        s.append(quiet, "enroll", None, Utc.with_ymd_and_hms(2099, 1, 1, 0, 0, 0).unwrap(), serde_json::json!({}));
        let fleet = digest(&[Source { location: "/srv/r".into(), read: Ok(s.verify(day(10, 12))) }]);
        let st = build(&fleet, day(10, 12), Duration::hours(26));
        assert_eq!(st.silent, ["quiet"]);
        assert_eq!(st.hosts[0].last_record, Some(day(2, 2) + Duration::minutes(5)));
    }
}
