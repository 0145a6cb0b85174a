//! Usage lines and small texts of the command line, through the binary.

mod common;

use common::Env;

fn stderr_of(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut c = env.command();
    c.args(args);
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bug_usage_lines_listed_the_options_the_environment_filled_in() {
    let env = Env::new();
    let pw = env.path("pw");
    std::fs::write(&pw, common::PASSWORD).unwrap();
    let vars = [("CAIRN_PASSWORD_FILE", pw.to_str().unwrap()), ("CAIRN_S3_ENDPOINT", "http://127.0.0.1:1")];
    // A missing required argument.
    let (code, err) = stderr_of(&env, &["drill"], &vars);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\nUsage: cairn drill --policy <NAME>\n"), "{err}");
    // A conflict.
    let (code, err) = stderr_of(&env, &["backup", "--policy", "web", "/etc"], &vars);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\nUsage: cairn backup --policy <NAME> [PATHS]...\n"), "{err}");
    let (code, err) = stderr_of(&env, &["restore"], &vars);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\nUsage: cairn restore --target <TARGET> <SNAPSHOT>\n"), "{err}");
    for e in ["--repo", "--password-file", "--s3-endpoint"] {
        assert!(!err.contains(e), "{e} came from the environment: {err}");
    }
    // What the user typed stays in the usage line.
    let (code, err) = stderr_of(&env, &["drill", "--repo", "/x"], &vars);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("\nUsage: cairn drill --policy <NAME> --repo <REPO>\n"), "{err}");
}

#[test]
fn snapshots_takes_several_hosts() {
    let env = Env::new();
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), b"x").unwrap();
    for host in ["a", "b", "c"] {
        env.backup_json(&[&data], &["--host", host]);
    }
    let list: serde_json::Value =
        serde_json::from_str(&env.ok(&["snapshots", "--json", "--host", "a", "--host", "c"])).unwrap();
    let hosts: Vec<&str> = list.as_array().unwrap().iter().map(|s| s["hostname"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["a", "c"]);
    let one: serde_json::Value = serde_json::from_str(&env.ok(&["snapshots", "--json", "--host", "b"])).unwrap();
    assert_eq!(one.as_array().unwrap().len(), 1);
}
