//! Where the library's warnings go, since it never prints.

/// Where the library's warnings go: problems that did not stop an
/// operation (a damaged index file skipped, a lock that could not be
/// refreshed, a cache entry that could not be written). The library never
/// prints: the CLI renders them as `warning: …` (its printer implements
/// this), the daemon logs them ([`LogWarnings`]).
pub trait Warnings: Send + Sync {
    fn warn(&self, message: String);
}

/// A shared warning sink.
pub type WarningSink = std::sync::Arc<dyn Warnings>;

impl std::fmt::Debug for dyn Warnings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Warnings")
    }
}

/// Warnings as `tracing` records: the daemon's sink, and the default of
/// code that was given none.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWarnings;

impl Warnings for LogWarnings {
    fn warn(&self, message: String) {
        tracing::warn!("{message}");
    }
}

/// A sink that keeps the warnings, for tests and for outcomes that return them.
#[derive(Debug, Default)]
pub struct CollectWarnings(pub std::sync::Mutex<Vec<String>>);

impl CollectWarnings {
    pub fn taken(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("the warnings lock is never poisoned"))
    }
}

impl Warnings for CollectWarnings {
    fn warn(&self, message: String) {
        self.0.lock().expect("the warnings lock is never poisoned").push(message);
    }
}
