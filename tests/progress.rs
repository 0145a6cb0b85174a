//! The progress of a backup or a copy when stderr is not a terminal: a
//! plain line every `--progress-interval`, with exact byte counts that
//! parse; a stream (`--stdin`) shows the bytes read and no total; the last
//! line's totals are the summary's, unchanged files (of a copy: files in
//! directories copied already) included.

mod common;

use std::io::{BufRead, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A parsed progress line.
#[derive(Debug, PartialEq)]
struct Line {
    files: Option<(u64, u64)>,
    bytes: u64,
    total: Option<u64>,
    errors: u64,
}

/// Parses `progress: 3/10 files, 4.0 MiB/12.0 MiB (4194304/12582912 bytes), …, 1 errors[, path]`
/// or `progress: 3.0 MiB (3145728 bytes) read, …, 0 errors`; `None` for another line.
fn parse(line: &str) -> Option<Line> {
    let rest = line.strip_prefix("progress: ")?;
    let inside = &rest[rest.find('(')? + 1..rest.find(" bytes)")?];
    let (bytes, total) = match inside.split_once('/') {
        Some((d, t)) => (d.parse().ok()?, Some(t.parse().ok()?)),
        None => (inside.parse().ok()?, None),
    };
    let files = match rest.split_once(" files, ") {
        Some((f, _)) => {
            let (d, t) = f.split_once('/')?;
            Some((d.parse().ok()?, t.parse().ok()?))
        }
        None => None,
    };
    let errors = rest.split(", ").find_map(|p| p.strip_suffix(" errors"))?.parse().ok()?;
    Some(Line { files, bytes, total, errors })
}

/// The progress lines of a finished command's stderr; every line that
/// starts like one must parse.
fn lines(stderr: &[u8]) -> Vec<Line> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("progress:"))
        .map(|l| parse(l).unwrap_or_else(|| panic!("a progress line that does not parse: {l}")))
        .collect()
}

#[test]
fn a_slow_stream_shows_bytes_read_as_it_goes_with_no_total_and_ends_at_the_summarys_count() {
    let env = Env::new();
    let mut child = env
        .command()
        .args(["backup", "--json", "--stdin", "--stdin-name", "dump", "--progress-interval", "20ms"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for l in std::io::BufReader::new(stderr).lines() {
            let _ = tx.send(l.unwrap());
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let first = random_bytes(2_000_000, 1);
    stdin.write_all(&first).unwrap();
    stdin.flush().unwrap();
    // The source is slow: nothing more comes until cairn has said how far
    // it got with what it was given.
    let mut seen = Vec::new();
    loop {
        let l = rx.recv_timeout(Duration::from_secs(120)).expect("a progress line while the stream is open");
        let moved = parse(&l).is_some_and(|p| p.bytes > 0);
        seen.push(l);
        if moved {
            break;
        }
    }
    stdin.write_all(&random_bytes(1_000_000, 2)).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    seen.extend(rx.try_iter());
    assert!(out.status.success(), "{}", seen.join("\n"));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stored = summary["summary"]["bytes_total"].as_u64().unwrap();
    assert_eq!(stored, 3_000_000);

    let parsed = lines(seen.join("\n").as_bytes());
    assert!(parsed.len() >= 2, "{seen:?}");
    for (i, p) in parsed.iter().enumerate() {
        assert_eq!((p.files, p.total, p.errors), (None, None, 0), "a stream has no total: {}", seen[i]);
    }
    let mid = parsed.iter().find(|p| p.bytes > 0).unwrap();
    assert!(mid.bytes <= first.len() as u64, "counted only what was read: {mid:?}");
    assert!(parsed.windows(2).all(|w| w[0].bytes <= w[1].bytes), "{seen:?}");
    assert_eq!(parsed.last().unwrap().bytes, stored, "the last line is the summary's count");
}

#[test]
fn the_last_line_of_a_backup_and_of_an_incremental_one_has_the_summarys_files_and_bytes() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..6u64 {
        std::fs::write(src.join("d").join(format!("f{i}")), random_bytes(300_000 + i as usize, i)).unwrap();
    }
    std::fs::write(src.join("empty"), b"").unwrap();
    std::os::unix::fs::symlink("d/f0", src.join("link")).unwrap();
    for round in ["first", "incremental"] {
        if round == "incremental" {
            std::fs::write(src.join("d/f0"), random_bytes(123_456, 99)).unwrap();
        }
        let out = env
            .command()
            .args(["backup", "--json", "--progress-interval", "1ms", src.to_str().unwrap()])
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        let (files, bytes) =
            (s["summary"]["files_total"].as_u64().unwrap(), s["summary"]["bytes_total"].as_u64().unwrap());
        let parsed = lines(&out.stderr);
        let last = parsed.last().unwrap_or_else(|| panic!("{round}: no progress line"));
        assert_eq!(last.files, Some((files, files)), "{round}: {parsed:?}");
        assert_eq!((last.bytes, last.total), (bytes, Some(bytes)), "{round}: {parsed:?}");
        assert_eq!(last.errors, 0);
        for p in &parsed {
            let (done, total) = p.files.unwrap();
            assert!(done <= total && p.bytes <= p.total.unwrap(), "{round}: {p:?}");
        }
        if round == "incremental" {
            assert_eq!(s["summary"]["files_unchanged"], 6, "{s}");
        }
    }
}

/// A copy's lines count files and bytes against the copied snapshots'
/// summaries; its last line is the copy's summary, and for a second copy
/// that reads no file again, the directories found copied count as done.
#[test]
fn the_lines_of_a_copy_count_toward_the_snapshots_and_the_last_is_the_copys_summary() {
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d/e")).unwrap();
    for i in 0..8u64 {
        std::fs::write(src.join("d").join(format!("f{i}")), random_bytes(200_000 + i as usize, i)).unwrap();
    }
    std::fs::write(src.join("d/e/small"), b"small").unwrap();
    std::fs::write(src.join("empty"), b"").unwrap();
    let first = env.backup_json(&[&src], &[]);
    let dest = env.path("offsite");
    let out = env
        .command()
        .env("CAIRN_REPO", &dest)
        .env("CAIRN_PASSWORD", "the copy's password")
        .args(["init", "--kdf-memory-kib", "19456"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for round in ["first", "second"] {
        if round == "second" {
            // A new snapshot of the same files: the copy finds every directory copied already.
            env.backup_json(&[&src], &["--force"]);
        }
        let out = env
            .command()
            .env("CAIRN_TO_PASSWORD", "the copy's password")
            .args(["copy", "--json", "--progress-interval", "1ms", "--to", dest.to_str().unwrap(), "latest"])
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        let (files, bytes) = (s["files_total"].as_u64().unwrap(), s["bytes_total"].as_u64().unwrap());
        // Every file of the snapshot, whether read or found copied.
        assert_eq!((files, bytes), (10, 8 * 200_000 + 28 + 5), "{round}: {s}");
        assert_eq!(
            (files, bytes),
            (first["summary"]["files_total"].as_u64().unwrap(), first["summary"]["bytes_total"].as_u64().unwrap())
        );
        let parsed = lines(&out.stderr);
        let last = parsed.last().unwrap_or_else(|| panic!("{round}: no progress line"));
        assert_eq!(last.files, Some((files, files)), "{round}: {parsed:?}");
        assert_eq!((last.bytes, last.total, last.errors), (bytes, Some(bytes), 0), "{round}: {parsed:?}");
        for p in &parsed {
            let (done, total) = p.files.unwrap();
            assert!(done <= total && p.bytes <= p.total.unwrap(), "{round}: {p:?}");
            // The total is the snapshot's from the moment the copy knows what it copies.
            let before_the_plan = p.total == Some(0) && p.bytes == 0;
            assert!(p.total == Some(bytes) || before_the_plan, "{round}: {p:?}");
        }
        if round == "second" {
            assert_eq!((s["files"].as_u64(), s["bytes"].as_u64()), (Some(0), Some(0)), "nothing read again: {s}");
        } else {
            assert_eq!((s["files"].as_u64(), s["bytes"].as_u64()), (Some(files), Some(bytes)), "{s}");
        }
    }
}

#[test]
fn a_zero_or_malformed_interval_is_refused() {
    let env = Env::new();
    for bad in ["0s", "0ms", "soon"] {
        let out = env.cairn(&["backup", "--progress-interval", bad, "/nonexistent"]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
