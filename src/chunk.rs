//! Content-defined chunking with FastCDC (the `fastcdc` crate, 2020 variant).
//!
//! The chunker streams a reader through one reusable buffer of twice the
//! maximum chunk size, so memory per stream is fixed (16 MiB at the default
//! 8 MiB maximum) and each byte is copied at most once on its way through.
//! The gear table is seeded per repository: without the seed, chunk
//! boundaries cannot be used to fingerprint known files.

use std::io::{self, Read};

use fastcdc::v2020::{FastCDC, Normalization};
use serde::{Deserialize, Serialize};

/// Chunker parameters, fixed per repository at `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
    pub seed: u64,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams { min_size: 512 * 1024, avg_size: 1024 * 1024, max_size: 8 * 1024 * 1024, seed: 0 }
    }
}

impl ChunkerParams {
    /// Checks the parameters against the limits of FastCDC.
    pub fn validate(&self) -> Result<(), String> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunk sizes min {} / avg {} / max {} are outside FastCDC's limits or out of order",
                self.min_size, self.avg_size, self.max_size
            ))
        }
    }
}

/// Streams longer than this release the chunking buffer when done.
const RELEASE_AFTER: u64 = 1 << 20;

/// Splits a stream into content-defined chunks.
pub struct Chunker {
    params: ChunkerParams,
    buf: Vec<u8>,
}

impl Chunker {
    pub fn new(params: ChunkerParams) -> Chunker {
        Chunker { params, buf: Vec::new() }
    }

    /// Reads `reader` to its end and calls `emit` with each chunk in order.
    /// Returns the number of bytes read. `emit` may fail, which stops the
    /// stream with that error.
    pub fn chunk_stream<R: Read, E: From<io::Error>>(
        &mut self,
        mut reader: R,
        mut emit: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<u64, E> {
        let max = self.params.max_size as usize;
        if self.buf.len() < 2 * max {
            // Zeroed allocation maps untouched pages lazily: a small file
            // costs a page or two of resident memory, not the whole buffer.
            self.buf = vec![0u8; 2 * max];
        }
        let mut start = 0usize; // first unconsumed byte
        let mut end = 0usize; // end of valid data
        let mut eof = false;
        let mut total = 0u64;
        loop {
            // Keep at least one maximum chunk buffered unless the stream ended.
            if !eof && end - start < max {
                if start > 0 {
                    self.buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                }
                while end < self.buf.len() {
                    match reader.read(&mut self.buf[end..]) {
                        Ok(0) => {
                            eof = true;
                            break;
                        }
                        Ok(n) => {
                            end += n;
                            total += n as u64;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if start == end {
                if total > RELEASE_AFTER {
                    // A big file touched the whole buffer: give it back
                    // rather than keep it resident for the small files.
                    self.buf = Vec::new();
                }
                return Ok(total);
            }
            let len = self.cut(&self.buf[start..end]);
            emit(&self.buf[start..start + len])?;
            start += len;
        }
    }

    /// The length of the first chunk of `data` (all of it when it is shorter
    /// than the minimum size).
    pub fn cut(&self, data: &[u8]) -> usize {
        let p = &self.params;
        if data.len() <= p.min_size as usize {
            return data.len();
        }
        let cdc = FastCDC::with_level_and_seed(data, p.min_size, p.avg_size, p.max_size, Normalization::Level1, p.seed);
        let (_, cut) = cdc.cut(0, data.len());
        cut.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    fn chunks_of(p: ChunkerParams, data: &[u8]) -> Vec<Vec<u8>> {
        let mut c = Chunker::new(p);
        let mut out = Vec::new();
        let n = c
            .chunk_stream::<_, io::Error>(data, |ch| {
                out.push(ch.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(n as usize, data.len());
        out
    }

    fn small() -> ChunkerParams {
        ChunkerParams { min_size: 4096, avg_size: 16384, max_size: 65536, seed: 7 }
    }

    #[test]
    fn chunks_concatenate_to_input_and_respect_limits() {
        let data = pseudo_random(1_000_000, 1);
        let chunks = chunks_of(small(), &data);
        assert_eq!(chunks.concat(), data);
        assert!(chunks.len() > 20, "expected many chunks, got {}", chunks.len());
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.len() >= 4096 && c.len() <= 65536, "chunk of {} bytes", c.len());
        }
    }

    #[test]
    fn an_edit_in_the_middle_changes_only_nearby_chunks() {
        let data = pseudo_random(2_000_000, 2);
        let mut edited = data.clone();
        edited[1_000_000] ^= 0xff;
        let a = chunks_of(small(), &data);
        let b = chunks_of(small(), &edited);
        let set: std::collections::HashSet<_> = a.iter().collect();
        let changed = b.iter().filter(|c| !set.contains(c)).count();
        assert!(changed <= 2, "{changed} chunks changed for a one-byte edit");
    }

    #[test]
    fn seed_changes_boundaries() {
        let data = pseudo_random(1_000_000, 3);
        let a = chunks_of(small(), &data);
        let b = chunks_of(ChunkerParams { seed: 8, ..small() }, &data);
        assert_ne!(a.iter().map(Vec::len).collect::<Vec<_>>(), b.iter().map(Vec::len).collect::<Vec<_>>());
    }

    #[test]
    fn empty_and_tiny_streams() {
        assert!(chunks_of(small(), &[]).is_empty());
        assert_eq!(chunks_of(small(), b"abc"), vec![b"abc".to_vec()]);
    }

    #[test]
    fn default_params_are_valid() {
        ChunkerParams::default().validate().unwrap();
        assert!(ChunkerParams { min_size: 1, ..Default::default() }.validate().is_err());
    }
}
