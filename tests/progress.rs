//! The progress of a backup or a copy when stderr is not a terminal: a
//! plain line every `--progress-interval`, with exact byte counts that
//! parse; a stream (`--stdin`) shows the bytes read and no total; the last
//! line's totals are the summary's, unchanged files (of a copy: files in
//! directories copied already) included. On a terminal (a
//! pseudo-terminal): the bar with the file count and the file being read,
//! held mid-way at a failpoint, and a last line equal to the summary.
#![allow(clippy::print_stderr, reason = "a test prints what it measured")]

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
    assert!(seen.iter().rev().find(|l| l.starts_with("progress:")).unwrap().contains(", done, "), "{seen:?}");
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
        let text = String::from_utf8_lossy(&out.stderr);
        let raw: Vec<&str> = text.lines().filter(|l| l.starts_with("progress:")).collect();
        // The last line says the backup is done, not that it has 0 s left.
        assert!(raw.last().unwrap().contains(", done, ") && !raw.last().unwrap().contains("ETA"), "{round}: {raw:?}");
        assert!(raw[..raw.len() - 1].iter().all(|l| l.contains(", ETA ")), "{round}: {raw:?}");
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

/// The bar of a terminal frame: `(files done, files in all, "done/in all" bytes, the rest)`.
fn bar(line: &str) -> Option<(u64, u64, String, String)> {
    let rest = line.strip_prefix('[')?.split_once("] ")?.1;
    let (files, rest) = rest.split_once(" files  ")?;
    let (done, total) = files.split_once('/')?;
    let (bytes, rest) = rest.split_once("  ")?;
    Some((done.parse().ok()?, total.parse().ok()?, bytes.to_string(), rest.to_string()))
}

/// A 2 GiB backup on a terminal, held while a reader has just taken the
/// eleventh of 32 files (the failpoint `backup::reading`): the two lines
/// redrawn in place show the ten files stored, their bytes against the
/// 2 GiB found, and the file being read. Once released, the last line
/// left on the screen has the totals of the summary printed under it,
/// and says `done`.
///
/// Cheap on disk and CPU: the files are sparse, so they take no space and
/// reading them costs the kernel little, but cairn reads, chunks and
/// hashes every one of the 2 GiB (all chunks but one deduplicate). One
/// reader (`--threads 1`), so that the files are taken in order.
#[test]
fn on_a_terminal_a_2_gib_backup_shows_the_file_count_and_the_file_being_read_then_the_summarys_totals() {
    use cairn::text::human_bytes;
    use std::time::Instant;
    const FILE: u64 = 64 << 20;
    let env = Env::new();
    let src = env.path("src");
    for d in 0..4 {
        std::fs::create_dir_all(src.join(format!("d{d}"))).unwrap();
        for f in 0..8 {
            std::fs::File::create(src.join(format!("d{d}/f{f}"))).unwrap().set_len(FILE).unwrap();
        }
    }
    let total = 32 * FILE;
    assert_eq!(total, 2 << 30);
    let mut pause = Pause::new(env.path("pause"));
    let mut command = env.command();
    command.args(["--threads", "1", "backup", src.to_str().unwrap()]);
    // Files are taken in the order of their names: d0/f0 … d0/f7, d1/f0, …
    pause.arm(&mut command, "backup::reading:11");
    let started = Instant::now();
    let (mut child, output) = common::pty::Pty::new(200, 50).spawn(command);
    let mut screen = common::pty::Screen::default();
    // Guards against a hang, not timings: the backup takes seconds, and a
    // frame is drawn every quarter of a second.
    let limit = Duration::from_secs(600);
    pause.wait_paused(limit);

    let being_read = src.join("d1/f2").display().to_string();
    let held = format!("10/32 files  {}/{}", human_bytes(10 * FILE), human_bytes(total));
    // The backup stays held, so the frame it waits for, once drawn, is
    // drawn again every quarter of a second: a deadline, not a timing.
    let deadline = Instant::now() + Duration::from_secs(120);
    let frame = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(piece) = output.recv_timeout(left) else {
            panic!("no frame shows `{held}` over `{being_read}` while the backup is held: {:#?}", screen.lines())
        };
        screen.feed(&piece);
        let lines = screen.lines();
        // The frame drawn last: the bar, and the file under it.
        if let Some(i) = lines.iter().rposition(|l| bar(l).is_some()) {
            if lines[i].contains(&held) && lines.get(i + 1).is_some_and(|l| l.trim() == being_read) {
                break lines[i..].to_vec();
            }
        }
    };
    let (done, found, _, rest) = bar(&frame[0]).unwrap();
    assert_eq!((done, found), (10, 32), "{frame:?}");
    assert!(frame[0].starts_with("[======  "), "the bar is at 10/32 of the bytes: {frame:?}");
    assert!(rest.contains("/s") && rest.contains("ETA "), "rate and time left: {frame:?}");
    pause.release();

    let status = wait_exit(&mut child, limit);
    for piece in output.iter() {
        screen.feed(&piece);
    }
    let took = started.elapsed();
    let lines = screen.lines();
    assert!(status.success(), "{status:?}: {lines:#?}");
    // What the terminal shows at the end: the last line of the progress in
    // place of the two redrawn ones, then the snapshot id and the summary.
    let last = lines.iter().position(|l| bar(l).is_some()).expect("a progress line stays on the screen");
    assert_eq!(lines.iter().filter(|l| bar(l).is_some()).count(), 1, "one bar on the screen: {lines:#?}");
    let (done, found, bytes, rest) = bar(&lines[last]).unwrap();
    assert!(rest.ends_with("  done") && !rest.contains("ETA"), "{lines:#?}");
    assert!(lines[last].starts_with("[====================] "), "{lines:#?}");
    assert!(!lines.iter().any(|l| l.trim() == being_read), "the line of the file being read is gone: {lines:#?}");
    let id = lines[last + 1].trim();
    assert_eq!(id.len(), 64, "the snapshot id follows: {lines:#?}");
    assert!(lines[last + 2].starts_with(&format!("snapshot {} saved", &id[..8])), "{lines:#?}");
    let in_all = lines[last + 3].split_once(" unchanged (").and_then(|(_, r)| r.strip_suffix(')')).unwrap();
    let (files, size) = in_all.split_once(" in all, ").unwrap();
    assert_eq!((done, found), (files.parse().unwrap(), files.parse().unwrap()), "bar and summary: {lines:#?}");
    assert_eq!(bytes, format!("{size}/{size}"), "bar and summary: {lines:#?}");
    // And the summary is the whole 2 GiB, to the byte.
    let snaps: Value = serde_json::from_str(&env.ok(&["snapshots", "--json"])).unwrap();
    assert_eq!(snaps[0]["summary"]["files_total"], 32);
    assert_eq!(snaps[0]["summary"]["bytes_total"], total);
    assert_eq!(snaps[0]["summary"]["bytes_read"], total, "every byte was read");
    assert_eq!(size, human_bytes(total));
    eprintln!("2 GiB backup on a pseudo-terminal, held and released: {took:.1?}");
}
