//! Policy files through the real binary: `policy validate`, `policy show`
//! and `backup --policy` with hooks and command sources.

mod common;

use std::path::{Path, PathBuf};

use common::*;

const PW_VAR: &str = "CAIRN_TEST_PW";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

/// A directory holding one policy file `NAME.toml` with `body`.
fn policy_dir(env: &Env, name: &str, body: &str) -> PathBuf {
    let dir = env.path("policies");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.toml")), body).unwrap();
    dir
}

/// A policy backing up to the test repository, with the password in CAIRN_TEST_PW.
fn policy(env: &Env, name: &str, source: &str, hooks: &str) -> String {
    format!(
        "name = \"{name}\"\n[source]\n{source}\n[repository]\nurl = \"{}\"\npassword_env = \"{PW_VAR}\"\n{hooks}",
        env.repo.display()
    )
}

/// `cairn backup --policy NAME` with the password only where the policy says.
fn backup_policy(env: &Env, dir: &Path, name: &str) -> std::process::Output {
    env.command()
        .args(["backup", "--policy", name, "--policies", dir.to_str().unwrap()])
        // The policy names the repository and the password source.
        .env("CAIRN_REPO", "/nonexistent/elsewhere")
        .env_remove("CAIRN_PASSWORD")
        .env(PW_VAR, PASSWORD)
        .output()
        .unwrap()
}

fn snapshots(env: &Env) -> Vec<serde_json::Value> {
    serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_example_policies_validate() {
    let env = Env::new();
    let out = env.cairn(&["policy", "validate", examples().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "no diagnostics");
    assert!(text(&out.stderr).contains("4 valid policies"), "{}", text(&out.stderr));
    // The default directory comes from --policies or CAIRN_POLICIES.
    let out = env.command().args(["policy", "validate"]).env("CAIRN_POLICIES", examples()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for f in ["web.toml", "postgres.toml", "home.toml", "minimal.toml"] {
        env.ok(&["policy", "validate", examples().join(f).to_str().unwrap()]);
    }
}

#[test]
fn a_broken_policy_is_reported_at_each_problem() {
    let env = Env::new();
    let dir = policy_dir(
        &env,
        "web",
        "name = \"web\"\n\
         [source]\n\
         paths = [\"/var/www\", \"srv\"]\n\
         [repository]\n\
         url = \"s3://bucket/web\"\n\
         password = \"hunter2\"\n\
         [schedule]\n\
         backup = \"61 * * * *\"\n\
         jitter = \"10 min\"\n\
         [retention]\n\
         keep_dialy = 7\n",
    );
    std::fs::write(dir.join("ok.toml"), "name = \"ok\"\n[source]\npaths = [\"/etc\"]\n[repository]\nurl = \"/r\"\n")
        .unwrap();
    let out = env.cairn(&["policy", "validate", "--policies", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let f = dir.join("web.toml").display().to_string();
    let expected = [
        format!("{f}:3:23: source.paths[1]: expected an absolute path, found \"srv\""),
        format!(
            "{f}:6:1: repository.password: a password must not be written in a policy: \
             use password_env, password_file or password_command"
        ),
        format!("{f}:8:11: schedule.backup: bad cron expression \"61 * * * *\": minute 61 is out of range 0-59"),
        format!(
            "{f}:9:11: schedule.jitter: expected a duration like \"90m\", \"26h\" or \"7d\" (units s, m, h, d, w), \
             found \"10 min\": ` ` is not a unit"
        ),
        format!("{f}:11:1: retention.keep_dialy: unknown field; did you mean `keep_daily`?"),
    ];
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected);
    assert!(!stdout.contains("hunter2") && !text(&out.stderr).contains("hunter2"));

    // The same as JSON; the valid file still loads.
    let out = env.cairn(&["policy", "validate", "--json", "--policies", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["policies"][0]["name"], "ok");
    let d = &v["diagnostics"][2];
    assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(8), Some(11)));
    assert_eq!(d["field"], "schedule.backup");
    assert_eq!(v["diagnostics"].as_array().unwrap().len(), 5);

    // One file alone.
    let out = env.cairn(&["policy", "validate", &f]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout).lines().count(), 5);
}

/// Whoever can write a policy runs commands as root: as root, a policy
/// file or directory writable by group or others, or owned by another
/// user, is refused with the file named and its fix shown; the other
/// files still load.
#[test]
fn bug_as_root_a_policy_anyone_can_write_is_refused_with_its_fix() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let ok = "name = \"ok\"\n[source]\npaths = [\"/etc\"]\n[repository]\nurl = \"/r\"\n";
    let dir = policy_dir(&env, "ok", ok);
    let open = dir.join("open.toml");
    std::fs::write(&open, ok.replace("\"ok\"", "\"open\"")).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).unwrap();
    let validate = |target: &Path| env.cairn(&["policy", "validate", "--json", target.to_str().unwrap()]);
    let out = validate(&dir);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if !is_root() {
        // Not root: the files run as their own user, nothing to refuse.
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        return;
    }
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(v["policies"].as_array().unwrap().len(), 1, "the trusted file still loads: {v}");
    assert_eq!(v["diagnostics"][0]["file"], open.to_str().unwrap());
    let msg = v["diagnostics"][0]["message"].as_str().unwrap();
    assert!(msg.contains("writable by group and others (mode 0666)"), "{msg}");
    assert!(msg.contains(&format!("chmod go-w {}", open.display())), "the fix is shown: {msg}");
    // The file alone, in the text form.
    let out = env.cairn(&["policy", "validate", open.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).starts_with(&format!("{}:1:1: refusing to trust", open.display())),
        "{}",
        text(&out.stdout)
    );

    // A directory anyone can add a file to loads nothing.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&validate(&dir).stdout).unwrap();
    assert_eq!(v["policies"].as_array().unwrap().len(), 0, "{v}");
    assert!(v["diagnostics"][0]["message"].as_str().unwrap().contains(&format!("chmod go-w {}", dir.display())));

    // Fixed as the hint says, both validate.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = validate(&dir);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn show_prints_the_effective_policy_and_the_next_five_backups() {
    let env = Env::new();
    let body = policy(&env, "nightly", "paths = [\"/etc\"]", "")
        + "[schedule]\nbackup = \"30 2 * * *\"\ntimezone = \"Europe/Berlin\"\n";
    let dir = policy_dir(&env, "nightly", &body);
    let d = dir.to_str().unwrap();
    // Across the spring-forward night: 02:30 does not exist on 2025-03-30.
    let out = env.ok(&["policy", "show", "nightly", "--policies", d, "--now", "2025-03-28T12:00:00Z"]);
    assert!(out.contains("name = \"nightly\"\n"), "{out}");
    assert!(out.contains("one_file_system = false\n"), "defaults are filled in: {out}");
    assert!(out.contains("jitter = \"0s\"\n"), "{out}");
    let times: Vec<&str> = out.lines().filter(|l| l.starts_with("#   ")).collect();
    assert_eq!(
        times,
        [
            "#   2025-03-29 02:30:00 CET   2025-03-29T01:30:00Z",
            "#   2025-03-30 03:30:00 CEST  2025-03-30T01:30:00Z",
            "#   2025-03-31 02:30:00 CEST  2025-03-31T00:30:00Z",
            "#   2025-04-01 02:30:00 CEST  2025-04-01T00:30:00Z",
            "#   2025-04-02 02:30:00 CEST  2025-04-02T00:30:00Z",
        ],
        "{out}"
    );

    let v: serde_json::Value = serde_json::from_str(&env.ok(&[
        "policy",
        "show",
        "nightly",
        "--json",
        "--policies",
        d,
        "--now",
        "2025-10-24T12:00:00Z",
    ]))
    .unwrap();
    assert_eq!(v["policy"]["schedule"]["timezone"], "Europe/Berlin");
    let next = v["next_backups"].as_array().unwrap();
    assert_eq!(next.len(), 5);
    assert_eq!(next[0]["local"], "2025-10-25T02:30:00+02:00");
    assert_eq!(next[1]["local"], "2025-10-26T02:30:00+02:00", "the first of the two 02:30s");
    assert_eq!(next[2]["utc"], "2025-10-27T01:30:00Z");

    // Without --now: five times after now.
    let out = env.ok(&["policy", "show", "nightly", "--policies", d]);
    assert_eq!(out.lines().filter(|l| l.starts_with("#   ")).count(), 5);
    let missing = env.cairn(&["policy", "show", "nope", "--policies", d]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no valid policy named `nope`"));
}

#[test]
fn a_failing_before_hook_stops_the_backup_and_runs_on_failure() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), "data").unwrap();
    let log = env.path("failure.log");
    let hooks = format!(
        "[hooks.before]\ncommand = \"exit 3\"\n[hooks.after]\ncommand = \"touch {after}\"\n\
         [hooks.on_failure]\ncommand = \"echo \\\"$CAIRN_POLICY|$CAIRN_ERROR\\\" > {log}\"\ntimeout = \"10s\"\n",
        after = env.path("after.ran").display(),
        log = log.display()
    );
    let dir = policy_dir(&env, "web", &policy(&env, "web", &format!("paths = [\"{}\"]", src.display()), &hooks));
    let out = backup_policy(&env, &dir, "web");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("before hook: exited with status 3"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "web|before hook: exited with status 3\n");
    assert!(!env.path("after.ran").exists());
    assert!(snapshots(&env).is_empty());
}

#[test]
fn a_failing_command_source_leaves_no_snapshot() {
    let env = Env::new();
    // Enough output to be stored in chunks before the command fails.
    let big = env.path("big");
    std::fs::write(&big, random_bytes(3 << 20, 5)).unwrap();
    let cmd = format!("command = \"cat {}; exit 7\"\nstored_as = \"db.dump\"", big.display());
    let log = env.path("failure.log");
    let hooks = format!("[hooks.on_failure]\ncommand = \"echo \\\"$CAIRN_ERROR\\\" > {}\"\n", log.display());
    let dir = policy_dir(&env, "db", &policy(&env, "db", &cmd, &hooks));
    let out = backup_policy(&env, &dir, "db");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("source command: exited with status 7"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "source command: exited with status 7\n");
    assert!(snapshots(&env).is_empty(), "a failed dump must not become a snapshot");
    env.ok(&["check"]);

    // The same command succeeding gives a snapshot holding its output.
    let cmd = format!("command = \"cat {}\"\nstored_as = \"db.dump\"", big.display());
    std::fs::write(dir.join("db.toml"), policy(&env, "db", &cmd, "")).unwrap();
    let out = backup_policy(&env, &dir, "db");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let snaps = snapshots(&env);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/db.dump"]));
    let dumped = env.command().args(["dump", "latest", "/db.dump"]).output().unwrap();
    assert!(dumped.status.success());
    assert!(dumped.stdout == std::fs::read(&big).unwrap(), "the stored dump differs");
    env.ok(&["check", "--read-data"]);
}

#[test]
fn a_policy_backup_is_tagged_and_the_after_hook_sees_the_snapshot() {
    let env = Env::new();
    let src = env.path("site");
    std::fs::create_dir_all(src.join("cache")).unwrap();
    std::fs::write(src.join("index.html"), "<h1>hi</h1>").unwrap();
    std::fs::write(src.join("x.tmp"), "scratch").unwrap();
    std::fs::write(src.join("cache/.nobackup"), "").unwrap();
    std::fs::write(src.join("cache/big"), "cached").unwrap();
    let seen = env.path("after.seen");
    let hooks =
        format!("[hooks.after]\ncommand = \"echo \\\"$CAIRN_POLICY $CAIRN_SNAPSHOT\\\" > {}\"\n", seen.display());
    let source = format!(
        "paths = [\"{}\"]\nexclude = [\"*.tmp\"]\nexclude_if_present = [\".nobackup\"]\none_file_system = true",
        src.display()
    );
    let dir = policy_dir(&env, "site", &policy(&env, "site", &source, &hooks));
    let out = backup_policy(&env, &dir, "site");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 64, "the snapshot id on stdout: {id}");
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), format!("site {id}\n"));

    let snaps = snapshots(&env);
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["id"], id.as_str());
    assert_eq!(snaps[0]["tags"], serde_json::json!(["site"]));
    assert_eq!(snaps[0]["policy"], "site");

    // The excludes of the policy applied.
    let t = env.path("restored");
    env.ok(&["restore", &id, "--target", t.to_str().unwrap()]);
    let r = restored(&t, &src);
    assert_eq!(std::fs::read_to_string(r.join("index.html")).unwrap(), "<h1>hi</h1>");
    assert!(!r.join("x.tmp").exists());
    assert!(!r.join("cache/big").exists(), "a directory with .nobackup is stored empty");

    // Extra tags add to the policy's; paths cannot be given with --policy.
    let out = env
        .command()
        .args(["backup", "--policy", "site", "--tag", "manual", "--policies", dir.to_str().unwrap()])
        .env(PW_VAR, PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(snapshots(&env)[1]["tags"], serde_json::json!(["site", "manual"]));
    let out = env.cairn(&["backup", "--policy", "site", "/etc"]);
    assert_eq!(out.status.code(), Some(2), "--policy with paths is a usage error");
}

/// Every child of a policy backup prints its environment: hooks, the
/// command source and the password command see the allow-list, cairn's
/// job variables and what the policy names, never the other secrets.
#[test]
fn bug_hooks_sources_and_password_commands_get_no_secret_they_were_not_given() {
    let env = Env::new();
    let pw_file = env.path("pw");
    std::fs::write(&pw_file, PASSWORD).unwrap();
    let seen = |n: &str| env.path(&format!("{n}.env"));
    let body = format!(
        "name = \"db\"\nenv = [\"PGHOST\"]\n[source]\ncommand = \"env | tee {src}\"\nstored_as = \"env.txt\"\n\
         [repository]\nurl = \"{repo}\"\npassword_command = \"env > {pw}; cat {pw_file}\"\n\
         [hooks.before]\ncommand = \"env > {before}\"\n[hooks.after]\ncommand = \"env > {after}\"\n",
        src = seen("source").display(),
        repo = env.repo.display(),
        pw = seen("password").display(),
        pw_file = pw_file.display(),
        before = seen("before").display(),
        after = seen("after").display(),
    );
    let dir = policy_dir(&env, "db", &body);
    let out = env
        .command()
        .args(["backup", "--policy", "db", "--policies", dir.to_str().unwrap()])
        .env("CAIRN_PASSWORD", "global-secret")
        .env("WEB_POLICY_PW", "web-policy-secret")
        .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret-key")
        .env("PGHOST", "db1.example")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for child in ["source", "password", "before", "after"] {
        let printed = std::fs::read_to_string(seen(child)).unwrap();
        assert!(printed.contains("PGHOST=db1.example\n"), "{child}: the named variable passes: {printed}");
        assert!(printed.contains("PATH="), "{child}: PATH passes: {printed}");
        for secret in ["global-secret", "web-policy-secret", "AKIAEXAMPLEKEYID", "aws-secret-key", "CAIRN_REPO"] {
            assert!(!printed.contains(secret), "{child} got {secret}: {printed}");
        }
    }
    assert!(std::fs::read_to_string(seen("after")).unwrap().contains("CAIRN_SNAPSHOT="));
    assert!(std::fs::read_to_string(seen("before")).unwrap().contains("CAIRN_POLICY=db\n"));
}

#[test]
fn an_after_hook_that_times_out_fails_the_job_but_keeps_the_snapshot() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a"), "data").unwrap();
    let log = env.path("failure.log");
    let hooks = format!(
        "[hooks.after]\ncommand = \"sleep 30\"\ntimeout = \"1s\"\n\
         [hooks.on_failure]\ncommand = \"echo \\\"$CAIRN_SNAPSHOT|$CAIRN_ERROR\\\" > {}\"\n",
        log.display()
    );
    let dir = policy_dir(&env, "web", &policy(&env, "web", &format!("paths = [\"{}\"]", src.display()), &hooks));
    // The on-failure hook's log below says the hook was killed at its timeout.
    let out = backup_policy(&env, &dir, "web");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(snapshots(&env)[0]["id"], id.as_str(), "the snapshot is kept");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("{id}|after hook: timed out after 1s; its process group was killed\n")
    );
}
