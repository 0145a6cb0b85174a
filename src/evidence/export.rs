//! Exporting the evidence of a repository into a directory that anyone can
//! verify with the trusted keys alone (no repository, no password).

use std::path::Path;

use chrono::Utc;
use serde_json::json;

use super::key::{self, read_key, LEGACY_KEY_ID};
use super::store::{self, load_repository};
use super::ExportSummary;
use crate::error::{Error, Result};
use crate::repo::Repository;

/// Writes every record, head and enrolled key to `out` (which must be
/// empty or not exist) in the layout of [`store`], with `pubkey.txt` (the
/// legacy key, when the repository has one), `manifest.json` and
/// `README.txt`. Objects that cannot be read are left out and listed.
pub fn export(repo: &Repository, out: &Path) -> Result<ExportSummary> {
    match std::fs::read_dir(out) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(Error::NotEmpty {
                    path: out.to_path_buf(),
                    why: "export into a new or empty directory, so no older file can stand in for a record",
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        }
        Err(e) => return Err(Error::io(out, e)),
    }
    let legacy = key::load(repo)?;
    let public_key = legacy.as_ref().map(|k| key::public_text(&k.verifying_key()));
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        use std::io::Write;
        let p = out.join(name);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&p).map_err(|e| Error::io(&p, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&p, e))
    };
    let rk = read_key(repo);
    let loaded = load_repository(repo.backend().as_ref(), &[&rk, repo.key()], Some(1), repo.backend().concurrency())?;
    let mut summary = ExportSummary {
        dir: out.to_path_buf(),
        records: 0,
        last_seq: None,
        head: None,
        public_key: public_key.clone(),
        chains: Vec::new(),
        heads: 0,
        unreadable: loaded.unreadable.clone(),
    };
    for item in &loaded.records {
        write(&store::export_path(&item.chain, item.seq), &[&item.bytes[..], b"\n"].concat())?;
        summary.records += 1;
        if item.chain == LEGACY_KEY_ID {
            if summary.last_seq.is_none_or(|s| item.seq >= s) {
                summary.last_seq = Some(item.seq);
                summary.head = Some(blake3::hash(&item.bytes).to_hex().to_string());
            }
        } else {
            match summary.chains.last_mut() {
                Some((c, n)) if *c == item.chain => *n += 1,
                _ => summary.chains.push((item.chain.clone(), 1)),
            }
        }
    }
    for (id, _, bytes) in &loaded.keys {
        write(&format!("key-{id}.json"), &[&bytes[..], b"\n"].concat())?;
    }
    for (name, _, bytes) in &loaded.heads {
        write(&store::export_head_path(name), &[&bytes[..], b"\n"].concat())?;
        summary.heads += 1;
    }
    if let Some(k) = &public_key {
        write("pubkey.txt", format!("{k}\n").as_bytes())?;
    }
    let manifest = json!({
        "format": "cairn-evidence-export",
        "v": 2,
        "repository": repo.id().to_hex(),
        "exported": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "program_version": crate::VERSION,
        "public_key": public_key,
        "records": summary.records,
        "last_seq": summary.last_seq,
        "head": summary.head,
        "chains": summary.chains.iter().map(|(c, n)| json!({"key_id": c, "records": n})).collect::<Vec<_>>(),
        "heads": summary.heads,
        "unreadable": summary.unreadable.iter().map(|(o, e)| json!({"object": o, "error": e})).collect::<Vec<_>>(),
    });
    write("manifest.json", format!("{}\n", serde_json::to_string_pretty(&manifest).expect("manifest")).as_bytes())?;
    write("README.txt", readme(&summary, &repo.id().to_hex()).as_bytes())?;
    Ok(summary)
}

fn readme(s: &ExportSummary, repository: &str) -> String {
    let head = match (s.last_seq, &s.head) {
        (Some(seq), Some(h)) => format!("record {seq}, hash {h}"),
        _ => "none".into(),
    };
    format!(
        "cairn evidence export\n\
         =====================\n\n\
         Repository:   {repository}\n\
         Legacy chain: NNNNNNNNNNNN.json, signed by the repository's key (pubkey.txt); head {head}\n\
         Host chains:  chain-<key id>-NNNNNNNNNNNN.json, {} chain(s), each signed by one host's key\n\
         Heads:        head-<time>-<key id>-<seq>.json, {} head(s)\n\
         Keys:         key-<key id>.json, the keys the repository enrolled (not a trust root)\n\n\
         Verify, without the repository or its password:\n\n    \
         cairn evidence verify DIR --keys KEYS-FILE [--anchor head:HASH]\n\n\
         KEYS-FILE lists the keys you trust, one per line (`HOST PUBLIC-KEY`),\n\
         taken from each host (`cairn evidence enroll` prints its line), not\n\
         from this directory. For the legacy chain alone, `--pubkey pubkey.txt`\n\
         works as before. Keep the newest head verify prints: at the next audit,\n\
         `--anchor head:HASH` shows that nothing was removed since or rewritten.\n\n\
         Each record is canonical JSON (RFC 8785, integers only). `sig` is the\n\
         ed25519 signature of the record's canonical JSON without `sig`; `prev`\n\
         is the BLAKE3 hash of the previous record's canonical JSON with `sig`.\n\
         The full description is in cairn's docs/FORMAT.md, \"Evidence\".\n\
         manifest.json is a convenience and is not signed.\n",
        s.chains.len(),
        s.heads
    )
}
