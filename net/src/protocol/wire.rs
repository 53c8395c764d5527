//! Field encoding shared by every message body: little-endian integers, strings with a
//! u16 length, lists with a u32 count, optional values with a presence byte.

use super::ProtocolError;
use bytes::{Buf, BufMut, BytesMut};

/// Longest string a body can carry (its length is a u16).
pub const MAX_STR_LEN: usize = u16::MAX as usize;

/// Reads fields off the front of a body, failing with [`ProtocolError::Malformed`] on
/// truncation or invalid values instead of panicking.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a mut BytesMut,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads the body of a `what` frame (named in errors).
    pub fn new(buf: &'a mut BytesMut, what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn need(&self, n: usize, field: &str) -> Result<(), ProtocolError> {
        if self.buf.remaining() < n {
            return Err(ProtocolError::Malformed(format!(
                "{} body truncated at {field}: need {n} bytes, {} left",
                self.what,
                self.buf.remaining()
            )));
        }
        Ok(())
    }

    /// A u8.
    pub fn u8(&mut self, field: &str) -> Result<u8, ProtocolError> {
        self.need(1, field)?;
        Ok(self.buf.get_u8())
    }

    /// A u16.
    pub fn u16(&mut self, field: &str) -> Result<u16, ProtocolError> {
        self.need(2, field)?;
        Ok(self.buf.get_u16_le())
    }

    /// A u32.
    pub fn u32(&mut self, field: &str) -> Result<u32, ProtocolError> {
        self.need(4, field)?;
        Ok(self.buf.get_u32_le())
    }

    /// A u64.
    pub fn u64(&mut self, field: &str) -> Result<u64, ProtocolError> {
        self.need(8, field)?;
        Ok(self.buf.get_u64_le())
    }

    /// An i64.
    pub fn i64(&mut self, field: &str) -> Result<i64, ProtocolError> {
        self.need(8, field)?;
        Ok(self.buf.get_i64_le())
    }

    /// A boolean byte (0 or 1).
    pub fn bool(&mut self, field: &str) -> Result<bool, ProtocolError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.invalid(field, v)),
        }
    }

    /// A presence byte and, when present, a u64.
    pub fn opt_u64(&mut self, field: &str) -> Result<Option<u64>, ProtocolError> {
        Ok(if self.bool(field)? {
            Some(self.u64(field)?)
        } else {
            None
        })
    }

    /// A UTF-8 string with a u16 length.
    pub fn str(&mut self, field: &str) -> Result<String, ProtocolError> {
        let len = self.u16(field)? as usize;
        self.need(len, field)?;
        let bytes = self.buf.split_to(len);
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            ProtocolError::Malformed(format!("{} field {field} is not UTF-8", self.what))
        })
    }

    /// A u32 element count, checked against the bytes left (each element takes at least
    /// `min_size` bytes) so a forged count cannot make the reader allocate without bound.
    pub fn count(&mut self, field: &str, min_size: usize) -> Result<usize, ProtocolError> {
        let n = self.u32(field)? as usize;
        if n.saturating_mul(min_size.max(1)) > self.buf.remaining() {
            return Err(ProtocolError::Malformed(format!(
                "{} field {field} claims {n} elements in {} bytes",
                self.what,
                self.buf.remaining()
            )));
        }
        Ok(n)
    }

    /// Everything left in the body, without a copy.
    pub fn rest(&mut self) -> BytesMut {
        self.buf.split()
    }

    /// Fails unless the body was consumed exactly.
    pub fn finish(self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Malformed(format!(
                "{} body has {} unexpected trailing bytes",
                self.what,
                self.buf.len()
            )))
        }
    }

    /// The error for an out-of-range enum value.
    pub fn invalid(&self, field: &str, value: impl std::fmt::Display) -> ProtocolError {
        ProtocolError::Malformed(format!(
            "{} field {field} has invalid value {value}",
            self.what
        ))
    }
}

/// Writes a string with a u16 length, cutting it at a character boundary if it is
/// longer than [`MAX_STR_LEN`] bytes (only free-form messages can be that long).
pub fn put_str(out: &mut BytesMut, s: &str) {
    let mut end = s.len().min(MAX_STR_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16_le(end as u16);
    out.put_slice(&s.as_bytes()[..end]);
}

/// Writes a presence byte and, when present, the value.
pub fn put_opt_u64(out: &mut BytesMut, v: Option<u64>) {
    match v {
        Some(v) => {
            out.put_u8(1);
            out.put_u64_le(v);
        }
        None => out.put_u8(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_strings_are_cut_at_a_char_boundary() {
        let s = "é".repeat(40_000); // 80 000 bytes
        let mut out = BytesMut::new();
        put_str(&mut out, &s);
        let mut r = Reader::new(&mut out, "test");
        let back = r.str("s").unwrap();
        assert!(back.len() <= MAX_STR_LEN && back.len() % 2 == 0);
        r.finish().unwrap();
    }

    #[test]
    fn forged_counts_and_truncation_are_errors() {
        let mut b = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1, 2][..]);
        assert!(Reader::new(&mut b, "t").count("n", 1).is_err());
        let mut b = BytesMut::from(&[5, 0, b'a'][..]);
        assert!(Reader::new(&mut b, "t").str("s").is_err());
        let mut b = BytesMut::from(&[2][..]);
        assert!(Reader::new(&mut b, "t").bool("b").is_err());
    }
}
