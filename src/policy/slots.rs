//! A policy's schedule slots: which schedule each kind of job follows, and
//! its next slot with the policy's jitter. The daemon's engine schedules
//! with them; `cairn status` shows when a policy's jobs come next with
//! them, whether a daemon runs or not.

use chrono::{DateTime, Utc};

use super::{jitter_delay, CronExpr, Policy};
use crate::state::JobKind;

/// The schedule of one policy's job kind.
pub fn cron_of(p: &Policy, kind: JobKind) -> Option<&CronExpr> {
    match kind {
        JobKind::Backup => p.schedule.backup.as_ref(),
        JobKind::Prune => p.retention.prune.as_ref(),
        JobKind::Drill => p.drill.as_ref().map(|d| &d.schedule),
        JobKind::Copy => p.copy.as_ref().and_then(|c| c.schedule.as_ref()),
    }
}

/// The first slot strictly after `after`, and its due time (with jitter).
pub fn next_slot(p: &Policy, kind: JobKind, after: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let cron = cron_of(p, kind)?;
    let slot = *cron.next_after(p.schedule.timezone.0, after, 1).first()?;
    let jitter = jitter_delay(&p.name, slot, p.schedule.jitter);
    Some((slot, slot + chrono::Duration::from_std(jitter).unwrap_or_default()))
}
