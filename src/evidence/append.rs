//! Appending records: to this host's sub-chain, or to the legacy chain;
//! one repository head per append; and enrolment.
//!
//! **A host key's append** (no lock in the repository: one host, one
//! sub-chain, one writer, serialised on the host by `append.lock`):
//! 1. list `evidence/records/<key id>/`. With none, this is the key's first
//!    record here: unless the repository has no record at all, write the
//!    key's object and record 0, `enroll`. With no record at all, record 0 is
//!    the repository's `init` (and enrols the key), unless snapshots exist:
//!    then the chain was erased, and nothing is written
//!    ([`Error::EvidenceChainMissing`]);
//! 2. the tail: the highest seq listed, checked with the key; but never
//!    behind what this host remembers writing (`tails/<repository id>` in
//!    its state directory) nor behind what the newest head says of this
//!    chain. A tail found behind either means records were removed: the
//!    append goes on after the remembered one, so the gap stays visible, and
//!    says so in a warning;
//! 3. write `seq + 1`, remember it, then write a head that commits to it
//!    and to every other sub-chain's head as the newest head named them.
//!
//! **The legacy chain** (a host that has no key of its own, in a repository
//! that has the legacy key) keeps today's protocol under the evidence lock,
//! and writes a head too. A host without a key, in a repository without the
//! legacy key, is enrolled at its first append with a new key in its state
//! directory.
//!
//! The head is written by [`super::append_head`], the legacy chain is
//! appended by [`super::append_legacy`].

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};

use super::append_head::{finish, finish_with, head_names, newest_head, newest_head_among};
use super::append_legacy::legacy_append;
use super::canonical;
use super::chain_record::{init_payload, own_record_hash, refuse_restart, write_record};
pub use super::chain_record::{list_chain, load_record, AppendedRecord};
use super::key::read_key;
use super::objects::{self, ChainHead};
use super::record;
use super::signer::{self, KeySource, PrivateDir, Signer};
use super::store;
use crate::error::{Error, Result};
use crate::pool::beside;
use crate::repo::{blob, Repository};

/// Appends records for one process: with this host's key when it has one.
pub struct Appender {
    state_dir: Option<PathBuf>,
    host: OnceLock<Signer>,
    /// Whether a host without a key may be enrolled at its first append.
    enroll_on_demand: bool,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Appender({:?})", self.host.get().map(Signer::key_id))
    }
}

impl Appender {
    /// Signs with the legacy key only (a repository's `init` by a host
    /// that has no key, and tests).
    pub fn legacy() -> Appender {
        Appender { state_dir: None, host: OnceLock::new(), enroll_on_demand: false }
    }

    /// The appender of a host whose state directory is `state_dir`: its key
    /// if it has one; otherwise the legacy key where the repository has
    /// one, else a new key made in `state_dir` at the first append.
    pub fn for_state_dir(state_dir: &Path) -> Result<Appender> {
        let host = OnceLock::new();
        if let Some(s) = signer::load(state_dir)? {
            let _ = host.set(s);
        }
        Ok(Appender { state_dir: Some(state_dir.to_path_buf()), host, enroll_on_demand: true })
    }

    /// An appender with this signer (and, for remembering tails, this
    /// state directory).
    pub fn with_signer(signer: Signer, state_dir: Option<&Path>) -> Appender {
        let host = OnceLock::new();
        let _ = host.set(signer);
        Appender { state_dir: state_dir.map(Path::to_path_buf), host, enroll_on_demand: false }
    }

    /// This host's signer, when it has one.
    pub fn signer(&self) -> Option<&Signer> {
        self.host.get()
    }

    /// Appends a record of `kind` (`backup`, `prune`, `drill`…: 1–32 of
    /// a-z, 0-9, `_`, `-`) about `policy`, with `payload`, a JSON object
    /// whose numbers are all integers within ±(2^53 − 1) (durations in
    /// milliseconds, say). Safe against concurrent appenders.
    pub fn append(
        &self,
        repo: &Repository,
        kind: &str,
        policy: Option<&str>,
        payload: Value,
    ) -> Result<AppendedRecord> {
        self.append_with(repo, kind, policy, payload, false)
    }

    pub(super) fn append_with(
        &self,
        repo: &Repository,
        kind: &str,
        policy: Option<&str>,
        payload: Value,
        adopting: bool,
    ) -> Result<AppendedRecord> {
        validate(kind, &payload)?;
        if let Some(s) = self.host.get() {
            return self.host_append(repo, s, kind, policy, payload, adopting);
        }
        match legacy_append(repo, kind, policy, &payload, adopting)? {
            Some(r) => Ok(r),
            None if self.enroll_on_demand => {
                let s = self.enroll_here()?;
                self.host_append(repo, s, kind, policy, payload, adopting)
            }
            None => Err(Error::NoHostKey(
                "this repository's evidence is signed by host keys, and this process has none: \
                 run `cairn evidence enroll` on this host"
                    .into(),
            )),
        }
    }

    /// Makes (or loads) this host's key in its state directory.
    fn enroll_here(&self) -> Result<&Signer> {
        let dir = self.state_dir.as_deref().expect("enrolment on demand needs a state directory");
        let (s, _) = signer::create(dir, &KeySource::State, None)?;
        let _ = self.host.set(s);
        Ok(self.host.get().expect("just set"))
    }

    fn private_dir(&self) -> Result<Option<PrivateDir>> {
        match &self.state_dir {
            Some(d) => PrivateDir::open(d, true),
            None => Ok(None),
        }
    }

    fn host_append(
        &self,
        repo: &Repository,
        s: &Signer,
        kind: &str,
        policy: Option<&str>,
        payload: Value,
        adopting: bool,
    ) -> Result<AppendedRecord> {
        let private = self.private_dir()?;
        let _local = match &private {
            Some(p) => Some(p.lock("append.lock")?),
            None => None,
        };
        let chain = s.key_id().to_string();
        let rk = read_key(repo);
        let mut warnings = Vec::new();
        // The chain's records and the newest heads' names at once (on
        // remote storage each is a round trip).
        let (own, heads) = beside(|| list_chain(repo, &chain), || head_names(repo));
        let own = own?;
        // A head that cannot be listed or read is no head: the append goes on.
        let heads = heads.unwrap_or_default();
        let newest = || newest_head_among(repo, &rk, &heads, Some((s.key_id(), *s.public()))).ok().flatten();
        let mut tail: Option<ChainHead> = None;
        if own.is_empty() {
            let init_extra = (kind == "init").then(|| payload.clone());
            let first = enrol_first(repo, s, &rk, init_extra, adopting)?;
            remember(private.as_ref(), repo, &chain, 0, &first.hash);
            if kind == "init" && first.record["kind"] == "init" {
                return finish(repo, s, &rk, first, warnings);
            }
            tail = Some(ChainHead { seq: 0, hash: first.hash });
        }
        // The tail's record and the newest head at once, too.
        let (stored, head) = match (tail, own.last()) {
            (Some(t), _) => (Some(t), newest()),
            (None, Some(&n)) => {
                let (hash, head) = beside(|| own_record_hash(repo, s, &rk, &chain, n), newest);
                (Some(ChainHead { seq: n, hash: hash? }), head)
            }
            (None, None) => (None, newest()),
        };
        let remembered = recall(private.as_ref(), repo, &chain);
        let headed = head.as_ref().and_then(|h| h.chains.get(&chain).cloned());
        let mut tail = stored.clone().expect("a chain with records");
        for (what, other) in [("this host remembers", remembered), ("the newest head names", headed)] {
            let Some(o) = other else { continue };
            if o.seq > tail.seq {
                warnings.push(format!(
                    "evidence records {} to {} of this host are missing from the repository, but {what} record {}: \
                     they were removed; appending after them",
                    tail.seq + 1,
                    o.seq,
                    o.seq
                ));
                tail = o;
            } else if o.seq == tail.seq && o.hash != tail.hash {
                warnings
                    .push(format!("evidence record {} of this host in the repository is not the one {what}", o.seq));
            }
        }
        let seq = tail.seq + 1;
        // Only this state directory's lock serialises a key made in it.
        let checked = private.is_some() && matches!(s.source(), Some(KeySource::State));
        let appended = write_record(repo, s, &rk, &chain, seq, Some(&tail.hash), kind, policy, payload, checked)?;
        remember(private.as_ref(), repo, &chain, seq, &appended.hash);
        let mut chains = head.map(|h| h.chains).unwrap_or_default();
        chains.insert(chain, ChainHead { seq, hash: appended.hash.clone() });
        finish_with(repo, s, &rk, appended, warnings, chains)
    }
}

/// Writes a key's object and record 0 in a repository where it has none:
/// `enroll`, or the repository's `init` (with `init_extra` merged in) when
/// the repository has no record at all, which is refused under existing
/// snapshots unless `adopting`.
fn enrol_first(
    repo: &Repository,
    s: &Signer,
    rk: &crate::crypto::MasterKey,
    init_extra: Option<Value>,
    adopting: bool,
) -> Result<AppendedRecord> {
    let any = !repo.backend().list(&format!("{}/", store::RECORDS_DIR))?.is_empty();
    if !any && !adopting {
        refuse_restart(repo)?;
    }
    write_key_object(repo, s, rk)?;
    let enrolment = enrolment_payload(s);
    let (kind, payload) = if any {
        ("enroll", enrolment)
    } else {
        let mut p = init_payload();
        merge(&mut p, enrolment);
        if let Some(x) = init_extra {
            merge(&mut p, x);
        }
        ("init", p)
    };
    write_record(repo, s, rk, s.key_id(), 0, None, kind, None, payload, false)
}

/// What [`enroll`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Enrollment {
    pub key_id: String,
    pub host: String,
    pub public_key: String,
    /// Whether record 0 of the key was written now (false: enrolled before).
    pub newly: bool,
    /// The head written with it.
    pub head: Option<String>,
}

/// Registers `appender`'s host key in `repo`: its object in
/// `evidence/keys/` and record 0 of its sub-chain (`enroll`, or the
/// repository's `init` when the repository has no record yet). Nothing is
/// written when the key is enrolled there already.
pub fn enroll(repo: &Repository, appender: &Appender) -> Result<Enrollment> {
    let s = appender.signer().ok_or_else(|| Error::NoHostKey("this host has no evidence key to enroll".into()))?;
    let private = appender.private_dir()?;
    let _local = match &private {
        Some(p) => Some(p.lock("append.lock")?),
        None => None,
    };
    let rk = read_key(repo);
    let mut e = Enrollment {
        key_id: s.key_id().into(),
        host: s.host_name(),
        public_key: s.public_text(),
        newly: false,
        head: None,
    };
    if !list_chain(repo, s.key_id())?.is_empty() {
        write_key_object(repo, s, &rk)?;
        return Ok(e);
    }
    let first = enrol_first(repo, s, &rk, None, false)?;
    remember(private.as_ref(), repo, s.key_id(), 0, &first.hash);
    let head = newest_head(repo, &rk).ok().flatten();
    let mut chains = head.map(|h| h.chains).unwrap_or_default();
    chains.insert(s.key_id().into(), ChainHead { seq: 0, hash: first.hash.clone() });
    let done = finish_with(repo, s, &rk, first, Vec::new(), chains)?;
    e.newly = true;
    e.head = done.head;
    Ok(e)
}

/// Makes sure this host (state directory `state_dir`) has a key, made
/// there if it has none, and that the key is enrolled in `repo`: what the
/// daemon does at its first start for each repository it writes to.
pub fn ensure_enrolled(repo: &Repository, state_dir: &Path) -> Result<Enrollment> {
    let signer = match signer::load(state_dir)? {
        Some(s) => s,
        None => signer::create(state_dir, &KeySource::State, None)?.0,
    };
    enroll(repo, &Appender::with_signer(signer, Some(state_dir)))
}

/// Refuses what cannot be signed before anything is locked or written.
fn validate(kind: &str, payload: &Value) -> Result<()> {
    if !record::valid_kind(kind) {
        return Err(Error::BadEvidenceRecord(format!(
            "evidence record kind `{kind}`: use 1 to 32 of a-z, 0-9, `_` and `-`, starting with a letter"
        )));
    }
    if !payload.is_object() {
        return Err(Error::BadEvidenceRecord("an evidence payload must be a JSON object".into()));
    }
    canonical::to_canonical(payload).map_err(|e| {
        Error::BadEvidenceRecord(format!("evidence payload: {}", e.to_string().replacen('$', "payload", 1)))
    })?;
    Ok(())
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, from) {
        a.extend(b);
    }
}

fn enrolment_payload(s: &Signer) -> Value {
    json!({
        "key_id": s.key_id(),
        "public_key": s.public_text(),
        "host": s.host_name(),
        "source": s.source().map(KeySource::name),
        "program_version": crate::VERSION,
    })
}

/// Registers `s` in `evidence/keys/` unless it is there.
fn write_key_object(repo: &Repository, s: &Signer, rk: &crate::crypto::MasterKey) -> Result<()> {
    let name = store::key_object(s.key_id());
    match repo.backend().stat(&name) {
        Ok(_) => return Ok(()),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let bytes = objects::sign_key_object(s, &repo.id().to_hex(), &s.host_name(), Utc::now())
        .map_err(|e| Error::EvidenceSigner { detail: e })?;
    repo.backend().put(&name, &blob::seal_object(rk, &bytes))?;
    Ok(())
}

/// `tails/<repository id>` in the private state directory.
#[derive(Serialize, serde::Deserialize)]
struct Tail {
    key_id: String,
    seq: u64,
    hash: String,
}

fn tail_name(repo: &Repository) -> String {
    format!("tails/{}", repo.id().to_hex())
}

fn recall(private: Option<&PrivateDir>, repo: &Repository, chain: &str) -> Option<ChainHead> {
    let bytes = private?.read(&tail_name(repo)).ok()??;
    let t: Tail = serde_json::from_slice(&bytes).ok()?;
    (t.key_id == chain).then_some(ChainHead { seq: t.seq, hash: t.hash })
}

fn remember(private: Option<&PrivateDir>, repo: &Repository, chain: &str, seq: u64, hash: &str) {
    let Some(p) = private else { return };
    let t = Tail { key_id: chain.into(), seq, hash: hash.into() };
    let r = p.subdir("tails").and_then(|_| p.replace(&tail_name(repo), &serde_json::to_vec(&t).expect("tail")));
    if let Err(e) = r {
        repo.warn(format!("could not remember the evidence tail in {}: {e}", p.path().display()));
    }
}
