//! One file's content, read back from the source and handed to the
//! content pipeline ([`crate::backup::pipeline`]) as the destination cuts
//! it. This runs on the pipeline's readers, several files at once; the
//! pipeline's sealers compress, seal and pack what the destination lacks.
//!
//! - Same chunker parameters: each source chunk is one destination chunk.
//! - Other parameters: the content is streamed through the destination's
//!   chunker, chunk after chunk of the source.
//!
//! A source chunk that stays whole in the destination (the same
//! parameters, or a file of one chunk that the destination's chunker
//! leaves whole: most files) keeps its stored payload when both
//! repositories compress at the same level: it is only sealed again with
//! the destination's key, not compressed again, and the destination holds
//! the bytes a compression of its own would have made.

use std::io::Read;

use crate::backup::dirs::Place;
use crate::backup::pipeline::Chunks;
use crate::chunk::Chunker;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::{Index, Repository};

/// A file whose content is copied: a job of the pipeline.
pub struct ContentJob {
    /// Its chunks in the source.
    pub content: Vec<Id>,
    pub size: u64,
    /// Its path in the snapshot.
    pub path: Vec<u8>,
    /// Where its node waits in the destination's open directories.
    pub place: Place,
}

/// A file copied: its chunks in the destination.
pub struct ContentDone {
    pub content: Vec<Id>,
    pub size: u64,
    pub path: Vec<u8>,
    pub place: Place,
}

/// How file contents go from the source into the destination.
#[derive(Clone, Copy)]
pub struct ContentReader<'a> {
    pub src: &'a Repository,
    pub index: &'a Index,
    /// Cut again: the chunker parameters differ.
    pub rechunk: bool,
    /// Both repositories compress at the same level: a chunk that stays
    /// whole keeps its payload.
    pub keep_payloads: bool,
}

impl ContentReader<'_> {
    /// Copies one file's content through `chunks`; an error (a source
    /// chunk that cannot be read, a chunk list that disagrees with the
    /// file's size) fails the copy.
    pub fn read(&self, chunker: &mut Chunker, chunks: &Chunks<'_>, job: ContentJob) -> Result<ContentDone> {
        let (content, size) = if !self.rechunk {
            let mut out = Vec::with_capacity(job.content.len());
            let mut size = 0u64;
            for id in &job.content {
                let (data, id) = self.whole(chunks, id)?;
                size += data;
                out.push(id);
            }
            (out, size)
        } else if let ([one], true) = (&job.content[..], self.keep_payloads) {
            let (data, payload) = self.src.read_blob_and_payload(self.index, one)?;
            if chunker.cut(&data) == data.len() {
                (vec![chunks.encoded(&data, payload)?], data.len() as u64)
            } else {
                self.cut_again(chunker, chunks, &data[..], &job.path)?
            }
        } else {
            let mut failed = None;
            let reader = Contents {
                src: self.src,
                index: self.index,
                ids: &job.content,
                next: 0,
                buf: Vec::new(),
                pos: 0,
                failed: &mut failed,
            };
            let r = self.cut_again(chunker, chunks, reader, &job.path);
            if let Some(e) = failed {
                return Err(e);
            }
            r?
        };
        check_size(size, job.size, || String::from_utf8_lossy(&job.path).into_owned())?;
        Ok(ContentDone { content, size, path: job.path, place: job.place })
    }

    /// One source chunk as one destination chunk: its plaintext's length
    /// and its id in the destination.
    fn whole(&self, chunks: &Chunks<'_>, id: &Id) -> Result<(u64, Id)> {
        if self.keep_payloads {
            let (data, payload) = self.src.read_blob_and_payload(self.index, id)?;
            Ok((data.len() as u64, chunks.encoded(&data, payload)?))
        } else {
            let data = self.src.read_blob(self.index, id)?;
            Ok((data.len() as u64, chunks.plain(&data)?))
        }
    }

    /// `content` cut by the destination's chunker: the chunks' ids and the
    /// bytes read.
    fn cut_again(
        &self,
        chunker: &mut Chunker,
        chunks: &Chunks<'_>,
        content: impl Read,
        path: &[u8],
    ) -> Result<(Vec<Id>, u64)> {
        let mut out = Vec::new();
        let mut stored = None;
        let read = chunker.chunk_stream::<_, std::io::Error>(content, |chunk| match chunks.plain(chunk) {
            Ok(id) => {
                out.push(id);
                Ok(())
            }
            Err(e) => {
                stored = Some(e);
                Err(std::io::Error::other("store failed"))
            }
        });
        if let Some(e) = stored {
            return Err(e);
        }
        let size = read.map_err(|e| Error::io(String::from_utf8_lossy(path).into_owned(), e))?;
        Ok((out, size))
    }
}

/// A chunk list is the file's only when its bytes add up to its size.
fn check_size(read: u64, size: u64, what: impl Fn() -> String) -> Result<()> {
    if read != size {
        return Err(Error::format(
            format!("file `{}` of the source", what()),
            format!("its chunks hold {read} bytes, its entry says {size}"),
        ));
    }
    Ok(())
}

/// A file's content read back chunk by chunk from the source.
struct Contents<'a> {
    src: &'a Repository,
    index: &'a Index,
    ids: &'a [Id],
    next: usize,
    buf: Vec<u8>,
    pos: usize,
    /// Why reading stopped (the chunker only sees an I/O error).
    failed: &'a mut Option<Error>,
}

impl Read for Contents<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            let Some(id) = self.ids.get(self.next) else { return Ok(0) };
            self.next += 1;
            self.buf = match self.src.read_blob(self.index, id) {
                Ok(b) => b,
                Err(e) => {
                    *self.failed = Some(e);
                    return Err(std::io::Error::other("the source could not be read"));
                }
            };
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
