//! Compression codecs for the records section of a batch.

use super::MAX_UNCOMPRESSED_LEN;
use crate::error::FormatError;

/// Codec applied to a batch's records section (the header is never compressed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Records stored as is.
    #[default]
    None,
    /// Records compressed as one lz4 block, prefixed by the uncompressed length (u32 LE).
    Lz4,
}

impl Compression {
    /// The codec's value in the attributes byte.
    pub const fn bits(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
        }
    }

    /// The codec named by attribute bits, if known.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Compression::None),
            1 => Some(Compression::Lz4),
            _ => None,
        }
    }
}

/// Upper bound of lz4's expansion: one byte of a match length token covers 255 bytes.
const LZ4_MAX_RATIO: usize = 255;

/// Appends `input` compressed as `[u32 LE uncompressed length][lz4 block]` to `out`.
pub(crate) fn lz4_compress_into(input: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&(input.len() as u32).to_le_bytes());
    let bound = lz4_flex::block::get_maximum_output_size(input.len());
    out.resize(start + 4 + bound, 0);
    let written = lz4_flex::block::compress_into(input, &mut out[start + 4..])
        .expect("output sized by get_maximum_output_size");
    out.truncate(start + 4 + written);
}

/// Decompresses a `[u32 LE length][lz4 block]` section into `out` (cleared first).
pub(crate) fn lz4_decompress_into(input: &[u8], out: &mut Vec<u8>) -> Result<(), FormatError> {
    if input.len() < 4 {
        return Err(FormatError::Decompress(
            "missing uncompressed length".into(),
        ));
    }
    let len = u32::from_le_bytes(input[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_UNCOMPRESSED_LEN {
        return Err(FormatError::Decompress(format!(
            "uncompressed length {len} exceeds {MAX_UNCOMPRESSED_LEN}"
        )));
    }
    // lz4 expands at most ~255x: refuse a claimed length the input cannot produce before
    // allocating for it, so a tiny batch cannot make a reader allocate 256 MiB.
    let possible = (input.len() - 4)
        .saturating_mul(LZ4_MAX_RATIO)
        .saturating_add(16);
    if len > possible {
        return Err(FormatError::Decompress(format!(
            "uncompressed length {len} is more than {} compressed bytes can hold",
            input.len() - 4
        )));
    }
    out.clear();
    out.resize(len, 0);
    let n = lz4_flex::block::decompress_into(&input[4..], out)
        .map_err(|e| FormatError::Decompress(e.to_string()))?;
    if n != len {
        return Err(FormatError::Decompress(format!(
            "decompressed {n} bytes, header says {len}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refuses_impossible_lengths_before_allocating() {
        let input = vec![42u8; 100_000];
        let mut c = Vec::new();
        lz4_compress_into(&input, &mut c);
        let mut out = Vec::new();
        lz4_decompress_into(&c, &mut out).unwrap();
        assert_eq!(out, input);
        // A few bytes claiming 256 MiB are refused without allocating it.
        let mut bomb = (MAX_UNCOMPRESSED_LEN as u32).to_le_bytes().to_vec();
        bomb.extend_from_slice(&[0u8; 8]);
        let mut out = Vec::new();
        assert!(lz4_decompress_into(&bomb, &mut out).is_err());
        assert_eq!(out.capacity(), 0, "nothing was allocated");
    }
}
