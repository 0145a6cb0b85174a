//! Blob encoding: compression, sealing and the checks on the way back.
//!
//! A stored blob is `seal(codec || payload)` where `codec` is 0 for raw data
//! and 1 for zstd. Data is stored raw when zstd does not make it at least
//! 1/32 smaller. On the way back the seal is opened (authentication), the
//! payload is decompressed, and its keyed id is recomputed and compared, so
//! a blob can never be mistaken for another.
//!
//! Every decompression is bounded before anything is allocated: a blob by
//! the raw length its index entry records (and never above
//! [`limits::TREE`](super::limits::TREE), the largest blob of any kind), a
//! metadata object by the limit of its kind, or by the content size its
//! zstd frame header declares when that is smaller. A frame that claims more
//! is refused unread, and one that expands past its bound stops there: the
//! output buffer never grows. Forged or damaged data thus costs at most the
//! limit in memory (invariant 9).

use crate::crypto::MasterKey;
use crate::id::Id;

use super::limits;

pub const CODEC_RAW: u8 = 0;
pub const CODEC_ZSTD: u8 = 1;

/// Why a stored blob could not be turned back into its plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BlobError {
    #[error("authentication failed (the stored bytes were altered)")]
    Auth,
    #[error("unknown codec {0}")]
    Codec(u8),
    #[error("decompression failed: {0}")]
    Decompress(String),
    #[error("content hashes to {actual}, not to its id")]
    IdMismatch { actual: Id },
    #[error("length {actual} differs from the recorded {expected}")]
    Length { expected: u64, actual: u64 },
    /// The recorded or declared size is above the limit: nothing was decompressed.
    #[error("it claims {claimed} bytes, above the limit of {limit}")]
    Oversized { claimed: u64, limit: u64 },
    /// Decompression stopped when the output reached its bound.
    #[error("it expands past {limit} bytes, its limit")]
    Overflow { limit: u64 },
}

impl BlobError {
    /// Whether a size limit refused the data (rather than damage to its bytes).
    pub fn is_size_limit(&self) -> bool {
        matches!(self, BlobError::Oversized { .. } | BlobError::Overflow { .. })
    }
}

/// A reusable per-thread compressor (zstd contexts are costly to create).
pub struct Encoder {
    zstd: zstd::bulk::Compressor<'static>,
    scratch: Vec<u8>,
}

impl Encoder {
    pub fn new(level: i32) -> Encoder {
        Encoder { zstd: zstd::bulk::Compressor::new(level).expect("valid zstd level"), scratch: Vec::new() }
    }

    /// Compresses (when it pays) and seals `data`, appending to `out`.
    pub fn encode_into(&mut self, key: &MasterKey, data: &[u8], out: &mut Vec<u8>) {
        if self.scratch.capacity() > 1 << 20 {
            // Do not keep a large chunk's scratch space resident.
            self.scratch = Vec::new();
        }
        if data.len() >= 64 {
            self.scratch.clear();
            self.scratch.reserve(zstd::zstd_safe::compress_bound(data.len()));
            let ok = self.zstd.compress_to_buffer(data, &mut self.scratch).is_ok();
            if ok && self.scratch.len() < data.len() - data.len() / 32 {
                key.seal_into(&[&[CODEC_ZSTD], &self.scratch], out);
                return;
            }
        }
        key.seal_into(&[&[CODEC_RAW], data], out);
    }

    pub fn encode(&mut self, key: &MasterKey, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(key, data, &mut out);
        out
    }
}

/// Opens, decompresses and checks a blob against its id and length. A
/// recorded length above [`limits::TREE`] is refused before anything else.
pub fn decode(key: &MasterKey, sealed: &[u8], id: &Id, raw_length: u64) -> Result<Vec<u8>, BlobError> {
    decode_keeping_payload(key, sealed, id, raw_length).map(|(data, _)| data)
}

/// [`decode`], which also returns the opened payload (the codec byte and
/// the body as stored): sealed with another key, it is that repository's
/// blob of the same plaintext, and no compression has to run again.
pub fn decode_keeping_payload(
    key: &MasterKey,
    sealed: &[u8],
    id: &Id,
    raw_length: u64,
) -> Result<(Vec<u8>, Vec<u8>), BlobError> {
    if raw_length > limits::TREE {
        return Err(BlobError::Oversized { claimed: raw_length, limit: limits::TREE });
    }
    let plain = key.open(sealed).map_err(|_| BlobError::Auth)?;
    let data = decode_payload(&plain, raw_length)?;
    if data.len() as u64 != raw_length {
        return Err(BlobError::Length { expected: raw_length, actual: data.len() as u64 });
    }
    let actual = key.blob_id(&data);
    if &actual != id {
        return Err(BlobError::IdMismatch { actual });
    }
    Ok((data, plain))
}

/// Undoes the codec byte of an opened payload whose plaintext may hold at
/// most `limit` bytes.
pub fn decode_payload(plain: &[u8], limit: u64) -> Result<Vec<u8>, BlobError> {
    let mut out = Vec::new();
    decode_payload_into(plain, limit, &mut out)?;
    Ok(out)
}

/// [`decode_payload`] into `out` (cleared first).
fn decode_payload_into(plain: &[u8], limit: u64, out: &mut Vec<u8>) -> Result<(), BlobError> {
    out.clear();
    match plain.first() {
        Some(&CODEC_RAW) => {
            let body = &plain[1..];
            if body.len() as u64 > limit {
                return Err(BlobError::Oversized { claimed: body.len() as u64, limit });
            }
            out.extend_from_slice(body);
            Ok(())
        }
        Some(&CODEC_ZSTD) => decompress_bounded(&plain[1..], limit, out),
        Some(&c) => Err(BlobError::Codec(c)),
        None => Err(BlobError::Codec(255)),
    }
}

/// Buffers [`decode_into`] opens blobs in, kept by a caller that opens
/// many (restore, per worker thread): a chunk is about 1 MiB, and a fresh
/// allocation per chunk is a fresh mapping from the kernel, which a large
/// file's restore spent most of its system time on.
#[derive(Default)]
pub struct DecodeBuffers {
    opened: Vec<u8>,
    /// The plaintext of the blob decoded last.
    pub plain: Vec<u8>,
}

/// [`decode`] into `bufs.plain`, with no allocation once the buffers have
/// grown to the largest blob met.
pub fn decode_into(
    key: &MasterKey,
    sealed: &[u8],
    id: &Id,
    raw_length: u64,
    bufs: &mut DecodeBuffers,
) -> Result<(), BlobError> {
    if raw_length > limits::TREE {
        return Err(BlobError::Oversized { claimed: raw_length, limit: limits::TREE });
    }
    key.open_into(sealed, &mut bufs.opened).map_err(|_| BlobError::Auth)?;
    decode_payload_into(&bufs.opened, raw_length, &mut bufs.plain)?;
    if bufs.plain.len() as u64 != raw_length {
        return Err(BlobError::Length { expected: raw_length, actual: bufs.plain.len() as u64 });
    }
    let actual = key.blob_id(&bufs.plain);
    if &actual != id {
        return Err(BlobError::IdMismatch { actual });
    }
    Ok(())
}

/// Decompresses zstd `frame` into `out` (empty), at most `limit` bytes.
/// The output buffer is reserved once, at the frame's declared content
/// size when it has one (refused when above `limit`) and at `limit`
/// otherwise, and never grows: single-shot decompression writes into its
/// capacity and fails when it is full.
fn decompress_bounded(frame: &[u8], limit: u64, out: &mut Vec<u8>) -> Result<(), BlobError> {
    let cap = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(claimed)) if claimed > limit => return Err(BlobError::Oversized { claimed, limit }),
        Ok(Some(claimed)) => claimed,
        Ok(None) => limit,
        Err(_) => return Err(BlobError::Decompress("not a zstd frame".into())),
    };
    let cap = usize::try_from(cap).map_err(|_| BlobError::Oversized { claimed: cap, limit })?;
    // One decompression context per thread: creating one per blob
    // was a tenth of a restore's CPU time.
    thread_local! {
        static DCTX: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    // A reused buffer may be larger than `cap`; it does not grow here, and
    // the caller checks the length it ends with.
    out.reserve(cap);
    let r = DCTX.with(|d| {
        let mut d = d.borrow_mut();
        let dctx = d.get_or_insert_with(zstd::zstd_safe::DCtx::create);
        dctx.decompress(out, frame)
    });
    match r {
        Ok(_) => Ok(()),
        Err(code) if code == DST_TOO_SMALL => Err(BlobError::Overflow { limit: cap as u64 }),
        Err(code) => Err(BlobError::Decompress(zstd::zstd_safe::get_error_name(code).to_string())),
    }
}

/// zstd's "destination buffer is too small" error code (`(size_t)-70`;
/// zstd's error values are fixed since 1.3.1).
const DST_TOO_SMALL: usize =
    0usize.wrapping_sub(zstd::zstd_safe::zstd_sys::ZSTD_ErrorCode::ZSTD_error_dstSize_tooSmall as usize);

/// Compresses (when it pays) and seals a metadata object (config, index,
/// snapshot); the counterpart of [`open_object`].
pub fn seal_object(key: &MasterKey, data: &[u8]) -> Vec<u8> {
    Encoder::new(3).encode(key, data)
}

/// Opens a metadata object sealed by [`seal_object`] whose plaintext may
/// hold at most `limit` bytes (see [`limits`]).
pub fn open_object(key: &MasterKey, sealed: &[u8], limit: u64) -> Result<Vec<u8>, BlobError> {
    let plain = key.open(sealed).map_err(|_| BlobError::Auth)?;
    decode_payload(&plain, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_data_is_compressed_and_round_trips() {
        let k = MasterKey::random();
        let data = vec![b'a'; 100_000];
        let mut enc = Encoder::new(3);
        let sealed = enc.encode(&k, &data);
        assert!(sealed.len() < 1000, "compressed to {}", sealed.len());
        let id = k.blob_id(&data);
        assert_eq!(decode(&k, &sealed, &id, data.len() as u64).unwrap(), data);
    }

    #[test]
    fn blobs_decoded_into_reused_buffers_are_each_whole_and_the_buffers_stop_growing() {
        let k = MasterKey::random();
        let mut enc = Encoder::new(3);
        let noise: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let blobs = [vec![b'a'; 200_000], noise.clone(), b"tiny".to_vec(), noise[..1000].to_vec(), vec![0; 150_000]];
        let mut bufs = DecodeBuffers::default();
        for _ in 0..2 {
            for data in &blobs {
                let sealed = enc.encode(&k, data);
                decode_into(&k, &sealed, &k.blob_id(data), data.len() as u64, &mut bufs).unwrap();
                assert_eq!(bufs.plain, *data);
            }
        }
        // Grown to the largest blob in the first round, not since.
        let at = (bufs.plain.as_ptr(), bufs.plain.capacity(), bufs.opened.capacity());
        for data in &blobs {
            let sealed = enc.encode(&k, data);
            decode_into(&k, &sealed, &k.blob_id(data), data.len() as u64, &mut bufs).unwrap();
        }
        assert_eq!((bufs.plain.as_ptr(), bufs.plain.capacity(), bufs.opened.capacity()), at);
        // A damaged blob or a wrong id fails as `decode` does.
        let mut sealed = enc.encode(&k, &noise);
        assert!(matches!(
            decode_into(&k, &sealed, &k.blob_id(b"other"), noise.len() as u64, &mut bufs),
            Err(BlobError::IdMismatch { .. })
        ));
        sealed[40] ^= 1;
        assert!(matches!(
            decode_into(&k, &sealed, &k.blob_id(&noise), noise.len() as u64, &mut bufs),
            Err(BlobError::Auth)
        ));
    }

    #[test]
    fn a_kept_payload_sealed_with_another_key_is_what_that_key_would_have_stored() {
        let (a, b) = (MasterKey::random(), MasterKey::random());
        let mut enc = Encoder::new(3);
        for data in [vec![b'a'; 100_000], (0..=255u8).cycle().take(5000).collect(), b"tiny".to_vec()] {
            let sealed = enc.encode(&a, &data);
            let (plain, payload) = decode_keeping_payload(&a, &sealed, &a.blob_id(&data), data.len() as u64).unwrap();
            assert_eq!(plain, data);
            let mut resealed = Vec::new();
            b.seal_into(&[&payload], &mut resealed);
            assert_eq!(decode(&b, &resealed, &b.blob_id(&data), data.len() as u64).unwrap(), data);
            // The same payload as compressing again at the same level gives.
            assert_eq!(b.open(&resealed).unwrap(), b.open(&enc.encode(&b, &data)).unwrap());
        }
    }

    #[test]
    fn incompressible_data_is_stored_raw() {
        let k = MasterKey::random();
        let mut x = 0x9e3779b97f4a7c15u64;
        let data: Vec<u8> = (0..10_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        let sealed = Encoder::new(3).encode(&k, &data);
        let plain = k.open(&sealed).unwrap();
        assert_eq!(plain[0], CODEC_RAW);
        assert_eq!(sealed.len(), data.len() + 1 + crate::crypto::OVERHEAD);
    }

    #[test]
    fn wrong_id_or_length_is_refused() {
        let k = MasterKey::random();
        let sealed = Encoder::new(3).encode(&k, b"hello world, hello world, hello world, hello world, hello");
        let id = k.blob_id(b"other");
        assert!(matches!(
            decode(&k, &sealed, &id, 57),
            Err(BlobError::IdMismatch { .. }) | Err(BlobError::Length { .. })
        ));
        let mut bad = sealed.clone();
        bad[30] ^= 4;
        assert_eq!(decode(&k, &bad, &id, 57), Err(BlobError::Auth));
    }

    #[test]
    fn objects_round_trip() {
        let k = MasterKey::random();
        let data = br#"{"a": 1, "a": 1, "a": 1, "a": 1, "a": 1, "a": 1, "a": 1}"#;
        assert_eq!(open_object(&k, &seal_object(&k, data), 1000).unwrap(), data);
        assert_eq!(open_object(&k, &seal_object(&k, b""), 0).unwrap(), b"");
    }

    /// A zstd frame of `n` zero bytes, sealed with a codec byte: a bomb
    /// when `n` is large (a 64 MiB frame is about 2 KiB).
    fn sealed_zeros(k: &MasterKey, n: usize, declare_size: bool) -> Vec<u8> {
        let mut c = zstd::bulk::Compressor::new(19).unwrap();
        c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(declare_size)).unwrap();
        let frame = c.compress(&vec![0u8; n]).unwrap();
        k.seal(&[&[CODEC_ZSTD][..], &frame].concat())
    }

    #[test]
    fn an_object_whose_frame_declares_more_than_its_limit_is_refused_unread() {
        let k = MasterKey::random();
        let bomb = sealed_zeros(&k, 64 << 20, true);
        assert!(bomb.len() < 64 << 10, "the bomb is small: {} bytes", bomb.len());
        assert_eq!(open_object(&k, &bomb, 1 << 20), Err(BlobError::Oversized { claimed: 64 << 20, limit: 1 << 20 }));
        assert_eq!(open_object(&k, &bomb, 64 << 20).unwrap().len(), 64 << 20, "within its limit it opens");
    }

    #[test]
    fn an_object_without_a_declared_size_stops_at_its_limit() {
        let k = MasterKey::random();
        let bomb = sealed_zeros(&k, 8 << 20, false);
        assert_eq!(open_object(&k, &bomb, 1 << 20), Err(BlobError::Overflow { limit: 1 << 20 }));
        assert_eq!(open_object(&k, &bomb, 8 << 20).unwrap().len(), 8 << 20);
    }

    #[test]
    fn a_frame_that_expands_past_its_declared_size_stops_there() {
        let k = MasterKey::random();
        // Two frames: the first declares 1000 bytes, the second adds a MiB.
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        let mut body = vec![CODEC_ZSTD];
        body.extend(c.compress(&[1u8; 1000]).unwrap());
        body.extend(c.compress(&vec![2u8; 1 << 20]).unwrap());
        let sealed = k.seal(&body);
        assert_eq!(open_object(&k, &sealed, 64 << 20), Err(BlobError::Overflow { limit: 1000 }));
    }

    #[test]
    fn a_raw_object_above_its_limit_is_refused() {
        let k = MasterKey::random();
        let sealed = k.seal(&[&[CODEC_RAW][..], &[7u8; 100]].concat());
        assert_eq!(open_object(&k, &sealed, 99), Err(BlobError::Oversized { claimed: 100, limit: 99 }));
        assert_eq!(open_object(&k, &sealed, 100).unwrap(), vec![7u8; 100]);
    }

    #[test]
    fn a_blob_recorded_above_the_largest_blob_is_refused_before_it_is_opened() {
        let k = MasterKey::random();
        let data = vec![0u8; 4096];
        let sealed = Encoder::new(3).encode(&k, &data);
        let id = k.blob_id(&data);
        // Even the wrong key does not matter: the size is judged first.
        let claimed = 4u64 << 30;
        let other = MasterKey::random();
        assert_eq!(decode(&other, &sealed, &id, claimed), Err(BlobError::Oversized { claimed, limit: limits::TREE }));
        // A frame that declares more than the recorded length is refused unread.
        assert_eq!(decode(&k, &sealed, &id, 100), Err(BlobError::Oversized { claimed: 4096, limit: 100 }));
        assert_eq!(decode(&k, &sealed, &id, 4096).unwrap(), data);
    }
}
