//! Sparse per-segment indexes: offset -> file position and timestamp -> offset.
//!
//! Both are flat arrays of fixed-size little-endian entries, searched in place (the
//! bytes may be a `Vec` for the active segment or a read-only mapping for a sealed one).
//!
//! ```text
//! offset index entry (8 bytes):  relative_offset u32 | position u32
//! time index entry  (12 bytes):  timestamp i64       | relative_offset u32
//! index file:                    entries | crc32 of the entries u32 | magic "SIX1"
//! ```

use crate::format::BatchHeader;

/// Size of one offset index entry.
pub const OFFSET_ENTRY_LEN: usize = 8;
/// Size of one time index entry.
pub const TIME_ENTRY_LEN: usize = 12;
/// Last four bytes of an index file.
pub const INDEX_FILE_MAGIC: [u8; 4] = *b"SIX1";
/// Bytes after the entries in an index file: CRC-32 of the entries, then the magic.
pub const INDEX_TRAILER_LEN: usize = 8;

/// Encodes an index file: the entries followed by their CRC-32 and the magic.
pub fn encode_file(entries: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() + INDEX_TRAILER_LEN);
    out.extend_from_slice(entries);
    out.extend_from_slice(&crc32fast::hash(entries).to_le_bytes());
    out.extend_from_slice(&INDEX_FILE_MAGIC);
    out
}

/// The entries of an index file, if its trailer checks out and it holds whole entries.
pub fn decode_file(bytes: &[u8], entry_len: usize) -> Option<&[u8]> {
    let body_len = bytes.len().checked_sub(INDEX_TRAILER_LEN)?;
    let (entries, trailer) = bytes.split_at(body_len);
    let crc = u32::from_le_bytes(trailer[..4].try_into().ok()?);
    (trailer[4..] == INDEX_FILE_MAGIC
        && body_len % entry_len == 0
        && crc32fast::hash(entries) == crc)
        .then_some(entries)
}

#[inline]
fn u32_at(b: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes(b[pos..pos + 4].try_into().expect("4 bytes"))
}

#[inline]
fn i64_at(b: &[u8], pos: usize) -> i64 {
    i64::from_le_bytes(b[pos..pos + 8].try_into().expect("8 bytes"))
}

/// The `i`th offset index entry as (relative offset, position).
#[inline]
fn offset_entry(index: &[u8], i: usize) -> (u32, u32) {
    let at = i * OFFSET_ENTRY_LEN;
    (u32_at(index, at), u32_at(index, at + 4))
}

/// The `i`th time index entry as (timestamp, relative offset).
#[inline]
fn time_entry(index: &[u8], i: usize) -> (i64, u32) {
    let at = i * TIME_ENTRY_LEN;
    (i64_at(index, at), u32_at(index, at + 8))
}

/// Position of the batch to start scanning from to find relative offset `rel`:
/// the last entry at or below `rel`, or the segment start.
pub fn lookup_position(index: &[u8], rel: u32) -> u32 {
    let n = index.len() / OFFSET_ENTRY_LEN;
    // Number of entries whose relative offset is <= rel.
    let count = partition_point(n, |i| offset_entry(index, i).0 <= rel);
    if count == 0 {
        0
    } else {
        offset_entry(index, count - 1).1
    }
}

/// Relative offset to start scanning from to find the first record at or after `ts`:
/// the last entry whose timestamp is below `ts`, or the segment start.
pub fn lookup_time(index: &[u8], ts: i64) -> u32 {
    let n = index.len() / TIME_ENTRY_LEN;
    let count = partition_point(n, |i| time_entry(index, i).0 < ts);
    if count == 0 {
        0
    } else {
        time_entry(index, count - 1).1
    }
}

/// The last offset index entry, if any.
pub fn last_offset_entry(index: &[u8]) -> Option<(u32, u32)> {
    let n = index.len() / OFFSET_ENTRY_LEN;
    (n > 0).then(|| offset_entry(index, n - 1))
}

/// The last time index entry, if any.
pub fn last_time_entry(index: &[u8]) -> Option<(i64, u32)> {
    let n = index.len() / TIME_ENTRY_LEN;
    (n > 0).then(|| time_entry(index, n - 1))
}

fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) { lo = mid + 1 } else { hi = mid }
    }
    lo
}

/// Checks an offset index read from disk: whole entries, strictly increasing, inside `segment_len`.
pub fn validate_offset_index(index: &[u8], segment_len: u64) -> bool {
    if index.len() % OFFSET_ENTRY_LEN != 0 {
        return false;
    }
    let n = index.len() / OFFSET_ENTRY_LEN;
    let mut prev: Option<(u32, u32)> = None;
    for i in 0..n {
        let (rel, pos) = offset_entry(index, i);
        if u64::from(pos) >= segment_len {
            return false;
        }
        if let Some((prel, ppos)) = prev
            && (rel <= prel || pos <= ppos)
        {
            return false;
        }
        prev = Some((rel, pos));
    }
    true
}

/// Checks a time index read from disk: whole entries, non-decreasing, offsets below `max_rel`.
pub fn validate_time_index(index: &[u8], max_rel: u32) -> bool {
    if index.len() % TIME_ENTRY_LEN != 0 {
        return false;
    }
    let n = index.len() / TIME_ENTRY_LEN;
    let mut prev: Option<(i64, u32)> = None;
    for i in 0..n {
        let (ts, rel) = time_entry(index, i);
        if rel > max_rel {
            return false;
        }
        if let Some((pts, prel)) = prev
            && (ts <= pts || rel < prel)
        {
            return false;
        }
        prev = Some((ts, rel));
    }
    true
}

/// Builds both indexes of one segment as batches are appended or scanned.
///
/// An offset entry is added when at least `interval` bytes were written since the last
/// one; a time entry when, in addition, the segment's largest timestamp has grown.
#[derive(Debug, Clone)]
pub struct IndexBuilder {
    base_offset: u64,
    interval: u32,
    offsets: Vec<u8>,
    times: Vec<u8>,
    last_offset_pos: u32,
    last_time_pos: u32,
    last_time_ts: i64,
    max_timestamp: i64,
    max_timestamp_rel: u32,
    batches: u64,
    /// Resumed from a time index with entries (so a largest timestamp is known).
    resumed_with_times: bool,
}

impl IndexBuilder {
    /// Starts empty indexes for the segment whose first offset is `base_offset`.
    pub fn new(base_offset: u64, interval: u32) -> Self {
        IndexBuilder {
            base_offset,
            interval: interval.max(1),
            offsets: Vec::new(),
            times: Vec::new(),
            last_offset_pos: 0,
            last_time_pos: 0,
            last_time_ts: i64::MIN,
            max_timestamp: i64::MIN,
            max_timestamp_rel: 0,
            batches: 0,
            resumed_with_times: false,
        }
    }

    /// Resumes from indexes loaded from disk; the caller then observes batches after them.
    pub fn resume(base_offset: u64, interval: u32, offsets: &[u8], times: &[u8]) -> Self {
        let mut b = Self::new(base_offset, interval);
        b.offsets.extend_from_slice(offsets);
        b.times.extend_from_slice(times);
        if let Some((_, pos)) = last_offset_entry(offsets) {
            b.last_offset_pos = pos;
        }
        if let Some((ts, rel)) = last_time_entry(times) {
            b.last_time_ts = ts;
            b.max_timestamp = ts;
            b.max_timestamp_rel = rel;
            b.resumed_with_times = true;
        }
        b
    }

    /// Records the batch `header` found at byte `pos` of the segment.
    pub fn observe(&mut self, pos: u32, header: &BatchHeader) {
        let rel = header.base_offset.saturating_sub(self.base_offset) as u32;
        if pos > 0 && pos.saturating_sub(self.last_offset_pos) >= self.interval {
            self.offsets.extend_from_slice(&rel.to_le_bytes());
            self.offsets.extend_from_slice(&pos.to_le_bytes());
            self.last_offset_pos = pos;
        }
        if header.max_timestamp > self.max_timestamp
            || (self.batches == 0 && !self.resumed_with_times)
        {
            self.max_timestamp = header.max_timestamp;
            self.max_timestamp_rel = rel;
        }
        if self.max_timestamp > self.last_time_ts
            && (self.batches == 0 || pos.saturating_sub(self.last_time_pos) >= self.interval)
        {
            self.push_time_entry(pos);
        }
        self.batches += 1;
    }

    fn push_time_entry(&mut self, pos: u32) {
        self.times
            .extend_from_slice(&self.max_timestamp.to_le_bytes());
        self.times
            .extend_from_slice(&self.max_timestamp_rel.to_le_bytes());
        self.last_time_ts = self.max_timestamp;
        self.last_time_pos = pos;
    }

    /// Adds a final time entry carrying the segment's largest timestamp (done when sealing).
    pub fn seal(&mut self) {
        if self.max_timestamp > self.last_time_ts {
            let pos = self.last_time_pos;
            self.push_time_entry(pos);
        }
    }

    /// Largest timestamp observed, if any batch was.
    pub fn max_timestamp(&self) -> Option<i64> {
        (self.batches > 0 || self.resumed_with_times).then_some(self.max_timestamp)
    }

    /// The offset index bytes.
    pub fn offsets(&self) -> &[u8] {
        &self.offsets
    }

    /// The time index bytes.
    pub fn times(&self) -> &[u8] {
        &self.times
    }

    /// Consumes the builder, returning (offset index, time index).
    pub fn into_parts(self) -> (Vec<u8>, Vec<u8>) {
        (self.offsets, self.times)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(base_offset: u64, count: u32, max_ts: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            crc: 0,
            length: 100,
            magic: 1,
            attributes: 0,
            producer_epoch: 0,
            last_offset_delta: count - 1,
            base_timestamp: max_ts,
            max_timestamp: max_ts,
            producer_id: u64::MAX,
            base_sequence: -1,
            record_count: count,
        }
    }

    #[test]
    fn offset_lookup_finds_last_entry_at_or_below() {
        let mut b = IndexBuilder::new(1000, 250);
        // Batches of 10 records, 100 bytes each.
        for i in 0..20u32 {
            b.observe(i * 100, &header(1000 + u64::from(i) * 10, 10, i64::from(i)));
        }
        let idx = b.offsets();
        assert!(validate_offset_index(idx, 2000));
        assert_eq!(lookup_position(idx, 0), 0);
        // Entries land every 300 bytes (first batch at or past 250 bytes since the last).
        assert_eq!(lookup_position(idx, 29), 0);
        assert_eq!(lookup_position(idx, 30), 300);
        assert_eq!(lookup_position(idx, 65), 600);
        assert_eq!(lookup_position(idx, 10_000), 1800);
    }

    #[test]
    fn time_lookup_starts_before_first_match() {
        let mut b = IndexBuilder::new(0, 1);
        for (i, ts) in [10i64, 20, 15, 30, 40].into_iter().enumerate() {
            b.observe(i as u32 * 100, &header(i as u64, 1, ts));
        }
        b.seal();
        let t = b.times();
        assert!(validate_time_index(t, 4));
        assert_eq!(lookup_time(t, 5), 0);
        assert_eq!(lookup_time(t, 10), 0);
        assert_eq!(lookup_time(t, 11), 0);
        assert_eq!(lookup_time(t, 25), 1);
        assert_eq!(lookup_time(t, 41), 4);
        assert_eq!(b.max_timestamp(), Some(40));
    }

    #[test]
    fn index_files_detect_cuts_and_flips() {
        let entries: Vec<u8> = (0..48u8).collect();
        let file = encode_file(&entries);
        assert_eq!(decode_file(&file, OFFSET_ENTRY_LEN), Some(&entries[..]));
        for cut in 0..file.len() {
            assert_eq!(
                decode_file(&file[..cut], OFFSET_ENTRY_LEN),
                None,
                "cut at {cut}"
            );
        }
        for bit in 0..file.len() * 8 {
            let mut f = file.clone();
            f[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_file(&f, OFFSET_ENTRY_LEN), None, "bit {bit}");
        }
        assert_eq!(
            decode_file(&encode_file(&[]), TIME_ENTRY_LEN),
            Some(&[][..])
        );
    }

    #[test]
    fn a_segment_of_minimal_timestamps_still_has_a_max() {
        let mut b = IndexBuilder::new(0, 1);
        assert_eq!(b.max_timestamp(), None);
        b.observe(0, &header(0, 1, i64::MIN));
        b.observe(100, &header(1, 1, i64::MIN));
        assert_eq!(b.max_timestamp(), Some(i64::MIN));
    }

    #[test]
    fn damaged_indexes_are_rejected() {
        assert!(!validate_offset_index(&[0u8; 7], 100));
        let mut bad = Vec::new();
        for (rel, pos) in [(5u32, 100u32), (4, 200)] {
            bad.extend_from_slice(&rel.to_le_bytes());
            bad.extend_from_slice(&pos.to_le_bytes());
        }
        assert!(!validate_offset_index(&bad, 1000));
        let mut past_end = Vec::new();
        past_end.extend_from_slice(&1u32.to_le_bytes());
        past_end.extend_from_slice(&5000u32.to_le_bytes());
        assert!(!validate_offset_index(&past_end, 1000));
        assert!(!validate_time_index(&[1u8; 13], 10));
    }
}
