//! Reading a large range of an object as several ranged requests at once.
//!
//! One connection carries at most its receive window per round trip (a
//! few MiB), so at tens of milliseconds a 16 MiB pack span read with one
//! request takes several round trips, and a restore batch that needs one
//! or two packs waits that long while its other connections sit idle.
//! Read in parts on separate connections, the span takes about one round
//! trip, as S3's own guidance for large objects says. The storage's
//! concurrency still bounds the requests in flight, and the caller says
//! how many parts it may use (a restore with as many ranges under way as
//! connections gains nothing from parts, and would only start threads);
//! local storage reads the range in one go.

use super::{Backend, BackendError, BackendErrorKind, BackendResult};

/// The smallest part worth its own request.
pub const PART: u64 = 4 << 20;

/// `length` bytes of `key` from `offset`, as [`Backend::get_range`] gives
/// them; from remote storage, in up to `max_parts` (and
/// [`Backend::concurrency`]) parts of at least [`PART`] bytes fetched at
/// once, each on its own thread.
pub fn get_range_in_parts(
    b: &dyn Backend,
    key: &str,
    offset: u64,
    length: u64,
    max_parts: usize,
) -> BackendResult<Vec<u8>> {
    let parts = (length / PART).min(b.concurrency().min(max_parts) as u64);
    if !b.is_remote() || parts < 2 {
        return b.get_range(key, offset, length);
    }
    let size = length.div_ceil(parts) as usize;
    let mut out = vec![0u8; length as usize];
    let read: Vec<BackendResult<()>> = std::thread::scope(|s| {
        let running: Vec<_> = out
            .chunks_mut(size)
            .enumerate()
            .map(|(i, part)| {
                s.spawn(move || {
                    let at = offset + (i * size) as u64;
                    let got = b.get_range(key, at, part.len() as u64)?;
                    if got.len() != part.len() {
                        let message = format!("range {at}+{} returned {} bytes", part.len(), got.len());
                        return Err(BackendError::new(BackendErrorKind::Transient, "download", key, message));
                    }
                    part.copy_from_slice(&got);
                    Ok(())
                })
            })
            .collect();
        running.into_iter().map(crate::pool::joined).collect()
    });
    read.into_iter().collect::<BackendResult<Vec<()>>>()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::backend::ObjectInfo;

    /// One object of `size` bytes; each ranged read is recorded and held
    /// until `together` of them are under way at once (or, failing that
    /// for 10 seconds, answered anyway, so that a test of sequential reads
    /// fails instead of hanging).
    struct Remote {
        bytes: Vec<u8>,
        remote: bool,
        together: usize,
        reads: Mutex<Reads>,
        arrived: Condvar,
    }

    /// Ranges read, reads under way, the most under way at once.
    type Reads = (Vec<(u64, u64)>, usize, usize);

    impl Remote {
        fn new(size: usize, remote: bool, together: usize) -> Remote {
            let bytes = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            Remote { bytes, remote, together, reads: Mutex::new((Vec::new(), 0, 0)), arrived: Condvar::new() }
        }
        /// The ranges read, sorted, and the most read at once.
        fn reads(&self) -> (Vec<(u64, u64)>, usize) {
            let r = self.reads.lock().unwrap();
            let mut ranges = r.0.clone();
            ranges.sort();
            (ranges, r.2)
        }
    }

    impl Backend for Remote {
        fn location(&self) -> String {
            "remote".into()
        }
        fn get(&self, _key: &str) -> BackendResult<Vec<u8>> {
            Ok(self.bytes.clone())
        }
        fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
            let mut r = self.reads.lock().unwrap();
            r.0.push((offset, length));
            r.1 += 1;
            r.2 = r.2.max(r.1);
            self.arrived.notify_all();
            let deadline = Duration::from_secs(10);
            r = self.arrived.wait_timeout_while(r, deadline, |r| r.2 < self.together).unwrap().0;
            r.1 -= 1;
            if key == "fails" && offset > 0 {
                return Err(BackendError::new(BackendErrorKind::Transient, "download", key, "reset"));
            }
            let end = if key == "short" && offset > 0 { offset + length - 1 } else { offset + length };
            Ok(self.bytes[offset as usize..end as usize].to_vec())
        }
        fn put(&self, _key: &str, _data: &[u8]) -> BackendResult<()> {
            Ok(())
        }
        fn put_mutable(&self, _key: &str, _data: &[u8]) -> BackendResult<()> {
            Ok(())
        }
        fn list(&self, _prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
            Ok(Vec::new())
        }
        fn delete(&self, _key: &str) -> BackendResult<()> {
            Ok(())
        }
        fn stat(&self, _key: &str) -> BackendResult<u64> {
            Ok(self.bytes.len() as u64)
        }
        fn concurrency(&self) -> usize {
            8
        }
        fn is_remote(&self) -> bool {
            self.remote
        }
    }

    #[test]
    fn a_large_remote_range_is_read_in_parts_at_once_and_comes_back_whole() {
        let mib = 1u64 << 20;
        // 18 MiB from offset 1 MiB: four parts (at least 4 MiB each), all
        // under way together.
        let b = Remote::new(20 << 20, true, 4);
        let got = get_range_in_parts(&b, "pack", mib, 18 * mib, 64).unwrap();
        assert!(got == b.bytes[mib as usize..19 * mib as usize], "the parts put back in order");
        let (ranges, most) = b.reads();
        let part = (18 * mib).div_ceil(4);
        assert_eq!(ranges, (0..4).map(|i| (mib + i * part, part)).collect::<Vec<_>>());
        assert_eq!(most, 4, "every part in flight at once");
        // No more parts than the storage's concurrency: 8 of a 40 MiB range.
        let b = Remote::new(40 << 20, true, 8);
        assert!(get_range_in_parts(&b, "pack", 0, 40 * mib, 64).unwrap() == b.bytes);
        assert_eq!(b.reads().0.len(), 8);
        // Nor more than the caller allows; the last part is the shorter.
        let b = Remote::new(20 << 20, true, 3);
        assert!(get_range_in_parts(&b, "pack", 0, 17 * mib + 1, 3).unwrap() == b.bytes[..17 * mib as usize + 1]);
        let part = (17 * mib + 1).div_ceil(3);
        assert_eq!(b.reads().0, [(0, part), (part, part), (2 * part, 17 * mib + 1 - 2 * part)]);
        assert_eq!(get_range_in_parts(&b, "pack", 0, 16 * mib, 1).unwrap().len(), 16 << 20);
        assert_eq!(b.reads().0.len(), 4, "one request when one part is allowed");
    }

    #[test]
    fn a_small_or_local_range_is_one_request_and_a_failed_part_fails_the_read() {
        for (remote, length) in [(true, 7 << 20), (false, 16 << 20)] {
            let b = Remote::new(20 << 20, remote, 1);
            assert!(get_range_in_parts(&b, "pack", 3, length, 64).unwrap() == b.bytes[3..3 + length as usize]);
            assert_eq!(b.reads().0, [(3, length)], "remote {remote}, {length} bytes");
        }
        let b = Remote::new(20 << 20, true, 2);
        let e = get_range_in_parts(&b, "fails", 0, 16 << 20, 64).unwrap_err();
        assert_eq!(e.kind, BackendErrorKind::Transient);
        // A storage that answers a part short fails the read.
        let b = Remote::new(20 << 20, true, 2);
        let e = get_range_in_parts(&b, "short", 0, 16 << 20, 64).unwrap_err();
        assert!(e.to_string().contains("returned"), "{e}");
    }
}
