//! Notifications: JSON events POSTed to webhooks, and healthchecks-style
//! pings (`URL/start`, `URL`, `URL/fail`).
//!
//! Delivery runs on the daemon's runtime, off the job's thread, with a
//! timeout and a few retries; a failed delivery is logged and never fails
//! the job or the daemon. Webhook and ping URLs often carry a secret token
//! in their path, so logs name only the scheme and host ([`redact`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// Tries per delivery, and the time each may take.
const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(10);

/// The event sent to webhooks when a job ends.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub schema: &'static str,
    /// `job.succeeded` or `job.failed`.
    pub event: &'static str,
    pub policy: String,
    pub kind: String,
    pub trigger: String,
    pub attempt: u32,
    pub host: String,
    pub run_id: i64,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub duration_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When a failed backup will be tried again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
}

pub const EVENT_SCHEMA: &str = "cairn.event/1";

/// The ping stages of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    Start,
    Success,
    Fail,
}

impl Ping {
    /// The URL to call for this stage of `base`.
    pub fn url(self, base: &str) -> String {
        let base = base.trim_end_matches('/');
        match self {
            Ping::Start => format!("{base}/start"),
            Ping::Success => base.to_string(),
            Ping::Fail => format!("{base}/fail"),
        }
    }
}

/// A URL with everything after the host left out, for logs.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit('@').next().unwrap_or(host);
    if rest.len() > host.len() {
        format!("{scheme}://{host}/…")
    } else {
        format!("{scheme}://{host}")
    }
}

type HttpsClient =
    Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>;

/// Sends notifications; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    client: HttpsClient,
}

impl Notifier {
    /// A notifier trusting the system's root certificates; `None` (and an
    /// error logged) when there are none: notifications are then off, the
    /// daemon runs on.
    pub fn new() -> Option<Notifier> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider());
        let https = match builder {
            Ok(b) => b.https_or_http().enable_http1().build(),
            Err(e) => {
                tracing::error!(error = %e, "no TLS root certificates (install ca-certificates): webhooks and pings are off");
                return None;
            }
        };
        Some(Notifier { client: Client::builder(TokioExecutor::new()).build(https) })
    }

    /// POSTs `body` (JSON or text) to `url`, retrying; logs the outcome.
    pub async fn post(&self, url: &str, body: Vec<u8>, content_type: &str) -> bool {
        let body = Bytes::from(body);
        for attempt in 1..=ATTEMPTS {
            match self.try_post(url, body.clone(), content_type).await {
                Ok(()) => {
                    tracing::debug!(url = %redact(url), "notification delivered");
                    return true;
                }
                Err(e) if attempt == ATTEMPTS => {
                    tracing::warn!(url = %redact(url), error = %e, "notification not delivered after {ATTEMPTS} tries");
                }
                Err(e) => {
                    tracing::debug!(url = %redact(url), error = %e, attempt, "notification failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
                }
            }
        }
        false
    }

    async fn try_post(&self, url: &str, body: Bytes, content_type: &str) -> Result<(), String> {
        let req = hyper::Request::post(url)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(hyper::header::USER_AGENT, concat!("cairn/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|e| format!("bad request: {e}"))?;
        let resp = tokio::time::timeout(TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {}s", TIMEOUT.as_secs()))?
            .map_err(|e| format!("{e}"))?;
        let status = resp.status();
        // Read the body so the connection can be reused.
        let _ = tokio::time::timeout(TIMEOUT, resp.into_body().collect()).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }

    /// Sends `event` to each webhook.
    pub async fn send_event(&self, webhooks: &[String], event: &Event) {
        let body = serde_json::to_vec(event).expect("events serialise");
        for url in webhooks {
            self.post(url, body.clone(), "application/json").await;
        }
    }

    /// Calls a ping URL for one stage; `body` is e.g. the error.
    pub async fn ping(&self, base: &str, stage: Ping, body: &str) {
        self.post(&stage.url(base), body.as_bytes().to_vec(), "text/plain; charset=utf-8").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_logs_keep_the_host_and_drop_tokens() {
        assert_eq!(redact("https://hc-ping.com/5f1b-secret-uuid"), "https://hc-ping.com/…");
        assert_eq!(redact("https://user:pw@hooks.example.com:8443/x?token=1"), "https://hooks.example.com:8443/…");
        assert_eq!(redact("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
    }

    #[test]
    fn a_failed_delivery_is_reported_not_raised() {
        // A port nothing listens on: every try is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let delivered = rt.block_on(async {
            let n = Notifier::new().expect("this machine has root certificates");
            n.post(&format!("http://127.0.0.1:{port}/hook/secret-token"), b"{}".to_vec(), "application/json").await
        });
        assert!(!delivered);
    }

    #[test]
    fn ping_stages_follow_the_healthchecks_convention() {
        assert_eq!(Ping::Start.url("https://hc/abc/"), "https://hc/abc/start");
        assert_eq!(Ping::Success.url("https://hc/abc"), "https://hc/abc");
        assert_eq!(Ping::Fail.url("https://hc/abc"), "https://hc/abc/fail");
    }
}
