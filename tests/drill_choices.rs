//! The seeded choices of `cairn drill`: sampled verification and random
//! recovery points, each reproducible from the seed the report records.

mod common;
mod drill_support;

use std::collections::BTreeSet;

use common::random_bytes;
use drill_support::*;
use serde_json::Value;

/// A fixture whose source also holds 40 small files in `many/`.
fn with_many_files(extra: &str) -> Fixture {
    let f = Fixture::new(extra);
    std::fs::create_dir(f.src.join("many")).unwrap();
    for i in 0..40 {
        std::fs::write(f.src.join(format!("many/f{i:02}")), random_bytes(100 + i, 100 + i as u64)).unwrap();
    }
    f
}

fn sample(r: &Value) -> (Vec<String>, String) {
    let s = &r["integrity"]["sample"];
    (strings(&s["paths"]), s["list_blake3"].as_str().unwrap().to_string())
}

#[test]
fn a_sampled_verification_is_recorded_and_reproduced_by_its_seed() {
    let f = with_many_files("");
    f.backup(&[]);
    let a = f.drill_report(&["--sample", "25%", "--seed", "7"], 0);
    let b = f.drill_report(&["--sample", "25%", "--seed", "7"], 0);
    let c = f.drill_report(&["--sample", "25%", "--seed", "8"], 0);
    let i = &a["integrity"];
    assert_eq!(i["method"], "sample");
    // 47 files (40 + 7), 25 % rounded up.
    assert_eq!((i["sample"]["population"].clone(), i["sample"]["size"].clone()), (47.into(), 12.into()));
    assert_eq!(i["files_checked"], 12);
    assert_eq!(i["entries_checked"], 0, "a sample checks files only");
    assert_eq!((a["seed"].clone(), i["sample"]["seed"].clone()), (7.into(), 7.into()));
    let (paths_a, hash_a) = sample(&a);
    assert_eq!(paths_a.len(), 12);
    assert!(paths_a.iter().all(|p| p.starts_with(f.src.to_str().unwrap())), "{paths_a:?}");
    assert_eq!(sample(&b), (paths_a.clone(), hash_a.clone()), "same seed, same sample");
    let (paths_c, hash_c) = sample(&c);
    assert_ne!(paths_c, paths_a, "another seed, another sample");
    assert_ne!(hash_c, hash_a);
    // The list hash is the BLAKE3 of the sorted paths, one per line.
    let listed: String = paths_a.iter().map(|p| format!("{p}\n")).collect();
    assert_eq!(hash_a, blake3::hash(listed.as_bytes()).to_hex().to_string());
    // --full overrides the policy and any sample.
    let full = f.drill_report(&["--full"], 0);
    assert_eq!(
        (full["integrity"]["method"].clone(), full["integrity"]["files_checked"].clone()),
        ("full".into(), 47.into())
    );
}

#[test]
fn the_policy_can_ask_for_a_sample_and_a_sample_still_catches_damage_it_covers() {
    let f = with_many_files("[drill]\nschedule = \"@daily\"\nverify = \"sample\"\nsample_percent = 50");
    f.backup(&[]);
    let r = f.drill_report(&["--seed", "1"], 0);
    assert_eq!(r["integrity"]["method"], "sample");
    assert_eq!(r["integrity"]["sample"]["size"], 24);
    // Without --seed a random one is drawn, and recorded.
    let r1 = f.drill_report(&[], 0);
    let r2 = f.drill_report(&[], 0);
    assert!(r1["seed"].is_u64() && r2["seed"].is_u64());
    assert_ne!(r1["seed"], r2["seed"]);
    assert_eq!(r1["integrity"]["sample"]["seed"], r1["seed"]);
    // Seeds stay within 2^53 - 1, exact in any JSON parser.
    assert!(r1["seed"].as_u64().unwrap() < 1 << 53 && r2["seed"].as_u64().unwrap() < 1 << 53);
    let out = f.drill(&["--seed", "9007199254740992"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    // Damage is found whether or not the damaged file is in the sample:
    // the restore itself checks every chunk it writes.
    let affected = f.damage_a_data_pack();
    let r = f.drill_report(&["--sample", "1%", "--seed", "3"], 5);
    let named: BTreeSet<String> =
        r["integrity"]["mismatched"].as_array().unwrap().iter().map(|m| m["path"].as_str().unwrap().into()).collect();
    assert_eq!(named, affected);
}

#[test]
fn a_random_recovery_point_is_chosen_within_the_window_and_reproduced_by_its_seed() {
    let f = Fixture::new("[objectives]\nrpo = \"3d\"");
    let now = chrono::Utc::now();
    for days in [60, 20, 10, 2] {
        let t = (now - chrono::Duration::days(days)).to_rfc3339();
        f.backup(&["--time", &t]);
    }
    let snaps = f.snapshots();
    let too_old = snaps[0]["id"].as_str().unwrap().to_string();
    let newest = snaps[3]["id"].as_str().unwrap().to_string();
    let mut chosen = BTreeSet::new();
    for seed in 1..=8u64 {
        let s = seed.to_string();
        let a = f.drill_report(&["--snapshot", "random", "--seed", &s], 0);
        let b = f.drill_report(&["--snapshot", "random", "--seed", &s], 0);
        let rp = &a["recovery_point"];
        assert_eq!(rp["snapshot_id"], b["recovery_point"]["snapshot_id"], "seed {seed}: same seed, same snapshot");
        assert_eq!(a["seed"], seed);
        assert_eq!(
            (rp["choice"].clone(), rp["window_s"].clone(), rp["candidates"].clone()),
            ("random".into(), (30 * 86400).into(), 3.into())
        );
        let id = rp["snapshot_id"].as_str().unwrap().to_string();
        assert_ne!(id, too_old, "a snapshot outside the 30-day window was chosen");
        // The RPO is judged on the newest snapshot (2 days old), not on the drilled one.
        let expect = if id == newest { "recovery_point" } else { "newest_snapshot" };
        assert_eq!(a["rpo"]["judged_on"], expect);
        assert_eq!(a["rpo"]["achieved_s"].as_f64().unwrap(), age_at_start(&a, &snaps[3]["time"]));
        chosen.insert(id);
    }
    assert!(chosen.len() >= 2, "8 seeds always chose the same snapshot: {chosen:?}");
    // The policy's default is the newest; an explicit id must be the policy's.
    let latest = f.drill_report(&[], 0);
    assert_eq!(latest["recovery_point"]["snapshot_id"], newest.as_str());
    assert_eq!(latest["recovery_point"]["is_newest"], true);
    let old = f.drill_report(&["--snapshot", &too_old[..12]], 0);
    assert_eq!(old["recovery_point"]["snapshot_id"], too_old.as_str());
    assert_eq!(old["recovery_point"]["choice"], "id");
}

#[test]
fn a_damaged_newest_snapshot_fails_the_drill_instead_of_drilling_an_older_one() {
    let f = Fixture::new("");
    f.backup(&[]);
    std::fs::write(f.src.join("docs/readme.txt"), b"changed\n").unwrap();
    f.backup(&[]);
    let list = f.snapshots();
    let (older, newest) = (list[0]["id"].as_str().unwrap(), list[1]["id"].as_str().unwrap().to_string());
    common::forge::flip_a_byte(&f.env.repo, &format!("snapshots/{newest}"));
    for choice in [&[][..], &["--snapshot", "random"]] {
        let r = f.drill_report(choice, 1);
        let error = phase(&r, "select")["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(&format!("snapshot {} cannot be read", &newest[..8])), "{choice:?}: {error}");
        assert!(r["recovery_point"].is_null(), "{choice:?} drilled {}", r["recovery_point"]);
    }
    // Named explicitly, the older snapshot is drilled.
    let r = f.drill_report(&["--snapshot", &older[..8]], 0);
    assert_eq!(r["recovery_point"]["snapshot_id"].as_str().map(|s| &s[..8]), Some(&older[..8]));
}
