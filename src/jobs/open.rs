//! Opening a repository, the one way every command, job and the daemon do
//! it: the backend its URL names (with the S3 settings), the password
//! from its source, and the metadata cache for a remote repository.
//!
//! [`RepoOptions`] holds what the global flags say (`--repo`,
//! `--password-file`, `--s3-*`, `--cache-dir`, `--no-cache`,
//! `--threads`); the command line builds it, and hands the same to the
//! daemon. A policy's own settings take the place of the flags
//! ([`RepoOptions::for_policy`]): its URL, the S3 settings it gives (one
//! it leaves out keeps the flag's), and its password source, with cairn's
//! usual sources as the fallback.

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::limit::{RateLimited, RateLimits};
use crate::backend::{self, Backend};
use crate::error::{Error, Result, WarningSink};
use crate::policy::{PasswordSource, Policy};
use crate::process::{ChildEnv, Origin, OutputTo};
use crate::repo::keys::KeyHints;
use crate::repo::lock::LockWait;
#[cfg(doc)]
use crate::repo::lock::DAEMON_LOCK_WAIT;
use crate::repo::Repository;

use super::password::{self, Password, Prompt};

/// Wraps every backend opened (the command line counts requests for
/// `--stats` this way).
pub type BackendWrapper = fn(Arc<dyn Backend>) -> Arc<dyn Backend>;

/// How to open a repository.
#[derive(Debug, Clone, Default)]
pub struct RepoOptions {
    /// A path, `file:///path` or `s3://bucket/prefix` (`--repo`).
    pub url: Option<String>,
    /// The S3 settings (`--s3-endpoint`, `--s3-path-style`,
    /// `--s3-storage-class`, `--s3-concurrency`).
    pub backend: backend::OpenOptions,
    /// A policy's password source; `None`: cairn's usual sources.
    pub password: Option<PasswordSource>,
    /// The variables a policy passes to its password command (its `env`).
    pub env: Vec<String>,
    /// `--password-file`, the first of the usual sources.
    pub password_file: Option<PathBuf>,
    /// The last of the usual sources; `None`: no password is an error.
    pub prompt: Option<Prompt>,
    /// Where remote metadata is cached (`--cache-dir`); `None`: the default place.
    pub cache_dir: Option<PathBuf>,
    /// Cache nothing (`--no-cache`).
    pub no_cache: bool,
    /// Worker threads for backups, restores and drills; `None`: one per core.
    pub threads: Option<usize>,
    pub wrap: Option<BackendWrapper>,
    /// How the repositories opened wait for a lock in the way
    /// (`--retry-lock`; the daemon's jobs wait [`DAEMON_LOCK_WAIT`]);
    /// `None`: a lock in the way fails the command at once.
    pub lock_wait: Option<LockWait>,
    /// `--limit-upload`, `--limit-download`: every backend opened is paced.
    pub rate_limits: RateLimits,
    /// The state directory whose evidence key signs the jobs' records
    /// (`None`: `CAIRN_STATE_DIR`, else the default place). Without a key
    /// there, a repository that has the legacy key is signed with it.
    pub evidence_state: Option<PathBuf>,
    /// Where the repositories opened send their warnings (the CLI's
    /// printer); `None`: the log ([`crate::error::LogWarnings`], the daemon's).
    pub warnings: Option<WarningSink>,
    /// Where the output of hooks, command sources and password commands
    /// goes: the terminal for a command, log records for the daemon.
    pub child_output: OutputTo,
}

impl RepoOptions {
    /// These options with a policy's repository settings in their place.
    pub fn for_policy(&self, policy: &Policy) -> RepoOptions {
        self.for_spec(&policy.repository, policy)
    }

    /// These options with the settings of the policy's `[copy]` repository
    /// in their place (its own URL, password source and S3 settings);
    /// `None` when the policy has no copy.
    pub fn for_copy(&self, policy: &Policy) -> Option<RepoOptions> {
        policy.copy.as_ref().map(|c| {
            let mut o = self.for_spec(&c.to, policy);
            // Never the first repository's password: the copy names its own.
            o.password_file = None;
            o.prompt = None;
            o
        })
    }

    fn for_spec(&self, spec: &crate::policy::RepositorySpec, policy: &Policy) -> RepoOptions {
        let mut o = self.clone();
        o.url = Some(spec.url.clone());
        if let Some(s3) = &spec.s3 {
            let b = &mut o.backend;
            b.s3_endpoint = s3.endpoint.clone().or(b.s3_endpoint.take());
            b.s3_path_style = s3.path_style.or(b.s3_path_style);
            b.s3_storage_class = s3.storage_class.clone().or(b.s3_storage_class.take());
            b.s3_concurrency = s3.concurrency.or(b.s3_concurrency);
            b.s3_profile = s3.profile.clone().or(b.s3_profile.take());
        }
        if let Some(src) = &spec.password {
            o.password = Some(src.clone());
        }
        o.env = policy.env.clone();
        o
    }

    /// [`RepoOptions::for_policy`] for a maintenance job of the policy
    /// (forget, prune, the retention step): with the policy's
    /// `maintenance_profile` when it names one.
    pub fn for_maintenance(&self, policy: &Policy) -> RepoOptions {
        let mut o = self.for_policy(policy);
        if let Some(p) = policy.repository.s3.as_ref().and_then(|s3| s3.maintenance_profile.clone()) {
            o.backend.s3_profile = Some(p);
        }
        o
    }

    /// Worker threads: the option, else one per core; at least one.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(crate::backup::default_threads).max(1)
    }

    /// The backend the URL names.
    pub fn open_backend(&self) -> Result<Arc<dyn Backend>> {
        let url = self.url.as_deref().ok_or(Error::NoRepositoryGiven)?;
        let mut b = backend::open_url(url, &self.backend)?;
        if !self.rate_limits.is_unlimited() {
            b = Arc::new(RateLimited::new(b, self.rate_limits));
        }
        Ok(match self.wrap {
            Some(wrap) => wrap(b),
            None => b,
        })
    }

    /// The password: the policy's source, else the usual ones
    /// (`confirm`: a prompt asks twice, for a new repository).
    pub fn password(&self, confirm: bool) -> Result<Password> {
        let env = ChildEnv::new(&self.env);
        let origin = Origin::new(None, "open", self.child_output);
        match &self.password {
            Some(src) => password::from_policy_source(src, &env, &origin),
            None => password::resolve(self.password_file.as_deref(), &env, &origin, self.prompt, confirm),
        }
    }

    /// Opens the repository, with the metadata cache for a remote one.
    pub fn open(&self) -> Result<Repository> {
        let backend = self.open_backend()?;
        let mut repo = Repository::open_with(backend, self.password(false)?.as_bytes(), &self.key_hints())?;
        repo.set_lock_wait(self.lock_wait.clone());
        if let Some(w) = &self.warnings {
            repo.set_warnings(w.clone());
        }
        // A view of the past (`--as-of`) lists other objects than the
        // present: it leaves the cache of the present alone.
        if repo.backend().is_remote() && !self.no_cache && self.backend.as_of.is_none() {
            if let Some(base) = self.cache_dir.clone().or_else(crate::repo::cache::default_base) {
                repo.enable_cache(&base)?;
            }
        }
        Ok(repo)
    }

    /// Which key slot to try first: `CAIRN_KEY_ID`, then the one recorded
    /// in the cache directory (none with `--no-cache`).
    pub fn key_hints(&self) -> KeyHints {
        let mut h = KeyHints::from_env();
        if self.no_cache {
            h.cache_base = None;
        } else if let Some(d) = &self.cache_dir {
            h.cache_base = Some(d.clone());
        }
        h
    }

    /// Who signs the evidence records of the jobs run with these options:
    /// the key of [`RepoOptions::evidence_state`].
    pub fn appender(&self) -> Result<crate::evidence::Appender> {
        crate::evidence::Appender::for_state_dir(&crate::state::resolve_dir(self.evidence_state.as_deref()))
    }

    /// Appends one evidence record with [`RepoOptions::appender`].
    pub fn append_evidence(
        &self,
        repo: &Repository,
        kind: &str,
        policy: Option<&str>,
        payload: serde_json::Value,
    ) -> Result<crate::evidence::AppendedRecord> {
        self.appender()?.append(repo, kind, policy, payload)
    }

    /// Opens the repository of `policy`.
    pub fn open_policy(&self, policy: &Policy) -> Result<Repository> {
        self.for_policy(policy).open()
    }

    /// Opens the repository of `policy` for a maintenance job
    /// ([`RepoOptions::for_maintenance`]).
    pub fn open_maintenance(&self, policy: &Policy) -> Result<Repository> {
        self.for_maintenance(policy).open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_takes_the_place_of_the_flags_and_keeps_what_it_leaves_out() {
        let flags = RepoOptions {
            url: Some("/elsewhere".into()),
            backend: backend::OpenOptions {
                s3_endpoint: Some("http://flag:3900".into()),
                s3_storage_class: Some("GLACIER".into()),
                s3_concurrency: Some(2),
                ..Default::default()
            },
            password_file: Some("/flag/pw".into()),
            threads: Some(3),
            ..Default::default()
        };
        let p = crate::policy::for_tests(
            "web",
            "s3://bucket/web",
            "[repository.s3]\nendpoint = \"http://policy:3900\"\nconcurrency = 4\n",
        );
        let mut p2 = p.clone();
        p2.repository.password = Some(PasswordSource::Env("WEB_PW".into()));
        let o = flags.for_policy(&p);
        assert_eq!(o.url.as_deref(), Some("s3://bucket/web"));
        assert_eq!(o.backend.s3_endpoint.as_deref(), Some("http://policy:3900"));
        assert_eq!(o.backend.s3_concurrency, Some(4));
        assert_eq!(o.backend.s3_storage_class.as_deref(), Some("GLACIER"), "left out by the policy: the flag's");
        assert_eq!(o.password, None, "no source in the policy: the usual sources");
        assert_eq!(o.password_file, flags.password_file);
        assert_eq!(o.threads(), 3);
        assert_eq!(flags.for_policy(&p2).password, Some(PasswordSource::Env("WEB_PW".into())));
    }

    #[test]
    fn maintenance_jobs_take_the_policys_maintenance_profile_and_other_jobs_its_profile() {
        let flags = RepoOptions {
            backend: backend::OpenOptions { s3_profile: Some("flag".into()), ..Default::default() },
            ..Default::default()
        };
        let both = crate::policy::for_tests(
            "web",
            "s3://bucket/web",
            "[repository.s3]\nprofile = \"backup\"\nmaintenance_profile = \"maintenance\"\n",
        );
        assert_eq!(flags.for_policy(&both).backend.s3_profile.as_deref(), Some("backup"));
        assert_eq!(flags.for_maintenance(&both).backend.s3_profile.as_deref(), Some("maintenance"));
        let one = crate::policy::for_tests("web", "s3://bucket/web", "[repository.s3]\nprofile = \"backup\"\n");
        assert_eq!(flags.for_maintenance(&one).backend.s3_profile.as_deref(), Some("backup"), "no maintenance profile");
        let none = crate::policy::for_tests("web", "s3://bucket/web", "");
        assert_eq!(flags.for_policy(&none).backend.s3_profile.as_deref(), Some("flag"), "left out: the flag's");
        assert_eq!(flags.for_maintenance(&none).backend.s3_profile.as_deref(), Some("flag"));
    }

    #[test]
    fn without_a_url_or_a_password_the_error_says_what_to_give() {
        let Err(e) = RepoOptions::default().open() else { panic!("opened a repository without a URL") };
        assert!(e.to_string().starts_with("no repository given"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-file");
        let o = RepoOptions { password_file: Some(missing.clone()), ..Default::default() };
        let e = o.password(false).unwrap_err();
        assert!(e.to_string().contains(&missing.display().to_string()), "{e}");
    }
}
