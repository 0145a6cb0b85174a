//! The database schema and its migrations, keyed by `PRAGMA user_version`.
//! A migration is appended, never edited: a database at version N runs
//! migrations N+1.. in order, each in one transaction.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: runs, schedule, recovery points, drills, the daemon's record.
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        policy TEXT NOT NULL,
        kind TEXT NOT NULL,
        trigger TEXT NOT NULL,
        scheduled_at TEXT,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        outcome TEXT NOT NULL,
        snapshot_id TEXT,
        bytes INTEGER,
        error TEXT,
        duration_s REAL,
        attempt INTEGER NOT NULL DEFAULT 1,
        pid INTEGER,
        progress TEXT
    );
    CREATE INDEX runs_by_policy ON runs (policy, kind, started_at);
    CREATE INDEX runs_by_time ON runs (started_at);
    CREATE TABLE schedule (
        policy TEXT NOT NULL,
        kind TEXT NOT NULL,
        slot TEXT NOT NULL,
        due TEXT NOT NULL,
        PRIMARY KEY (policy, kind)
    );
    CREATE TABLE recovery_points (
        policy TEXT PRIMARY KEY,
        snapshot_id TEXT NOT NULL,
        time TEXT NOT NULL,
        tree TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE drills (
        drill_id TEXT PRIMARY KEY,
        policy TEXT NOT NULL,
        run_id INTEGER,
        started_by TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT NOT NULL,
        snapshot_id TEXT,
        snapshot_time TEXT,
        tree TEXT,
        verdict TEXT NOT NULL,
        failure_kind TEXT,
        reasons TEXT NOT NULL,
        rto_objective_s REAL,
        rto_measured_s REAL,
        rpo_objective_s REAL,
        rpo_achieved_s REAL,
        files_checked INTEGER NOT NULL DEFAULT 0,
        bytes_checked INTEGER NOT NULL DEFAULT 0,
        mismatches INTEGER NOT NULL DEFAULT 0,
        report_dir TEXT,
        evidence_hash TEXT
    );
    CREATE INDEX drills_by_policy ON drills (policy, started_at);
    CREATE TABLE daemon (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
];

/// Opens the database read-only, for a user who may not write it. Without
/// a write-ahead log (no writer has it open), SQLite is told the file is
/// immutable, since it could not create the shared-memory file it
/// otherwise needs. The schema must be this cairn's: a reader cannot
/// migrate.
pub(super) fn open_read_only(path: &std::path::Path) -> rusqlite::Result<Connection> {
    use rusqlite::OpenFlags;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '?' | '#' | '%' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str(if std::path::Path::new(&wal).exists() { "?mode=ro" } else { "?mode=ro&immutable=1" });
    let conn = Connection::open_with_flags(uri, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version != MIGRATIONS.len() as i64 {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            Some(format!(
                "the state database has schema version {version} and this cairn needs {}; \
                 it cannot be migrated read-only (run the daemon or any cairn that can write it once)",
                MIGRATIONS.len()
            )),
        ));
    }
    Ok(conn)
}

/// Sets the connection up (WAL, busy timeout, foreign keys) and migrates
/// the schema to the newest version.
pub(super) fn prepare(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let newest = MIGRATIONS.len() as i64;
    if version > newest {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISUSE),
            Some(format!("the state database has schema version {version}; this cairn knows up to {newest}")),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
