//! Facts read from the headers of concatenated whole batches (a FETCHED or DATA tail).

use strata_log::format::{BatchHeader, HEADER_LEN, peek_length};

/// What the headers of concatenated batches say, read in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSpan {
    /// Offset after the last readable batch (at least the `current` passed in).
    pub next_offset: u64,
    /// Records in the readable batches.
    pub records: u64,
}

/// Walks the batch headers of `batches`, stopping at the first that cannot be read.
pub fn span(batches: &[u8], current: u64) -> BatchSpan {
    let mut out = BatchSpan {
        next_offset: current,
        records: 0,
    };
    let mut rest = batches;
    while let Some(len) = peek_length(rest) {
        let len = len as usize;
        if len < HEADER_LEN || len > rest.len() {
            break;
        }
        match BatchHeader::parse(&rest[..len]) {
            Ok(h) => {
                out.next_offset = out.next_offset.max(h.next_offset());
                out.records += u64::from(h.record_count);
            }
            Err(_) => break,
        }
        rest = &rest[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_log::format::{BatchBuilder, BuilderOptions, patch_base_offset};

    #[test]
    fn span_follows_the_last_readable_batch() {
        let mut all = Vec::new();
        for (base, n) in [(10u64, 3), (13, 2)] {
            let mut b = BatchBuilder::new(BuilderOptions::default());
            for i in 0..n {
                b.push(i, None, Some(b"v"), &[]).unwrap();
            }
            let mut bytes = b.finish().unwrap();
            patch_base_offset(&mut bytes, base);
            all.extend_from_slice(&bytes);
        }
        assert_eq!(
            span(&all, 10),
            BatchSpan {
                next_offset: 15,
                records: 5
            }
        );
        assert_eq!(
            span(&all[..all.len() - 1], 10),
            BatchSpan {
                next_offset: 13,
                records: 3
            },
            "a torn tail is ignored"
        );
        assert_eq!(
            span(&[], 7),
            BatchSpan {
                next_offset: 7,
                records: 0
            }
        );
    }
}
