//! The content pipeline: read, chunk and hash files in parallel; compress
//! and seal new chunks on a second set of threads; pack and upload on a
//! third (inside [`RepoWriter`]).
//!
//! ```text
//! files ─▶ readers (N): read → FastCDC → keyed BLAKE3 → known? skip
//!                 │ new chunks (bounded channel: N)
//!                 ▼
//!          sealers (N): zstd → XChaCha20-Poly1305 → open pack
//!                 │ full packs (bounded channel)
//!                 ▼
//!          uploaders: put pack → publish index entries
//! ```
//!
//! Every queue is bounded, so memory stays flat whatever the data size:
//! per reader one chunking buffer, per sealer one chunk, and a few packs.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crossbeam_channel::bounded;

use crate::chunk::Chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::blob::Encoder;
use crate::repo::writer::RepoWriter;
use crate::repo::{BlobKind, Index, Repository};

use super::scan::FileJob;
use super::Progress;

/// The outcome of reading one file.
#[derive(Debug)]
pub enum FileOutcome {
    Read {
        content: Vec<Id>,
        size: u64,
        /// Metadata when the file was opened (it may differ from the scan's).
        opened: OpenedMeta,
        /// The file changed while it was read (it is stored as read).
        changed: bool,
    },
    /// Could not be read (vanished, no permission…).
    Failed(std::io::Error),
}

/// The parts of a file's metadata at open time that the snapshot records
/// (kept small: there is one per file read).
#[derive(Debug, Clone, Copy)]
pub struct OpenedMeta {
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub ctime: i64,
    pub ctime_nsec: u32,
    pub mode: u32,
}

impl From<&std::fs::Metadata> for OpenedMeta {
    fn from(m: &std::fs::Metadata) -> Self {
        OpenedMeta {
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec() as u32,
            ctime: m.ctime(),
            ctime_nsec: m.ctime_nsec() as u32,
            mode: m.mode() & 0o7777,
        }
    }
}

/// Shared counters of a running backup.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_read: AtomicU64,
    pub files_read: AtomicU64,
    pub new_blobs: AtomicU64,
    pub new_bytes: AtomicU64,
}

/// Reads every job's file through the pipeline; returns one outcome per job.
pub fn run(
    repo: &Repository,
    index: &Index,
    writer: &RepoWriter,
    jobs: &[FileJob],
    threads: usize,
    counters: &Counters,
    progress: &dyn Progress,
) -> Result<Vec<FileOutcome>> {
    let threads = threads.max(1);
    let results: Vec<Mutex<Option<FileOutcome>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let fail = |e: Error| {
        failed.store(true, Ordering::SeqCst);
        first_error.lock().unwrap().get_or_insert(e);
    };
    let key = repo.key();
    let level = repo.config().compression;
    let (tx, rx) = bounded::<(Id, Vec<u8>)>(threads);

    std::thread::scope(|s| {
        for _ in 0..threads {
            let rx = rx.clone();
            let fail = &fail;
            let failed = &failed;
            s.spawn(move || {
                let mut enc = Encoder::new(level);
                let mut sealed = Vec::new();
                for (id, data) in rx {
                    if failed.load(Ordering::Relaxed) {
                        continue; // drain so readers never block
                    }
                    if sealed.capacity() > 1 << 20 {
                        sealed = Vec::new(); // a large chunk's buffer goes back
                    }
                    sealed.clear();
                    enc.encode_into(key, &data, &mut sealed);
                    counters.new_blobs.fetch_add(1, Ordering::Relaxed);
                    counters.new_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                    if let Err(e) = writer.add_blob(BlobKind::Data, id, data.len() as u32, &sealed) {
                        fail(e);
                    }
                }
            });
        }
        drop(rx);
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, failed, results, fail) = (&next, &failed, &results, &fail);
            s.spawn(move || {
                let mut chunker = Chunker::new(repo.config().chunker);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs.len() || failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let job = &jobs[i];
                    let outcome = read_file(&job.path, job.size, &mut chunker, repo, index, writer, &tx, counters);
                    match outcome {
                        Ok(o) => {
                            progress.file_done(&job.path, job.size);
                            *results[i].lock().unwrap() = Some(o);
                        }
                        Err(e) => fail(e),
                    }
                }
            });
        }
        drop(tx);
    });
    if let Some(e) = first_error.into_inner().unwrap() {
        return Err(e);
    }
    Ok(results.into_iter().map(|m| m.into_inner().unwrap().expect("every job ran")).collect())
}

fn open_noatime(path: &Path) -> std::io::Result<File> {
    let r = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOATIME | libc::O_NOFOLLOW).open(path);
    match r {
        // O_NOATIME is refused on files we do not own.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)
        }
        r => r,
    }
}

/// Counts bytes as they are read, for the "bytes read" figure.
struct Counted<'a, R> {
    inner: R,
    n: &'a AtomicU64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Errors while reading a file are the file's problem (the outcome);
/// errors while storing are the backup's (the `Err`).
#[allow(clippy::too_many_arguments)]
fn read_file(
    path: &Path,
    expected_size: u64,
    chunker: &mut Chunker,
    repo: &Repository,
    index: &Index,
    writer: &RepoWriter,
    tx: &crossbeam_channel::Sender<(Id, Vec<u8>)>,
    counters: &Counters,
) -> Result<FileOutcome> {
    let f = match open_noatime(path) {
        Ok(f) => f,
        Err(e) => return Ok(FileOutcome::Failed(e)),
    };
    let before = match f.metadata() {
        Ok(m) => m,
        Err(e) => return Ok(FileOutcome::Failed(e)),
    };
    if !before.file_type().is_file() {
        return Ok(FileOutcome::Failed(std::io::Error::other("no longer a regular file")));
    }
    let key = repo.key();
    let mut content = Vec::with_capacity((expected_size / (1 << 20)) as usize + 1);
    let mut store_err: Option<Error> = None;
    let reader = Counted { inner: &f, n: &counters.bytes_read };
    let r = chunker.chunk_stream::<_, std::io::Error>(reader, |chunk| {
        let id = key.blob_id(chunk);
        content.push(id);
        if writer.claim(index, &id) && tx.send((id, chunk.to_vec())).is_err() {
            store_err = Some(Error::Stopped("backup pipeline"));
            return Err(std::io::Error::other("pipeline stopped"));
        }
        Ok(())
    });
    if let Some(e) = store_err {
        return Err(e);
    }
    let size = match r {
        Ok(n) => n,
        Err(e) => return Ok(FileOutcome::Failed(e)),
    };
    counters.files_read.fetch_add(1, Ordering::Relaxed);
    let after = f.metadata().ok();
    let changed = size != before.len()
        || after.is_none_or(|a| {
            a.len() != before.len()
                || a.mtime() != before.mtime()
                || a.mtime_nsec() != before.mtime_nsec()
                || a.ctime() != before.ctime()
                || a.ctime_nsec() != before.ctime_nsec()
        });
    content.shrink_to_fit();
    Ok(FileOutcome::Read { content, size, opened: OpenedMeta::from(&before), changed })
}
