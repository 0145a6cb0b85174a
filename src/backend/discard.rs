//! A layer that writes nothing (`backup --dry-run`): writes and deletes
//! succeed without reaching the storage, reads and lists see the
//! repository as it is. The whole backup runs through it — scan, chunk,
//! compress, seal, pack — so its counts are a real backup's, and the
//! repository is left exactly as it was.

use chrono::{DateTime, Utc};

use super::{Backend, BackendResult, BucketLockStatus, Leftover, LockMode, ObjectInfo, WritePolicy};

pub struct Discarding<B> {
    inner: B,
}

impl<B: Backend> Discarding<B> {
    pub fn new(inner: B) -> Self {
        Discarding { inner }
    }
}

impl<B: Backend> Backend for Discarding<B> {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, key: &str) -> BackendResult<Vec<u8>> {
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, length: u64) -> BackendResult<Vec<u8>> {
        self.inner.get_range(key, offset, length)
    }
    fn put(&self, _key: &str, _data: &[u8]) -> BackendResult<()> {
        Ok(())
    }
    fn list(&self, prefix: &str) -> BackendResult<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
    fn delete(&self, _key: &str) -> BackendResult<()> {
        Ok(())
    }
    fn stat(&self, key: &str) -> BackendResult<u64> {
        self.inner.stat(key)
    }
    fn put_data_pack(&self, _key: &str, _data: &[u8]) -> BackendResult<()> {
        Ok(())
    }
    fn put_hashed(&self, _key: &str, _data: &[u8]) -> BackendResult<()> {
        Ok(())
    }
    fn put_known_absent(&self, _key: &str, _data: &[u8]) -> BackendResult<()> {
        Ok(())
    }
    fn delete_many(&self, _keys: &[String]) -> BackendResult<()> {
        Ok(())
    }
    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }
    fn is_remote(&self) -> bool {
        self.inner.is_remote()
    }
    fn put_mutable(&self, _key: &str, _data: &[u8]) -> BackendResult<()> {
        Ok(())
    }
    fn is_read_only(&self) -> bool {
        self.inner.is_read_only()
    }
    fn set_write_policy(&self, policy: &WritePolicy) {
        self.inner.set_write_policy(policy)
    }
    fn probe_conditional_put(&self) -> BackendResult<bool> {
        // The probe writes an object: a dry run asks the storage nothing
        // that writes, and assumes the answer of the weaker storage.
        Ok(false)
    }
    fn bucket_lock_status(&self) -> BackendResult<BucketLockStatus> {
        self.inner.bucket_lock_status()
    }
    fn extend_retention(&self, _key: &str, _mode: LockMode, _until: DateTime<Utc>) -> BackendResult<()> {
        Ok(())
    }
    fn retention(&self, key: &str) -> BackendResult<Option<DateTime<Utc>>> {
        self.inner.retention(key)
    }
    fn server_time(&self) -> Option<DateTime<Utc>> {
        self.inner.server_time()
    }
    fn leftovers(&self) -> BackendResult<Vec<Leftover>> {
        self.inner.leftovers()
    }
    fn delete_leftover(&self, _key: &str) -> BackendResult<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_deletes_reach_nothing_reads_see_the_storage() {
        let d = tempfile::tempdir().unwrap();
        let local = crate::backend::LocalBackend::new(d.path());
        local.put("keep", b"kept").unwrap();
        let dry = Discarding::new(crate::backend::LocalBackend::new(d.path()));
        dry.put("new", b"x").unwrap();
        dry.put_data_pack("data/00/00", b"pack").unwrap();
        dry.delete("keep").unwrap();
        dry.delete_many(&["keep".into()]).unwrap();
        assert_eq!(dry.get("keep").unwrap(), b"kept");
        let keys: Vec<String> = local.list("").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, ["keep"]);
    }
}
