//! The content pipeline: read, chunk and hash files in parallel; compress
//! and seal new chunks on a second set of threads; pack and upload on a
//! third (inside [`RepoWriter`]).
//!
//! ```text
//! scan ─▶ file jobs (at most MAX_IN_FLIGHT not yet reported back)
//!           ▼
//!         readers (N): read → FastCDC → keyed BLAKE3 → known? skip
//!           │ new chunks (bounded channel: N)      └─▶ one report per file
//!           ▼                                          back to the scan
//!         sealers (N): zstd → XChaCha20-Poly1305 → open pack
//!           │ full packs (bounded channel)
//!           ▼
//!         uploaders: put pack → publish index entries
//! ```
//!
//! The scan hands files over as it finds them and gets one [`Done`] report
//! per file, so a directory's tree can be written as soon as its last file
//! is read. Every queue is bounded, so memory stays flat whatever the data
//! size and the number of files: per reader one chunking buffer, per sealer
//! one chunk, a few packs, and at most [`MAX_IN_FLIGHT`] file jobs.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TryRecvError};

use super::Progress;
use crate::chunk::Chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::blob::Encoder;
use crate::repo::writer::RepoWriter;
use crate::repo::{BlobKind, Index, Repository};

/// Files handed to the readers and not yet reported back, at most. Enough
/// to keep the readers busy; each holds a path and keeps its directory
/// open.
pub const MAX_IN_FLIGHT: usize = 1024;

/// A regular file whose content must be read; `token` comes back with the
/// report.
#[derive(Debug)]
pub struct FileJob<T> {
    pub path: PathBuf,
    pub size: u64,
    pub token: T,
}

/// The report on one file job.
#[derive(Debug)]
pub struct Done<T> {
    pub path: PathBuf,
    pub token: T,
    pub outcome: FileOutcome,
}

/// The outcome of reading one file.
#[derive(Debug)]
pub enum FileOutcome {
    Read(ReadFile),
    /// Could not be read (vanished, no permission…).
    Failed(std::io::Error),
}

/// A file read in full.
#[derive(Debug, Clone)]
pub struct ReadFile {
    pub content: Vec<Id>,
    pub size: u64,
    /// Metadata when the file was opened (it may differ from the scan's).
    pub opened: OpenedMeta,
    /// The file changed while it was read (it is stored as read).
    pub changed: bool,
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

/// What the pipeline's threads share: a failure stops them all, and the
/// first error is the one reported.
#[derive(Default)]
pub struct Shared {
    stop: AtomicBool,
    first_error: Mutex<Option<Error>>,
}

impl Shared {
    fn fail(&self, e: Error) {
        self.stop.store(true, Ordering::SeqCst);
        self.first_error.lock().unwrap().get_or_insert(e);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The error that stopped the pipeline, or `fallback`.
    fn error(&self, fallback: Error) -> Error {
        self.first_error.lock().unwrap().take().unwrap_or(fallback)
    }
}

/// The scan's end of the pipeline.
pub struct Pipeline<'a, T> {
    jobs: Option<Sender<FileJob<T>>>,
    done: Receiver<Done<T>>,
    in_flight: usize,
    shared: &'a Shared,
}

/// Starts `threads` readers and as many sealers in `scope`.
#[allow(clippy::too_many_arguments)]
pub fn start<'scope, 'env, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    repo: &'env Repository,
    index: &'env Index,
    writer: &'env RepoWriter,
    threads: usize,
    counters: &'env Counters,
    shared: &'env Shared,
    progress: &'env dyn Progress,
) -> Pipeline<'env, T> {
    let threads = threads.max(1);
    let key = repo.key();
    let level = repo.config().compression;
    let (chunk_tx, chunk_rx) = bounded::<(Id, Vec<u8>)>(threads);
    let (job_tx, job_rx) = unbounded::<FileJob<T>>();
    let (done_tx, done_rx) = unbounded::<Done<T>>();
    for _ in 0..threads {
        let rx = chunk_rx.clone();
        scope.spawn(move || {
            let mut enc = Encoder::new(level);
            let mut sealed = Vec::new();
            for (id, data) in rx {
                if shared.stopped() {
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
                    shared.fail(e);
                }
            }
        });
    }
    for _ in 0..threads {
        let (jobs, done, chunks) = (job_rx.clone(), done_tx.clone(), chunk_tx.clone());
        scope.spawn(move || {
            let mut chunker = Chunker::new(repo.config().chunker);
            for job in jobs {
                if shared.stopped() {
                    break;
                }
                progress.reading(&job.path);
                crate::failpoint::hit!("backup::reading");
                match read_file(&job.path, job.size, &mut chunker, repo, index, writer, &chunks, counters) {
                    Ok(outcome) => {
                        let report = Done { path: job.path, token: job.token, outcome };
                        if done.send(report).is_err() {
                            break; // the scan stopped
                        }
                    }
                    Err(e) => {
                        shared.fail(e);
                        break;
                    }
                }
            }
        });
    }
    Pipeline { jobs: Some(job_tx), done: done_rx, in_flight: 0, shared }
}

impl<T> Pipeline<'_, T> {
    /// Files handed over and not yet reported back.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Hands a file to the readers (call [`Pipeline::wait`] first while
    /// [`MAX_IN_FLIGHT`] files are out).
    pub fn send(&mut self, job: FileJob<T>) -> Result<()> {
        let sent = self.jobs.as_ref().expect("the pipeline is open").send(job);
        if sent.is_err() || self.shared.stopped() {
            return Err(self.shared.error(Error::Stopped("backup pipeline")));
        }
        self.in_flight += 1;
        Ok(())
    }

    /// A report that is ready, if any.
    pub fn ready(&mut self) -> Result<Option<Done<T>>> {
        match self.done.try_recv() {
            Ok(d) if !self.shared.stopped() => {
                self.in_flight -= 1;
                Ok(Some(d))
            }
            Err(TryRecvError::Empty) if !self.shared.stopped() => Ok(None),
            _ => Err(self.shared.error(Error::Stopped("backup pipeline"))),
        }
    }

    /// Waits for the next report (there must be a file out).
    pub fn wait(&mut self) -> Result<Done<T>> {
        match self.done.recv() {
            Ok(d) if !self.shared.stopped() => {
                self.in_flight -= 1;
                Ok(d)
            }
            _ => Err(self.shared.error(Error::Stopped("backup pipeline"))),
        }
    }

    /// No more files will come: the readers stop once the last is read.
    pub fn close(&mut self) {
        self.jobs = None;
    }
}

impl<T> Drop for Pipeline<'_, T> {
    fn drop(&mut self) {
        // Stops the readers when the scan gives up early.
        if self.in_flight > 0 {
            self.shared.stop.store(true, Ordering::SeqCst);
        }
    }
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
    tx: &Sender<(Id, Vec<u8>)>,
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
    Ok(FileOutcome::Read(ReadFile { content, size, opened: OpenedMeta::from(&before), changed }))
}
