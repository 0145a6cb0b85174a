//! The read workers of the FUSE file system: they reply on their own, so
//! several reads (the kernel's read-ahead, several readers) fetch and
//! decrypt at once, and a sequential reader also gets the next chunks
//! fetched ahead of it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{select, Receiver, Sender};
use fuser::ReplyData;
use libc::c_int;

use crate::browse::{FileLayout, Reader};
use crate::repo::Repository;

/// Chunks fetched ahead of a sequential reader.
const READ_AHEAD_CHUNKS: usize = 4;

pub(super) type Job = Box<dyn FnOnce() + Send>;

/// Worker threads: reads first, read-ahead when no read waits.
pub(super) struct Pool {
    pub reads: Sender<Job>,
    pub ahead: Sender<Job>,
}

impl Pool {
    pub fn new(threads: usize) -> Pool {
        let (reads, read_rx) = crossbeam_channel::unbounded::<Job>();
        let (ahead, ahead_rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..threads.max(1) {
            let (r, a): (Receiver<Job>, Receiver<Job>) = (read_rx.clone(), ahead_rx.clone());
            std::thread::Builder::new()
                .name(format!("mount-read-{i}"))
                .spawn(move || loop {
                    let job = match r.try_recv() {
                        Ok(j) => j,
                        Err(_) => select! {
                            recv(r) -> j => match j { Ok(j) => j, Err(_) => return },
                            recv(a) -> j => match j { Ok(j) => j, Err(_) => return },
                        },
                    };
                    job();
                })
                .expect("a thread starts");
        }
        Pool { reads, ahead }
    }
}

pub(super) struct OpenFile {
    pub layout: FileLayout,
    pub path: String,
    /// Where the last read ended: a read starting there is sequential.
    pub next: AtomicU64,
}

/// `EIO` for the kernel, and the cause for the person who mounted (the
/// repository's warning sink: the terminal `cairn mount` runs in).
pub(super) fn io_error(repo: &Repository, what: &str, e: impl std::fmt::Display) -> c_int {
    repo.warn(format!("{what}: {e}"));
    libc::EIO
}

/// Reads for one request, then fetches the next chunks for a sequential reader.
pub(super) fn read_job(
    reader: Arc<Reader>,
    f: Arc<OpenFile>,
    ahead: Arc<Sender<Job>>,
    offset: u64,
    size: u32,
    reply: ReplyData,
) {
    let data = match reader.read(&f.layout, offset, size as usize) {
        Ok(d) => d,
        Err(e) => {
            reply.error(io_error(reader.repo(), &f.path, e));
            return;
        }
    };
    reply.data(&data);
    let end = offset + data.len() as u64;
    let sequential = f.next.swap(end, Ordering::Relaxed) == offset;
    if !sequential {
        return;
    }
    let Some(first) = f.layout.chunk_at(end) else { return };
    for i in first..(first + READ_AHEAD_CHUNKS).min(f.layout.len()) {
        let id = *f.layout.chunk_id(i);
        if reader.blob_is_near(&id) {
            continue;
        }
        let r = reader.clone();
        let _ = ahead.send(Box::new(move || {
            // A failure is reported when the chunk is read for real.
            let _ = r.blob(&id);
        }));
    }
}
