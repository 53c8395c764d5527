//! The record batch format: the bytes strata stores on disk and sends on the wire.
//!
//! `docs/FORMAT.md` is the source of truth; the constants here match it byte for byte.
//!
//! ```text
//!  0               8       12      16  17  18      20      24
//!  +---------------+-------+-------+---+---+-------+-------+
//!  | base_offset   | crc   | length|mag|att| epoch | lod   |
//!  +---------------+-------+-------+---+---+-------+-------+
//!  24              32              40              48      52      56
//!  +---------------+---------------+---------------+-------+-------+
//!  | base_timestamp| max_timestamp | producer_id   | b.seq | count |
//!  +---------------+---------------+---------------+-------+-------+
//!  56 .. length: records (lz4 block prefixed by its u32 length when compressed)
//! ```
//!
//! All integers are little-endian. The CRC-32 (IEEE, as computed by crc32fast)
//! covers bytes `12..length`: every byte after the CRC field. The base offset comes
//! before the CRC, so the broker assigns offsets by patching it without re-checksumming.

mod builder;
mod compression;
mod header;
mod reader;
mod record;

pub use builder::{BatchBuilder, BuilderOptions};
pub use compression::Compression;
pub use header::{BatchHeader, TimestampType, patch_base_offset, peek_length};
pub use reader::{BatchIter, BatchView, RecordIter};
pub use record::{Header, Record, RecordHeaders};

/// Byte position of the base offset (u64).
pub const BASE_OFFSET_POS: usize = 0;
/// Byte position of the CRC-32 (u32).
pub const CRC_POS: usize = 8;
/// Byte position of the total batch length, header included (u32).
pub const LENGTH_POS: usize = 12;
/// Byte position of the magic / format version (u8).
pub const MAGIC_POS: usize = 16;
/// Byte position of the attributes (u8): codec and timestamp type.
pub const ATTRIBUTES_POS: usize = 17;
/// Byte position of the producer epoch (u16).
pub const PRODUCER_EPOCH_POS: usize = 18;
/// Byte position of the last offset delta (u32).
pub const LAST_OFFSET_DELTA_POS: usize = 20;
/// Byte position of the base timestamp (i64, microseconds since the Unix epoch).
pub const BASE_TIMESTAMP_POS: usize = 24;
/// Byte position of the max timestamp (i64, microseconds since the Unix epoch).
pub const MAX_TIMESTAMP_POS: usize = 32;
/// Byte position of the producer id (u64).
pub const PRODUCER_ID_POS: usize = 40;
/// Byte position of the base sequence (i32).
pub const BASE_SEQUENCE_POS: usize = 48;
/// Byte position of the record count (u32).
pub const RECORD_COUNT_POS: usize = 52;
/// Size of the fixed header; records start here.
pub const HEADER_LEN: usize = 56;
/// First byte covered by the CRC.
pub const CRC_START: usize = LENGTH_POS;

/// The only format version this build writes and reads.
pub const MAGIC_V1: u8 = 1;
/// Attributes bits 0..=2: compression codec.
pub const ATTR_CODEC_MASK: u8 = 0b0000_0111;
/// Attributes bit 3: timestamp type (0 = create time, 1 = log-append time).
pub const ATTR_TIMESTAMP_TYPE: u8 = 0b0000_1000;
/// Attributes bits that must be zero in version 1.
pub const ATTR_RESERVED_MASK: u8 = 0b1111_0000;

/// Producer id of a batch written by a non-idempotent producer.
pub const NO_PRODUCER_ID: u64 = u64::MAX;
/// Base sequence of a batch written by a non-idempotent producer.
pub const NO_SEQUENCE: i32 = -1;

/// Hard upper bound of one batch, header included (the codec refuses anything larger).
pub const MAX_BATCH_LEN: usize = 64 * 1024 * 1024;
/// Hard upper bound of a batch's records once decompressed.
pub const MAX_UNCOMPRESSED_LEN: usize = 256 * 1024 * 1024;
