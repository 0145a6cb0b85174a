//! The daemon's HTTP API, for loopback: `GET /healthz`, `GET /status`
//! (JSON, as `cairn status --json`), `GET /metrics` (Prometheus text) and
//! `POST /run-now?policy=NAME&kind=backup|prune|drill` (what `cairn
//! run-now` calls).
//!
//! There is no authentication (keep it on loopback), but a web page open
//! in a browser on the host must not drive it: `/run-now` needs the
//! `X-Cairn-Request` header, which a cross-origin page cannot send without
//! a preflight this server never grants, and `/status` and `/run-now`
//! answer only requests addressed to an IP literal or `localhost`, which
//! defeats DNS rebinding.
//!
//! Handlers never touch the scheduler directly: reads go to the state
//! database (on the blocking pool), and `run-now` sends a request to the
//! daemon's loop and waits for its answer.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use axum::extract::{Query, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::engine::Requested;
use crate::state::JobKind;
use crate::status::StatusReport;

/// A `run-now` request for the loop, with where to send its answer.
pub struct RunNow {
    pub policy: String,
    pub kind: JobKind,
    pub reply: oneshot::Sender<Result<Requested, String>>,
}

/// What the handlers share.
pub struct Api {
    /// Builds the current status report (blocking: reads SQLite).
    pub status: Box<dyn Fn() -> crate::Result<StatusReport> + Send + Sync>,
    /// Renders the metrics (blocking).
    pub metrics: Box<dyn Fn() -> crate::Result<String> + Send + Sync>,
    pub run_now: mpsc::UnboundedSender<RunNow>,
    /// When the loop last went round (unix seconds), for `/healthz`.
    pub heartbeat: Arc<AtomicI64>,
}

/// The loop wakes at least this often; `/healthz` fails past twice that.
pub const HEARTBEAT_MAX_S: i64 = 150;

pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/run-now", post(run_now))
        .with_state(api)
}

fn error(code: StatusCode, msg: impl Into<String>) -> Response {
    (code, Json(serde_json::json!({ "error": msg.into() }))).into_response()
}

async fn healthz(AxState(api): AxState<Arc<Api>>) -> Response {
    let age = chrono::Utc::now().timestamp() - api.heartbeat.load(Ordering::Relaxed);
    if age > HEARTBEAT_MAX_S {
        return error(StatusCode::SERVICE_UNAVAILABLE, format!("the scheduler loop has not run for {age} s"));
    }
    Json(serde_json::json!({ "status": "ok", "heartbeat_age_s": age })).into_response()
}

/// The header `cairn run-now` sends.
pub const REQUEST_HEADER: &str = "x-cairn-request";

/// Whether the request was addressed to an IP literal or `localhost` (not
/// to a name an attacker's DNS could point here).
fn addressed_locally(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, port)| if port.parse::<u16>().is_ok() { h } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

async fn status(AxState(api): AxState<Arc<Api>>, headers: HeaderMap) -> Response {
    if !addressed_locally(&headers) {
        return error(StatusCode::FORBIDDEN, "address the daemon by IP address or localhost");
    }
    match tokio::task::spawn_blocking(move || (api.status)()).await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn metrics(AxState(api): AxState<Arc<Api>>) -> Response {
    match tokio::task::spawn_blocking(move || (api.metrics)()).await {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct RunNowQuery {
    policy: String,
    #[serde(default)]
    kind: Option<String>,
}

async fn run_now(AxState(api): AxState<Arc<Api>>, headers: HeaderMap, Query(q): Query<RunNowQuery>) -> Response {
    if !addressed_locally(&headers) || !headers.contains_key(REQUEST_HEADER) {
        return error(
            StatusCode::FORBIDDEN,
            format!("send `{REQUEST_HEADER}: run-now` to a local address (as `cairn run-now` does)"),
        );
    }
    let kind = match q.kind.as_deref().unwrap_or("backup").parse::<JobKind>() {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let (reply, answer) = oneshot::channel();
    if api.run_now.send(RunNow { policy: q.policy.clone(), kind, reply }).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping");
    }
    match answer.await {
        Ok(Ok(r)) => {
            let queued = r == Requested::Queued;
            let body =
                serde_json::json!({ "policy": q.policy, "kind": kind, "queued": queued, "already_queued": !queued });
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Ok(Err(msg)) => error(StatusCode::NOT_FOUND, msg),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_addressed_to_an_ip_or_localhost_pass() {
        let host = |h: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, h.parse().unwrap());
            addressed_locally(&m)
        };
        for ok in ["127.0.0.1:9898", "127.0.0.1", "[::1]:9898", "localhost:9898", "LOCALHOST", "10.0.0.5:80"] {
            assert!(host(ok), "{ok}");
        }
        for bad in ["evil.example:9898", "evil.example", "127.0.0.1.nip.io:9898"] {
            assert!(!host(bad), "{bad}");
        }
        assert!(!addressed_locally(&HeaderMap::new()), "no Host header");
    }
}
