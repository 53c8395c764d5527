//! Batch encode and decode, CRC-32 and lz4 rates.
//!
//! On one ~64 KiB batch of 100 B or 1 KiB JSON-like records (see
//! [`strata_bench::payload`]):
//!
//! * `encode/*`: `BatchBuilder::push` of every record, then `finish` (uncompressed or lz4);
//! * `decode/*`: `BatchView::parse` (header checks and CRC) and decoding every record;
//! * `crc32/*`: `crc32fast::hash` over 4 KiB, 64 KiB and 1 MiB (in cache), and over 64 KiB
//!   batches read from DRAM;
//! * `lz4/*`: `lz4_flex` block compression and decompression of a batch's records section
//!   (the codec the builder and reader use).
//!
//! Throughput: records, and the batch's uncompressed bytes (header included) for
//! encode/decode, the input (uncompressed) bytes for lz4, the hashed bytes for CRC.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;
use strata_bench::{BASE_TIMESTAMP, BATCH_BYTES, Rng, Workload, payload};
use strata_log::format::{BatchBuilder, BatchView, BuilderOptions, Compression, HEADER_LEN};

fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    group
}

fn size_name(record_len: usize) -> &'static str {
    if record_len == 1024 { "1KiB" } else { "100B" }
}

fn encode_decode(c: &mut Criterion) {
    for record_len in [100, 1024] {
        // The same records the append benchmarks write, one batch's worth.
        let plain = Workload::new(record_len, BATCH_BYTES, 1, Compression::None);
        let n = plain.records_per_batch;
        let mut rng = Rng::new(0x5eed);
        let values: Vec<Vec<u8>> = (0..n as u64)
            .map(|seq| {
                let mut v = Vec::new();
                payload(seq, record_len, &mut rng, &mut v);
                v
            })
            .collect();
        let raw_len = plain.bytes;
        for compression in [Compression::None, Compression::Lz4] {
            let codec = match compression {
                Compression::None => "none",
                Compression::Lz4 => "lz4",
            };
            let mut builder = BatchBuilder::new(BuilderOptions {
                compression,
                max_batch_bytes: BATCH_BYTES,
                ..BuilderOptions::default()
            });
            let encode = |builder: &mut BatchBuilder| {
                for (i, v) in values.iter().enumerate() {
                    builder
                        .push(BASE_TIMESTAMP + i as i64, None, Some(v), &[])
                        .expect("fits");
                }
                builder.finish().expect("batch")
            };
            let batch = encode(&mut builder);
            eprintln!(
                "codec: {} records of {record_len} B: {raw_len} B uncompressed, {} B as {codec}",
                n,
                batch.len()
            );
            let mut group = configure(c, &format!("codec/{}", size_name(record_len)));
            group.throughput(Throughput::ElementsAndBytes {
                elements: n as u64,
                bytes: raw_len,
            });
            group.bench_function(format!("encode/{codec}"), |b| {
                b.iter(|| black_box(encode(&mut builder).len()))
            });
            let mut scratch = Vec::new();
            group.bench_function(format!("decode/{codec}"), |b| {
                b.iter(|| {
                    let view = BatchView::parse(black_box(&batch)).expect("valid");
                    let mut sum = 0usize;
                    for record in view.records(&mut scratch).expect("records") {
                        sum += record.expect("record").value.map_or(0, <[u8]>::len);
                    }
                    black_box(sum)
                })
            });
            group.finish();
        }

        // lz4 on the records section alone.
        let section = &plain.batches[0][HEADER_LEN..];
        let mut compressed = vec![0u8; lz4_flex::block::get_maximum_output_size(section.len())];
        let clen = lz4_flex::block::compress_into(section, &mut compressed).expect("fits");
        compressed.truncate(clen);
        let mut out = vec![0u8; lz4_flex::block::get_maximum_output_size(section.len())];
        let mut back = vec![0u8; section.len()];
        let mut group = configure(c, &format!("lz4/{}", size_name(record_len)));
        group.throughput(Throughput::Bytes(section.len() as u64));
        group.bench_function("compress", |b| {
            b.iter(|| lz4_flex::block::compress_into(black_box(section), &mut out).expect("fits"))
        });
        group.bench_function("decompress", |b| {
            b.iter(|| {
                lz4_flex::block::decompress_into(black_box(&compressed), &mut back).expect("valid")
            })
        });
        group.finish();
    }
}

fn crc(c: &mut Criterion) {
    const COLD: usize = 256 << 20;
    let mut rng = Rng::new(7);
    let data: Vec<u8> = (0..COLD).map(|_| rng.next_u64() as u8).collect();
    let mut group = configure(c, "crc32");
    for (name, len) in [("4KiB", 4 << 10), ("64KiB", 64 << 10), ("1MiB", 1 << 20)] {
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(name, |b| {
            b.iter(|| crc32fast::hash(black_box(&data[..len])))
        });
    }
    // 64 KiB batches spread over 256 MiB, eight times the L3 cache: each hash reads its
    // batch from DRAM, as `Partition::submit` does for batches not touched just before.
    group.throughput(Throughput::Bytes(64 << 10));
    let mut at = 0;
    group.bench_function("64KiB-from-dram", |b| {
        b.iter(|| {
            at = (at + (64 << 10)) % COLD;
            crc32fast::hash(black_box(&data[at..at + (64 << 10)]))
        })
    });
    group.finish();
}

criterion_group!(benches, encode_decode, crc);
criterion_main!(benches);
