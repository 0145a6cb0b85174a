//! Packs: many sealed blobs in one object, with a sealed header at the end.
//!
//! Layout: `blob_0 || blob_1 || … || seal(header) || header_len (u32 LE)`.
//! The header lists every blob (kind, id, offset, length, raw length), so
//! the index can always be rebuilt from the packs alone. A pack holds blobs
//! of one kind only: data packs and tree packs are kept apart so metadata
//! can be cached and read without touching file contents.

use crate::crypto::MasterKey;
use crate::id::Id;

use super::BlobKind;

pub const HEADER_VERSION: u8 = 1;
/// Bytes per header entry: kind (1) + id (32) + offset, length, raw length (3 × 4).
pub const ENTRY_LEN: usize = 45;

/// One blob's place in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub kind: BlobKind,
    pub id: Id,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

/// Accumulates sealed blobs until the pack is full.
pub struct PackBuilder {
    kind: BlobKind,
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
    raw_bytes: u64,
}

/// A finished pack, ready to store.
pub struct FinishedPack {
    pub id: Id,
    pub kind: BlobKind,
    pub bytes: Vec<u8>,
    pub entries: Vec<PackEntry>,
    pub raw_bytes: u64,
}

impl PackBuilder {
    pub fn new(kind: BlobKind, capacity: usize) -> PackBuilder {
        PackBuilder { kind, buf: Vec::with_capacity(capacity), entries: Vec::new(), raw_bytes: 0 }
    }

    pub fn kind(&self) -> BlobKind {
        self.kind
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn add(&mut self, id: Id, raw_length: u32, sealed: &[u8]) {
        let offset = self.buf.len() as u32;
        self.buf.extend_from_slice(sealed);
        self.raw_bytes += raw_length as u64;
        self.entries.push(PackEntry { kind: self.kind, id, offset, length: sealed.len() as u32, raw_length });
    }

    pub fn finish(mut self, key: &MasterKey) -> FinishedPack {
        let header = encode_header(&self.entries);
        let sealed = key.seal(&header);
        self.buf.extend_from_slice(&sealed);
        self.buf.extend_from_slice(&(sealed.len() as u32).to_le_bytes());
        FinishedPack {
            id: Id::hash_of(&self.buf),
            kind: self.kind,
            bytes: self.buf,
            entries: self.entries,
            raw_bytes: self.raw_bytes,
        }
    }
}

pub fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut h = Vec::with_capacity(1 + entries.len() * ENTRY_LEN);
    h.push(HEADER_VERSION);
    for e in entries {
        h.push(e.kind as u8);
        h.extend_from_slice(&e.id.0);
        h.extend_from_slice(&e.offset.to_le_bytes());
        h.extend_from_slice(&e.length.to_le_bytes());
        h.extend_from_slice(&e.raw_length.to_le_bytes());
    }
    h
}

pub fn decode_header(h: &[u8]) -> Result<Vec<PackEntry>, String> {
    match h.first() {
        Some(&HEADER_VERSION) => {}
        Some(v) => return Err(format!("unknown pack header version {v}")),
        None => return Err("empty pack header".into()),
    }
    let body = &h[1..];
    if !body.len().is_multiple_of(ENTRY_LEN) {
        return Err(format!("pack header of {} bytes is not a whole number of entries", h.len()));
    }
    body.chunks_exact(ENTRY_LEN)
        .map(|e| {
            let kind = BlobKind::from_u8(e[0]).ok_or_else(|| format!("unknown blob kind {}", e[0]))?;
            let u = |i: usize| u32::from_le_bytes(e[i..i + 4].try_into().unwrap());
            Ok(PackEntry {
                kind,
                id: Id::from_slice(&e[1..33]).unwrap(),
                offset: u(33),
                length: u(37),
                raw_length: u(41),
            })
        })
        .collect()
}

/// Reads the entries of a stored pack from its tail, given the last bytes
/// of the pack (at least `4 + header length` of them) and the pack size.
pub fn header_len_from_trailer(trailer: &[u8]) -> Option<u32> {
    let n = trailer.len();
    (n >= 4).then(|| u32::from_le_bytes(trailer[n - 4..].try_into().unwrap()))
}

/// Where the sealed header of a pack of `size` bytes lies, from the pack's
/// last bytes `tail` (its trailer ends them): `(offset, length)`. A header
/// length that does not fit in the pack is damage.
pub fn header_range(tail: &[u8], size: u64) -> Result<(u64, u64), String> {
    if tail.len() as u64 > size {
        return Err(format!("{} bytes of tail for a pack of {size}", tail.len()));
    }
    let hlen = header_len_from_trailer(tail).ok_or("pack too short")? as u64;
    if hlen + 4 > size {
        return Err(format!("header length {hlen} exceeds the pack size {size}"));
    }
    Ok((size - 4 - hlen, hlen))
}

/// Checks that the header's entries tile the pack: in order, without
/// overlap, and ending where the header starts.
pub fn validate_layout(entries: &[PackEntry], header_start: u64) -> Result<(), String> {
    let mut pos = 0u64;
    for e in entries {
        if e.offset as u64 != pos {
            return Err(format!("blob {} at offset {} where {} was expected", e.id.short(), e.offset, pos));
        }
        pos += e.length as u64;
    }
    if pos != header_start {
        return Err(format!("blobs end at {pos} but the header starts at {header_start}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_layout() {
        let k = MasterKey::random();
        let mut b = PackBuilder::new(BlobKind::Data, 0);
        b.add(Id::hash_of(b"a"), 10, &[1; 50]);
        b.add(Id::hash_of(b"b"), 20, &[2; 60]);
        let p = b.finish(&k);
        assert_eq!(p.id, Id::hash_of(&p.bytes));
        let hlen = header_len_from_trailer(&p.bytes).unwrap() as usize;
        let start = p.bytes.len() - 4 - hlen;
        let header = k.open(&p.bytes[start..p.bytes.len() - 4]).unwrap();
        let entries = decode_header(&header).unwrap();
        assert_eq!(entries, p.entries);
        validate_layout(&entries, start as u64).unwrap();
        assert!(validate_layout(&entries, start as u64 + 1).is_err());
        assert!(decode_header(&header[..10]).is_err());
    }
}
