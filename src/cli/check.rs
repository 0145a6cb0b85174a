//! `cairn check`.

use crate::check::{self, ReadData};
use crate::error::{Error, Result};
use crate::evidence::check::SnapshotInfo;

use super::output::Printer;
use super::{open_repo, threads, GlobalArgs, EXIT_INTEGRITY, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Also read, decrypt and hash every blob of every pack
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read a random subset of the packs, e.g. 10%
    #[arg(long, value_name = "P%")]
    pub read_data_subset: Option<String>,
    #[command(flatten)]
    pub at: super::AsOfArg,
    /// Verify the evidence with these trusted keys (an auditor's keys file)
    /// instead of the keys the repository enrolled
    #[arg(long, value_name = "FILE")]
    pub keys: Option<std::path::PathBuf>,
}

fn parse_percent(s: &str) -> Result<f64> {
    let v: f64 = s.trim().trim_end_matches('%').parse().map_err(|_| Error::BadFlag {
        flag: "--read-data-subset".into(),
        value: s.to_string(),
        expected: "expected a percentage such as 10%".into(),
    })?;
    if !(v > 0.0 && v <= 100.0) {
        return Err(Error::BadFlag {
            flag: "--read-data-subset".into(),
            value: s.to_string(),
            expected: "must be above 0% and at most 100%".into(),
        });
    }
    Ok(v / 100.0)
}

pub fn run(g: &GlobalArgs, a: &CheckArgs, p: &Printer) -> Result<i32> {
    let read = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => ReadData::Subset(parse_percent(s)?),
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let trust = a.keys.as_deref().map(crate::evidence::read_keys_file).transpose()?.map(|k| k.trust);
    let repo = open_repo(&a.at.apply(g))?;
    let mut r = check::check(&repo, read, threads(g))?;
    let snapshots: Vec<SnapshotInfo> = r
        .snapshot_list
        .iter()
        .map(|(id, time, host)| SnapshotInfo { id: *id, time: *time, host: host.clone() })
        .collect();
    let ev = crate::evidence::check::check_repository(&repo, &snapshots, trust.as_ref(), chrono::Utc::now())?;
    r.errors.extend(ev.problems.iter().cloned());
    if p.json {
        let mut v = serde_json::to_value(&r).expect("report serialises");
        v["evidence"] = serde_json::to_value(&ev).expect("evidence check serialises");
        p.json(&v);
    } else {
        p.info(format!(
            "checked {} snapshots, {} trees, {} packs, {} index files{}",
            r.snapshots,
            r.trees,
            r.packs,
            r.index_files,
            if r.packs_read > 0 {
                format!("; read {} packs ({} blobs)", r.packs_read, r.blobs_read)
            } else {
                String::new()
            }
        ));
        p.info(format!(
            "evidence: {} record(s) in {} chain(s) verified{}",
            ev.records,
            ev.chains,
            ev.newest_head.as_deref().map(|h| format!("; newest head {h}")).unwrap_or_default()
        ));
        if !r.unindexed_packs.is_empty() {
            p.info(format!(
                "note: {} pack(s) are in no index (left by an interrupted backup; the next backup reuses them)",
                r.unindexed_packs.len()
            ));
        }
        if !r.temporaries.is_empty() {
            let bytes: u64 = r.temporaries.iter().map(|t| t.size).sum();
            p.info(format!(
                "note: {} temporary file(s) of interrupted writes ({}); the next backup, prune or `cairn unlock` \
                 removes those older than an hour",
                r.temporaries.len(),
                crate::text::human_bytes(bytes)
            ));
            for t in &r.temporaries {
                p.data(format!("temporary: {} ({} bytes, {} min old)", t.object, t.size, t.age_minutes));
            }
        }
        for l in &r.stale_locks {
            let holder = l.holder.as_deref().map(|h| format!(" of {h}")).unwrap_or_default();
            p.data(format!("stale lock: {}{holder}: {}", l.object, l.reason));
        }
        if r.stale_locks.iter().any(|l| l.suspicious) {
            p.warn("suspicious locks found: `cairn unlock` removes them; find out who wrote them");
        } else if !r.stale_locks.is_empty() {
            p.info("note: `cairn unlock` removes stale locks (a backup or prune removes those of dead processes here)");
        }
        for e in &r.errors {
            p.data(format!("error: {}: {}", e.object, e.message));
        }
        for pk in &r.damaged_packs {
            p.data(format!("damaged pack: {pk}"));
        }
        for a in &r.affected {
            p.data(format!("affected: snapshot {} {}", a.snapshot, a.path));
        }
        for s in &r.affected_not_listed {
            p.data(format!(
                "affected: snapshot {s}: more files than the {} listed",
                crate::check::AFFECTED_PER_SNAPSHOT
            ));
        }
        for (id, f) in &ev.flagged {
            p.data(format!("flagged: snapshot {} ({})", id.short(), f.as_str()));
        }
    }
    if r.ok() {
        if !p.json {
            p.info("no errors found");
        }
        Ok(EXIT_OK)
    } else {
        p.warn(format!("{} problem(s) found; {} file(s) in snapshots affected", r.errors.len(), r.affected.len()));
        Ok(EXIT_INTEGRITY)
    }
}
