//! Records and batches handed to consumers, decoded from pushed or fetched batch bytes.

use bytes::{Bytes, BytesMut};
use std::ops::Range;
use std::sync::Arc;
use strata_log::FormatError;
use strata_log::format::{BatchHeader, BatchIter, Compression, peek_length};

/// One record as returned by `Consumer::poll`.
///
/// For uncompressed batches `key`, `value` and header values are zero-copy slices of
/// the received batch; for compressed ones they share one buffer per batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Topic name (shared by every record of the topic).
    pub topic: Arc<str>,
    /// Partition.
    pub partition: u32,
    /// Offset in the partition.
    pub offset: u64,
    /// Timestamp in µs since the Unix epoch.
    pub timestamp: i64,
    /// Key, if any.
    pub key: Option<Bytes>,
    /// Value (empty for a tombstone).
    pub value: Bytes,
    /// Headers, in order (a header without a value has an empty one).
    pub headers: Vec<(String, Bytes)>,
}

impl ConsumedRecord {
    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// One whole log batch as returned by `Consumer::poll_batches` (no per-record work).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedBatch {
    /// Topic name.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: u32,
    /// The batch's bytes, exactly as stored (iterate with `BatchView::parse(..).records`).
    pub batch: Bytes,
    /// Records below this offset were returned before: skip them.
    pub from_offset: u64,
}

impl ConsumedBatch {
    /// The batch header (not CRC-checked; `BatchView::parse` checks it).
    pub fn header(&self) -> Result<BatchHeader, FormatError> {
        BatchHeader::parse(&self.batch)
    }
}

/// Splits concatenated whole batches, yielding each one that holds an offset at or after
/// `from` (with its header); returns the offset after the last batch seen, or `from`.
pub fn split_batches(
    batches: &Bytes,
    from: u64,
    mut each: impl FnMut(Bytes, &BatchHeader),
) -> Result<u64, FormatError> {
    let mut next = from;
    let mut pos = 0;
    while pos < batches.len() {
        let rest = &batches[pos..];
        let len = peek_length(rest).ok_or(FormatError::Truncated {
            needed: strata_log::format::HEADER_LEN,
            available: rest.len(),
        })? as usize;
        if len < strata_log::format::HEADER_LEN || len > rest.len() {
            return Err(FormatError::Truncated {
                needed: len,
                available: rest.len(),
            });
        }
        let header = BatchHeader::parse(&rest[..len])?;
        if header.next_offset() > from {
            each(batches.slice(pos..pos + len), &header);
            next = next.max(header.next_offset());
        }
        pos += len;
    }
    Ok(next)
}

/// The offset after the last batch in `batches` (at least `current`); stops at the first
/// batch whose header cannot be read.
pub fn next_offset(batches: &[u8], current: u64) -> u64 {
    crate::protocol::batches::span(batches, current).next_offset
}

/// A record of a compressed batch whose bytes were copied into the batch's arena.
struct Staged {
    offset: u64,
    timestamp: i64,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
    headers: Vec<(String, Range<usize>)>,
}

/// Decodes batch bytes into [`ConsumedRecord`]s, reusing its buffers across calls.
#[derive(Default)]
pub struct RecordDecoder {
    scratch: Vec<u8>,
    arena: BytesMut,
    staged: Vec<Staged>,
}

impl std::fmt::Debug for RecordDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordDecoder").finish_non_exhaustive()
    }
}

fn stage(arena: &mut BytesMut, bytes: &[u8]) -> Range<usize> {
    let start = arena.len();
    arena.extend_from_slice(bytes);
    start..arena.len()
}

impl RecordDecoder {
    /// A decoder with empty buffers.
    pub fn new() -> Self {
        RecordDecoder::default()
    }

    /// Appends to `out` every record of `batches` at or after offset `from` (CRC checked);
    /// returns the offset after the last record appended, or `from` if none was.
    pub fn decode(
        &mut self,
        topic: &Arc<str>,
        partition: u32,
        batches: &Bytes,
        from: u64,
        out: &mut Vec<ConsumedRecord>,
    ) -> Result<u64, FormatError> {
        let mut next = from;
        for view in BatchIter::new(batches) {
            let view = view?;
            let header = *view.header();
            if header.next_offset() <= from {
                continue;
            }
            match header.compression() {
                Compression::None => {
                    for record in view.records(&mut self.scratch)? {
                        let record = record?;
                        if record.offset < from {
                            continue;
                        }
                        let headers = record
                            .headers
                            .map(|h| {
                                (
                                    String::from_utf8_lossy(h.key).into_owned(),
                                    h.value.map_or_else(Bytes::new, |v| batches.slice_ref(v)),
                                )
                            })
                            .collect();
                        out.push(ConsumedRecord {
                            topic: topic.clone(),
                            partition,
                            offset: record.offset,
                            timestamp: record.timestamp,
                            key: record.key.map(|k| batches.slice_ref(k)),
                            value: record
                                .value
                                .map_or_else(Bytes::new, |v| batches.slice_ref(v)),
                            headers,
                        });
                        next = next.max(record.offset + 1);
                    }
                }
                Compression::Lz4 => {
                    // The records live in a decompression buffer: copy their bytes into
                    // one arena per batch, so records share one allocation.
                    self.arena.clear();
                    self.staged.clear();
                    for record in view.records(&mut self.scratch)? {
                        let record = record?;
                        if record.offset < from {
                            continue;
                        }
                        let arena = &mut self.arena;
                        let headers = record
                            .headers
                            .map(|h| {
                                (
                                    String::from_utf8_lossy(h.key).into_owned(),
                                    stage(arena, h.value.unwrap_or_default()),
                                )
                            })
                            .collect();
                        let key = record.key.map(|k| stage(arena, k));
                        let value = record.value.map(|v| stage(arena, v));
                        self.staged.push(Staged {
                            offset: record.offset,
                            timestamp: record.timestamp,
                            key,
                            value,
                            headers,
                        });
                        next = next.max(record.offset + 1);
                    }
                    let shared = self.arena.split().freeze();
                    for s in self.staged.drain(..) {
                        out.push(ConsumedRecord {
                            topic: topic.clone(),
                            partition,
                            offset: s.offset,
                            timestamp: s.timestamp,
                            key: s.key.map(|r| shared.slice(r)),
                            value: s.value.map_or_else(Bytes::new, |r| shared.slice(r)),
                            headers: s
                                .headers
                                .into_iter()
                                .map(|(k, r)| (k, shared.slice(r)))
                                .collect(),
                        });
                    }
                }
            }
        }
        Ok(next)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use strata_log::format::{BatchBuilder, BuilderOptions, Header, patch_base_offset};

    /// Concatenated batches of `counts` records each, starting at offset `base`.
    pub(crate) fn batches(base: u64, counts: &[u32], compression: Compression) -> Bytes {
        let mut all = BytesMut::new();
        let mut offset = base;
        for &n in counts {
            let mut b = BatchBuilder::new(BuilderOptions {
                compression,
                ..BuilderOptions::default()
            });
            for i in 0..n {
                let o = offset + u64::from(i);
                let key = format!("k{o}");
                let value = format!("value-{o}");
                let headers = [Header {
                    key: b"h",
                    value: Some(key.as_bytes()),
                }];
                b.push(
                    1_000 + o as i64,
                    Some(key.as_bytes()),
                    Some(value.as_bytes()),
                    &headers,
                )
                .unwrap();
            }
            let mut bytes = b.finish().unwrap();
            patch_base_offset(&mut bytes, offset);
            all.extend_from_slice(&bytes);
            offset += u64::from(n);
        }
        all.freeze()
    }

    #[test]
    fn decodes_from_the_wanted_offset_zero_copy() {
        let data = batches(10, &[3, 4], Compression::None);
        let topic: Arc<str> = Arc::from("t");
        let mut out = Vec::new();
        let next = RecordDecoder::new()
            .decode(&topic, 2, &data, 11, &mut out)
            .unwrap();
        assert_eq!(next, 17);
        let offsets: Vec<u64> = out.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (11..17).collect::<Vec<_>>());
        let r = &out[0];
        assert_eq!(r.partition, 2);
        assert_eq!(r.timestamp, 1_011);
        assert_eq!(r.key.as_deref(), Some(&b"k11"[..]));
        assert_eq!(&r.value[..], b"value-11");
        assert_eq!(r.header("h").map(|v| &v[..]), Some(&b"k11"[..]));
        // Zero copy: the value points into the received bytes.
        let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
        assert!(range.contains(&(r.value.as_ptr() as usize)));
    }

    #[test]
    fn compressed_batches_decode_the_same() {
        let plain = batches(0, &[5, 2], Compression::None);
        let lz4 = batches(0, &[5, 2], Compression::Lz4);
        let topic: Arc<str> = Arc::from("t");
        let mut decoder = RecordDecoder::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert_eq!(decoder.decode(&topic, 0, &plain, 3, &mut a).unwrap(), 7);
        assert_eq!(decoder.decode(&topic, 0, &lz4, 3, &mut b).unwrap(), 7);
        assert_eq!(a, b);
        assert_eq!(a.len(), 4);
    }

    #[test]
    fn nothing_new_keeps_the_position() {
        let data = batches(0, &[3], Compression::None);
        let topic: Arc<str> = Arc::from("t");
        let mut out = Vec::new();
        let next = RecordDecoder::new()
            .decode(&topic, 0, &data, 3, &mut out)
            .unwrap();
        assert_eq!((next, out.len()), (3, 0));
    }

    #[test]
    fn corrupt_bytes_are_an_error() {
        let data = batches(0, &[3], Compression::None);
        let mut bad = BytesMut::from(&data[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let topic: Arc<str> = Arc::from("t");
        let err = RecordDecoder::new()
            .decode(&topic, 0, &bad.freeze(), 0, &mut Vec::new())
            .unwrap_err();
        assert!(matches!(err, FormatError::CrcMismatch { .. }), "{err:?}");
    }

    #[test]
    fn splits_batches_and_skips_consumed_ones() {
        let data = batches(0, &[3, 4, 2], Compression::None);
        let mut seen = Vec::new();
        let next = split_batches(&data, 3, |b, h| {
            assert_eq!(b.len(), h.length as usize);
            seen.push(h.base_offset);
        })
        .unwrap();
        assert_eq!(seen, vec![3, 7]);
        assert_eq!(next, 9);
        assert_eq!(next_offset(&data, 0), 9);
        assert_eq!(
            next_offset(&data[..data.len() - 1], 0),
            7,
            "torn tail ignored"
        );
        assert!(split_batches(&data.slice(..data.len() - 1), 0, |_, _| {}).is_err());
    }
}
