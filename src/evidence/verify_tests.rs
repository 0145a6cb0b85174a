//! Verification from exported files: the legacy chain with one key, host
//! chains with a keys file, heads and anchors.

use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

use super::super::key::{key_id, public_text};
use super::super::objects::{sign_head, ChainHead, Chains};
use super::super::record::{file_stem, sign};
use super::super::signer::{KeySource, Signer};
use super::super::trust::{parse_keys, RevokedAfter};
use super::*;

/// A legacy chain of `n` records (record 0 the init) written to a
/// directory as `export` writes it.
fn chain(n: u64) -> (tempfile::TempDir, SigningKey) {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    (chain_signed(&key, n, "backup"), key)
}

fn chain_signed(key: &SigningKey, n: u64, kind: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut prev: Option<String> = None;
    for seq in 0..n {
        let Value::Object(mut r) = json!({
            "v": 1, "seq": seq, "time": format!("2025-03-01T02:00:{seq:02}.000000Z"),
            "kind": if seq == 0 { "init" } else { kind },
            "policy": "db", "repository": "cd".repeat(32), "prev": prev, "payload": {"outcome": "success"},
        }) else {
            unreachable!()
        };
        let (_, bytes) = sign(key, &mut r).unwrap();
        prev = Some(blake3::hash(&bytes).to_hex().to_string());
        std::fs::write(dir.path().join(format!("{}.json", file_stem(seq))), [&bytes[..], b"\n"].concat()).unwrap();
    }
    std::fs::write(dir.path().join("pubkey.txt"), public_text(&key.verifying_key())).unwrap();
    dir
}

fn verify(dir: &Path, key: &SigningKey) -> VerifyReport {
    verify_dir(dir, &public_text(&key.verifying_key())).unwrap()
}

fn kinds(r: &VerifyReport) -> Vec<(ProblemKind, Option<u64>)> {
    r.problems.iter().map(|p| (p.kind, p.seq)).collect()
}

fn path(dir: &Path, seq: u64) -> std::path::PathBuf {
    dir.join(format!("{}.json", file_stem(seq)))
}

#[test]
fn an_intact_chain_verifies_and_reports_its_head() {
    let (dir, key) = chain(5);
    let r = verify(dir.path(), &key);
    assert!(r.is_intact(), "{:?}", r.problems);
    assert_eq!((r.files, r.records.len()), (5, 5));
    assert_eq!(r.head.as_ref().unwrap().seq, 4);
    assert_eq!(r.repository.as_deref(), Some("cd".repeat(32).as_str()));
    assert!(r.notes.iter().any(|n| n.contains("legacy key")), "the legacy signer is named: {:?}", r.notes);
}

#[test]
fn a_keys_file_pins_the_legacy_key_of_each_repository_and_each_verifies_under_its_own() {
    let ((a, ka), (b, kb)) = (chain(4), chain(3));
    let lines = |extra: &str| {
        format!("@legacy {}\n@legacy {}{extra}\n", public_text(&ka.verifying_key()), public_text(&kb.verifying_key()))
    };
    let trust = parse_keys(&lines(""), "k").unwrap().trust;
    let now = Utc::now();
    for (dir, n) in [(&a, 4), (&b, 3)] {
        let r = verify_dir_with(dir.path(), &trust, now).unwrap();
        assert!(r.is_intact(), "{:?}", r.problems);
        assert_eq!(r.records.len(), n);
    }
    // A revocation holds for its own repository's key only.
    let trust = parse_keys(&lines(" revoked-after=0"), "k").unwrap().trust;
    assert!(verify_dir_with(a.path(), &trust, now).unwrap().records.iter().all(|r| !r.revoked));
    let r = verify_dir_with(b.path(), &trust, now).unwrap();
    assert_eq!(r.records.iter().filter(|r| r.revoked).count(), 2, "b's records after its init");
    // A chain that neither signed still does not verify.
    let (c, _) = chain(2);
    assert!(!verify_dir_with(c.path(), &trust, now).unwrap().is_intact());
    // The same key twice is still a mistake.
    let twice = format!("{}@legacy {}\n", lines(""), public_text(&kb.verifying_key()));
    let e = parse_keys(&twice, "k").err().unwrap().to_string();
    assert!(e.contains("listed twice") && e.contains("line 3"), "{e}");
}

#[test]
fn anchors_catch_a_truncated_or_rewritten_chain() {
    let (dir, key) = chain(5);
    let head = verify(dir.path(), &key).head.unwrap();
    let mut r = verify(dir.path(), &key);
    r.check_anchor(head.seq, &head.hash);
    assert!(r.is_intact());
    // The newest record removed: the records alone cannot tell…
    std::fs::remove_file(path(dir.path(), 4)).unwrap();
    let mut r = verify(dir.path(), &key);
    assert!(r.is_intact());
    // …the anchor can.
    r.check_anchor(head.seq, &head.hash);
    assert_eq!(kinds(&r), [(ProblemKind::Removed, Some(4))]);
    assert!(r.head.is_none());
    // A chain rewritten by the key's holder verifies on its own, but not
    // against an anchor from before.
    let rewritten = chain_signed(&key, 5, "drill");
    let mut r = verify(rewritten.path(), &key);
    assert!(r.is_intact());
    r.check_anchor(3, &verify(dir.path(), &key).records[3].hash);
    assert_eq!(kinds(&r), [(ProblemKind::Altered, Some(3))]);
}

#[test]
fn a_removed_record_is_named() {
    let (dir, key) = chain(6);
    std::fs::remove_file(path(dir.path(), 2)).unwrap();
    let r = verify(dir.path(), &key);
    assert_eq!(kinds(&r), [(ProblemKind::Removed, Some(2))]);
    assert_eq!(r.problems[0].file.as_deref(), Some("000000000002.json"));
    assert!(r.head.is_none());
    // A run of removed records is one problem; a missing start is the
    // evidence restarted too.
    std::fs::remove_file(path(dir.path(), 3)).unwrap();
    std::fs::remove_file(path(dir.path(), 0)).unwrap();
    let r = verify(dir.path(), &key);
    assert_eq!(
        kinds(&r),
        [(ProblemKind::Removed, Some(0)), (ProblemKind::Restarted, Some(0)), (ProblemKind::Removed, Some(2))]
    );
    assert!(r.problems[2].detail.contains("2 to 3"), "{}", r.problems[2].detail);
}

#[test]
fn swapped_records_are_reordered() {
    let (dir, key) = chain(6);
    let (a, b) = (path(dir.path(), 1), path(dir.path(), 4));
    let tmp = dir.path().join("tmp");
    std::fs::rename(&a, &tmp).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(&tmp, &b).unwrap();
    let r = verify(dir.path(), &key);
    assert_eq!(kinds(&r), [(ProblemKind::Reordered, Some(1)), (ProblemKind::Reordered, Some(4))]);
    assert_eq!(r.problems[0].file.as_deref(), Some("000000000004.json"));
    assert_eq!(r.problems[1].file.as_deref(), Some("000000000001.json"));
}

#[test]
fn a_copy_of_a_record_under_another_seq_is_a_replay() {
    let (dir, key) = chain(4);
    std::fs::copy(path(dir.path(), 2), path(dir.path(), 4)).unwrap();
    let r = verify(dir.path(), &key);
    assert_eq!(kinds(&r), [(ProblemKind::Replayed, Some(2))]);
    assert_eq!(r.problems[0].file.as_deref(), Some("000000000004.json"));
    assert!(r.problems[0].detail.contains("presented as record 4"), "{}", r.problems[0].detail);
}

#[test]
fn an_edited_record_is_altered_and_only_that_one() {
    let (dir, key) = chain(5);
    let p = path(dir.path(), 3);
    let text = std::fs::read_to_string(&p).unwrap().replace("\"success\"", "\"failure\"");
    std::fs::write(&p, text).unwrap();
    let r = verify(dir.path(), &key);
    assert_eq!(kinds(&r), [(ProblemKind::Altered, Some(3))]);
    assert!(r.problems[0].detail.contains("signature"), "{}", r.problems[0].detail);
    std::fs::write(&p, "not json").unwrap();
    assert_eq!(kinds(&verify(dir.path(), &key)), [(ProblemKind::Altered, Some(3))]);
}

#[test]
fn a_record_from_another_chain_does_not_link() {
    // Both chains are signed by the same key: only the links tell them apart.
    let (dir, key) = chain(4);
    let other = chain_signed(&key, 4, "drill");
    std::fs::copy(path(other.path(), 2), path(dir.path(), 2)).unwrap();
    let r = verify(dir.path(), &key);
    assert_eq!(kinds(&r), [(ProblemKind::Reordered, Some(2)), (ProblemKind::Reordered, Some(3))]);
}

#[test]
fn a_wrong_key_verifies_nothing_and_a_bad_key_is_an_error() {
    let (dir, _) = chain(3);
    let r = verify(dir.path(), &SigningKey::generate(&mut rand::rngs::OsRng));
    assert!(r.nothing_verified());
    assert_eq!(r.problems.iter().filter(|p| p.kind == ProblemKind::Altered).count(), 3);
    assert!(matches!(verify_dir(dir.path(), "ssh-ed25519 AAAA"), Err(crate::Error::InvalidPublicKey { .. })));
}

#[test]
fn an_empty_directory_is_not_an_intact_chain() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    assert_eq!(kinds(&verify(dir.path(), &key)), [(ProblemKind::Removed, Some(0))]);
}

// ------------------------------------------------------------ host chains

const REPO: &str = "abababababababababababababababababababababababababababababababab";

/// Host chains written as an export, with a head after every record.
struct Fleet {
    dir: tempfile::TempDir,
    chains: Chains,
    /// Heads are written a microsecond apart, in the order of the appends.
    clock: i64,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet { dir: tempfile::tempdir().unwrap(), chains: Chains::new(), clock: 0 }
    }

    fn host(&mut self, name: &str) -> Signer {
        let s =
            Signer::host(SigningKey::generate(&mut rand::rngs::OsRng), KeySource::State).for_host(Some(name.into()));
        let kind = if self.chains.is_empty() { "init" } else { "enroll" };
        self.add(
            &s,
            kind,
            json!({"public_key": s.public_text(), "host": name, "key_id": s.key_id()}),
            "2026-03-01T00:00:00Z",
        );
        s
    }

    fn add(&mut self, s: &Signer, kind: &str, payload: Value, time: &str) -> u64 {
        let last = self.chains.get(s.key_id()).cloned();
        let seq = last.as_ref().map_or(0, |h| h.seq + 1);
        let Value::Object(mut r) = json!({
            "v": 2, "signer": s.key_id(), "seq": seq, "time": time, "kind": kind, "policy": "web",
            "repository": REPO, "prev": last.map(|h| h.hash), "payload": payload,
        }) else {
            unreachable!()
        };
        let (_, bytes) = sign(s, &mut r).unwrap();
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let p = self.dir.path().join(store::export_path(s.key_id(), seq));
        std::fs::write(&p, [&bytes[..], b"\n"].concat()).unwrap();
        self.chains.insert(s.key_id().into(), ChainHead { seq, hash });
        self.clock += 1;
        let t = DateTime::parse_from_rfc3339("2026-03-05T00:00:00Z").unwrap().with_timezone(&Utc)
            + chrono::Duration::microseconds(self.clock);
        let (head, _) = sign_head(s, REPO, t, &self.chains).unwrap();
        let hp = self.dir.path().join(format!("head-{}-{}-{seq}.json", t.timestamp_micros(), s.key_id()));
        std::fs::write(hp, head).unwrap();
        seq
    }

    fn backup(&mut self, s: &Signer, snapshot: &str, host: &str, snapshot_time: &str) -> u64 {
        let payload =
            json!({"outcome": "success", "snapshot": snapshot, "hostname": host, "snapshot_time": snapshot_time});
        self.add(s, "backup", payload, "2026-03-02T00:00:00Z")
    }

    fn keys(&self, lines: &[String]) -> Trust {
        parse_keys(&lines.join("\n"), "test").unwrap().trust
    }

    fn verify(&self, trust: &Trust) -> VerifyReport {
        let now = DateTime::parse_from_rfc3339("2026-03-10T00:00:00Z").unwrap().with_timezone(&Utc);
        verify_dir_with(self.dir.path(), trust, now).unwrap()
    }

    fn record(&self, s: &Signer, seq: u64) -> std::path::PathBuf {
        self.dir.path().join(store::export_path(s.key_id(), seq))
    }
}

fn line(host: &str, s: &Signer) -> String {
    format!("{host} {}", s.public_text())
}

fn problems(r: &VerifyReport) -> Vec<(ProblemKind, Option<String>, Option<u64>)> {
    r.problems.iter().map(|p| (p.kind, p.signer.clone(), p.seq)).collect()
}

#[test]
fn host_chains_verify_with_pinned_keys_and_name_their_newest_head() {
    let mut f = Fleet::new();
    let (a, b) = (f.host("db1"), f.host("web1"));
    f.backup(&a, &"1".repeat(64), "db1", "2026-03-01T23:00:00Z");
    f.backup(&b, &"2".repeat(64), "web1", "2026-03-01T23:00:00Z");
    let r = f.verify(&f.keys(&[line("db1", &a), line("web1", &b)]));
    assert!(r.is_intact(), "{:?}", r.problems);
    assert_eq!(r.records.len(), 4);
    assert_eq!(r.chains.len(), 2);
    let newest = r.newest_head.as_ref().unwrap();
    assert_eq!((newest.chains, newest.signer.as_str()), (2, b.key_id()));
    assert_eq!(r.records.iter().find(|x| x.kind == "init").unwrap().host.as_deref(), Some("db1"));
}

#[test]
fn a_key_not_in_the_keys_file_counts_for_nothing() {
    let mut f = Fleet::new();
    let (a, b) = (f.host("db1"), f.host("web1"));
    f.backup(&b, &"2".repeat(64), "web1", "2026-03-01T23:00:00Z");
    let r = f.verify(&f.keys(&[line("db1", &a)]));
    assert_eq!(problems(&r), [(ProblemKind::Untrusted, Some(b.key_id().into()), None)]);
    assert!(r.problems[0].detail.contains("enrolled for host web1"), "{}", r.problems[0].detail);
    assert!(r.records.iter().all(|x| x.signer == a.key_id()));
}

#[test]
fn heads_catch_the_newest_record_removed_and_the_chain_rewritten() {
    let mut f = Fleet::new();
    let (a, b) = (f.host("db1"), f.host("web1"));
    f.backup(&a, &"1".repeat(64), "db1", "2026-03-01T23:00:00Z");
    let last = f.backup(&a, &"3".repeat(64), "db1", "2026-03-02T23:00:00Z");
    f.backup(&b, &"2".repeat(64), "web1", "2026-03-01T23:00:00Z");
    let trust = f.keys(&[line("db1", &a), line("web1", &b)]);
    let anchor = f.verify(&trust).newest_head.unwrap().hash;
    // db1's newest record goes: b's later head still names it.
    std::fs::remove_file(f.record(&a, last)).unwrap();
    let mut r = f.verify(&trust);
    assert_eq!(problems(&r), [(ProblemKind::Removed, Some(a.key_id().into()), Some(last))]);
    assert!(r.problems[0].detail.contains(&format!("names record {last}")), "{}", r.problems[0].detail);
    r.check_anchors(&[Anchor::Head(anchor.clone())]);
    assert_eq!(r.newer_than_anchors, Some(false), "no head that verifies names everything the anchor did");
    // A record rewritten under the same seq (by the key's holder) breaks the link to every head.
    let mut g = Fleet::new();
    let a2 = g.host("db1");
    let s1 = g.backup(&a2, &"1".repeat(64), "db1", "2026-03-01T23:00:00Z");
    let trust2 = g.keys(&[line("db1", &a2)]);
    let mut other = Fleet { dir: tempfile::tempdir().unwrap(), chains: Chains::new(), clock: 100 };
    other.chains.insert(a2.key_id().into(), g.chains[a2.key_id()].clone());
    other.chains.get_mut(a2.key_id()).unwrap().seq = 0;
    other.chains.get_mut(a2.key_id()).unwrap().hash =
        blake3::hash(&std::fs::read(g.record(&a2, 0)).unwrap()[..std::fs::read(g.record(&a2, 0)).unwrap().len() - 1])
            .to_hex()
            .to_string();
    other.backup(&a2, &"9".repeat(64), "db1", "2026-03-01T23:00:00Z");
    std::fs::copy(other.record(&a2, s1), g.record(&a2, s1)).unwrap();
    let r = g.verify(&trust2);
    assert!(r.problems.iter().any(|p| p.kind == ProblemKind::Altered && p.seq == Some(s1)), "{:?}", r.problems);
}

#[test]
fn an_anchored_head_that_is_gone_is_named() {
    let mut f = Fleet::new();
    let a = f.host("db1");
    f.backup(&a, &"1".repeat(64), "db1", "2026-03-01T23:00:00Z");
    let trust = f.keys(&[line("db1", &a)]);
    let newest = f.verify(&trust).newest_head.unwrap();
    let mut r = f.verify(&trust);
    r.check_anchors(&[Anchor::Head(newest.hash.clone())]);
    assert!(r.is_intact() && r.newer_than_anchors == Some(true));
    for e in std::fs::read_dir(f.dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_str().unwrap().starts_with("head-") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let mut r = f.verify(&trust);
    r.check_anchors(&[Anchor::Head(newest.hash.clone())]);
    assert_eq!(problems(&r), [(ProblemKind::Removed, None, None)]);
    assert!(r.problems[0].detail.contains("is not here"), "{}", r.problems[0].detail);
}

#[test]
fn revoked_keys_other_hosts_and_future_snapshots_are_named() {
    let mut f = Fleet::new();
    let (a, b) = (f.host("db1"), f.host("web1"));
    let before = f.backup(&a, &"1".repeat(64), "db1", "2026-03-01T23:00:00Z");
    let after = f.backup(&a, &"2".repeat(64), "db1", "2026-03-01T23:30:00Z");
    let other = f.backup(&b, &"3".repeat(64), "db1", "2026-03-01T23:00:00Z");
    let future = f.backup(&b, &"4".repeat(64), "web1", "2099-01-01T00:00:00Z");
    let trust = f.keys(&[format!("{} revoked-after={before}", line("db1", &a)), line("web1", &b)]);
    assert_eq!(trust.get(a.key_id()).unwrap().revoked_after, Some(RevokedAfter::Seq(before)));
    let r = f.verify(&trust);
    let mut want = vec![
        (ProblemKind::Revoked, Some(a.key_id().into()), Some(after)),
        (ProblemKind::Host, Some(b.key_id().into()), Some(other)),
        (ProblemKind::Future, Some(b.key_id().into()), Some(future)),
    ];
    want.sort_by(|x, y| (&x.1, x.2).cmp(&(&y.1, y.2)));
    assert_eq!(problems(&r), want, "{:#?}", r.problems);
    let rec = |k: &Signer, s: u64| r.records.iter().find(|x| x.signer == k.key_id() && x.seq == s).unwrap();
    assert!(rec(&a, after).revoked && !rec(&a, before).revoked);
    assert!(rec(&b, other).host_mismatch && !rec(&b, other).counts());
    assert!(rec(&b, future).future);
    // An accept record of a trusted key clears a snapshot.
    let accept = f.add(&a, "accept", json!({"snapshot": "3".repeat(64)}), "2026-03-01T00:00:01Z");
    let r = f.verify(&f.keys(&[line("db1", &a), line("web1", &b)]));
    assert!(!problems(&r).iter().any(|p| p.0 == ProblemKind::Host), "{:?}", r.problems);
    // The same accept record, signed after the key's revocation, clears nothing.
    let r = f.verify(&f.keys(&[format!("{} revoked-after={before}", line("db1", &a)), line("web1", &b)]));
    assert!(r.records.iter().any(|x| x.signer == a.key_id() && x.seq == accept && x.revoked));
    assert!(
        problems(&r).contains(&(ProblemKind::Host, Some(b.key_id().into()), Some(other))),
        "bug: a revoked key's accept cleared the flag: {:?}",
        r.problems
    );
}

#[test]
fn a_revoke_record_revokes_and_a_pinned_host_that_differs_is_named() {
    let mut f = Fleet::new();
    let (a, b) = (f.host("db1"), f.host("web1"));
    let kept = f.backup(&b, &"1".repeat(64), "web1", "2026-03-01T23:00:00Z");
    f.add(&a, "revoke", json!({"key_id": b.key_id(), "after_seq": kept}), "2026-03-02T00:00:00Z");
    let late = f.backup(&b, &"2".repeat(64), "web1", "2026-03-01T23:30:00Z");
    let r = f.verify(&f.keys(&[line("db1", &a), line("web1", &b)]));
    assert_eq!(problems(&r), [(ProblemKind::Revoked, Some(b.key_id().into()), Some(late))]);
    assert!(r.problems[0].detail.contains("revoke record"), "{}", r.problems[0].detail);
    // The auditor pinned b for another host: its enrolment and its
    // snapshots' host are named.
    let r = f.verify(&f.keys(&[line("db1", &a), line("web7", &b)]));
    let host: Vec<Option<u64>> = r.problems.iter().filter(|p| p.kind == ProblemKind::Host).map(|p| p.seq).collect();
    assert_eq!(host, [Some(0), Some(kept), Some(late)], "{:#?}", r.problems);
    assert!(r.problems[0].detail.contains("pins this key for host web7, but it enrolled itself as host web1"));
    assert_eq!(
        r.records[0].host.as_deref(),
        if r.records[0].signer == b.key_id() { Some("web7") } else { Some("db1") }
    );
    let _ = key_id;
}
