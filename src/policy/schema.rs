//! The policy schema as a walk: which tables and fields a policy has, what
//! each value must be, and the defaults. Built on the getters of
//! [`super::parse::Cx`], which record every problem and go on. A policy is
//! kept only when no problem was recorded, so these functions return their
//! best effort (a bad value becomes its default) and `None` only where a
//! required part is missing or unusable. [`parse`] starts the walk; the
//! walker knows the schema only through [`section_of`], which it is given,
//! so the two files do not import each other.

use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::diag::Sink;
use super::parse::{Cx, Tbl};
use super::*;

/// The largest policy file read: hand-written policies are a few KiB.
pub(crate) const MAX_POLICY_BYTES: usize = 128 << 10;

/// Lines with a TOML syntax error reported one by one; the rest are counted.
pub(crate) const MAX_SYNTAX_LINES: usize = 20;

/// Parses and checks a policy; returns it only when nothing was wrong.
pub(crate) fn parse(src: &str, file: &Path) -> Result<Policy, Vec<Diagnostic>> {
    if src.len() > MAX_POLICY_BYTES {
        // The TOML parser holds about 500 bytes per broken line: the size
        // of the file bounds the memory its errors take.
        let message = format!("the file is {} bytes; a policy is at most {MAX_POLICY_BYTES}", src.len());
        return Err(vec![super::diag::file_error(file, message)]);
    }
    let mut sink = Sink::new(file, src);
    let (root, mut errors) = DeTable::parse_recoverable(src);
    if !errors.is_empty() {
        // One error cascades into several on the same line; keep the first.
        errors.sort_by_key(|e| e.span().map(|s| s.start).unwrap_or(0));
        // Past a few lines the rest is noise: a file of 65,000 broken
        // lines gave 65,000 diagnostics. Keep the first lines, count the rest.
        let mut last_line = 0;
        let mut more = 0usize;
        let lines = super::diag::Locator::new(src);
        for e in errors {
            let at = e.span().map(|s| s.start).unwrap_or(0);
            let line = lines.line(at);
            if line != last_line {
                if sink.diags.len() < MAX_SYNTAX_LINES {
                    sink.error(at, "", format!("not valid TOML: {}", e.message()));
                } else {
                    more += 1;
                }
                last_line = line;
            }
        }
        if more > 0 {
            sink.error(src.len(), "", format!("and {more} more lines that are not valid TOML"));
        }
        return Err(sink.finish());
    }
    let mut cx = Cx { sink, section_of };
    cx.secrets(root.get_ref(), "");
    let policy = policy(&mut cx, &Tbl { path: String::new(), t: root.get_ref(), at: 0 });
    let diags = cx.sink.finish();
    match policy {
        Some(mut p) if diags.is_empty() => {
            p.file = file.to_path_buf();
            Ok(p)
        }
        _ => Err(diags),
    }
}

const ROOT: &[&str] = &[
    "name",
    "description",
    "env",
    "source",
    "repository",
    "schedule",
    "retention",
    "objectives",
    "drill",
    "copy",
    "hooks",
    "notify",
];
const SOURCE: &[&str] = &["paths", "exclude", "exclude_if_present", "one_file_system", "command", "stored_as"];
const REPOSITORY: &[&str] = &["url", "password_env", "password_file", "password_command", "s3"];
const COPY: &[&str] = &["to", "password_env", "password_file", "password_command", "s3", "schedule", "rpo"];
const S3: &[&str] = &["endpoint", "path_style", "storage_class", "concurrency", "profile", "maintenance_profile"];
const SCHEDULE: &[&str] = &["backup", "timezone", "jitter", "catch_up", "retries", "retry_delay"];
/// The keep rules of `[retention]`; `cairn forget` has a flag for each.
pub const KEEP_RULES: [&str; 8] = [
    "keep_last",
    "keep_hourly",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_within",
    "keep_tags",
];
const RETENTION: &[&str] = &{
    let mut all = [""; KEEP_RULES.len() + 2];
    let mut i = 0;
    while i < KEEP_RULES.len() {
        all[i] = KEEP_RULES[i];
        i += 1;
    }
    all[KEEP_RULES.len()] = "prune";
    all[KEEP_RULES.len() + 1] = "prune_safety_margin";
    all
};
const OBJECTIVES: &[&str] = &["rpo", "rto"];
const DRILL: &[&str] =
    &["schedule", "recovery_point", "random_window", "verify", "sample_percent", "validate", "scratch"];
const HOOKS: &[&str] = &["before", "after", "on_failure"];
const COMMAND: &[&str] = &["command", "timeout"];
const NOTIFY: &[&str] = &["webhooks", "on_success", "ping"];
const PATHS_ONLY: &[&str] = &["exclude", "exclude_if_present", "one_file_system"];
const PASSWORDS: &[&str] = &["password_env", "password_file", "password_command"];

/// The table a field name belongs to, for "belongs in [retention]".
pub(crate) fn section_of(key: &str) -> Option<&'static str> {
    let sections: [(&str, &[&str]); 9] = [
        ("source", SOURCE),
        ("repository", REPOSITORY),
        ("repository.s3", S3),
        ("schedule", SCHEDULE),
        ("retention", RETENTION),
        ("objectives", OBJECTIVES),
        ("drill", DRILL),
        ("copy", COPY),
        ("notify", NOTIFY),
    ];
    sections.iter().find(|(_, keys)| keys.contains(&key)).map(|(s, _)| *s)
}

fn valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

/// `[A-Za-z_][A-Za-z0-9_]*`: the name of an environment variable.
fn env_name(v: &str) -> bool {
    !v.is_empty()
        && !v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn plain_file_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('/') && !s.contains('\0') && s != "." && s != ".."
}

pub(crate) fn policy(cx: &mut Cx<'_>, root: &Tbl<'_, '_>) -> Option<Policy> {
    cx.known_keys(root, ROOT);
    let mut name = None;
    if cx.require(root, "name", "the policy's name, e.g. name = \"web\"") {
        if let Some((n, at)) = cx.string(root, "name") {
            if !valid_name(&n) {
                cx.error(
                    at,
                    "name",
                    format!(
                        "expected lowercase letters, digits, `-` and `_`, starting with a letter or digit \
                         (at most 64), found \"{n}\""
                    ),
                );
            }
            name = Some(n);
        }
    }
    let description = cx.string(root, "description").map(|s| s.0).unwrap_or_default();
    let env = check_each(cx, root, "env", |v| {
        (!env_name(v)).then(|| format!("expected the name of an environment variable, found \"{v}\""))
    });
    let mut source_ = None;
    if cx.require(root, "source", "a [source] table with paths = [...] or command = \"...\"") {
        source_ = cx.table(root, "source").and_then(|t| source(cx, &t));
    }
    let mut repository_ = None;
    if cx.require(root, "repository", "a [repository] table with url = \"...\"") {
        repository_ = cx.table(root, "repository").and_then(|t| repository(cx, &t));
    }
    let schedule = optional(cx, root, "schedule", |cx, t| Some(schedule(cx, t)));
    let retention = optional(cx, root, "retention", |cx, t| Some(retention(cx, t)));
    let objectives = optional(cx, root, "objectives", |cx, t| Some(objectives(cx, t)));
    let drill = optional(cx, root, "drill", drill);
    let copy = optional(cx, root, "copy", copy);
    let hooks = optional(cx, root, "hooks", |cx, t| Some(hooks(cx, t)));
    let notify = optional(cx, root, "notify", |cx, t| Some(notify(cx, t)));
    Some(Policy {
        name: name?,
        description,
        env,
        source: source_?,
        repository: repository_?,
        schedule: schedule.unwrap_or_default(),
        retention: retention.unwrap_or_default(),
        objectives: objectives.unwrap_or_default(),
        drill,
        copy,
        hooks: hooks.unwrap_or_default(),
        notify: notify.unwrap_or_default(),
        file: PathBuf::new(),
    })
}

/// An optional table: `None` when absent or unusable.
fn optional<T>(
    cx: &mut Cx<'_>,
    t: &Tbl<'_, '_>,
    key: &str,
    read: impl FnOnce(&mut Cx<'_>, &Tbl<'_, '_>) -> Option<T>,
) -> Option<T> {
    let sub = cx.table(t, key)?;
    read(cx, &sub)
}

/// Reports each string of `key` for which `bad` gives a message.
fn check_each(cx: &mut Cx<'_>, t: &Tbl<'_, '_>, key: &str, bad: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let items = cx.strings(t, key).unwrap_or_default();
    for (i, (s, at)) in items.iter().enumerate() {
        if let Some(msg) = bad(s) {
            cx.error(*at, format!("{}[{i}]", t.field(key)), msg);
        }
    }
    items.into_iter().map(|s| s.0).collect()
}

fn absolute(p: &str) -> Option<String> {
    (!p.starts_with('/')).then(|| format!("expected an absolute path, found \"{p}\""))
}

fn source(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Option<Source> {
    cx.known_keys(t, SOURCE);
    match (t.has("paths"), t.has("command")) {
        (true, true) => {
            cx.error(t.key_at("command"), t.field("command"), "give either `paths` or `command`, not both");
            None
        }
        (false, false) => {
            cx.error(
                t.at,
                t.field("paths"),
                "missing: expected paths = [\"/absolute/path\", ...] or command = \"...\"",
            );
            None
        }
        (true, false) => {
            if t.has("stored_as") {
                cx.error(t.key_at("stored_as"), t.field("stored_as"), "applies to `command` sources only");
            }
            let paths = check_each(cx, t, "paths", absolute);
            if matches!(t.get("paths").map(|v| v.get_ref()), Some(toml::de::DeValue::Array(a)) if a.is_empty()) {
                cx.error(t.at("paths"), t.field("paths"), "expected at least one path");
            }
            // As `backup::excludes::Excludes` compiles them.
            let exclude = check_each(cx, t, "exclude", |p| {
                globset::GlobBuilder::new(p.trim())
                    .literal_separator(p.contains('/'))
                    .build()
                    .err()
                    .map(|e| format!("bad glob pattern \"{p}\": {}", e.kind()))
            });
            let exclude_if_present = check_each(cx, t, "exclude_if_present", |n| {
                (!plain_file_name(n)).then(|| format!("expected a file name without `/`, found \"{n}\""))
            });
            let one_file_system = cx.boolean(t, "one_file_system").unwrap_or(false);
            Some(Source::Paths {
                paths: paths.into_iter().map(PathBuf::from).collect(),
                exclude,
                exclude_if_present,
                one_file_system,
            })
        }
        (false, true) => {
            for k in PATHS_ONLY {
                if t.has(k) {
                    cx.error(t.key_at(k), t.field(k), "applies to `paths` sources only");
                }
            }
            let command = cx.text(t, "command");
            let mut stored_as = None;
            if cx.require(
                t,
                "stored_as",
                "the file name to store the command's output under, e.g. stored_as = \"app.dump\"",
            ) {
                if let Some((n, at)) = cx.string(t, "stored_as") {
                    if !plain_file_name(&n) {
                        cx.error(at, t.field("stored_as"), format!("expected a file name without `/`, found \"{n}\""));
                    }
                    stored_as = Some(n);
                }
            }
            Some(Source::Command { command: command?, stored_as: stored_as? })
        }
    }
}

fn repository(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Option<RepositorySpec> {
    cx.known_keys(t, REPOSITORY);
    repository_at(cx, t, "url", "the repository, e.g. url = \"s3://bucket/prefix\" or \"/srv/backup\"")
}

/// `[copy]`: the second repository (`to`, with the password and S3 keys of
/// `[repository]`), its schedule and its own RPO.
fn copy(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Option<CopySpec> {
    cx.known_keys(t, COPY);
    let to = repository_at(cx, t, "to", "the repository to copy to, e.g. to = \"s3://offsite/web\"");
    if !PASSWORDS.iter().any(|k| t.has(k)) {
        // The usual sources hold the first repository's password.
        cx.error(
            t.at,
            t.field("password_file"),
            "missing: expected the copy's own password_env, password_file or password_command in [copy]",
        );
    }
    let schedule = cx.cron(t, "schedule");
    let rpo = cx.duration(t, "rpo", true);
    Some(CopySpec { to: to?, schedule, rpo })
}

/// A repository's URL under `url_key`, password source and S3 settings.
fn repository_at(cx: &mut Cx<'_>, t: &Tbl<'_, '_>, url_key: &str, hint: &str) -> Option<RepositorySpec> {
    let mut url = None;
    if cx.require(t, url_key, hint) {
        if let Some((u, at)) = cx.string(t, url_key) {
            let ok = match u.strip_prefix("s3://") {
                Some(rest) => !rest.is_empty() && !rest.starts_with('/'),
                None => u.strip_prefix("file://").unwrap_or(&u).starts_with('/'),
            };
            if !ok {
                cx.error(
                    at,
                    t.field(url_key),
                    format!("expected an absolute path, file:///path or s3://bucket/prefix, found \"{u}\""),
                );
            }
            url = Some(u);
        }
    }
    let given: Vec<&str> = PASSWORDS.iter().copied().filter(|k| t.has(k)).collect();
    for k in given.iter().skip(1) {
        let msg =
            format!("give only one of password_env, password_file, password_command (`{}` is given too)", given[0]);
        cx.error(t.key_at(k), t.field(k), msg);
    }
    let password = match given.first().copied() {
        None => None,
        Some("password_env") => cx.string(t, "password_env").map(|(v, at)| {
            if !env_name(&v) {
                cx.error(
                    at,
                    t.field("password_env"),
                    format!("expected the name of an environment variable, found \"{v}\""),
                );
            }
            PasswordSource::Env(v)
        }),
        Some("password_file") => cx.string(t, "password_file").map(|(v, at)| {
            if let Some(msg) = absolute(&v) {
                cx.error(at, t.field("password_file"), msg);
            }
            PasswordSource::File(v.into())
        }),
        Some(_) => cx.text(t, "password_command").map(PasswordSource::Command),
    };
    let s3 = optional(cx, t, "s3", |cx, s| {
        cx.known_keys(s, S3);
        let endpoint = cx.string(s, "endpoint").map(|(e, at)| {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                cx.error(at, s.field("endpoint"), format!("expected an http:// or https:// URL, found \"{e}\""));
            }
            e
        });
        Some(S3Settings {
            endpoint,
            path_style: cx.boolean(s, "path_style"),
            storage_class: cx.text(s, "storage_class"),
            concurrency: cx.integer(s, "concurrency", 1, 1024).map(|n| n as usize),
            profile: cx.text(s, "profile"),
            maintenance_profile: cx.text(s, "maintenance_profile"),
        })
    });
    if t.has("s3") && url.as_deref().is_some_and(|u| !u.starts_with("s3://")) {
        cx.error(t.key_at("s3"), t.field("s3"), "S3 settings apply to s3:// repositories only");
    }
    Some(RepositorySpec { url: url?, password, s3 })
}

fn schedule(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Schedule {
    cx.known_keys(t, SCHEDULE);
    let backup = cx.cron(t, "backup");
    let timezone = cx.string(t, "timezone").and_then(|(z, at)| match z.parse::<Timezone>() {
        Ok(z) => Some(z),
        Err(e) => {
            cx.error(at, t.field("timezone"), e);
            None
        }
    });
    let jitter = cx.duration(t, "jitter", false);
    Schedule {
        backup,
        timezone: timezone.unwrap_or_default(),
        jitter: jitter.unwrap_or_default(),
        catch_up: cx.boolean(t, "catch_up").unwrap_or(true),
        retries: cx.integer(t, "retries", 0, 100).map(|n| n as u32).unwrap_or_else(default_retries),
        retry_delay: cx.duration(t, "retry_delay", true).unwrap_or_else(default_retry_delay),
    }
}

fn retention(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Retention {
    cx.known_keys(t, RETENTION);
    let keep = |cx: &mut Cx<'_>, key: &str| cx.integer(t, key, 0, i64::from(u32::MAX)).map(|n| n as u32);
    Retention {
        keep_last: keep(cx, "keep_last"),
        keep_hourly: keep(cx, "keep_hourly"),
        keep_daily: keep(cx, "keep_daily"),
        keep_weekly: keep(cx, "keep_weekly"),
        keep_monthly: keep(cx, "keep_monthly"),
        keep_yearly: keep(cx, "keep_yearly"),
        keep_within: cx.duration(t, "keep_within", true),
        keep_tags: check_each(cx, t, "keep_tags", |s| s.is_empty().then(|| "expected a non-empty tag".into())),
        prune: cx.cron(t, "prune"),
        prune_safety_margin: prune_safety_margin(cx, t),
    }
}

/// The margin of the policy's scheduled prunes: above zero, since a prune
/// nobody watches must leave the commands that take no lock (restore,
/// check, mount) the time the margin gives them.
fn prune_safety_margin(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Option<Duration> {
    const KEY: &str = "prune_safety_margin";
    let d = cx.duration(t, KEY, false)?;
    if !d.is_zero() {
        return Some(d);
    }
    let (_, at) = cx.string(t, KEY)?;
    cx.error(
        at,
        t.field(KEY),
        "expected a duration above zero: a scheduled prune with no margin could delete packs under a restore, \
         check or mount, which take no lock (`cairn prune --safety-margin 0s` is for a prune you watch); \
         the default is 23h",
    );
    None
}

fn objectives(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Objectives {
    cx.known_keys(t, OBJECTIVES);
    Objectives { rpo: cx.duration(t, "rpo", true), rto: cx.duration(t, "rto", true) }
}

/// One of a few words, or the default.
fn choice<T: Copy + Default>(cx: &mut Cx<'_>, t: &Tbl<'_, '_>, key: &str, words: &[(&str, T)]) -> T {
    let Some((s, at)) = cx.string(t, key) else { return T::default() };
    if let Some((_, v)) = words.iter().find(|(w, _)| *w == s) {
        return *v;
    }
    let expected: Vec<String> = words.iter().map(|(w, _)| format!("\"{w}\"")).collect();
    cx.error(at, t.field(key), format!("expected {}, found \"{s}\"", expected.join(" or ")));
    T::default()
}

fn drill(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Option<Drill> {
    cx.known_keys(t, DRILL);
    let mut schedule = None;
    if cx.require(t, "schedule", "when drills run, e.g. schedule = \"0 6 * * 1\"") {
        schedule = cx.cron(t, "schedule");
    }
    Some(Drill {
        recovery_point: choice(
            cx,
            t,
            "recovery_point",
            &[("latest", RecoveryPoint::Latest), ("random", RecoveryPoint::Random)],
        ),
        random_window: cx.duration(t, "random_window", true).unwrap_or_else(default_window),
        verify: choice(cx, t, "verify", &[("full", VerifyMode::Full), ("sample", VerifyMode::Sample)]),
        sample_percent: cx.positive_number(t, "sample_percent", 100.0).unwrap_or_else(default_sample),
        validate: optional(cx, t, "validate", command),
        scratch: cx.string(t, "scratch").map(|(v, at)| {
            if let Some(msg) = absolute(&v) {
                cx.error(at, t.field("scratch"), msg);
            }
            PathBuf::from(v)
        }),
        schedule: schedule?,
    })
}

fn hooks(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Hooks {
    cx.known_keys(t, HOOKS);
    Hooks {
        before: optional(cx, t, "before", command),
        after: optional(cx, t, "after", command),
        on_failure: optional(cx, t, "on_failure", command),
    }
}

fn command(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Option<HookCommand> {
    cx.known_keys(t, COMMAND);
    let mut command = None;
    if cx.require(t, "command", "the command to run, e.g. command = \"...\"") {
        command = cx.text(t, "command");
    }
    let timeout = cx.duration(t, "timeout", true).unwrap_or_else(default_hook_timeout);
    Some(HookCommand { command: command?, timeout })
}

/// Webhook and ping URLs often carry a token in their path, and problems
/// reach logs and `/status`: the value is never repeated.
const URL_HINT: &str = "expected an http:// or https:// URL (the value is not repeated: it may hold a token)";

fn http_url(u: &str) -> bool {
    u.strip_prefix("http://").or_else(|| u.strip_prefix("https://")).is_some_and(|h| !h.is_empty())
}

fn notify(cx: &mut Cx<'_>, t: &Tbl<'_, '_>) -> Notify {
    cx.known_keys(t, NOTIFY);
    let webhooks = check_each(cx, t, "webhooks", |u| (!http_url(u)).then(|| URL_HINT.to_string()));
    let ping = cx.string(t, "ping").map(|(u, at)| {
        if !http_url(&u) {
            cx.error(at, t.field("ping"), URL_HINT);
        }
        u
    });
    Notify { webhooks, on_success: cx.boolean(t, "on_success").unwrap_or(false), ping }
}
