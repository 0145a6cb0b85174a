//! `cairn evidence export|pubkey|verify`, and the evidence records that
//! other commands append.

use std::path::PathBuf;

use clap::Subcommand;

use crate::error::{Error, Result};
use crate::evidence::{self, VerifyReport};

use super::output::Printer;
use super::{open_repo, GlobalArgs, EXIT_INTEGRITY, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct EvidenceArgs {
    #[command(subcommand)]
    pub command: EvidenceCommand,
}

#[derive(Subcommand, Debug)]
pub enum EvidenceCommand {
    /// Write every evidence record, the public key and a manifest into a new directory
    Export(ExportArgs),
    /// Print the public key that verifies this repository's evidence
    Pubkey,
    /// Check exported evidence with the public key alone (no repository, no password)
    Verify(VerifyArgs),
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The directory to write (must not exist, or be empty)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// A directory written by `cairn evidence export`
    pub dir: PathBuf,
    /// A file holding the public key as `cairn evidence pubkey` prints it
    #[arg(long, value_name = "FILE")]
    pub pubkey: PathBuf,
    /// Require record SEQ to have hash HASH (a head noted at an earlier audit); repeatable
    #[arg(long, value_name = "SEQ:HASH")]
    pub anchor: Vec<String>,
}

pub fn run(g: &GlobalArgs, a: &EvidenceArgs, p: &Printer) -> Result<i32> {
    match &a.command {
        EvidenceCommand::Export(e) => export(g, e, p),
        EvidenceCommand::Pubkey => pubkey(g, p),
        EvidenceCommand::Verify(v) => verify(v, p),
    }
}

/// Says whether a job appended the evidence record of its outcome. A
/// failure to append is a warning: it never undoes or fails what was
/// recorded.
pub(super) fn note(kind: &str, appended: &Result<evidence::AppendedRecord>, p: &Printer) {
    match appended {
        Ok(r) => tracing::info!("evidence record {} ({kind}) appended", r.seq),
        Err(e) => p.warn(format!("could not append the evidence record of this {kind}: {e}")),
    }
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
        p.info(format!("exported {} evidence record(s) to {}{head}", s.records, s.dir.display()));
    }
    for (seq, e) in &s.unreadable {
        p.warn(format!("evidence record {seq} could not be read and was not exported: {e}"));
    }
    Ok(if s.unreadable.is_empty() { EXIT_OK } else { EXIT_INTEGRITY })
}

fn parse_anchor(s: &str) -> Result<(u64, String)> {
    let bad = || Error::InvalidArgument(format!("--anchor `{s}`: expected SEQ:HASH, e.g. 41:<64 hex digits>"));
    let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
    let seq = seq.trim().parse().map_err(|_| bad())?;
    let hash = hash.trim();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok((seq, hash.to_ascii_lowercase()))
}

fn verify(a: &VerifyArgs, p: &Printer) -> Result<i32> {
    let anchors = a.anchor.iter().map(|s| parse_anchor(s)).collect::<Result<Vec<_>>>()?;
    let text = std::fs::read_to_string(&a.pubkey).map_err(|e| Error::io(&a.pubkey, e))?;
    let mut report = evidence::verify_dir(&a.dir, &text)?;
    for (seq, hash) in &anchors {
        report.check_anchor(*seq, hash);
    }
    print_verify(&report, p);
    Ok(if report.is_intact() { EXIT_OK } else { EXIT_INTEGRITY })
}

fn print_verify(r: &VerifyReport, p: &Printer) {
    if p.json {
        let mut v = serde_json::to_value(r).expect("report serialises");
        v["intact"] = serde_json::Value::Bool(r.is_intact());
        p.json(&v);
    } else {
        for x in &r.problems {
            let seq = x.seq.map(|s| format!(" (record {s})")).unwrap_or_default();
            let kind = serde_json::to_value(x.kind).expect("kind serialises");
            p.data(format!(
                "{}: {}{seq}: {}",
                kind.as_str().unwrap_or("?"),
                x.file.as_deref().unwrap_or("-"),
                x.detail
            ));
        }
        match &r.head {
            Some(h) if r.is_intact() => {
                p.data(format!("intact: {} record(s), head {}:{}", r.records.len(), h.seq, h.hash));
            }
            _ => p.info(format!(
                "evidence NOT intact: {} problem(s) in {} record file(s); {} record(s) verified",
                r.problems.len(),
                r.files,
                r.records.len()
            )),
        }
    }
    if r.nothing_verified() {
        p.warn("no record verifies with this public key: is it the key of the repository that wrote them?");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_parse() {
        let h = "ab".repeat(32);
        assert_eq!(parse_anchor(&format!("12:{h}")).unwrap(), (12, h.clone()));
        assert_eq!(parse_anchor(&format!("12:{}", h.to_uppercase())).unwrap().1, h);
        for bad in ["12", ":", &format!("x:{h}"), "3:abc", &format!("-1:{h}")] {
            assert!(parse_anchor(bad).is_err(), "{bad}");
        }
    }
}
