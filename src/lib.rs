//! cairn: a backup and disaster-recovery orchestrator.
//!
//! The library holds every concern of the tool; the `cairn` binary is a thin
//! layer that parses the command line and renders results. See
//! `docs/ARCHITECTURE.md` for how the modules fit together and
//! `docs/FORMAT.md` for the on-disk repository format.

pub mod backend;
pub mod backup;
pub mod browse;
pub mod check;
pub mod chunk;
pub mod cli;
pub mod copy;
pub mod crypto;
pub mod daemon;
pub mod drill;
pub mod duration;
pub mod error;
pub mod evidence;
pub mod failpoint;
pub mod find;
pub mod fsmeta;
pub mod host;
pub mod id;
pub mod jobs;
pub mod mount;
pub mod page;
pub mod policy;
pub mod pool;
pub mod private;
pub mod process;
pub mod prune;
pub mod repo;
pub mod report;
pub mod restore;
pub mod state;
pub mod status;
pub mod text;

pub use error::{Error, Result};
pub use id::Id;

/// The version of the cairn program, recorded in snapshots and reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
