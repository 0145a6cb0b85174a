//! What the workers restoring one batch share: the plan, the directory
//! handles, and each file's progress.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use super::handles::Handles;
use super::plan::Plan;

/// A file's (device, inode): what it must still be when opened again.
pub(super) use super::plan::Ident;

pub(super) struct State<'a> {
    pub plan: &'a Plan,
    /// The batch's directories.
    pub dirs: &'a Handles<'a>,
    /// The directory each file lies in (as [`Handles::locate`] names it).
    pub file_dir: Vec<u32>,
    /// The target was new or empty: files are created as chunks arrive.
    pub fresh: bool,
    pub as_root: bool,
    /// Set-id bits and file capabilities are left out ([`super::privileged`]).
    pub strip: bool,
    /// Whether each file existed before (then zeros must be written).
    pub existed: Vec<bool>,
    /// Each file's identity once it exists (fresh multi-chunk files
    /// record it when their first chunk creates them; the others wait).
    pub ident: Vec<Mutex<Option<Ident>>>,
    /// Chunk writes still due per file; the last one finishes the file.
    pub remaining: Vec<AtomicU32>,
    pub finished: Vec<AtomicBool>,
    pub failed: Vec<OnceLock<String>>,
    pub warnings: Mutex<Vec<String>>,
    pub bytes_written: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub first_byte: OnceLock<Instant>,
}

impl State<'_> {
    pub fn fail(&self, file: usize, reason: String) {
        let _ = self.failed[file].set(reason);
    }

    pub fn count_written(&self, n: usize) {
        self.bytes_written.fetch_add(n as u64, Ordering::Relaxed);
        self.first_byte.get_or_init(Instant::now);
    }
}
