//! Functional and property tests of `strata_log::Partition`: random append workloads
//! (append, submit + poll / wait / flush, explicit rolls) on both write paths and every
//! durability level, read back from the start and from random offsets with random fetch
//! sizes, across segment rolls, a close or an unclean drop, and a reopen; retention by
//! size and by age; time lookups; the edges of `read`; the directory lock; and the
//! rejection of invalid batches and configurations.

mod support_props;

use bytes::BytesMut;
use proptest::prelude::*;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use strata_log::config::{MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
use strata_log::format::{BuilderOptions, Compression, MAX_BATCH_LEN};
use strata_log::{
    ActiveBackend, Durability, Error, FormatError, IoBackend, Partition, PartitionConfig,
};
use support_props::{
    BACKENDS, BASE_TS, Decoded, Rec, Rng, SEGMENT_BYTES, config, decode, encode, open, opts,
};

// ---------------------------------------------------------------------------------------
// The model: what was appended, and checks of a partition against it.

/// Everything appended to one partition, by offset.
#[derive(Debug, Default)]
struct Model {
    /// The record at each offset.
    records: Vec<Rec>,
    /// (base offset, next offset, encoded length) of each batch, in order.
    batches: Vec<(u64, u64, usize)>,
}

impl Model {
    fn next(&self) -> u64 {
        self.records.len() as u64
    }

    /// Records `records` as the batch of `len` bytes at the next offset.
    fn push(&mut self, records: Vec<Rec>, len: usize) {
        let base = self.next();
        self.records.extend(records);
        self.batches.push((base, self.next(), len));
    }

    /// True when `offset` is the start of the log or lies between two batches.
    fn is_batch_boundary(&self, offset: u64) -> bool {
        offset == 0 || self.batches.iter().any(|b| b.1 == offset)
    }

    /// First offset in `from..` whose timestamp is at or after `ts`.
    fn first_at_or_after(&self, from: u64, ts: i64) -> Option<u64> {
        (from..self.next()).find(|&o| self.records[o as usize].ts >= ts)
    }
}

/// Asserts that the decoded `batches` are contiguous whole batches whose records match
/// the model.
fn check_batches(model: &Model, batches: &[Decoded], ctx: &str) {
    let mut expect_base = batches[0].base;
    assert!(
        model.is_batch_boundary(expect_base),
        "{ctx}: fetch starts at {expect_base}, not a batch boundary"
    );
    for b in batches {
        assert_eq!(b.base, expect_base, "{ctx}: batches are contiguous");
        assert!(
            model
                .batches
                .iter()
                .any(|m| (m.0, m.1, m.2) == (b.base, b.next, b.len)),
            "{ctx}: batch [{}, {}) of {} bytes is not one that was appended",
            b.base,
            b.next,
            b.len
        );
        for (o, r) in &b.records {
            assert_eq!(
                r, &model.records[*o as usize],
                "{ctx}: record at offset {o} differs"
            );
        }
        expect_base = b.next;
    }
}

/// Reads `offset` with `max_bytes`, checks the fetch against the model and returns its
/// batches.
fn read_checked(
    p: &Partition,
    model: &Model,
    offset: u64,
    max_bytes: usize,
    ctx: &str,
) -> Vec<Decoded> {
    let fetch = p
        .read(offset, max_bytes)
        .unwrap_or_else(|e| panic!("{ctx}: read({offset}, {max_bytes}): {e}"));
    assert_eq!(fetch.high_watermark, p.high_watermark(), "{ctx}");
    assert_eq!(fetch.log_start_offset, p.log_start_offset(), "{ctx}");
    let batches = decode(&fetch.bytes, ctx);
    assert!(
        !batches.is_empty(),
        "{ctx}: read({offset}) below the high watermark is empty"
    );
    let first = &batches[0];
    assert!(
        first.base <= offset && offset < first.next,
        "{ctx}: read({offset}) starts with batch [{}, {})",
        first.base,
        first.next
    );
    assert!(
        fetch.bytes.len() <= max_bytes.max(first.len),
        "{ctx}: read({offset}, {max_bytes}) returned {} bytes in {} batches",
        fetch.bytes.len(),
        batches.len()
    );
    let last = batches.last().unwrap();
    assert!(
        last.next <= p.high_watermark(),
        "{ctx}: read past the high watermark"
    );
    check_batches(model, &batches, ctx);
    batches
}

/// A fetch size: tiny (one batch), medium, or large.
fn pick_max_bytes(rng: &mut Rng) -> usize {
    match rng.below(6) {
        0 => 0,
        1 => rng.below(200) as usize,
        2 => rng.between(1_000, 70_000) as usize,
        3 => rng.between(70_000, 400_000) as usize,
        4 => 1 << 20,
        _ => usize::MAX,
    }
}

/// Checks everything a reader can observe against the model: offsets, segments, reads
/// of the whole log in random fetch sizes, reads at random offsets, the edges of the
/// readable range and time lookups.
fn verify(p: &Partition, model: &Model, log_start: u64, rng: &mut Rng, ctx: &str) {
    let hw = p.high_watermark();
    assert_eq!(hw, model.next(), "{ctx}: high watermark");
    assert_eq!(p.next_offset(), hw, "{ctx}: nothing pending");
    assert_eq!(p.log_start_offset(), log_start, "{ctx}: log start");

    // Segments tile [log_start, hw), none larger than the segment size, each knowing the
    // newest timestamp it holds.
    let segments = p.segments();
    assert_eq!(segments[0].base_offset, log_start, "{ctx}");
    assert_eq!(segments.last().unwrap().next_offset, hw, "{ctx}");
    assert!(
        !segments.last().unwrap().sealed,
        "{ctx}: the last segment is active"
    );
    let mut size = 0;
    for (i, s) in segments.iter().enumerate() {
        if i + 1 < segments.len() {
            assert!(s.sealed, "{ctx}: segment {i} is sealed");
            assert_eq!(
                s.next_offset,
                segments[i + 1].base_offset,
                "{ctx}: segments are contiguous"
            );
        }
        assert!(
            s.size <= SEGMENT_BYTES,
            "{ctx}: segment {} holds {} bytes",
            s.base_offset,
            s.size
        );
        let want_max = (s.base_offset..s.next_offset)
            .map(|o| model.records[o as usize].ts)
            .max();
        assert_eq!(
            s.max_timestamp, want_max,
            "{ctx}: newest timestamp of segment [{}, {})",
            s.base_offset, s.next_offset
        );
        size += s.size;
    }
    assert_eq!(p.size_bytes(), size, "{ctx}: size_bytes");

    // The edges of the readable range.
    let at_hw = p.read(hw, 1 << 20).unwrap();
    assert!(
        at_hw.bytes.is_empty(),
        "{ctx}: read at the high watermark is empty"
    );
    assert_eq!(at_hw.high_watermark, hw);
    match p.read(hw + 1, 1 << 20) {
        Err(Error::OffsetOutOfRange {
            requested,
            log_start: ls,
            high_watermark,
        }) => assert_eq!(
            (requested, ls, high_watermark),
            (hw + 1, log_start, hw),
            "{ctx}"
        ),
        other => panic!("{ctx}: read past the high watermark gave {other:?}"),
    }
    if log_start > 0 {
        assert!(
            matches!(
                p.read(log_start - 1, 1 << 20),
                Err(Error::OffsetOutOfRange { .. })
            ),
            "{ctx}: read below the log start"
        );
    }

    // The whole log, front to back: every record exactly once, in order.
    let mut offset = log_start;
    while offset < hw {
        let max_bytes = pick_max_bytes(rng);
        let batches = read_checked(p, model, offset, max_bytes, ctx);
        assert_eq!(
            batches[0].base, offset,
            "{ctx}: sequential read starts at a batch"
        );
        offset = batches.last().unwrap().next;
    }
    assert_eq!(offset, hw, "{ctx}");

    // Random offsets.
    if hw > log_start {
        for _ in 0..12 {
            let o = rng.between(log_start, hw - 1);
            let max_bytes = pick_max_bytes(rng);
            read_checked(p, model, o, max_bytes, ctx);
        }
    }

    // Time lookups against a brute-force scan of the model.
    let mut targets = vec![i64::MIN, i64::MAX];
    if hw > log_start {
        let retained = &model.records[log_start as usize..];
        let min = retained.iter().map(|r| r.ts).min().unwrap();
        let max = retained.iter().map(|r| r.ts).max().unwrap();
        targets.extend([min - 1, min, max - 1, max, max + 1]);
        for _ in 0..16 {
            let ts = retained[rng.below(retained.len() as u64) as usize].ts;
            targets.extend([ts - 1, ts, ts + 1]);
        }
    }
    for t in targets {
        let got = p
            .offset_for_timestamp(t)
            .unwrap_or_else(|e| panic!("{ctx}: offset_for_timestamp({t}): {e}"));
        assert_eq!(
            got,
            model.first_at_or_after(log_start, t),
            "{ctx}: offset_for_timestamp({t})"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Batches.

/// Parameters of one random batch.
#[derive(Debug, Clone, Copy)]
struct Spec {
    records: usize,
    max_value: usize,
    lz4: bool,
    seed: u64,
}

/// Makes the batch `spec` describes. Timestamps follow `clock` (advanced), jittered so
/// that they are out of order inside batches, and now and then a whole batch is late.
fn make_batch(spec: Spec, clock: &mut i64) -> (BytesMut, Vec<Rec>) {
    let mut rng = Rng::new(spec.seed);
    let late = if rng.one_in(6) { 10_000_000 } else { 0 };
    let records: Vec<Rec> = (0..spec.records)
        .map(|_| {
            *clock += rng.below(1_000) as i64;
            let ts = *clock - late + rng.below(3_000) as i64 - 1_500;
            rng.record(ts, spec.max_value)
        })
        .collect();
    let compression = if spec.lz4 {
        Compression::Lz4
    } else {
        Compression::None
    };
    (encode(&records, opts(compression)), records)
}

/// A batch of exactly `len` bytes holding one record with timestamp `ts`.
fn batch_of_len(ts: i64, len: usize) -> (BytesMut, Rec) {
    let mut value_len = len.saturating_sub(64);
    loop {
        let rec = Rec {
            ts,
            key: None,
            value: Some(vec![0xA5; value_len]),
            headers: Vec::new(),
        };
        let options = BuilderOptions {
            max_batch_bytes: MAX_BATCH_LEN,
            ..BuilderOptions::default()
        };
        let batch = encode(std::slice::from_ref(&rec), options);
        match batch.len().cmp(&len) {
            std::cmp::Ordering::Equal => return (batch, rec),
            std::cmp::Ordering::Less => value_len += 1,
            std::cmp::Ordering::Greater => value_len -= 1,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The harness: a partition, its model, and the operations of a workload.

#[derive(Debug, Clone)]
enum Op {
    Append(Spec),
    Submit(Spec),
    Poll,
    Wait,
    Flush,
    Roll,
}

struct Harness {
    p: Partition,
    model: Model,
    clock: i64,
    durability: Durability,
    /// High watermark seen last (it never goes back).
    hw: u64,
}

impl Harness {
    fn new(p: Partition, durability: Durability) -> Self {
        Harness {
            p,
            model: Model::default(),
            clock: BASE_TS,
            durability,
            hw: 0,
        }
    }

    fn accept(&mut self, spec: Spec, wait: bool, ctx: &str) {
        let (batch, records) = make_batch(spec, &mut self.clock);
        let len = batch.len();
        let n = records.len() as u64;
        let base = self.model.next();
        assert_eq!(
            self.p.next_offset(),
            base,
            "{ctx}: next offset before the append"
        );
        let appended = if wait {
            self.p.append(batch)
        } else {
            self.p.submit(batch)
        }
        .unwrap_or_else(|e| panic!("{ctx}: appending {n} records at {base}: {e}"));
        assert_eq!(appended.base_offset, base, "{ctx}: assigned base offset");
        assert_eq!(
            appended.last_offset,
            base + n - 1,
            "{ctx}: assigned last offset"
        );
        assert_eq!(self.p.next_offset(), base + n, "{ctx}");
        self.model.push(records, len);
        if wait && self.durability != Durability::None {
            assert!(
                self.p.high_watermark() > appended.last_offset,
                "{ctx}: append returned before the batch was readable"
            );
        }
    }

    fn apply(&mut self, op: &Op, ctx: &str) {
        match *op {
            Op::Append(spec) => self.accept(spec, true, ctx),
            Op::Submit(spec) => self.accept(spec, false, ctx),
            Op::Poll => {
                let hw = self.p.poll().unwrap();
                assert_eq!(hw, self.p.high_watermark(), "{ctx}");
            }
            Op::Wait => {
                let hw = self.p.wait().unwrap();
                assert_eq!(hw, self.p.high_watermark(), "{ctx}");
            }
            Op::Flush => {
                let hw = self.p.flush().unwrap();
                assert_eq!(
                    hw,
                    self.model.next(),
                    "{ctx}: flush makes everything durable"
                );
                assert_eq!(self.p.unflushed_bytes(), 0, "{ctx}");
                assert!(!self.p.is_writing(), "{ctx}");
            }
            Op::Roll => {
                let before = self.p.segments().len();
                let had_data = self.p.next_offset() > self.p.segments().last().unwrap().base_offset;
                self.p.roll().unwrap();
                assert_eq!(
                    self.p.high_watermark(),
                    self.model.next(),
                    "{ctx}: roll flushes"
                );
                let segments = self.p.segments();
                assert_eq!(
                    segments.len(),
                    before + usize::from(had_data),
                    "{ctx}: roll"
                );
                let active = segments.last().unwrap();
                assert_eq!(
                    (active.base_offset, active.size),
                    (self.model.next(), 0),
                    "{ctx}"
                );
            }
        }
        let hw = self.p.high_watermark();
        assert!(
            hw >= self.hw,
            "{ctx}: high watermark went back from {} to {hw}",
            self.hw
        );
        assert!(
            hw <= self.p.next_offset(),
            "{ctx}: high watermark passed the next offset"
        );
        assert!(
            self.model.is_batch_boundary(hw),
            "{ctx}: high watermark {hw} inside a batch"
        );
        self.hw = hw;
    }
}

fn arb_spec() -> impl Strategy<Value = Spec> {
    (
        1usize..=40,
        prop_oneof![1 => 0usize..=64, 3 => 0usize..=8_000],
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(records, max_value, lz4, seed)| Spec {
            records,
            max_value,
            lz4,
            seed,
        })
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => arb_spec().prop_map(Op::Append),
        6 => arb_spec().prop_map(Op::Submit),
        2 => Just(Op::Poll),
        1 => Just(Op::Wait),
        1 => Just(Op::Flush),
        1 => Just(Op::Roll),
    ]
}

fn arb_backend() -> impl Strategy<Value = IoBackend> {
    prop::sample::select(BACKENDS.to_vec())
}

fn arb_durability() -> impl Strategy<Value = Durability> {
    prop::sample::select(vec![
        Durability::None,
        Durability::Written,
        Durability::Fsync,
    ])
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random workloads come back record for record, before and after a reopen, and
    /// appends after the reopen continue the offsets.
    #[test]
    fn random_workloads_read_back_across_rolls_and_reopen(
        ops in prop::collection::vec(arb_op(), 20..100),
        more in prop::collection::vec(arb_spec(), 1..6),
        backend in arb_backend(),
        reopen_backend in arb_backend(),
        durability in arb_durability(),
        interval in prop::sample::select(vec![64u32, 1024, 4096, 65_536]),
        preallocate in any::<bool>(),
        small_pending in any::<bool>(),
        clean in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(backend, durability);
        cfg.index_interval_bytes = interval;
        cfg.preallocate = preallocate;
        if small_pending {
            // `submit` must then wait for earlier writes now and then.
            cfg.max_pending_bytes = cfg.max_batch_bytes as usize;
        }
        let mut rng = Rng::new(seed);
        let p = open(dir.path(), cfg.clone(), "first open");
        prop_assert_eq!(
            p.backend(),
            if backend == IoBackend::Uring { ActiveBackend::Uring } else { ActiveBackend::Fallback }
        );
        let mut h = Harness::new(p, durability);
        for (i, op) in ops.iter().enumerate() {
            h.apply(op, &format!("op {i} {op:?}"));
        }
        h.apply(&Op::Flush, "final flush");
        let written: u64 = h.model.batches.iter().map(|b| b.2 as u64).sum();
        prop_assert_eq!(h.p.size_bytes(), written);
        let rolls = ops.iter().filter(|o| matches!(o, Op::Roll)).count();
        if written > SEGMENT_BYTES && rolls == 0 {
            prop_assert!(h.p.segments().len() > 1, "{} bytes fit in one segment", written);
        }
        verify(&h.p, &h.model, 0, &mut rng, "before reopen");

        let segments = h.p.segments();
        let Harness { p, model, clock, .. } = h;
        if clean {
            p.close().unwrap();
        } else {
            drop(p);
        }
        cfg.io_backend = reopen_backend;
        let p = open(dir.path(), cfg.clone(), "reopen");
        let report = p.open_report().clone();
        prop_assert_eq!(report.clean_shutdown, clean);
        prop_assert_eq!(report.rebuilt_active_index, !clean);
        prop_assert_eq!(report.truncated_because, None);
        prop_assert_eq!(report.segments, segments.len());
        prop_assert_eq!(p.segments(), segments);
        verify(&p, &model, 0, &mut rng, "after reopen");

        let mut h = Harness { p, model, clock, durability, hw: 0 };
        h.hw = h.p.high_watermark();
        for (i, spec) in more.iter().enumerate() {
            let op = if i % 2 == 0 { Op::Append(*spec) } else { Op::Submit(*spec) };
            h.apply(&op, &format!("after reopen, op {i}"));
        }
        h.apply(&Op::Flush, "flush after reopen");
        verify(&h.p, &h.model, 0, &mut rng, "after appending past the reopen");
        h.p.close().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Many batches smaller than the index interval, whose newest timestamp now grows
    /// and now stalls: time lookups and each segment's newest timestamp are the same
    /// before and after clean closes (indexes loaded from disk) and unclean drops
    /// (indexes rebuilt).
    #[test]
    fn time_index_survives_reopens(
        batches in prop::collection::vec(
            (1usize..=2, 0usize..=600, 0u8..60, prop::bool::weighted(0.15)),
            30..200,
        ),
        interval in prop::sample::select(vec![1024u32, 2048, 4096]),
        reopens in prop::collection::vec(prop::bool::weighted(0.8), 2..6),
        seed in any::<u64>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(IoBackend::Fallback, Durability::Written);
        cfg.index_interval_bytes = interval;
        let mut rng = Rng::new(seed);
        let mut p = open(dir.path(), cfg.clone(), "small batches");
        let mut model = Model::default();
        let mut max_ts = BASE_TS;
        let chunk = batches.len().div_ceil(reopens.len());
        for (round, clean) in reopens.iter().enumerate() {
            let this_round = batches.iter().enumerate().skip(round * chunk).take(chunk);
            for (i, &(records, max_value, roll, grow)) in this_round {
                let records: Vec<Rec> = (0..records)
                    .map(|_| {
                        let ts = if grow {
                            max_ts += 1 + rng.below(1_000) as i64;
                            max_ts
                        } else {
                            max_ts - 1 - rng.below(100_000) as i64
                        };
                        rng.record(ts, max_value)
                    })
                    .collect();
                let batch = encode(&records, opts(Compression::None));
                let len = batch.len();
                let appended = p.append(batch).unwrap();
                prop_assert_eq!(appended.base_offset, model.next(), "batch {}", i);
                model.push(records, len);
                if roll == 0 {
                    p.roll().unwrap();
                }
            }
            verify(&p, &model, 0, &mut rng, &format!("round {round} before reopen"));
            if *clean {
                p.close().unwrap();
            } else {
                drop(p);
            }
            p = open(dir.path(), cfg.clone(), "reopen");
            prop_assert_eq!(p.open_report().clean_shutdown, *clean);
            let ctx = format!("round {round} after reopen (clean: {clean})");
            verify(&p, &model, 0, &mut rng, &ctx);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Write paths.

fn expected_backend(backend: IoBackend) -> ActiveBackend {
    match backend {
        IoBackend::Fallback => ActiveBackend::Fallback,
        _ => ActiveBackend::Uring,
    }
}

#[test]
fn configured_write_path_is_the_one_in_use() {
    for backend in [IoBackend::Uring, IoBackend::Fallback, IoBackend::Auto] {
        let ctx = format!("{backend:?}");
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path(), config(backend, Durability::Fsync), &ctx);
        // io_uring works here (the Uring case opened), so Auto must pick it too.
        assert_eq!(p.backend(), expected_backend(backend), "{ctx}");

        let efd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .unwrap();
        let registered = p.register_completion_eventfd(efd.as_fd()).unwrap();
        assert_eq!(registered, p.backend() == ActiveBackend::Uring, "{ctx}");

        let mut model = Model::default();
        let mut clock = BASE_TS;
        for seed in 0..4 {
            let spec = Spec {
                records: 5,
                max_value: 300,
                lz4: seed % 2 == 0,
                seed,
            };
            let (batch, records) = make_batch(spec, &mut clock);
            let len = batch.len();
            let a = p.append(batch).unwrap();
            assert_eq!(a.base_offset, model.next(), "{ctx}");
            model.push(records, len);
        }
        if registered {
            // Completions of the ring's writes and syncs were signalled.
            let mut buf = [0u8; 8];
            assert_eq!(rustix::io::read(&efd, &mut buf).unwrap(), 8, "{ctx}");
            assert!(u64::from_ne_bytes(buf) >= 1, "{ctx}: eventfd counter");
        }
        verify(&p, &model, 0, &mut Rng::new(1), &ctx);
        p.close().unwrap();
    }
    // Auto writes None and Written appends inline with pwritev (see IoBackend::Auto).
    for durability in [Durability::None, Durability::Written] {
        let dir = tempfile::tempdir().unwrap();
        let p = open(dir.path(), config(IoBackend::Auto, durability), "auto");
        assert_eq!(
            p.backend(),
            ActiveBackend::Fallback,
            "Auto with {durability:?}"
        );
    }
}

#[test]
fn segments_roll_when_the_next_batch_does_not_fit() {
    for backend in BACKENDS {
        let ctx = format!("{backend:?}");
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path(), config(backend, Durability::Written), &ctx);
        let mut model = Model::default();
        let mut clock = BASE_TS;
        let mut seed = 0;
        // About 3.3 MB in batches of 40-100 KB, submitted in groups of three.
        while model.batches.iter().map(|b| b.2).sum::<usize>() < 3_300_000 {
            for _ in 0..3 {
                let spec = Spec {
                    records: 20,
                    max_value: 4_000,
                    lz4: false,
                    seed,
                };
                seed += 1;
                let (batch, records) = make_batch(spec, &mut clock);
                let len = batch.len();
                p.submit(batch).unwrap();
                model.push(records, len);
            }
            p.wait().unwrap();
        }
        p.flush().unwrap();
        let segments = p.segments();
        assert!(segments.len() >= 4, "{ctx}: {} segments", segments.len());
        for (i, s) in segments.iter().enumerate() {
            let log = dir.path().join(format!("{:020}.log", s.base_offset));
            let file_len = std::fs::metadata(&log).unwrap().len();
            if s.sealed {
                // Sealed: trimmed to its data, indexed, and rolled only because the
                // next batch would not have fit.
                assert_eq!(file_len, s.size, "{ctx}: sealed file length");
                for suffix in ["index", "timeindex"] {
                    let f = dir.path().join(format!("{:020}.{suffix}", s.base_offset));
                    assert!(f.exists(), "{ctx}: {} missing", f.display());
                }
                let next = model
                    .batches
                    .iter()
                    .find(|b| b.0 == segments[i + 1].base_offset)
                    .unwrap();
                assert!(
                    s.size + next.2 as u64 > SEGMENT_BYTES,
                    "{ctx}: segment {i} rolled at {} bytes though a {}-byte batch fit",
                    s.size,
                    next.2
                );
            } else {
                assert_eq!(
                    file_len, SEGMENT_BYTES,
                    "{ctx}: active segment is preallocated"
                );
            }
        }
        verify(&p, &model, 0, &mut Rng::new(2), &ctx);
        p.close().unwrap();
        let p = open(dir.path(), config(backend, Durability::Written), &ctx);
        assert_eq!(p.segments(), segments, "{ctx}: segments after reopen");
        verify(&p, &model, 0, &mut Rng::new(3), &ctx);
    }
}

#[test]
fn a_batch_as_large_as_a_segment_fills_one() {
    for backend in BACKENDS {
        let ctx = format!("{backend:?}");
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(backend, Durability::Fsync);
        assert_eq!(u64::from(cfg.max_batch_bytes), SEGMENT_BYTES);
        let mut p = open(dir.path(), cfg.clone(), &ctx);
        let mut model = Model::default();
        for (ts, len) in [(1, 100), (2, SEGMENT_BYTES as usize), (3, 100)] {
            let (batch, rec) = batch_of_len(BASE_TS + ts, len);
            assert_eq!(p.append(batch).unwrap().base_offset, model.next(), "{ctx}");
            model.push(vec![rec], len);
        }
        let sizes: Vec<(u64, u64, bool)> = p
            .segments()
            .iter()
            .map(|s| (s.base_offset, s.size, s.sealed))
            .collect();
        assert_eq!(
            sizes,
            [(0, 100, true), (1, SEGMENT_BYTES, true), (2, 100, false)],
            "{ctx}"
        );
        verify(&p, &model, 0, &mut Rng::new(9), &ctx);
        p.close().unwrap();
        let p = open(dir.path(), cfg, &ctx);
        verify(&p, &model, 0, &mut Rng::new(10), &ctx);
    }
}

// ---------------------------------------------------------------------------------------
// Retention.

/// Writes `segments` sealed segments (via `roll`) of `batches` batches each, plus an
/// active segment with one batch; the records of segment `k` are stamped around
/// `BASE_TS + k * HOUR`.
const HOUR: i64 = 3_600_000_000;

fn fill_segments(p: &mut Partition, model: &mut Model, segments: usize, batches: usize) {
    let mut seed = 100;
    for k in 0..=segments {
        let mut clock = BASE_TS + k as i64 * HOUR;
        let count = if k == segments { 1 } else { batches };
        for _ in 0..count {
            let spec = Spec {
                records: 8,
                max_value: 2_000,
                lz4: seed % 3 == 0,
                seed,
            };
            seed += 1;
            let (batch, records) = make_batch(spec, &mut clock);
            let len = batch.len();
            p.append(batch).unwrap();
            model.push(records, len);
        }
        if k < segments {
            p.roll().unwrap();
        }
    }
}

fn segment_files_exist(dir: &Path, base: u64) -> [bool; 3] {
    ["log", "index", "timeindex"].map(|s| dir.join(format!("{base:020}.{s}")).exists())
}

fn at_micros(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us as u64)
}

/// Files in `dir` whose names end with `.deleted`, after waiting (up to 10 s) for the
/// background deleter.
fn retired_files_left(dir: &Path) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".deleted"))
            .collect();
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn retention_retires_files_at_once_and_leftovers_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(IoBackend::Fallback, Durability::Written);
    let mut p = open(dir.path(), cfg.clone(), "retire");
    let mut model = Model::default();
    fill_segments(&mut p, &mut model, 4, 5);
    let before = p.segments();
    drop(p);
    cfg.retention_bytes = Some(1);
    let mut p = open(dir.path(), cfg.clone(), "retire, with retention");
    let report = p.apply_retention(SystemTime::now()).unwrap();
    assert!(report.segments_deleted >= 3, "{report:?}");
    // The old names are gone at once; the renamed files go in the background.
    assert_eq!(
        segment_files_exist(dir.path(), before[0].base_offset),
        [false; 3]
    );
    assert_eq!(retired_files_left(dir.path()), Vec::<String>::new());
    drop(p);
    // A crash between the rename and the unlink leaves a retired file behind: open
    // neither serves it nor keeps it.
    let leftover = dir.path().join(format!("{:020}.log.deleted", 0));
    std::fs::write(&leftover, vec![0xAB; 4096]).unwrap();
    let p = open(dir.path(), cfg, "retire, after a crash");
    assert_eq!(p.log_start_offset(), report.log_start_offset);
    assert_eq!(retired_files_left(dir.path()), Vec::<String>::new());
}

#[test]
fn retention_by_size_deletes_whole_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(IoBackend::Fallback, Durability::Written);
    let mut p = open(dir.path(), cfg.clone(), "size");
    let mut model = Model::default();
    fill_segments(&mut p, &mut model, 6, 5);
    let before = p.segments();
    assert_eq!(before.len(), 7);
    let total: u64 = before.iter().map(|s| s.size).sum();
    drop(p);

    // Keep at least 40% of the bytes: drop segments while what remains stays above it.
    let limit = total * 2 / 5;
    cfg.retention_bytes = Some(limit);
    let mut p = open(dir.path(), cfg.clone(), "size, with retention");
    let mut expect = 0;
    let mut left = total;
    for s in &before[..before.len() - 1] {
        if left - s.size < limit {
            break;
        }
        left -= s.size;
        expect += 1;
    }
    assert!(
        (1..6).contains(&expect),
        "the test deletes some but not all: {expect}"
    );
    let report = p.apply_retention(SystemTime::now()).unwrap();
    assert_eq!(report.segments_deleted, expect);
    assert_eq!(report.bytes_deleted, total - left);
    let log_start = before[expect].base_offset;
    assert_eq!(report.log_start_offset, log_start);
    assert_eq!(p.log_start_offset(), log_start);
    assert_eq!(p.segments(), before[expect..].to_vec());
    assert_eq!(p.size_bytes(), left);
    assert!(p.size_bytes() >= limit);
    assert!(
        p.size_bytes() - p.segments()[0].size < limit,
        "one more would go below the limit"
    );
    for (i, s) in before.iter().enumerate() {
        let exists = segment_files_exist(dir.path(), s.base_offset);
        let want = i >= expect;
        assert_eq!(exists[0], want, "{}.log", s.base_offset);
        if s.sealed {
            assert_eq!(exists, [want; 3], "files of segment {}", s.base_offset);
        }
    }
    for o in [0, log_start - 1] {
        match p.read(o, 1 << 20) {
            Err(Error::OffsetOutOfRange {
                requested,
                log_start: ls,
                high_watermark,
            }) => assert_eq!(
                (requested, ls, high_watermark),
                (o, log_start, model.next())
            ),
            other => panic!("read({o}) below the log start gave {other:?}"),
        }
    }
    verify(
        &p,
        &model,
        log_start,
        &mut Rng::new(4),
        "after size retention",
    );
    // A second pass has nothing left to do.
    assert_eq!(
        p.apply_retention(SystemTime::now())
            .unwrap()
            .segments_deleted,
        0
    );

    // The log start survives a reopen.
    p.close().unwrap();
    let p = open(dir.path(), cfg.clone(), "reopen after retention");
    assert_eq!(p.log_start_offset(), log_start);
    verify(
        &p,
        &model,
        log_start,
        &mut Rng::new(5),
        "reopened after size retention",
    );

    // With a limit of one byte every sealed segment goes, but the active one stays.
    drop(p);
    cfg.retention_bytes = Some(1);
    let mut p = open(dir.path(), cfg.clone(), "tiny limit");
    let report = p.apply_retention(SystemTime::now()).unwrap();
    assert_eq!(report.segments_deleted, before.len() - 1 - expect);
    let active = *before.last().unwrap();
    assert_eq!(p.segments(), vec![active]);
    assert_eq!(p.log_start_offset(), active.base_offset);
    assert!(segment_files_exist(dir.path(), active.base_offset)[0]);
    verify(
        &p,
        &model,
        active.base_offset,
        &mut Rng::new(6),
        "only the active segment",
    );

    // Once rolled, the data is all sealed: deleting it would leave less than one byte.
    p.roll().unwrap();
    let report = p.apply_retention(SystemTime::now()).unwrap();
    assert_eq!(report.segments_deleted, 0);
    assert_eq!(p.log_start_offset(), active.base_offset);
    // With no size to keep it goes; the empty active segment is kept, and appends continue.
    drop(p);
    cfg.retention_bytes = Some(0);
    let mut p = open(dir.path(), cfg.clone(), "no size to keep");
    let report = p.apply_retention(SystemTime::now()).unwrap();
    assert_eq!(report.segments_deleted, 1);
    assert_eq!(report.bytes_deleted, active.size);
    let hw = model.next();
    assert_eq!(p.log_start_offset(), hw);
    assert!(p.read(hw, 1 << 20).unwrap().bytes.is_empty());
    let (batch, records) = make_batch(
        Spec {
            records: 3,
            max_value: 10,
            lz4: false,
            seed: 9,
        },
        &mut (BASE_TS + 100 * HOUR),
    );
    let len = batch.len();
    assert_eq!(p.append(batch).unwrap().base_offset, hw);
    model.push(records, len);
    verify(
        &p,
        &model,
        hw,
        &mut Rng::new(7),
        "after deleting every sealed segment",
    );
    p.close().unwrap();
    let p = open(dir.path(), cfg, "reopen with only the active segment");
    verify(
        &p,
        &model,
        hw,
        &mut Rng::new(8),
        "reopened with only the active segment",
    );
}

#[test]
fn retention_by_age_deletes_segments_older_than_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(IoBackend::Uring, Durability::Written);
    cfg.retention_age = Some(Duration::from_secs(3600));
    let mut p = open(dir.path(), cfg.clone(), "age");
    let mut model = Model::default();
    fill_segments(&mut p, &mut model, 5, 3);
    let before = p.segments();
    assert_eq!(before.len(), 6);
    let max_ts = |i: usize| before[i].max_timestamp.unwrap();

    // The cutoff (now - 1 h) equal to segment 1's newest record keeps segment 1.
    let report = p.apply_retention(at_micros(max_ts(1) + HOUR)).unwrap();
    assert_eq!(report.segments_deleted, 1);
    assert_eq!(p.log_start_offset(), before[1].base_offset);
    // One microsecond later segment 1 is older than the cutoff too.
    let report = p.apply_retention(at_micros(max_ts(1) + HOUR + 1)).unwrap();
    assert_eq!(report.segments_deleted, 1);
    assert_eq!(report.bytes_deleted, before[1].size);
    let log_start = before[2].base_offset;
    assert_eq!(report.log_start_offset, log_start);
    for s in &before[..2] {
        assert_eq!(segment_files_exist(dir.path(), s.base_offset), [false; 3]);
    }
    for s in &before[2..] {
        assert!(segment_files_exist(dir.path(), s.base_offset)[0]);
    }
    assert!(matches!(
        p.read(log_start - 1, 100),
        Err(Error::OffsetOutOfRange { .. })
    ));
    verify(
        &p,
        &model,
        log_start,
        &mut Rng::new(10),
        "after age retention",
    );

    p.close().unwrap();
    let mut p = open(dir.path(), cfg.clone(), "reopen after age retention");
    assert_eq!(p.log_start_offset(), log_start);
    verify(
        &p,
        &model,
        log_start,
        &mut Rng::new(11),
        "reopened after age retention",
    );

    // Far in the future every sealed segment is expired, but the active one stays.
    let report = p
        .apply_retention(at_micros(BASE_TS + 1_000 * HOUR))
        .unwrap();
    assert_eq!(report.segments_deleted, 3);
    let active = *before.last().unwrap();
    assert_eq!(p.segments(), vec![active]);
    verify(
        &p,
        &model,
        active.base_offset,
        &mut Rng::new(12),
        "only the active segment",
    );
}

#[test]
fn retention_by_age_deletes_only_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(IoBackend::Fallback, Durability::Written);
    cfg.retention_age = Some(Duration::from_secs(3600));
    let mut p = open(dir.path(), cfg, "prefix");
    let mut model = Model::default();
    // Segment 0 holds a record from hour 50; segments 1 and 2 are from hours 1 and 2.
    for (k, ts) in [
        (0, BASE_TS),
        (0, BASE_TS + 50 * HOUR),
        (1, BASE_TS + HOUR),
        (2, BASE_TS + 2 * HOUR),
    ] {
        if p.segments().len() <= k {
            p.roll().unwrap();
        }
        let (batch, rec) = batch_of_len(ts, 200);
        p.append(batch).unwrap();
        model.push(vec![rec], 200);
    }
    p.roll().unwrap();
    let before = p.segments();
    assert_eq!(before.len(), 4);
    // At hour 10 segments 1 and 2 are expired, but segment 0 is not, so nothing goes.
    let report = p.apply_retention(at_micros(BASE_TS + 10 * HOUR)).unwrap();
    assert_eq!(report.segments_deleted, 0);
    assert_eq!(p.segments(), before);
    // At hour 60 all three go.
    let report = p.apply_retention(at_micros(BASE_TS + 60 * HOUR)).unwrap();
    assert_eq!(report.segments_deleted, 3);
    verify(
        &p,
        &model,
        model.next(),
        &mut Rng::new(13),
        "all sealed expired",
    );
}

// ---------------------------------------------------------------------------------------
// Time lookups.

#[test]
fn time_lookup_across_segments_and_reopens() {
    for backend in BACKENDS {
        let ctx = format!("{backend:?}");
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(backend, Durability::Written);
        cfg.index_interval_bytes = 200;
        let mut p = open(dir.path(), cfg.clone(), &ctx);
        let mut model = Model::default();
        let mut clock = BASE_TS;
        for i in 0..60u64 {
            let spec = Spec {
                records: 1 + (i % 7) as usize,
                max_value: 150,
                lz4: i % 4 == 1,
                seed: 1000 + i,
            };
            let (batch, records) = make_batch(spec, &mut clock);
            let len = batch.len();
            p.append(batch).unwrap();
            model.push(records, len);
            if i % 15 == 14 {
                p.roll().unwrap();
            }
        }
        // Every distinct timestamp, and its neighbours, against a brute-force scan.
        let check = |p: &Partition, when: &str| {
            let mut targets: Vec<i64> = model
                .records
                .iter()
                .flat_map(|r| [r.ts - 1, r.ts, r.ts + 1])
                .collect();
            targets.extend([i64::MIN, 0, BASE_TS - 1_000_000, i64::MAX]);
            for t in targets {
                assert_eq!(
                    p.offset_for_timestamp(t).unwrap(),
                    model.first_at_or_after(0, t),
                    "{ctx} {when}: offset_for_timestamp({t})"
                );
            }
            let max = model.records.iter().map(|r| r.ts).max().unwrap();
            let min = model.records.iter().map(|r| r.ts).min().unwrap();
            assert_eq!(
                p.offset_for_timestamp(max + 1).unwrap(),
                None,
                "{ctx} {when}"
            );
            assert_eq!(
                p.offset_for_timestamp(min).unwrap(),
                Some(0),
                "{ctx} {when}"
            );
        };
        check(&p, "while open");

        p.close().unwrap();
        let p = open(dir.path(), cfg.clone(), &ctx);
        assert!(
            !p.open_report().rebuilt_active_index,
            "{ctx}: indexes loaded"
        );
        check(&p, "after a clean close");

        drop(p);
        let p = open(dir.path(), cfg.clone(), &ctx);
        assert!(!p.open_report().clean_shutdown);
        assert!(
            p.open_report().rebuilt_active_index,
            "{ctx}: indexes rebuilt"
        );
        check(&p, "after an unclean drop");
    }
}

/// The active segment's newest timestamp must survive a clean close even when it grew
/// after the last time index entry and the last offset index entry lies past that
/// growth (the recovery scan then starts after the batch that holds it).
///
/// Layout with a 1000-byte index interval (positions in bytes, timestamps relative):
///
/// ```text
/// batch  pos   len  ts   offset entry    time entry
/// 0         0 1100  100  -               (100, 0)
/// 1      1100  300  100  (1, 1100)       -
/// 2      1400  300  200  -               (200, 2)    1400 - 0 >= 1000
/// 3      1700  300  300  -               -           1700 - 1400 < 1000
/// 4      2000  200  100  -               -
/// 5      2200  200  100  (5, 2200)       -           2200 - 1400 < 1000
/// ```
fn write_growth_between_index_entries(dir: &Path, cfg: &PartitionConfig) -> Model {
    let mut p = open(dir, cfg.clone(), "growth layout");
    let mut model = Model::default();
    for (ts, len) in [
        (100, 1100),
        (100, 300),
        (200, 300),
        (300, 300),
        (100, 200),
        (100, 200),
    ] {
        let (batch, rec) = batch_of_len(BASE_TS + ts, len);
        p.append(batch).unwrap();
        model.push(vec![rec], len);
    }
    assert_eq!(
        p.offset_for_timestamp(BASE_TS + 250).unwrap(),
        Some(3),
        "while open"
    );
    assert_eq!(
        p.segments()[0].max_timestamp,
        Some(BASE_TS + 300),
        "while open"
    );
    p.close().unwrap();
    model
}

#[test]
fn newest_timestamp_survives_a_clean_close() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(backend, Durability::Written);
        cfg.index_interval_bytes = 1000;
        let model = write_growth_between_index_entries(dir.path(), &cfg);

        let mut p = open(dir.path(), cfg.clone(), "clean reopen");
        assert!(p.open_report().clean_shutdown);
        assert_eq!(
            p.segments()[0].max_timestamp,
            Some(BASE_TS + 300),
            "{backend:?}: newest timestamp of the active segment after a clean reopen"
        );
        assert_eq!(
            p.offset_for_timestamp(BASE_TS + 250).unwrap(),
            Some(3),
            "{backend:?}: the record stamped 300 is found after a clean reopen"
        );
        verify(&p, &model, 0, &mut Rng::new(20), "clean reopen");

        // Once sealed, the segment's age must still count its newest record: a cutoff
        // at 250 does not expire it.
        p.roll().unwrap();
        let mut cfg_age = cfg.clone();
        cfg_age.retention_age = Some(Duration::from_secs(3600));
        drop(p);
        let mut p = open(dir.path(), cfg_age, "with age retention");
        let report = p.apply_retention(at_micros(BASE_TS + 250 + HOUR)).unwrap();
        assert_eq!(
            report.segments_deleted, 0,
            "{backend:?}: a segment holding a record newer than the cutoff was deleted"
        );
    }
}

#[test]
fn newest_timestamp_is_rebuilt_after_an_unclean_drop() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(IoBackend::Fallback, Durability::Written);
    cfg.index_interval_bytes = 1000;
    let model = write_growth_between_index_entries(dir.path(), &cfg);
    // Make the next open unclean: the indexes are rebuilt from the data.
    std::fs::remove_file(
        dir.path()
            .join(strata_log::partition::CLEAN_SHUTDOWN_MARKER),
    )
    .unwrap();
    let p = open(dir.path(), cfg, "unclean reopen");
    assert!(p.open_report().rebuilt_active_index);
    assert_eq!(p.segments()[0].max_timestamp, Some(BASE_TS + 300));
    assert_eq!(p.offset_for_timestamp(BASE_TS + 250).unwrap(), Some(3));
    verify(&p, &model, 0, &mut Rng::new(21), "unclean reopen");
}

// ---------------------------------------------------------------------------------------
// Reads.

#[test]
fn read_edges() {
    for backend in BACKENDS {
        let ctx = format!("{backend:?}");
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path(), config(backend, Durability::Written), &ctx);

        // Empty log: offset 0 is the high watermark.
        let f = p.read(0, 1 << 20).unwrap();
        assert!(f.bytes.is_empty(), "{ctx}");
        assert_eq!((f.high_watermark, f.log_start_offset), (0, 0), "{ctx}");
        assert!(matches!(
            p.read(1, 1 << 20),
            Err(Error::OffsetOutOfRange {
                requested: 1,
                log_start: 0,
                high_watermark: 0
            })
        ));

        let mut model = Model::default();
        let mut clock = BASE_TS;
        for (i, (records, max_value)) in [(4, 100), (6, 900), (3, 50), (5, 400)]
            .into_iter()
            .enumerate()
        {
            let spec = Spec {
                records,
                max_value,
                lz4: i == 1,
                seed: 50 + i as u64,
            };
            let (batch, recs) = make_batch(spec, &mut clock);
            let len = batch.len();
            p.append(batch).unwrap();
            model.push(recs, len);
        }
        let lens: Vec<usize> = model.batches.iter().map(|b| b.2).collect();

        // Any offset with a fetch size below one batch: exactly the batch holding it.
        for o in 0..model.next() {
            for max_bytes in [0, 1, 55] {
                let batches = read_checked(&p, &model, o, max_bytes, &ctx);
                assert_eq!(batches.len(), 1, "{ctx}: read({o}, {max_bytes})");
            }
        }
        // A fetch size between one and two batches gives one; enough for two gives two.
        let b = read_checked(&p, &model, 0, lens[0] + lens[1] - 1, &ctx);
        assert_eq!(b.len(), 1, "{ctx}");
        let b = read_checked(&p, &model, 0, lens[0] + lens[1], &ctx);
        assert_eq!(b.len(), 2, "{ctx}");
        // From the middle of batch 1, whole batches from batch 1 on.
        let mid = model.batches[1].0 + 2;
        let b = read_checked(&p, &model, mid, usize::MAX, &ctx);
        assert_eq!(b.len(), 3, "{ctx}");
        assert_eq!(b[0].base, model.batches[1].0, "{ctx}");
        verify(&p, &model, 0, &mut Rng::new(30), &ctx);
        p.close().unwrap();
    }
}

#[test]
fn reads_never_see_batches_that_are_not_durable() {
    for backend in BACKENDS {
        for durability in [Durability::None, Durability::Written, Durability::Fsync] {
            let ctx = format!("{backend:?} {durability:?}");
            let dir = tempfile::tempdir().unwrap();
            let mut p = open(dir.path(), config(backend, durability), &ctx);
            let mut model = Model::default();
            let mut clock = BASE_TS;
            let spec = |seed| Spec {
                records: 4,
                max_value: 500,
                lz4: false,
                seed,
            };
            let (a, recs) = make_batch(spec(1), &mut clock);
            let a_len = a.len();
            p.append(a).unwrap();
            model.push(recs, a_len);
            p.flush().unwrap();
            let hw = model.next();

            // Accepted, offsets assigned, write possibly started but not yet reaped.
            let (b, b_recs) = make_batch(spec(2), &mut clock);
            let b_len = b.len();
            let appended = if durability == Durability::None {
                p.append(b).unwrap()
            } else {
                p.submit(b).unwrap()
            };
            assert_eq!(appended.base_offset, hw, "{ctx}");
            assert_eq!(p.next_offset(), hw + 4, "{ctx}");
            assert_eq!(p.high_watermark(), hw, "{ctx}: nothing was reaped yet");
            assert!(p.is_writing(), "{ctx}");
            assert_eq!(p.unflushed_bytes(), b_len as u64, "{ctx}");
            let f = p.read(0, usize::MAX).unwrap();
            assert_eq!(f.high_watermark, hw, "{ctx}");
            assert_eq!(
                f.bytes.len(),
                a_len,
                "{ctx}: read served a batch that is not durable"
            );
            assert!(p.read(hw, usize::MAX).unwrap().bytes.is_empty(), "{ctx}");
            assert!(
                matches!(p.read(hw + 1, 100), Err(Error::OffsetOutOfRange { .. })),
                "{ctx}: read of an accepted but not durable offset"
            );
            assert_eq!(p.offset_for_timestamp(i64::MAX).unwrap(), None, "{ctx}");
            assert_eq!(p.segments().last().unwrap().size, a_len as u64, "{ctx}");

            assert_eq!(p.flush().unwrap(), hw + 4, "{ctx}");
            model.push(b_recs, b_len);
            verify(&p, &model, 0, &mut Rng::new(31), &ctx);
        }
    }
}

#[test]
fn a_locked_directory_cannot_be_opened_twice() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(backend, Durability::Written);
        let p = open(dir.path(), cfg.clone(), "first");
        match Partition::open(dir.path(), cfg.clone()) {
            Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
            other => panic!("second open gave {other:?}"),
        }
        drop(p);
        let p = open(dir.path(), cfg.clone(), "after the first was dropped");
        assert!(matches!(
            Partition::open(dir.path(), cfg.clone()),
            Err(Error::Locked { .. })
        ));
        p.close().unwrap();
        open(dir.path(), cfg, "after a close").close().unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Invalid input.

/// Whether a format error is the one a case expects.
type IsExpected = fn(&FormatError) -> bool;

#[test]
fn invalid_batches_are_rejected_and_change_nothing() {
    for backend in BACKENDS {
        let ctx = format!("{backend:?}");
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(backend, Durability::Written);
        cfg.max_batch_bytes = 64 * 1024;
        let mut p = open(dir.path(), cfg, &ctx);
        let mut model = Model::default();
        let mut clock = BASE_TS;
        let spec = |seed, max_value| Spec {
            records: 5,
            max_value,
            lz4: false,
            seed,
        };
        let (first, recs) = make_batch(spec(1, 100), &mut clock);
        let len = first.len();
        p.append(first).unwrap();
        model.push(recs, len);

        let (good, _) = make_batch(spec(2, 100), &mut Clone::clone(&clock));
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0x01;
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0u8; 3]);
        let truncated = BytesMut::from(&good[..good.len() - 1]);
        let huge = encode(
            &[Rec {
                ts: clock,
                key: None,
                value: Some(vec![7; 70_000]),
                headers: Vec::new(),
            }],
            opts(Compression::None),
        );
        assert!(huge.len() > 64 * 1024);

        let cases: Vec<(&str, BytesMut, IsExpected)> = vec![
            ("bad CRC", bad_crc, |e| {
                matches!(e, FormatError::CrcMismatch { .. })
            }),
            ("trailing bytes", trailing, |e| {
                matches!(e, FormatError::InconsistentHeader(_))
            }),
            ("truncated", truncated, |e| {
                matches!(e, FormatError::Truncated { .. })
            }),
            ("empty buffer", BytesMut::new(), |e| {
                matches!(e, FormatError::Truncated { .. })
            }),
            ("too large", huge.clone(), |e| {
                matches!(e, FormatError::TooLarge { limit: 65_536, .. })
            }),
        ];
        for (what, batch, expected) in cases {
            for submit in [false, true] {
                let r = if submit {
                    p.submit(batch.clone())
                } else {
                    p.append(batch.clone())
                };
                match r {
                    Err(Error::Format(e)) => assert!(expected(&e), "{ctx} {what}: got {e:?}"),
                    other => panic!("{ctx} {what} (submit: {submit}): got {other:?}"),
                }
                assert_eq!(
                    p.next_offset(),
                    model.next(),
                    "{ctx} {what}: next offset moved"
                );
                assert_eq!(p.high_watermark(), model.next(), "{ctx} {what}");
                assert_eq!(
                    p.size_bytes(),
                    len as u64,
                    "{ctx} {what}: bytes were written"
                );
                assert!(!p.is_writing(), "{ctx} {what}");
            }
        }
        match p.submit(huge.clone()) {
            Err(Error::Format(FormatError::TooLarge { size, limit })) => {
                assert_eq!((size, limit), (huge.len(), 65_536), "{ctx}")
            }
            other => panic!("{ctx}: too large batch gave {other:?}"),
        }

        // The partition carries on at the offset it was at.
        let (next, recs) = make_batch(spec(2, 100), &mut clock);
        let next_len = next.len();
        assert_eq!(p.append(next).unwrap().base_offset, model.next(), "{ctx}");
        model.push(recs, next_len);
        verify(&p, &model, 0, &mut Rng::new(40), &ctx);
    }
}

#[test]
fn invalid_configurations_are_rejected() {
    let base = config(IoBackend::Fallback, Durability::Written);
    let with = |f: &dyn Fn(&mut PartitionConfig)| {
        let mut c = base.clone();
        f(&mut c);
        c
    };
    let invalid = [
        ("segment_bytes 0", with(&|c| c.segment_bytes = 0)),
        (
            "segment_bytes below 1 MiB",
            with(&|c| c.segment_bytes = MIN_SEGMENT_BYTES - 1),
        ),
        (
            "segment_bytes above u32",
            with(&|c| c.segment_bytes = MAX_SEGMENT_BYTES + 1),
        ),
        ("max_batch_bytes 0", with(&|c| c.max_batch_bytes = 0)),
        (
            "max_batch_bytes = header",
            with(&|c| c.max_batch_bytes = 56),
        ),
        (
            "max_batch_bytes above segment",
            with(&|c| c.max_batch_bytes = (SEGMENT_BYTES + 1) as u32),
        ),
        (
            "max_batch_bytes above the format limit",
            with(&|c| {
                c.segment_bytes = 256 << 20;
                c.max_batch_bytes = MAX_BATCH_LEN as u32 + 1;
                c.max_pending_bytes = 512 << 20;
            }),
        ),
        (
            "index_interval_bytes 0",
            with(&|c| c.index_interval_bytes = 0),
        ),
        (
            "max_pending_bytes below a batch",
            with(&|c| c.max_pending_bytes = c.max_batch_bytes as usize - 1),
        ),
        (
            "segment_age 0",
            with(&|c| c.segment_age = Some(Duration::ZERO)),
        ),
    ];
    for (what, cfg) in invalid {
        assert!(
            matches!(cfg.validate(), Err(Error::InvalidConfig(_))),
            "{what}: validate"
        );
        let dir = tempfile::tempdir().unwrap();
        match Partition::open(dir.path(), cfg) {
            Err(Error::InvalidConfig(msg)) => assert!(!msg.is_empty(), "{what}"),
            other => panic!("{what}: open gave {other:?}"),
        }
    }

    let valid = [
        ("defaults", PartitionConfig::default()),
        (
            "smallest segment",
            with(&|c| c.segment_bytes = MIN_SEGMENT_BYTES),
        ),
        (
            "largest segment",
            with(&|c| c.segment_bytes = MAX_SEGMENT_BYTES),
        ),
        (
            "batch as large as a segment",
            with(&|c| c.max_batch_bytes = SEGMENT_BYTES as u32),
        ),
        ("smallest batch limit", with(&|c| c.max_batch_bytes = 57)),
        ("index every byte", with(&|c| c.index_interval_bytes = 1)),
        (
            "pending equal to a batch",
            with(&|c| c.max_pending_bytes = c.max_batch_bytes as usize),
        ),
    ];
    for (what, cfg) in valid {
        assert!(cfg.validate().is_ok(), "{what}: {:?}", cfg.validate());
    }
    // The smallest batch limit is usable: one tiny record fits, anything more does not.
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(
        dir.path(),
        with(&|c| c.max_batch_bytes = 70),
        "tiny batches",
    );
    let small = encode(
        &[Rec {
            ts: BASE_TS,
            key: None,
            value: Some(vec![1]),
            headers: Vec::new(),
        }],
        BuilderOptions::default(),
    );
    assert!(small.len() <= 70);
    p.append(small).unwrap();
    assert_eq!(p.high_watermark(), 1);
}
