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
//! `cairn copy` runs the same stages ([`start_with`]): its walk of the
//! source's trees sends jobs, and its readers read chunks back from the
//! source repository instead of opening files (`crate::copy`).
//!
//! The scan hands files over as it finds them and gets one [`Done`] report
//! per file, so a directory's tree can be written as soon as its last file
//! is read. Every queue is bounded, so memory stays flat whatever the data
//! size and the number of files: per reader one chunking buffer, per sealer
//! one chunk, a few packs, and at most [`MAX_IN_FLIGHT`] file jobs.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{bounded, unbounded, Receiver, Sender, TryRecvError};

use super::Progress;
use crate::chunk::Chunker;
use crate::crypto::MasterKey;
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
    /// The handle of the file's directory, which it is opened from by its
    /// name (the last component of `path`).
    pub dir: Arc<OwnedFd>,
    /// The device and inode the scan found there: another file put in
    /// its place is not read.
    pub inode: (u64, u64),
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
    /// Its extended attributes, read from the descriptor at open time.
    pub xattrs: Vec<crate::repo::tree::Xattr>,
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

/// The feeding end of the pipeline: jobs go in, one report per job comes
/// back. A backup's scan sends [`FileJob`]s and gets [`Done`] reports
/// ([`FilePipeline`]); a copy sends the chunk lists of the source's files.
pub struct Pipeline<'a, J, R> {
    jobs: Option<Sender<J>>,
    done: Receiver<R>,
    in_flight: usize,
    shared: &'a Shared,
}

/// The pipeline of a backup's scan.
pub type FilePipeline<'a, T> = Pipeline<'a, FileJob<T>, Done<T>>;

/// A chunk on its way to the sealers.
pub enum Unsealed {
    /// Plaintext, compressed (when it pays) and sealed by the sealer.
    Plain(Vec<u8>),
    /// A blob's payload as another repository stored it (the codec byte
    /// and the body, compressed with this repository's level or raw), of
    /// `raw_length` bytes of plaintext: only sealed.
    Encoded { raw_length: u32, payload: Vec<u8> },
}

/// A reader's way into the pipeline: each chunk is hashed with the
/// repository's key and, when neither the index nor another worker has
/// it, goes on to the sealers.
pub struct Chunks<'a> {
    key: &'a MasterKey,
    index: &'a Index,
    writer: &'a RepoWriter,
    tx: Sender<(Id, Unsealed)>,
}

impl Chunks<'_> {
    /// Stores `data` unless it is stored already; returns its id.
    pub fn plain(&self, data: &[u8]) -> Result<Id> {
        let id = self.key.blob_id(data);
        if self.writer.claim(self.index, &id) {
            self.send(id, Unsealed::Plain(data.to_vec()))?;
        }
        Ok(id)
    }

    /// Stores `data` unless it is stored already, sealing `payload` (its
    /// encoding, see [`Unsealed::Encoded`]) rather than compressing it
    /// again; returns its id.
    pub fn encoded(&self, data: &[u8], payload: Vec<u8>) -> Result<Id> {
        let id = self.key.blob_id(data);
        if self.writer.claim(self.index, &id) {
            self.send(id, Unsealed::Encoded { raw_length: data.len() as u32, payload })?;
        }
        Ok(id)
    }

    fn send(&self, id: Id, chunk: Unsealed) -> Result<()> {
        self.tx.send((id, chunk)).map_err(|_| Error::Stopped("content pipeline"))
    }
}

/// Starts `threads` readers and as many sealers in `scope` for a backup:
/// each reader opens, reads and chunks the files it is sent.
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
) -> FilePipeline<'env, T> {
    let read = move |chunker: &mut Chunker, chunks: &Chunks<'_>, job: FileJob<T>| {
        progress.reading(&job.path);
        crate::failpoint::hit!("backup::reading");
        let outcome = read_file(&job, chunker, chunks, counters)?;
        Ok(Done { path: job.path, token: job.token, outcome })
    };
    start_with(scope, repo, index, writer, threads, counters, shared, read)
}

/// Starts `threads` readers and as many sealers in `scope`. Each reader
/// turns the jobs it is sent into reports with `read`, which cuts and
/// hands over content through its [`Chunker`] (the repository's) and
/// [`Chunks`]; an `Err` from `read` stops the pipeline.
#[allow(clippy::too_many_arguments)]
pub fn start_with<'scope, 'env, J, R, F>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    repo: &'env Repository,
    index: &'env Index,
    writer: &'env RepoWriter,
    threads: usize,
    counters: &'env Counters,
    shared: &'env Shared,
    read: F,
) -> Pipeline<'env, J, R>
where
    J: Send + 'scope,
    R: Send + 'scope,
    F: Fn(&mut Chunker, &Chunks<'_>, J) -> Result<R> + Clone + Send + 'scope,
{
    let threads = threads.max(1);
    let key = repo.key();
    let level = repo.config().compression;
    let (chunk_tx, chunk_rx) = bounded::<(Id, Unsealed)>(threads);
    let (job_tx, job_rx) = unbounded::<J>();
    let (done_tx, done_rx) = unbounded::<R>();
    for _ in 0..threads {
        let rx = chunk_rx.clone();
        scope.spawn(move || {
            let mut enc = Encoder::new(level);
            let mut sealed = Vec::new();
            for (id, chunk) in rx {
                if shared.stopped() {
                    continue; // drain so readers never block
                }
                if sealed.capacity() > 1 << 20 {
                    sealed = Vec::new(); // a large chunk's buffer goes back
                }
                sealed.clear();
                let raw_length = match &chunk {
                    Unsealed::Plain(data) => {
                        enc.encode_into(key, data, &mut sealed);
                        data.len() as u32
                    }
                    Unsealed::Encoded { raw_length, payload } => {
                        key.seal_into(&[payload], &mut sealed);
                        *raw_length
                    }
                };
                counters.new_blobs.fetch_add(1, Ordering::Relaxed);
                counters.new_bytes.fetch_add(raw_length as u64, Ordering::Relaxed);
                if let Err(e) = writer.add_blob(BlobKind::Data, id, raw_length, &sealed) {
                    shared.fail(e);
                }
            }
        });
    }
    for _ in 0..threads {
        let (jobs, done, tx, read) = (job_rx.clone(), done_tx.clone(), chunk_tx.clone(), read.clone());
        scope.spawn(move || {
            let mut chunker = Chunker::new(repo.config().chunker);
            let chunks = Chunks { key, index, writer, tx };
            for job in jobs {
                if shared.stopped() {
                    break;
                }
                match read(&mut chunker, &chunks, job) {
                    Ok(report) => {
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

impl<J, R> Pipeline<'_, J, R> {
    /// Files handed over and not yet reported back.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Hands a job to the readers (call [`Pipeline::wait`] first while
    /// [`MAX_IN_FLIGHT`] jobs are out).
    pub fn send(&mut self, job: J) -> Result<()> {
        let sent = self.jobs.as_ref().expect("the pipeline is open").send(job);
        if sent.is_err() || self.shared.stopped() {
            return Err(self.shared.error(Error::Stopped("content pipeline")));
        }
        self.in_flight += 1;
        Ok(())
    }

    /// A report that is ready, if any.
    pub fn ready(&mut self) -> Result<Option<R>> {
        match self.done.try_recv() {
            Ok(d) if !self.shared.stopped() => {
                self.in_flight -= 1;
                Ok(Some(d))
            }
            Err(TryRecvError::Empty) if !self.shared.stopped() => Ok(None),
            _ => Err(self.shared.error(Error::Stopped("content pipeline"))),
        }
    }

    /// Waits for the next report (there must be a file out).
    pub fn wait(&mut self) -> Result<R> {
        match self.done.recv() {
            Ok(d) if !self.shared.stopped() => {
                self.in_flight -= 1;
                Ok(d)
            }
            _ => Err(self.shared.error(Error::Stopped("content pipeline"))),
        }
    }

    /// No more files will come: the readers stop once the last is read.
    pub fn close(&mut self) {
        self.jobs = None;
    }
}

impl<J, R> Drop for Pipeline<'_, J, R> {
    fn drop(&mut self) {
        // Stops the readers when the scan gives up early.
        if self.in_flight > 0 {
            self.shared.stop.store(true, Ordering::SeqCst);
        }
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
fn read_file<T>(
    job: &FileJob<T>,
    chunker: &mut Chunker,
    chunks: &Chunks<'_>,
    counters: &Counters,
) -> Result<FileOutcome> {
    let expected_size = job.size;
    let Some(name) = job.path.file_name() else {
        return Ok(FileOutcome::Failed(std::io::Error::other("a file's path has no name")));
    };
    let f = match super::dirfd::open_file_at(job.dir.as_fd(), name) {
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
    if (before.dev(), before.ino()) != job.inode {
        return Ok(FileOutcome::Failed(std::io::Error::other("replaced by another file while the backup ran")));
    }
    let xattrs = crate::fsmeta::read_xattrs_of(&f);
    let mut content = Vec::with_capacity((expected_size / (1 << 20)) as usize + 1);
    let mut store_err: Option<Error> = None;
    let reader = Counted { inner: &f, n: &counters.bytes_read };
    let r = chunker.chunk_stream::<_, std::io::Error>(reader, |chunk| match chunks.plain(chunk) {
        Ok(id) => {
            content.push(id);
            Ok(())
        }
        Err(e) => {
            store_err = Some(e);
            Err(std::io::Error::other("pipeline stopped"))
        }
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
    Ok(FileOutcome::Read(ReadFile { content, size, opened: OpenedMeta::from(&before), changed, xattrs }))
}
