//! The repository's config: settings fixed at `init` and sealed in the
//! `config` object (chunker, compression, pack size, and how the storage
//! is written), checked before anything relies on them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::limits;
use crate::backend::{ObjectLock, WritePolicy};
use crate::chunk::ChunkerParams;
use crate::id::Id;

/// Repository-wide settings, fixed at `init` and sealed in `config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub version: u32,
    pub id: Id,
    pub chunker: ChunkerParams,
    /// zstd level for blobs.
    pub compression: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    pub created: DateTime<Utc>,
    /// How the storage is written (absent in repositories made before
    /// cairn recorded it).
    #[serde(default, skip_serializing_if = "StorageSettings::is_unknown")]
    pub storage: StorageSettings,
}

/// What `init` found out about the storage and chose for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StorageSettings {
    /// Whether the storage refused `If-None-Match: *` on an existing key
    /// when `init` probed it. Unknown (a repository made before the probe)
    /// is written as if not: a HEAD before every PUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditional_put: Option<bool>,
    /// S3 Object Lock retention of every object outside `locks/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<ObjectLock>,
}

impl StorageSettings {
    fn is_unknown(&self) -> bool {
        *self == StorageSettings::default()
    }

    /// What the backend must do on every write.
    pub fn write_policy(&self) -> WritePolicy {
        WritePolicy { conditional_put: self.conditional_put == Some(true), object_lock: self.object_lock }
    }
}

impl Config {
    /// The smallest and largest target pack size (as `init --pack-size-mib` allows).
    pub const PACK_SIZE_RANGE: std::ops::RangeInclusive<u32> = (1 << 20)..=(512 << 20);
    /// The zstd levels blobs may be stored with (as `init --compression` allows).
    pub const COMPRESSION_RANGE: std::ops::RangeInclusive<i32> = 1..=19;

    /// Checks what a reader relies on: the chunk sizes (which bound every
    /// data blob, see [`limits::CHUNK`]), the pack size (which bounds what a
    /// writer holds in memory) and the compression level.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.chunker.validate()?;
        if !Self::PACK_SIZE_RANGE.contains(&self.pack_size) {
            return Err(format!("pack size {} is outside 1 MiB to 512 MiB", self.pack_size));
        }
        if !Self::COMPRESSION_RANGE.contains(&self.compression) {
            return Err(format!("compression level {} is outside 1 to 19", self.compression));
        }
        Ok(())
    }

    /// Parses the config's plaintext and checks it ([`Config::validate`]).
    pub fn decode(b: &[u8]) -> std::result::Result<Config, String> {
        let config: Config = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// The largest data blob this repository can hold: its chunker's maximum.
    pub fn max_chunk(&self) -> u64 {
        (self.chunker.max_size as u64).min(limits::CHUNK)
    }
}
