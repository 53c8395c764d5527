//! Shared helpers of the format property tests and the partition tests: an owned record
//! model, encoding records with the public builder, decoding served bytes back into the
//! model, an independent CRC-32, a seeded generator and the test configuration.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use bytes::BytesMut;
use std::path::Path;
use strata_log::format::{
    BatchBuilder, BatchIter, BuilderOptions, CRC_POS, CRC_START, Compression, Header,
};
use strata_log::{Durability, IoBackend, Partition, PartitionConfig};

/// Both write paths.
pub const BACKENDS: [IoBackend; 2] = [IoBackend::Uring, IoBackend::Fallback];
/// Smallest segment size the log accepts.
pub const SEGMENT_BYTES: u64 = 1 << 20;
/// A plausible timestamp (µs since the Unix epoch) to start from.
pub const BASE_TS: i64 = 1_700_000_000_000_000;

/// One record, owning its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// Timestamp (µs).
    pub ts: i64,
    /// Key, if any.
    pub key: Option<Vec<u8>>,
    /// Value, if any.
    pub value: Option<Vec<u8>>,
    /// Headers as (key, value) pairs.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Encodes `records` as one batch with `options` (panics if they do not fit).
pub fn encode(records: &[Rec], options: BuilderOptions) -> BytesMut {
    let mut builder = BatchBuilder::new(options);
    push_all(&mut builder, records);
    builder.finish().expect("batch is not empty")
}

/// Pushes every record of `records` into `builder`.
pub fn push_all(builder: &mut BatchBuilder, records: &[Rec]) {
    for r in records {
        let headers: Vec<Header<'_>> = r
            .headers
            .iter()
            .map(|(k, v)| Header {
                key: k,
                value: v.as_deref(),
            })
            .collect();
        builder
            .push(r.ts, r.key.as_deref(), r.value.as_deref(), &headers)
            .expect("record fits the batch");
    }
}

/// Builder options with the given codec and no producer.
pub fn opts(compression: Compression) -> BuilderOptions {
    BuilderOptions {
        compression,
        ..BuilderOptions::default()
    }
}

/// One batch decoded from served bytes.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Base offset from the header.
    pub base: u64,
    /// Offset after the batch.
    pub next: u64,
    /// Encoded length.
    pub len: usize,
    /// Records as (offset, record).
    pub records: Vec<(u64, Rec)>,
}

/// Decodes every batch and record of `bytes` (concatenated batches), panicking on any
/// format error with `ctx`.
pub fn decode(bytes: &[u8], ctx: &str) -> Vec<Decoded> {
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    for batch in BatchIter::new(bytes) {
        let batch = batch.unwrap_or_else(|e| panic!("{ctx}: served batch is invalid: {e}"));
        let h = *batch.header();
        let mut records = Vec::with_capacity(h.record_count as usize);
        for r in batch
            .records(&mut scratch)
            .unwrap_or_else(|e| panic!("{ctx}: records of batch {}: {e}", h.base_offset))
        {
            let r = r.unwrap_or_else(|e| panic!("{ctx}: record in batch {}: {e}", h.base_offset));
            records.push((
                r.offset,
                Rec {
                    ts: r.timestamp,
                    key: r.key.map(<[u8]>::to_vec),
                    value: r.value.map(<[u8]>::to_vec),
                    headers: r
                        .headers
                        .map(|hd| (hd.key.to_vec(), hd.value.map(<[u8]>::to_vec)))
                        .collect(),
                },
            ));
        }
        assert_eq!(
            records.len(),
            h.record_count as usize,
            "{ctx}: record count of batch {}",
            h.base_offset
        );
        out.push(Decoded {
            base: h.base_offset,
            next: h.next_offset(),
            len: h.length as usize,
            records,
        });
    }
    out
}

/// CRC-32 (IEEE, reflected, as `docs/FORMAT.md` specifies), computed bit by bit so that
/// the tests do not share the implementation they check.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Recomputes and stores the CRC of the batch occupying all of `batch`.
pub fn reseal(batch: &mut [u8]) {
    let crc = crc32(&batch[CRC_START..]);
    batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Overwrites the u32 field at `pos`.
pub fn put_u32(batch: &mut [u8], pos: usize, v: u32) {
    batch[pos..pos + 4].copy_from_slice(&v.to_le_bytes());
}

/// Overwrites the i64 field at `pos`.
pub fn put_i64(batch: &mut [u8], pos: usize, v: i64) {
    batch[pos..pos + 8].copy_from_slice(&v.to_le_bytes());
}

/// A seeded SplitMix64 generator, so that derived data is reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.0;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// In `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// In `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    /// `len` bytes: random, or runs of one byte (compressible) when `compressible`.
    pub fn bytes(&mut self, len: usize, compressible: bool) -> Vec<u8> {
        if compressible {
            let b = self.next_u64() as u8;
            let mut v = vec![b; len];
            // A few random bytes so that runs differ from record to record.
            for _ in 0..len / 64 {
                let i = self.below(len as u64) as usize;
                v[i] = self.next_u64() as u8;
            }
            v
        } else {
            let mut v = Vec::with_capacity(len + 8);
            while v.len() < len {
                v.extend_from_slice(&self.next_u64().to_le_bytes());
            }
            v.truncate(len);
            v
        }
    }

    /// A record at about `ts` with a value of at most `max_value` bytes (mostly near it).
    pub fn record(&mut self, ts: i64, max_value: usize) -> Rec {
        let compressible = self.one_in(2);
        let key = match self.below(4) {
            0 => None,
            1 => Some(Vec::new()),
            _ => {
                let n = self.below(24) as usize;
                Some(self.bytes(n, false))
            }
        };
        let value = match self.below(8) {
            0 => None,
            1 => Some(Vec::new()),
            _ => {
                let n = max_value - self.below(max_value as u64 / 4 + 1) as usize;
                Some(self.bytes(n, compressible))
            }
        };
        let headers = (0..self.below(3))
            .map(|i| {
                let len = self.below(12) as usize;
                let v = (!self.one_in(3)).then(|| self.bytes(len, false));
                (format!("h{i}").into_bytes(), v)
            })
            .collect();
        Rec {
            ts,
            key,
            value,
            headers,
        }
    }
}

/// The test configuration: 1 MiB segments, nothing expires, the given write path and
/// durability.
pub fn config(backend: IoBackend, durability: Durability) -> PartitionConfig {
    PartitionConfig {
        segment_bytes: SEGMENT_BYTES,
        segment_age: None,
        index_interval_bytes: 1024,
        durability,
        retention_bytes: None,
        retention_age: None,
        io_backend: backend,
        ..PartitionConfig::default()
    }
}

/// Opens `dir` with `config`, panicking with the context on failure.
pub fn open(dir: &Path, config: PartitionConfig, ctx: &str) -> Partition {
    let backend = config.io_backend;
    Partition::open(dir, config)
        .unwrap_or_else(|e| panic!("{ctx}: opening {} on {backend:?}: {e}", dir.display()))
}
