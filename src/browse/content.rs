//! Where each byte of a file comes from: its chunks and their offsets.

use std::ops::Range;

use crate::id::Id;
use crate::repo::{Index, Node};

/// A file's chunks with the offset each one starts at, from the index's
/// plaintext lengths: the file restore would write.
#[derive(Debug, Clone)]
pub struct FileLayout {
    chunks: Vec<(Id, u64)>,
    size: u64,
}

impl FileLayout {
    /// The layout of a file node, or why it cannot be read (a chunk the
    /// index does not know: restore refuses such a file too).
    pub fn new(node: &Node, index: &Index) -> Result<FileLayout, String> {
        let mut chunks = Vec::with_capacity(node.content.len());
        let mut offset = 0u64;
        for id in &node.content {
            let loc = index.get(id).ok_or_else(|| format!("chunk {} is missing from the repository", id.short()))?;
            chunks.push((*id, offset));
            offset += loc.raw_length as u64;
        }
        Ok(FileLayout { chunks, size: offset })
    }

    /// The file's size: the sum of its chunks' lengths.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn chunk_id(&self, i: usize) -> &Id {
        &self.chunks[i].0
    }

    pub fn chunk_start(&self, i: usize) -> u64 {
        self.chunks[i].1
    }

    /// The chunk holding byte `offset`, if it is inside the file.
    pub fn chunk_at(&self, offset: u64) -> Option<usize> {
        if offset >= self.size {
            return None;
        }
        Some(self.chunks.partition_point(|c| c.1 <= offset) - 1)
    }

    /// The chunks that hold bytes `offset..end`.
    pub fn chunks_covering(&self, offset: u64, end: u64) -> Range<usize> {
        match self.chunk_at(offset) {
            Some(first) if end > offset => first..self.chunks.partition_point(|c| c.1 < end),
            _ => 0..0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::index::PackInfo;
    use crate::repo::pack::PackEntry;
    use crate::repo::{BlobKind, NodeKind};

    fn layout(lengths: &[u32]) -> FileLayout {
        let mut index = Index::new();
        let mut node = Node::new(b"f".to_vec(), NodeKind::File);
        let entries: Vec<PackEntry> = lengths
            .iter()
            .enumerate()
            .map(|(i, &l)| PackEntry {
                kind: BlobKind::Data,
                id: Id::hash_of(&[i as u8]),
                offset: i as u32 * 100,
                length: 100,
                raw_length: l,
            })
            .collect();
        node.content = entries.iter().map(|e| e.id).collect();
        let pack = (PackInfo { id: Id::hash_of(b"p"), kind: BlobKind::Data, size: 1 }, entries);
        // Distinct ids: no prefix is shared, so no full id is asked for.
        index.add_packs(&[pack], &mut |_| -> Result<Vec<Id>, ()> { unreachable!() }).unwrap();
        FileLayout::new(&node, &index).unwrap()
    }

    #[test]
    fn ranges_map_to_the_chunks_that_cover_them() {
        let l = layout(&[10, 20, 30]); // bytes 0..10, 10..30, 30..60
        assert_eq!(l.size(), 60);
        assert_eq!(l.chunk_at(0), Some(0));
        assert_eq!(l.chunk_at(9), Some(0));
        assert_eq!(l.chunk_at(10), Some(1));
        assert_eq!(l.chunk_at(59), Some(2));
        assert_eq!(l.chunk_at(60), None);
        assert_eq!(l.chunks_covering(0, 10), 0..1);
        assert_eq!(l.chunks_covering(5, 11), 0..2);
        assert_eq!(l.chunks_covering(10, 30), 1..2);
        assert_eq!(l.chunks_covering(29, 31), 1..3);
        assert_eq!(l.chunks_covering(60, 70), 0..0);
        assert_eq!(l.chunks_covering(5, 5), 0..0);
        assert!(layout(&[]).chunks_covering(0, 10).is_empty());
    }

    #[test]
    fn a_chunk_the_index_lacks_makes_the_file_unreadable() {
        let mut node = Node::new(b"f".to_vec(), NodeKind::File);
        node.content = vec![Id::hash_of(b"gone")];
        let e = FileLayout::new(&node, &Index::new()).unwrap_err();
        assert!(e.contains("is missing from the repository"), "{e}");
    }
}
