//! What `cairn report` and `cairn status` read with `--keys`: the verified
//! evidence of every `--repo` repository, with the read key and the
//! auditor's trusted keys alone (no password, no state database).

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::evidence::fleet::{self, Fleet};

use super::GlobalArgs;

/// The flags of a view built from evidence.
#[derive(clap::Args, Debug, Clone)]
pub struct FleetArgs {
    /// Build it from the verified evidence of the --repo repositories (repeatable) with these
    /// trusted keys (`HOST KEY [revoked-after=…]`, `@reader KEY` lines: docs/EVIDENCE.md); with
    /// `report --check-evidence`, the keys the state's rows are checked against
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// With --keys: a file holding a read key (`cairn evidence reader-key`); repeatable
    #[arg(long = "reader-key", value_name = "FILE", requires = "keys")]
    pub reader_keys: Vec<PathBuf>,
    /// With --keys: a host with no record that counts for this long is silent
    #[arg(long, value_name = "DURATION", default_value = "26h")]
    pub silent_after: crate::duration::Duration,
}

impl FleetArgs {
    /// Whether the view is built from evidence.
    pub fn uses_evidence(&self) -> bool {
        self.keys.is_some()
    }

    pub fn silent_after(&self) -> chrono::Duration {
        self.silent_after.to_chrono()
    }
}

/// Reads and verifies the evidence of every `--repo` at `now`, all at
/// once. A repository that cannot be read is part of the result (named,
/// with why), never a reason to leave the others out.
pub fn read(g: &GlobalArgs, a: &FleetArgs, now: DateTime<Utc>) -> Result<Fleet> {
    let keys = a.keys.as_deref().expect("a view from evidence has --keys");
    let (trust, readers) = super::evidence::trust_from(None, Some(keys), &a.reader_keys)?;
    if g.repo.is_empty() {
        return Err(Error::VerifyNeeds(
            "--keys builds this from the evidence of repositories: give them with --repo URL (repeatable)".into(),
        ));
    }
    if readers.is_empty() {
        return Err(Error::VerifyNeeds(
            "reading a repository's evidence without the password needs its read key: --reader-key FILE (or \
             `@reader KEY` lines in the keys file)"
                .into(),
        ));
    }
    let open = |url: &str| super::open_backend_url(g, url);
    let sources = crate::evidence::fleet_read::read_sources(&g.repo, open, &readers, &trust, now);
    Ok(fleet::digest(&sources))
}
