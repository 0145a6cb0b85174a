//! How large each kind of repository object may be once opened.
//!
//! A holder of the password can write sealed objects that authenticate
//! and still lie: a 100 KB object that decompresses to gigabytes, or an
//! index entry that claims a 4 GiB blob. Every reader therefore bounds what
//! it decompresses by the object's kind, before allocating anything, and
//! names the object when a limit is exceeded (see [`super::blob`]). The
//! writers stay far inside these limits, and `docs/FORMAT.md` ("Limits")
//! lists them for independent readers and writers.

/// `config`: a few hundred bytes in practice.
pub const CONFIG: u64 = 64 << 10;
/// A key slot, `keys/<id>`: plaintext JSON of about 400 bytes, judged by
/// its stored size before it is read.
pub const KEY_SLOT: u64 = 4 << 10;
/// A snapshot. Backups keep their lists of skipped and changed files
/// within [`SNAPSHOT_LISTS`], so a snapshot stays far below this.
pub const SNAPSHOT: u64 = 1 << 20;
/// The bytes of the skipped and changed file lists a backup stores in its
/// snapshot; the rest are counted, not listed.
pub const SNAPSHOT_LISTS: u64 = 256 << 10;
/// An index file: its zstd frame's declared content size, and never more
/// than this. cairn writes index files of at most 200,000 blobs plus one
/// pack's (about 9 MiB, or 16 MiB with the smallest chunks), so this
/// leaves room for older and larger files of about 3 million blobs.
pub const INDEX_FILE: u64 = 128 << 20;
/// A tree blob: the raw length its index entry records, and never more
/// than this, the largest blob of any kind (a directory of about half a
/// million entries). A backup refuses to store a larger tree.
pub const TREE: u64 = 128 << 20;
/// The largest data chunk the format allows (the chunker's maximum
/// `max_size`, FastCDC's `MAXIMUM_MAX`). A data blob is bounded by the
/// repository's own `chunker.max_size`, which is at most this.
pub const CHUNK: u64 = 16 << 20;
/// An evidence record.
pub const EVIDENCE_RECORD: u64 = 1 << 20;
/// The evidence signing key object, `evidence/key`.
pub const EVIDENCE_KEY: u64 = 64 << 10;
/// A record of the Object Lock retention log, `maintenance/retention/<seq>`:
/// about 30 bytes per completed pass, so room for some 500,000 passes.
pub const RETENTION_LOG_RECORD: u64 = 16 << 20;
/// A prune's mark, `marks/<id>`: about 70 bytes of JSON per marked pack,
/// so room for some 200,000 packs (3 TiB of 16 MiB packs) in one mark.
pub const MARK: u64 = 16 << 20;
