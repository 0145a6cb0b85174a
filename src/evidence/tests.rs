//! The evidence chain against a real (local) repository.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;

use serde_json::json;

use super::*;
use crate::backend::{Backend, LocalBackend};
use crate::repo::limits;
use append::list_chain;
use store::record_key as chain_record_key;

fn stored_seqs(repo: &Repository) -> Result<Vec<u64>> {
    list_chain(repo, key::LEGACY_KEY_ID)
}

fn record_key(seq: u64) -> String {
    chain_record_key(key::LEGACY_KEY_ID, seq)
}
use crate::crypto::KdfParams;
use crate::repo::InitOptions;

const PW: &[u8] = b"evidence test password";

fn new_repo() -> (tempfile::TempDir, Arc<dyn Backend>, Repository) {
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(LocalBackend::new(dir.path().join("repo")));
    let opts =
        InitOptions { kdf: KdfParams { memory_kib: 19456, iterations: 1, parallelism: 1 }, ..Default::default() };
    let repo = Repository::init(backend.clone(), PW, opts).unwrap();
    start_chain(&repo).unwrap();
    (dir, backend, repo)
}

fn export_and_verify(repo: &Repository, dir: &Path) -> VerifyReport {
    let out = dir.join(format!("export-{}", rand::random::<u32>()));
    let s = export(repo, &out).unwrap();
    assert!(s.unreadable.is_empty(), "{:?}", s.unreadable);
    verify_dir(&out, &public_key_text(repo).unwrap()).unwrap()
}

#[test]
fn init_starts_the_chain_and_appends_link_to_it() {
    let (dir, _, repo) = new_repo();
    let a = append(&repo, "backup", Some("db"), json!({"outcome": "success", "files": 3})).unwrap();
    let b = append(&repo, "prune", None, json!({"outcome": "success"})).unwrap();
    assert_eq!((a.seq, b.seq), (1, 2));
    assert_eq!(b.record["prev"], json!(a.hash));
    assert_eq!(a.record["policy"], json!("db"));
    assert_eq!(a.record["repository"], json!(repo.id().to_hex()));
    assert_eq!(a.record["sig"], json!(a.signature));
    let r = export_and_verify(&repo, dir.path());
    assert!(r.is_intact(), "{:?}", r.problems);
    let kinds: Vec<&str> = r.records.iter().map(|x| x.kind.as_str()).collect();
    assert_eq!(kinds, ["init", "backup", "prune"]);
    assert_eq!(r.head, Some(verify::Head { seq: 2, hash: b.hash }));
}

#[test]
fn the_key_survives_reopening_and_its_secret_is_not_stored_in_the_clear() {
    let (dir, backend, repo) = new_repo();
    let text = public_key_text(&repo).unwrap();
    let reopened = Repository::open(backend.clone(), PW).unwrap();
    assert_eq!(public_key_text(&reopened).unwrap(), text);
    let signing = key::load(&repo).unwrap().unwrap();
    let stored = std::fs::read(dir.path().join("repo").join(key::KEY_OBJECT)).unwrap();
    assert!(!stored.windows(32).any(|w| w == signing.as_bytes()), "the secret seed is stored as is");
    let b64 = key::B64.encode(signing.as_bytes());
    assert!(!String::from_utf8_lossy(&stored).contains(&b64));
}

#[test]
fn a_repository_without_evidence_or_snapshots_starts_its_chain_with_init() {
    let (dir, backend, repo) = new_repo();
    // What a repository made before evidence existed, never backed up, looks like.
    std::fs::remove_dir_all(dir.path().join("repo/evidence")).unwrap();
    let repo2 = Repository::open(backend, PW).unwrap();
    let a = append(&repo2, "backup", None, json!({})).unwrap();
    assert_eq!(a.seq, 1, "record 0 is the init");
    append(&repo, "drill", Some("db"), json!({"passed": true})).unwrap();
    let r = export_and_verify(&repo, dir.path());
    assert!(r.is_intact(), "{:?}", r.problems);
    let kinds: Vec<&str> = r.records.iter().map(|x| x.kind.as_str()).collect();
    assert_eq!(kinds, ["init", "backup", "drill"]);
}

#[test]
fn bug_an_erased_chain_under_snapshots_was_silently_restarted() {
    let (dir, backend, repo) = new_repo();
    append(&repo, "backup", None, json!({})).unwrap();
    // A snapshot object (its content does not matter here), then the chain erased.
    backend.put(&format!("snapshots/{}", crate::id::Id::random()), b"x").unwrap();
    std::fs::remove_dir_all(dir.path().join("repo/evidence")).unwrap();
    let e = append(&repo, "backup", None, json!({})).unwrap_err();
    assert!(matches!(e, Error::EvidenceChainMissing { snapshots: 1 }), "{e}");
    assert!(e.hint().unwrap().contains("evidence adopt"));
    assert!(!dir.path().join("repo/evidence/key").exists(), "no new key");
    assert!(backend.list("evidence/records/").unwrap().is_empty(), "no new chain");
    // Nor with a host key.
    let state = tempfile::tempdir().unwrap();
    let appender = Appender::for_state_dir(state.path()).unwrap();
    let e = appender.append(&repo, "backup", None, json!({})).unwrap_err();
    assert!(matches!(e, Error::EvidenceChainMissing { .. }), "{e}");
    assert!(backend.list("evidence/").unwrap().is_empty(), "nothing written: {:?}", backend.list("evidence/"));
    // Adopting is explicit, and records the snapshots it found.
    let r = adopt(&repo, &Appender::legacy()).unwrap();
    assert_eq!((r.seq, r.record["kind"].as_str()), (0, Some("init")));
    assert_eq!(r.record["payload"]["adopted_snapshots"].as_array().unwrap().len(), 1);
}

#[test]
fn a_lost_key_is_never_replaced_while_records_exist() {
    let (dir, _, repo) = new_repo();
    append(&repo, "backup", None, json!({})).unwrap();
    std::fs::remove_file(dir.path().join("repo").join(key::KEY_OBJECT)).unwrap();
    let e = append(&repo, "backup", None, json!({})).unwrap_err();
    assert!(matches!(e, Error::EvidenceKeyMissing { records: 2 }), "{e}");
    assert!(e.hint().is_some());
    assert!(matches!(public_key_text(&repo), Err(Error::EvidenceKeyMissing { .. })));
    assert!(!dir.path().join("repo").join(key::KEY_OBJECT).exists());
}

#[test]
fn what_cannot_be_signed_is_refused_before_anything_is_written() {
    let (dir, _, repo) = new_repo();
    let e = append(&repo, "drill", None, json!({"rto": {"measured_secs": 41.7}})).unwrap_err();
    assert!(e.to_string().contains("payload.rto.measured_secs"), "{e}");
    assert!(append(&repo, "Drill", None, json!({})).is_err());
    assert!(append(&repo, "drill", None, json!([1])).is_err());
    assert_eq!(stored_seqs(&repo).unwrap(), [0]);
    assert!(std::fs::read_dir(dir.path().join("repo").join(LOCKS_DIR)).unwrap().next().is_none(), "lock left");
}

#[test]
fn records_are_sealed_in_the_repository() {
    let (dir, _, repo) = new_repo();
    append(&repo, "backup", Some("a-very-recognisable-policy-name"), json!({})).unwrap();
    for e in std::fs::read_dir(dir.path().join("repo").join(RECORDS_DIR)).unwrap() {
        let bytes = std::fs::read(e.unwrap().path()).unwrap();
        assert!(!String::from_utf8_lossy(&bytes).contains("recognisable"));
    }
}

#[test]
fn export_refuses_a_directory_that_is_not_empty() {
    let (dir, _, repo) = new_repo();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("000000000005.json"), "{}").unwrap();
    assert!(matches!(export(&repo, &out), Err(Error::NotEmpty { .. })));
}

#[test]
fn concurrent_appenders_make_one_unbroken_chain() {
    let (dir, backend, repo) = new_repo();
    const THREADS: u64 = 3;
    const EACH: u64 = 8;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let backend = backend.clone();
            s.spawn(move || {
                // Each appender opens the repository on its own, as a process would.
                let r = Repository::open(backend, PW).unwrap();
                for i in 0..EACH {
                    append(&r, "backup", None, json!({"thread": t, "i": i})).unwrap();
                }
            });
        }
    });
    let r = export_and_verify(&repo, dir.path());
    assert!(r.is_intact(), "{:?}", r.problems);
    assert_eq!(r.records.len() as u64, 1 + THREADS * EACH, "a record was overwritten");
    assert_eq!(r.head.unwrap().seq, THREADS * EACH);
}

#[test]
fn a_record_above_the_record_limit_is_refused_before_it_is_written() {
    let (_dir, _, repo) = new_repo();
    let huge = "x".repeat(limits::EVIDENCE_RECORD as usize);
    let e = append(&repo, "backup", None, json!({ "error": huge })).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert_eq!(stored_seqs(&repo).unwrap(), vec![0], "nothing was appended");
    // The chain goes on.
    assert_eq!(append(&repo, "backup", None, json!({})).unwrap().seq, 1);
}

#[test]
fn integrity_names_each_damaged_record_and_a_missing_or_damaged_key() {
    let (dir, backend, repo) = new_repo();
    append(&repo, "backup", None, json!({})).unwrap();
    let check_integrity = |repo: &Repository| -> Result<Vec<crate::check::Problem>> {
        Ok(check::check_repository(repo, &[], None, chrono::Utc::now())?.problems)
    };
    assert!(check_integrity(&repo).unwrap().is_empty());
    let path = dir.path().join("repo").join(record_key(1));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    // A record whose name and seq disagree.
    backend.put(&record_key(7), &std::fs::read(dir.path().join("repo").join(record_key(0))).unwrap()).unwrap();
    let mut p = check_integrity(&repo).unwrap();
    p.sort_by(|a, b| a.object.cmp(&b.object));
    let objects: Vec<&str> = p.iter().map(|x| x.object.as_str()).collect();
    assert_eq!(objects, [record_key(1).as_str(), record_key(7).as_str()]);
    assert!(p[0].message.contains("does not open") && p[0].message.contains("altered or damaged"), "{}", p[0].message);
    assert!(p[1].message.contains("a copy of record 0"), "{}", p[1].message);
    backend.delete(key::KEY_OBJECT).unwrap();
    let p = check_integrity(&repo).unwrap();
    let k = p.iter().find(|x| x.object == key::KEY_OBJECT).expect("the missing key is named");
    assert!(k.message.contains("is missing, but 3 evidence record(s) exist"), "{}", k.message);
}

/// `repo` with its backend wrapped in a [`Meeting`] of `rounds`, armed.
fn meeting(repo: &Repository, rounds: &[&[&str]]) -> (Repository, Arc<crate::backend::meeting::Meeting>) {
    let mut r = repo.clone();
    let m = crate::backend::meeting::Meeting::new(repo.backend().clone(), rounds);
    r.wrap_backend(|_| m.clone());
    m.arm();
    (r, m)
}

/// Under the lock, the legacy chain's append reads the records, the key and
/// the heads' names at once, then the last record and the newest head at
/// once: two round trips on remote storage instead of five. Its lock goes
/// while the head is written, one more.
#[test]
fn a_legacy_append_reads_its_chain_key_and_head_side_by_side() {
    let (dir, _, repo) = new_repo();
    append(&repo, "backup", None, json!({"outcome": "success"})).unwrap();
    let (watched, m) = meeting(
        &repo,
        &[
            &["evidence/records/", "evidence/key", "evidence/heads/"],
            &["evidence/records/", "evidence/heads/"],
            &["put evidence/heads/", "delete locks/evidence/"],
        ],
    );
    let r = append(&watched, "prune", None, json!({"outcome": "success"})).unwrap();
    assert!(m.met(), "the legacy append read its chain, key and head, or removed its lock, one after another");
    let locks = repo.backend().list("locks/").unwrap();
    assert!(locks.is_empty(), "the evidence lock was left behind: {locks:?}");
    assert_eq!(r.seq, 2);
    assert!(r.head.is_some() && r.warnings.is_empty(), "{:?}", r.warnings);
    assert!(export_and_verify(&repo, dir.path()).is_intact());
}

/// A host key's append reads its sub-chain and the heads' names at once,
/// then its tail record and the newest head at once.
#[test]
fn a_host_append_reads_its_tail_and_the_newest_head_side_by_side() {
    let (dir, _, repo) = new_repo();
    let state = tempfile::tempdir().unwrap();
    signer::create(state.path(), &signer::KeySource::State, None).unwrap();
    let host = Appender::for_state_dir(state.path()).unwrap();
    let chain = host.signer().unwrap().key_id().to_string();
    let enrolled = append::enroll(&repo, &host).unwrap();
    assert!(enrolled.newly);
    let own = format!("evidence/records/{chain}/");
    let (watched, m) = meeting(&repo, &[&[&own, "evidence/heads/"], &[&own, "evidence/heads/"]]);
    let r = host.append(&watched, "backup", None, json!({"outcome": "success"})).unwrap();
    assert!(m.met(), "the host append read its tail and the newest head one after another");
    assert_eq!((r.seq, r.signer.as_str()), (1, chain.as_str()));
    assert!(r.head.is_some() && r.warnings.is_empty(), "{:?}", r.warnings);
    let heads = append_head::newest_head(&repo, &key::read_key(&repo)).unwrap().unwrap();
    assert_eq!(heads.chains[&chain].seq, 1, "the new head names the record");
    let _ = dir;
}

/// Records the requests made through it: `get KEY`, `stat KEY`, `put
/// KEY` (create only, asking first where the storage ignores
/// `If-None-Match`) and `known KEY` ([`Backend::put_known_absent`]); its
/// listings leave out the keys under `hidden` (a listing that lags).
struct Seen {
    inner: Arc<dyn Backend>,
    requests: std::sync::Mutex<Vec<String>>,
    hidden: std::sync::Mutex<Vec<String>>,
}

impl Seen {
    fn note(&self, what: &str, key: &str) {
        self.requests.lock().unwrap().push(format!("{what} {key}"));
    }

    /// The keys of the requests of `what` under `prefix`.
    fn keys(&self, what: &str, prefix: &str) -> Vec<String> {
        let want = format!("{what} {prefix}");
        let seen = self.requests.lock().unwrap();
        seen.iter().filter(|r| r.starts_with(&want)).map(|r| r[what.len() + 1..].to_string()).collect()
    }
}

impl Backend for Seen {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, key: &str) -> crate::backend::BackendResult<Vec<u8>> {
        self.note("get", key);
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> crate::backend::BackendResult<Vec<u8>> {
        self.note("get", key);
        self.inner.get_range(key, offset, length)
    }
    fn put(&self, key: &str, data: &[u8]) -> crate::backend::BackendResult<()> {
        self.note("put", key);
        self.inner.put(key, data)
    }
    fn put_known_absent(&self, key: &str, data: &[u8]) -> crate::backend::BackendResult<()> {
        self.note("known", key);
        self.inner.put_known_absent(key, data)
    }
    fn put_mutable(&self, key: &str, data: &[u8]) -> crate::backend::BackendResult<()> {
        self.inner.put_mutable(key, data)
    }
    fn list(&self, prefix: &str) -> crate::backend::BackendResult<Vec<crate::backend::ObjectInfo>> {
        let hidden = self.hidden.lock().unwrap();
        Ok(self.inner.list(prefix)?.into_iter().filter(|o| !hidden.iter().any(|h| o.key.starts_with(h))).collect())
    }
    fn delete(&self, key: &str) -> crate::backend::BackendResult<()> {
        self.inner.delete(key)
    }
    fn stat(&self, key: &str) -> crate::backend::BackendResult<u64> {
        self.note("stat", key);
        self.inner.stat(key)
    }
}

/// `repo` with its backend wrapped in a [`Seen`].
fn seen(repo: &Repository) -> (Repository, Arc<Seen>) {
    let s = Arc::new(Seen { inner: repo.backend().clone(), requests: Default::default(), hidden: Default::default() });
    let mut r = repo.clone();
    r.wrap_backend(|_| s.clone());
    (r, s)
}

/// A record of a host key made in its state directory, and every head,
/// go up without asking just before whether the key exists (a round trip
/// less where the storage ignores `If-None-Match`): that directory's lock
/// serialises the key's appends, and a head's name holds its signer and
/// record. A legacy record asks: its lock is in the repository, where it
/// can be broken as stale or by `cairn unlock`, so a key found taken (here
/// through a listing that lags) is never replaced. So does the record of
/// a key from a file, which several state directories may hold.
#[test]
fn only_a_key_made_in_its_state_directory_writes_records_without_asking() {
    let (_dir, _, repo) = new_repo();
    let (r, s) = seen(&repo);
    let legacy = append(&r, "backup", None, json!({"outcome": "success"})).unwrap();
    assert_eq!(s.keys("put", "evidence/"), vec![record_key(legacy.seq)]);
    let known = s.keys("known", "evidence/");
    assert!(known.len() == 1 && known[0].starts_with("evidence/heads/"), "{known:?}");

    // Record 2 is there, but the listings show neither it nor the heads
    // that name it yet.
    let (r, s) = seen(&repo);
    append(&repo, "backup", None, json!({"outcome": "success"})).unwrap();
    let second = repo.backend().get(&record_key(2)).unwrap();
    s.hidden.lock().unwrap().extend([record_key(2), "evidence/heads/".to_string()]);
    let e = append(&r, "prune", None, json!({"outcome": "success"})).unwrap_err();
    assert!(e.to_string().contains(&record_key(2)), "{e}");
    assert_eq!(s.keys("put", "evidence/records/"), vec![record_key(2)], "the taken key was not written create-only");
    assert!(repo.backend().get(&record_key(2)).unwrap() == second, "record 2 was replaced");

    let state = tempfile::tempdir().unwrap();
    signer::create(state.path(), &signer::KeySource::State, None).unwrap();
    let host = Appender::for_state_dir(state.path()).unwrap();
    append::enroll(&repo, &host).unwrap();
    let (r, s) = seen(&repo);
    let own = host.append(&r, "backup", None, json!({"outcome": "success"})).unwrap();
    let chain = host.signer().unwrap().key_id();
    assert_eq!(s.keys("put", "evidence/"), Vec::<String>::new(), "a host's append asked first");
    let known = s.keys("known", "evidence/");
    assert_eq!(known.len(), 2, "{known:?}");
    assert_eq!(known[0], chain_record_key(chain, own.seq));
    assert!(known[1].starts_with("evidence/heads/"), "{known:?}");

    let file = state.path().join("shared.key");
    let secret = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    std::fs::write(&file, signer::secret_text(&secret)).unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let shared = state.path().join("shared");
    signer::create(&shared, &signer::KeySource::File(file), None).unwrap();
    let from_file = Appender::for_state_dir(&shared).unwrap();
    append::enroll(&repo, &from_file).unwrap();
    let (r, s) = seen(&repo);
    let theirs = from_file.append(&r, "backup", None, json!({"outcome": "success"})).unwrap();
    let chain = from_file.signer().unwrap().key_id();
    assert_eq!(s.keys("put", "evidence/records/"), vec![chain_record_key(chain, theirs.seq)]);
}

/// The newest head, written by this host, is checked with the key the
/// host holds: its key object is not read from the repository (a round
/// trip in each append on remote storage). Another host's head still is.
#[test]
fn a_host_append_checks_its_own_head_with_the_key_it_holds() {
    let (dir, _, repo) = new_repo();
    let appender = |state: &Path| {
        signer::create(state, &signer::KeySource::State, None).unwrap();
        let a = Appender::for_state_dir(state).unwrap();
        append::enroll(&repo, &a).unwrap();
        a
    };
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (host, other) = (appender(one.path()), appender(two.path()));
    let key_reads = |s: &Seen| s.keys("get", store::KEYS_DIR);
    host.append(&repo, "backup", None, json!({"outcome": "success"})).unwrap();
    let (r, reads) = seen(&repo);
    let appended = host.append(&r, "backup", None, json!({"outcome": "success"})).unwrap();
    assert_eq!(key_reads(&reads), Vec::<String>::new(), "the host read its own key object");
    let before = append_head::newest_head(&repo, &key::read_key(&repo)).unwrap().unwrap();
    assert_eq!(before.chains[host.signer().unwrap().key_id()].seq, appended.seq, "the head carries the chain on");
    // The other host starts from this host's head, whose key it reads.
    let (r, reads) = seen(&repo);
    let theirs = other.append(&r, "backup", None, json!({"outcome": "success"})).unwrap();
    let own = store::key_object(host.signer().unwrap().key_id());
    assert_eq!(key_reads(&reads), vec![own], "another host's head is checked with its enrolled key");
    let newest = append_head::newest_head(&repo, &key::read_key(&repo)).unwrap().unwrap();
    assert_eq!(newest.chains[host.signer().unwrap().key_id()].seq, appended.seq, "the other host kept this chain");
    assert_eq!(newest.chains[other.signer().unwrap().key_id()].seq, theirs.seq);
    let _ = dir;
}
