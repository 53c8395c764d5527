//! strata-log: segmented, checksummed, zero-copy event log storage with io_uring writes.
//!
//! A [`Partition`] is a directory of segment files holding record batches in the
//! [`format`](mod@format) that strata also uses on the wire. Appends are queued, coalesced and
//! written with io_uring (or pwritev where io_uring is unavailable); reads return
//! [`bytes::Bytes`] slices of read-only memory mappings.
//!
//! ```
//! use strata_log::format::{BatchBuilder, BatchIter, BuilderOptions};
//! use strata_log::{Partition, PartitionConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let config = PartitionConfig { segment_bytes: 1 << 20, ..PartitionConfig::default() };
//! let mut log = Partition::open(dir.path(), config)?;
//!
//! let mut builder = BatchBuilder::new(BuilderOptions::default());
//! builder.push(1_700_000_000_000_000, Some(b"sensor-7"), Some(b"21.5"), &[])?;
//! let appended = log.append(builder.finish()?)?;
//! assert_eq!(appended.base_offset, 0);
//!
//! let fetch = log.read(0, 64 * 1024)?;
//! let mut scratch = Vec::new();
//! for batch in BatchIter::new(&fetch.bytes) {
//!     let batch = batch?;
//!     for record in batch.records(&mut scratch)? {
//!         assert_eq!(record?.value, Some(&b"21.5"[..]));
//!     }
//! }
//! log.close()?;
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod engine;
pub mod error;
pub mod format;
pub mod index;
mod io;
pub mod partition;
pub mod producer;
pub mod recovery;
pub mod retention;
pub mod segment;

pub use config::{Durability, PartitionConfig};
pub use engine::{Engine, EngineConfig, OffsetQuery, Partitioning, Pending, TopicConfig};
pub use error::{Error, FormatError, Result};
pub use io::{ActiveBackend, IoBackend};
pub use partition::{Appended, Fetch, OpenReport, Partition, RetentionReport, SegmentInfo};

/// The README's examples, compiled and run as doc-tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
