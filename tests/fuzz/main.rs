//! Fuzzing, on stable Rust: every parser of repository bytes (pack trailer
//! and header, index file, tree, snapshot, key slot, config, evidence
//! record, blob payload) and the policy parser, fed seeded mutations of a
//! checked-in seed corpus (`tests/fuzz/corpus/<target>/`).
//!
//! A parser must return an error, never panic, never abort, and never
//! allocate without bound. Each target runs in a child process (this test
//! binary again) under an address-space limit, with an allocator that
//! measures the peak memory of each input: a panic, an abort (a stack
//! overflow, a failed allocation) or a peak above [`allowed_peak`] is a crash,
//! and the input that caused it is saved under the target directory.
//!
//! Without coverage instrumentation (a nightly feature), inputs that make
//! a parser say something new (a new error message, digits aside) join
//! the working corpus, so mutations go on from inputs that reached
//! further.
//!
//! Budget: `CAIRN_FUZZ_ITERS` inputs per target (default 2,000, a few
//! seconds), or `CAIRN_FUZZ_SECS` seconds per target; `CAIRN_FUZZ_SEED`
//! picks the seed (default 1). The long runs are recorded in
//! `docs/RELIABILITY.md`. Crashes found become `bug_…` tests below.
#![allow(clippy::print_stdout, clippy::print_stderr, reason = "the fuzz harness prints its statistics and crashes")]

mod alloc;
mod mutate;
mod targets;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use mutate::Rng;

/// The most one input may make a parser hold at once, whatever its size.
const MAX_PEAK: usize = 64 << 20;

/// The most a parser may hold at once for an input of `len` bytes: a
/// little, plus a small multiple of the input, so that a length field
/// that makes a parser reserve far more than the bytes it was given is
/// caught. The blob target may also fill its output limit (1 MiB).
fn allowed_peak(target: &str, len: usize) -> usize {
    let own = if target == "blob" { 2 << 20 } else { 1 << 20 };
    // The TOML parser keeps every syntax error it recovers from, about
    // 500 bytes per broken line: a policy's bound is its size limit
    // (128 KiB), not a small multiple of its length.
    let per_byte = if target == "policy" { 512 } else { 64 };
    (own + per_byte * len).min(MAX_PEAK)
}
/// The address space of a fuzzing child: a backstop for allocations the
/// counting allocator would see too late.
const ADDRESS_SPACE: u64 = 2 << 30;
/// Inputs kept in the working corpus of a target, at most.
const WORKING_CORPUS: usize = 4096;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus").join(target)
}

fn crash_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-crashes")
}

fn load_corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("seed corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let seeds: Vec<Vec<u8>> = names.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// What a parser said, reduced to its kind: digits and hex runs vary
/// with every input and say nothing new.
fn signature(outcome: &Result<(), String>) -> String {
    match outcome {
        Ok(()) => "ok".into(),
        Err(e) => e.chars().filter(|c| !c.is_ascii_digit()).take(48).collect(),
    }
}

/// What starts the line of figures a child prints (after libtest's own
/// `test name ... ` on the same line).
const STATS_MARK: &str = "fuzz figures: ";

/// What a child reports on stdout.
#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Stats {
    target: String,
    iterations: u64,
    seconds: f64,
    crashes: u64,
    /// Distinct outcomes seen (error kinds), a rough measure of reach.
    outcomes: usize,
    corpus: usize,
    peak_bytes: usize,
}

/// The fuzzing loop, in the child.
fn fuzz_here(name: &str) -> Stats {
    let run = targets::by_name(name);
    // Errors are the point: no panic message for each caught panic.
    std::panic::set_hook(Box::new(|_| {}));
    let limit = libc::rlimit { rlim_cur: ADDRESS_SPACE, rlim_max: ADDRESS_SPACE };
    // SAFETY: setrlimit only lowers this process's own limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0, "setrlimit");
    let seed: u64 = std::env::var("CAIRN_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let iters: Option<u64> = std::env::var("CAIRN_FUZZ_ITERS").ok().and_then(|s| s.parse().ok());
    let secs: Option<u64> = std::env::var("CAIRN_FUZZ_SECS").ok().and_then(|s| s.parse().ok());
    let (iters, deadline) = match (iters, secs) {
        (_, Some(s)) => (u64::MAX, Some(Duration::from_secs(s))),
        (Some(n), None) => (n, None),
        (None, None) => (2_000, None),
    };
    let mut corpus = load_corpus(name);
    let mut seen: HashSet<String> = HashSet::new();
    let mut rng = Rng::new(seed ^ mutate::hash_name(name));
    let start = Instant::now();
    let mut stats =
        Stats { target: name.into(), iterations: 0, seconds: 0.0, crashes: 0, outcomes: 0, corpus: 0, peak_bytes: 0 };
    // The seeds themselves first, unchanged.
    let mut pending: Vec<Vec<u8>> = corpus.iter().rev().cloned().collect();
    while stats.iterations < iters && deadline.is_none_or(|d| start.elapsed() < d) {
        let input = pending.pop().unwrap_or_else(|| {
            let base = &corpus[rng.below(corpus.len())];
            mutate::mutate(&mut rng, base, &corpus)
        });
        stats.iterations += 1;
        let base = alloc::reset_peak();
        let outcome = std::panic::catch_unwind(|| run(&input));
        let peak = alloc::peak().saturating_sub(base);
        stats.peak_bytes = stats.peak_bytes.max(peak);
        let crash = match &outcome {
            Err(p) => Some(format!(
                "panic: {}",
                p.downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default()
            )),
            Ok(_) if peak > allowed_peak(name, input.len()) => {
                Some(format!("held {peak} bytes at once for a {}-byte input", input.len()))
            }
            Ok(_) => None,
        };
        if let Some(why) = crash {
            stats.crashes += 1;
            let dir = crash_dir().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{}.bin", blake3::hash(&input).to_hex()));
            std::fs::write(&file, &input).unwrap();
            eprintln!("CRASH in {name}: {why}; input saved in {}", file.display());
            continue;
        }
        let sig = signature(&outcome.unwrap());
        if seen.insert(sig) && corpus.len() < WORKING_CORPUS {
            corpus.push(input);
        }
    }
    stats.seconds = start.elapsed().as_secs_f64();
    stats.outcomes = seen.len();
    stats.corpus = corpus.len();
    stats
}

/// Runs target `name` in a child process and asserts it found nothing.
fn fuzz(name: &str) {
    let test = format!("fuzz_{name}");
    if std::env::var("CAIRN_FUZZ_CHILD").as_deref() == Ok(name) {
        let stats = fuzz_here(name);
        println!("{STATS_MARK}{}", serde_json::to_string(&stats).unwrap());
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env("CAIRN_FUZZ_CHILD", name)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the {name} fuzzer died ({:?}):\n{stdout}\n{stderr}", out.status);
    let stats: Stats = stdout
        .lines()
        .find_map(|l| l.find(STATS_MARK).and_then(|at| serde_json::from_str(&l[at + STATS_MARK.len()..]).ok()))
        .unwrap_or_else(|| panic!("no figures from the {name} fuzzer:\n{stdout}\n{stderr}"));
    // The figures docs/RELIABILITY.md records (shown with --nocapture).
    println!(
        "fuzz {name}: {} inputs in {:.0} s, {} crashes, {} outcomes, corpus {}, peak {} KiB",
        stats.iterations,
        stats.seconds,
        stats.crashes,
        stats.outcomes,
        stats.corpus,
        stats.peak_bytes / 1024
    );
    assert_eq!(stats.crashes, 0, "the {name} fuzzer found crashes:\n{stderr}");
    assert!(stats.iterations > 0);
}

#[test]
fn fuzz_pack() {
    fuzz("pack");
}

#[test]
fn fuzz_index() {
    fuzz("index");
}

#[test]
fn fuzz_tree() {
    fuzz("tree");
}

#[test]
fn fuzz_snapshot() {
    fuzz("snapshot");
}

#[test]
fn fuzz_key_slot() {
    fuzz("key_slot");
}

#[test]
fn fuzz_config() {
    fuzz("config");
}

#[test]
fn fuzz_evidence_record() {
    fuzz("evidence_record");
}

#[test]
fn fuzz_blob() {
    fuzz("blob");
}

#[test]
fn fuzz_policy() {
    fuzz("policy");
}

/// Each target is fed its own seeds unchanged and accepts them: a check
/// that the corpus is what its directory says (a seed rejected for being
/// of another kind would make the fuzzing of that target shallow).
#[test]
fn every_seed_is_accepted_by_its_parser() {
    for name in targets::NAMES {
        let run = targets::by_name(name);
        for (i, seed) in load_corpus(name).iter().enumerate() {
            assert_eq!(run(seed), Ok(()), "seed {i} of {name}");
        }
    }
}

/// The mutations are a pure function of the seed.
#[test]
fn mutations_are_reproducible_from_the_seed() {
    let corpus = load_corpus("tree");
    let run = |seed| {
        let mut rng = Rng::new(seed);
        (0..200).map(|_| mutate::mutate(&mut rng, &corpus[0], &corpus)).collect::<Vec<_>>()
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6));
}

/// Writes the seed corpus from objects the library makes. Run by hand
/// (`cargo test --test fuzz -- --ignored write_seed_corpus`) when a format
/// changes; the output is checked in.
#[test]
#[ignore]
fn write_seed_corpus() {
    for (target, seeds) in targets::seeds() {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
        }
    }
}

// ------------------------------------------------------------ crashes found

/// Found by `fuzz_index`: an index file of a few hundred bytes whose pack
/// claims 4 billion entries made the decoder reserve room for a million
/// of them (48 MiB) before finding the bytes missing. It now reserves no
/// more than the bytes left can hold.
#[test]
fn bug_an_index_entry_count_reserved_memory_its_bytes_cannot_hold() {
    let mut b = b"CIDX\x01".to_vec();
    b.extend_from_slice(&0u32.to_le_bytes()); // supersedes nothing
    b.extend_from_slice(&1u32.to_le_bytes()); // one pack
    b.extend_from_slice(&[7; 32]); // its id
    b.push(0); // data
    b.extend_from_slice(&100u64.to_le_bytes()); // its size
    b.extend_from_slice(&u32::MAX.to_le_bytes()); // "4 billion blobs"
    b.extend_from_slice(&[1; 44]); // and one
    let base = alloc::reset_peak();
    let r = cairn::repo::index::IndexFile::decode(&b);
    let peak = alloc::peak() - base;
    assert_eq!(r.unwrap_err(), "truncated");
    assert!(peak < 4096, "held {peak} bytes for a {}-byte index file", b.len());
}

/// Found by `fuzz_policy`: a policy of 65,000 broken lines (264 KB) held
/// 33 MB, the TOML parser keeping each error; at 1 MiB of two-byte broken
/// lines it would be a quarter of a gigabyte. A policy is now at most
/// 128 KiB, and only its first broken lines are reported one by one.
#[test]
fn bug_a_policy_of_broken_lines_held_memory_for_each_of_them() {
    let src = "a\n".repeat(mutate::MAX_INPUT / 2);
    let base = alloc::reset_peak();
    let r = cairn::policy::load_str(&src, std::path::Path::new("p.toml"));
    let peak = alloc::peak() - base;
    assert_eq!(r.unwrap_err().len(), 1);
    assert!(peak <= allowed_peak("policy", src.len()), "held {peak} bytes for a {}-byte policy", src.len());
}
