//! The load generator's message payload: a self-checking header, then filler.
//!
//! Every record value the load generator produces is one payload of the configured size.
//! All integers are little-endian:
//!
//! ```text
//!  offset  size  field
//!  ------  ----  -----------------------------------------------------------------
//!       0     8  checksum   XXH3-64 (seed 0) of bytes 8..length
//!       8     4  magic      b"SLG1"
//!      12     4  length     total payload length in bytes, header included
//!      16     4  producer   producer id (0..producers)
//!      20     4  partition  run-wide partition index the producer sent it to
//!      24     8  sequence   per (producer, partition): 0, 1, 2, ... with no gap
//!      32     8  send_ns    scheduled send time, ns since the run epoch
//!      40     -  filler     length - 40 bytes (see [`Filler`])
//!
//!  0               8       12      16      20      24              32              40
//!  +---------------+-------+-------+-------+-------+---------------+---------------+-- -
//!  |   checksum    | magic |  len  | prod  | part  |   sequence    |    send_ns    | filler
//!  +---------------+-------+-------+-------+-------+---------------+---------------+-- -
//!                  \_____________________ covered by the checksum _______________________
//! ```
//!
//! * The checksum covers everything after itself (header fields and filler), so any
//!   altered, truncated or extended payload fails [`decode`].
//! * `partition` is a run-wide index (for T topics of P partitions:
//!   `topic_index * P + partition`) so a consumer can tell a record that was delivered
//!   from the wrong partition.
//! * `sequence` counts per (producer, partition), so per-partition order can be checked:
//!   within one partition, one producer's sequences must appear in increasing order.
//! * `send_ns` is nanoseconds since the run's [`RunClock`](crate::clock::RunClock) epoch —
//!   a monotonic, process-local clock shared by the producers and consumers of one run.
//!   In open-loop mode it is the *scheduled* send time, so end-to-end latency includes
//!   any time the message waited behind a slow producer (no coordinated omission).
//!
//! The minimum message size is [`HEADER_LEN`] (40 bytes); smaller sizes are rejected.

use xxhash_rust::xxh3::xxh3_64;

/// Offset of the checksum field.
pub const CHECKSUM_OFFSET: usize = 0;
/// Offset of the magic field.
pub const MAGIC_OFFSET: usize = 8;
/// Offset of the total-length field.
pub const LENGTH_OFFSET: usize = 12;
/// Offset of the producer-id field.
pub const PRODUCER_OFFSET: usize = 16;
/// Offset of the partition field.
pub const PARTITION_OFFSET: usize = 20;
/// Offset of the sequence field.
pub const SEQUENCE_OFFSET: usize = 24;
/// Offset of the send-time field.
pub const SEND_NS_OFFSET: usize = 32;
/// Length of the header; the filler starts here.
pub const HEADER_LEN: usize = 40;
/// The smallest valid payload: a header and no filler.
pub const MIN_MESSAGE_SIZE: usize = HEADER_LEN;
/// The largest payload the length field can describe.
pub const MAX_MESSAGE_SIZE: usize = u32::MAX as usize;
/// The magic bytes identifying a load-generator payload.
pub const MAGIC: [u8; 4] = *b"SLG1";
/// The first byte covered by the checksum.
pub const CHECKSUMMED_FROM: usize = MAGIC_OFFSET;

/// The header fields of one payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fields {
    /// Producer id.
    pub producer: u32,
    /// Run-wide partition index the producer sent the message to.
    pub partition: u32,
    /// Sequence number per (producer, partition), dense from 0.
    pub sequence: u64,
    /// Scheduled send time, nanoseconds since the run epoch.
    pub send_ns: u64,
}

/// What fills the payload after the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Filler {
    /// Pseudo-random bytes derived from the header (incompressible: the worst case).
    #[default]
    Random,
    /// Repeated ASCII text (compresses well, so `--compression lz4` has an effect).
    Text,
}

/// A payload that cannot be encoded or did not survive the trip intact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The requested or received size is below the header size.
    #[error("message size {size} is below the minimum of {min} bytes (the payload header)")]
    TooSmall {
        /// The size.
        size: usize,
        /// [`MIN_MESSAGE_SIZE`].
        min: usize,
    },
    /// The requested size does not fit the 32-bit length field.
    #[error("message size {size} exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The size.
        size: usize,
        /// [`MAX_MESSAGE_SIZE`].
        max: usize,
    },
    /// The magic bytes are wrong: not a load-generator payload, or altered.
    #[error("bad magic {found:02x?} (expected {MAGIC:02x?})")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The length field disagrees with the payload's actual length.
    #[error("length field says {declared} bytes but the payload has {actual}")]
    LengthMismatch {
        /// The length field.
        declared: u32,
        /// The actual length.
        actual: usize,
    },
    /// The checksum does not match the contents.
    #[error("checksum mismatch (stored {stored:#018x}, computed {computed:#018x})")]
    ChecksumMismatch {
        /// The stored checksum.
        stored: u64,
        /// The checksum of the received bytes.
        computed: u64,
        /// The header fields as received (untrustworthy; for diagnostics only).
        claimed: Fields,
    },
}

/// Checks that `size` is a valid message size.
pub fn check_size(size: usize) -> Result<(), PayloadError> {
    if size < MIN_MESSAGE_SIZE {
        return Err(PayloadError::TooSmall {
            size,
            min: MIN_MESSAGE_SIZE,
        });
    }
    if size > MAX_MESSAGE_SIZE {
        return Err(PayloadError::TooLarge {
            size,
            max: MAX_MESSAGE_SIZE,
        });
    }
    Ok(())
}

/// Encodes `fields` into the whole of `buf` with [`Filler::Random`]; `buf.len()` is the
/// message size. Allocates nothing.
pub fn encode_into(buf: &mut [u8], fields: &Fields) -> Result<(), PayloadError> {
    encode_into_with(buf, fields, Filler::Random)
}

/// Encodes `fields` into the whole of `buf` with the given filler. Allocates nothing.
pub fn encode_into_with(
    buf: &mut [u8],
    fields: &Fields,
    filler: Filler,
) -> Result<(), PayloadError> {
    check_size(buf.len())?;
    let len = buf.len() as u32; // checked above
    buf[MAGIC_OFFSET..MAGIC_OFFSET + 4].copy_from_slice(&MAGIC);
    buf[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&len.to_le_bytes());
    buf[PRODUCER_OFFSET..PRODUCER_OFFSET + 4].copy_from_slice(&fields.producer.to_le_bytes());
    buf[PARTITION_OFFSET..PARTITION_OFFSET + 4].copy_from_slice(&fields.partition.to_le_bytes());
    buf[SEQUENCE_OFFSET..SEQUENCE_OFFSET + 8].copy_from_slice(&fields.sequence.to_le_bytes());
    buf[SEND_NS_OFFSET..SEND_NS_OFFSET + 8].copy_from_slice(&fields.send_ns.to_le_bytes());
    fill(&mut buf[HEADER_LEN..], fields, filler);
    let sum = xxh3_64(&buf[CHECKSUMMED_FROM..]);
    buf[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 8].copy_from_slice(&sum.to_le_bytes());
    Ok(())
}

/// The text repeated by [`Filler::Text`].
const TEXT: &[u8] =
    b"{\"device\":\"sensor-0042\",\"temp\":21.5,\"status\":\"ok\",\"region\":\"eu-west\"}\n";

fn fill(out: &mut [u8], fields: &Fields, filler: Filler) {
    match filler {
        Filler::Random => {
            // splitmix64 seeded from the header: cheap, deterministic, incompressible.
            let mut state = fields.sequence
                ^ (u64::from(fields.producer) << 32 | u64::from(fields.partition)).rotate_left(17)
                ^ 0x9e37_79b9_7f4a_7c15;
            let mut chunks = out.chunks_exact_mut(8);
            for chunk in &mut chunks {
                chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
            }
            let rest = chunks.into_remainder();
            let last = splitmix64(&mut state).to_le_bytes();
            rest.copy_from_slice(&last[..rest.len()]);
        }
        Filler::Text => {
            let start = (fields.sequence % TEXT.len() as u64) as usize;
            let mut src = TEXT[start..].iter().chain(TEXT.iter().cycle());
            for (b, s) in out.iter_mut().zip(&mut src) {
                *b = *s;
            }
        }
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Decodes and checks a payload: any size, magic, length or checksum problem is an
/// error (all of them mean the payload was altered or is not one of ours).
pub fn decode(bytes: &[u8]) -> Result<Fields, PayloadError> {
    if bytes.len() < HEADER_LEN {
        return Err(PayloadError::TooSmall {
            size: bytes.len(),
            min: MIN_MESSAGE_SIZE,
        });
    }
    let mut found = [0; 4];
    found.copy_from_slice(&bytes[MAGIC_OFFSET..MAGIC_OFFSET + 4]);
    if found != MAGIC {
        return Err(PayloadError::BadMagic { found });
    }
    let declared = u32_at(bytes, LENGTH_OFFSET);
    if declared as usize != bytes.len() {
        return Err(PayloadError::LengthMismatch {
            declared,
            actual: bytes.len(),
        });
    }
    let fields = Fields {
        producer: u32_at(bytes, PRODUCER_OFFSET),
        partition: u32_at(bytes, PARTITION_OFFSET),
        sequence: u64_at(bytes, SEQUENCE_OFFSET),
        send_ns: u64_at(bytes, SEND_NS_OFFSET),
    };
    let stored = u64_at(bytes, CHECKSUM_OFFSET);
    let computed = xxh3_64(&bytes[CHECKSUMMED_FROM..]);
    if stored != computed {
        return Err(PayloadError::ChecksumMismatch {
            stored,
            computed,
            claimed: fields,
        });
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fields() -> Fields {
        Fields {
            producer: 7,
            partition: 3,
            sequence: 123_456,
            send_ns: 9_876_543_210,
        }
    }

    #[test]
    fn header_layout_matches_the_documented_offsets() {
        let mut buf = [0u8; 48];
        encode_into(&mut buf, &fields()).unwrap();
        assert_eq!(&buf[8..12], b"SLG1");
        assert_eq!(u32_at(&buf, 12), 48);
        assert_eq!(u32_at(&buf, 16), 7);
        assert_eq!(u32_at(&buf, 20), 3);
        assert_eq!(u64_at(&buf, 24), 123_456);
        assert_eq!(u64_at(&buf, 32), 9_876_543_210);
        assert_eq!(u64_at(&buf, 0), xxh3_64(&buf[8..]));
        assert_eq!(decode(&buf), Ok(fields()));
    }

    #[test]
    fn sizes_below_the_header_are_rejected_with_a_clear_error() {
        let mut buf = [0u8; HEADER_LEN - 1];
        let err = encode_into(&mut buf, &fields()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "message size 39 is below the minimum of 40 bytes (the payload header)"
        );
        assert!(matches!(
            decode(&buf),
            Err(PayloadError::TooSmall { size: 39, .. })
        ));
        let mut exact = [0u8; HEADER_LEN];
        encode_into(&mut exact, &fields()).unwrap();
        assert_eq!(decode(&exact), Ok(fields()));
        assert!(check_size(HEADER_LEN).is_ok());
    }

    #[test]
    fn detects_foreign_truncated_and_altered_payloads() {
        let mut buf = vec![0u8; 100];
        encode_into(&mut buf, &fields()).unwrap();
        assert!(matches!(
            decode(&buf[..99]),
            Err(PayloadError::LengthMismatch {
                declared: 100,
                actual: 99
            })
        ));
        let mut foreign = buf.clone();
        foreign[8] = b'X';
        assert!(matches!(
            decode(&foreign),
            Err(PayloadError::BadMagic { .. })
        ));
        let mut flipped = buf.clone();
        flipped[99] ^= 1;
        match decode(&flipped) {
            Err(PayloadError::ChecksumMismatch { claimed, .. }) => assert_eq!(claimed, fields()),
            other => panic!("{other:?}"),
        }
        assert!(decode(b"{\"not\":\"ours\", \"padding\": \"..............\"}").is_err());
    }

    #[test]
    fn text_filler_compresses_and_random_filler_does_not_repeat() {
        let mut text = vec![0u8; 1000];
        encode_into_with(&mut text, &fields(), Filler::Text).unwrap();
        assert_eq!(decode(&text), Ok(fields()));
        assert!(text[HEADER_LEN..].windows(TEXT.len()).any(|w| w == TEXT));
        let mut random = vec![0u8; 1000];
        encode_into(&mut random, &fields()).unwrap();
        assert!(
            !random[HEADER_LEN..]
                .windows(16)
                .skip(1)
                .any(|w| w == &random[HEADER_LEN..HEADER_LEN + 16])
        );
    }

    proptest! {
        #[test]
        fn round_trips(producer: u32, partition: u32, sequence: u64, send_ns: u64,
                       size in HEADER_LEN..600usize, text: bool) {
            let f = Fields { producer, partition, sequence, send_ns };
            let mut buf = vec![0u8; size];
            let filler = if text { Filler::Text } else { Filler::Random };
            encode_into_with(&mut buf, &f, filler).unwrap();
            prop_assert_eq!(decode(&buf), Ok(f));
        }

        #[test]
        fn any_single_bit_flip_is_detected(size in HEADER_LEN..300usize, bit in 0usize..2400, seq: u64) {
            let f = Fields { sequence: seq, ..fields() };
            let mut buf = vec![0u8; size];
            encode_into(&mut buf, &f).unwrap();
            let bit = bit % (size * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&buf).is_err());
        }
    }
}
