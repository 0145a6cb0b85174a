//! The snapshots as the mount shows them: their names under `/ids` and
//! `/hosts/<host>`, and which one is the latest.
//!
//! Nothing is read when the mount starts. The list of snapshot ids is
//! one listing, made when `/ids` or `/hosts` is first looked at and again
//! when it is older than [`LIST_TTL`]; a snapshot object is loaded when
//! its directory is looked up, or when `/hosts` or `latest` needs every
//! snapshot's host and time (then all are loaded, several at a time, once).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::{Repository, Snapshot};
use crate::restore::plan::safe_name;

/// How long a listing of the snapshot ids is used before it is made again.
pub const LIST_TTL: Duration = Duration::from_secs(5);

/// The shortest id prefix used as a name under `/ids`.
pub const SHORT_ID: usize = 8;

struct State {
    listed: Option<(Instant, Arc<Vec<Id>>)>,
    loaded: HashMap<Id, Arc<Snapshot>>,
    /// The snapshots that did not open, with why.
    damaged: BTreeMap<Id, String>,
}

pub struct Catalog {
    repo: Repository,
    threads: usize,
    state: Mutex<State>,
}

/// One snapshot as `/hosts/<host>/` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dated {
    pub name: String,
    pub id: Id,
    pub time: DateTime<Utc>,
}

/// The names of `ids` under `/ids`: each id's shortest prefix of at least
/// [`SHORT_ID`] hex digits that no other id shares.
pub fn id_names(ids: &[Id]) -> Vec<(String, Id)> {
    let mut hex: Vec<(String, Id)> = ids.iter().map(|i| (i.to_hex(), *i)).collect();
    hex.sort();
    hex.dedup();
    let common = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    (0..hex.len())
        .map(|i| {
            let before = if i > 0 { common(&hex[i - 1].0, &hex[i].0) } else { 0 };
            let after = if i + 1 < hex.len() { common(&hex[i + 1].0, &hex[i].0) } else { 0 };
            let len = (before.max(after) + 1).max(SHORT_ID).min(hex[i].0.len());
            (hex[i].0[..len].to_string(), hex[i].1)
        })
        .collect()
}

/// `/hosts`: the snapshots of each host, named by their time in UTC
/// (`2026-12-04T02:00:07`), oldest first. Snapshots of one host in the
/// same second get their short id after the time (`…T02:00:07_3f9a0c12`).
/// A host name that restore would refuse as a file name (empty, `.`,
/// `..`, with `/` or NUL) is left out, and returned apart.
pub fn by_host(snaps: &[(Id, Arc<Snapshot>)]) -> (BTreeMap<String, Vec<Dated>>, Vec<String>) {
    let mut hosts: BTreeMap<String, Vec<Dated>> = BTreeMap::new();
    let mut refused = Vec::new();
    for (id, s) in snaps {
        if safe_name(s.hostname.as_bytes()).is_err() {
            if !refused.contains(&s.hostname) {
                refused.push(s.hostname.clone());
            }
            continue;
        }
        let name = s.time.format("%Y-%m-%dT%H:%M:%S").to_string();
        hosts.entry(s.hostname.clone()).or_default().push(Dated { name, id: *id, time: s.time });
    }
    for list in hosts.values_mut() {
        list.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        let mut counts: HashMap<String, usize> = HashMap::new();
        for d in list.iter() {
            *counts.entry(d.name.clone()).or_default() += 1;
        }
        for d in list.iter_mut() {
            if counts[&d.name] > 1 {
                d.name = format!("{}_{}", d.name, d.id.short());
            }
        }
    }
    (hosts, refused)
}

/// The newest snapshot (by time, then id, as `cairn restore latest`).
pub fn newest(snaps: &[(Id, Arc<Snapshot>)]) -> Option<&(Id, Arc<Snapshot>)> {
    snaps.iter().max_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)))
}

impl Catalog {
    pub fn new(repo: Repository, threads: usize) -> Catalog {
        Catalog {
            repo,
            threads: threads.max(1),
            state: Mutex::new(State { listed: None, loaded: HashMap::new(), damaged: BTreeMap::new() }),
        }
    }

    /// The ids of the snapshots, from a listing at most [`LIST_TTL`] old.
    pub fn ids(&self) -> Result<Arc<Vec<Id>>> {
        if let Some((at, ids)) = &self.state.lock().unwrap().listed {
            if at.elapsed() < LIST_TTL {
                return Ok(ids.clone());
            }
        }
        let ids = Arc::new(self.repo.list_ids("snapshots")?);
        let mut st = self.state.lock().unwrap();
        st.loaded.retain(|id, _| ids.contains(id));
        st.damaged.retain(|id, _| ids.contains(id));
        st.listed = Some((Instant::now(), ids.clone()));
        Ok(ids)
    }

    /// The snapshot named `name` under `/ids`: any prefix of at least
    /// [`SHORT_ID`] hex digits that only one snapshot id starts with.
    pub fn resolve(&self, name: &str) -> Result<Option<Id>> {
        if name.len() < SHORT_ID {
            return Ok(None);
        }
        let ids = self.ids()?;
        match crate::repo::by_id_prefix(&ids, |i| *i, name) {
            Ok(id) => Ok(Some(*id)),
            Err(Error::SnapshotNotFound(_) | Error::AmbiguousSnapshot(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One snapshot object, loaded once.
    pub fn snapshot(&self, id: &Id) -> Result<Arc<Snapshot>> {
        if let Some(s) = self.state.lock().unwrap().loaded.get(id) {
            return Ok(s.clone());
        }
        let s = Arc::new(self.repo.load_snapshot(id)?);
        self.state.lock().unwrap().loaded.insert(*id, s.clone());
        Ok(s)
    }

    /// Every snapshot that opens; a damaged one is left out of `/hosts`
    /// (its host is unknown), logged once, and remembered: see
    /// [`Catalog::complete`].
    pub fn all(&self) -> Result<Vec<(Id, Arc<Snapshot>)>> {
        let ids = self.ids()?;
        let missing: Vec<Id> = {
            let st = self.state.lock().unwrap();
            ids.iter().filter(|i| !st.loaded.contains_key(i) && !st.damaged.contains_key(i)).copied().collect()
        };
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|s| {
            for _ in 0..self.threads.min(missing.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(id) = missing.get(i) else { break };
                    match self.snapshot(id) {
                        Ok(_) => {}
                        Err(e @ (Error::Integrity { .. } | Error::Format { .. } | Error::TooLarge { .. })) => {
                            // Said once per snapshot, to whoever mounted.
                            self.repo.warn(format!("skipping snapshot {id}: {e}"));
                            self.state.lock().unwrap().damaged.insert(*id, e.to_string());
                        }
                        Err(e) => {
                            failed.lock().unwrap().get_or_insert(e);
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().unwrap() {
            return Err(e);
        }
        let st = self.state.lock().unwrap();
        Ok(ids.iter().filter_map(|i| st.loaded.get(i).map(|s| (*i, s.clone()))).collect())
    }

    /// Every snapshot, when all of them open: what `latest` links need,
    /// since a damaged snapshot may be the newest (of the repository, or
    /// of any host). Otherwise [`Error::NewestUnknown`], naming it, as
    /// `cairn restore latest`.
    pub fn complete(&self) -> Result<Vec<(Id, Arc<Snapshot>)>> {
        let all = self.all()?;
        let st = self.state.lock().unwrap();
        match st.damaged.iter().next() {
            None => Ok(all),
            Some((id, e)) => {
                Err(Error::NewestUnknown { snapshot: id.short(), detail: e.clone(), others: st.damaged.len() - 1 })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(hex_prefix: &str) -> Id {
        let mut h = hex_prefix.to_string();
        while h.len() < 64 {
            h.push('0');
        }
        h.parse().unwrap()
    }

    #[test]
    fn ids_are_named_by_their_shortest_unique_prefix_of_eight_or_more() {
        let a = id("3f9a0c12aa");
        let b = id("3f9a0c12bb");
        let c = id("77");
        let names = id_names(&[c, b, a, a]);
        assert_eq!(
            names,
            [("3f9a0c12a".to_string(), a), ("3f9a0c12b".to_string(), b), ("77000000".to_string(), c)],
            "sharing 8 digits, they take a ninth; duplicates are one"
        );
        assert!(id_names(&[]).is_empty());
    }

    fn snap(host: &str, time: &str) -> Arc<Snapshot> {
        Arc::new(Snapshot {
            v: 1,
            time: time.parse().unwrap(),
            hostname: host.into(),
            username: "root".into(),
            paths: vec!["/etc".into()],
            tags: Vec::new(),
            policy: None,
            parent: None,
            tree: Id::hash_of(b"t"),
            program_version: "test".into(),
            original: None,
            summary: Default::default(),
        })
    }

    #[test]
    fn hosts_list_their_snapshots_by_time_and_unsafe_host_names_are_left_out() {
        let snaps = vec![
            (id("b1"), snap("web1", "2026-12-04T02:00:07.5Z")),
            (id("a1"), snap("web1", "2026-12-03T02:00:07Z")),
            (id("c1"), snap("web1", "2026-12-04T02:00:07.1Z")),
            (id("d1"), snap("db1", "2026-12-01T00:00:00Z")),
            (id("e1"), snap("../evil", "2026-12-01T00:00:00Z")),
            (id("f1"), snap("", "2026-12-01T00:00:00Z")),
        ];
        let (hosts, refused) = by_host(&snaps);
        assert_eq!(hosts.keys().collect::<Vec<_>>(), ["db1", "web1"]);
        let web: Vec<&str> = hosts["web1"].iter().map(|d| d.name.as_str()).collect();
        assert_eq!(web, ["2026-12-03T02:00:07", "2026-12-04T02:00:07_c1000000", "2026-12-04T02:00:07_b1000000"]);
        assert_eq!(refused, ["../evil", ""]);
        assert_eq!(newest(&snaps).unwrap().0, id("b1"));
    }

    /// `latest` must not quietly point at an older snapshot while the
    /// newest may be the one that does not open.
    #[test]
    fn a_damaged_snapshot_is_named_and_latest_refuses_while_it_is_there() {
        let (dir, repo) = crate::repo::walk::tests::repo();
        let older = repo.save_snapshot(&snap("web1", "2026-12-03T02:00:07Z")).unwrap();
        let newest = repo.save_snapshot(&snap("web1", "2026-12-04T02:00:07Z")).unwrap();
        let path = dir.path().join("repo").join(format!("snapshots/{newest}"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, bytes).unwrap();

        let catalog = Catalog::new(repo, 2);
        let all = catalog.all().unwrap();
        assert_eq!(all.iter().map(|s| s.0).collect::<Vec<_>>(), [older]);
        let e = catalog.complete().unwrap_err();
        assert!(matches!(&e, Error::NewestUnknown { snapshot, .. } if *snapshot == newest.short()), "{e}");
        // Once it is gone (forgotten, say), latest resolves again.
        std::fs::remove_file(&path).unwrap();
        catalog.state.lock().unwrap().listed = None;
        assert_eq!(catalog.complete().unwrap().iter().map(|s| s.0).collect::<Vec<_>>(), [older]);
    }
}
