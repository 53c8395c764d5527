//! The recovery scan: a pure function that finds where the valid prefix of a segment ends.

use crate::error::FormatError;
use crate::format::{BatchHeader, HEADER_LEN, peek_length};

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// All bytes were consumed, or the rest is zero-filled preallocated space.
    CleanEnd,
    /// The last batch is cut short: fewer bytes than its header declares.
    Torn,
    /// A batch failed validation (CRC, header fields).
    Corrupt(FormatError),
    /// A valid batch whose base offset does not continue the log (stale bytes).
    OffsetGap {
        /// Offset the scan expected.
        expected: u64,
        /// Offset the batch carries.
        found: u64,
    },
}

/// Result of scanning a segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Bytes from the scan start that hold whole, valid batches.
    pub valid_len: usize,
    /// Offset after the last valid batch (the `expected_offset` passed in if none).
    pub next_offset: u64,
    /// Number of valid batches seen.
    pub batches: u64,
    /// What ended the scan.
    pub stop: ScanStop,
}

impl ScanOutcome {
    /// True when bytes past `valid_len` held something other than zeros.
    pub fn found_damage(&self) -> bool {
        self.stop != ScanStop::CleanEnd
    }
}

/// Scans `bytes` (a segment from some batch boundary on) for consecutive valid batches.
///
/// The first batch must start at `expected_offset`, and each later one where its
/// predecessor ended. With `verify_crc` each batch's CRC and header are checked; without
/// it only framing and offsets (for rebuilding the index of a sealed segment). `visit` is
/// called with each valid batch's position (relative to `bytes`) and header.
pub fn scan(
    bytes: &[u8],
    expected_offset: u64,
    verify_crc: bool,
    mut visit: impl FnMut(usize, &BatchHeader),
) -> ScanOutcome {
    let mut pos = 0usize;
    let mut next = expected_offset;
    let mut batches = 0u64;
    let stop = loop {
        let rest = &bytes[pos..];
        if rest.is_empty() {
            break ScanStop::CleanEnd;
        }
        if rest.len() < HEADER_LEN || peek_length(rest) == Some(0) {
            // Preallocated space reads as zeros; anything else here is a torn write.
            let head = &rest[..rest.len().min(HEADER_LEN)];
            break if head.iter().all(|&b| b == 0) {
                ScanStop::CleanEnd
            } else {
                ScanStop::Torn
            };
        }
        let parsed = if verify_crc {
            BatchHeader::parse_checked(rest)
        } else {
            BatchHeader::parse(rest).and_then(|h| {
                if (h.length as usize) > rest.len() {
                    Err(FormatError::Truncated {
                        needed: h.length as usize,
                        available: rest.len(),
                    })
                } else {
                    Ok(h)
                }
            })
        };
        let header = match parsed {
            Ok(h) => h,
            Err(FormatError::Truncated { .. }) => break ScanStop::Torn,
            Err(e) => break ScanStop::Corrupt(e),
        };
        if header.base_offset != next {
            break ScanStop::OffsetGap {
                expected: next,
                found: header.base_offset,
            };
        }
        visit(pos, &header);
        next = header.next_offset();
        pos += header.length as usize;
        batches += 1;
    };
    ScanOutcome {
        valid_len: pos,
        next_offset: next,
        batches,
        stop,
    }
}
