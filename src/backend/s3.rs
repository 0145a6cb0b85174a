//! The S3 backend, on `aws-sdk-s3`, for AWS S3, Garage, MinIO and others.
//!
//! The storage trait is synchronous; this backend owns a small tokio
//! runtime and blocks on it per call, so the engine's worker threads can
//! call it concurrently. A semaphore bounds the requests in flight.
//!
//! Faults: the SDK's own retries are disabled so that one policy covers
//! every request, body reads included: 5xx, throttling (429, 503 SlowDown),
//! timeouts, connection resets and truncated bodies are retried with
//! exponential backoff and full jitter; 403, NoSuchBucket, a missing object
//! and other 4xx fail at once with the bucket and key named. Every attempt
//! has its own timeout. Credentials come from the standard AWS chain, or
//! from a named profile alone ([`S3Options::profile`]: the environment's
//! credential then plays no part), and never appear in messages: errors
//! name the bucket, key and status only.
//!
//! Writes never replace an object: every `put` carries `If-None-Match: *`
//! (on `PutObject` and on `CompleteMultipartUpload`). A 412 means the key
//! exists: when its bytes are ours (a retry whose first answer was lost)
//! that is success, otherwise an error that names the key. A storage that
//! ignores the header (recorded at `init`, see [`super::WritePolicy`]) is
//! asked first whether the key exists (HEAD before PUT), except for an
//! object named by its own hash (a pack, an index file, a snapshot): what
//! is already under that name is these bytes. With Object Lock
//! on, every object outside `locks/` is written with its retain-until date
//! ([`super::ObjectLock`]); `s3_lock.rs` has the bucket and retention calls,
//! `s3_put.rs` the single and multipart uploads.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{Delete, ObjectIdentifier, StorageClass};
use tokio::sync::Semaphore;

use super::s3_clock::ServerClock;
use super::{
    is_mutable_key, refuse_mutable, Backend, BackendError, BackendErrorKind, BackendResult, BucketLockStatus, LockMode,
    ObjectInfo, WritePolicy, CODE_ACCESS_DENIED, CODE_PRECONDITION_FAILED, CODE_UNREACHABLE,
};

/// How a new object's key was chosen.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Named {
    /// By the caller: an object under the key may hold other bytes.
    Freely,
    /// The key ends in the hex BLAKE3 hash of the bytes: an object under
    /// it holds the same bytes, so writing it again replaces nothing.
    ByHash,
    /// By the caller, who found no object under the key in a listing made
    /// while holding the lock that serialises the key's writers.
    KnownAbsent,
}

/// Settings of an S3 repository, beyond the bucket and prefix of its URL.
#[derive(Debug, Clone)]
pub struct S3Options {
    pub bucket: String,
    pub prefix: String,
    /// Custom endpoint (Garage, MinIO…); `None` for AWS.
    pub endpoint: Option<String>,
    /// Region; default from the AWS chain, else `us-east-1`.
    pub region: Option<String>,
    /// Path-style addressing; default on when a custom endpoint is given.
    pub path_style: Option<bool>,
    /// Storage class for data packs only.
    pub storage_class: Option<String>,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// A named profile of the AWS shared config and credentials files
    /// instead of the default chain, so that one host can hold a second
    /// credential, e.g. for maintenance. It wins over the credential
    /// variables of the environment (`AWS_ACCESS_KEY_ID`, …) and over
    /// `AWS_PROFILE`; a profile that does not exist is an error, never a
    /// fall-back to another credential.
    pub profile: Option<String>,
    /// Timeout of one attempt (connect, send, and read the whole body).
    pub attempt_timeout: Duration,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// Objects larger than this are uploaded in parts.
    pub multipart_threshold: usize,
    pub part_size: usize,
}

impl S3Options {
    /// Options for `s3://bucket[/prefix]` with defaults for everything else.
    pub fn from_url(url: &str) -> Result<S3Options, String> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| format!("`{url}` is not an s3:// URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("`{url}` names no bucket (expected s3://BUCKET[/PREFIX])"));
        }
        Ok(S3Options {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: None,
            region: None,
            path_style: None,
            storage_class: None,
            concurrency: 8,
            profile: None,
            attempt_timeout: Duration::from_secs(120),
            max_attempts: 8,
            multipart_threshold: 64 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
        })
    }
}

pub struct S3Backend {
    pub(super) client: aws_sdk_s3::Client,
    rt: tokio::runtime::Runtime,
    pub(super) opts: S3Options,
    limit: Arc<Semaphore>,
    /// The custom endpoint in use, for messages.
    endpoint: Option<String>,
    policy: RwLock<WritePolicy>,
    clock: ServerClock,
}

/// How an attempt failed.
pub(super) struct Failure {
    pub(super) kind: BackendErrorKind,
    pub(super) message: String,
    /// The S3 error code, when there is one.
    pub(super) code: Option<String>,
}

impl Failure {
    pub(super) fn permanent(message: impl Into<String>) -> Failure {
        Failure { kind: BackendErrorKind::Permanent, message: message.into(), code: None }
    }
}

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

/// The causes below `e`, each said once, joined by `: `: the words of
/// the error chain without the SDK's debug dump (`DisplayErrorContext`
/// appends `DispatchFailure { … }` in Rust syntax, which no user should read).
pub(super) fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut said: Vec<String> = Vec::new();
    let mut next = e.source();
    while let Some(c) = next {
        let text = c.to_string();
        if !text.is_empty() && !said.iter().any(|s| s.contains(&text)) {
            said.push(text);
        }
        next = c.source();
    }
    if said.is_empty() {
        e.to_string()
    } else {
        said.join(": ")
    }
}

pub(super) fn classify<E>(e: &SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use BackendErrorKind::*;
    let context = || causes(e);
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("").to_string();
            let kind = match (status, code.as_str()) {
                (_, "NoSuchBucket") => Permanent,
                (404, _) | (_, "NoSuchKey") | (_, "NotFound") => NotFound,
                (s, _) if s >= 500 || s == 429 || s == 408 => Transient,
                (_, "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable") => Transient,
                _ => Permanent,
            };
            let msg = se.err().message().unwrap_or("");
            // A HEAD has no body, so no code: the status says it.
            let known = match (status, code.as_str()) {
                (403, "") => Some(CODE_ACCESS_DENIED.to_string()),
                (412, "") => Some(CODE_PRECONDITION_FAILED.to_string()),
                (_, "") => None,
                (_, c) => Some(c.to_string()),
            };
            let shown = if code.is_empty() { "no error code".to_string() } else { code };
            Failure { kind, message: format!("HTTP {status} ({shown}) {msg}").trim_end().to_string(), code: known }
        }
        SdkError::TimeoutError(_) => Failure { kind: Transient, message: "timed out".into(), code: None },
        SdkError::DispatchFailure(d) if d.is_user() => {
            Failure { kind: Permanent, message: format!("the request could not be sent: {}", context()), code: None }
        }
        SdkError::DispatchFailure(d) => {
            // Refused, reset, timed out or not resolved: no answer came.
            let code = (d.is_io() || d.is_timeout()).then(|| CODE_UNREACHABLE.to_string());
            Failure { kind: Transient, message: format!("connection failed: {}", context()), code }
        }
        SdkError::ResponseError(_) => {
            Failure { kind: Transient, message: format!("bad response: {}", context()), code: None }
        }
        _ => Failure { kind: Permanent, message: context(), code: None },
    }
}

pub(super) fn from_smithy(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

impl S3Backend {
    pub fn new(opts: S3Options) -> Result<S3Backend, BackendError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairn-s3")
            .enable_all()
            .build()
            .map_err(|e| BackendError::from_io("start", "the S3 client runtime", e))?;
        let endpoint = opts.endpoint.clone().or_else(|| std::env::var("CAIRN_S3_ENDPOINT").ok());
        let (region, profile) = (opts.region.clone(), opts.profile.clone());
        let shared = rt.block_on(async {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
            if let Some(p) = profile {
                // A profile named on purpose is the credential used. The
                // default chain would let AWS_ACCESS_KEY_ID and the rest of
                // the environment, which it tries first, win over it: a
                // host's ambient credential in place of the one asked for.
                let named = aws_config::profile::ProfileFileCredentialsProvider::builder().profile_name(&p).build();
                // Resolved once now, so that a missing or incomplete
                // profile is one error that names it, not a failed request.
                if let Err(e) = aws_sdk_s3::config::ProvideCredentials::provide_credentials(&named).await {
                    return Err(BackendError::new(
                        BackendErrorKind::Permanent,
                        "read the credential of",
                        format!("AWS profile `{p}`"),
                        format!(
                            "{e}: {} (the shared files are ~/.aws/credentials and ~/.aws/config, or \
                             AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE)",
                            causes(&e)
                        ),
                    ));
                }
                loader = loader.profile_name(p).credentials_provider(named);
            }
            if let Some(r) = region {
                loader = loader.region(aws_config::Region::new(r));
            }
            Ok(loader.load().await)
        })?;
        let mut b = aws_sdk_s3::config::Builder::from(&shared)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(opts.attempt_timeout)
                    .build(),
            );
        if shared.region().is_none() {
            b = b.region(aws_config::Region::new("us-east-1"));
        }
        let custom = endpoint.is_some() || shared.endpoint_url().is_some();
        if let Some(ep) = &endpoint {
            b = b.endpoint_url(ep);
        }
        b = b.force_path_style(opts.path_style.unwrap_or(custom));
        let clock = ServerClock::default();
        b = b.interceptor(clock.clone());
        let client = aws_sdk_s3::Client::from_conf(b.build());
        let limit = Arc::new(Semaphore::new(opts.concurrency.max(1)));
        let endpoint = endpoint.or_else(|| shared.endpoint_url().map(String::from));
        Ok(S3Backend { client, rt, opts, limit, endpoint, policy: RwLock::new(WritePolicy::default()), clock })
    }

    pub(super) fn write_policy(&self) -> WritePolicy {
        *self.policy.read().expect("the write policy lock is never poisoned")
    }

    pub(super) fn full_key(&self, key: &str) -> String {
        if self.opts.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.opts.prefix)
        }
    }

    /// The endpoint requests go to: the custom one, or AWS's of the region.
    fn endpoint_shown(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => {
                let region = self.client.config().region().map(|r| r.to_string());
                format!("https://s3.{}.amazonaws.com", region.as_deref().unwrap_or("us-east-1"))
            }
        }
    }

    pub(super) fn shown(&self, key: &str) -> String {
        format!("s3://{}/{}", self.opts.bucket, self.full_key(key))
    }

    /// Runs `attempt` under the concurrency limit, retrying transient
    /// failures with exponential backoff and full jitter.
    pub(super) fn run<T, F, Fut>(&self, op: &'static str, key: &str, attempt: F) -> BackendResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        self.rt.block_on(async {
            let mut delay = Duration::from_millis(100);
            let mut tries = 0;
            loop {
                tries += 1;
                let r = {
                    let _permit = self.limit.acquire().await.expect("semaphore is never closed");
                    match tokio::time::timeout(self.opts.attempt_timeout, attempt()).await {
                        Ok(r) => r,
                        Err(_) => {
                            Err(Failure { kind: BackendErrorKind::Transient, message: "timed out".into(), code: None })
                        }
                    }
                };
                match r {
                    Ok(v) => return Ok(v),
                    Err(f) if f.kind == BackendErrorKind::Transient && tries < self.opts.max_attempts => {
                        tracing::debug!("{op} {}: {} (attempt {tries}, retrying)", self.shown(key), f.message);
                        let jitter = rand::random::<f64>();
                        tokio::time::sleep(delay.mul_f64(0.5 + jitter)).await;
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                    Err(f) => {
                        let message = if f.kind == BackendErrorKind::Transient {
                            format!("{} (gave up after {tries} attempts)", f.message)
                        } else {
                            f.message
                        };
                        let message = if f.code.as_deref() == Some(CODE_UNREACHABLE) {
                            format!("cannot reach the S3 endpoint {}: {message}", self.endpoint_shown())
                        } else {
                            message
                        };
                        let e = BackendError::new(f.kind, op, self.shown(key), message);
                        return Err(match f.code {
                            Some(c) => e.with_code(c),
                            None => e,
                        });
                    }
                }
            }
        })
    }

    /// GETs `key` (a given version of it, or the current one), whole or a range.
    pub(super) async fn get_body(
        &self,
        key: &str,
        version: Option<&str>,
        range: Option<String>,
    ) -> Result<Vec<u8>, Failure> {
        let out = self
            .client
            .get_object()
            .bucket(&self.opts.bucket)
            .key(self.full_key(key))
            .set_version_id(version.map(String::from))
            .set_range(range)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let body = out.body.collect().await.map_err(|e| Failure {
            kind: BackendErrorKind::Transient,
            message: format!("reading the body: {e}"),
            code: None,
        })?;
        Ok(body.into_bytes().to_vec())
    }

    /// Deletes many objects with batched DeleteObjects (1000 per request).
    pub fn delete_many(&self, keys: &[String]) -> BackendResult<()> {
        for batch in keys.chunks(1000) {
            let first = batch.first().cloned().unwrap_or_default();
            self.run("delete", &first, || async {
                let ids = batch
                    .iter()
                    .map(|k| ObjectIdentifier::builder().key(self.full_key(k)).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Failure::permanent(e.to_string()))?;
                let del = Delete::builder()
                    .set_objects(Some(ids))
                    .quiet(true)
                    .build()
                    .map_err(|e| Failure::permanent(e.to_string()))?;
                let out = self
                    .client
                    .delete_objects()
                    .bucket(&self.opts.bucket)
                    .delete(del)
                    .send()
                    .await
                    .map_err(|e| classify(&e))?;
                if let Some(err) = out.errors().first() {
                    return Err(Failure {
                        kind: BackendErrorKind::Permanent,
                        message: format!(
                            "{} objects not deleted, first `{}`: {}",
                            out.errors().len(),
                            err.key().unwrap_or(""),
                            err.message().unwrap_or("")
                        ),
                        code: err.code().map(String::from),
                    });
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

impl Backend for S3Backend {
    fn location(&self) -> String {
        let at = self.endpoint.as_ref().map(|e| format!(" at {e}")).unwrap_or_default();
        if self.opts.prefix.is_empty() {
            format!("s3://{}{at}", self.opts.bucket)
        } else {
            format!("s3://{}/{}{at}", self.opts.bucket, self.opts.prefix)
        }
    }

    fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
        self.run("download", key, || self.get_body(key, None, None))
    }

    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
        if length == 0 {
            return Ok(Vec::new());
        }
        let range = format!("bytes={}-{}", offset, offset + length - 1);
        self.run("download", key, || async {
            let b = self.get_body(key, None, Some(range.clone())).await?;
            if b.len() as u64 != length {
                // A short body is a cut connection or a range past the end.
                return Err(Failure {
                    kind: BackendErrorKind::Transient,
                    message: format!("range {offset}+{length} returned {} bytes", b.len()),
                    code: None,
                });
            }
            Ok(b)
        })
    }

    fn put(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.put_new(key, data, None, Named::Freely)
    }

    fn put_hashed(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.put_new(key, data, None, Named::ByHash)
    }

    fn put_known_absent(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        self.put_new(key, data, None, Named::KnownAbsent)
    }

    fn put_mutable(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        if !is_mutable_key(key) {
            return Err(refuse_mutable(&self.shown(key)));
        }
        self.put_plain(key, data, false)
    }

    fn put_data_pack(&self, key: &str, data: &[u8]) -> BackendResult<()> {
        let class = self.opts.storage_class.as_deref().map(StorageClass::from);
        self.put_new(key, data, class, Named::ByHash)
    }

    fn list(&self, prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
        let full = self.full_key(prefix);
        let strip = if self.opts.prefix.is_empty() { String::new() } else { format!("{}/", self.opts.prefix) };
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.run("list", prefix, || async {
                self.client
                    .list_objects_v2()
                    .bucket(&self.opts.bucket)
                    .prefix(&full)
                    .set_continuation_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| classify(&e))
            })?;
            for o in page.contents() {
                if let Some(k) = o.key().and_then(|k| k.strip_prefix(&strip)) {
                    out.push(ObjectInfo {
                        key: k.to_string(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        modified: o.last_modified().and_then(from_smithy),
                    });
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> BackendResult<()> {
        self.run("delete", key, || async {
            self.client
                .delete_object()
                .bucket(&self.opts.bucket)
                .key(self.full_key(key))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            Ok(())
        })
    }

    fn stat(&self, key: &str) -> BackendResult<u64> {
        self.run("stat", key, || async {
            let h = self
                .client
                .head_object()
                .bucket(&self.opts.bucket)
                .key(self.full_key(key))
                .send()
                .await
                .map_err(|e| classify(&e))?;
            Ok(h.content_length().unwrap_or(0).max(0) as u64)
        })
    }

    fn concurrency(&self) -> usize {
        self.opts.concurrency
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn set_write_policy(&self, policy: &WritePolicy) {
        *self.policy.write().expect("the write policy lock is never poisoned") = *policy;
    }

    fn probe_conditional_put(&self) -> BackendResult<bool> {
        let key = format!("{}probe-{}", super::MUTABLE_PREFIX, crate::Id::random().to_hex());
        self.put_mutable(&key, b"1")?;
        let second = self.put_plain(&key, b"2", true);
        self.delete(&key)?;
        match second {
            Ok(()) => Ok(false),
            Err(e) if e.is_precondition_failed() => Ok(true),
            Err(e) => Err(e),
        }
    }

    fn bucket_lock_status(&self) -> BackendResult<BucketLockStatus> {
        self.lock_status()
    }

    fn extend_retention(&self, key: &str, mode: LockMode, until: DateTime<Utc>) -> BackendResult<()> {
        self.put_retention(key, mode, until)
    }

    fn retention(&self, key: &str) -> BackendResult<Option<DateTime<Utc>>> {
        self.head_retention(key)
    }

    fn server_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.clock.now()
    }
}

#[cfg(test)]
#[path = "s3_classify_tests.rs"]
mod classify_tests;
