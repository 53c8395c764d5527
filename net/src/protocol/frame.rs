//! Frame header layout and the sans-IO frame splitter.
//!
//! ```text
//!  0               4       5       6               8                              16
//!  +---------------+-------+-------+---------------+-------------------------------+
//!  | body_len u32  | kind  | flags | reserved u16  | request_id u64                |
//!  +---------------+-------+-------+---------------+-------------------------------+
//!  | body (body_len bytes)                                                         |
//!  +-------------------------------------------------------------------------------+
//! ```
//! All integers are little-endian. `flags` and `reserved` must be zero in version 1.

use super::ProtocolError;
use bytes::{Buf, BufMut, BytesMut};

/// Offset of the body length (u32).
pub const BODY_LEN_OFFSET: usize = 0;
/// Offset of the frame kind (u8).
pub const KIND_OFFSET: usize = 4;
/// Offset of the flags byte (u8, zero in version 1).
pub const FLAGS_OFFSET: usize = 5;
/// Offset of the reserved field (u16, zero in version 1).
pub const RESERVED_OFFSET: usize = 6;
/// Offset of the request id (u64).
pub const REQUEST_ID_OFFSET: usize = 8;
/// Size of the fixed frame header.
pub const HEADER_LEN: usize = 16;

/// A frame's fixed header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Bytes of body that follow the header.
    pub body_len: u32,
    /// Frame kind (see [`super::kind`]).
    pub kind: u8,
    /// Id chosen by the client; a response carries the id of its request.
    pub request_id: u64,
}

impl FrameHeader {
    /// Writes the header to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_u32_le(self.body_len);
        out.put_u8(self.kind);
        out.put_u8(0);
        out.put_u16_le(0);
        out.put_u64_le(self.request_id);
    }

    /// Reads a header from the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// `max_frame` bounds header plus body; a bigger frame is refused before its body
    /// is read, so a peer cannot make the receiver buffer without bound.
    pub fn decode(buf: &[u8], max_frame: usize) -> Result<FrameHeader, ProtocolError> {
        assert!(buf.len() >= HEADER_LEN, "caller passes a whole header");
        let mut b = buf;
        let body_len = b.get_u32_le();
        let kind = b.get_u8();
        let flags = b.get_u8();
        let reserved = b.get_u16_le();
        let request_id = b.get_u64_le();
        if flags != 0 || reserved != 0 {
            return Err(ProtocolError::Malformed(format!(
                "frame flags {flags:#x} / reserved {reserved:#x} must be zero"
            )));
        }
        let total = HEADER_LEN as u64 + u64::from(body_len);
        if total > max_frame as u64 {
            return Err(ProtocolError::FrameTooLarge {
                size: total,
                limit: max_frame,
            });
        }
        Ok(FrameHeader {
            body_len,
            kind,
            request_id,
        })
    }
}

/// One frame split off a byte stream: its header and its body.
#[derive(Debug, PartialEq, Eq)]
pub struct RawFrame {
    /// Frame kind.
    pub kind: u8,
    /// Request id.
    pub request_id: u64,
    /// The body, owned (a produce request's batch is split off it without a copy).
    pub body: BytesMut,
}

/// Splits the next whole frame off the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (read more and call again);
/// it never consumes bytes of an incomplete frame. Pure: no I/O, no clock.
pub fn split_frame(
    buf: &mut BytesMut,
    max_frame: usize,
) -> Result<Option<RawFrame>, ProtocolError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let header = FrameHeader::decode(&buf[..HEADER_LEN], max_frame)?;
    let total = HEADER_LEN + header.body_len as usize;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(total);
    let body = frame.split_off(HEADER_LEN);
    Ok(Some(RawFrame {
        kind: header.kind,
        request_id: header.request_id,
        body,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, id: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        FrameHeader {
            body_len: body.len() as u32,
            kind,
            request_id: id,
        }
        .encode(&mut out);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn header_layout_matches_the_constants() {
        let bytes = frame(0x42, 0x0102_0304_0506_0708, b"xyz");
        assert_eq!(bytes.len(), HEADER_LEN + 3);
        assert_eq!(
            u32::from_le_bytes(bytes[BODY_LEN_OFFSET..KIND_OFFSET].try_into().unwrap()),
            3
        );
        assert_eq!(bytes[KIND_OFFSET], 0x42);
        assert_eq!(bytes[FLAGS_OFFSET], 0);
        assert_eq!(&bytes[RESERVED_OFFSET..REQUEST_ID_OFFSET], &[0, 0]);
        assert_eq!(
            u64::from_le_bytes(bytes[REQUEST_ID_OFFSET..HEADER_LEN].try_into().unwrap()),
            0x0102_0304_0506_0708
        );
    }

    #[test]
    fn splits_only_whole_frames() {
        let mut all = frame(1, 7, b"hello");
        all.extend(frame(2, 8, b""));
        for cut in 0..all.len() {
            let mut buf = BytesMut::from(&all[..cut]);
            let mut got = Vec::new();
            while let Some(f) = split_frame(&mut buf, 1024).unwrap() {
                got.push(f);
            }
            let whole = if cut >= all.len() {
                2
            } else if cut >= HEADER_LEN + 5 {
                1
            } else {
                0
            };
            assert_eq!(got.len(), whole, "cut at {cut}");
            buf.extend_from_slice(&all[cut..]);
            while let Some(f) = split_frame(&mut buf, 1024).unwrap() {
                got.push(f);
            }
            assert_eq!(got.len(), 2);
            assert_eq!(&got[0].body[..], b"hello");
            assert_eq!((got[1].kind, got[1].request_id), (2, 8));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn oversize_and_nonzero_reserved_are_refused() {
        let mut buf = BytesMut::from(&frame(1, 1, &[0u8; 100])[..]);
        assert!(matches!(
            split_frame(&mut buf, 64),
            Err(ProtocolError::FrameTooLarge {
                size: 116,
                limit: 64
            })
        ));
        let mut bad = frame(1, 1, b"");
        bad[FLAGS_OFFSET] = 1;
        assert!(matches!(
            split_frame(&mut BytesMut::from(&bad[..]), 64),
            Err(ProtocolError::Malformed(_))
        ));
    }
}
