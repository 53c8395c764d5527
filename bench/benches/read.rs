//! Zero-copy read throughput: `Partition::read` over a whole log, then batch and record
//! iteration.
//!
//! A partition is filled with 1024 batches of 64 KiB (64 MiB; 100 B or 1 KiB records,
//! uncompressed or lz4) and kept open, so reads are served from its memory mapping (page
//! cache, no disk I/O). One iteration reads the whole log from offset 0 in 1 MiB fetches:
//!
//! * `fetch`: the zero-copy `Bytes` slices only (headers walked to find the next offset,
//!   nothing checksummed);
//! * `fetch+crc`: plus `BatchIter`, which CRC-checks every batch;
//! * `fetch+crc+records`: plus decoding every record (`BatchView::records`, lz4 batches
//!   decompressed into a reused scratch buffer) and touching each value's length.
//!
//! Throughput: records, and the bytes the fetches returned (stored, i.e. compressed for
//! lz4).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use strata_bench::{BATCH_BYTES, Workload, open_ours, ours_pipelined};
use strata_log::format::{BatchHeader, BatchIter, Compression, peek_length};
use strata_log::{IoBackend, Partition};

const FETCH_BYTES: usize = 1 << 20;
const BATCHES: usize = 1024;

#[derive(Clone, Copy)]
enum Depth {
    Fetch,
    Crc,
    Records,
}

/// Reads the whole log; returns the records seen (or value bytes, for `Records`).
fn read_all(log: &Partition, depth: Depth, scratch: &mut Vec<u8>) -> u64 {
    let end = log.high_watermark();
    let mut offset = 0u64;
    let mut seen = 0u64;
    while offset < end {
        let fetch = log.read(offset, FETCH_BYTES).expect("read");
        let bytes = &fetch.bytes[..];
        match depth {
            Depth::Fetch => {
                let mut pos = 0;
                while pos < bytes.len() {
                    let h = BatchHeader::parse(&bytes[pos..]).expect("header");
                    offset = h.next_offset();
                    seen += u64::from(h.record_count);
                    pos += peek_length(&bytes[pos..]).expect("length") as usize;
                }
            }
            Depth::Crc | Depth::Records => {
                for batch in BatchIter::new(bytes) {
                    let batch = batch.expect("valid batch");
                    offset = batch.header().next_offset();
                    if let Depth::Records = depth {
                        for record in batch.records(scratch).expect("records") {
                            let record = record.expect("record");
                            seen += record.value.map_or(0, <[u8]>::len) as u64;
                        }
                    } else {
                        seen += u64::from(batch.header().record_count);
                    }
                }
            }
        }
    }
    seen
}

fn read(c: &mut Criterion) {
    for (record_len, compression) in [
        (100, Compression::None),
        (1024, Compression::None),
        (100, Compression::Lz4),
        (1024, Compression::Lz4),
    ] {
        let w = Workload::new(record_len, BATCH_BYTES, BATCHES, compression);
        let (_dir, mut log) =
            open_ours(strata_log::Durability::Written, IoBackend::Uring).expect("open");
        ours_pipelined(&mut log, w.copies(), 64).expect("fill");
        assert_eq!(log.high_watermark(), w.records);
        let codec = match compression {
            Compression::None => "",
            Compression::Lz4 => "-lz4",
        };
        let size = if record_len == 1024 { "1KiB" } else { "100B" };
        let mut group = c.benchmark_group(format!("read/{size}{codec}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::ElementsAndBytes {
                elements: w.records,
                bytes: w.bytes,
            });
        let mut scratch = Vec::new();
        let depths: &[(&str, Depth)] = match compression {
            Compression::None => &[
                ("fetch", Depth::Fetch),
                ("fetch+crc", Depth::Crc),
                ("fetch+crc+records", Depth::Records),
            ],
            Compression::Lz4 => &[("fetch+crc+records", Depth::Records)],
        };
        for &(name, depth) in depths {
            let expected = match depth {
                Depth::Records => w.records * record_len as u64,
                _ => w.records,
            };
            assert_eq!(read_all(&log, depth, &mut scratch), expected, "{name}");
            group.bench_function(name, |b| {
                b.iter(|| black_box(read_all(&log, depth, &mut scratch)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, read);
criterion_main!(benches);
