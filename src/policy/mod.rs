//! Policies: what to back up, where, when, how long to keep it, and which
//! recovery objectives to prove. One TOML file per policy, in a directory
//! (`/etc/cairn/policies` by default); `docs/POLICIES.md` documents every
//! field.
//!
//! Design:
//! - the types below are the *effective* policy: every default filled in,
//!   every value checked and parsed (durations, cron expressions, time
//!   zones). They serialise back to a TOML policy that loads to the same
//!   value, which is what `cairn policy show` prints;
//! - loading ([`load_str`], [`load_file`], [`load_dir`]) does not go through
//!   serde's derive: a derived deserializer stops at the first error, and we
//!   must report *every* problem with its line and column. [`parse`] walks
//!   the span-carrying TOML tree instead, field by field, and records a
//!   [`Diagnostic`] for each problem; a policy is returned only when there
//!   were none;
//! - a directory loads whatever is valid and reports the rest, so one bad
//!   file never stops the other policies (the daemon relies on this);
//! - [`schedule`] computes fire times from a given "now", in the policy's
//!   time zone.
//!
//! This module only loads, checks and schedules policies; it runs nothing.
//! The work a policy asks for (backups with their hooks, prunes, drills)
//! is done by [`crate::jobs`].

mod cronfield;
pub mod diag;
mod parse;
pub mod schedule;
mod schema;
mod slots;
mod trust;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::duration::Duration;
use crate::prune::retention::KeepRules;
pub use diag::Diagnostic;
pub use schedule::{jitter_delay, CronExpr, Timezone};
pub use schema::KEEP_RULES;
pub use slots::{cron_of, next_slot};

/// Where policies live when no `--policies DIR` is given.
pub const DEFAULT_DIR: &str = "/etc/cairn/policies";

/// A checked policy with its defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// `[a-z0-9][a-z0-9_-]*`, unique in its directory; snapshots are tagged with it.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The names of the environment variables its hooks, command source,
    /// password command and validation command get from cairn's, besides
    /// the allow-listed ones (`crate::process::ChildEnv`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    pub source: Source,
    pub repository: RepositorySpec,
    #[serde(default)]
    pub schedule: Schedule,
    #[serde(default)]
    pub retention: Retention,
    #[serde(default)]
    pub objectives: Objectives,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<Drill>,
    /// `[copy]`: a second repository the policy's snapshots are copied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopySpec>,
    #[serde(default)]
    pub hooks: Hooks,
    #[serde(default)]
    pub notify: Notify,
    /// The file the policy was loaded from.
    #[serde(skip)]
    pub file: PathBuf,
}

/// What a backup of the policy reads: exactly one kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Source {
    /// Files and directories.
    Paths {
        /// Absolute paths.
        paths: Vec<PathBuf>,
        /// Glob patterns (a pattern without `/` matches names anywhere).
        #[serde(default)]
        exclude: Vec<String>,
        /// Leave out directories that contain a file with one of these names.
        #[serde(default)]
        exclude_if_present: Vec<String>,
        /// Do not cross into other file systems.
        #[serde(default)]
        one_file_system: bool,
    },
    /// The standard output of a command (run with `sh -c`), stored as one
    /// file. If the command fails, no snapshot is kept.
    Command { command: String, stored_as: String },
}

/// The repository a policy backs up to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositorySpec {
    /// A path, `file:///path` or `s3://bucket/prefix`.
    pub url: String,
    /// Where the password comes from; `None`: cairn's usual sources
    /// (`CAIRN_PASSWORD_FILE`, `CAIRN_PASSWORD`, `CAIRN_PASSWORD_COMMAND`).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Settings>,
}

/// Where a repository password comes from; never the password itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PasswordSource {
    /// The name of an environment variable holding it.
    #[serde(rename = "password_env")]
    Env(String),
    /// A file whose first line is the password.
    #[serde(rename = "password_file")]
    File(PathBuf),
    /// A command (`sh -c`) whose first line of output is the password.
    #[serde(rename = "password_command")]
    Command(String),
}

/// S3 settings; each one left out takes the global option's value, then
/// the built-in default. The region and the credentials come from the
/// standard AWS chain (`AWS_REGION`, `~/.aws/config`…), as without a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// The profile of the AWS shared config and credentials files for
    /// every job (`--s3-profile`); `None`: the flag's, else the default chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The profile for the maintenance jobs alone (forget and prune, with
    /// the Object Lock retention step): the maintenance host's credential,
    /// so that one daemon can hold both roles (`docs/STORAGE.md`).
    /// `None`: the same credential as every other job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_profile: Option<String>,
}

/// When backups run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// `None`: the policy runs only when asked (`cairn backup --policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<CronExpr>,
    #[serde(default)]
    pub timezone: Timezone,
    /// Each run starts up to this much after its slot (see [`jitter_delay`]).
    #[serde(default)]
    pub jitter: Duration,
    /// When the daemon was down at a slot: run once at start-up (`true`),
    /// or wait for the next slot.
    #[serde(default = "yes")]
    pub catch_up: bool,
    /// How many times the daemon retries a failed backup.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The delay before the first retry; it doubles for each further one
    /// (at most 6 hours).
    #[serde(default = "default_retry_delay")]
    pub retry_delay: Duration,
}

impl Default for Schedule {
    fn default() -> Schedule {
        Schedule {
            backup: None,
            timezone: Timezone::default(),
            jitter: Duration::default(),
            catch_up: true,
            retries: default_retries(),
            retry_delay: default_retry_delay(),
        }
    }
}

fn yes() -> bool {
    true
}

pub(crate) fn default_retries() -> u32 {
    3
}

pub(crate) fn default_retry_delay() -> Duration {
    Duration::from_secs(300)
}

impl Schedule {
    /// The next `n` backup slots after `after`, without jitter.
    pub fn next_backups(&self, after: chrono::DateTime<chrono::Utc>, n: usize) -> Vec<chrono::DateTime<chrono::Utc>> {
        self.backup.as_ref().map(|c| c.next_after(self.timezone.0, after, n)).unwrap_or_default()
    }
}

/// How long snapshots are kept; a rule left out keeps nothing by itself.
/// With no rule at all, every snapshot is kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Retention {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<Duration>,
    #[serde(default)]
    pub keep_tags: Vec<String>,
    /// When `forget` and `prune` run for this policy; `None`: never by the daemon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<CronExpr>,
    /// How old a prune's mark must be before the policy's scheduled prune
    /// deletes its packs; `None`: [`crate::prune::marking::DEFAULT_SAFETY_MARGIN`].
    /// Never zero: restores, checks and mounts take no lock, and only the
    /// margin keeps an unattended prune from deleting packs under them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_safety_margin: Option<Duration>,
}

impl Retention {
    /// The rules retention applies ([`crate::prune::retention`] takes its
    /// own rule type; the schedule `prune` is not a rule).
    pub fn keep_rules(&self) -> KeepRules {
        KeepRules {
            keep_last: self.keep_last,
            keep_hourly: self.keep_hourly,
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
            keep_within: self.keep_within.map(|d| d.to_chrono()),
            keep_tags: self.keep_tags.clone(),
        }
    }

    /// The safety margin of the policy's scheduled prunes.
    pub fn prune_safety_margin(&self) -> std::time::Duration {
        self.prune_safety_margin.map_or(crate::prune::marking::DEFAULT_SAFETY_MARGIN, |d| d.to_std())
    }
}

/// Recovery objectives that drills measure against.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objectives {
    /// Recovery point objective: the newest snapshot may be at most this old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<Duration>,
    /// Recovery time objective: a restore must finish within this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto: Option<Duration>,
}

/// `[copy]`: the policy's snapshots copied into a second repository (an
/// off-site copy), which has its own URL, password source and S3 settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopySpec {
    /// The second repository: `to`, its password source and `[copy.s3]`.
    pub to: RepositorySpec,
    /// When the daemon copies; `None`: only `cairn run-now --kind copy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<CronExpr>,
    /// The copy's own RPO: how far the newest snapshot in the copy may lag
    /// (default: the policy's `rpo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<Duration>,
}

/// Timed restore drills.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drill {
    pub schedule: CronExpr,
    #[serde(default)]
    pub recovery_point: RecoveryPoint,
    /// With `recovery_point = "random"`: how far back the snapshot may be.
    #[serde(default = "default_window")]
    pub random_window: Duration,
    #[serde(default)]
    pub verify: VerifyMode,
    /// With `verify = "sample"`: the share of files checked, in percent.
    #[serde(default = "default_sample")]
    pub sample_percent: f64,
    /// Where drills restore (each into a new directory below it); `None`:
    /// `<state>/scratch`. Needed when a source path holds the state
    /// directory (a policy backing up `/` or `/var`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch: Option<PathBuf>,
    /// A command run against the restored data (working directory: the
    /// restore target); the drill fails if it fails or times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validate: Option<HookCommand>,
}

pub(crate) fn default_window() -> Duration {
    Duration::from_secs(30 * 86400)
}

pub(crate) fn default_sample() -> f64 {
    10.0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryPoint {
    /// The newest snapshot of the policy.
    #[default]
    Latest,
    /// A snapshot chosen at random within `random_window` (seed recorded).
    Random,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Every restored file is checked against the snapshot.
    #[default]
    Full,
    /// A seeded sample of `sample_percent` of the files.
    Sample,
}

/// Commands run around each backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<HookCommand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<HookCommand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<HookCommand>,
}

/// A command (run with `sh -c`) and how long it may take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookCommand {
    pub command: String,
    #[serde(default = "default_hook_timeout")]
    pub timeout: Duration,
}

pub(crate) fn default_hook_timeout() -> Duration {
    Duration::from_secs(300)
}

/// Where job results are sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    /// `http://` or `https://` URLs that receive a JSON POST per job.
    #[serde(default)]
    pub webhooks: Vec<String>,
    /// Also send successes to the webhooks (failures always go).
    #[serde(default)]
    pub on_success: bool,
    /// A healthchecks.io-style ping URL: `URL/start` when a job starts,
    /// `URL` when it succeeds, `URL/fail` when it fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<String>,
}

/// Loads one policy from its text; `file` names it in diagnostics.
pub fn load_str(src: &str, file: &Path) -> Result<Policy, Vec<Diagnostic>> {
    schema::parse(src, file)
}

/// Loads one policy file. As root, a file writable by group or others or
/// owned by another user is refused (see `trust.rs`); the file checked is
/// the one read (one open file, no second lookup of the path).
pub fn load_file(path: &Path) -> Result<Policy, Vec<Diagnostic>> {
    use std::io::Read;
    let cannot = |e: std::io::Error| vec![diag::file_error(path, format!("cannot read: {e}"))];
    let mut file = std::fs::File::open(path).map_err(cannot)?;
    if let Some(d) = trust::check(path, &file.metadata().map_err(cannot)?) {
        return Err(vec![d]);
    }
    let mut src = String::new();
    file.read_to_string(&mut src).map_err(cannot)?;
    load_str(&src, path)
}

/// Loads every `*.toml` file of a directory (not its subdirectories), in
/// name order. Invalid files are reported and left out; valid ones load.
/// A name already taken by an earlier file makes the later file invalid.
/// As root, a directory writable by group or others or owned by another
/// user loads nothing (anyone who can write it can add a policy).
pub fn load_dir(dir: &Path) -> (Vec<Policy>, Vec<Diagnostic>) {
    match std::fs::metadata(dir) {
        Ok(meta) => {
            if let Some(d) = trust::check(dir, &meta) {
                return (Vec::new(), vec![d]);
            }
        }
        Err(e) => return (Vec::new(), vec![diag::file_error(dir, format!("cannot read the policy directory: {e}"))]),
    }
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "toml")
                    && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    && p.is_file()
            })
            .collect(),
        Err(e) => return (Vec::new(), vec![diag::file_error(dir, format!("cannot read the policy directory: {e}"))]),
    };
    files.sort();
    let mut policies: Vec<Policy> = Vec::new();
    let mut diags = Vec::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for f in files {
        match load_file(&f) {
            Ok(p) => {
                if let Some(first) = names.get(&p.name) {
                    let src = std::fs::read_to_string(&f).unwrap_or_default();
                    let (line, column) = parse::name_position(&src);
                    diags.push(Diagnostic {
                        file: f.clone(),
                        line,
                        column,
                        field: "name".into(),
                        message: format!("\"{}\" is already the name of {}", p.name, first.display()),
                    });
                    continue;
                }
                names.insert(p.name.clone(), f);
                policies.push(p);
            }
            Err(mut d) => diags.append(&mut d),
        }
    }
    (policies, diags)
}

/// Finds the valid policy called `name` in `dir`.
pub fn find(dir: &Path, name: &str) -> crate::Result<Policy> {
    let (policies, diags) = load_dir(dir);
    if let Some(p) = policies.into_iter().find(|p| p.name == name) {
        return Ok(p);
    }
    Err(crate::Error::PolicyNotFound { name: name.to_string(), dir: dir.to_path_buf(), problems: diags.len() })
}

/// A policy from a few lines of TOML, for tests: source `/srv`,
/// repository `repo`, then `extra` (tables such as `[schedule]`).
#[cfg(test)]
pub(crate) fn for_tests(name: &str, repo: &str, extra: &str) -> Policy {
    let src = format!("name = \"{name}\"\n[source]\npaths = [\"/srv\"]\n[repository]\nurl = \"{repo}\"\n{extra}");
    load_str(&src, Path::new("test.toml")).unwrap_or_else(|d| panic!("{d:?}"))
}

#[cfg(test)]
mod tests;
