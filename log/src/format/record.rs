//! One record inside a batch: varint-framed fields, encoded and borrowed back.
//!
//! ```text
//! length            varint        bytes after this field
//! offset_delta      varint        record offset - batch base offset
//! timestamp_delta   zigzag varint record timestamp - batch base timestamp (µs)
//! key_length        zigzag varint -1 = no key
//! key               bytes
//! value_length      zigzag varint -1 = no value (tombstone)
//! value             bytes
//! header_count      varint
//!   key_length      varint
//!   key             bytes
//!   value_length    zigzag varint -1 = no value
//!   value           bytes
//! ```

use crate::error::FormatError;
use bytes::BufMut;
use unsigned_varint::{decode, encode};

/// One key/value header attached to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// Header name.
    pub key: &'a [u8],
    /// Header value, if any.
    pub value: Option<&'a [u8]>,
}

/// A record borrowed from a batch: no byte is copied.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Absolute offset in the partition.
    pub offset: u64,
    /// Timestamp in µs since the Unix epoch.
    pub timestamp: i64,
    /// Record key, if any.
    pub key: Option<&'a [u8]>,
    /// Record value, if any (`None` is a tombstone).
    pub value: Option<&'a [u8]>,
    /// The record's headers, decoded lazily.
    pub headers: RecordHeaders<'a>,
}

/// Lazily decoded headers of one record.
#[derive(Debug, Clone, Copy)]
pub struct RecordHeaders<'a> {
    bytes: &'a [u8],
    remaining: u32,
}

impl<'a> RecordHeaders<'a> {
    /// Number of headers.
    pub fn len(&self) -> usize {
        self.remaining as usize
    }

    /// True when the record carries no header.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl<'a> Iterator for RecordHeaders<'a> {
    type Item = Header<'a>;

    fn next(&mut self) -> Option<Header<'a>> {
        if self.remaining == 0 {
            return None;
        }
        // The bytes were validated when the record was decoded, so this cannot fail.
        let (header, rest) = decode_header(self.bytes).ok()?;
        self.bytes = rest;
        self.remaining -= 1;
        Some(header)
    }
}

#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Bytes the varint encoding of `v` takes.
#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[inline]
fn put_varint<B: BufMut>(out: &mut B, v: u64) {
    let mut buf = encode::u64_buffer();
    out.put_slice(encode::u64(v, &mut buf));
}

#[inline]
fn opt_len(v: Option<&[u8]>) -> i64 {
    v.map_or(-1, |b| b.len() as i64)
}

/// Bytes a record's body takes (everything after its length prefix).
pub(crate) fn body_len(
    offset_delta: u32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header<'_>],
) -> usize {
    let mut n = varint_len(u64::from(offset_delta)) + varint_len(zigzag(timestamp_delta));
    n += varint_len(zigzag(opt_len(key))) + key.map_or(0, <[u8]>::len);
    n += varint_len(zigzag(opt_len(value))) + value.map_or(0, <[u8]>::len);
    n += varint_len(headers.len() as u64);
    for h in headers {
        n += varint_len(h.key.len() as u64) + h.key.len();
        n += varint_len(zigzag(opt_len(h.value))) + h.value.map_or(0, <[u8]>::len);
    }
    n
}

/// Appends one encoded record to `out`; never allocates beyond growing `out`.
pub(crate) fn encode<B: BufMut>(
    out: &mut B,
    offset_delta: u32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header<'_>],
) {
    let body = body_len(offset_delta, timestamp_delta, key, value, headers);
    put_varint(out, body as u64);
    put_varint(out, u64::from(offset_delta));
    put_varint(out, zigzag(timestamp_delta));
    put_varint(out, zigzag(opt_len(key)));
    if let Some(k) = key {
        out.put_slice(k);
    }
    put_varint(out, zigzag(opt_len(value)));
    if let Some(v) = value {
        out.put_slice(v);
    }
    put_varint(out, headers.len() as u64);
    for h in headers {
        put_varint(out, h.key.len() as u64);
        out.put_slice(h.key);
        put_varint(out, zigzag(opt_len(h.value)));
        if let Some(v) = h.value {
            out.put_slice(v);
        }
    }
}

type Malformed = &'static str;

#[inline]
fn get_varint(bytes: &[u8]) -> Result<(u64, &[u8]), Malformed> {
    decode::u64(bytes).map_err(|_| "bad varint")
}

#[inline]
fn get_u32(bytes: &[u8]) -> Result<(u32, &[u8]), Malformed> {
    let (v, rest) = get_varint(bytes)?;
    let v = u32::try_from(v).map_err(|_| "varint exceeds u32")?;
    Ok((v, rest))
}

#[inline]
fn get_opt_bytes(bytes: &[u8]) -> Result<(Option<&[u8]>, &[u8]), Malformed> {
    let (raw, rest) = get_varint(bytes)?;
    let len = unzigzag(raw);
    if len == -1 {
        return Ok((None, rest));
    }
    let len = usize::try_from(len).map_err(|_| "negative length")?;
    if len > rest.len() {
        return Err("length past end of record");
    }
    Ok((Some(&rest[..len]), &rest[len..]))
}

fn decode_header(bytes: &[u8]) -> Result<(Header<'_>, &[u8]), Malformed> {
    let (klen, rest) = get_u32(bytes)?;
    let klen = klen as usize;
    if klen > rest.len() {
        return Err("header key past end of record");
    }
    let (key, rest) = rest.split_at(klen);
    let (value, rest) = get_opt_bytes(rest)?;
    Ok((Header { key, value }, rest))
}

/// A record as framed in the records section, before the batch's base values are added.
pub(crate) struct RawRecord<'a> {
    pub offset_delta: u32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: RecordHeaders<'a>,
}

/// Decodes the record at the start of `bytes`, returning it and the bytes after it.
pub(crate) fn decode(bytes: &[u8], index: u32) -> Result<(RawRecord<'_>, &[u8]), FormatError> {
    let bad = |reason| FormatError::MalformedRecord { index, reason };
    let (len, rest) = get_u32(bytes).map_err(bad)?;
    let len = len as usize;
    if len > rest.len() {
        return Err(bad("record length past end of batch"));
    }
    let (body, after) = rest.split_at(len);
    let (offset_delta, b) = get_u32(body).map_err(bad)?;
    let (ts_raw, b) = get_varint(b).map_err(bad)?;
    let (key, b) = get_opt_bytes(b).map_err(bad)?;
    let (value, b) = get_opt_bytes(b).map_err(bad)?;
    let (count, headers_start) = get_u32(b).map_err(bad)?;
    let mut h = headers_start;
    for _ in 0..count {
        let (_, rest) = decode_header(h).map_err(bad)?;
        h = rest;
    }
    if !h.is_empty() {
        return Err(bad("trailing bytes after headers"));
    }
    let raw = RawRecord {
        offset_delta,
        timestamp_delta: unzigzag(ts_raw),
        key,
        value,
        headers: RecordHeaders {
            bytes: headers_start,
            remaining: count,
        },
    };
    Ok((raw, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_extremes() {
        for v in [0i64, 1, -1, 63, -64, i64::MAX, i64::MIN, 1 << 40] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn varint_len_matches_encoder() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
            let mut buf = encode::u64_buffer();
            assert_eq!(encode::u64(v, &mut buf).len(), varint_len(v), "{v}");
        }
    }

    #[test]
    fn encoded_record_decodes_with_headers() {
        let headers = [
            Header {
                key: b"trace",
                value: Some(b"abc"),
            },
            Header {
                key: b"empty",
                value: None,
            },
        ];
        let mut out = Vec::new();
        encode(&mut out, 7, -12, None, Some(b"hello"), &headers);
        let (rec, rest) = decode(&out, 0).unwrap();
        assert!(rest.is_empty());
        assert_eq!(rec.offset_delta, 7);
        assert_eq!(rec.timestamp_delta, -12);
        assert_eq!(rec.key, None);
        assert_eq!(rec.value, Some(&b"hello"[..]));
        assert_eq!(rec.headers.collect::<Vec<_>>(), headers);
    }

    #[test]
    fn truncated_record_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        encode(&mut out, 0, 0, Some(b"k"), Some(b"value"), &[]);
        for cut in 0..out.len() {
            assert!(decode(&out[..cut], 0).is_err(), "cut at {cut}");
        }
    }
}
