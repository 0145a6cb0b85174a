//! What a backend needs to know to write a repository's objects: whether
//! the storage honours `If-None-Match: *`, and the S3 Object Lock retention
//! that every new object outside [`super::MUTABLE_PREFIX`] carries.
//!
//! Both come from the repository config (see `docs/FORMAT.md`), which
//! `init` fills in after probing the storage, and are handed to the
//! backend by [`super::Backend::set_write_policy`] when a repository opens.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{BackendError, BackendErrorKind};

/// The Object Lock retention mode (S3 `x-amz-object-lock-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// No credential, the bucket owner's included, can shorten the
    /// retention or delete a locked version before it ends.
    Compliance,
    /// A credential with `s3:BypassGovernanceRetention` can.
    Governance,
}

impl LockMode {
    /// The name S3 uses.
    pub fn s3_name(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LockMode::Compliance => "compliance",
            LockMode::Governance => "governance",
        })
    }
}

impl std::str::FromStr for LockMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "compliance" => Ok(LockMode::Compliance),
            "governance" => Ok(LockMode::Governance),
            _ => Err(format!("lock mode `{s}`: use `compliance` or `governance`")),
        }
    }
}

/// A repository's Object Lock settings, fixed at `init`.
///
/// Every object is written locked until `now + period + margin`, and the
/// retention step ([`crate::repo::object_lock`]) extends every object the
/// repository still has before fewer than `period + margin / 2` remain, so
/// at any time everything is locked for at least `period`, provided the
/// step runs at least once every `margin / 2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLock {
    pub mode: LockMode,
    /// The immutable window, in seconds.
    pub period_secs: u64,
    /// Slack beyond the window, in seconds: the retention step extends
    /// each object about once per half of it.
    pub margin_secs: u64,
}

impl ObjectLock {
    /// The default margin: two weeks, so the retention step, run daily by
    /// the daemon, extends each object about once a week, and a week of
    /// missed runs still leaves the window whole.
    pub const DEFAULT_MARGIN_SECS: u64 = 14 * 24 * 3600;

    pub fn period(&self) -> Duration {
        Duration::seconds(self.period_secs as i64)
    }

    pub fn margin(&self) -> Duration {
        Duration::seconds(self.margin_secs as i64)
    }

    /// The retain-until date of an object written or extended at `now`:
    /// `now + period + margin`, in whole seconds (rounded up).
    pub fn until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let t = now + self.period() + self.margin();
        let secs = t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0);
        DateTime::from_timestamp(secs, 0).expect("a retain-until date is within chrono's range")
    }
}

/// How a backend writes: set from the repository config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WritePolicy {
    /// The storage refuses `If-None-Match: *` on an existing key (probed
    /// at `init`). When false, a write first asks whether the key exists
    /// (HEAD before PUT), which leaves a window between the two requests.
    pub conditional_put: bool,
    /// Retention for every new object outside [`super::MUTABLE_PREFIX`].
    pub object_lock: Option<ObjectLock>,
}

/// What a bucket offers for immutability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BucketLockStatus {
    /// Versioning is enabled (Object Lock needs it, `--as-of` reads it).
    pub versioning: bool,
    /// Object Lock is enabled on the bucket.
    pub object_lock: bool,
}

/// The error of a retention request to a storage without Object Lock.
pub(crate) fn unsupported(key: &str, what: &str) -> BackendError {
    BackendError::new(
        BackendErrorKind::Permanent,
        "retention",
        key,
        format!("cannot {what} an object here: this storage has no S3 Object Lock"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_period_plus_margin_rounded_up_to_the_second() {
        let l = ObjectLock { mode: LockMode::Compliance, period_secs: 30 * 86400, margin_secs: 86400 };
        let now = DateTime::parse_from_rfc3339("2025-03-01T02:13:07.5Z").unwrap().with_timezone(&Utc);
        assert_eq!(l.until(now).to_rfc3339(), "2025-04-01T02:13:08+00:00");
        let whole = DateTime::parse_from_rfc3339("2025-03-01T02:13:07Z").unwrap().with_timezone(&Utc);
        assert_eq!(l.until(whole).to_rfc3339(), "2025-04-01T02:13:07+00:00");
    }

    #[test]
    fn modes_parse_and_print() {
        assert_eq!("Compliance".parse::<LockMode>().unwrap(), LockMode::Compliance);
        assert_eq!("governance".parse::<LockMode>().unwrap().s3_name(), "GOVERNANCE");
        assert!("legal".parse::<LockMode>().is_err());
    }
}
