//! `cairn report` through the real binary: a state database filled with a
//! month of backups, failures, drills and recovery points through
//! `cairn::state::State` (as the daemon and the drill runner would), a
//! policy directory, and every form of the report checked for content. The
//! HTML page is rendered in headless Chromium.
//!
//! `CAIRN_REPORT_SCREENSHOT=docs/compliance-report.png cargo test --test
//! report` also refreshes the screenshot in the documentation.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::chromium::run_chromium;

use cairn::state::{DrillRow, JobKind, NewRun, Outcome, RecoveryPoint, RunFinish, State, Trigger};
use chrono::{DateTime, Datelike, TimeZone, Utc};

/// The report is generated "now", for March 2026.
const NOW: &str = "2026-03-31T09:00:00Z";
const PERIOD: [&str; 4] = ["--since", "2026-03-01", "--until", "2026-03-30"];

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn day(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap()
}

const WEB: &str = r#"name = "web"
description = "Document root and nginx configuration of www1"
[source]
paths = ["/var/www", "/etc/nginx"]
[repository]
url = "s3://backups/web"
[schedule]
backup = "30 2 * * *"
timezone = "Europe/Berlin"
[objectives]
rpo = "26h"
rto = "2h"
[drill]
schedule = "0 6 * * mon"
"#;

const POSTGRES: &str = r#"name = "postgres"
description = "PostgreSQL dump of db1"
[source]
command = "pg_dumpall"
stored_as = "db1.sql"
[repository]
url = "s3://backups/postgres"
[schedule]
backup = "0 */6 * * *"
[objectives]
rpo = "8h"
rto = "1h"
[drill]
schedule = "0 5 * * wed"
"#;

const HOME: &str = r#"name = "home"
[source]
paths = ["/home"]
[repository]
url = "/srv/cairn/home"
[schedule]
backup = "0 1 * * *"
[objectives]
rpo = "26h"
rto = "4h"
"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn policies(&self) -> PathBuf {
        self.dir.path().join("policies")
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// `cairn report` for March 2026 with `args`, run in the fixture's
    /// directory with relative paths (so the report, and the screenshot
    /// in the docs, name no machine's temporary directory).
    fn report(&self, args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.current_dir(self.dir.path());
        c.arg("report").args(PERIOD).args(["--now", NOW, "--policies", "policies", "--state", "state"]);
        c.args(args).env_remove("CAIRN_STATE_DIR").env_remove("CAIRN_POLICIES");
        c.stdin(Stdio::null()).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.report(args);
        assert!(out.status.success(), "cairn report {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

fn backup(s: &State, policy: &str, slot: DateTime<Utc>, delay_min: i64, minutes: i64, error: Option<&str>) {
    let started_at = slot + chrono::Duration::minutes(delay_min);
    let (trigger, attempt) = if delay_min >= 30 { (Trigger::Retry, 2) } else { (Trigger::Schedule, 1) };
    let new =
        NewRun { policy: policy.into(), kind: JobKind::Backup, trigger, scheduled_at: Some(slot), started_at, attempt };
    let id = s.start_run(&new).unwrap();
    let ended_at = started_at + chrono::Duration::minutes(minutes);
    let snapshot = format!("{policy}{}", started_at.timestamp());
    let finish = match error {
        None => RunFinish {
            ended_at,
            outcome: Outcome::Success,
            snapshot_id: Some(snapshot.clone()),
            bytes: Some(7 << 30),
            duration_s: Some(minutes as f64 * 60.0),
            ..Default::default()
        },
        Some(e) => RunFinish { ended_at, outcome: Outcome::Failure, error: Some(e.into()), ..Default::default() },
    };
    s.finish_run(id, &finish).unwrap();
    if error.is_none() {
        let rp =
            RecoveryPoint { snapshot_id: snapshot, time: started_at, tree: format!("tree-{policy}-{}", slot.day()) };
        s.set_recovery_point(policy, &rp).unwrap();
    }
}

fn drill(s: &State, policy: &str, at: DateTime<Utc>, rto_s: f64, objective: (f64, f64), tree: &str) {
    let pass = rto_s <= objective.1;
    s.record_drill(&DrillRow {
        drill_id: format!("{policy}-{}", at.timestamp()),
        policy: policy.into(),
        run_id: None,
        started_by: "schedule".into(),
        started_at: at,
        ended_at: at + chrono::Duration::seconds(rto_s as i64 + 120),
        snapshot_id: Some(format!("{policy}{}", at.timestamp() - 86400)),
        snapshot_time: Some(at - chrono::Duration::hours(4)),
        tree: Some(tree.into()),
        verdict: if pass { "pass" } else { "fail" }.into(),
        failure_kind: (!pass).then(|| "objectives".into()),
        reasons: if pass { vec![] } else { vec![format!("restore took {rto_s:.0} s, above the RTO of 3600 s")] },
        rto_objective_s: Some(objective.1),
        rto_measured_s: Some(rto_s),
        rpo_objective_s: Some(objective.0),
        rpo_achieved_s: Some(4.0 * 3600.0),
        files_checked: 12_000,
        bytes_checked: 3 << 30,
        mismatches: 0,
        report_dir: None,
        evidence_hash: Some("9f2c".into()),
    })
    .unwrap();
}

/// A month of history: `web` is healthy (one failure, retried), `postgres`
/// was down for a day and a half and changed since its last drill, `home`
/// has failed since Mar 27 and was never drilled, `legacy` is only in the
/// state (its policy file was removed).
fn fixture() -> Fixture {
    let f = Fixture { dir: tempfile::tempdir().unwrap() };
    std::fs::create_dir_all(f.policies()).unwrap();
    for (name, body) in [("web", WEB), ("postgres", POSTGRES), ("home", HOME)] {
        std::fs::write(f.policies().join(format!("{name}.toml")), body).unwrap();
    }
    let s = State::open(&f.state()).unwrap();
    let web = cairn::policy::load_file(&f.policies().join("web.toml")).unwrap();
    for slot in web.schedule.next_backups(utc("2026-02-27T00:00:00Z"), 32) {
        if slot.day() == 12 && slot.month() == 3 {
            backup(
                &s,
                "web",
                slot,
                3,
                2,
                Some("s3://backups/web packs/3f/3f9a…: 503 Slow Down, gave up after 8 attempts"),
            );
            backup(&s, "web", slot, 40, 14, None);
        } else {
            backup(&s, "web", slot, 3, 12 + i64::from(slot.day() % 5), None);
        }
    }
    for slot in (0..30 * 4 + 1).map(|i| utc("2026-02-28T18:00:00Z") + chrono::Duration::hours(6 * i)) {
        let down = slot >= day(18, 6, 0) && slot <= day(19, 18, 0);
        let err = "pg_dumpall: error: connection to server at \"db1\" (10.0.0.5), port 5432 failed: Connection refused";
        backup(&s, "postgres", slot, 0, 25, down.then_some(err));
    }
    for slot in (0..34).map(|i| utc("2026-02-25T01:00:00Z") + chrono::Duration::days(i)) {
        let err = (slot >= day(27, 0, 0)).then_some("/srv/cairn/home: No space left on device (os error 28)");
        backup(&s, "home", slot, 1, 40, err);
    }
    let legacy = utc("2026-02-20T03:00:00Z");
    for i in 0..18 {
        backup(&s, "legacy", legacy + chrono::Duration::days(i), 0, 5, None);
    }
    drill(&s, "legacy", utc("2026-02-25T06:00:00Z"), 600.0, (93600.0, 3600.0), "tree-legacy-25");
    for (d, h, rto) in [(2, 5, 1620.0), (9, 5, 1890.0), (16, 5, 1710.0), (23, 5, 2280.0), (30, 4, 1980.0)] {
        drill(&s, "web", day(d, h, 0), rto, (93600.0, 7200.0), "tree-web-30");
    }
    for (d, rto) in [(4, 2400.0), (11, 2750.0), (18, 4520.0), (25, 3050.0)] {
        drill(&s, "postgres", day(d, 5, 0), rto, (28800.0, 3600.0), "tree-postgres-25");
    }
    f
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn markdown_has_the_header_summary_controls_and_a_section_per_policy() {
    let f = fixture();
    let md = f.ok(&[]);
    for want in [
        "# cairn compliance report",
        "| Period | 2026-03-01 00:00 UTC to 2026-03-31 00:00 UTC |",
        &format!("| cairn version | {} |", env!("CARGO_PKG_VERSION")),
        "| Overall status | **🔴 red** (non-compliant) |",
        "## Summary",
        "4 policies: 1 green, 2 amber, 1 red.",
        "| web | 🟢 green | 30 / 30 (100%) | 1 |",
        "| legacy (removed) | 🟠 amber |",
        "## Controls",
        "| SOC 2 | **A1.3** Recovery plan procedures",
        "| ISO/IEC 27001:2022 | **A.8.13**",
        "| ISO/IEC 27001:2022 | **A.5.30**",
        "| NIST SP 800-53 Rev. 5 | **CP-4**",
        "**CP-9(1)**",
        "**CP-9(2)**",
        "Restore drills in the period: 9, covering 2 of 4 policies; passed: 8 (88.8%)",
        "never drilled: 1 policy.",
        "## Drill coverage",
        "- Never drilled: home\n",
        "- Needs verification (content changed since the last passing drill): legacy, postgres\n",
        "## Policy `postgres`",
        "### Backups",
        "### Recovery point age (RPO)",
        "### Restore drills",
        "### Restore time (RTO)",
        "## Policy `legacy` (not in the policy directory any more)",
        "Connection refused",
    ] {
        assert!(md.contains(want), "missing {want:?} in:\n{md}");
    }
}

#[test]
fn json_has_the_schema_and_the_figures() {
    let f = fixture();
    let j: serde_json::Value = serde_json::from_str(&f.ok(&["--format", "json"])).unwrap();
    assert_eq!(j["schema"], "cairn.compliance-report/1");
    assert_eq!(j["cairn_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(j["period"]["since"], "2026-03-01T00:00:00Z");
    assert_eq!(j["period"]["until"], "2026-03-31T00:00:00Z");
    assert_eq!(j["status"], "red");
    let p = |name: &str| j["policies"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap().clone();
    let web = p("web");
    // One slot a day in Berlin, Mar 29 (clocks spring forward) included.
    assert_eq!(web["backups"]["scheduled"], 30);
    assert_eq!(web["backups"]["slots_covered"], 30);
    assert_eq!((web["backups"]["succeeded"].as_u64(), web["backups"]["failed"].as_u64()), (Some(30), Some(1)));
    assert_eq!(web["status"], "green");
    assert_eq!(web["drills"]["count"], 5);
    assert_eq!(web["drills"]["pass_rate"], 1.0);
    assert_eq!(web["verification"]["needs_verification"], false);

    let pg = p("postgres");
    assert_eq!(pg["backups"]["scheduled"], 120);
    assert_eq!(pg["backups"]["failed"], 7);
    assert_eq!(pg["backups"]["slots_covered"], 113);
    let breaches = pg["rpo"]["breaches"].as_array().unwrap();
    assert_eq!(breaches.len(), 1, "{breaches:?}");
    // Data as of Mar 18 00:00 is 8 h old at 08:00, until Mar 20 00:25.
    assert_eq!(breaches[0]["start"], "2026-03-18T08:00:00Z");
    assert_eq!(breaches[0]["end"], "2026-03-20T00:25:00Z");
    assert_eq!(pg["drills"]["pass_rate"], 0.75);
    assert_eq!(pg["drills"]["rto_exceeded"], 1);
    assert_eq!(pg["verification"]["needs_verification"], true);
    assert_eq!(pg["status"], "amber");

    let home = p("home");
    assert_eq!(home["status"], "red");
    assert_eq!(home["verification"]["never_drilled"], true);
    assert_eq!(home["rpo"]["breaches"].as_array().unwrap().len(), 1);
    // The last backup started Mar 26 01:01: 26 h later, until the end.
    assert_eq!(home["rpo"]["breaches"][0]["start"], "2026-03-27T03:01:00Z");
    assert_eq!(home["rpo"]["breaches"][0]["ongoing"], true);
    let legacy = p("legacy");
    assert_eq!(legacy["in_policy_dir"], false);
    assert_eq!(legacy["objectives"]["rpo_s"], 93600.0);
    assert_eq!(j["controls"].as_array().unwrap().len(), 6);
    assert_eq!(j["summary"]["policies"], 4);
}

/// A small RFC 4180 reader: records of fields, quotes doubled inside quotes.
fn parse_csv(s: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field, mut quoted) = (Vec::new(), Vec::new(), String::new(), false);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "the last record must end with CRLF");
    rows
}

#[test]
fn csv_has_one_row_per_policy_with_the_documented_columns() {
    let f = fixture();
    let out = f.path("march.csv");
    let o = f.report(&["--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty(), "with --out, nothing goes to stdout");
    assert!(text(&o.stderr).contains("wrote the compliance report (4 policies, overall red)"), "{}", text(&o.stderr));
    let rows = parse_csv(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(rows[0], cairn::report::csv::COLUMNS.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/REPORTS.md")).unwrap();
    for c in cairn::report::csv::COLUMNS {
        assert!(docs.contains(&format!("| `{c}` |")), "docs/REPORTS.md does not document the CSV column {c}");
    }
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["home", "legacy", "postgres", "web"]);
    let col =
        |row: &[String], name: &str| row[cairn::report::csv::COLUMNS.iter().position(|c| *c == name).unwrap()].clone();
    let by = |name: &str| rows.iter().find(|r| r[0] == name).unwrap().clone();
    assert!(rows.iter().all(|r| r.len() == cairn::report::csv::COLUMNS.len()));
    assert_eq!(col(&by("web"), "status"), "green");
    assert_eq!(col(&by("web"), "backups_scheduled"), "30");
    assert_eq!(col(&by("postgres"), "drill_pass_rate"), "0.75");
    assert_eq!(col(&by("postgres"), "needs_verification"), "true");
    assert_eq!(col(&by("home"), "never_drilled"), "true");
    assert_eq!(col(&by("legacy"), "in_policy_dir"), "false");
    assert_eq!(col(&by("legacy"), "backups_scheduled"), "");
    assert!(col(&by("home"), "findings").contains("red: RPO in breach at the end of the period"));
}

#[test]
fn an_empty_state_directory_gives_a_report_that_says_so() {
    let f = Fixture { dir: tempfile::tempdir().unwrap() };
    std::fs::create_dir_all(f.policies()).unwrap();
    let md = f.ok(&["--format", "md"]);
    assert!(md.contains("There is no state database in"), "{md}");
    assert!(md.contains("No policy to report on"), "{md}");
    assert!(!f.state().join("state.db").exists(), "a report must not create the state database");
    let j: serde_json::Value = serde_json::from_str(&f.ok(&["--json"])).unwrap();
    assert_eq!(j["policies"], serde_json::json!([]));
}

#[test]
fn bug_one_policy_was_called_1_policies() {
    let f = Fixture { dir: tempfile::tempdir().unwrap() };
    std::fs::create_dir_all(f.policies()).unwrap();
    std::fs::write(f.policies().join("home.toml"), HOME).unwrap();
    let o = f.report(&["--out", "one.md"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("wrote the compliance report (1 policy, overall"), "{}", text(&o.stderr));
    let md = std::fs::read_to_string(f.path("one.md")).unwrap();
    assert!(md.contains("\n1 policy: ") && !md.contains("1 policies"), "{md}");
}

#[test]
fn bad_dates_and_formats_are_clear_errors() {
    let f = fixture();
    let run = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.arg("report").args(args).arg("--state").arg(f.state()).arg("--policies").arg(f.policies());
        c.stdin(Stdio::null()).output().unwrap()
    };
    let o = run(&["--since", "2026-13-01"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("error: --since `2026-13-01`: expected a date YYYY-MM-DD"), "{}", text(&o.stderr));
    let o = run(&["--since", "2026-03-10", "--until", "2026-03-01"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--since (2026-03-10T00:00:00Z) must be before --until"), "{}", text(&o.stderr));
    let o = run(&["--out", f.path("r.pdf").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("cannot tell the format"), "{}", text(&o.stderr));
    let o = run(&["--format", "pdf"]);
    assert_eq!(o.status.code(), Some(2), "an unknown --format is a usage error");
}

#[test]
fn the_html_report_renders_in_headless_chromium() {
    let f = fixture();
    let page = f.path("report.html");
    let o = f.report(&["--out", page.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script") && !html.contains(" src=") && !html.contains("<link"), "self-contained");

    let work = f.path("chromium");
    std::fs::create_dir_all(&work).unwrap();
    let (dom, err) = run_chromium(&page, &work, &["--dump-dom"]);
    assert!(dom.contains("</html>"), "chromium printed no DOM: {err}");
    for id in [
        "header",
        "summary",
        "controls",
        "drill-coverage",
        "policy-web",
        "policy-postgres",
        "policy-home",
        "policy-legacy",
    ] {
        assert!(dom.contains(&format!("id=\"{id}\"")), "no section #{id} in the rendered DOM");
    }
    for want in
        ["Compliance report", "A1.3", "A.8.13", "A.5.30", "CP-4", "CP-9(1)", "CP-9(2)", "not in the policy directory"]
    {
        assert!(dom.contains(want), "{want:?} is not in the rendered DOM");
    }
    // An RPO chart for each policy, an RTO chart for each one drilled in the period.
    assert_eq!(dom.matches("<figure class=\"chart rpo-chart\"><svg").count(), 4);
    assert_eq!(dom.matches("<figure class=\"chart rto-chart\"><svg").count(), 2);
    assert!(dom.contains("age of the newest recovery point (hours)"), "the RPO chart's axis is labelled");
    assert!(dom.contains("measured restore time (minutes)"), "the RTO chart's axis is labelled");
    assert!(dom.contains("RPO objective (1 d 2 h)</span>"), "the RPO line is in the legend");
    assert!(dom.contains("RTO objective (1 h)</span>"), "the RTO line is in the legend");
    assert!(dom.contains("drill failed</span>"), "postgres's failed drill is in the legend");
    assert!(dom.contains("<polyline") || dom.contains("<path"), "the charts have lines");

    let shot = f.path("report.png");
    run_chromium(&page, &work, &["--window-size=1280,2400", &format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 1280, "width");
    assert!(png.len() > 50_000, "a page with tables and charts is not a blank image ({} bytes)", png.len());
    if let Some(dest) = std::env::var_os("CAIRN_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, Path::new(env!("CARGO_MANIFEST_DIR")).join(dest)).unwrap();
    }
}
