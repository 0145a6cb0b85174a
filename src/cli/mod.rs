//! Command-line interface: clap definitions, one file per command.
//! Printing happens here only (through [`output::Printer`]).
//!
//! Exit codes (also in `docs/CLI.md`):
//! - 0: success;
//! - 1: error;
//! - 2: bad usage (unknown flag, missing argument);
//! - 3: finished, but some files were skipped or could not be restored;
//! - 4: a drill missed its recovery objectives (RTO or RPO);
//! - 5: integrity failure (`check` found damage; a drill's restored data
//!   did not match, or its validation command failed; `evidence verify`
//!   found a removed, reordered or altered record);
//! - 10: no repository at that location (restic's code);
//! - 11: the repository is locked (also when `--retry-lock` gave up);
//! - 12: wrong password;
//! - 130: interrupted (SIGINT).

mod backup;
mod check;
mod completion;
mod copy;
mod daemon;
mod drill;
mod evidence;
mod find;
mod fleet;
mod fleet_view;
mod forget;
mod inspect;
mod key;
mod mount;
pub mod output;
pub mod password;
pub mod policy;
mod progress;
mod prune;
mod repair;
mod report;
mod restore;
mod retention;
mod status_view;
mod unlock;
mod usage;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::backend::{self, Backend};
use crate::error::{Error, Result};
use crate::jobs::RepoOptions;
use crate::repo::{InitOptions, Repository};
use output::Printer;

pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_PARTIAL: i32 = 3;
pub const EXIT_OBJECTIVES: i32 = 4;
pub const EXIT_INTEGRITY: i32 = 5;
pub const EXIT_NO_REPOSITORY: i32 = 10;
pub const EXIT_LOCKED: i32 = 11;
pub const EXIT_WRONG_PASSWORD: i32 = 12;
pub const EXIT_INTERRUPTED: i32 = 130;

/// The exit code of a command that failed with `e`: restic's codes where
/// restic has one, else 1.
pub fn exit_code_of(e: &Error) -> i32 {
    match e {
        Error::NoRepository(_) => EXIT_NO_REPOSITORY,
        Error::Locked { .. } => EXIT_LOCKED,
        Error::WrongPassword { .. } | Error::TooManyKeySlots { .. } => EXIT_WRONG_PASSWORD,
        _ => EXIT_ERROR,
    }
}

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "Deduplicated, encrypted backups with timed restore drills",
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Repository: a path, file:///path or s3://bucket/prefix (`report`, `status` and
    /// `evidence verify` take several)
    #[arg(long, short = 'r', env = "CAIRN_REPO", global = true, action = clap::ArgAction::Append)]
    pub repo: Vec<String>,
    /// Read the repository password from this file (first line)
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing on stderr but warnings and errors
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Worker threads (default: one per core)
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// S3 endpoint URL for non-AWS stores (Garage, MinIO); AWS_ENDPOINT_URL also works
    #[arg(long, env = "CAIRN_S3_ENDPOINT", global = true, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Path-style S3 addressing (default: on with a custom endpoint)
    #[arg(long, global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL")]
    pub s3_path_style: Option<bool>,
    /// Storage class for data packs (metadata stays in the standard class)
    #[arg(long, global = true, value_name = "CLASS")]
    pub s3_storage_class: Option<String>,
    /// S3 requests in flight at most (default 8)
    #[arg(long, global = true, value_name = "N")]
    pub s3_concurrency: Option<usize>,
    /// AWS profile (shared config/credentials files) to use instead of the default chain's,
    /// e.g. the maintenance host's credential
    #[arg(long, env = "CAIRN_S3_PROFILE", global = true, value_name = "NAME")]
    pub s3_profile: Option<String>,
    /// Read the repository as it was at this time (set by the commands that take --as-of)
    #[arg(skip)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
    /// Local cache for a remote repository's metadata (default $XDG_CACHE_HOME/cairn or ~/.cache/cairn)
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not cache metadata locally
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Print the number of storage requests made, as JSON on stderr
    #[arg(long, global = true)]
    pub stats: bool,
    /// Send at most this many KiB/s to the repository
    #[arg(long, global = true, value_name = "KIB_PER_S", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit_upload: Option<u64>,
    /// When stderr is not a terminal, print a progress line this often (default 10s; e.g. 30s, 500ms)
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_interval)]
    pub progress_interval: Option<std::time::Duration>,
    /// Receive at most this many KiB/s from the repository
    #[arg(long, global = true, value_name = "KIB_PER_S", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit_download: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a repository and print its id
    Init(InitArgs),
    /// Back up files and directories (or stdin) into a new snapshot
    Backup(backup::BackupArgs),
    /// List snapshots
    Snapshots(inspect::SnapshotsArgs),
    /// List the files in a snapshot
    Ls(inspect::LsArgs),
    /// Show what changed between two snapshots
    Diff(inspect::DiffArgs),
    /// Write one file of a snapshot to stdout
    Dump(inspect::DumpArgs),
    /// Find the snapshots that hold paths matching a pattern
    Find(find::FindArgs),
    /// Restore a snapshot into a directory
    Restore(restore::RestoreArgs),
    /// Browse the snapshots as a read-only file system (FUSE) until Ctrl-C
    Mount(mount::MountArgs),
    /// Check the repository for damage
    Check(check::CheckArgs),
    /// Copy snapshots into another repository (its own password, key and chunk boundaries)
    Copy(copy::CopyArgs),
    /// Apply retention rules: keep or forget every snapshot, with the reason
    Forget(forget::ForgetArgs),
    /// Remove data no snapshot uses any more
    Prune(prune::PruneArgs),
    /// Manage the passwords (key slots) that open the repository
    Key(key::KeyArgs),
    /// Remove stale locks (with --remove-all, every lock but one of a process running here)
    Unlock(unlock::UnlockArgs),
    /// Check and show policy files
    Policy(policy::PolicyArgs),
    /// Run every policy's backups, prunes and drills on schedule
    Daemon(daemon::DaemonArgs),
    /// Show, for each policy, what is late, failing or running (the handover screen)
    Status(daemon::StatusArgs),
    /// Ask the running daemon to start a policy's job now
    RunNow(daemon::RunNowArgs),
    /// Export, show the key of, and verify the signed evidence chain
    Evidence(evidence::EvidenceArgs),
    /// Compliance report for a period: backups against schedule, RPO, drills and RTO, audit controls
    Report(report::ReportArgs),
    /// Run a timed restore drill of a policy into scratch space, and report on it
    Drill(drill::DrillArgs),
    /// S3 Object Lock: extend the retention of everything the repository holds
    Retention(retention::RetentionArgs),
    /// Repair a repository: write back objects deleted since a time (versioned S3)
    Repair(repair::RepairArgs),
    /// Print shell completions (bash, zsh or fish) on stdout
    Completion(completion::CompletionArgs),
    /// Print the manual page (roff) of cairn or of one command on stdout
    Man(completion::ManArgs),
}

/// `--as-of TIME`: read the repository as it was (versioned S3 buckets).
#[derive(clap::Args, Debug, Clone)]
pub struct AsOfArg {
    /// Read the repository as it was at TIME (RFC 3339, or YYYY-MM-DD[ HH:MM[:SS]] in UTC), from
    /// the object versions a versioned S3 bucket keeps; read-only
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
}

impl AsOfArg {
    /// The global options with this time set.
    pub fn apply(&self, g: &GlobalArgs) -> GlobalArgs {
        GlobalArgs { as_of: self.as_of.or(g.as_of), ..g.clone() }
    }
}

/// A point in time: RFC 3339 (`2025-03-01T02:13:07Z`), or a UTC date and
/// time `2025-03-01 02:13[:07]`, or a UTC date (its midnight).
pub fn parse_time(s: &str) -> std::result::Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
    let t = s.trim();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, f) {
            return Ok(Utc.from_utc_datetime(&n));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists")));
    }
    Err(format!("`{s}`: give a time as 2025-03-01T02:13:07Z or 2025-03-01 02:13 (UTC)"))
}

/// `--progress-interval`: a duration (`30s`, `2m`), or milliseconds (`500ms`).
fn parse_interval(s: &str) -> std::result::Result<std::time::Duration, String> {
    let d = match s.strip_suffix("ms") {
        Some(ms) => {
            std::time::Duration::from_millis(ms.trim().parse().map_err(|_| format!("`{s}`: expected 500ms or 30s"))?)
        }
        None => s.parse::<crate::duration::Duration>()?.to_std(),
    };
    if d.is_zero() {
        return Err(format!("`{s}`: the interval must be longer than zero"));
    }
    Ok(d)
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// zstd compression level for data (1-19)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub compression: i32,
    /// Target pack size in MiB
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=512))]
    pub pack_size_mib: u32,
    /// Chunk sizes in bytes as MIN,AVG,MAX (default 524288,1048576,8388608)
    #[arg(long, hide = true)]
    pub chunk_sizes: Option<String>,
    /// Argon2id memory in KiB (default 65536; 19456 to 262144)
    #[arg(long, hide = true, value_parser = kdf_memory_kib())]
    pub kdf_memory_kib: Option<u32>,
    /// Lock every object with S3 Object Lock for this long (e.g. 30d); the bucket must have
    /// Object Lock on. See docs/STORAGE.md
    #[arg(long, value_name = "PERIOD", value_parser = crate::repo::object_lock::parse_period)]
    pub immutable: Option<u64>,
    /// Object Lock mode: compliance (nobody can shorten a lock) or governance
    #[arg(long, value_name = "MODE", default_value = "compliance", requires = "immutable")]
    pub lock_mode: crate::backend::LockMode,
}

/// `--kdf-memory-kib`: from OWASP's minimum for Argon2id to the most cairn
/// writes (`KdfParams::MIN_MEMORY_KIB` and `KdfParams::MOST_COSTLY_NEW`).
pub fn kdf_memory_kib() -> clap::builder::RangedI64ValueParser<u32> {
    use crate::crypto::KdfParams;
    clap::value_parser!(u32).range(KdfParams::MIN_MEMORY_KIB as i64..=KdfParams::MOST_COSTLY_NEW.memory_kib as i64)
}

/// Large buffers (packs, chunks) are allocated and freed all the time; keep
/// glibc from raising its mmap threshold to their size, which would park
/// freed packs in per-thread arenas and inflate the resident memory.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        // A few arenas are enough for a handful of worker threads, and
        // fewer arenas hold less freed memory.
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

/// The backup scan holds one directory handle per level it is inside and
/// restore caches handles: raise the soft open-file limit to the hard one
/// (as Go programs such as restic do at start), so that a deep tree is not
/// cut short by a soft limit of 1,024 that systemd or a shell left.
fn raise_open_file_limit() {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

pub fn main() -> i32 {
    tune_allocator();
    raise_open_file_limit();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let e = usage::without_env_values(e, std::env::args_os());
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    match &cli.command {
        Command::Daemon(a) => init_logging("info", a.log_format == daemon::LogFormat::Json),
        _ => init_logging("warn", false),
    }
    // The daemon and `mount` stop gracefully at SIGINT themselves.
    if !matches!(cli.command, Command::Daemon(_) | Command::Mount(_)) {
        output::exit_on_interrupt();
    }
    let printer = Printer::new(cli.global.json, cli.global.quiet);
    let code = match run(cli, &printer) {
        Ok(code) => code,
        Err(e) => {
            printer.error(&e);
            exit_code_of(&e)
        }
    };
    print_stats(&printer);
    code
}

/// Logs go to stderr, filtered by `CAIRN_LOG` (default `level`), as text
/// or as one JSON object per line.
fn init_logging(level: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| level.into());
    // No colour codes in files and the journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi);
    let _ = if json { fmt.json().flatten_event(true).try_init() } else { fmt.try_init() };
}

fn run(cli: Cli, p: &Printer) -> Result<i32> {
    let g = &cli.global;
    let reads_several = match &cli.command {
        Command::Evidence(e) => e.reads_several(),
        Command::Report(a) => a.fleet.uses_evidence(),
        Command::Status(a) => a.fleet.uses_evidence(),
        _ => false,
    };
    if !reads_several {
        one_repo(g)?;
    }
    match cli.command {
        Command::Init(a) => init(g, &a, p),
        Command::Backup(a) => backup::run(g, a, p),
        Command::Snapshots(a) => inspect::snapshots(g, &a, p),
        Command::Ls(a) => inspect::ls(g, &a, p),
        Command::Diff(a) => inspect::diff(g, &a, p),
        Command::Dump(a) => inspect::dump(g, &a, p),
        Command::Find(a) => find::run(g, &a, p),
        Command::Restore(a) => restore::run(g, &a, p),
        Command::Mount(a) => mount::run(g, &a, p),
        Command::Check(a) => check::run(g, &a, p),
        Command::Copy(a) => copy::run(g, &a, p),
        Command::Forget(a) => forget::run(g, &a, p),
        Command::Prune(a) => prune::run(g, &a, p),
        Command::Key(a) => key::run(g, &a, p),
        Command::Unlock(a) => unlock::run(g, &a, p),
        Command::Policy(a) => policy::run(g, &a, p),
        Command::Daemon(a) => daemon::run(g, &a),
        Command::Status(a) => daemon::status(g, &a, p),
        Command::RunNow(a) => daemon::run_now(&a, p),
        Command::Evidence(a) => evidence::run(g, &a, p),
        Command::Report(a) => report::run(g, &a, p),
        Command::Drill(a) => drill::run(g, &a, p),
        Command::Retention(a) => retention::run(g, &a, p),
        Command::Repair(a) => repair::run(g, &a, p),
        Command::Completion(a) => completion::completion(&a),
        Command::Man(a) => completion::man(&a),
    }
}

/// How the global flags say to open a repository (a policy's settings
/// take their place in `cairn backup --policy`, `drill` and the daemon).
pub fn repo_options(g: &GlobalArgs) -> RepoOptions {
    RepoOptions {
        url: g.repo.first().cloned(),
        evidence_state: None,
        backend: backend::OpenOptions {
            s3_endpoint: g.s3_endpoint.clone(),
            s3_region: None,
            s3_path_style: g.s3_path_style,
            s3_storage_class: g.s3_storage_class.clone(),
            s3_concurrency: g.s3_concurrency,
            s3_profile: g.s3_profile.clone(),
            as_of: g.as_of,
        },
        password: None,
        env: Vec::new(),
        password_file: g.password_file.clone(),
        prompt: Some(password::prompt_repository),
        cache_dir: g.cache_dir.clone(),
        no_cache: g.no_cache,
        threads: g.threads,
        wrap: if g.stats { Some(count_requests) } else { None },
        lock_wait: None,
        rate_limits: backend::limit::RateLimits { upload_kib: g.limit_upload, download_kib: g.limit_download },
        // The library's warnings are the printer's `warning:` lines, and
        // what hooks print reaches the terminal as they print it.
        warnings: Some(Arc::new(Printer::new(g.json, g.quiet))),
        child_output: crate::process::OutputTo::Terminal,
    }
}

/// `--retry-lock DURATION`, on the commands that take a repository lock
/// (`backup`, `forget`, `prune`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RetryLock {
    /// When another operation holds the lock, keep trying for DURATION (e.g. `10m`) instead of failing
    #[arg(long, value_name = "DURATION")]
    pub retry_lock: Option<crate::duration::Duration>,
}

impl RetryLock {
    /// `repo` with its lock wait: `--retry-lock`'s patience, and a line on
    /// stderr, once, naming the holder it waits for.
    pub fn apply(&self, mut repo: RepoOptions, p: &Printer) -> RepoOptions {
        repo.lock_wait = self.retry_lock.map(|d| {
            let p = p.clone();
            crate::repo::lock::LockWait::new(d.to_std()).on_wait(move |w| p.info(output::waiting_for_lock(w)))
        });
        repo
    }
}

pub fn threads(g: &GlobalArgs) -> usize {
    repo_options(g).threads()
}

pub fn open_backend(g: &GlobalArgs) -> Result<Arc<dyn Backend>> {
    repo_options(g).open_backend()
}

/// Refuses several `--repo`: only `evidence verify` reads several
/// repositories; every other command works on one.
fn one_repo(g: &GlobalArgs) -> Result<()> {
    if g.repo.len() > 1 {
        return Err(Error::SeveralRepositories { count: g.repo.len() });
    }
    Ok(())
}

/// Opens the backend of `url` with the global S3 options (for a command
/// that reads several repositories).
pub fn open_backend_url(g: &GlobalArgs, url: &str) -> Result<Arc<dyn Backend>> {
    let mut o = repo_options(g);
    o.url = Some(url.to_string());
    o.open_backend()
}

/// Counts the requests of this command, for `--stats`: of every backend
/// it opens (on this thread), summed.
fn count_requests(b: Arc<dyn Backend>) -> Arc<dyn Backend> {
    let mut counting = backend::CountingBackend::new(b);
    if let Some(counts) = STATS.with(|s| s.borrow().clone()) {
        counting.counts = counts;
    }
    STATS.with(|s| *s.borrow_mut() = Some(counting.counts.clone()));
    Arc::new(counting)
}

thread_local! {
    /// The request counters of this command, when `--stats` is given.
    static STATS: std::cell::RefCell<Option<Arc<backend::RequestCounts>>> = const { std::cell::RefCell::new(None) };
}

fn print_stats(p: &Printer) {
    STATS.with(|s| {
        if let Some(c) = s.borrow().as_ref() {
            use std::sync::atomic::Ordering::Relaxed;
            let v = serde_json::json!({ "requests": {
                "get": c.get.load(Relaxed), "get_range": c.get_range.load(Relaxed), "put": c.put.load(Relaxed),
                "list": c.list.load(Relaxed), "delete": c.delete.load(Relaxed), "stat": c.stat.load(Relaxed),
                "total": c.total(), "bytes_in": c.bytes_in.load(Relaxed), "bytes_out": c.bytes_out.load(Relaxed),
            }});
            p.diagnostic(v.to_string());
        }
    });
}

pub fn open_repo(g: &GlobalArgs) -> Result<Repository> {
    repo_options(g).open()
}

fn init(g: &GlobalArgs, a: &InitArgs, p: &Printer) -> Result<i32> {
    let mut opts =
        InitOptions { compression: a.compression, pack_size: a.pack_size_mib * 1024 * 1024, ..Default::default() };
    if let Some(s) = &a.chunk_sizes {
        let bad = || Error::BadFlag {
            flag: "--chunk-sizes".into(),
            value: s.clone(),
            expected: "expected three numbers MIN,AVG,MAX".into(),
        };
        let v: Vec<u32> =
            s.split(',').map(|x| x.trim().parse()).collect::<std::result::Result<_, _>>().map_err(|_| bad())?;
        let [min, avg, max] = v[..] else {
            return Err(bad());
        };
        opts.chunker = crate::chunk::ChunkerParams { min_size: min, avg_size: avg, max_size: max, seed: 0 };
    }
    if let Some(m) = a.kdf_memory_kib {
        opts.kdf.memory_kib = m;
    }
    opts.object_lock = a.immutable.map(|period_secs| crate::backend::ObjectLock {
        mode: a.lock_mode,
        period_secs,
        margin_secs: crate::backend::ObjectLock::DEFAULT_MARGIN_SECS,
    });
    let repo = crate::jobs::init::init(&repo_options(g), opts)?.repo;
    let location = repo.backend().location();
    if p.json {
        p.json(&serde_json::json!({ "id": repo.id(), "location": location }));
    } else {
        p.data(repo.id().to_hex());
        p.info(format!("created cairn repository {} at {location}", repo.id().short()));
        if let Some(l) = &repo.config().storage.object_lock {
            p.info(format!(
                "every object is locked ({}) for {} days and more; run `cairn retention extend` (or prune) at least every {} days",
                l.mode,
                l.period_secs / 86_400,
                l.margin_secs / 2 / 86_400
            ));
        }
        if repo.config().storage.conditional_put == Some(false) {
            p.warn(
                "this storage ignores If-None-Match: cairn asks whether each object exists before writing it, \
                 which a concurrent writer can race (see docs/STORAGE.md)",
            );
        }
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        // Catches clashing argument names and bad defaults in every subcommand.
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn bug_stats_counted_only_the_last_repository_a_command_opened() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b"] {
            let b =
                super::count_requests(std::sync::Arc::new(crate::backend::LocalBackend::new(dir.path().join(name))));
            b.put("config", b"x").unwrap();
            b.get("config").unwrap();
        }
        let counts = super::STATS.with(|s| s.borrow().clone()).unwrap();
        assert_eq!((counts.put.load(Relaxed), counts.get.load(Relaxed)), (2, 2), "both repositories' requests");
    }
}
