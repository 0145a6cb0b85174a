//! `cairn find PATTERN…`: which snapshots hold matching paths.

use std::sync::Arc;

use serde::Serialize;

use crate::browse::{Budgets, Reader};
use crate::error::{Error, Result};
use crate::find::{search, Matcher};
use crate::id::Id;
use crate::repo::walk::Limits;
use crate::repo::{by_id_prefix, Node, NodeKind, Snapshot, SnapshotList};

use super::output::{human_bytes, Printer};
use super::{open_repo, GlobalArgs, EXIT_OK, EXIT_PARTIAL};

#[derive(clap::Args, Debug)]
pub struct FindArgs {
    /// Globs like restore's --include (with `/`: the whole path; without: a name anywhere), or
    /// regular expressions with --regex
    #[arg(required = true, value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// Search only this snapshot: id prefix or `latest` (repeatable; default: all)
    #[arg(long = "snapshot", value_name = "ID")]
    pub snapshots: Vec<String>,
    /// Search only the N newest of the snapshots
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub newest: Option<u64>,
    /// The patterns are regular expressions, searched for in the whole path
    #[arg(long)]
    pub regex: bool,
    /// Stop after examining more than N entries, counted along every path (default 100000000)
    #[arg(long, value_name = "N")]
    pub max_entries: Option<u64>,
}

#[derive(Serialize)]
struct Match<'a> {
    snapshot: Id,
    short_id: String,
    time: String,
    host: &'a str,
    path: String,
    #[serde(rename = "type")]
    kind: NodeKind,
    size: u64,
    mtime: String,
}

/// The snapshots to search, newest first. `latest` is refused while a
/// snapshot cannot be read: it may be the newest.
fn choose(list: SnapshotList, a: &FindArgs) -> Result<Vec<(Id, Snapshot)>> {
    if a.snapshots.iter().any(|s| s == "latest") {
        list.complete()?;
    }
    let all = list.snapshots;
    let mut chosen = if a.snapshots.is_empty() {
        all
    } else {
        let mut ids = Vec::new();
        for spec in &a.snapshots {
            let id = if spec == "latest" {
                all.last().ok_or_else(|| Error::SnapshotNotFound(spec.clone()))?.0
            } else {
                by_id_prefix(&all, |s| s.0, spec)?.0
            };
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        all.into_iter().filter(|(id, _)| ids.contains(id)).collect()
    };
    chosen.reverse();
    if let Some(n) = a.newest {
        chosen.truncate(n as usize);
    }
    Ok(chosen)
}

fn mtime(n: &Node) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(n.mtime, n.mtime_nsec).unwrap_or_default()
}

fn size_text(n: &Node) -> String {
    match n.kind {
        NodeKind::File => human_bytes(n.size),
        NodeKind::Dir => "dir".into(),
        NodeKind::Symlink => "link".into(),
        _ => "special".into(),
    }
}

pub fn run(g: &GlobalArgs, a: &FindArgs, p: &Printer) -> Result<i32> {
    let matcher = if a.regex { Matcher::regexes(&a.patterns)? } else { Matcher::globs(&a.patterns)? };
    let repo = open_repo(g)?;
    let list = repo.list_snapshots()?;
    // Searching them all: the ones that cannot be read are named, and the
    // search is incomplete.
    let damaged: Vec<(Id, String)> = if a.snapshots.is_empty() {
        list.damaged.iter().map(|(id, e)| (*id, e.to_string())).collect()
    } else {
        Vec::new()
    };
    let snapshots = choose(list, a)?;
    let index = Arc::new(repo.load_index_as(crate::repo::IndexMode::Compact)?);
    let reader = Reader::new(repo, index, Budgets { trees: 256 << 20, blobs: 0 });
    let roots: Vec<Id> = snapshots.iter().map(|(_, s)| s.tree).collect();
    let mut found = Vec::new();
    let mut with_hits = vec![false; snapshots.len()];
    let limits = Limits::with_max_entries(a.max_entries);
    let outcome = search(&reader, &roots, &matcher, &limits, &mut |path, i, n| {
        with_hits[i] = true;
        let (id, s) = &snapshots[i];
        if p.json {
            found.push(Match {
                snapshot: *id,
                short_id: id.short(),
                time: s.time.to_rfc3339(),
                host: &s.hostname,
                path: String::from_utf8_lossy(path).into_owned(),
                kind: n.kind,
                size: n.size,
                mtime: mtime(n).to_rfc3339(),
            });
            return Ok(());
        }
        let mut line = format!(
            "{}  {}  {}  {:>10}  {}  ",
            id.short(),
            s.time.format("%Y-%m-%d %H:%M:%S"),
            s.hostname,
            size_text(n),
            mtime(n).format("%Y-%m-%d %H:%M:%S")
        )
        .into_bytes();
        line.extend_from_slice(path);
        line.push(b'\n');
        p.data_bytes(&line).map_err(|e| Error::io("standard output", e))
    })?;
    if p.json {
        p.json(&found);
    }
    for (path, why) in &outcome.refused {
        p.warn(format!("left out {}: {why}", String::from_utf8_lossy(path)));
    }
    for u in &outcome.unreadable {
        let ids: Vec<String> = u.snapshots.iter().map(|&i| snapshots[i].0.short()).collect();
        let shown = if u.path.is_empty() { "/".into() } else { String::from_utf8_lossy(&u.path).into_owned() };
        p.warn(format!(
            "not searched: {shown} (tree {}) in snapshot(s) {}: {}",
            u.tree.short(),
            ids.join(", "),
            u.error
        ));
    }
    p.info(format!(
        "{} match(es) in {} of {} snapshot(s); {} tree(s) read",
        outcome.matches,
        with_hits.iter().filter(|h| **h).count(),
        snapshots.len(),
        outcome.trees_read
    ));
    for (id, e) in &damaged {
        p.warn(format!("not searched: snapshot {} cannot be read: {e}", id.short()));
    }
    if !outcome.unreadable.is_empty() || !damaged.is_empty() {
        p.warn("the search is incomplete: `cairn check` finds the damage");
        return Ok(EXIT_PARTIAL);
    }
    Ok(EXIT_OK)
}
