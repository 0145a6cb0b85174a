//! Reading snapshots without restoring them: what `cairn mount` and
//! `cairn find` stand on.
//!
//! - [`Dir`]: one directory's entries exactly as restore would create
//!   them: names refused by [`crate::restore::plan::safe_name`] (`/`,
//!   NUL, `.`, `..`, empty) and repeated names are left out and listed
//!   apart, whatever the repository says.
//! - [`Reader`]: trees by id and file contents by byte range, each
//!   through a cache bounded by bytes ([`cache`]). Two callers that want
//!   the same tree or blob at once share one load.
//!
//! Nothing here walks a tree: callers go one directory at a time, so no
//! repository data can make the program recurse.

pub mod cache;
mod content;
mod dir;

use std::sync::Arc;

use crate::error::Error;
use crate::id::Id;
use crate::repo::{Index, Repository};

pub use content::FileLayout;
pub use dir::Dir;

/// An error shared by every caller that waited for the same load.
pub type Shared<T> = std::result::Result<T, Arc<Error>>;

/// Cache budgets in bytes (decoded sizes).
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    pub trees: usize,
    pub blobs: usize,
}

/// Trees and file contents of one repository, cached.
pub struct Reader {
    repo: Repository,
    index: Arc<Index>,
    trees: cache::Loader<Arc<Dir>>,
    blobs: cache::Loader<Arc<Vec<u8>>>,
}

impl Reader {
    pub fn new(repo: Repository, index: Arc<Index>, budgets: Budgets) -> Reader {
        Reader { repo, index, trees: cache::Loader::new(budgets.trees), blobs: cache::Loader::new(budgets.blobs) }
    }

    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The directory of the tree `id`.
    pub fn dir(&self, id: &Id) -> Shared<Arc<Dir>> {
        self.trees.get(id, |d| d.weight(), || Ok(Arc::new(Dir::new(self.repo.load_tree(&self.index, id)?))))
    }

    /// The plaintext of the data blob `id`.
    pub fn blob(&self, id: &Id) -> Shared<Arc<Vec<u8>>> {
        self.blobs.get(id, |b| b.len(), || Ok(Arc::new(self.repo.read_blob(&self.index, id)?)))
    }

    /// Whether the blob `id` is cached or being loaded (a prefetch would
    /// add nothing).
    pub fn blob_is_near(&self, id: &Id) -> bool {
        self.blobs.contains_or_pending(id)
    }

    /// Up to `len` bytes of a file from `offset`: only the chunks that
    /// cover the range are read. Fewer bytes at the end of the file.
    pub fn read(&self, layout: &FileLayout, offset: u64, len: usize) -> Shared<Vec<u8>> {
        let end = layout.size().min(offset.saturating_add(len as u64));
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        for i in layout.chunks_covering(offset, end) {
            let (start, id) = (layout.chunk_start(i), layout.chunk_id(i));
            let data = self.blob(id)?;
            let from = offset.max(start) - start;
            let to = (end.min(start + data.len() as u64) - start) as usize;
            out.extend_from_slice(&data[from as usize..to]);
        }
        Ok(out)
    }

    /// Trees loaded from the repository so far (cache misses).
    pub fn trees_loaded(&self) -> u64 {
        self.trees.loads()
    }

    /// Blobs loaded from the repository so far (cache misses).
    pub fn blobs_loaded(&self) -> u64 {
        self.blobs.loads()
    }
}
