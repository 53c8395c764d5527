//! Topic configuration and the validation of topic names.

use crate::config::{Durability, PartitionConfig};
use crate::error::{Error, Result};
use crate::format::Compression;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Longest topic name accepted.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Per-topic settings, stored durably with the topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Number of partitions (at least 1).
    pub partitions: u32,
    /// Segment size in bytes.
    pub segment_bytes: u64,
    /// Keep at least this many bytes per partition; older sealed segments are deleted.
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments whose newest record is older than this many milliseconds.
    pub retention_ms: Option<u64>,
    /// When appends complete.
    pub durability: Durability,
    /// Codec producers use by default (batches are stored as sent, never re-encoded).
    pub compression: Compression,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            partitions: 1,
            segment_bytes: 1 << 30,
            retention_bytes: None,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            durability: Durability::Written,
            compression: Compression::None,
        }
    }
}

impl TopicConfig {
    /// The partition configuration that this topic's partitions are opened with.
    pub fn partition_config(&self, base: &PartitionConfig) -> PartitionConfig {
        PartitionConfig {
            segment_bytes: self.segment_bytes,
            retention_bytes: self.retention_bytes,
            retention_age: self.retention_ms.map(Duration::from_millis),
            durability: self.durability,
            ..base.clone()
        }
    }

    /// Checks the topic-level values and the partition configuration they produce.
    pub fn validate(&self, base: &PartitionConfig) -> Result<()> {
        if self.partitions == 0 {
            return Err(Error::InvalidConfig(
                "a topic needs at least one partition".into(),
            ));
        }
        self.partition_config(base).validate()
    }
}

/// Checks that `name` is 1..=249 characters from `[A-Za-z0-9._-]` and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TOPIC_NAME_LEN
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidTopicName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for good in ["orders", "a", "metrics.cpu_v2-eu"] {
            assert!(validate_topic_name(good).is_ok(), "{good}");
        }
        let long = "x".repeat(MAX_TOPIC_NAME_LEN + 1);
        for bad in ["", ".", "..", "a/b", "ü", "sp ace", long.as_str()] {
            assert!(
                matches!(validate_topic_name(bad), Err(Error::InvalidTopicName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn zero_partitions_is_invalid() {
        let cfg = TopicConfig {
            partitions: 0,
            ..TopicConfig::default()
        };
        assert!(matches!(
            cfg.validate(&PartitionConfig::default()),
            Err(Error::InvalidConfig(_))
        ));
    }
}
