//! The init job: a new repository with its evidence chain started.
//!
//! The repository's key slot and config are stored first, then the
//! evidence signing key and record 0 (`init`), and only then the marker
//! that makes the repository exist for everyone else. Interrupted before
//! the marker, nothing opens there, and `init` can be run again once the
//! location is emptied.

use crate::evidence::AppendedRecord;
use crate::repo::{InitOptions, Repository};

use super::open::RepoOptions;

/// A repository that was just made.
pub struct Initialised {
    pub repo: Repository,
    /// Record 0 of its evidence chain.
    pub record: AppendedRecord,
}

/// Creates a repository where `repo` points, with the password from its
/// sources (a prompt asks twice).
pub fn init(repo: &RepoOptions, opts: InitOptions) -> crate::Result<Initialised> {
    let backend = repo.open_backend()?;
    let password = repo.password(true)?;
    let mut repository = Repository::create(backend, password.as_bytes(), opts)?;
    if let Some(w) = &repo.warnings {
        repository.set_warnings(w.clone());
    }
    // A host with an evidence key of its own signs record 0 with it; one
    // without starts the legacy chain.
    let appender = repo.appender()?;
    let record = match appender.signer() {
        Some(_) => crate::evidence::start_chain_with(&repository, &appender)?,
        None => crate::evidence::start_chain(&repository)?,
    };
    repository.publish()?;
    Ok(Initialised { repo: repository, record })
}
