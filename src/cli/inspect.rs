//! `cairn snapshots`, `ls`, `diff` and `dump`: read-only views.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::tree::lookup;
use crate::repo::walk::{measure, walk, Limits};
use crate::repo::{Node, NodeKind, Snapshot};

use super::output::{human_bytes, Printer};
use super::{open_repo, GlobalArgs, EXIT_INTEGRITY, EXIT_OK};

#[derive(clap::Args, Debug)]
pub struct SnapshotsArgs {
    /// Only snapshots with this tag
    #[arg(long)]
    pub tag: Option<String>,
    /// Only snapshots of this host (repeatable)
    #[arg(long, value_name = "NAME")]
    pub host: Vec<String>,
    #[command(flatten)]
    pub at: super::AsOfArg,
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Snapshot id prefix or `latest`
    pub snapshot: String,
    /// Only list below this path
    pub path: Option<String>,
    /// Show type, mode, size and modification time
    #[arg(long, short = 'l')]
    pub long: bool,
    /// Refuse a tree that expands to more entries than N (default 100000000)
    #[arg(long, value_name = "N")]
    pub max_entries: Option<u64>,
    #[command(flatten)]
    pub at: super::AsOfArg,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    pub snapshot1: String,
    pub snapshot2: String,
    /// Refuse a snapshot that expands to more entries than N (default 100000000)
    #[arg(long, value_name = "N")]
    pub max_entries: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct DumpArgs {
    pub snapshot: String,
    /// Path of the file in the snapshot, e.g. /home/a/notes.txt
    pub path: String,
}

#[derive(Serialize)]
struct SnapshotJson<'a> {
    id: Id,
    short_id: String,
    #[serde(flatten)]
    snapshot: &'a Snapshot,
}

/// A snapshot that cannot be read, as `snapshots --json` lists it.
#[derive(Serialize)]
struct DamagedJson {
    id: Id,
    short_id: String,
    damaged: String,
}

/// Lists the snapshots; those that cannot be read are listed as damaged
/// (whatever the filters: their host and tags are unknown), and make the
/// exit code 5.
pub fn snapshots(g: &GlobalArgs, a: &SnapshotsArgs, p: &Printer) -> Result<i32> {
    let repo = open_repo(&a.at.apply(g))?;
    let all = repo.list_snapshots()?;
    let list: Vec<&(Id, Snapshot)> = all
        .snapshots
        .iter()
        .filter(|(_, s)| a.tag.as_ref().is_none_or(|t| s.tags.contains(t)))
        .filter(|(_, s)| a.host.is_empty() || a.host.contains(&s.hostname))
        .collect();
    let code = if all.damaged.is_empty() { EXIT_OK } else { EXIT_INTEGRITY };
    if p.json {
        let mut v: Vec<serde_json::Value> = list
            .iter()
            .map(|(id, s)| json_value(&SnapshotJson { id: *id, short_id: id.short(), snapshot: s }))
            .collect();
        v.extend(
            all.damaged
                .iter()
                .map(|(id, e)| json_value(&DamagedJson { id: *id, short_id: id.short(), damaged: e.to_string() })),
        );
        p.json(&v);
        return Ok(code);
    }
    p.data(format!("{:<8}  {:<20}  {:<16}  {:>10}  {:<16}  paths", "id", "time (UTC)", "host", "size", "tags"));
    for (id, s) in &list {
        p.data(format!(
            "{:<8}  {:<20}  {:<16}  {:>10}  {:<16}  {}",
            id.short(),
            s.time.format("%Y-%m-%d %H:%M:%S"),
            s.hostname,
            human_bytes(s.summary.bytes_total),
            s.tags.join(","),
            s.paths.join(" ")
        ));
    }
    for (id, e) in &all.damaged {
        p.data(format!("{}  damaged: {e}", id.short()));
    }
    p.info(format!("{} snapshot(s)", list.len()));
    if !all.damaged.is_empty() {
        p.warn(format!(
            "{} snapshot(s) cannot be read, and `latest` is refused while they are there: run `cairn check`",
            all.damaged.len()
        ));
    }
    Ok(code)
}

fn json_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("a snapshot serialises")
}

fn kind_char(k: NodeKind) -> char {
    match k {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::Chardev => 'c',
        NodeKind::Blockdev => 'b',
        NodeKind::Socket => 's',
    }
}

#[derive(Serialize)]
struct LsEntry {
    path: String,
    #[serde(rename = "type")]
    kind: NodeKind,
    mode: u32,
    size: u64,
    uid: u32,
    gid: u32,
    mtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

fn mtime_of(n: &Node) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(n.mtime, n.mtime_nsec).unwrap_or_default()
}

pub fn ls(g: &GlobalArgs, a: &LsArgs, p: &Printer) -> Result<i32> {
    let repo = open_repo(&a.at.apply(g))?;
    let (sid, snap) = repo.find_snapshot(&a.snapshot)?;
    let index = repo.load_index()?;
    let (start, prefix) = match a.path.as_deref().map(|s| s.trim_end_matches('/')).filter(|s| !s.is_empty()) {
        None => (snap.tree, Vec::new()),
        Some(path) => {
            let node = lookup(&repo, &index, &snap.tree, path.as_bytes())?
                .ok_or_else(|| Error::PathNotFound { snapshot: sid.short(), path: path.to_string() })?;
            match node.subtree {
                Some(t) => (t, path.as_bytes().to_vec()),
                None => {
                    // A single file: show just that entry.
                    if p.json {
                        p.json(&[ls_entry(path.as_bytes(), &node)]);
                    } else {
                        print_entry(p, a.long, path.as_bytes(), &node).map_err(|e| Error::io("stdout", e))?;
                    }
                    return Ok(EXIT_OK);
                }
            }
        }
    };
    // Refused before the first line when it nests too deep or expands too far.
    measure(&repo, &index, &start, &Limits::with_max_entries(a.max_entries))?;
    // Streamed, the JSON array included: memory stays flat however long the list.
    let stdout = |e| Error::io("stdout", e);
    let mut sep: &[u8] = b"[\n";
    walk(&repo, &index, &start, &prefix, &mut |path, n| {
        if p.json {
            p.data_bytes(sep).map_err(stdout)?;
            sep = b",\n";
            let entry = serde_json::to_vec(&ls_entry(path, n)).expect("an entry serialises");
            p.data_bytes(&entry).map_err(stdout)?;
        } else {
            print_entry(p, a.long, path, n).map_err(stdout)?;
        }
        Ok(true)
    })?;
    if p.json {
        p.data_bytes(if sep == b"[\n" { b"[]\n" } else { b"\n]\n" }).map_err(stdout)?;
    }
    Ok(EXIT_OK)
}

fn ls_entry(path: &[u8], n: &Node) -> LsEntry {
    LsEntry {
        path: String::from_utf8_lossy(path).into_owned(),
        kind: n.kind,
        mode: n.mode,
        size: n.size,
        uid: n.uid,
        gid: n.gid,
        mtime: mtime_of(n).to_rfc3339(),
        target: n.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()),
    }
}

fn print_entry(p: &Printer, long: bool, path: &[u8], n: &Node) -> std::io::Result<()> {
    let mut line = Vec::new();
    if long {
        line.extend_from_slice(
            format!(
                "{}{:04o} {:>6} {:>6} {:>12} {} ",
                kind_char(n.kind),
                n.mode,
                n.uid,
                n.gid,
                n.size,
                mtime_of(n).format("%Y-%m-%d %H:%M:%S")
            )
            .as_bytes(),
        );
    }
    line.extend_from_slice(path);
    if long {
        if let Some(t) = &n.target {
            line.extend_from_slice(b" -> ");
            line.extend_from_slice(t);
        }
    }
    line.push(b'\n');
    p.data_bytes(&line)
}

#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
struct Change {
    change: &'static str,
    path: String,
}

fn flatten(repo: &crate::repo::Repository, index: &crate::repo::Index, tree: &Id) -> Result<BTreeMap<Vec<u8>, Node>> {
    let mut out = BTreeMap::new();
    walk(repo, index, tree, b"", &mut |path, n| {
        out.insert(path.to_vec(), n.clone());
        Ok(true)
    })?;
    Ok(out)
}

pub fn diff(g: &GlobalArgs, a: &DiffArgs, p: &Printer) -> Result<i32> {
    let repo = open_repo(g)?;
    let (_, s1) = repo.find_snapshot(&a.snapshot1)?;
    let (_, s2) = repo.find_snapshot(&a.snapshot2)?;
    let index = repo.load_index()?;
    // Both trees are held in memory, path by path: measured first.
    let limits = Limits::with_max_entries(a.max_entries);
    measure(&repo, &index, &s1.tree, &limits)?;
    measure(&repo, &index, &s2.tree, &limits)?;
    let m1 = flatten(&repo, &index, &s1.tree)?;
    let m2 = flatten(&repo, &index, &s2.tree)?;
    let mut changes = Vec::new();
    for (path, n1) in &m1 {
        let shown = String::from_utf8_lossy(path).into_owned();
        match m2.get(path) {
            None => changes.push(Change { change: "-", path: shown }),
            Some(n2) if n1.kind != n2.kind => changes.push(Change { change: "T", path: shown }),
            Some(n2) if n1.content != n2.content || n1.target != n2.target || n1.size != n2.size => {
                changes.push(Change { change: "M", path: shown })
            }
            Some(n2) if n1.mode != n2.mode || n1.uid != n2.uid || n1.gid != n2.gid || n1.xattrs != n2.xattrs => {
                changes.push(Change { change: "U", path: shown })
            }
            _ => {}
        }
    }
    for path in m2.keys() {
        if !m1.contains_key(path) {
            changes.push(Change { change: "+", path: String::from_utf8_lossy(path).into_owned() });
        }
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    if p.json {
        p.json(&changes);
    } else {
        for c in &changes {
            p.data(format!("{}  {}", c.change, c.path));
        }
        let count = |k: &str| changes.iter().filter(|c| c.change == k).count();
        p.info(format!(
            "{} added, {} removed, {} modified, {} metadata only, {} type changed",
            count("+"),
            count("-"),
            count("M"),
            count("U"),
            count("T")
        ));
    }
    Ok(EXIT_OK)
}

pub fn dump(g: &GlobalArgs, a: &DumpArgs, p: &Printer) -> Result<i32> {
    let repo = open_repo(g)?;
    let (sid, snap) = repo.find_snapshot(&a.snapshot)?;
    let index = repo.load_index()?;
    let node = lookup(&repo, &index, &snap.tree, a.path.as_bytes())?
        .ok_or_else(|| Error::PathNotFound { snapshot: sid.short(), path: a.path.clone() })?;
    if node.kind != NodeKind::File {
        return Err(Error::NotARegularFile(a.path.clone()));
    }
    for c in &node.content {
        let data = repo.read_blob(&index, c)?;
        p.data_bytes(&data).map_err(|e| Error::io("stdout", e))?;
    }
    Ok(EXIT_OK)
}
