//! Removing what is no longer wanted, in two separate steps.
//!
//! - [`retention`] decides which snapshots to keep: a pure function of the
//!   snapshots and "now", with a reason for every decision. `cairn forget`
//!   applies it and deletes only the snapshot objects it forgets; data stays.
//! - Garbage collection (`cairn prune`) later removes the data that no
//!   remaining snapshot references.
//!
//! See `docs/RETENTION.md` for the retention rules and how they differ
//! from restic's.

pub mod gc;
pub mod retention;
