use super::*;

const MINIMAL: &str = "name = \"m\"\n[source]\npaths = [\"/etc\"]\n[repository]\nurl = \"/srv/r\"\n";

/// The rendered diagnostics of a policy text named `p.toml`.
fn diags(src: &str) -> Vec<String> {
    match load_str(src, Path::new("p.toml")) {
        Ok(p) => panic!("expected problems, got {p:?}"),
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    }
}

fn load(src: &str) -> Policy {
    load_str(src, Path::new("p.toml")).unwrap_or_else(|d| panic!("{d:#?}"))
}

#[test]
fn a_minimal_policy_gets_the_defaults() {
    let p = load(MINIMAL);
    assert_eq!(p.name, "m");
    assert_eq!(p.description, "");
    assert!(p.env.is_empty());
    assert_eq!(
        p.source,
        Source::Paths {
            paths: vec!["/etc".into()],
            exclude: vec![],
            exclude_if_present: vec![],
            one_file_system: false
        }
    );
    assert_eq!(p.repository, RepositorySpec { url: "/srv/r".into(), password: None, s3: None });
    assert_eq!(p.schedule, Schedule::default());
    assert_eq!(p.schedule.timezone.to_string(), "UTC");
    assert_eq!(p.retention, Retention::default());
    assert_eq!(p.objectives, Objectives::default());
    assert_eq!(p.drill, None);
    assert_eq!(p.hooks, Hooks::default());
    assert_eq!(p.notify, Notify::default());
    assert_eq!(p.file, Path::new("p.toml"));
}

#[test]
fn a_full_policy_loads_every_field() {
    let p = load(
        r#"
name = "db"
description = "the database"
env = ["PGHOST", "PGPASSFILE"]
[source]
command = "pg_dump app"
stored_as = "app.dump"
[repository]
url = "s3://bucket/db"
password_command = "pass show cairn"
[repository.s3]
endpoint = "http://127.0.0.1:3900"
path_style = true
storage_class = "STANDARD_IA"
concurrency = 3
profile = "cairn-backup"
maintenance_profile = "cairn-maintenance"
[schedule]
backup = "0 */4 * * *"
timezone = "Europe/Berlin"
jitter = "5m"
[retention]
keep_last = 1
keep_hourly = 2
keep_daily = 3
keep_weekly = 4
keep_monthly = 5
keep_yearly = 6
keep_within = "7d"
keep_tags = ["keep"]
prune = "0 5 * * 0"
prune_safety_margin = "36h"
[objectives]
rpo = "5h"
rto = "30m"
[drill]
schedule = "0 6 * * 1"
recovery_point = "random"
random_window = "2w"
verify = "sample"
sample_percent = 2.5
validate = { command = "true", timeout = "1m" }
[hooks]
before = { command = "b" }
after = { command = "a", timeout = "10s" }
on_failure = { command = "f", timeout = "1h" }
[notify]
webhooks = ["https://example.com/hook"]
"#,
    );
    assert_eq!(p.source, Source::Command { command: "pg_dump app".into(), stored_as: "app.dump".into() });
    assert_eq!(p.repository.password, Some(PasswordSource::Command("pass show cairn".into())));
    assert_eq!(
        p.repository.s3,
        Some(S3Settings {
            endpoint: Some("http://127.0.0.1:3900".into()),
            path_style: Some(true),
            storage_class: Some("STANDARD_IA".into()),
            concurrency: Some(3),
            profile: Some("cairn-backup".into()),
            maintenance_profile: Some("cairn-maintenance".into()),
        })
    );
    assert_eq!(p.schedule.backup.as_ref().unwrap().source(), "0 */4 * * *");
    assert_eq!(p.schedule.timezone.to_string(), "Europe/Berlin");
    assert_eq!(p.schedule.jitter, Duration::from_secs(300));
    let r = &p.retention;
    assert_eq!(
        (r.keep_last, r.keep_hourly, r.keep_daily, r.keep_weekly, r.keep_monthly, r.keep_yearly),
        (Some(1), Some(2), Some(3), Some(4), Some(5), Some(6))
    );
    assert_eq!(r.keep_within, Some(Duration::from_secs(7 * 86400)));
    assert_eq!(r.keep_tags, ["keep"]);
    assert_eq!(r.prune.as_ref().unwrap().source(), "0 5 * * 0");
    assert_eq!(r.prune_safety_margin, Some(Duration::from_secs(36 * 3600)));
    assert_eq!(r.prune_safety_margin(), std::time::Duration::from_secs(36 * 3600));
    assert_eq!(p.objectives.rpo, Some(Duration::from_secs(5 * 3600)));
    assert_eq!(p.objectives.rto, Some(Duration::from_secs(1800)));
    let d = p.drill.as_ref().unwrap();
    assert_eq!((d.recovery_point, d.verify, d.sample_percent), (RecoveryPoint::Random, VerifyMode::Sample, 2.5));
    assert_eq!(d.random_window, Duration::from_secs(14 * 86400));
    assert_eq!(d.validate, Some(HookCommand { command: "true".into(), timeout: Duration::from_secs(60) }));
    assert_eq!(p.hooks.before, Some(HookCommand { command: "b".into(), timeout: default_hook_timeout() }));
    assert_eq!(p.hooks.after.as_ref().unwrap().timeout, Duration::from_secs(10));
    assert_eq!(p.hooks.on_failure.as_ref().unwrap().timeout, Duration::from_secs(3600));
    assert_eq!(p.notify.webhooks, ["https://example.com/hook"]);
    assert_eq!(p.env, ["PGHOST", "PGPASSFILE"]);

    // The effective policy, printed as TOML, loads back to itself; and JSON round-trips too.
    let text = toml::to_string_pretty(&p).unwrap();
    assert_eq!(load(&text), p, "{text}");
    let json = serde_json::to_string(&p).unwrap();
    let back: Policy = serde_json::from_str(&json).unwrap();
    assert_eq!(Policy { file: p.file.clone(), ..back }, p);
}

#[test]
fn positions_are_exact() {
    let src = "name = \"web\"\n\
               [source]\n\
               paths = [\"/var/www\", \"etc\"]\n\
               [repository]\n\
               url = \"/srv/r\"\n\
               [schedule]\n\
               backup = \"0 61 * * *\"\n\
               timezone = \"Europe/Berlinn\"\n\
               \x20\x20jitter = \"15 min\"\n\
               [objectives]\n\
               rpo = 26\n";
    assert_eq!(
        diags(src),
        [
            "p.toml:3:23: source.paths[1]: expected an absolute path, found \"etc\"",
            "p.toml:7:13: schedule.backup: bad cron expression \"0 61 * * *\": hour 61 is out of range 0-23",
            "p.toml:8:13: schedule.timezone: expected an IANA time zone like \"Europe/Berlin\" or \"UTC\", found \"Europe/Berlinn\"",
            "p.toml:9:13: schedule.jitter: expected a duration like \"90m\", \"26h\" or \"7d\" (units s, m, h, d, w), found \"15 min\": ` ` is not a unit",
            "p.toml:11:7: objectives.rpo: expected a string, found an integer",
        ]
    );
}

#[test]
fn a_cron_error_points_at_the_wrong_field_unless_the_string_has_escapes() {
    let base = MINIMAL.to_string() + "[schedule]\n";
    assert_eq!(
        diags(&(base.clone() + "backup = \"1 2 3 4 9\"\n")),
        ["p.toml:7:19: schedule.backup: bad cron expression \"1 2 3 4 9\": day-of-week 9 is out of range 0-7"]
    );
    assert_eq!(
        diags(&(base.clone() + "backup = '1 2 3 4 9 0 1960'\n")),
        ["p.toml:7:23: schedule.backup: bad cron expression \"1 2 3 4 9 0 1960\": year 1960 is out of range 1970-2100"]
    );
    // With an escape the text does not map onto the file: point at the string.
    assert_eq!(
        diags(&(base + "backup = \"1 2 3 4 \\u0039\"\n")),
        ["p.toml:7:10: schedule.backup: bad cron expression \"1 2 3 4 9\": day-of-week 9 is out of range 0-7"]
    );
}

#[test]
fn unknown_fields_get_suggestions() {
    let src = MINIMAL.to_string()
        + "[retention]\nkeep_dialy = 7\nkeep_daly = 7\nkeep_forever = true\n[schedule]\nkeep_daily = 3\n[scheduel]\n";
    assert_eq!(
        diags(&src),
        [
            "p.toml:7:1: retention.keep_dialy: unknown field; did you mean `keep_daily`?",
            "p.toml:8:1: retention.keep_daly: unknown field; did you mean `keep_daily`?",
            "p.toml:9:1: retention.keep_forever: unknown field; expected one of: keep_last, keep_hourly, keep_daily, \
             keep_weekly, keep_monthly, keep_yearly, keep_within, keep_tags, prune, prune_safety_margin",
            "p.toml:11:1: schedule.keep_daily: unknown field here; `keep_daily` belongs in [retention]",
            "p.toml:12:2: scheduel: unknown field; did you mean `schedule`?",
        ]
    );
}

#[test]
fn an_inline_password_is_refused_anywhere_without_repeating_it() {
    let msg = "a password must not be written in a policy: use password_env, password_file or password_command";
    let src = "password = \"hunter2\"\nname = \"m\"\n[source]\npaths = [\"/etc\"]\n[repository]\nurl = \"s3://b\"\n\
               password = \"hunter2\"\n[repository.s3]\nsecret_access_key = \"hunter2\"\n[hooks.before]\ncommand = \"x\"\nPassword = 'hunter2'\n";
    let d = diags(src);
    assert_eq!(
        d,
        [
            format!("p.toml:1:1: password: {msg}"),
            format!("p.toml:7:1: repository.password: {msg}"),
            "p.toml:9:1: repository.s3.secret_access_key: S3 credentials must not be written in a policy: they come \
             from the standard AWS chain (AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, instance roles)"
                .to_string(),
            format!("p.toml:12:1: hooks.before.Password: {msg}"),
        ]
    );
    assert!(d.iter().all(|l| !l.contains("hunter2")));
}

#[test]
fn exactly_one_source_kind() {
    let repo = "[repository]\nurl = \"/r\"\n";
    let d = |source: &str| diags(&format!("name = \"m\"\n{repo}[source]\n{source}"));
    assert_eq!(
        d("paths = [\"/a\"]\ncommand = \"x\"\nstored_as = \"x\"\n"),
        ["p.toml:6:1: source.command: give either `paths` or `command`, not both"]
    );
    assert_eq!(
        d(""),
        ["p.toml:4:1: source.paths: missing: expected paths = [\"/absolute/path\", ...] or command = \"...\""]
    );
    assert_eq!(
        d("command = \"pg_dump\"\none_file_system = true\n"),
        [
            "p.toml:4:1: source.stored_as: missing: expected the file name to store the command's output under, e.g. stored_as = \"app.dump\" in [source]",
            "p.toml:6:1: source.one_file_system: applies to `paths` sources only",
        ]
    );
    assert_eq!(
        d("command = \"\"\nstored_as = \"a/b\"\n"),
        [
            "p.toml:5:12: source.command: expected a non-empty string",
            "p.toml:6:14: source.stored_as: expected a file name without `/`, found \"a/b\"",
        ]
    );
    assert_eq!(
        d("paths = []\nstored_as = \"x\"\nexclude = [\"a/[\"]\nexclude_if_present = [\"a/b\"]\n"),
        [
            "p.toml:5:9: source.paths: expected at least one path",
            "p.toml:6:1: source.stored_as: applies to `command` sources only",
            "p.toml:7:13: source.exclude[0]: bad glob pattern \"a/[\": unclosed character class; missing ']'",
            "p.toml:8:24: source.exclude_if_present[0]: expected a file name without `/`, found \"a/b\"",
        ]
    );
    assert_eq!(
        diags("name = \"m\"\n[repository]\nurl = \"/r\"\n"),
        ["p.toml:1:1: source: missing: expected a [source] table with paths = [...] or command = \"...\""]
    );
    assert_eq!(
        diags("name = \"m\"\nsource = 3\n[repository]\nurl = \"/r\"\n"),
        ["p.toml:2:10: source: expected a table ([source]), found an integer"]
    );
}

#[test]
fn names_and_repositories() {
    let d = |name: &str, repo: &str| diags(&format!("name = {name}\n[source]\npaths = [\"/a\"]\n[repository]\n{repo}"));
    let bad_name = "expected lowercase letters, digits, `-` and `_`, starting with a letter or digit (at most 64)";
    assert_eq!(d("\"Web\"", "url = \"/r\"\n"), [format!("p.toml:1:9: name: {bad_name}, found \"Web\"")]);
    assert_eq!(d("\"-web\"", "url = \"/r\"\n"), [format!("p.toml:1:9: name: {bad_name}, found \"-web\"")]);
    assert!(load_str(&MINIMAL.replace("\"m\"", "\"0db_2-x\""), Path::new("p")).is_ok());
    assert_eq!(
        d("\"w\"", "url = \"srv/r\"\npassword_env = \"A\"\npassword_file = \"pw\"\ns3 = { endpoint = \"x\" }\n"),
        [
            "p.toml:5:8: repository.url: expected an absolute path, file:///path or s3://bucket/prefix, found \"srv/r\"",
            "p.toml:7:1: repository.password_file: give only one of password_env, password_file, password_command (`password_env` is given too)",
            "p.toml:8:1: repository.s3: S3 settings apply to s3:// repositories only",
            "p.toml:8:20: repository.s3.endpoint: expected an http:// or https:// URL, found \"x\"",
        ]
    );
    assert_eq!(
        d("\"w\"", "url = \"s3://b\"\npassword_env = \"1X\"\n[repository.s3]\nconcurrency = 0\nregion = \"garage\"\n"),
        [
            "p.toml:6:17: repository.password_env: expected the name of an environment variable, found \"1X\"",
            "p.toml:8:15: repository.s3.concurrency: expected an integer from 1 to 1024, found 0",
            "p.toml:9:1: repository.s3.region: unknown field; expected one of: endpoint, path_style, storage_class, concurrency, profile, maintenance_profile",
        ]
    );
    assert_eq!(d("\"w\"", ""), ["p.toml:4:1: repository.url: missing: expected the repository, e.g. url = \"s3://bucket/prefix\" or \"/srv/backup\" in [repository]"]);
}

#[test]
fn env_names_environment_variables() {
    let src = MINIMAL.replace("[source]", "env = [\"PGHOST\", \"1X\", \"A-B\"]\n[source]");
    assert_eq!(
        diags(&src),
        [
            "p.toml:2:19: env[1]: expected the name of an environment variable, found \"1X\"",
            "p.toml:2:25: env[2]: expected the name of an environment variable, found \"A-B\"",
        ]
    );
}

#[test]
fn drills_hooks_and_notify() {
    let src = MINIMAL.to_string()
        + "[drill]\nrecovery_point = \"oldest\"\nverify = \"some\"\nsample_percent = 101\n\
           [hooks.after]\ntimeout = \"0s\"\n[notify]\nwebhooks = [\"ftp://x\", 3]\n";
    assert_eq!(
        diags(&src),
        [
            "p.toml:6:1: drill.schedule: missing: expected when drills run, e.g. schedule = \"0 6 * * 1\" in [drill]",
            "p.toml:7:19: drill.recovery_point: expected \"latest\" or \"random\", found \"oldest\"",
            "p.toml:8:11: drill.verify: expected \"full\" or \"sample\", found \"some\"",
            "p.toml:9:18: drill.sample_percent: expected a number above 0 and at most 100",
            "p.toml:10:1: hooks.after.command: missing: expected the command to run, e.g. command = \"...\" in [hooks.after]",
            "p.toml:11:12: hooks.after.timeout: expected a duration above zero",
            "p.toml:13:14: notify.webhooks[0]: expected an http:// or https:// URL (the value is not repeated: it may hold a token)",
            "p.toml:13:24: notify.webhooks[1]: expected a string, found an integer",
        ]
    );
}

#[test]
fn syntax_errors_are_located() {
    let d = diags("name = \"m\"\nkeep = \n[source\n");
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d[0].starts_with("p.toml:2:8: not valid TOML: "), "{d:?}");
    assert!(d[1].starts_with("p.toml:3:"), "{d:?}");
}

/// Found by `tests/fuzz` (target `policy`): a file of 65,000 broken lines
/// gave 65,000 diagnostics. The first lines are named, the rest counted.
#[test]
fn bug_thousands_of_broken_lines_give_a_bounded_number_of_diagnostics() {
    let src = format!("name = \"m\"\n{}", "py.\n".repeat(1000));
    let d = diags(&src);
    assert_eq!(d.len(), super::schema::MAX_SYNTAX_LINES + 1, "{d:?}");
    assert!(d[0].starts_with("p.toml:2:"), "{d:?}");
    assert!(
        d.last()
            .unwrap()
            .ends_with(&format!("and {} more lines that are not valid TOML", 1000 - super::schema::MAX_SYNTAX_LINES)),
        "{d:?}"
    );
}

#[test]
fn a_policy_larger_than_the_limit_is_refused_by_its_size() {
    let src = format!("name = \"m\"\n{}", "# a comment\n".repeat(super::schema::MAX_POLICY_BYTES / 12 + 1));
    let d = diags(&src);
    assert_eq!(
        d,
        [format!(
            "p.toml:1:1: the file is {} bytes; a policy is at most {}",
            src.len(),
            super::schema::MAX_POLICY_BYTES
        )]
    );
}

#[test]
fn a_directory_loads_the_valid_policies_and_reports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let w = |f: &str, s: &str| std::fs::write(dir.path().join(f), s).unwrap();
    w("a.toml", MINIMAL);
    w("b.toml", &MINIMAL.replace("\"m\"", "\"other\""));
    w("c.toml", &(MINIMAL.to_string() + "\n"));
    w("d.toml", "name = \"broken\"\n");
    w("notes.txt", "not a policy");
    w(".hidden.toml", "junk");
    let (policies, diags) = load_dir(dir.path());
    let names: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["m", "other"]);
    let lines: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    let f = |n: &str| dir.path().join(n).display().to_string();
    assert_eq!(
        lines,
        [
            format!("{}:1:8: name: \"m\" is already the name of {}", f("c.toml"), f("a.toml")),
            format!(
                "{}:1:1: source: missing: expected a [source] table with paths = [...] or command = \"...\"",
                f("d.toml")
            ),
            format!("{}:1:1: repository: missing: expected a [repository] table with url = \"...\"", f("d.toml")),
        ]
    );
    assert_eq!(find(dir.path(), "other").unwrap().file, dir.path().join("b.toml"));
    let e = find(dir.path(), "nope").unwrap_err().to_string();
    assert!(e.starts_with("no valid policy named `nope` in "), "{e}");
    assert!(e.contains("3 problem(s)"), "{e}");
    let (p, d) = load_dir(&dir.path().join("missing"));
    assert!(p.is_empty());
    assert!(d[0].message.starts_with("cannot read the policy directory"), "{:?}", d);
}

#[test]
fn the_example_policies_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let (policies, diags) = load_dir(&dir);
    assert!(diags.is_empty(), "{diags:#?}");
    assert!(policies.len() >= 4, "{} example policies", policies.len());
    let mut kinds = (false, false);
    for p in &policies {
        match p.source {
            Source::Paths { .. } => kinds.0 = true,
            Source::Command { .. } => kinds.1 = true,
        }
        // Each prints as TOML that loads back to the same policy.
        let text = toml::to_string_pretty(p).unwrap();
        assert_eq!(&load_str(&text, &p.file).unwrap(), p, "{text}");
    }
    assert_eq!(kinds, (true, true), "examples of both source kinds");
}

#[test]
fn a_policy_retention_becomes_the_keep_rules_retention_applies() {
    let r = Retention {
        keep_daily: Some(7),
        keep_within: Some("2w".parse().unwrap()),
        keep_tags: vec!["db".into()],
        prune: Some("@daily".parse().unwrap()),
        ..Default::default()
    };
    assert_eq!(
        r.keep_rules(),
        KeepRules {
            keep_daily: Some(7),
            keep_within: Some(chrono::Duration::days(14)),
            keep_tags: vec!["db".into()],
            ..Default::default()
        }
    );
    assert!(Retention::default().keep_rules().is_empty());
}

#[test]
fn a_copy_table_names_the_second_repository_its_own_password_schedule_and_rpo() {
    let p = load(&format!(
        "{MINIMAL}[copy]\nto = \"s3://offsite/web\"\npassword_file = \"/etc/cairn/offsite.pw\"\nschedule = \"30 3 * * *\"\n\
         rpo = \"2d\"\n[copy.s3]\nendpoint = \"http://127.0.0.1:3900\"\n"
    ));
    let c = p.copy.expect("[copy] loaded");
    assert_eq!(c.to.url, "s3://offsite/web");
    assert_eq!(c.to.password, Some(PasswordSource::File("/etc/cairn/offsite.pw".into())));
    assert_eq!(c.to.s3.unwrap().endpoint.as_deref(), Some("http://127.0.0.1:3900"));
    assert!(c.schedule.is_some());
    assert_eq!(c.rpo, Some(Duration::from_secs(2 * 86400)));
    assert_eq!(cron_of(&load(MINIMAL), crate::state::JobKind::Copy), None, "no [copy], no copy schedule");

    // The usual sources hold the first repository's password: the copy names its own.
    let d = diags(&format!("{MINIMAL}[copy]\nto = \"/srv/offsite\"\n"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].contains("copy.password_file") && d[0].contains("the copy's own password"), "{d:?}");
    let d = diags(&format!("{MINIMAL}[copy]\nto = \"relative\"\npassword_env = \"PW\"\n"));
    assert!(d.len() == 1 && d[0].contains("copy.to") && d[0].contains("expected an absolute path"), "{d:?}");
}

#[test]
fn a_prune_safety_margin_is_a_duration_above_zero_and_defaults_to_23_hours() {
    let p = load_str(MINIMAL, Path::new("p.toml")).unwrap();
    assert_eq!(p.retention.prune_safety_margin, None);
    assert_eq!(p.retention.prune_safety_margin(), crate::prune::marking::DEFAULT_SAFETY_MARGIN);
    let p =
        load_str(&(MINIMAL.to_string() + "[retention]\nprune_safety_margin = \"2h\"\n"), Path::new("p.toml")).unwrap();
    assert_eq!(p.retention.prune_safety_margin(), std::time::Duration::from_secs(7200));
    let zero = diags(&(MINIMAL.to_string() + "[retention]\nprune_safety_margin = \"0s\"\n"));
    assert_eq!(zero.len(), 1, "{zero:?}");
    assert!(
        zero[0].starts_with("p.toml:7:24: retention.prune_safety_margin: expected a duration above zero")
            && zero[0].contains("take no lock")
            && zero[0].contains("--safety-margin 0s"),
        "{zero:?}"
    );
    assert_eq!(
        diags(&(MINIMAL.to_string() + "[retention]\nprune_safety_margin = \"a day\"\n")),
        [format!("p.toml:7:24: retention.prune_safety_margin: {}, found \"a day\"", crate::duration::EXPECTED)]
    );
    assert_eq!(
        diags(&(MINIMAL.to_string() + "[schedule]\nprune_safety_margin = \"2h\"\n")),
        ["p.toml:7:1: schedule.prune_safety_margin: unknown field here; `prune_safety_margin` belongs in [retention]"]
    );
}
