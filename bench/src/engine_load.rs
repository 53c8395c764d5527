//! The engine benchmark's workload, shared by `benches/engine.rs` and
//! `examples/engine_probe.rs`: 100-byte records in batches of 100, two partitions, each
//! producer keeping [`WINDOW`] batches in flight, against the bare log or the engine.
//!
//! Each iteration hands every producer [`BATCHES`] batches and waits for all of them, so
//! a producer that finishes first idles until the others do (a segment roll, ~ms on the
//! machine's ext4, stalls one of them). Until 2026-12-01 an iteration was 400 batches,
//! and two bare logs on two threads reached only 1.50-1.54x one (1.78-1.82x at 1600).

use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::mpsc;
use std::thread::Scope;
use strata_log::format::{BatchBuilder, BatchIter, BuilderOptions};
use strata_log::{
    Durability, Engine, EngineConfig, IoBackend, Partition, PartitionConfig, TopicConfig,
};

/// Bytes per record value.
pub const RECORD: usize = 100;
/// Records per batch.
pub const PER_BATCH: usize = 100;
/// Batches per producer per iteration (160 000 records, 16 MB): long enough that the
/// barrier ending each iteration (every producer must finish) costs little against it.
pub const BATCHES: usize = 1600;
/// Batches each producer keeps in flight.
pub const WINDOW: usize = 16;
/// Batches per `produce_many` request in the `-many8` cases.
pub const PER_REQUEST: usize = 8;
/// Segment size of the partitions under test.
pub const SEGMENT: u64 = 64 << 20;

/// One producer's batches for one iteration ([`BATCHES`] of them), encoded once.
pub fn batches() -> Vec<BytesMut> {
    batches_n(BATCHES)
}

/// `n` batches for one producer's iteration, encoded once.
pub fn batches_n(n: usize) -> Vec<BytesMut> {
    let mut b = BatchBuilder::new(BuilderOptions::default());
    let value = [0x5Au8; RECORD];
    (0..n)
        .map(|i| {
            for r in 0..PER_BATCH {
                b.push((i * PER_BATCH + r) as i64, None, Some(&value), &[])
                    .unwrap();
            }
            b.finish().unwrap()
        })
        .collect()
}

/// Records in whole batches `bytes` (headers only; fetches return whole batches).
pub fn record_count(bytes: &[u8]) -> u64 {
    BatchIter::new(bytes)
        .map(|b| u64::from(b.expect("valid batch").header().record_count))
        .sum()
}

/// Durability under test: `STRATA_BENCH_DURABILITY=fsync` (default `written`).
pub fn durability() -> Durability {
    match std::env::var("STRATA_BENCH_DURABILITY").as_deref() {
        Ok("fsync") => Durability::Fsync,
        Ok("none") => Durability::None,
        _ => Durability::Written,
    }
}

/// Write path under test: `STRATA_BENCH_IO=uring|fallback` (default `auto`).
pub fn io_backend() -> IoBackend {
    match std::env::var("STRATA_BENCH_IO").as_deref() {
        Ok("uring") => IoBackend::Uring,
        Ok("fallback") => IoBackend::Fallback,
        _ => IoBackend::Auto,
    }
}

/// The partition configuration under test (durability and write path from the environment).
pub fn partition_config() -> PartitionConfig {
    PartitionConfig {
        segment_bytes: SEGMENT,
        durability: durability(),
        retention_age: None,
        io_backend: io_backend(),
        ..PartitionConfig::default()
    }
}

/// An engine in `dir` with `shards` shards and the two-partition topic `bench`.
pub fn engine(dir: &std::path::Path, shards: usize) -> Engine {
    let e = Engine::open(engine_config(dir, shards)).unwrap();
    create_topic(&e);
    e
}

/// The engine configuration under test, rooted at `dir`.
pub fn engine_config(dir: &std::path::Path, shards: usize) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.shards = shards;
    c.partition_defaults = partition_config();
    c
}

/// Creates the two-partition topic `bench`.
pub fn create_topic(e: &Engine) {
    let topic = TopicConfig {
        partitions: 2,
        segment_bytes: SEGMENT,
        retention_ms: None,
        durability: durability(),
        ..TopicConfig::default()
    };
    e.create_topic("bench", topic).unwrap();
}

/// Two bare logs under `dir`, for [`Producers::logs`].
pub fn log_pair(dir: &std::path::Path) -> [Partition; 2] {
    ["a", "b"].map(|name| Partition::open(dir.join(name), partition_config()).unwrap())
}

/// Produces `batches` to one partition with `WINDOW` requests in flight.
pub fn produce_engine(e: &Engine, partition: u32, batches: Vec<BytesMut>) {
    let mut inflight = VecDeque::with_capacity(WINDOW);
    for b in batches {
        if inflight.len() == WINDOW {
            let p: strata_log::Pending<_> = inflight.pop_front().unwrap();
            p.wait().unwrap();
        }
        inflight.push_back(e.produce("bench", partition, b).unwrap());
    }
    for p in inflight {
        p.wait().unwrap();
    }
}

/// Produces `batches` to one partition, `per_request` per request, `WINDOW` batches in
/// flight.
pub fn produce_engine_many(e: &Engine, partition: u32, batches: Vec<BytesMut>, per_request: usize) {
    let per_request = per_request.clamp(1, WINDOW);
    type Many = strata_log::Pending<Vec<strata_log::Result<strata_log::Appended>>>;
    let mut inflight: VecDeque<Many> = VecDeque::with_capacity(WINDOW / per_request);
    let mut batches = batches.into_iter();
    loop {
        let request: Vec<BytesMut> = batches.by_ref().take(per_request).collect();
        if request.is_empty() {
            break;
        }
        if inflight.len() == WINDOW / per_request {
            for r in inflight.pop_front().unwrap().wait().unwrap() {
                r.unwrap();
            }
        }
        inflight.push_back(e.produce_many("bench", partition, request).unwrap());
    }
    for p in inflight {
        for r in p.wait().unwrap() {
            r.unwrap();
        }
    }
}

/// Appends `batches` to one partition on this thread with `WINDOW` batches in flight.
pub fn produce_log(p: &mut Partition, batches: Vec<BytesMut>) {
    let mut last = VecDeque::with_capacity(WINDOW);
    for b in batches {
        if last.len() == WINDOW {
            let wanted: u64 = last.pop_front().unwrap();
            while p.high_watermark() <= wanted {
                p.wait().unwrap();
            }
        }
        last.push_back(p.submit(b).unwrap().last_offset);
    }
    p.flush().unwrap();
}

/// Long-lived producer threads, one per partition, each fed one iteration's batches at a
/// time (so thread start-up stays out of the measurement).
pub struct Producers {
    work: Vec<mpsc::Sender<Vec<BytesMut>>>,
    done: mpsc::Receiver<()>,
}

impl Producers {
    /// Starts a thread in `scope` for each of the `bench` topic's two partitions;
    /// `per_request` 0 sends one batch per `produce`, more sends that many per
    /// `produce_many`.
    pub fn spawn<'scope>(
        scope: &'scope Scope<'scope, '_>,
        e: &'scope Engine,
        per_request: usize,
    ) -> Self {
        let each = |partition: u32| {
            move |batches: Vec<BytesMut>| {
                if per_request == 0 {
                    produce_engine(e, partition, batches);
                } else {
                    produce_engine_many(e, partition, batches, per_request);
                }
            }
        };
        Self::spawn_with(scope, [each(0), each(1)], false)
    }

    /// Starts a thread in `scope` for each of two bare logs, pinned to cores 0 and 1 as
    /// the engine's shards are, each appending on its own thread: how far the machine
    /// itself scales two independent writers of the same bytes.
    pub fn logs<'scope>(
        scope: &'scope Scope<'scope, '_>,
        logs: [&'scope mut Partition; 2],
    ) -> Self {
        Self::spawn_with(
            scope,
            logs.map(|p| move |batches| produce_log(p, batches)),
            true,
        )
    }

    /// Starts one thread per producer in `scope` (thread `i` pinned to core `i` if `pin`);
    /// round input `i` goes to producer `i`.
    pub fn spawn_with<'scope, F>(
        scope: &'scope Scope<'scope, '_>,
        producers: [F; 2],
        pin: bool,
    ) -> Self
    where
        F: FnMut(Vec<BytesMut>) + Send + 'scope,
    {
        let (done_tx, done) = mpsc::channel::<()>();
        let mut work = Vec::new();
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        for (i, mut produce) in producers.into_iter().enumerate() {
            let (tx, rx) = mpsc::channel::<Vec<BytesMut>>();
            work.push(tx);
            let done_tx = done_tx.clone();
            let core = pin.then(|| cores.get(i).copied()).flatten();
            scope.spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                for batches in rx {
                    produce(batches);
                    // The receiver outlives every round it waits for.
                    let _ = done_tx.send(());
                }
            });
        }
        Producers { work, done }
    }

    /// Hands one set of batches to each thread and waits until all are durable.
    pub fn round(&self, inputs: [Vec<BytesMut>; 2]) {
        for (tx, batches) in self.work.iter().zip(inputs) {
            tx.send(batches).expect("producer thread alive");
        }
        for _ in 0..self.work.len() {
            self.done.recv().expect("producer thread alive");
        }
    }
}
