//! Append throughput, ours against the raw baseline on the same bytes.
//!
//! For every case of [`strata_bench::append_cases`] ({Written, Fsync} x {100 B, 1 KiB
//! records} x {sync-each, pipelined}):
//!
//! * `strata-io_uring`, `strata-pwritev`: the pre-encoded 64 KiB batches appended to a
//!   fresh partition (`append` per batch, or `submit` with 64 batches in flight), with
//!   the io_uring write path and with the pwritev fallback;
//! * `raw`: the same bytes written to a fresh preallocated file with `pwrite` per batch
//!   (+ `fdatasync` per batch for Fsync), or, pipelined, `pwritev` of 64 batches at a time
//!   (+ one `fdatasync` per 64 batches);
//! * `raw-replay` (pipelined only): `pwritev` (+ `fdatasync`) of the very groups of
//!   batches ours' write jobs carried in a run made beforehand.
//!
//! Only the writes are timed: opening the partition or creating the file, copying the
//! batches (`submit` consumes them) and deleting the files happen outside the clock.
//! Criterion reports msgs/s and bytes/s; `append_ratio` prints the ours/raw ratios.

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use std::time::Duration;
use strata_bench::{BACKENDS, Mode, RawGroups, append_cases};
use strata_log::IoBackend;

fn append(c: &mut Criterion) {
    for case in append_cases() {
        let w = case.workload();
        let replay = case
            .run_ours(&w, IoBackend::Uring, false)
            .expect("ours")
            .groups;
        let mut group = c.benchmark_group(format!("append/{}", case.name()));
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1500))
            .throughput(Throughput::ElementsAndBytes {
                elements: w.records,
                bytes: w.bytes,
            });
        for (backend, name) in BACKENDS {
            group.bench_function(format!("strata-{name}"), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| case.run_ours(&w, backend, false).expect("ours").elapsed)
                        .sum()
                })
            });
        }
        let mut raws = vec![("raw", RawGroups::Window)];
        if case.mode == Mode::Pipelined {
            raws.push(("raw-replay", RawGroups::Replay(&replay)));
        }
        for (name, groups) in raws {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| case.run_raw(&w, groups, false).expect("raw").elapsed)
                        .sum()
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, append);
criterion_main!(benches);
