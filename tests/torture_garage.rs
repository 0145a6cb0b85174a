//! The torture harness (`tests/torture_support`) against a repository on a
//! real Garage server: the same kill rounds as `tests/torture.rs`, each a
//! certain SIGKILL, then the corruption matrix on the repository's objects
//! (read, damaged and written back through S3). Fails loudly when Garage is
//! missing.
//!
//! One test in this binary: it sets the S3 credentials in the process
//! environment, which the S3 client of the harness reads.
//! `CAIRN_TORTURE_SEED`, `CAIRN_TORTURE_KILLS` and
//! `CAIRN_TORTURE_CORRUPTIONS` size it, as for `tests/torture.rs`.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "the torture harness prints its statistics and progress")]

mod common;
mod garage;
mod torture_support;

use torture_support::{corruptions, kills, knob, Repo, S3Store};

/// A repository under `prefix` of the Garage's bucket, cairn pointed at it.
fn repo_on(g: &garage::Garage, prefix: &str) -> Repo {
    let store = S3Store::new(&g.endpoint(), &g.bucket, prefix);
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), g.key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), g.secret.clone()),
        ("AWS_REGION".to_string(), "garage".to_string()),
        ("CAIRN_S3_ENDPOINT".to_string(), g.endpoint()),
    ];
    Repo::init(tempfile::tempdir().unwrap(), Box::new(store), env)
}

#[test]
fn seeded_kills_and_corruptions_on_garage_lose_no_snapshot_and_end_in_an_error_never_in_other_bytes() {
    let g = garage::Garage::start();
    std::env::set_var("AWS_ACCESS_KEY_ID", &g.key_id);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", &g.secret);
    std::env::remove_var("AWS_PROFILE");
    std::env::remove_var("AWS_ENDPOINT_URL");
    let seed = knob("CAIRN_TORTURE_SEED", 1);
    let rounds = knob("CAIRN_TORTURE_KILLS", 4);
    let trials = knob("CAIRN_TORTURE_CORRUPTIONS", 7);

    if rounds > 0 {
        let repo = repo_on(&g, "kills");
        let s = kills::run(&repo, seed, rounds);
        println!(
            "torture kills, Garage (seed {seed}): {} rounds, {} SIGKILLs {:?}, {} snapshots restored byte-exact, 0 lost",
            s.rounds, s.kills, s.by_point, s.restores
        );
        assert_eq!(s.kills, rounds, "every round is a kill");
    }
    if trials > 0 {
        let repo = repo_on(&g, "corruptions");
        let s = corruptions::run(&repo, seed, trials);
        println!(
            "torture corruptions, Garage (seed {seed}): {} trials, {} applied, {} found by check --read-data, {} \
             harmless (every snapshot restored byte-exact, or its file deleted: {} such restores refused), {} \
             restores, 0 silent",
            s.trials, s.applied, s.found, s.harmless, s.deleted_snapshots, s.restores
        );
    }
}
