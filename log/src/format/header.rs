//! The fixed batch header: parsing, validation and the CRC.

use super::*;
use crate::error::FormatError;

/// How a batch's timestamps were assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Set by the producer when the record was created.
    #[default]
    CreateTime,
    /// Set by the broker when the batch was appended.
    LogAppendTime,
}

/// The decoded fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// CRC-32 of bytes `CRC_START..length`.
    pub crc: u32,
    /// Total length of the batch, header included.
    pub length: u32,
    /// Format version.
    pub magic: u8,
    /// Codec and timestamp-type bits.
    pub attributes: u8,
    /// Producer epoch, for fencing idempotent producers.
    pub producer_epoch: u16,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: u32,
    /// Timestamp of the first record (µs since the Unix epoch).
    pub base_timestamp: i64,
    /// Largest record timestamp in the batch (µs since the Unix epoch).
    pub max_timestamp: i64,
    /// Producer id, or [`NO_PRODUCER_ID`].
    pub producer_id: u64,
    /// Sequence number of the first record, or [`NO_SEQUENCE`].
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: u32,
}

#[inline]
fn u16_at(b: &[u8], pos: usize) -> u16 {
    u16::from_le_bytes([b[pos], b[pos + 1]])
}
#[inline]
fn u32_at(b: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes(b[pos..pos + 4].try_into().expect("4 bytes"))
}
#[inline]
fn u64_at(b: &[u8], pos: usize) -> u64 {
    u64::from_le_bytes(b[pos..pos + 8].try_into().expect("8 bytes"))
}

/// Reads the declared total length of the batch starting at `bytes`, if the length field is present.
///
/// Checks nothing else: use it to frame batches before validating them.
#[inline]
pub fn peek_length(bytes: &[u8]) -> Option<u32> {
    (bytes.len() >= LENGTH_POS + 4).then(|| u32_at(bytes, LENGTH_POS))
}

/// Overwrites the base offset of the batch at the start of `bytes` (the CRC stays valid).
///
/// # Panics
/// If `bytes` is shorter than the header; callers pass validated batches.
#[inline]
pub fn patch_base_offset(bytes: &mut [u8], base_offset: u64) {
    bytes[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&base_offset.to_le_bytes());
}

impl BatchHeader {
    /// Decodes the header fields without checking the CRC or the records.
    ///
    /// Checks that the header is complete, the length is sane and the version is known.
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::Truncated {
                needed: HEADER_LEN,
                available: bytes.len(),
            });
        }
        let header = BatchHeader {
            base_offset: u64_at(bytes, BASE_OFFSET_POS),
            crc: u32_at(bytes, CRC_POS),
            length: u32_at(bytes, LENGTH_POS),
            magic: bytes[MAGIC_POS],
            attributes: bytes[ATTRIBUTES_POS],
            producer_epoch: u16_at(bytes, PRODUCER_EPOCH_POS),
            last_offset_delta: u32_at(bytes, LAST_OFFSET_DELTA_POS),
            base_timestamp: u64_at(bytes, BASE_TIMESTAMP_POS) as i64,
            max_timestamp: u64_at(bytes, MAX_TIMESTAMP_POS) as i64,
            producer_id: u64_at(bytes, PRODUCER_ID_POS),
            base_sequence: u32_at(bytes, BASE_SEQUENCE_POS) as i32,
            record_count: u32_at(bytes, RECORD_COUNT_POS),
        };
        let len = header.length as usize;
        if !(HEADER_LEN..=MAX_BATCH_LEN).contains(&len) {
            return Err(FormatError::InvalidLength(header.length));
        }
        if header.magic != MAGIC_V1 {
            return Err(FormatError::UnsupportedVersion(header.magic));
        }
        Ok(header)
    }

    /// Decodes and fully validates the header of the batch at the start of `bytes`:
    /// length, version, attributes, field consistency and the CRC over the whole batch.
    pub fn parse_checked(bytes: &[u8]) -> Result<Self, FormatError> {
        let header = Self::parse(bytes)?;
        let len = header.length as usize;
        if bytes.len() < len {
            return Err(FormatError::Truncated {
                needed: len,
                available: bytes.len(),
            });
        }
        let computed = crc32fast::hash(&bytes[CRC_START..len]);
        if computed != header.crc {
            return Err(FormatError::CrcMismatch {
                stored: header.crc,
                computed,
            });
        }
        header.check_fields()?;
        Ok(header)
    }

    /// Checks the relations between header fields that the CRC cannot vouch for.
    fn check_fields(&self) -> Result<(), FormatError> {
        if self.attributes & ATTR_RESERVED_MASK != 0
            || Compression::from_bits(self.attributes & ATTR_CODEC_MASK).is_none()
        {
            return Err(FormatError::InvalidAttributes(self.attributes));
        }
        if self.record_count == 0 {
            return Err(FormatError::Empty);
        }
        if self.last_offset_delta != self.record_count - 1 {
            return Err(FormatError::InconsistentHeader(
                "last offset delta must equal record count - 1",
            ));
        }
        if self.max_timestamp < self.base_timestamp {
            return Err(FormatError::InconsistentHeader(
                "max timestamp is before the base timestamp",
            ));
        }
        if self
            .base_offset
            .checked_add(u64::from(self.last_offset_delta) + 1)
            .is_none()
        {
            return Err(FormatError::InconsistentHeader("next offset overflows u64"));
        }
        Ok(())
    }

    /// Offset of the last record in the batch.
    #[inline]
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// Offset just past the batch.
    #[inline]
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    /// Codec of the records section.
    #[inline]
    pub fn compression(&self) -> Compression {
        Compression::from_bits(self.attributes & ATTR_CODEC_MASK).unwrap_or(Compression::None)
    }

    /// How the batch's timestamps were assigned.
    #[inline]
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_TIMESTAMP_TYPE != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `out` (CRC as stored in `self`).
    pub(crate) fn write_to(&self, out: &mut [u8]) {
        out[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&self.base_offset.to_le_bytes());
        out[CRC_POS..CRC_POS + 4].copy_from_slice(&self.crc.to_le_bytes());
        out[LENGTH_POS..LENGTH_POS + 4].copy_from_slice(&self.length.to_le_bytes());
        out[MAGIC_POS] = self.magic;
        out[ATTRIBUTES_POS] = self.attributes;
        out[PRODUCER_EPOCH_POS..PRODUCER_EPOCH_POS + 2]
            .copy_from_slice(&self.producer_epoch.to_le_bytes());
        out[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4]
            .copy_from_slice(&self.last_offset_delta.to_le_bytes());
        out[BASE_TIMESTAMP_POS..BASE_TIMESTAMP_POS + 8]
            .copy_from_slice(&self.base_timestamp.to_le_bytes());
        out[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8]
            .copy_from_slice(&self.max_timestamp.to_le_bytes());
        out[PRODUCER_ID_POS..PRODUCER_ID_POS + 8].copy_from_slice(&self.producer_id.to_le_bytes());
        out[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4]
            .copy_from_slice(&self.base_sequence.to_le_bytes());
        out[RECORD_COUNT_POS..RECORD_COUNT_POS + 4]
            .copy_from_slice(&self.record_count.to_le_bytes());
    }
}

/// Computes the CRC of a complete batch (bytes `CRC_START..`).
#[inline]
pub(crate) fn batch_crc(batch: &[u8]) -> u32 {
    crc32fast::hash(&batch[CRC_START..])
}
