//! The S3 calls of Object Lock: the bucket's versioning and lock
//! configuration (checked by `init --immutable` and `--as-of`), and the
//! retention of one object (read by prune's plan, extended by the
//! retention step).

use chrono::{DateTime, Utc};

use aws_sdk_s3::types::{BucketVersioningStatus, ObjectLockEnabled, ObjectLockRetention, ObjectLockRetentionMode};

use super::s3::{classify, from_smithy, S3Backend};
use super::{BackendErrorKind, BackendResult, BucketLockStatus, LockMode};

impl S3Backend {
    /// Versioning and Object Lock of the bucket. A storage that does not
    /// implement Object Lock (Garage answers 501) or a bucket without a
    /// lock configuration reports it off.
    pub(super) fn lock_status(&self) -> BackendResult<BucketLockStatus> {
        let bucket = self.opts.bucket.clone();
        let versioning = self.run("read the versioning of", "", || async {
            let v = self.client.get_bucket_versioning().bucket(&bucket).send().await.map_err(|e| classify(&e))?;
            Ok(v.status() == Some(&BucketVersioningStatus::Enabled))
        })?;
        let object_lock = self.run("read the Object Lock configuration of", "", || async {
            match self.client.get_object_lock_configuration().bucket(&bucket).send().await {
                Ok(c) => Ok(c
                    .object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    .is_some_and(|e| *e == ObjectLockEnabled::Enabled)),
                Err(e) => {
                    let f = classify(&e);
                    let absent =
                        matches!(f.code.as_deref(), Some("ObjectLockConfigurationNotFoundError" | "NotImplemented"))
                            || e.raw_response().is_some_and(|r| r.status().as_u16() == 501);
                    if absent {
                        Ok(false)
                    } else {
                        Err(f)
                    }
                }
            }
        })?;
        Ok(BucketLockStatus { versioning, object_lock })
    }

    /// Sets the retention of `key`'s current version to `until`. If the
    /// storage refuses because the version is already locked longer (a
    /// compliance retention cannot be shortened), that is success once a
    /// HEAD shows a retain-until date at or after `until`.
    pub(super) fn put_retention(&self, key: &str, mode: LockMode, until: DateTime<Utc>) -> BackendResult<()> {
        let r = self.run("extend the retention of", key, || async {
            let retention = ObjectLockRetention::builder()
                .mode(ObjectLockRetentionMode::from(mode.s3_name()))
                .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(until.timestamp()))
                .build();
            self.client
                .put_object_retention()
                .bucket(&self.opts.bucket)
                .key(self.full_key(key))
                .retention(retention)
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32C)
                .send()
                .await
                .map_err(|e| classify(&e))?;
            Ok(())
        });
        match r {
            Err(e) if e.kind == BackendErrorKind::Permanent && !e.is_not_found() => match self.head_retention(key) {
                Ok(Some(t)) if t >= until => Ok(()),
                _ => Err(e),
            },
            r => r,
        }
    }

    /// The retain-until date of `key`'s current version (HEAD).
    pub(super) fn head_retention(&self, key: &str) -> BackendResult<Option<DateTime<Utc>>> {
        self.run("read the retention of", key, || async {
            let h = self
                .client
                .head_object()
                .bucket(&self.opts.bucket)
                .key(self.full_key(key))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            Ok(h.object_lock_retain_until_date().and_then(from_smithy))
        })
    }
}
