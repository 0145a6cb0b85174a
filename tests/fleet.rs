//! The report and the handover screen of a fleet, from evidence alone:
//! several hosts, each with its own key and state directory, back up into
//! one repository; the auditor, with the keys file and the read key but no
//! password and no state database, gets one report and one status screen
//! for all of them. A host whose key is not in the keys file counts for
//! nothing and is named; a host that stopped is named silent.

mod common;
mod garage;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::{DateTime, Utc};
use common::PASSWORD;
use garage::Garage;
use serde_json::Value;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Fleet {
    dir: tempfile::TempDir,
    /// The repository's location: a directory, or an S3 URL on Garage.
    repo: String,
    policies: PathBuf,
    garage: Option<Garage>,
}

impl Fleet {
    /// A fleet whose repository is a local directory.
    fn local() -> Fleet {
        Fleet::new(None)
    }

    /// A fleet whose repository is on a Garage server.
    fn on_garage() -> Fleet {
        Fleet::new(Some(Garage::start()))
    }

    fn new(garage: Option<Garage>) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let repo = match &garage {
            Some(g) => g.url("fleet"),
            None => dir.path().join("repo").display().to_string(),
        };
        let src = dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("data"), common::random_bytes(30_000, 7)).unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        std::fs::write(
            policies.join("web.toml"),
            format!(
                "name = \"web\"\n[source]\npaths = [\"{}\"]\n[repository]\nurl = \"{repo}\"\npassword_env = \
                 \"CAIRN_TEST_PW\"\n[objectives]\nrpo = \"1d\"\nrto = \"1h\"\n",
                src.display(),
            ),
        )
        .unwrap();
        let f = Fleet { dir, repo, policies, garage };
        f.admin(&["init", "--kdf-memory-kib", "19456", "--chunk-sizes", "16384,65536,262144"]);
        f
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// cairn, with the storage's credentials when it has any, and nothing else.
    fn base(&self, cache: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        if let Some(g) = &self.garage {
            g.apply_env(&mut c);
        }
        c.env_remove("CAIRN_REPO")
            .env_remove("CAIRN_PASSWORD")
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .env("CAIRN_CACHE_DIR", self.path(cache))
            .stdin(std::process::Stdio::null());
        c
    }

    /// The administrator, who has the password.
    fn admin(&self, args: &[&str]) -> String {
        let out = self
            .base("cache")
            .env("CAIRN_REPO", &self.repo)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_STATE_DIR", self.path("state"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "cairn {args:?} failed: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// A command of host `name` (its own state directory and key).
    fn host(&self, name: &str) -> Command {
        let mut c = self.base(&format!("cache-{name}"));
        c.env("CAIRN_REPO", &self.repo)
            .env("CAIRN_PASSWORD", PASSWORD)
            .env("CAIRN_STATE_DIR", self.path(&format!("state-{name}")))
            .env("CAIRN_TEST_PW", PASSWORD);
        c
    }

    fn ok(&self, name: &str, args: &[&str]) -> String {
        let out = self.host(name).args(args).output().unwrap();
        assert!(out.status.success(), "{name}: cairn {args:?} failed: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// Enrolls host `name`'s key; returns the line the auditor pins.
    fn enroll(&self, name: &str) -> String {
        self.ok(name, &["evidence", "enroll", "--host", name]).trim().to_string()
    }

    fn backup(&self, name: &str) {
        let p = self.policies.to_str().unwrap();
        self.ok(name, &["backup", "--policy", "web", "--policies", p, "--host", name, "-q"]);
    }

    fn drill(&self, name: &str) {
        let p = self.policies.to_str().unwrap();
        self.ok(name, &["drill", "--policy", "web", "--policies", p, "-q"]);
    }

    /// The auditor: no password, no repository from the environment, an
    /// empty state directory; only the repository's location (and the
    /// storage's read credentials) and the keys.
    fn auditor(&self, args: &[&str]) -> Output {
        let mut c = self.base("auditor-cache");
        c.env("CAIRN_STATE_DIR", self.path("auditor-state")).arg("--repo").arg(&self.repo).args(args);
        c.output().unwrap()
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[test]
fn one_report_and_one_screen_for_every_host_from_evidence_alone() {
    let f = Fleet::local();
    let page = every_host_from_evidence_alone(&f);
    // As a browser lays it out: the hosts table, the evidence, every policy.
    let work = f.path("chromium");
    std::fs::create_dir_all(&work).unwrap();
    let (dom, err) = common::chromium::run_chromium(&page, &work, &["--dump-dom"]);
    assert!(dom.contains("</html>"), "chromium printed no DOM: {err}");
    let hosts = &dom[dom.find("<section id=\"hosts\">").unwrap()..];
    let hosts = &hosts[..hosts.find("</section>").unwrap()];
    assert_eq!(hosts.matches("<tr class=").count(), 3, "one row per host: {hosts}");
    for id in ["evidence", "not-counted", "policy-alpha/web", "policy-beta/web", "policy-gamma/web"] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no #{id} in the rendered DOM");
    }
    let shot = f.path("fleet.png");
    let size = ["--window-size=1280,2400", &format!("--screenshot={}", shot.display())];
    common::chromium::run_chromium(&page, &work, &size);
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1280, "width");
}

#[test]
fn one_report_and_one_screen_for_every_host_on_garage() {
    every_host_from_evidence_alone(&Fleet::on_garage());
}

/// Three trusted hosts and one untrusted back up into one repository; the
/// auditor's report and screen name every trusted host, the silent one,
/// and the untrusted key. Returns the HTML report.
fn every_host_from_evidence_alone(f: &Fleet) -> PathBuf {
    let mut keys = String::new();
    for h in ["alpha", "beta", "gamma"] {
        keys.push_str(&f.enroll(h));
        keys.push('\n');
    }
    // mallory has the password and enrolls a key, which the auditor never pins.
    f.enroll("mallory");
    let legacy = f.admin(&["evidence", "pubkey"]).trim().to_string();
    let reader = f.admin(&["evidence", "reader-key"]).trim().to_string();
    keys.push_str(&format!("@legacy {legacy} revoked-after=0\n@reader {reader}\n"));
    let keys_file = f.path("auditor-keys");
    std::fs::write(&keys_file, &keys).unwrap();

    // gamma backs up once and then stops; the others carry on after it.
    f.backup("gamma");
    let gamma_stopped = Utc::now();
    f.backup("alpha");
    f.backup("beta");
    f.drill("alpha");
    f.backup("alpha");
    f.backup("mallory");
    // An hour after gamma stopped, with a one-hour silence threshold: only
    // gamma is silent (the others' records are all later than it).
    let now = rfc3339(gamma_stopped + chrono::Duration::hours(1));
    let view = ["--keys", keys_file.to_str().unwrap(), "--silent-after", "1h", "--now", &now];

    let out = f.auditor(&[&["report", "--format", "json"][..], &view].concat());
    assert!(out.status.success(), "report: {}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["source"], "evidence");
    let hosts: Vec<(&str, bool)> =
        r["hosts"].as_array().unwrap().iter().map(|h| (h["host"].as_str().unwrap(), h["silent"] == true)).collect();
    assert_eq!(hosts, [("alpha", false), ("beta", false), ("gamma", true)], "mallory is no host of the fleet");
    let policy = |host: &str| r["policies"].as_array().unwrap().iter().find(|p| p["host"] == host).cloned().unwrap();
    assert_eq!(policy("alpha")["backups"]["succeeded"], 2);
    assert_eq!(policy("alpha")["drills"]["count"], 1);
    assert_eq!(policy("alpha")["objectives"]["rpo_s"], 86400.0, "the objectives the drill record carries");
    assert_eq!(policy("beta")["backups"]["succeeded"], 1);
    assert_eq!(r["evidence"]["silent_hosts"], serde_json::json!(["gamma"]));
    let untrusted: Vec<&Value> =
        r["evidence"]["not_counted"].as_array().unwrap().iter().filter(|u| u["reason"] == "untrusted").collect();
    assert_eq!(untrusted.len(), 1, "{}", r["evidence"]);
    assert_eq!(untrusted[0]["host"], "mallory");
    assert!(untrusted[0]["detail"].as_str().unwrap().contains("not among the trusted keys"));
    assert_eq!(r["status"], "red", "a silent host leaves the fleet not covered");

    let page = f.path("fleet.html");
    let out = f.auditor(&[&["report", "--out", page.to_str().unwrap()][..], &view].concat());
    assert!(out.status.success(), "report --out: {}", text(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<section id=\"hosts\">") && html.contains("<section id=\"evidence\">"));
    assert!(html.contains("id=\"policy-alpha/web\"") && html.contains("<span class=\"tag\">silent</span>"));
    let out = f.auditor(&[&["status", "--json"][..], &view].concat());
    assert!(out.status.success(), "status: {}", text(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["silent"], serde_json::json!(["gamma"]));
    let alpha = &s["hosts"][0];
    assert_eq!((&alpha["host"], &alpha["policies"][0]["drill_state"]), (&"alpha".into(), &"pass".into()));
    assert_eq!(alpha["policies"][0]["rpo_state"], "ok");
    assert!(alpha["policies"][0]["last_backup"]["snapshot"].is_string());
    assert_eq!(s["not_counted"][0]["host"], "mallory");
    let out = f.auditor(&[&["status"][..], &view].concat());
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for want in ["alpha", "beta", "SILENT", "Silent (no record that counts for 1h):", "Not counted:", "untrusted"] {
        assert!(screen.contains(want), "{want:?} is not on the screen:\n{screen}");
    }
    assert!(!Path::new(&f.path("auditor-state").join("state.db")).exists(), "no state database was made");
    page
}

#[test]
fn a_view_from_evidence_needs_the_read_key_and_names_a_repository_it_cannot_read() {
    let f = Fleet::local();
    let line = f.enroll("alpha");
    f.backup("alpha");
    let keys_file = f.path("keys");
    std::fs::write(&keys_file, format!("{line}\n")).unwrap();
    let out = f.auditor(&["status", "--keys", keys_file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--reader-key"), "{}", text(&out.stderr));

    let reader = f.admin(&["evidence", "reader-key"]).trim().to_string();
    std::fs::write(&keys_file, format!("{line}\n@reader {reader}\n")).unwrap();
    let missing = f.path("no-such-repo");
    let out =
        f.auditor(&["--repo", missing.to_str().unwrap(), "status", "--json", "--keys", keys_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["hosts"][0]["host"], "alpha", "the readable repository is still shown");
    assert_eq!(
        s["repositories"][1]["error"].as_str(),
        Some(format!("there is no cairn repository at {}", missing.display()).as_str()),
        "{}",
        s["repositories"]
    );
    let screen = text(
        &f.auditor(&["--repo", missing.to_str().unwrap(), "status", "--keys", keys_file.to_str().unwrap()]).stdout,
    );
    assert!(screen.contains("NOT READ: there is no cairn repository at"), "{screen}");
}

#[test]
fn a_report_from_the_state_marks_the_rows_no_verified_record_backs() {
    use cairn::state::{JobKind, NewRun, Outcome, RunFinish, State, Trigger};
    let f = Fleet::local();
    let alpha = f.enroll("alpha");
    f.backup("alpha");
    // mallory has the password: its key is enrolled in the repository, but
    // the auditor never pinned it.
    let mallory = f.enroll("mallory");
    // Whoever can write alpha's state database adds a backup that never happened.
    let state = State::open(&f.path("state-alpha")).unwrap();
    let started_at = Utc::now() - chrono::Duration::hours(1);
    let new = NewRun {
        policy: "web".into(),
        kind: JobKind::Backup,
        trigger: Trigger::Schedule,
        scheduled_at: None,
        started_at,
        attempt: 1,
    };
    let id = state.start_run(&new).unwrap();
    let finish = RunFinish {
        ended_at: started_at + chrono::Duration::minutes(1),
        outcome: Outcome::Success,
        snapshot_id: Some("f".repeat(64)),
        ..Default::default()
    };
    state.finish_run(id, &finish).unwrap();
    drop(state);
    // A second policy whose repository is not there.
    let gone = f.path("gone-repo");
    std::fs::write(
        f.policies.join("gone.toml"),
        format!("name = \"gone\"\n[source]\npaths = [\"/srv\"]\n[repository]\nurl = \"{}\"\npassword_env = \"CAIRN_TEST_PW\"\n", gone.display()),
    )
    .unwrap();
    let report = |extra: &[&str]| -> Value {
        let p = f.policies.to_str().unwrap();
        let out = f.host("alpha").args(["report", "--format", "json", "--policies", p]).args(extra).output().unwrap();
        assert!(out.status.success(), "report {extra:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let policy = |r: &Value, name: &str| r["policies"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned();

    let keys = |name: &str, lines: &[&str]| -> String {
        let path = f.path(name);
        std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
        path.display().to_string()
    };
    let trusted = keys("keys-alpha", &[&alpha]);
    let r = report(&["--check-evidence", "--keys", &trusted]);
    assert!(r["notices"].to_string().contains("verify under the keys pinned in"), "{}", r["notices"]);
    let web = policy(&r, "web").unwrap();
    assert_eq!(web["backups"]["succeeded"], 2, "the figures stay as the state has them");
    assert_eq!(web["evidence"]["state"], "unverified", "{}", web["evidence"]);
    assert_eq!(web["evidence"]["unverified_backups"].as_array().unwrap().len(), 1, "only the forged row");
    assert!(web["findings"].to_string().contains("1 successful backup and 0 drills recorded in the state"));
    let gone = policy(&r, "gone").unwrap();
    assert_eq!(gone["evidence"]["state"], "unchecked", "{}", gone["evidence"]);
    assert!(gone["evidence"]["error"].is_string());

    // The repository's own list of enrolled keys is no trust root: under
    // a keys file that pins only mallory's key, or alpha's revoked before
    // its backup (its enrolment is record 0), alpha's real backup is
    // unverified too.
    let revoked = format!("{alpha} revoked-after=0");
    for (name, line) in [("keys-mallory", mallory.as_str()), ("keys-revoked", revoked.as_str())] {
        let r = report(&["--check-evidence", "--keys", &keys(name, &[line])]);
        let web = policy(&r, "web").unwrap();
        assert_eq!(web["evidence"]["state"], "unverified", "{name}: {}", web["evidence"]);
        assert_eq!(web["evidence"]["unverified_backups"].as_array().unwrap().len(), 2, "{name}: both rows");
    }

    // Without the auditor's keys there is nothing to check against: refused, saying what to give.
    let p = f.policies.to_str().unwrap();
    let out =
        f.host("alpha").args(["report", "--format", "json", "--policies", p, "--check-evidence"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("--keys FILE") && err.contains("not a trust root"), "{err}");
    assert!(out.stdout.is_empty(), "no report is written");

    let r = report(&[]);
    assert!(policy(&r, "web").unwrap().get("evidence").is_none());
    assert!(
        r["notices"].to_string().contains("were not checked against the repositories' evidence"),
        "{}",
        r["notices"]
    );
}
