//! The torture harness against a local repository (`tests/torture_support`;
//! `tests/torture_garage.rs` runs it against Garage).
//!
//! - Kills: rounds of backup, forget + prune and key add, each killed with
//!   SIGKILL at a failpoint pass that a dry run on a copy of the repository
//!   showed will come; a round that is not killed fails. After each kill
//!   `check` passes, no snapshot is lost, one restores byte-exact, and a
//!   follow-up backup succeeds.
//! - Corruptions: flip, truncate, zero, delete, swap and resurrect on every
//!   kind of file; no command dies of a signal, no restore exits 0 with
//!   other bytes, and a failed restore means `check --read-data` fails.
//!
//! CI runs a short slice (the defaults). `CAIRN_TORTURE_SEED`,
//! `CAIRN_TORTURE_KILLS` and `CAIRN_TORTURE_CORRUPTIONS` make the full run
//! recorded in docs/RELIABILITY.md. Needs `--features failpoints`.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "the torture harness prints its statistics and progress")]

mod common;
mod torture_support;

use torture_support::{corruptions, kills, knob, Repo};

#[test]
fn seeded_kills_during_backup_forget_prune_and_key_add_lose_no_snapshot() {
    let seed = knob("CAIRN_TORTURE_SEED", 1);
    let rounds = knob("CAIRN_TORTURE_KILLS", 10);
    let repo = Repo::local();
    let s = kills::run(&repo, seed, rounds);
    println!(
        "torture kills, local (seed {seed}): {} rounds, {} SIGKILLs {:?}, {} snapshots restored byte-exact, 0 lost",
        s.rounds, s.kills, s.by_point, s.restores
    );
    assert_eq!(s.kills, rounds, "every round is a kill");
}

#[test]
fn seeded_corruptions_of_every_kind_of_file_end_in_an_error_never_in_other_bytes() {
    let seed = knob("CAIRN_TORTURE_SEED", 1);
    let trials = knob("CAIRN_TORTURE_CORRUPTIONS", 14);
    let repo = Repo::local();
    let s = corruptions::run(&repo, seed, trials);
    println!(
        "torture corruptions, local (seed {seed}): {} trials, {} applied, {} found by check --read-data, {} harmless \
         (every snapshot restored byte-exact, or its file deleted: {} such restores refused), {} restores, 0 silent",
        s.trials, s.applied, s.found, s.harmless, s.deleted_snapshots, s.restores
    );
}
