//! Writing one object: a single `PutObject` or a multipart upload, each
//! with `If-None-Match: *` and, with Object Lock, its retain-until date;
//! and the HEAD before PUT for storage that ignores the condition, unless
//! the object is named by its hash or its writer knows the key is new
//! ([`super::Backend::put_known_absent`]).

use chrono::{DateTime, Utc};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, StorageClass};

use super::s3::{classify, Failure, Named, S3Backend};
use super::{is_mutable_key, Backend, BackendError, BackendResult, LockMode};

fn to_smithy(t: DateTime<Utc>) -> aws_sdk_s3::primitives::DateTime {
    aws_sdk_s3::primitives::DateTime::from_secs(t.timestamp())
}

/// The conditions and retention of one upload.
#[derive(Clone, Copy)]
struct Upload<'a> {
    class: Option<&'a StorageClass>,
    /// Send `If-None-Match: *`.
    if_none_match: bool,
    /// Lock the object until then.
    lock: Option<(LockMode, DateTime<Utc>)>,
}

impl S3Backend {
    /// Stores `key` with no retention or storage class: a lock (replaced
    /// freely), or the probe of whether the storage honours
    /// `If-None-Match: *`.
    pub(super) fn put_plain(&self, key: &str, data: &[u8], if_none_match: bool) -> BackendResult<()> {
        let up = Upload { class: None, if_none_match, lock: None };
        self.run("upload", key, || self.put_once(key, data, up))
    }

    async fn put_once(&self, key: &str, data: &[u8], up: Upload<'_>) -> Result<(), Failure> {
        if data.len() > self.opts.multipart_threshold {
            return self.put_multipart(key, data, up).await;
        }
        self.client
            .put_object()
            .bucket(&self.opts.bucket)
            .key(self.full_key(key))
            .body(ByteStream::from(data.to_vec()))
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .set_storage_class(up.class.cloned())
            .set_if_none_match(up.if_none_match.then(|| "*".to_string()))
            .set_object_lock_mode(up.lock.map(|(m, _)| m.s3_name().into()))
            .set_object_lock_retain_until_date(up.lock.map(|(_, t)| to_smithy(t)))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(())
    }

    async fn put_multipart(&self, key: &str, data: &[u8], upload: Upload<'_>) -> Result<(), Failure> {
        let full = self.full_key(key);
        let up = self
            .client
            .create_multipart_upload()
            .bucket(&self.opts.bucket)
            .key(&full)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .set_storage_class(upload.class.cloned())
            .set_object_lock_mode(upload.lock.map(|(m, _)| m.s3_name().into()))
            .set_object_lock_retain_until_date(upload.lock.map(|(_, t)| to_smithy(t)))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let upload_id = up.upload_id().unwrap_or_default().to_string();
        let result = async {
            let mut parts = Vec::new();
            for (i, part) in data.chunks(self.opts.part_size).enumerate() {
                let n = i as i32 + 1;
                let r = self
                    .client
                    .upload_part()
                    .bucket(&self.opts.bucket)
                    .key(&full)
                    .upload_id(&upload_id)
                    .part_number(n)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                    .body(ByteStream::from(part.to_vec()))
                    .send()
                    .await
                    .map_err(|e| classify(&e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(r.e_tag().map(String::from))
                        .set_checksum_crc32_c(r.checksum_crc32_c().map(String::from))
                        .build(),
                );
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.opts.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .set_if_none_match(upload.if_none_match.then(|| "*".to_string()))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.opts.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    /// Stores a new object under `key`, never replacing one (see the
    /// module documentation).
    pub(super) fn put_new(
        &self,
        key: &str,
        data: &[u8],
        class: Option<StorageClass>,
        named: Named,
    ) -> BackendResult<()> {
        debug_assert!(
            named != Named::ByHash || key.rsplit('/').next() == Some(blake3::hash(data).to_hex().as_str()),
            "`{key}` is not named by the hash of its bytes"
        );
        let policy = self.write_policy();
        if !policy.conditional_put && named == Named::Freely {
            // The storage does not refuse conditional writes, and only the
            // caller's name says the key is new: look first.
            match self.stat(key) {
                Ok(_) => return self.same_or_refused(key, data),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        let lock = policy.object_lock.filter(|_| !is_mutable_key(key)).map(|l| (l.mode, l.until(Utc::now())));
        let up = Upload { class: class.as_ref(), if_none_match: true, lock };
        match self.run("upload", key, || self.put_once(key, data, up)) {
            Err(e) if e.is_precondition_failed() => self.same_or_refused(key, data),
            r => r,
        }
    }

    /// `key` exists: success when it holds `data`, else the error that names it.
    pub(super) fn same_or_refused(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        if self.get(key)? == data {
            Ok(())
        } else {
            Err(BackendError::already_exists(self.shown(key)))
        }
    }
}
