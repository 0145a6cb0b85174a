//! The real daemon binary, end to end: a policy firing every 3 seconds
//! against a local repository, a webhook receiver and a ping endpoint on
//! loopback, the state database, `cairn status`, `/metrics`, `run-now`, a
//! SIGHUP reload and a graceful SIGTERM.
//!
//! Nothing here sleeps for a fixed time to let things happen: each step
//! waits for the event it needs (a webhook delivery, the process exit)
//! with a deadline.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn::state::State;
use common::{wait_exit, wait_until, Env, PASSWORD};
use nix::sys::signal::Signal;

/// One request the receiver got: its path and body.
#[derive(Debug)]
struct Hit {
    path: String,
    body: String,
}

/// A loopback HTTP server answering 200 to everything, reporting each request.
fn receiver() -> (String, mpsc::Receiver<Hit>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            let mut len = 0;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = tx.send(Hit { path, body: String::from_utf8_lossy(&body).into_owned() });
        }
    });
    (base, rx)
}

/// Waits for a request matching `want`, keeping the others seen on the way.
fn wait_for(rx: &mpsc::Receiver<Hit>, seen: &mut Vec<Hit>, what: &str, want: impl Fn(&Hit) -> bool) -> usize {
    if let Some(i) = seen.iter().position(&want) {
        return i;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let hit = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no {what} within 60 s; got {seen:#?}"));
        seen.push(hit);
        if want(seen.last().unwrap()) {
            return seen.len() - 1;
        }
    }
}

fn event(h: &Hit) -> serde_json::Value {
    serde_json::from_str(&h.body).unwrap_or(serde_json::Value::Null)
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp.split(' ').nth(1).unwrap().parse().unwrap();
    (code, resp.split_once("\r\n\r\n").unwrap().1.to_string())
}

fn policy(name: &str, source: &Path, repo: &Path, pw: &Path, extra: &str) -> String {
    format!(
        "name = \"{name}\"\n[source]\npaths = [\"{}\"]\n[repository]\nurl = \"{}\"\npassword_file = \"{}\"\n{extra}",
        source.display(),
        repo.display(),
        pw.display()
    )
}

/// A repository, a data directory with one file, a password file, a
/// policy directory and a state directory, all in one temporary place.
struct Scene {
    env: Env,
    data: PathBuf,
    pw: PathBuf,
    policies: PathBuf,
    state: PathBuf,
}

impl Scene {
    fn new() -> Scene {
        let env = Env::new();
        let (data, pw, policies, state) = (env.path("data"), env.path("pw"), env.path("policies"), env.path("state"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("a.txt"), "hello").unwrap();
        std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
        std::fs::create_dir_all(&policies).unwrap();
        Scene { env, data, pw, policies, state }
    }

    /// Writes the policy `name` backing up `source` (the data directory by default).
    fn add(&self, name: &str, source: Option<&Path>, extra: &str) {
        let body = policy(name, source.unwrap_or(&self.data), &self.env.repo, &self.pw, extra);
        std::fs::write(self.policies.join(format!("{name}.toml")), body).unwrap();
    }

    fn dirs(&self) -> [&str; 4] {
        ["--policies", self.policies.to_str().unwrap(), "--state", self.state.to_str().unwrap()]
    }

    /// Starts `cairn daemon ARGS` on the scene, without CAIRN_PASSWORD (the
    /// policies name their password file).
    fn daemon(&self, args: &[&str], stderr: impl Into<Stdio>) -> Child {
        let mut c = self.env.command();
        c.env_remove("CAIRN_PASSWORD").arg("daemon").args(args).args(self.dirs()).stderr(stderr);
        c.spawn().unwrap()
    }

    /// Waits until a daemon has recorded itself in the state.
    fn wait_recorded(&self) {
        wait_until("the daemon's start", Duration::from_secs(30), || {
            State::open_existing(&self.state)
                .ok()
                .flatten()
                .and_then(|s| s.daemon_value("pid").ok().flatten())
                .is_some()
        });
    }
}

fn signal(child: &Child, sig: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

#[test]
fn the_daemon_runs_policies_on_schedule_reports_them_and_stops_gracefully() {
    let scene = Scene::new();
    let (env, policies, state) = (&scene.env, &scene.policies, &scene.state);
    let (hook, hits) = receiver();
    let notify = format!("[notify]\nwebhooks = [\"{hook}/hook\"]\non_success = true\nping = \"{hook}/ping/web\"\n");
    // Its hook and its validation command print: with --log-format json
    // their lines must become log records, not raw lines in the log.
    let web = format!(
        "[schedule]\nbackup = \"*/3 * * * * *\"\n[objectives]\nrpo = \"1h\"\nrto = \"1h\"\n\
         [drill]\nschedule = \"*/4 * * * * *\"\nvalidate = {{ command = \"echo validated-fine\" }}\n\
         [hooks.before]\ncommand = \"echo hook-says-out; echo hook-says-err >&2\"\n{notify}"
    );
    scene.add("web", None, &web);
    let broken_notify = format!("[notify]\nwebhooks = [\"{hook}/hook\"]\nping = \"{hook}/ping/broken\"\n");
    let broken = format!("[schedule]\nbackup = \"*/3 * * * * *\"\nretries = 0\n{broken_notify}");
    scene.add("broken", Some(&env.path("does-not-exist")), &broken);
    std::fs::write(policies.join("typo.toml"), "name = \"typo\"\n[source]\npaths = [\"/x\"]\n[repository]\nurl = 3\n")
        .unwrap();

    let log = env.path("daemon.log");
    let args = ["--listen", "127.0.0.1:0", "--log-format", "json", "--grace", "30s", "--max-jobs", "2"];
    let mut daemon = scene.daemon(&args, std::fs::File::create(&log).unwrap());

    // A scheduled backup succeeds: webhook event and pings start + success.
    let mut seen = Vec::new();
    let ok = wait_for(&hits, &mut seen, "success event", |h| {
        h.path == "/hook" && event(h)["event"] == "job.succeeded" && event(h)["policy"] == "web"
    });
    let ev = event(&seen[ok]);
    assert_eq!((ev["kind"].as_str(), ev["trigger"].as_str()), (Some("backup"), Some("schedule")));
    let snapshot = ev["snapshot_id"].as_str().expect("the event names the snapshot").to_string();
    wait_for(&hits, &mut seen, "start ping", |h| h.path == "/ping/web/start");
    wait_for(&hits, &mut seen, "success ping", |h| h.path == "/ping/web");
    // The broken policy fails, and says why, without stopping the daemon.
    let bad = wait_for(&hits, &mut seen, "failure event", |h| h.path == "/hook" && event(h)["policy"] == "broken");
    let ev = event(&seen[bad]);
    assert_eq!(ev["event"], "job.failed");
    assert!(ev["error"].as_str().unwrap().contains("does-not-exist"), "{ev}");
    let fail_ping = wait_for(&hits, &mut seen, "fail ping", |h| h.path == "/ping/broken/fail");
    assert!(seen[fail_ping].body.contains("does-not-exist"), "the fail ping carries the error");

    // A scheduled drill passes, signed and recorded under the daemon's run
    // (one that fires before the first backup fails: nothing to restore).
    let d = wait_for(&hits, &mut seen, "successful drill event", |h| {
        h.path == "/hook" && event(h)["kind"] == "drill" && event(h)["event"] == "job.succeeded"
    });
    assert_eq!(event(&seen[d])["policy"], "web");

    // The state database has the runs, the recovery point and the next due time.
    let st = State::open_existing(state).unwrap().expect("the daemon created its state");
    let runs = st.runs(Some("web"), None, None).unwrap();
    let run = runs.iter().find(|r| r.snapshot_id.as_deref() == Some(snapshot.as_str())).expect("run recorded");
    assert_eq!(run.outcome, cairn::state::Outcome::Success);
    assert!(run.bytes == Some(5) && run.ended_at.is_some() && run.scheduled_at.is_some(), "{run:?}");
    assert!(st.recovery_point("web").unwrap().is_some());
    assert!(st.next_due("web", cairn::state::JobKind::Backup).unwrap().is_some());
    let drills = st.drills(Some("web"), None, None).unwrap();
    let drill = drills.iter().find(|d| d.passed()).expect("the passing drill is recorded");
    assert_eq!((drill.verdict.as_str(), drill.started_by.as_str()), ("pass", "schedule"));
    let drill_run = runs.iter().find(|r| Some(r.id) == drill.run_id).expect("under the daemon's own run");
    assert_eq!((drill_run.kind, drill_run.outcome), (cairn::state::JobKind::Drill, cairn::state::Outcome::Success));
    assert_eq!(
        runs.iter().filter(|r| r.kind == cairn::state::JobKind::Drill && r.started_at == drill_run.started_at).count(),
        1
    );
    assert!(drill.evidence_hash.is_some(), "the drill is signed");
    let failed = st.runs(Some("broken"), None, None).unwrap();
    assert!(failed.iter().any(|r| r.outcome == cairn::state::Outcome::Failure && r.error.is_some()), "{failed:?}");

    // `cairn status` reads it, with the daemon's address.
    let out =
        env.ok(&["status", "--json", "--state", state.to_str().unwrap(), "--policies", policies.to_str().unwrap()]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let addr = status["daemon"]["listen"].as_str().expect("the daemon recorded its address").to_string();
    assert_eq!(status["daemon"]["alive"], true);
    let web_status = status["policies"].as_array().unwrap().iter().find(|p| p["name"] == "web").unwrap();
    assert_eq!(web_status["rpo"]["state"], "ok");
    // The daemon checked the evidence after its backup: nothing wrong.
    assert_eq!(web_status["evidence"]["ok"], true, "{web_status}");
    assert_eq!(web_status["evidence"]["problems"], 0, "{web_status}");
    assert!(web_status["last_success"]["snapshot_id"].is_string());
    assert!(web_status["next"].as_array().unwrap().iter().any(|n| n["kind"] == "backup"));
    assert!(["pass", "needs-verification"].contains(&web_status["drill"]["state"].as_str().unwrap()), "{web_status}");
    let broken_status = status["policies"].as_array().unwrap().iter().find(|p| p["name"] == "broken").unwrap();
    assert_eq!(broken_status["failing"], true);
    assert!(status["invalid_policies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["file"].as_str().unwrap().ends_with("typo.toml")));
    let text = env.ok(&["status", "--state", state.to_str().unwrap(), "--policies", policies.to_str().unwrap()]);
    assert!(text.contains("daemon running") && text.contains("FAILING") && text.contains("typo.toml"), "{text}");

    // HTTP: health, status and Prometheus metrics.
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    let (code, body) = http_get(&addr, "/status");
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["schema"], "cairn.status/1");
    let (code, metrics) = http_get(&addr, "/metrics");
    assert_eq!(code, 200);
    for series in [
        "cairn_job_last_success_timestamp_seconds{policy=\"web\",kind=\"backup\"}",
        "cairn_job_last_duration_seconds{policy=\"web\",kind=\"backup\"}",
        "cairn_job_last_bytes{policy=\"web\",kind=\"backup\"} 5",
        "cairn_job_failures_total{policy=\"broken\",kind=\"backup\"}",
        "cairn_job_last_success_timestamp_seconds{policy=\"broken\",kind=\"backup\"} 0",
        "cairn_job_interval_seconds{policy=\"web\",kind=\"backup\"} 3",
        "cairn_recovery_point_age_seconds{policy=\"web\"}",
        "cairn_rpo_objective_seconds{policy=\"web\"} 3600",
        "cairn_evidence_ok{policy=\"web\"} 1",
        "cairn_policies{state=\"invalid\"} 1",
        "cairn_drill_last_timestamp_seconds{policy=\"web\"}",
        "cairn_drill_rto_measured_seconds{policy=\"web\"}",
        "cairn_drill_rto_objective_seconds{policy=\"web\"} 3600",
    ] {
        assert!(metrics.contains(series), "missing {series} in:\n{metrics}");
    }

    // HTTP is read-only, and a page in a browser cannot read it: a foreign
    // Host is refused on every route, and jobs are not asked for over HTTP.
    let raw = |req: String| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp.split(' ').nth(1).unwrap().to_string()
    };
    let post = "POST /run-now?policy=web HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n";
    assert_eq!(raw(format!("{post}Host: {addr}\r\nX-Cairn-Request: run-now\r\n\r\n")), "404", "no run-now over HTTP");
    for path in ["/status", "/metrics", "/healthz", "/run-now"] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n");
        assert_eq!(raw(req), "403", "{path} answers a foreign Host");
    }

    // The daemon's backups leave signed evidence records in the repository,
    // in the sub-chain of the host key it enrolled at start (`chain-<key id>-<seq>.json`).
    let exported = env.path("evidence");
    env.ok(&["evidence", "export", "--out", exported.to_str().unwrap()]);
    let records: Vec<serde_json::Value> = std::fs::read_dir(&exported)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("chain-"))
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r["kind"] == "backup" && r["policy"] == "web" && r["payload"]["snapshot"] == snapshot.as_str()),
        "no evidence of the daemon's backup {snapshot} in {records:#?}"
    );

    // SIGHUP: a new policy (no schedule) appears; run-now starts it.
    let manual = format!("[notify]\nwebhooks = [\"{hook}/hook\"]\non_success = true\n");
    scene.add("manual", None, &manual);
    let unknown = env.cairn(&["run-now", "manual", "--state", state.to_str().unwrap()]);
    assert!(!unknown.status.success(), "manual is not loaded before SIGHUP");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no valid policy named `manual`"));
    signal(&daemon, Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = env.cairn(&["run-now", "manual", "--kind", "backup", "--state", state.to_str().unwrap()]);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "run-now never accepted: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = wait_for(&hits, &mut seen, "run-now event", |h| h.path == "/hook" && event(h)["policy"] == "manual");
    assert_eq!(
        (event(&seen[m])["trigger"].as_str(), event(&seen[m])["event"].as_str()),
        (Some("run-now"), Some("job.succeeded"))
    );

    // SIGTERM: the daemon stops starting jobs and exits 0.
    signal(&daemon, Signal::SIGTERM);
    let status = wait_exit(&mut daemon, Duration::from_secs(40));
    assert!(status.success(), "exit status {status:?}");
    assert!(st.running().unwrap().is_empty(), "no run is left marked running");
    assert_eq!(st.daemon_value("pid").unwrap(), None, "the daemon cleared its record");
    let after = env.ok(&["status", "--state", state.to_str().unwrap(), "--policies", policies.to_str().unwrap()]);
    assert!(after.contains("daemon not running"), "{after}");

    // Logs: JSON lines, the reload and the stop named, no password anywhere.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains(PASSWORD));
    assert!(!log.contains('\x1b'), "no colour codes in a log file");
    let lines: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    for m in ["SIGHUP: reloading the policies", "stopping: no new jobs start", "cairn daemon stopped", "job failed"] {
        assert!(messages.iter().any(|x| x.contains(m)), "no log line {m:?} in {messages:?}");
    }
    assert!(messages.iter().any(|m| m.starts_with("invalid policy, skipped")), "{messages:?}");
    // What the hook and the validation command printed: records that name
    // the policy, the job and the stream (every line parsed above).
    for (said, job, stream) in [
        ("hook-says-out", "backup", "stdout"),
        ("hook-says-err", "backup", "stderr"),
        ("validated-fine", "drill", "output"),
    ] {
        let r = lines.iter().find(|l| l["message"] == said).unwrap_or_else(|| panic!("no record of {said:?}: {log}"));
        assert_eq!(
            (r["policy"].as_str(), r["job"].as_str(), r["stream"].as_str()),
            (Some("web"), Some(job), Some(stream)),
            "{r}"
        );
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn chmod(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `cairn run-now POLICY --state STATE` as the user `nobody`.
fn run_now_as_nobody(state: &Path, policy: &str) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let cairn = common::cairn_for_other_users();
    let mut c = std::process::Command::new(&cairn.path);
    c.args(["run-now", policy, "--kind", "prune", "--state", state.to_str().unwrap()])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.output().unwrap()
}

/// `run-now` goes through the control socket, which only root and the
/// daemon's user may use: another uid is refused even when the socket's
/// mode lets it connect, and the daemon logs the uid of every asker.
#[test]
fn bug_run_now_from_another_uid_is_refused_and_the_asker_is_logged() {
    let scene = Scene::new();
    scene.add("web", None, "");
    let log_path = scene.env.path("daemon.log");
    let args = ["--listen", "none", "--log-format", "json"];
    let mut daemon = scene.daemon(&args, std::fs::File::create(&log_path).unwrap());
    let socket = scene.state.join("daemon.sock");
    wait_until("the control socket", Duration::from_secs(30), || socket.exists());
    assert_eq!(mode(&socket), 0o600);
    let state = scene.state.to_str().unwrap();
    let out = scene.env.cairn(&["run-now", "web", "--state", state]);
    assert!(out.status.success(), "the daemon's own user may ask: {}", String::from_utf8_lossy(&out.stderr));
    let me = nix::unistd::geteuid().as_raw();
    if me == 0 {
        // The default modes keep `nobody` from reaching the socket at all.
        let out = run_now_as_nobody(&scene.state, "web");
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"), "{out:?}");
        // Loosened by mistake, the credential check still refuses it.
        chmod(scene.env.dir.path(), 0o711);
        chmod(&scene.state, 0o711);
        chmod(&socket, 0o666);
        let out = run_now_as_nobody(&scene.state, "web");
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refused: uid 65534 is neither root nor the daemon's user"), "{err}");
    }
    signal(&daemon, Signal::SIGTERM);
    assert!(wait_exit(&mut daemon, Duration::from_secs(40)).success());
    assert!(!socket.exists(), "the daemon removes its socket when it stops");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let uid_of = |msg: &str| -> Vec<u64> {
        lines
            .iter()
            .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with(msg)))
            .filter_map(|l| l["uid"].as_u64())
            .collect()
    };
    assert_eq!(uid_of("run-now requested"), [u64::from(me)], "{log}");
    if me == 0 {
        assert_eq!(uid_of("run-now refused"), [65534], "{log}");
        assert!(!uid_of("run-now requested").contains(&65534), "the refused request queued nothing");
    }
}

/// The HTTP API off loopback only with a token, and then every request
/// needs it.
#[test]
fn a_network_listen_without_a_token_is_refused_and_a_token_guards_every_route() {
    let scene = Scene::new();
    let mut args = vec!["daemon", "--listen", "192.0.2.1:9898"];
    args.extend(scene.dirs());
    let out = scene.env.cairn(&args);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address") && err.contains("--listen-token-file"), "{err}");

    let token_file = scene.env.path("token");
    std::fs::write(&token_file, "s3cret-token-0123456789\n").unwrap();
    chmod(&token_file, 0o600);
    let token_arg = token_file.to_str().unwrap();
    let mut daemon = scene.daemon(&["--listen", "127.0.0.1:0", "--listen-token-file", token_arg], Stdio::null());
    scene.wait_recorded();
    let st = State::open_existing(&scene.state).unwrap().unwrap();
    let addr = st.daemon_value("listen").unwrap().expect("the daemon recorded its address");
    let get = |path: &str, auth: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp.split(' ').nth(1).unwrap().to_string()
    };
    for path in ["/healthz", "/status", "/metrics"] {
        assert_eq!(get(path, ""), "401", "{path} without the token");
        assert_eq!(get(path, "Authorization: Bearer wrong-token-0123456789\r\n"), "401", "{path}");
        assert_eq!(get(path, "Authorization: Bearer s3cret-token-0123456789\r\n"), "200", "{path} with it");
    }
    signal(&daemon, Signal::SIGTERM);
    assert!(wait_exit(&mut daemon, Duration::from_secs(40)).success());
}

#[test]
fn a_second_daemon_on_the_same_state_directory_is_refused() {
    let scene = Scene::new();
    let mut first = scene.daemon(&["--listen", "none"], Stdio::piped());
    scene.wait_recorded();
    let mut args = vec!["daemon", "--listen", "none"];
    args.extend(scene.dirs());
    let second = scene.env.cairn(&args);
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains(&format!("another cairn daemon (pid {})", first.id())), "{err}");
    signal(&first, Signal::SIGINT);
    assert!(wait_exit(&mut first, Duration::from_secs(30)).success());
}

/// Starts a daemon whose one policy runs a job (a `before` hook) that
/// lasts until the test creates the file `release`, waits until the job
/// runs, sends SIGTERM, and waits until the daemon says it is stopping.
/// With `release_while_stopping`, the job is then let go while the daemon
/// still runs (it must: it waits for the job). Otherwise the job cannot end
/// before the daemon exits, and is let go only then. Returns the daemon's
/// status and the recorded run.
fn stop_during_a_job(grace: &str, release_while_stopping: bool) -> (std::process::ExitStatus, cairn::state::RunRow) {
    let scene = Scene::new();
    let env = &scene.env;
    let (started, release) = (env.path("started"), env.path("release"));
    let hook = format!(
        "[schedule]\nbackup = \"* * * * * *\"\n[hooks.before]\ncommand = \"touch {} && while [ ! -e {} ]; do sleep 0.05; done\"\n",
        started.display(),
        release.display()
    );
    scene.add("slow", None, &hook);
    let log_path = env.path("daemon.log");
    let mut daemon = scene.daemon(&["--listen", "none", "--grace", grace], std::fs::File::create(&log_path).unwrap());
    wait_until("the job's start", Duration::from_secs(30), || started.exists());
    signal(&daemon, Signal::SIGTERM);
    wait_until("the daemon's stop message", Duration::from_secs(30), || {
        std::fs::read_to_string(&log_path).unwrap().contains("stopping: no new jobs start")
    });
    if release_while_stopping {
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited without waiting for its running job");
        std::fs::write(&release, "").unwrap();
    }
    let status = wait_exit(&mut daemon, Duration::from_secs(60));
    std::fs::write(&release, "").unwrap(); // the hook outlives an impatient daemon
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains('\x1b'), "no colour codes in a log file: {log}");
    let st = State::open_existing(&scene.state).unwrap().unwrap();
    let runs = st.runs(Some("slow"), None, None).unwrap();
    assert_eq!(runs.len(), 1, "nothing new started after SIGTERM: {runs:?}");
    (status, runs.into_iter().next().unwrap())
}

#[test]
fn sigterm_lets_a_running_job_finish_within_the_grace_period() {
    let (status, run) = stop_during_a_job("1h", true);
    assert!(status.success(), "{status:?}");
    assert_eq!(run.outcome, cairn::state::Outcome::Success, "{run:?}");
    assert!(run.snapshot_id.is_some());
}

#[test]
fn sigterm_past_the_grace_period_exits_0_and_records_the_job_as_interrupted() {
    // The job cannot end before the daemon exits: the daemon did not wait.
    let (status, run) = stop_during_a_job("1s", false);
    assert!(status.success(), "{status:?}");
    assert_eq!(run.outcome, cairn::state::Outcome::Interrupted, "{run:?}");
    assert!(run.error.unwrap().contains("stopped before it finished"));
}
