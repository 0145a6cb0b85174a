//! The daemon's HTTP API, read-only: `GET /healthz`, `GET /status` (JSON,
//! as `cairn status --json`) and `GET /metrics` (Prometheus text). Jobs are
//! asked for through the control socket (`control.rs`), never over HTTP.
//!
//! Every request passes [`Guard`] first, whatever its route:
//! - its `Host` must be a loopback name (`localhost`, `127.0.0.1`, `[::1]`)
//!   or the address the daemon listens on, which defeats DNS rebinding (a
//!   page in a browser on the host that renamed its own origin to us);
//! - with `--listen-token-file`, it must carry `Authorization: Bearer
//!   TOKEN`, compared in constant time. A listen address other than
//!   loopback is refused without a token ([`check_listen`]).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use axum::extract::{Request, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::error::{Error, Result};
use crate::status::StatusReport;

/// What the handlers share.
pub struct Api {
    /// Builds the current status report (blocking: reads SQLite).
    pub status: Box<dyn Fn() -> crate::Result<StatusReport> + Send + Sync>,
    /// Renders the metrics (blocking).
    pub metrics: Box<dyn Fn() -> crate::Result<String> + Send + Sync>,
    /// When the loop last went round (unix seconds), for `/healthz`.
    pub heartbeat: Arc<AtomicI64>,
}

/// The loop wakes at least this often; `/healthz` fails past twice that.
pub const HEARTBEAT_MAX_S: i64 = 150;

/// Who may be answered: requests addressed to a loopback name or to
/// `listen`, carrying the token when there is one.
#[derive(Debug, Clone)]
pub struct Guard {
    pub listen: SocketAddr,
    /// The BLAKE3 hash of the token (compared in constant time).
    pub token: Option<blake3::Hash>,
}

impl Guard {
    /// Why a request with `headers` is refused, if it is.
    fn refuse(&self, headers: &HeaderMap) -> Option<Response> {
        if !self.addressed_to_us(headers) {
            return Some(error(
                StatusCode::FORBIDDEN,
                format!("address the daemon as localhost, 127.0.0.1, [::1] or {}", self.listen.ip()),
            ));
        }
        if let Some(want) = &self.token {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(|t| blake3::hash(t.trim().as_bytes()));
            // blake3::Hash compares in constant time.
            if given.as_ref() != Some(want) {
                let mut r = error(StatusCode::UNAUTHORIZED, "send `Authorization: Bearer TOKEN` (--listen-token-file)");
                r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
                return Some(r);
            }
        }
        None
    }

    /// Whether the request was addressed to a loopback name or to the
    /// listen address (not to a name an attacker's DNS could point here).
    fn addressed_to_us(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
        let name = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, port)| if port.parse::<u16>().is_ok() { h } else { host }),
        };
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip == self.listen.ip())
    }
}

/// Refuses a listen address the API must not be served on: one that is
/// not loopback, unless a token guards it, and an unspecified one
/// (`0.0.0.0`, `::`), whose requests no Host check could tell apart.
pub fn check_listen(addr: SocketAddr, has_token: bool) -> Result<()> {
    if addr.ip().is_unspecified() {
        return Err(Error::UnsafeListen {
            addr: addr.to_string(),
            reason: format!(
                "give the address of one interface (127.0.0.1:{port}, or this host's address with \
                 --listen-token-file), not the unspecified address",
                port = addr.port()
            ),
        });
    }
    if !addr.ip().is_loopback() && !has_token {
        return Err(Error::UnsafeListen {
            addr: addr.to_string(),
            reason: "not a loopback address: the API would be open to the network without authentication; give \
                     --listen-token-file FILE (every request then needs `Authorization: Bearer TOKEN`), or put a \
                     TLS reverse proxy in front of 127.0.0.1 (docs/OPERATIONS.md)"
                .into(),
        });
    }
    Ok(())
}

/// Reads the bearer token from `path`: its first line, at least 16
/// characters, in a file no one but its owner can read.
pub fn read_token(path: &Path) -> Result<blake3::Hash> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.mode() & 0o077 != 0 {
        return Err(Error::Untrusted {
            path: path.to_path_buf(),
            reason: format!("the token file is open to group or others (mode {:04o})", meta.mode() & 0o7777),
            fix: format!("chmod 600 {}", path.display()),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.len() < 16 {
        return Err(Error::WeakToken { path: path.to_path_buf() });
    }
    Ok(blake3::hash(token.as_bytes()))
}

async fn guard(AxState(g): AxState<Arc<Guard>>, req: Request, next: Next) -> Response {
    match g.refuse(req.headers()) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

pub fn router(api: Arc<Api>, g: Guard) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(api)
        .layer(axum::middleware::from_fn_with_state(Arc::new(g), guard))
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

async fn status(AxState(api): AxState<Arc<Api>>) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: Option<&str>, auth: Option<&str>) -> HeaderMap {
        let mut m = HeaderMap::new();
        if let Some(h) = host {
            m.insert(header::HOST, h.parse().unwrap());
        }
        if let Some(a) = auth {
            m.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        m
    }

    #[test]
    fn only_loopback_names_and_the_listen_address_pass_the_host_check() {
        let g = Guard { listen: "10.0.0.5:9898".parse().unwrap(), token: None };
        for ok in ["127.0.0.1:9898", "127.0.0.1", "[::1]:9898", "localhost:9898", "LOCALHOST", "10.0.0.5:9898"] {
            assert!(g.refuse(&headers(Some(ok), None)).is_none(), "{ok}");
        }
        for bad in ["evil.example:9898", "evil.example", "127.0.0.1.nip.io:9898", "10.0.0.6:9898", "192.168.1.1"] {
            assert_eq!(g.refuse(&headers(Some(bad), None)).unwrap().status(), StatusCode::FORBIDDEN, "{bad}");
        }
        assert!(g.refuse(&HeaderMap::new()).is_some(), "no Host header");
    }

    #[test]
    fn with_a_token_every_request_must_carry_it() {
        let g =
            Guard { listen: "10.0.0.5:9898".parse().unwrap(), token: Some(blake3::hash(b"0123456789abcdef-token")) };
        let host = Some("10.0.0.5:9898");
        assert!(g.refuse(&headers(host, Some("Bearer 0123456789abcdef-token"))).is_none());
        for bad in
            [None, Some("Bearer wrong"), Some("Basic 0123456789abcdef-token"), Some("Bearer 0123456789abcdef-toke")]
        {
            assert_eq!(g.refuse(&headers(host, bad)).unwrap().status(), StatusCode::UNAUTHORIZED, "{bad:?}");
        }
        // The Host check still applies.
        assert_eq!(
            g.refuse(&headers(Some("evil.example"), Some("Bearer 0123456789abcdef-token"))).unwrap().status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn a_network_listen_needs_a_token_and_never_the_unspecified_address() {
        assert!(check_listen("127.0.0.1:9898".parse().unwrap(), false).is_ok());
        assert!(check_listen("[::1]:9898".parse().unwrap(), false).is_ok());
        let e = check_listen("10.0.0.5:9898".parse().unwrap(), false).unwrap_err();
        assert!(e.to_string().contains("--listen-token-file"), "{e}");
        assert!(check_listen("10.0.0.5:9898".parse().unwrap(), true).is_ok());
        assert!(check_listen("0.0.0.0:9898".parse().unwrap(), true).is_err());
    }

    #[test]
    fn a_token_file_must_be_private_and_long_enough() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("token");
        std::fs::write(&f, "0123456789abcdef-token\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_token(&f).unwrap_err();
        assert!(e.hint().unwrap().contains("chmod 600"), "{e:?}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token(&f).unwrap(), blake3::hash(b"0123456789abcdef-token"));
        std::fs::write(&f, "short\n").unwrap();
        assert!(read_token(&f).unwrap_err().to_string().contains("shorter than 16"));
    }
}
