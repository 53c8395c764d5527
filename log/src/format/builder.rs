//! Encodes records into a batch without allocating per record.

use super::compression::lz4_compress_into;
use super::header::{BatchHeader, batch_crc};
use super::record::{self, Header};
use super::*;
use crate::error::FormatError;
use bytes::{BufMut, BytesMut};

/// Producer-level settings a builder stamps on every batch it finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuilderOptions {
    /// Codec for the records section.
    pub compression: Compression,
    /// How timestamps were assigned.
    pub timestamp_type: TimestampType,
    /// Producer id, or [`NO_PRODUCER_ID`].
    pub producer_id: u64,
    /// Producer epoch.
    pub producer_epoch: u16,
    /// Sequence number of the next batch's first record, or [`NO_SEQUENCE`].
    pub base_sequence: i32,
    /// Largest encoded batch (header plus uncompressed records) the builder will produce.
    pub max_batch_bytes: usize,
}

impl Default for BuilderOptions {
    fn default() -> Self {
        BuilderOptions {
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: 0,
            base_sequence: NO_SEQUENCE,
            max_batch_bytes: 1024 * 1024,
        }
    }
}

/// Builds record batches, reusing its buffers from one batch to the next.
///
/// ```
/// use strata_log::format::{BatchBuilder, BatchView, BuilderOptions};
/// let mut builder = BatchBuilder::new(BuilderOptions::default());
/// builder.push(1_000, Some(b"user-1"), Some(b"clicked"), &[]).unwrap();
/// builder.push(1_005, None, Some(b"scrolled"), &[]).unwrap();
/// let batch = builder.finish().unwrap();
/// let view = BatchView::parse(&batch).unwrap();
/// assert_eq!(view.header().record_count, 2);
/// ```
#[derive(Debug)]
pub struct BatchBuilder {
    options: BuilderOptions,
    /// Header placeholder followed by the uncompressed records.
    buf: BytesMut,
    /// Scratch for the compressed records section.
    compressed: Vec<u8>,
    count: u32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// Creates a builder with the given options.
    pub fn new(options: BuilderOptions) -> Self {
        assert!(
            options.max_batch_bytes > HEADER_LEN,
            "max_batch_bytes must exceed the header"
        );
        assert!(
            options.max_batch_bytes <= MAX_BATCH_LEN,
            "max_batch_bytes exceeds MAX_BATCH_LEN"
        );
        BatchBuilder {
            options,
            buf: BytesMut::new(),
            compressed: Vec::new(),
            count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
        }
    }

    /// The options stamped on finished batches.
    pub fn options(&self) -> &BuilderOptions {
        &self.options
    }

    /// Sets the idempotence fields for the next batch.
    pub fn set_producer(&mut self, producer_id: u64, producer_epoch: u16, base_sequence: i32) {
        self.options.producer_id = producer_id;
        self.options.producer_epoch = producer_epoch;
        self.options.base_sequence = base_sequence;
    }

    /// Records pushed since the last `finish`.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when no record was pushed since the last `finish`.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch would take uncompressed, header included.
    pub fn encoded_len(&self) -> usize {
        if self.count == 0 { 0 } else { self.buf.len() }
    }

    /// Appends a record with timestamp `timestamp` (µs since the Unix epoch).
    ///
    /// Fails with [`FormatError::TooLarge`] (leaving the batch unchanged) when the record
    /// would push the batch past `max_batch_bytes`: finish the batch and push again.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
    ) -> Result<(), FormatError> {
        if self.count == 0 {
            self.buf.clear();
            self.buf.put_bytes(0, HEADER_LEN);
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        }
        let delta = timestamp.wrapping_sub(self.base_timestamp);
        let body = record::body_len(self.count, delta, key, value, headers);
        let size = self.buf.len() + record::varint_len(body as u64) + body;
        if size > self.options.max_batch_bytes {
            return Err(FormatError::TooLarge {
                size,
                limit: self.options.max_batch_bytes,
            });
        }
        record::encode(&mut self.buf, self.count, delta, key, value, headers);
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
        Ok(())
    }

    /// Makes room for `bytes` of encoded batch before the next push has to grow the buffer.
    pub fn reserve(&mut self, bytes: usize) {
        let used = if self.count == 0 { 0 } else { self.buf.len() };
        self.buf.reserve(bytes.saturating_sub(used));
    }

    /// Seals the records pushed so far into a batch with base offset 0 and resets the builder.
    ///
    /// The broker assigns the real base offset on append.
    pub fn finish(&mut self) -> Result<BytesMut, FormatError> {
        if self.count == 0 {
            return Err(FormatError::Empty);
        }
        if self.options.compression == Compression::Lz4 {
            self.compressed.clear();
            lz4_compress_into(&self.buf[HEADER_LEN..], &mut self.compressed);
            self.buf.truncate(HEADER_LEN);
            self.buf.extend_from_slice(&self.compressed);
        }
        let mut attributes = self.options.compression.bits();
        if self.options.timestamp_type == TimestampType::LogAppendTime {
            attributes |= ATTR_TIMESTAMP_TYPE;
        }
        let header = BatchHeader {
            base_offset: 0,
            crc: 0,
            length: self.buf.len() as u32,
            magic: MAGIC_V1,
            attributes,
            producer_epoch: self.options.producer_epoch,
            last_offset_delta: self.count - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.options.producer_id,
            base_sequence: self.options.base_sequence,
            record_count: self.count,
        };
        header.write_to(&mut self.buf[..HEADER_LEN]);
        let crc = batch_crc(&self.buf);
        self.buf[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_le_bytes());
        self.count = 0;
        Ok(self.buf.split())
    }
}
