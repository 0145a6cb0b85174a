//! The daemon's control door: a Unix socket, `<state>/daemon.sock`, mode
//! 0600, through which `cairn run-now` asks for a job.
//!
//! A socket, not HTTP, because the kernel tells who is at the other end:
//! every connection's peer credentials (`SO_PEERCRED`) are read, and only
//! root or the user the daemon runs as may ask; anyone else is refused and
//! the refusal is logged with the uid and pid that asked. Accepted requests
//! are logged with the uid too. The socket's mode and the state
//! directory's (0700) keep others away already; the credential check holds
//! even when someone loosens them.
//!
//! The protocol is one JSON line each way: a [`Request`], then an
//! [`Answer`].

use std::io::{BufRead, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::engine::Requested;
use crate::error::{Error, Result};
use crate::state::JobKind;

/// The socket's name in the state directory.
pub const SOCKET_FILE: &str = "daemon.sock";

/// The longest request line read.
const MAX_REQUEST: u64 = 4096;

/// The socket of the daemon of state directory `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET_FILE)
}

/// A `run-now` request for the loop, with who asked and where to send
/// the answer.
pub struct RunNow {
    pub policy: String,
    pub kind: JobKind,
    /// The uid of the process that asked (from its peer credentials).
    pub uid: u32,
    pub reply: oneshot::Sender<std::result::Result<Requested, String>>,
}

/// What `cairn run-now` sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub policy: String,
    pub kind: JobKind,
}

/// What the daemon answers: the job queued, already waiting, or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub policy: String,
    pub kind: JobKind,
    #[serde(default)]
    pub queued: bool,
    #[serde(default)]
    pub already_queued: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a peer running as `peer` may ask the daemon running as `daemon`.
pub fn allowed(peer: u32, daemon: u32) -> bool {
    peer == 0 || peer == daemon
}

/// Binds the socket in `dir`, mode 0600. A socket left by a daemon that
/// died is replaced (the caller holds the state directory's daemon lock,
/// so no live daemon owns it); anything else in its place is refused.
pub fn bind(dir: &Path) -> Result<UnixListener> {
    let path = socket_path(dir);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?,
        Ok(_) => {
            return Err(Error::Untrusted {
                path: path.clone(),
                reason: "it should be the daemon's control socket, but something else is there".into(),
                fix: format!("remove it (`rm {}`) and start the daemon again", path.display()),
            })
        }
        Err(_) => {}
    }
    // Bound under another name, made 0600, then renamed into place: the
    // socket never shows at its path with the mode the umask gave it.
    // One name for every daemon: the caller holds the state directory's
    // daemon lock, so one left by a daemon that died is removed here.
    let bound = dir.join(".daemon.sock.new");
    let _ = std::fs::remove_file(&bound);
    let listener = UnixListener::bind(&bound).map_err(|e| Error::io(&bound, e))?;
    let placed = std::fs::set_permissions(&bound, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&bound, &path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&bound);
        return Err(Error::io(&path, e));
    }
    Ok(listener)
}

/// Answers connections on `listener` until the daemon stops, sending
/// accepted requests to the loop.
pub async fn serve(listener: UnixListener, loop_tx: mpsc::UnboundedSender<RunNow>) {
    let daemon_uid = nix::unistd::geteuid().as_raw();
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::error!(error = %e, "the control socket stopped accepting");
                return;
            }
        };
        let tx = loop_tx.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, daemon_uid, tx).await {
                tracing::warn!(error = %e, "a control connection failed");
            }
        });
    }
}

async fn handle(mut stream: UnixStream, daemon_uid: u32, tx: mpsc::UnboundedSender<RunNow>) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (uid, pid) = (cred.uid(), cred.pid());
    let mut line = String::new();
    tokio::io::BufReader::new((&mut stream).take(MAX_REQUEST)).read_line(&mut line).await?;
    let req: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => return reply_error(&mut stream, None, format!("not a run-now request: {e}")).await,
    };
    if !allowed(uid, daemon_uid) {
        tracing::warn!(uid, pid, policy = %req.policy, kind = %req.kind, "run-now refused: the requester is neither root nor the daemon's user");
        let msg = format!("refused: uid {uid} is neither root nor the daemon's user (uid {daemon_uid})");
        return reply_error(&mut stream, Some(&req), msg).await;
    }
    let (reply, answer) = oneshot::channel();
    let sent = tx.send(RunNow { policy: req.policy.clone(), kind: req.kind, uid, reply });
    let outcome = match sent {
        Ok(()) => answer.await.unwrap_or_else(|_| Err("the daemon is stopping".into())),
        Err(_) => Err("the daemon is stopping".into()),
    };
    let a = match outcome {
        Ok(r) => Answer {
            policy: req.policy,
            kind: req.kind,
            queued: r == Requested::Queued,
            already_queued: r != Requested::Queued,
            error: None,
        },
        Err(msg) => {
            Answer { policy: req.policy, kind: req.kind, queued: false, already_queued: false, error: Some(msg) }
        }
    };
    write_answer(&mut stream, &a).await
}

async fn reply_error(stream: &mut UnixStream, req: Option<&Request>, msg: String) -> std::io::Result<()> {
    let a = Answer {
        policy: req.map(|r| r.policy.clone()).unwrap_or_default(),
        kind: req.map_or(JobKind::Backup, |r| r.kind),
        queued: false,
        already_queued: false,
        error: Some(msg),
    };
    write_answer(stream, &a).await
}

async fn write_answer(stream: &mut UnixStream, a: &Answer) -> std::io::Result<()> {
    let mut text = serde_json::to_string(a).map_err(std::io::Error::other)?;
    text.push('\n');
    stream.write_all(text.as_bytes()).await?;
    stream.shutdown().await
}

/// Asks the daemon of state directory `dir` to run `kind` of `policy` now
/// (what `cairn run-now` does). An answer with an error is an error.
pub fn request(dir: &Path, policy: &str, kind: JobKind) -> Result<Answer> {
    let path = socket_path(dir);
    let mut s = std::os::unix::net::UnixStream::connect(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            Error::DaemonNotRunning { state_dir: dir.to_path_buf(), socket: path.clone() }
        }
        std::io::ErrorKind::PermissionDenied => Error::DaemonSocketDenied { socket: path.clone() },
        _ => Error::io(&path, e),
    })?;
    let io = |e| Error::io(&path, e);
    let mut line =
        serde_json::to_string(&Request { policy: policy.into(), kind }).map_err(std::io::Error::other).map_err(io)?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    std::io::BufReader::new(&s).read_line(&mut answer).map_err(io)?;
    let a: Answer = serde_json::from_str(&answer)
        .map_err(|e| Error::format(format!("the daemon's answer on {}", path.display()), e))?;
    match &a.error {
        Some(msg) => Err(Error::DaemonRefused(msg.clone())),
        None => Ok(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_and_the_daemons_user_may_ask() {
        assert!(allowed(0, 0) && allowed(0, 998) && allowed(998, 998));
        assert!(!allowed(65534, 0) && !allowed(1000, 998));
    }

    #[test]
    fn a_socket_is_bound_private_and_anything_else_in_its_place_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = crate::private::with_umask(0o022, || bind(d.path())).unwrap();
            let m = std::fs::symlink_metadata(socket_path(d.path())).unwrap();
            assert_eq!(m.permissions().mode() & 0o777, 0o600);
            // Bound under another name and renamed into place: nothing else
            // is left, and the socket answers at its path.
            let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names, [std::ffi::OsString::from(SOCKET_FILE)]);
            UnixStream::connect(socket_path(d.path())).await.unwrap();
            listener.accept().await.unwrap();
            drop(listener);
            // A stale socket is replaced.
            bind(d.path()).unwrap();
            std::fs::remove_file(socket_path(d.path())).unwrap();
            std::os::unix::fs::symlink("/etc/passwd", socket_path(d.path())).unwrap();
            let e = bind(d.path()).unwrap_err();
            assert!(e.to_string().contains("something else is there"), "{e}");
        });
        assert!(std::fs::read("/etc/passwd").is_ok(), "the link target is untouched");
    }
}
