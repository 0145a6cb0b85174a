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

fn stdout_of(env: &Env, args: &[&str]) -> String {
    env.ok(args)
}

/// Completions of `words` (the last one being completed) by the bash
/// script `cairn completion bash` prints, run in a real bash.
fn bash_complete(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{}'; COMP_POINT=${{#COMP_LINE}}; \
         _cairn cairn '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = std::process::Command::new("bash").arg("--norc").arg("-c").arg(prog).output().unwrap();
    assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn bash_completion_completes_commands_and_flags_in_a_real_bash() {
    let env = Env::new();
    let script = env.path("cairn.bash");
    std::fs::write(&script, stdout_of(&env, &["completion", "bash"])).unwrap();
    let commands = bash_complete(&script, &["cairn", "res"]);
    assert_eq!(commands, ["restore"]);
    let flags = bash_complete(&script, &["cairn", "restore", "--ver"]);
    assert_eq!(flags, ["--verify"]);
}

#[test]
fn zsh_and_fish_completions_name_every_command() {
    let env = Env::new();
    let zsh = stdout_of(&env, &["completion", "zsh"]);
    assert!(zsh.starts_with("#compdef cairn"), "{}", &zsh[..zsh.len().min(200)]);
    let fish = stdout_of(&env, &["completion", "fish"]);
    for cmd in ["backup", "restore", "snapshots", "drill", "completion", "man"] {
        assert!(zsh.contains(&format!("'{cmd}:")), "zsh lacks {cmd}");
        assert!(fish.contains(&format!("-a \"{cmd}\"")), "fish lacks {cmd}");
    }
    let out = env.cairn(&["completion", "tcsh"]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}

/// Renders a roff page with `man -l`, as a reader would see it.
fn render_man(env: &Env, page: &str) -> String {
    let file = env.path("page.1");
    std::fs::write(&file, page).unwrap();
    let out = std::process::Command::new("man")
        .arg("-l")
        .arg(&file)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .expect("man(1) runs");
    assert!(out.status.success(), "man -l: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn man_pages_render_for_cairn_and_each_command() {
    let env = Env::new();
    let top = render_man(&env, &stdout_of(&env, &["man"]));
    assert!(top.contains("cairn - Deduplicated, encrypted backups"), "{top}");
    assert!(top.contains("CAIRN_REPO"), "the environment variables are named: {top}");
    for cmd in ["restore", "mount", "find", "snapshots", "completion", "man"] {
        assert!(top.contains(&format!("cairn-{cmd}(1)")), "{cmd} missing from the command list: {top}");
    }
    let restore = render_man(&env, &stdout_of(&env, &["man", "restore"]));
    assert!(restore.contains("cairn-restore - Restore a snapshot into a directory"), "{restore}");
    assert!(restore.contains("--target"), "{restore}");
    let out = env.cairn(&["man", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`nosuch` is not a cairn command"));
}
