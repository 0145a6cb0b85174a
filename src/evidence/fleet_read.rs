//! Reading the evidence of every repository of a fleet's view (`cairn
//! report --repo … --keys`, `cairn status --repo … --keys`): one
//! repository per thread, each reading its records up to its backend's
//! concurrency at once ([`super::store::load_repository`]), then verified
//! in order, chain by chain, as one repository alone would be. A month of
//! a forty-host fleet is thousands of small records: read one repository
//! after the other, the round trips of the first would wait for nothing.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::check::verify_repository;
use super::fleet::Source;
use super::trust::Trust;
use crate::backend::Backend;
use crate::crypto::MasterKey;
use crate::error::{Error, Result};

/// Reads and verifies the evidence of each of `locations` at `now`, all
/// at once, with the read keys `readers` and the auditor's `trust`;
/// `open` opens a location's backend (on the calling thread, one after
/// the other, before any is read). The sources are in the order of
/// `locations`. A repository that cannot be read is a source with why,
/// never a reason to leave the others out.
pub fn read_sources(
    locations: &[String],
    open: impl Fn(&str) -> Result<Arc<dyn Backend>>,
    readers: &[MasterKey],
    trust: &Trust,
    now: DateTime<Utc>,
) -> Vec<Source> {
    let opened: Vec<(&String, Result<Arc<dyn Backend>>)> = locations.iter().map(|l| (l, open(l))).collect();
    let read_one = |(location, opened): (&String, Result<Arc<dyn Backend>>)| {
        let read = opened
            .and_then(|b| {
                // A location with no repository is not one with no evidence.
                match b.stat("config") {
                    Err(e) if e.is_not_found() => return Err(Error::NoRepository(b.location())),
                    Err(e) => return Err(e.into()),
                    Ok(_) => {}
                }
                verify_repository(b.as_ref(), readers, trust, now)
            })
            .map_err(|e| e.to_string());
        Source { location: location.clone(), read }
    };
    if opened.len() < 2 {
        return opened.into_iter().map(read_one).collect();
    }
    std::thread::scope(|s| {
        let running: Vec<_> = opened.into_iter().map(|o| s.spawn(|| read_one(o))).collect();
        running.into_iter().map(crate::pool::joined).collect()
    })
}

#[cfg(test)]
#[path = "fleet_read_tests.rs"]
mod tests;
