//! Reads batches and their records as borrowed slices: nothing is copied.

use super::compression::lz4_decompress_into;
use super::header::BatchHeader;
use super::record::{self, Record};
use super::*;
use crate::error::FormatError;

/// A validated batch borrowed from a buffer (CRC checked, header consistent).
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Validates the batch at the start of `bytes` (bytes after it are ignored).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let header = BatchHeader::parse_checked(bytes)?;
        Ok(BatchView {
            header,
            bytes: &bytes[..header.length as usize],
        })
    }

    /// The decoded header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Iterates the records; lz4 batches are decompressed into `scratch` first.
    ///
    /// Uncompressed records borrow from the batch itself and `scratch` is left untouched.
    pub fn records<'s>(&'s self, scratch: &'s mut Vec<u8>) -> Result<RecordIter<'s>, FormatError>
    where
        'a: 's,
    {
        let section = &self.bytes[HEADER_LEN..];
        let bytes: &'s [u8] = match self.header.compression() {
            Compression::None => section,
            Compression::Lz4 => {
                lz4_decompress_into(section, scratch)?;
                scratch.as_slice()
            }
        };
        Ok(RecordIter {
            bytes,
            base_offset: self.header.base_offset,
            base_timestamp: self.header.base_timestamp,
            count: self.header.record_count,
            index: 0,
            next_min_delta: 0,
            failed: false,
        })
    }

    /// Decodes every record once, reporting the first malformed one.
    pub fn validate_records(&self, scratch: &mut Vec<u8>) -> Result<(), FormatError> {
        for record in self.records(scratch)? {
            record?;
        }
        Ok(())
    }
}

/// Iterator over the records of one batch.
#[derive(Debug)]
pub struct RecordIter<'a> {
    bytes: &'a [u8],
    base_offset: u64,
    base_timestamp: i64,
    count: u32,
    index: u32,
    next_min_delta: u32,
    failed: bool,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.index == self.count {
            if self.bytes.is_empty() {
                return None;
            }
            self.failed = true;
            return Some(Err(FormatError::MalformedRecord {
                index: self.index,
                reason: "trailing bytes after the last record",
            }));
        }
        let result = record::decode(self.bytes, self.index).and_then(|(raw, rest)| {
            if raw.offset_delta < self.next_min_delta || raw.offset_delta >= self.count {
                return Err(FormatError::MalformedRecord {
                    index: self.index,
                    reason: "offset delta out of order or past the last offset",
                });
            }
            self.bytes = rest;
            self.next_min_delta = raw.offset_delta + 1;
            Ok(Record {
                offset: self.base_offset + u64::from(raw.offset_delta),
                timestamp: self.base_timestamp.wrapping_add(raw.timestamp_delta),
                key: raw.key,
                value: raw.value,
                headers: raw.headers,
            })
        });
        self.index += 1;
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.count - self.index.min(self.count)) as usize;
        (0, Some(left + 1))
    }
}

/// Iterates the validated batches in a buffer of concatenated batches.
///
/// Stops after the first invalid batch, which it yields as an error.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    bytes: &'a [u8],
    failed: bool,
}

impl<'a> BatchIter<'a> {
    /// Iterates the batches in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        BatchIter {
            bytes,
            failed: false,
        }
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<BatchView<'a>, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.bytes.is_empty() {
            return None;
        }
        match BatchView::parse(self.bytes) {
            Ok(view) => {
                self.bytes = &self.bytes[view.as_bytes().len()..];
                Some(Ok(view))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
