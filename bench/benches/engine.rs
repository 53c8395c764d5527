//! Engine throughput against the single-partition log, in one run (criterion).
//!
//! 100-byte records in batches of 100, Written durability (`STRATA_BENCH_DURABILITY=fsync`
//! and `STRATA_BENCH_IO=uring|fallback` select others). Three producers of the same
//! pre-encoded batches, each keeping `WINDOW` batches in flight:
//!
//! * `log`: one `Partition`, `submit` + `wait` on the calling thread (the raw log path);
//! * `engine-1-shard`: an `Engine` with one shard and a two-partition topic, two producer
//!   threads (one per partition);
//! * `engine-2-shards`: the same with two shards, so each partition has its own core;
//! * `engine-{1,2}-shard-many8`: the same batches through `Engine::produce_many`, 8 per
//!   request and 2 requests in flight (16 batches, as above);
//! * `engine-{1,2}-shard-hosted`: the producers run on the shard threads themselves
//!   (through `EngineConfig::runner`, the way the QUIC server hosts its connections), each
//!   on the shard that owns its partition, so nothing crosses a thread;
//! * `log-2-threads`: two bare logs, one per thread, the same bytes: how far the machine
//!   itself scales two independent writers (the ceiling for `engine-2-shard*`).
//!
//! The producer threads are started once per case and reused by every iteration, so
//! thread creation is not counted against the engine; each iteration hands them fresh
//! copies of the batches, made outside the timed region.
//!
//! Fetch reads every record back (`Partition::read` vs `Engine::fetch`, whole batches,
//! headers checked), each partition 8 times per iteration: from reader threads
//! (`engine-*-shard`, one per partition) or from tasks on the owning shards
//! (`engine-*-shard-hosted`).
//!
//! Besides criterion's msgs/s, each produce case prints its msgs per CPU-second (process
//! CPU time, all threads and io_uring workers included, read once the other threads have
//! settled so a shard still running is not left out): the engine uses more threads
//! than the log, so `engine-1-shard / log` per CPU-second is its overhead per core, and
//! `engine-2-shards / engine-1-shard` in msgs/s is how it scales when the load is spread.
//! On a 2-core machine the producer threads share the cores with the shards.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::{Duration, Instant};
use strata_bench::engine_hosted::HostedEngine;
use strata_bench::engine_load::{
    BATCHES, PER_BATCH, PER_REQUEST, Producers, batches, durability, engine, io_backend, log_pair,
    partition_config, produce_engine, produce_log, record_count,
};
use strata_bench::settled_usage;
use strata_log::Partition;

/// Rounds of reading every partition in one fetch iteration.
const FETCH_ROUNDS: u64 = 8;

/// Accumulates wall and CPU time of one case and prints msgs per CPU-second at the end.
struct CpuMeter {
    name: &'static str,
    msgs: u64,
    cpu: Duration,
    wall: Duration,
}

impl CpuMeter {
    fn new(name: &'static str) -> Self {
        CpuMeter {
            name,
            msgs: 0,
            cpu: Duration::ZERO,
            wall: Duration::ZERO,
        }
    }

    /// Runs `f`, counting `msgs` messages, and returns its wall time.
    fn measure(&mut self, msgs: u64, f: impl FnOnce()) -> Duration {
        let (cpu0, _) = settled_usage();
        let t = Instant::now();
        f();
        let wall = t.elapsed();
        self.cpu += settled_usage().0.saturating_sub(cpu0);
        self.wall += wall;
        self.msgs += msgs;
        wall
    }
}

impl Drop for CpuMeter {
    fn drop(&mut self) {
        if self.msgs > 0 && !self.cpu.is_zero() {
            println!(
                "{}: {:.2} M msgs per CPU-second, {:.2} CPU cores busy on average",
                self.name,
                self.msgs as f64 / self.cpu.as_secs_f64() / 1e6,
                self.cpu.as_secs_f64() / self.wall.as_secs_f64()
            );
        }
    }
}

fn bench_produce(c: &mut Criterion) {
    let template = batches();
    let mut g = c.benchmark_group(format!(
        "engine_produce_100B_{:?}_{:?}",
        durability(),
        io_backend()
    ));
    g.sample_size(10)
        .measurement_time(Duration::from_secs(6))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements((BATCHES * PER_BATCH * 2) as u64));
    let msgs = (BATCHES * PER_BATCH * 2) as u64;
    // Every sample (one `iter_custom` call) starts from a fresh directory, removed after
    // it outside the timing: data stays bounded by one sample's iterations (~3 GB at
    // most here), instead of the ~20 GB a whole case writes, so the page cache (or a
    // tmpfs) holds it and writeback does not throttle the writers.
    let mut meter = CpuMeter::new("produce/log");
    g.bench_function(BenchmarkId::from_parameter("log"), |bch| {
        bch.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let mut p = Partition::open(dir.path(), partition_config()).unwrap();
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // The same two partitions' worth of records, on one thread.
                let (a, b) = (template.clone(), template.clone());
                total += meter.measure(msgs, || {
                    produce_log(&mut p, a);
                    produce_log(&mut p, b);
                });
            }
            total
        })
    });
    drop(meter);
    let mut meter = CpuMeter::new("produce/log-2-threads");
    g.bench_function(BenchmarkId::from_parameter("log-2-threads"), |bch| {
        bch.iter_custom(|iters| {
            let dir = tempfile::tempdir().unwrap();
            let [mut a, mut b] = log_pair(dir.path());
            std::thread::scope(|s| {
                let logs = Producers::logs(s, [&mut a, &mut b]);
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let inputs = [template.clone(), template.clone()];
                    total += meter.measure(msgs, || logs.round(inputs));
                }
                total
            })
        });
    });
    drop(meter);
    for (shards, name) in [
        (1usize, "produce/engine-1-shard-hosted"),
        (2, "produce/engine-2-shard-hosted"),
    ] {
        let mut meter = CpuMeter::new(name);
        let id = format!("engine-{shards}-shard-hosted");
        g.bench_function(BenchmarkId::from_parameter(id), |bch| {
            bch.iter_custom(|iters| {
                let dir = tempfile::tempdir().unwrap();
                let hosted = HostedEngine::open(dir.path(), shards);
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let inputs = [template.clone(), template.clone()];
                    total += meter.measure(msgs, || hosted.round(inputs));
                }
                hosted.shutdown();
                total
            });
        });
    }
    for (shards, many, name) in [
        (1usize, false, "produce/engine-1-shard"),
        (2, false, "produce/engine-2-shard"),
        (1, true, "produce/engine-1-shard-many8"),
        (2, true, "produce/engine-2-shard-many8"),
    ] {
        let mut meter = CpuMeter::new(name);
        let id = format!("engine-{shards}-shard{}", if many { "-many8" } else { "" });
        g.bench_function(BenchmarkId::from_parameter(id), |bch| {
            bch.iter_custom(|iters| {
                let dir = tempfile::tempdir().unwrap();
                let e = engine(dir.path(), shards);
                let total = std::thread::scope(|s| {
                    let producers = Producers::spawn(s, &e, if many { PER_REQUEST } else { 0 });
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let inputs = [template.clone(), template.clone()];
                        total += meter.measure(msgs, || producers.round(inputs));
                    }
                    total
                });
                e.shutdown().unwrap();
                total
            });
        });
    }
    g.finish();
}

fn bench_fetch(c: &mut Criterion) {
    let template = batches();
    let records = (BATCHES * PER_BATCH * 2) as u64;
    let mut g = c.benchmark_group("engine_fetch_100B");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(records * FETCH_ROUNDS));
    g.bench_function(BenchmarkId::from_parameter("log"), |bch| {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Partition::open(dir.path(), partition_config()).unwrap();
        produce_log(&mut p, template.clone());
        produce_log(&mut p, template.clone());
        bch.iter(|| {
            for _ in 0..FETCH_ROUNDS {
                let mut offset = 0;
                while offset < p.high_watermark() {
                    offset += record_count(&p.read(offset, 1 << 20).unwrap().bytes);
                }
                assert_eq!(offset, records);
            }
        })
    });
    for shards in [1usize, 2] {
        g.bench_function(
            BenchmarkId::from_parameter(format!("engine-{shards}-shard-hosted")),
            |bch| {
                let dir = tempfile::tempdir().unwrap();
                let hosted = HostedEngine::open(dir.path(), shards);
                hosted.round([template.clone(), template.clone()]);
                bch.iter(|| assert_eq!(hosted.read_rounds(FETCH_ROUNDS), records * FETCH_ROUNDS));
                hosted.shutdown();
            },
        );
    }
    for shards in [1usize, 2] {
        g.bench_function(
            BenchmarkId::from_parameter(format!("engine-{shards}-shard")),
            |bch| {
                let dir = tempfile::tempdir().unwrap();
                let e = engine(dir.path(), shards);
                for partition in 0..2 {
                    produce_engine(&e, partition, template.clone());
                }
                bch.iter(|| {
                    std::thread::scope(|s| {
                        for partition in 0..2u32 {
                            let e = &e;
                            s.spawn(move || {
                                for _ in 0..FETCH_ROUNDS {
                                    let mut offset = 0;
                                    while offset < records / 2 {
                                        let f = e
                                            .fetch("bench", partition, offset, 1 << 20, None)
                                            .unwrap()
                                            .wait()
                                            .unwrap();
                                        offset += record_count(&f.bytes);
                                    }
                                    assert_eq!(offset, records / 2);
                                }
                            });
                        }
                    });
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench_produce, bench_fetch);
criterion_main!(benches);
