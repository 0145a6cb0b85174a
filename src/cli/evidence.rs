//! `cairn evidence …`: enrol this host's key, revoke a key, accept a
//! snapshot, export, print the head, the keys and the read key, and verify
//! (from an export, or from repositories with the read key alone); and the
//! evidence records that other commands append.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::error::{Error, Result};
use crate::evidence::append::{self, Appender};
use crate::evidence::signer::{self, KeySource};
use crate::evidence::trust::{keys_line, read_keys_file, Trust};
use crate::evidence::{self, key, Anchor, VerifyReport};
use crate::repo::Repository;

use super::output::Printer;
use super::{open_repo, GlobalArgs, EXIT_INTEGRITY, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct EvidenceArgs {
    #[command(subcommand)]
    pub command: EvidenceCommand,
}

#[derive(Subcommand, Debug)]
pub enum EvidenceCommand {
    /// Give this host an evidence key of its own and register it in the repository
    Enroll(EnrollArgs),
    /// Record that a key's later records no longer count (an admin record)
    Revoke(RevokeArgs),
    /// Accept a snapshot that check flagged (another host's name, a future date, no record)
    Accept(AcceptArgs),
    /// Start the chain of a repository made before cairn kept evidence
    Adopt(KeyState),
    /// Write every evidence record, head and enrolled key into a new directory
    Export(ExportArgs),
    /// Print the newest repository head, to keep as an anchor for the next audit
    Head,
    /// Print the lines of a keys file for the keys this repository enrolled
    Keys,
    /// Print the read key, with which an auditor reads the evidence (and nothing else)
    ReaderKey,
    /// Print the legacy public key (the repository's own, sealed key)
    Pubkey,
    /// Check evidence with the trusted keys alone: an export, or repositories (no password)
    Verify(VerifyArgs),
}

/// This host's state directory, where its key lives.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyState {
    /// State directory [default: CAIRN_STATE_DIR, else /var/lib/cairn for root, else ~/.local/state/cairn]
    #[arg(long = "state", value_name = "DIR")]
    pub state: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct EnrollArgs {
    /// Use this secret key file (0600) instead of making a key in the state directory
    #[arg(long, value_name = "FILE", conflicts_with = "key_command")]
    pub key_file: Option<PathBuf>,
    /// Sign with this command (KMS, TPM): CAIRN_EVIDENCE_OP=public|sign, data on stdin
    #[arg(long, value_name = "COMMAND")]
    pub key_command: Option<String>,
    /// The host name to enrol the key for [default: this machine's]
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    #[command(flatten)]
    pub state: KeyState,
}

#[derive(clap::Args, Debug)]
pub struct RevokeArgs {
    /// The key id to revoke (as `cairn evidence keys` shows it), or `legacy`
    pub key_id: String,
    /// Why, for the record
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub state: KeyState,
}

#[derive(clap::Args, Debug)]
pub struct AcceptArgs {
    /// The snapshot (id or unique prefix; the full id of one that is gone)
    pub snapshot: String,
    /// Why, for the record
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub state: KeyState,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The directory to write (must not exist, or be empty)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// A directory written by `cairn evidence export` [default: read the --repo repositories]
    pub dir: Option<PathBuf>,
    /// A file holding one public key as `cairn evidence pubkey` prints it
    #[arg(long, value_name = "FILE", required_unless_present = "keys", conflicts_with = "keys")]
    pub pubkey: Option<PathBuf>,
    /// The trusted keys, one per line: `HOST KEY [revoked-after=TIME|SEQ]` (docs/EVIDENCE.md)
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// A file holding a read key (`cairn evidence reader-key`); repeatable
    #[arg(long = "reader-key", value_name = "FILE")]
    pub reader_keys: Vec<PathBuf>,
    /// Require a head (head:HASH) or record (SEQ:HASH, KEYID:SEQ:HASH) noted at an earlier audit; repeatable
    #[arg(long, value_name = "ANCHOR")]
    pub anchor: Vec<String>,
}

impl EvidenceArgs {
    /// Whether the command reads several repositories (`--repo`, repeatable).
    pub fn reads_several(&self) -> bool {
        matches!(self.command, EvidenceCommand::Verify(_))
    }
}

pub fn run(g: &GlobalArgs, a: &EvidenceArgs, p: &Printer) -> Result<i32> {
    match &a.command {
        EvidenceCommand::Enroll(e) => enroll(g, e, p),
        EvidenceCommand::Revoke(r) => revoke(g, r, p),
        EvidenceCommand::Accept(x) => accept(g, x, p),
        EvidenceCommand::Adopt(k) => adopt(g, k, p),
        EvidenceCommand::Export(e) => export(g, e, p),
        EvidenceCommand::Head => head(g, p),
        EvidenceCommand::Keys => keys(g, p),
        EvidenceCommand::ReaderKey => reader_key(g, p),
        EvidenceCommand::Pubkey => pubkey(g, p),
        EvidenceCommand::Verify(v) => verify(g, v, p),
    }
}

/// This process's appender: this host's key when its state directory has
/// one (`state`, else CAIRN_STATE_DIR or the default).
pub(super) fn appender(state: Option<&Path>) -> Result<Appender> {
    Appender::for_state_dir(&crate::state::resolve_dir(state))
}

/// Says whether a job appended the evidence record of its outcome, with
/// the append's warnings. A failure to append is a warning: it never
/// undoes or fails what was recorded.
pub(super) fn note(kind: &str, appended: &Result<evidence::AppendedRecord>, p: &Printer) {
    match appended {
        Ok(r) => {
            tracing::info!("evidence record {}/{} ({kind}) appended", r.signer, r.seq);
            for w in &r.warnings {
                p.warn(w);
            }
        }
        Err(e) => p.warn(format!("could not append the evidence record of this {kind}: {e}")),
    }
}

fn enroll(g: &GlobalArgs, a: &EnrollArgs, p: &Printer) -> Result<i32> {
    let state = crate::state::resolve_dir(a.state.state.as_deref());
    let source = match (&a.key_file, &a.key_command) {
        (Some(f), _) => KeySource::File(f.clone()),
        (None, Some(c)) => KeySource::Command(c.clone()),
        (None, None) => KeySource::State,
    };
    let (signer, made) = signer::create(&state, &source, a.host.as_deref())?;
    if made {
        p.info(format!("made a new evidence key in {}", state.join(signer::STATE_SUBDIR).display()));
    }
    let host = signer.host_name();
    let line = keys_line(&host, &signer.public_text());
    if g.repo.is_empty() {
        p.data(&line);
        p.info(format!(
            "key {} is this host's evidence key; give --repo to register it in a repository",
            signer.key_id()
        ));
        return Ok(EXIT_OK);
    }
    let repo = open_repo(g)?;
    let e = append::enroll(&repo, &Appender::with_signer(signer, Some(&state)))?;
    if p.json {
        p.json(&serde_json::json!({ "enrollment": e, "keys_line": line, "repository": repo.id() }));
    } else {
        p.data(&line);
        p.info(if e.newly {
            format!("enrolled key {} for host {} in repository {}", e.key_id, e.host, repo.id().short())
        } else {
            format!("key {} was already enrolled in repository {}", e.key_id, repo.id().short())
        });
        p.info("give the auditor the line above, through a channel other than the repository");
    }
    Ok(EXIT_OK)
}

/// Appends an admin record with this host's appender; its warnings are printed.
fn admin_record(
    repo: &Repository,
    state: Option<&Path>,
    kind: &str,
    payload: serde_json::Value,
    p: &Printer,
) -> Result<append::AppendedRecord> {
    let r = appender(state)?.append(repo, kind, None, payload)?;
    for w in &r.warnings {
        p.warn(w);
    }
    Ok(r)
}

fn revoke(g: &GlobalArgs, a: &RevokeArgs, p: &Printer) -> Result<i32> {
    if a.key_id != key::LEGACY_KEY_ID && !key::is_key_id(&a.key_id) {
        return Err(Error::BadFlag {
            flag: "KEY_ID".into(),
            value: a.key_id.clone(),
            expected: "not a key id: give 16 hex digits as `cairn evidence keys` shows them, or `legacy`".into(),
        });
    }
    let repo = open_repo(g)?;
    let seqs = append::list_chain(&repo, &a.key_id)?;
    let Some(&last) = seqs.last() else {
        return Err(Error::NoEvidence(format!("key {} has no record in this repository", a.key_id)));
    };
    let hash = blake3::hash(&append::load_record(&repo, &a.key_id, last)?).to_hex().to_string();
    let payload = serde_json::json!({ "key_id": a.key_id, "after_seq": last, "after_hash": hash, "reason": a.reason });
    let r = admin_record(&repo, a.state.state.as_deref(), "revoke", payload, p)?;
    if p.json {
        p.json(&r);
    } else {
        p.data(format!("{}:{}:{}", r.signer, r.seq, r.hash));
        p.info(format!(
            "revoked key {}: its records after record {last} do not count; tell the auditor \
             (`revoked-after={last}` in their keys file)",
            a.key_id
        ));
    }
    Ok(EXIT_OK)
}

fn accept(g: &GlobalArgs, a: &AcceptArgs, p: &Printer) -> Result<i32> {
    let repo = open_repo(g)?;
    // A full id that names no snapshot: a deletion `check` named (a forget
    // killed before its record, say), which the admin accepts as such.
    let gone =
        a.snapshot.parse::<crate::Id>().ok().filter(|id| !repo.list_ids("snapshots").is_ok_and(|l| l.contains(id)));
    let (payload, what) = match gone {
        Some(id) => (
            serde_json::json!({ "snapshot": id.to_hex(), "gone": true, "reason": a.reason }),
            format!("accepted that snapshot {} is gone", id.short()),
        ),
        None => {
            let (id, snap) = repo.find_snapshot(&a.snapshot)?;
            let payload = serde_json::json!({
                "snapshot": id.to_hex(),
                "host": snap.hostname,
                "snapshot_time": snap.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "reason": a.reason,
            });
            (payload, format!("accepted snapshot {} (host {}, {})", id.short(), snap.hostname, snap.time))
        }
    };
    let r = admin_record(&repo, a.state.state.as_deref(), "accept", payload, p)?;
    if p.json {
        p.json(&r);
    } else {
        p.data(format!("{}:{}:{}", r.signer, r.seq, r.hash));
        p.info(what);
    }
    Ok(EXIT_OK)
}

fn adopt(g: &GlobalArgs, k: &KeyState, p: &Printer) -> Result<i32> {
    let repo = open_repo(g)?;
    let r = evidence::adopt(&repo, &appender(k.state.as_deref())?)?;
    let n = r.record["payload"]["adopted_snapshots"].as_array().map_or(0, Vec::len);
    p.data(format!("{}:{}:{}", r.signer, r.seq, r.hash));
    p.info(format!("started the evidence chain, recording the {n} snapshot(s) the repository holds"));
    Ok(EXIT_OK)
}

fn head(g: &GlobalArgs, p: &Printer) -> Result<i32> {
    let repo = open_repo(g)?;
    let h = evidence::newest_head(&repo, &key::read_key(&repo))?
        .ok_or_else(|| Error::NoEvidence("this repository has no evidence head yet: append a record first".into()))?;
    if p.json {
        p.json(&serde_json::json!({ "head": crate::evidence::objects::head_text(&h.hash), "detail": h }));
    } else {
        p.data(crate::evidence::objects::head_text(&h.hash));
        p.info(format!("written {} by {}; it names {} chain(s)", h.time, h.signer, h.chains.len()));
    }
    Ok(EXIT_OK)
}

fn keys(g: &GlobalArgs, p: &Printer) -> Result<i32> {
    let repo = open_repo(g)?;
    let rk = key::read_key(&repo);
    let loaded = evidence::store::load_repository(repo.backend().as_ref(), &[&rk], None, repo.backend().concurrency())?;
    let mut lines = Vec::new();
    if let Some(k) = key::load(&repo)? {
        lines.push(keys_line("@legacy", &key::public_text(&k.verifying_key())));
    }
    for (id, shown, bytes) in &loaded.keys {
        match evidence::objects::check_key_object(bytes) {
            Ok(k) if &k.key_id == id => {
                lines.push(format!("{}  # key {id}, enrolled {}", keys_line(&k.host, &k.public_key), k.enrolled_at))
            }
            Ok(_) | Err(_) => p.warn(format!("{shown} does not check: left out")),
        }
    }
    p.data("# Keys this repository enrolled. Check each line with its host before you trust it:");
    p.data("# the repository's own list is not a trust root.");
    for l in lines {
        p.data(l);
    }
    Ok(EXIT_OK)
}

fn reader_key(g: &GlobalArgs, p: &Printer) -> Result<i32> {
    let repo = open_repo(g)?;
    p.data(key::reader_text(&repo));
    p.info("this key reads the evidence of this repository and nothing else; give it to auditors only");
    Ok(EXIT_OK)
}

fn pubkey(g: &GlobalArgs, p: &Printer) -> Result<i32> {
    let repo = open_repo(g)?;
    let text = evidence::public_key_text(&repo)?;
    if p.json {
        p.json(&serde_json::json!({ "repository": repo.id(), "public_key": text }));
    } else {
        p.data(text);
    }
    Ok(EXIT_OK)
}

fn export(g: &GlobalArgs, a: &ExportArgs, p: &Printer) -> Result<i32> {
    let repo = open_repo(g)?;
    let s = evidence::export(&repo, &a.out)?;
    if p.json {
        p.json(&s);
    } else {
        p.data(s.dir.display().to_string());
        let head = match (s.last_seq, &s.head) {
            (Some(seq), Some(h)) => format!("; head: record {seq}, {h}"),
            _ => String::new(),
        };
        let chains = if s.chains.is_empty() {
            String::new()
        } else {
            format!(" ({} host chain(s), {} head(s))", s.chains.len(), s.heads)
        };
        p.info(format!("exported {} evidence record(s){chains} to {}{head}", s.records, s.dir.display()));
    }
    for (object, e) in &s.unreadable {
        p.warn(format!("{object} could not be read and was not exported: {e}"));
    }
    Ok(if s.unreadable.is_empty() { EXIT_OK } else { EXIT_INTEGRITY })
}

/// The trust and read keys that `--pubkey`, `--keys` and `--reader-key` give.
pub(super) fn trust_from(
    pubkey: Option<&Path>,
    keys: Option<&Path>,
    readers: &[PathBuf],
) -> Result<(Trust, Vec<crate::crypto::MasterKey>)> {
    let (trust, mut readers_out) = match (pubkey, keys) {
        (_, Some(k)) => {
            let f = read_keys_file(k)?;
            (f.trust, f.readers)
        }
        (Some(pk), None) => {
            let text = std::fs::read_to_string(pk).map_err(|e| Error::io(pk, e))?;
            (Trust::single(key::parse_public(&text)?), Vec::new())
        }
        (None, None) => return Err(Error::VerifyNeeds("give the trusted keys: --keys FILE (or --pubkey FILE)".into())),
    };
    for r in readers {
        let text = std::fs::read_to_string(r).map_err(|e| Error::io(r, e))?;
        for (i, line) in text.lines().map(str::trim).enumerate().filter(|(_, l)| !l.is_empty() && !l.starts_with('#')) {
            let k = line.strip_prefix("@reader").map(str::trim).unwrap_or(line);
            readers_out.push(key::parse_reader(k).map_err(|e| Error::BadKeysFile {
                file: r.display().to_string(),
                line: i + 1,
                detail: e.to_string(),
            })?);
        }
    }
    Ok((trust, readers_out))
}

fn verify(g: &GlobalArgs, a: &VerifyArgs, p: &Printer) -> Result<i32> {
    let anchors = a.anchor.iter().map(|s| Anchor::parse(s)).collect::<Result<Vec<_>>>()?;
    let (trust, readers) = trust_from(a.pubkey.as_deref(), a.keys.as_deref(), &a.reader_keys)?;
    let now = chrono::Utc::now();
    let mut reports = Vec::new();
    match &a.dir {
        Some(dir) => reports.push((dir.display().to_string(), evidence::verify::verify_dir_with(dir, &trust, now)?)),
        None => {
            if g.repo.is_empty() {
                return Err(Error::VerifyNeeds(
                    "give an export directory, or the repositories to read (--repo URL, repeatable)".into(),
                ));
            }
            if readers.is_empty() {
                return Err(Error::VerifyNeeds(
                    "reading a repository's evidence without the password needs its read key: --reader-key FILE \
                     (or `@reader KEY` lines in the keys file)"
                        .into(),
                ));
            }
            for url in &g.repo {
                let b = super::open_backend_url(g, url)?;
                let r = evidence::check::verify_repository(b.as_ref(), &readers, &trust, now)?;
                reports.push((b.location(), r));
            }
        }
    }
    let mut intact = true;
    let several = reports.len() > 1;
    for (where_, mut report) in reports {
        report.check_anchors(&anchors);
        if several && !p.json {
            p.data(format!("== {where_}"));
        }
        print_verify(&report, p);
        intact &= report.is_intact();
    }
    Ok(if intact { EXIT_OK } else { EXIT_INTEGRITY })
}

fn print_verify(r: &VerifyReport, p: &Printer) {
    if p.json {
        let mut v = serde_json::to_value(r).expect("report serialises");
        v["intact"] = serde_json::Value::Bool(r.is_intact());
        p.json(&v);
    } else {
        for x in &r.problems {
            let chain = match x.signer.as_deref() {
                Some(s) if s != key::LEGACY_KEY_ID => format!("{s}/"),
                _ => String::new(),
            };
            let seq = x.seq.map(|s| format!(" (record {chain}{s})")).unwrap_or_default();
            p.data(format!("{}: {}{seq}: {}", x.kind.as_str(), x.file.as_deref().unwrap_or("-"), x.detail));
        }
        let verified = r.records.len();
        match (&r.head, &r.newest_head) {
            (Some(h), _) if r.is_intact() => {
                p.data(format!("intact: {verified} record(s), head {}:{}", h.seq, h.hash));
            }
            _ if r.is_intact() => p.data(format!("intact: {verified} record(s) in {} chain(s)", r.chains.len())),
            _ => p.info(format!(
                "evidence NOT intact: {} problem(s) in {} record file(s); {verified} record(s) verified",
                r.problems.len(),
                r.files
            )),
        }
        if let Some(h) = &r.newest_head {
            let line = format!("newest head: {} ({}, by {}, {} chain(s))", h.text, h.time, h.signer, h.chains);
            // Data to keep when all is well; context when something is not.
            if r.is_intact() {
                p.data(line);
            } else {
                p.info(line);
            }
        }
        match r.newer_than_anchors {
            Some(true) => p.data("the newest head covers every anchor given"),
            Some(false) => p.data("the newest head does NOT cover every anchor given"),
            None => {}
        }
        for c in r.chains.iter().filter(|c| !c.legacy && c.trusted) {
            p.info(format!(
                "chain {} (host {}): {} record(s){}",
                c.signer,
                c.host.as_deref().unwrap_or("?"),
                c.verified,
                c.last.as_ref().map(|h| format!(", last {}", h.seq)).unwrap_or_default()
            ));
        }
        for n in &r.notes {
            p.info(format!("note: {n}"));
        }
    }
    if r.nothing_verified() {
        p.warn("no record verifies with this public key (or the keys given): are they the keys that wrote them?");
    }
}
