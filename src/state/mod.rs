//! Job state: what the daemon, `cairn drill` and `cairn report` remember
//! between runs, in one SQLite database (`state.db`) in the state
//! directory.
//!
//! Design:
//! - the state directory is `--state DIR`, else `CAIRN_STATE_DIR`, else
//!   `/var/lib/cairn` for root and `$XDG_STATE_HOME/cairn` (by default
//!   `~/.local/state/cairn`) for anyone else ([`resolve_dir`]). Drill
//!   reports and drill scratch space live under it too;
//! - the database is opened in WAL mode with a busy timeout, so the daemon
//!   writes while `cairn status` reads and `cairn drill` writes from
//!   another process; every statement is short and commits at once;
//! - the schema is versioned with SQLite's `user_version` and migrated
//!   forward on open ([`schema`]); a database from a newer cairn is refused
//!   rather than misread;
//! - times are stored as RFC 3339 UTC text with milliseconds, which sorts
//!   as it reads, so ranges are plain string comparisons;
//! - a run is written when it starts (outcome `running`, with the pid) and
//!   finished when it ends, so `status` shows what runs now and a daemon
//!   that died mid-job leaves a row that the next start marks
//!   `interrupted` ([`State::close_orphaned_runs`]).

mod rows;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};

pub use rows::{DrillRow, JobKind, NewRun, Outcome, RecoveryPoint, RunFinish, RunRow, Trigger};

/// The file name of the database inside the state directory.
pub const DB_FILE: &str = "state.db";

/// The state directory: the flag's value, else `CAIRN_STATE_DIR`, else the
/// default for this user.
pub fn resolve_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("CAIRN_STATE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    default_dir()
}

/// `/var/lib/cairn` for root; `$XDG_STATE_HOME/cairn` or
/// `~/.local/state/cairn` otherwise.
fn default_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/cairn");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("cairn");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/cairn")
}

/// Formats a time the way the database stores it.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn parse_ts(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

/// The state database of one state directory.
pub struct State {
    conn: Mutex<Connection>,
    dir: PathBuf,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "State({})", self.dir.display())
    }
}

impl State {
    /// Opens (creating when needed) the state in `dir`.
    /// A new directory is 0700 and a new database 0600 whatever the umask
    /// (SQLite gives its WAL and shared-memory files the database's mode);
    /// existing ones keep the mode the administrator gave them.
    pub fn open(dir: &Path) -> Result<State> {
        crate::private::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(DB_FILE);
        match crate::private::create_new(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
        let conn = Connection::open(&path).map_err(|e| db_error(&path, e))?;
        schema::prepare(&conn).map_err(|e| db_error(&path, e))?;
        Ok(State { conn: Mutex::new(conn), dir: dir.to_path_buf() })
    }

    /// Opens the state in `dir` if there is one; `None` when nothing was
    /// ever recorded there (a reader such as `status` must not create it).
    /// A user who may read the state but not write it (an auditor running
    /// `cairn report`, an operator running `cairn status`) gets a
    /// read-only view.
    pub fn open_existing(dir: &Path) -> Result<Option<State>> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let writable = |p: &Path| nix::unistd::access(p, nix::unistd::AccessFlags::W_OK).is_ok();
        if writable(&path) && writable(dir) {
            return State::open(dir).map(Some);
        }
        let conn = schema::open_read_only(&path).map_err(|e| db_error(&path, e))?;
        Ok(Some(State { conn: Mutex::new(conn), dir: dir.to_path_buf() }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|e| db_error(&self.dir.join(DB_FILE), e))
    }

    /// Records the start of a run; returns its id.
    pub fn start_run(&self, r: &NewRun) -> Result<i64> {
        self.with(|c| {
            c.execute(
                "INSERT INTO runs (policy, kind, trigger, scheduled_at, started_at, outcome, attempt, pid)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6, ?7)",
                params![
                    r.policy,
                    r.kind.as_str(),
                    r.trigger.as_str(),
                    r.scheduled_at.map(ts),
                    ts(r.started_at),
                    r.attempt,
                    std::process::id()
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Replaces the progress (any JSON) of a running job.
    pub fn set_progress(&self, run: i64, progress: &serde_json::Value) -> Result<()> {
        self.with(|c| {
            c.execute("UPDATE runs SET progress = ?2 WHERE id = ?1", params![run, progress.to_string()])?;
            Ok(())
        })
    }

    /// Records how a run ended.
    pub fn finish_run(&self, run: i64, f: &RunFinish) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET ended_at = ?2, outcome = ?3, snapshot_id = ?4, bytes = ?5, error = ?6,
                 duration_s = ?7, progress = NULL WHERE id = ?1",
                params![
                    run,
                    ts(f.ended_at),
                    f.outcome.as_str(),
                    f.snapshot_id,
                    f.bytes.map(|b| b as i64),
                    f.error,
                    f.duration_s
                ],
            )?;
            Ok(())
        })
    }

    /// Marks as `interrupted` the runs still `running` whose process is
    /// gone (a daemon or command that was killed), and this process's own
    /// (a daemon starting or stopping has none running); returns them.
    pub fn close_orphaned_runs(&self, now: DateTime<Utc>) -> Result<Vec<RunRow>> {
        self.close_runs(now, true)
    }

    /// Marks as `interrupted` the runs of other processes that are gone,
    /// leaving this process's own alone (the daemon, while it runs).
    pub fn close_dead_runs(&self, now: DateTime<Utc>) -> Result<Vec<RunRow>> {
        self.close_runs(now, false)
    }

    fn close_runs(&self, now: DateTime<Utc>, own_too: bool) -> Result<Vec<RunRow>> {
        let running = self.runs_where("outcome = 'running'", &[])?;
        let mut closed = Vec::new();
        for r in running {
            let own = r.pid == Some(std::process::id());
            let alive = r.pid.is_some_and(crate::host::process_alive);
            if (own && !own_too) || (alive && !own) {
                continue;
            }
            self.finish_run(
                r.id,
                &RunFinish {
                    ended_at: now,
                    outcome: Outcome::Interrupted,
                    error: Some("the process running this job stopped before it finished".into()),
                    ..Default::default()
                },
            )?;
            closed.push(r);
        }
        Ok(closed)
    }

    /// Runs matching a condition on the `runs` table, oldest first.
    fn runs_where(&self, cond: &str, args: &[&dyn rusqlite::ToSql]) -> Result<Vec<RunRow>> {
        let sql = format!("SELECT {} FROM runs WHERE {cond} ORDER BY started_at, id", rows::RUN_COLUMNS);
        self.with(|c| {
            let mut st = c.prepare(&sql)?;
            let rows = st.query_map(args, rows::run_row)?;
            rows.collect()
        })
    }

    /// Every run of a policy (all policies with `None`) that started in
    /// `[since, until)`, oldest first.
    pub fn runs(
        &self,
        policy: Option<&str>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<RunRow>> {
        let since = since.map(ts).unwrap_or_default();
        let until = until.map(ts).unwrap_or_else(|| "9999".into());
        match policy {
            Some(p) => self.runs_where("policy = ?1 AND started_at >= ?2 AND started_at < ?3", &[&p, &since, &until]),
            None => self.runs_where("started_at >= ?1 AND started_at < ?2", &[&since, &until]),
        }
    }

    /// When the policy's first recorded run started.
    pub fn first_run(&self, policy: &str) -> Result<Option<DateTime<Utc>>> {
        let t: Option<String> = self.with(|c| {
            c.query_row("SELECT MIN(started_at) FROM runs WHERE policy = ?1", params![policy], |r| r.get(0))
        })?;
        t.as_deref().map(parse_ts).transpose().map_err(|e| db_error(&self.dir.join(DB_FILE), e))
    }

    /// The runs that are running now.
    pub fn running(&self) -> Result<Vec<RunRow>> {
        self.runs_where("outcome = 'running'", &[])
    }

    /// The newest run of a policy and kind with one of `outcomes`.
    pub fn last_run(&self, policy: &str, kind: JobKind, outcomes: &[Outcome]) -> Result<Option<RunRow>> {
        let list: Vec<String> = outcomes.iter().map(|o| format!("'{}'", o.as_str())).collect();
        let sql = format!(
            "SELECT {} FROM runs WHERE policy = ?1 AND kind = ?2 AND outcome IN ({}) \
             ORDER BY started_at DESC, id DESC LIMIT 1",
            rows::RUN_COLUMNS,
            list.join(",")
        );
        self.with(|c| c.query_row(&sql, params![policy, kind.as_str()], rows::run_row).optional())
    }

    /// Remembers the next due time of a policy's job: `slot` is the
    /// scheduled time, `due` the slot plus jitter.
    pub fn set_next_due(&self, policy: &str, kind: JobKind, slot: DateTime<Utc>, due: DateTime<Utc>) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO schedule (policy, kind, slot, due) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (policy, kind) DO UPDATE SET slot = excluded.slot, due = excluded.due",
                params![policy, kind.as_str(), ts(slot), ts(due)],
            )?;
            Ok(())
        })
    }

    /// Forgets the next due time (the policy no longer has that schedule).
    pub fn clear_next_due(&self, policy: &str, kind: JobKind) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM schedule WHERE policy = ?1 AND kind = ?2", params![policy, kind.as_str()])?;
            Ok(())
        })
    }

    /// The remembered (slot, due) of a policy's job.
    pub fn next_due(&self, policy: &str, kind: JobKind) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>> {
        self.with(|c| {
            c.query_row(
                "SELECT slot, due FROM schedule WHERE policy = ?1 AND kind = ?2",
                params![policy, kind.as_str()],
                |r| Ok((parse_ts(&r.get::<_, String>(0)?)?, parse_ts(&r.get::<_, String>(1)?)?)),
            )
            .optional()
        })
    }

    /// Records the newest recovery point of a policy (after a backup, or
    /// when the daemon reads the repository); an older one than recorded
    /// is ignored (a slow backup finishing after a newer one).
    pub fn set_recovery_point(&self, policy: &str, rp: &RecoveryPoint) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO recovery_points (policy, snapshot_id, time, tree, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (policy) DO UPDATE SET snapshot_id = excluded.snapshot_id, time = excluded.time,
                 tree = excluded.tree, updated_at = excluded.updated_at WHERE excluded.time >= recovery_points.time",
                params![policy, rp.snapshot_id, ts(rp.time), rp.tree, ts(Utc::now())],
            )?;
            Ok(())
        })
    }

    pub fn recovery_point(&self, policy: &str) -> Result<Option<RecoveryPoint>> {
        self.with(|c| {
            c.query_row("SELECT snapshot_id, time, tree FROM recovery_points WHERE policy = ?1", params![policy], |r| {
                Ok(RecoveryPoint { snapshot_id: r.get(0)?, time: parse_ts(&r.get::<_, String>(1)?)?, tree: r.get(2)? })
            })
            .optional()
        })
    }

    /// Records a finished drill.
    pub fn record_drill(&self, d: &DrillRow) -> Result<()> {
        self.with(|c| rows::insert_drill(c, d))
    }

    /// Drills of a policy (all with `None`) that started in `[since, until)`, oldest first.
    pub fn drills(
        &self,
        policy: Option<&str>,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
    ) -> Result<Vec<DrillRow>> {
        let since = since.map(ts).unwrap_or_default();
        let until = until.map(ts).unwrap_or_else(|| "9999".into());
        self.with(|c| rows::select_drills(c, policy, &since, &until))
    }

    /// The newest drill of a policy, and the newest that passed.
    pub fn last_drills(&self, policy: &str) -> Result<(Option<DrillRow>, Option<DrillRow>)> {
        let all = self.drills(Some(policy), None, None)?;
        let last = all.last().cloned();
        let passed = all.into_iter().rev().find(|d| d.passed());
        Ok((last, passed))
    }

    /// Whether the policy's content changed since its last passing drill
    /// ("needs verification"): the newest recovery point's tree differs
    /// from the tree that drill restored. `None` when either is unknown.
    pub fn content_changed_since_drill(&self, policy: &str) -> Result<Option<bool>> {
        Ok(content_changed(self.recovery_point(policy)?.as_ref(), self.last_drills(policy)?.1.as_ref()))
    }

    /// Names of every policy the state knows of.
    pub fn known_policies(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT policy FROM runs UNION SELECT policy FROM schedule UNION SELECT policy FROM drills
                 UNION SELECT policy FROM recovery_points ORDER BY 1",
            )?;
            let names = st.query_map([], |r| r.get(0))?;
            names.collect()
        })
    }

    /// A value of the daemon's own record (its pid, address, start time).
    pub fn daemon_value(&self, key: &str) -> Result<Option<String>> {
        self.with(|c| c.query_row("SELECT value FROM daemon WHERE key = ?1", params![key], |r| r.get(0)).optional())
    }

    pub fn set_daemon_value(&self, key: &str, value: Option<&str>) -> Result<()> {
        self.with(|c| {
            match value {
                Some(v) => c.execute(
                    "INSERT INTO daemon (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![key, v],
                )?,
                None => c.execute("DELETE FROM daemon WHERE key = ?1", params![key])?,
            };
            Ok(())
        })
    }
}

/// Drift, from rows already read: whether `newest` holds other content
/// than the last passing drill restored (see
/// [`State::content_changed_since_drill`]).
pub fn content_changed(newest: Option<&RecoveryPoint>, last_pass: Option<&DrillRow>) -> Option<bool> {
    let (rp, passed) = (newest?, last_pass?);
    Some(passed.tree.as_deref() != Some(rp.tree.as_str()))
}

fn db_error(path: &Path, e: rusqlite::Error) -> Error {
    Error::State { path: path.to_path_buf(), detail: e.to_string() }
}

#[cfg(test)]
mod tests;

impl State {
    /// How many runs of each kind and outcome a policy has.
    pub fn run_counts(&self, policy: &str) -> Result<Vec<(JobKind, Outcome, u64)>> {
        let rows: Vec<(String, String, i64)> = self.with(|c| {
            let mut st =
                c.prepare("SELECT kind, outcome, COUNT(*) FROM runs WHERE policy = ?1 GROUP BY kind, outcome")?;
            let rows = st.query_map(params![policy], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })?;
        Ok(rows.into_iter().filter_map(|(k, o, n)| Some((k.parse().ok()?, Outcome::parse(&o), n as u64))).collect())
    }
}
