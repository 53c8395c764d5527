//! Appends a million 100-byte records in batches, reads them back, and prints the rates.
//!
//! `cargo run --release -p strata-log --example append_read -- [records] [durability]`
//! where durability is `none`, `written` (default) or `fsync`.

use std::time::Instant;
use strata_log::format::{BatchBuilder, BatchIter, BuilderOptions};
use strata_log::{Durability, Partition, PartitionConfig};

const RECORD_LEN: usize = 100;
const RECORDS_PER_BATCH: usize = 1000;
const IN_FLIGHT: u64 = 64;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let durability = match args.next().as_deref() {
        None | Some("written") => Durability::Written,
        Some("none") => Durability::None,
        Some("fsync") => Durability::Fsync,
        Some(other) => return Err(format!("unknown durability {other:?}").into()),
    };
    let dir = tempfile::tempdir()?;
    let config = PartitionConfig {
        durability,
        segment_bytes: 256 << 20,
        ..PartitionConfig::default()
    };
    let mut log = Partition::open(dir.path(), config)?;
    println!(
        "data dir {} (write path: {:?})",
        dir.path().display(),
        log.backend()
    );

    let value = vec![b'x'; RECORD_LEN];
    let mut builder = BatchBuilder::new(BuilderOptions::default());
    let started = Instant::now();
    let mut written = 0usize;
    let mut bytes = 0u64;
    while written < total {
        let n = RECORDS_PER_BATCH.min(total - written);
        for i in 0..n {
            builder.push((written + i) as i64, None, Some(&value), &[])?;
        }
        let batch = builder.finish()?;
        bytes += batch.len() as u64;
        let appended = log.submit(batch)?;
        written += n;
        // Bound the batches in flight: wait while the oldest unacknowledged is too far back.
        while log.high_watermark() + IN_FLIGHT * RECORDS_PER_BATCH as u64 <= appended.last_offset {
            log.wait()?;
        }
    }
    log.flush()?;
    let write_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut offset = 0u64;
    let mut read = 0usize;
    let mut scratch = Vec::new();
    while offset < log.high_watermark() {
        let fetch = log.read(offset, 1 << 20)?;
        for batch in BatchIter::new(&fetch.bytes) {
            let batch = batch?;
            for record in batch.records(&mut scratch)? {
                let record = record?;
                assert_eq!(record.offset, offset, "records come back in order");
                assert_eq!(record.value.map(<[u8]>::len), Some(RECORD_LEN));
                offset += 1;
                read += 1;
            }
        }
    }
    let read_secs = started.elapsed().as_secs_f64();
    assert_eq!(read, total, "every record reads back");
    log.close()?;

    let mb = bytes as f64 / 1e6;
    println!(
        "append ({durability:?}): {total} records, {:.0} msgs/s, {:.1} MB/s",
        total as f64 / write_secs,
        mb / write_secs
    );
    println!(
        "read (CRC-checked, decoded): {read} records, {:.0} msgs/s, {:.1} MB/s",
        read as f64 / read_secs,
        mb / read_secs
    );
    Ok(())
}
