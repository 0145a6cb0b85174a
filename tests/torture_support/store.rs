//! Raw access to a repository's objects, below cairn: a directory, or a
//! prefix of an S3 bucket. The harness copies a repository with it (a
//! scratch copy for a dry run, a pristine copy to undo a corruption, a
//! grave of deleted files to resurrect) and damages objects with it.

use std::path::{Path, PathBuf};

use cairn::backend::{Backend, S3Backend, S3Options};

pub trait Store {
    /// What `CAIRN_REPO` names.
    fn url(&self) -> String;
    /// The key of every object, sorted. Temporaries of killed writes
    /// (`.tmp-*`) are not objects.
    fn keys(&self) -> Vec<String>;
    fn get(&self, key: &str) -> Option<Vec<u8>>;
    /// Writes `bytes` under `key`, replacing what is there.
    fn put(&self, key: &str, bytes: &[u8]);
    /// Deletes `key`; one already gone is no error.
    fn delete(&self, key: &str);
    /// An empty store named `name` beside this one (a directory or prefix).
    fn sibling(&self, name: &str) -> Box<dyn Store>;
    /// Deletes every object, temporaries included.
    fn remove_all(&self);
}

/// Copies every object of `from` into `to`.
pub fn copy_into(from: &dyn Store, to: &dyn Store) {
    for k in from.keys() {
        if let Some(b) = from.get(&k) {
            to.put(&k, &b);
        }
    }
}

/// A repository in a local directory.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: PathBuf) -> LocalStore {
        LocalStore { root }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.map(|e| e.unwrap()) {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            walk(root, &e.path(), out);
        } else {
            out.push(e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
}

impl Store for LocalStore {
    fn url(&self) -> String {
        self.root.display().to_string()
    }

    fn keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out);
        out.sort();
        out
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root.join(key)).ok()
    }

    fn put(&self, key: &str, bytes: &[u8]) {
        let path = self.root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn delete(&self, key: &str) {
        match std::fs::remove_file(self.root.join(key)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("delete {key}: {e}"),
            _ => {}
        }
    }

    fn sibling(&self, name: &str) -> Box<dyn Store> {
        Box::new(LocalStore::new(self.root.parent().unwrap().join(name)))
    }

    fn remove_all(&self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A repository under a prefix of an S3 bucket, reached through cairn's own
/// S3 backend. The credentials come from the process environment, which
/// the Garage test sets once.
pub struct S3Store {
    backend: S3Backend,
    bucket: String,
    prefix: String,
    endpoint: String,
}

impl S3Store {
    pub fn new(endpoint: &str, bucket: &str, prefix: &str) -> S3Store {
        let mut o = S3Options::from_url(&format!("s3://{bucket}/{prefix}")).unwrap();
        o.endpoint = Some(endpoint.to_string());
        o.region = Some("garage".into());
        let backend = S3Backend::new(o).unwrap();
        S3Store { backend, bucket: bucket.into(), prefix: prefix.into(), endpoint: endpoint.into() }
    }
}

impl Store for S3Store {
    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.backend.list("").unwrap().into_iter().map(|o| o.key).collect();
        keys.sort();
        keys
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.backend.get(key) {
            Ok(b) => Some(b),
            Err(e) if e.is_not_found() => None,
            Err(e) => panic!("get {key}: {e}"),
        }
    }

    fn put(&self, key: &str, bytes: &[u8]) {
        // cairn's backend writes an object once: replacing is delete, then put.
        if self.backend.put(key, bytes).is_err() {
            self.delete(key);
            self.backend.put(key, bytes).unwrap_or_else(|e| panic!("put {key}: {e}"));
        }
    }

    fn delete(&self, key: &str) {
        match self.backend.delete(key) {
            Err(e) if !e.is_not_found() => panic!("delete {key}: {e}"),
            _ => {}
        }
    }

    fn sibling(&self, name: &str) -> Box<dyn Store> {
        Box::new(S3Store::new(&self.endpoint, &self.bucket, name))
    }

    fn remove_all(&self) {
        let keys = self.keys();
        if !keys.is_empty() {
            self.backend.delete_many(&keys).unwrap();
        }
    }
}
