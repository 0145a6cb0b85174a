//! Blob encoding: compression, sealing and the checks on the way back.
//!
//! A stored blob is `seal(codec || payload)` where `codec` is 0 for raw data
//! and 1 for zstd. Data is stored raw when zstd does not make it at least
//! 1/32 smaller. On the way back the seal is opened (authentication), the
//! payload is decompressed, and its keyed id is recomputed and compared, so
//! a blob can never be mistaken for another.

use crate::crypto::MasterKey;
use crate::id::Id;

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

/// Opens, decompresses and checks a blob against its id and length.
pub fn decode(key: &MasterKey, sealed: &[u8], id: &Id, raw_length: u64) -> Result<Vec<u8>, BlobError> {
    let plain = key.open(sealed).map_err(|_| BlobError::Auth)?;
    let data = decode_payload(&plain, raw_length)?;
    if data.len() as u64 != raw_length {
        return Err(BlobError::Length { expected: raw_length, actual: data.len() as u64 });
    }
    let actual = key.blob_id(&data);
    if &actual != id {
        return Err(BlobError::IdMismatch { actual });
    }
    Ok(data)
}

/// Undoes the codec byte of an opened payload.
pub fn decode_payload(plain: &[u8], size_hint: u64) -> Result<Vec<u8>, BlobError> {
    match plain.first() {
        Some(&CODEC_RAW) => Ok(plain[1..].to_vec()),
        Some(&CODEC_ZSTD) => {
            let cap = (size_hint as usize).max(1);
            // One decompression context per thread: creating one per blob
            // was a tenth of a restore's CPU time.
            thread_local! {
                static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                    const { std::cell::RefCell::new(None) };
            }
            DCTX.with(|d| {
                let mut d = d.borrow_mut();
                if d.is_none() {
                    *d = Some(zstd::bulk::Decompressor::new().map_err(|e| BlobError::Decompress(e.to_string()))?);
                }
                d.as_mut()
                    .expect("just set")
                    .decompress(&plain[1..], cap)
                    .map_err(|e| BlobError::Decompress(e.to_string()))
            })
        }
        Some(&c) => Err(BlobError::Codec(c)),
        None => Err(BlobError::Codec(255)),
    }
}

/// Compresses (when it pays) and seals a metadata object (config, index,
/// snapshot); the counterpart of [`open_object`].
pub fn seal_object(key: &MasterKey, data: &[u8]) -> Vec<u8> {
    Encoder::new(3).encode(key, data)
}

/// Opens a metadata object sealed by [`seal_object`].
pub fn open_object(key: &MasterKey, sealed: &[u8]) -> Result<Vec<u8>, BlobError> {
    let plain = key.open(sealed).map_err(|_| BlobError::Auth)?;
    match plain.first() {
        Some(&CODEC_ZSTD) => zstd::stream::decode_all(&plain[1..]).map_err(|e| BlobError::Decompress(e.to_string())),
        _ => decode_payload(&plain, 0),
    }
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
        assert_eq!(open_object(&k, &seal_object(&k, data)).unwrap(), data);
        assert_eq!(open_object(&k, &seal_object(&k, b"")).unwrap(), b"");
    }
}
