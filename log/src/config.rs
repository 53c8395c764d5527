//! Per-partition configuration.

use crate::error::{Error, Result};
use crate::format::HEADER_LEN;
use crate::io::IoBackend;
use std::time::Duration;

/// Smallest allowed segment size.
pub const MIN_SEGMENT_BYTES: u64 = 1024 * 1024;
/// Largest allowed segment size (index positions are u32).
pub const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;

/// When an append counts as complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Complete as soon as it is queued; a crash may lose it.
    None,
    /// Complete once written to the page cache; survives a process crash.
    #[default]
    Written,
    /// Complete once fdatasync returned; survives power loss.
    Fsync,
}

/// Settings of one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionConfig {
    /// A segment rolls when the next batch would not fit (default 1 GiB, at least 1 MiB).
    pub segment_bytes: u64,
    /// A non-empty segment rolls on the first append after it is this old.
    pub segment_age: Option<Duration>,
    /// Bytes between sparse index entries (default 4 KiB).
    pub index_interval_bytes: u32,
    /// When appends complete.
    pub durability: Durability,
    /// Delete the oldest sealed segments while the log stays at least this large.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest record is older than this.
    pub retention_age: Option<Duration>,
    /// Largest accepted batch (default 1 MiB; at most `segment_bytes`).
    pub max_batch_bytes: u32,
    /// Most bytes queued but not yet written before `submit` waits (default 64 MiB).
    pub max_pending_bytes: usize,
    /// Write path selection.
    pub io_backend: IoBackend,
    /// Reserve a segment's blocks when it is created (fallocate), so a full disk is
    /// reported when rolling rather than midway through writes.
    pub preallocate: bool,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        PartitionConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_age: Some(Duration::from_secs(7 * 24 * 3600)),
            index_interval_bytes: 4096,
            durability: Durability::Written,
            retention_bytes: None,
            retention_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_batch_bytes: 1024 * 1024,
            max_pending_bytes: 64 * 1024 * 1024,
            io_backend: IoBackend::Auto,
            preallocate: true,
        }
    }
}

impl PartitionConfig {
    /// Checks that every value is within its allowed range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return bad(format!(
                "segment_bytes {} outside [{MIN_SEGMENT_BYTES}, {MAX_SEGMENT_BYTES}]",
                self.segment_bytes
            ));
        }
        if (self.max_batch_bytes as usize) <= HEADER_LEN
            || u64::from(self.max_batch_bytes) > self.segment_bytes
            || self.max_batch_bytes as usize > crate::format::MAX_BATCH_LEN
        {
            return bad(format!(
                "max_batch_bytes {} must exceed the {HEADER_LEN}-byte header and fit a segment",
                self.max_batch_bytes
            ));
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes must be at least 1".into());
        }
        if self.max_pending_bytes < self.max_batch_bytes as usize {
            return bad("max_pending_bytes must hold at least one batch".into());
        }
        if self.segment_age == Some(Duration::ZERO) {
            return bad("segment_age must be positive".into());
        }
        Ok(())
    }
}
