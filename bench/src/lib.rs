//! Shared helpers for the strata criterion benchmarks.
//!
//! * [`Workload`]: deterministic, pre-encoded record batches (encoded once, outside any
//!   timed loop) and fresh copies of them for each timed run.
//! * The two writers the append benchmarks compare on the same bytes: a strata
//!   [`Partition`] ([`ours_sync_each`], [`ours_pipelined`]) and a [`RawFile`] written with
//!   plain `pwrite`/`pwritev` (+ `fdatasync`).
//! * Small statistics helpers ([`median`], [`percentile`]).
//!
//! Both writers get a fresh, preallocated (fallocate) file of the same size for every timed
//! run, in a temporary directory under [`std::env::temp_dir`], so neither overwrites blocks
//! that were already written and both pay the same unwritten-extent conversion.

pub mod engine_hosted;
pub mod engine_load;

use bytes::BytesMut;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use strata_log::format::{BatchBuilder, BatchHeader, BuilderOptions, Compression};
use strata_log::{Durability, IoBackend, Partition, PartitionConfig};
use tempfile::TempDir;

/// Timestamp of the first record of every workload (µs since the Unix epoch).
pub const BASE_TIMESTAMP: i64 = 1_700_000_000_000_000;

/// Target size of one encoded batch in the append and read benchmarks.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Size of the segment (ours) and of the preallocated file (raw): larger than any run
/// writes, so ours never rolls inside a timed run.
pub const SEGMENT_BYTES: u64 = 256 << 20;

const WORDS: [&str; 32] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "ok", "warn", "error", "temp",
    "humidity", "pressure",
];

/// A small deterministic PRNG (xorshift64*), so every run encodes the same bytes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Creates a generator from a non-zero seed (zero is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next pseudo-random value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Writes a JSON-like record value of exactly `len` bytes into `out` (cleared first).
///
/// A fixed set of field names, a sequence number, a device id and a reading, padded with
/// words drawn from a 32-word vocabulary: compressible the way telemetry is (lz4 roughly
/// halves it), not the way a run of one repeated byte is.
pub fn payload(seq: u64, len: usize, rng: &mut Rng, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let r = rng.next_u64();
    let _ = write!(
        out,
        "{{\"seq\":{seq},\"device\":\"dev-{:04}\",\"value\":{}.{:02},\"note\":\"",
        r % 10_000,
        (r >> 16) % 100,
        (r >> 24) % 100
    );
    while out.len() < len {
        let w = WORDS[(rng.next_u64() % WORDS.len() as u64) as usize];
        out.extend_from_slice(w.as_bytes());
        out.push(b' ');
    }
    out.truncate(len.saturating_sub(2));
    out.extend_from_slice(&b"\"}"[..len.min(2)]);
    out.truncate(len);
}

/// Record batches encoded once, before any timing.
#[derive(Debug)]
pub struct Workload {
    /// The encoded batches (base offset 0, as a producer sends them).
    pub batches: Vec<BytesMut>,
    /// Records across all batches.
    pub records: u64,
    /// Encoded bytes across all batches (what lands on disk).
    pub bytes: u64,
    /// Bytes of each record's value.
    pub record_len: usize,
    /// Records in each batch.
    pub records_per_batch: usize,
}

impl Workload {
    /// Encodes `batch_count` batches of records whose values are `record_len` bytes, with
    /// as many records per batch as fit `batch_bytes` (uncompressed).
    ///
    /// Records carry no key and no headers; each one adds 5 to 7 bytes of framing.
    pub fn new(
        record_len: usize,
        batch_bytes: usize,
        batch_count: usize,
        compression: Compression,
    ) -> Self {
        let mut builder = BatchBuilder::new(BuilderOptions {
            compression,
            max_batch_bytes: batch_bytes,
            ..BuilderOptions::default()
        });
        let mut rng = Rng::new(0x5eed);
        let mut value = Vec::with_capacity(record_len);
        let mut batches = Vec::with_capacity(batch_count);
        let mut seq = 0u64;
        let mut records_per_batch = 0;
        while batches.len() < batch_count {
            payload(seq, record_len, &mut rng, &mut value);
            match builder.push(BASE_TIMESTAMP + seq as i64, None, Some(&value), &[]) {
                Ok(()) => seq += 1,
                Err(_) if !builder.is_empty() => {
                    records_per_batch = records_per_batch.max(builder.len());
                    batches.push(builder.finish().expect("non-empty batch"));
                }
                Err(e) => panic!("a {record_len}-byte record does not fit a batch: {e}"),
            }
        }
        let records = batches
            .iter()
            .map(|b| u64::from(header(b).record_count))
            .sum();
        let bytes = batches.iter().map(|b| b.len() as u64).sum();
        Workload {
            batches,
            records,
            bytes,
            record_len,
            records_per_batch,
        }
    }

    /// Fresh copies of the batches, for one run of [`ours_sync_each`] or [`ours_pipelined`]
    /// (which consume them). Make them outside the timed region.
    pub fn copies(&self) -> Vec<BytesMut> {
        self.batches
            .iter()
            .map(|b| BytesMut::from(&b[..]))
            .collect()
    }

    /// Fresh copies with the base offsets a partition assigns when they are appended to an
    /// empty log, in order: byte for byte what ours writes, for the raw writer.
    pub fn copies_with_offsets(&self) -> Vec<BytesMut> {
        let mut next = 0u64;
        self.batches
            .iter()
            .map(|b| {
                let mut copy = BytesMut::from(&b[..]);
                strata_log::format::patch_base_offset(&mut copy, next);
                next += u64::from(header(b).record_count);
                copy
            })
            .collect()
    }
}

fn header(batch: &[u8]) -> BatchHeader {
    BatchHeader::parse(batch).expect("the builder writes valid headers")
}

/// A fresh temporary directory under [`std::env::temp_dir`] (the same file system for both
/// writers).
pub fn scratch_dir() -> io::Result<TempDir> {
    tempfile::Builder::new()
        .prefix("strata-bench-")
        .tempdir_in(std::env::temp_dir())
}

/// The partition configuration the append benchmarks use: defaults (preallocated
/// segments, 4 KiB index interval) with a [`SEGMENT_BYTES`] segment, `durability` and
/// the write path `backend`.
pub fn ours_config(durability: Durability, backend: IoBackend) -> PartitionConfig {
    PartitionConfig {
        durability,
        segment_bytes: SEGMENT_BYTES,
        io_backend: backend,
        ..PartitionConfig::default()
    }
}

/// Any error a benchmark helper returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens an empty partition in a fresh temporary directory.
pub fn open_ours(
    durability: Durability,
    backend: IoBackend,
) -> Result<(TempDir, Partition), BoxError> {
    let dir = scratch_dir()?;
    let log = Partition::open(dir.path(), ours_config(durability, backend))?;
    Ok((dir, log))
}

/// Ours, one batch at a time: [`Partition::append`] per batch, which returns once the
/// configured durability is met. Pushes each append's latency (ns) to `latencies`.
pub fn ours_sync_each(
    log: &mut Partition,
    batches: Vec<BytesMut>,
    mut latencies: Option<&mut Vec<u64>>,
) -> strata_log::Result<()> {
    for batch in batches {
        let started = Instant::now();
        log.append(batch)?;
        if let Some(l) = latencies.as_deref_mut() {
            l.push(started.elapsed().as_nanos() as u64);
        }
    }
    Ok(())
}

/// Ours, pipelined: [`Partition::submit`] every batch, waiting only while `window` batches
/// are unacknowledged, then drains (the pattern of `log/examples/append_read.rs`).
///
/// Returns the number of batches each write of the partition carried, in order: one
/// [`Partition::wait`] completes at most one write job, so every wait that moves the high
/// watermark marks one job, made of the batches it acknowledged. This is how many batches
/// group commit coalesced, for the raw writer to replay ([`RawFile::write_groups`]).
pub fn ours_pipelined(
    log: &mut Partition,
    batches: Vec<BytesMut>,
    window: usize,
) -> strata_log::Result<Vec<usize>> {
    let mut unacked: VecDeque<u64> = VecDeque::with_capacity(window + 1);
    let mut groups = Vec::with_capacity(batches.len());
    let mut wait = |log: &mut Partition, unacked: &mut VecDeque<u64>| -> strata_log::Result<()> {
        let acked = log.wait()?;
        let mut n = 0;
        while unacked.front().is_some_and(|&last| last < acked) {
            unacked.pop_front();
            n += 1;
        }
        if n > 0 {
            groups.push(n);
        }
        Ok(())
    };
    for batch in batches {
        let appended = log.submit(batch)?;
        unacked.push_back(appended.last_offset);
        while unacked.len() >= window {
            wait(log, &mut unacked)?;
        }
    }
    while log.is_writing() {
        wait(log, &mut unacked)?;
    }
    Ok(groups)
}

/// The raw baseline: a preallocated file written sequentially with plain `pwrite`/`pwritev`.
#[derive(Debug)]
pub struct RawFile {
    _dir: TempDir,
    path: PathBuf,
    file: File,
    pos: u64,
}

impl RawFile {
    /// Creates a file in a fresh temporary directory and reserves `capacity` bytes with
    /// fallocate, as a partition does for a new segment.
    pub fn create(capacity: u64) -> io::Result<Self> {
        let dir = scratch_dir()?;
        let path = dir.path().join("raw.log");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, capacity)?;
        Ok(RawFile {
            _dir: dir,
            path,
            file,
            pos: 0,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One batch at a time: `pwrite` each batch, plus `fdatasync` after each when `sync`.
    /// Pushes each batch's latency (ns) to `latencies`.
    pub fn write_each(
        &mut self,
        batches: Vec<BytesMut>,
        sync: bool,
        mut latencies: Option<&mut Vec<u64>>,
    ) -> io::Result<()> {
        for batch in batches {
            let started = Instant::now();
            self.pwrite_all(&batch)?;
            if sync {
                rustix::fs::fdatasync(&self.file)?;
            }
            if let Some(l) = latencies.as_deref_mut() {
                l.push(started.elapsed().as_nanos() as u64);
            }
        }
        Ok(())
    }

    /// Groups of batches, `groups[i]` batches in the `i`-th: one `pwritev` per group, plus
    /// one `fdatasync` after each when `sync`. The last group is repeated while batches
    /// remain; groups past the batches are ignored.
    pub fn write_groups(
        &mut self,
        mut batches: Vec<BytesMut>,
        groups: &[usize],
        sync: bool,
    ) -> io::Result<()> {
        let last = groups.last().copied().unwrap_or(1);
        let mut sizes = groups.iter().copied().chain(std::iter::repeat(last));
        let mut rest = &mut batches[..];
        while !rest.is_empty() {
            let group = sizes.next().unwrap_or(1).clamp(1, 1024);
            let (now, later) = rest.split_at_mut(group.min(rest.len()));
            self.pwritev_all(now)?;
            if sync {
                rustix::fs::fdatasync(&self.file)?;
            }
            // Release the written buffers as a partition does once a write completes.
            for b in now.iter_mut() {
                *b = BytesMut::new();
            }
            rest = later;
        }
        Ok(())
    }

    fn pwrite_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match rustix::io::pwrite(&self.file, buf, self.pos) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    self.pos += n as u64;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn pwritev_all(&mut self, bufs: &[BytesMut]) -> io::Result<()> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut done = 0usize;
        while done < total {
            // Rebuild the iovecs past what was written (short writes are rare).
            let mut skip = done;
            let slices: Vec<IoSlice<'_>> = bufs
                .iter()
                .filter_map(|b| {
                    if skip >= b.len() {
                        skip -= b.len();
                        return None;
                    }
                    let s = IoSlice::new(&b[skip..]);
                    skip = 0;
                    Some(s)
                })
                .collect();
            match rustix::io::pwritev(&self.file, &slices, self.pos) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    self.pos += n as u64;
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Batches a pipelined writer may have unacknowledged: 64 batches of [`BATCH_BYTES`], 4 MiB.
pub const WINDOW: usize = 64;

/// How the append benchmarks hand batches to the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One batch at a time: ours `append` (returns once durable), raw `pwrite`
    /// (+ `fdatasync`) per batch.
    SyncEach,
    /// Ours `submit` with [`WINDOW`] batches in flight; raw one `pwritev` (+ one
    /// `fdatasync`) per group of batches (see [`RawGroups`]).
    Pipelined,
}

/// How the raw writer groups batches in [`Mode::Pipelined`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawGroups<'a> {
    /// [`WINDOW`] batches per `pwritev` (+ `fdatasync`): the same bound on unacknowledged
    /// data as ours.
    Window,
    /// The groups ours' write jobs carried (from [`ours_pipelined`]): as many `pwritev`
    /// and `fdatasync` calls as ours made, each with the same bytes.
    Replay(&'a [usize]),
}

/// Which write path ours uses.
pub const BACKENDS: [(IoBackend, &str); 2] = [
    (IoBackend::Uring, "io_uring"),
    (IoBackend::Fallback, "pwritev"),
];

/// One append benchmark: durability, record size, mode and how much one run writes.
#[derive(Debug, Clone, Copy)]
pub struct AppendCase {
    /// Durability of ours; raw fdatasyncs when this is [`Durability::Fsync`].
    pub durability: Durability,
    /// Bytes of each record's value.
    pub record_len: usize,
    /// How batches are handed over.
    pub mode: Mode,
    /// Batches of [`BATCH_BYTES`] one run writes.
    pub batches: usize,
}

/// The append benchmarks: {Written, Fsync} x {100 B, 1 KiB} x {sync-each, pipelined}.
///
/// One run writes 64 MiB (Written, sync-each), 128 MiB (Written, pipelined), 16 MiB
/// (Fsync, sync-each) or 64 MiB (Fsync, pipelined): long enough (roughly 20-150 ms) for
/// the clock and scheduler noise to stay small, short enough that Written runs never
/// reach the kernel's background writeback threshold.
pub fn append_cases() -> Vec<AppendCase> {
    let mut cases = Vec::new();
    for durability in [Durability::Written, Durability::Fsync] {
        let sizes = match durability {
            Durability::Fsync => [(Mode::SyncEach, 256), (Mode::Pipelined, 1024)],
            _ => [(Mode::SyncEach, 1024), (Mode::Pipelined, 2048)],
        };
        for record_len in [100, 1024] {
            for (mode, batches) in sizes {
                cases.push(AppendCase {
                    durability,
                    record_len,
                    mode,
                    batches,
                });
            }
        }
    }
    cases
}

/// What one timed run measured.
#[derive(Debug, Clone, Default)]
pub struct RunStats {
    /// Time spent writing (setup and teardown excluded).
    pub elapsed: Duration,
    /// Batches per write: ours' write jobs, raw `pwrite`/`pwritev` calls.
    pub groups: Vec<usize>,
    /// Per-batch latencies in ns (sync-each only, when asked for).
    pub latencies: Vec<u64>,
    /// Process CPU time (all threads) during the timed part; see [`process_cpu`].
    pub cpu: Duration,
}

impl AppendCase {
    /// A short name such as `fsync/1KiB/pipelined`.
    pub fn name(&self) -> String {
        let durability = match self.durability {
            Durability::None => "none",
            Durability::Written => "written",
            Durability::Fsync => "fsync",
        };
        let size = if self.record_len % 1024 == 0 {
            format!("{}KiB", self.record_len / 1024)
        } else {
            format!("{}B", self.record_len)
        };
        let mode = match self.mode {
            Mode::SyncEach => "sync-each",
            Mode::Pipelined => "pipelined",
        };
        format!("{durability}/{size}/{mode}")
    }

    /// Encodes this case's batches (uncompressed).
    pub fn workload(&self) -> Workload {
        Workload::new(
            self.record_len,
            BATCH_BYTES,
            self.batches,
            Compression::None,
        )
    }

    /// Appends `w` to a fresh partition using `backend`; only the appends (and the final
    /// drain) are timed.
    pub fn run_ours(
        &self,
        w: &Workload,
        backend: IoBackend,
        latencies: bool,
    ) -> Result<RunStats, BoxError> {
        let (dir, mut log) = open_ours(self.durability, backend)?;
        let batches = w.copies();
        let mut stats = RunStats::default();
        let cpu = process_cpu();
        let started = Instant::now();
        match self.mode {
            Mode::SyncEach => {
                let lat = latencies.then_some(&mut stats.latencies);
                ours_sync_each(&mut log, batches, lat)?;
            }
            Mode::Pipelined => stats.groups = ours_pipelined(&mut log, batches, WINDOW)?,
        }
        stats.elapsed = started.elapsed();
        stats.cpu = process_cpu().saturating_sub(cpu);
        if stats.groups.is_empty() {
            stats.groups = vec![1; w.batches.len()];
        }
        if log.high_watermark() != w.records {
            return Err(format!("ours stored {} records", log.high_watermark()).into());
        }
        drop(log);
        drop(dir);
        Ok(stats)
    }

    /// Writes `w` to a fresh raw file (grouped per `groups` when pipelined); only the
    /// writes (and syncs) are timed.
    pub fn run_raw(
        &self,
        w: &Workload,
        groups: RawGroups<'_>,
        latencies: bool,
    ) -> Result<RunStats, BoxError> {
        let mut raw = RawFile::create(SEGMENT_BYTES)?;
        let batches = w.copies_with_offsets();
        let sync = self.durability == Durability::Fsync;
        let mut stats = RunStats::default();
        let window = [WINDOW];
        let sizes = match groups {
            RawGroups::Window => &window[..],
            RawGroups::Replay(g) => g,
        };
        let cpu = process_cpu();
        let started = Instant::now();
        match self.mode {
            Mode::SyncEach => {
                let lat = latencies.then_some(&mut stats.latencies);
                raw.write_each(batches, sync, lat)?;
            }
            Mode::Pipelined => raw.write_groups(batches, sizes, sync)?,
        }
        stats.elapsed = started.elapsed();
        stats.cpu = process_cpu().saturating_sub(cpu);
        stats.groups = match self.mode {
            Mode::SyncEach => vec![1; w.batches.len()],
            Mode::Pipelined => {
                let mut left = w.batches.len();
                let last = sizes.last().copied().unwrap_or(1);
                let mut out = Vec::new();
                for g in sizes.iter().copied().chain(std::iter::repeat(last)) {
                    if left == 0 {
                        break;
                    }
                    let g = g.clamp(1, 1024).min(left);
                    out.push(g);
                    left -= g;
                }
                out
            }
        };
        drop(raw);
        Ok(stats)
    }
}

/// CPU time (user + system) consumed so far by this process, all its threads included
/// (io_uring workers too), from `/proc/self/stat`; 10 ms resolution.
pub fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // USER_HZ is 100 on every Linux architecture strata targets.
    Duration::from_millis(ticks * 10)
}

/// CPU time (user + system) and context switches (voluntary and not) of this process
/// so far, threads that exited included, from getrusage(2).
pub fn process_usage() -> (Duration, u64) {
    // SAFETY: `rusage` is plain integers, for which all-zero bytes are a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one `rusage` into the valid, exclusively borrowed `ru`;
    // RUSAGE_SELF cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| {
        Duration::new(tv.tv_sec.max(0) as u64, (tv.tv_usec.max(0) as u32) * 1000)
    };
    (
        t(ru.ru_utime) + t(ru.ru_stime),
        (ru.ru_nvcsw.max(0) + ru.ru_nivcsw.max(0)) as u64,
    )
}

/// Waits, up to `limit`, until no other thread of this process is running; true if they
/// all settled.
///
/// The kernel brings another thread's CPU time up to date only at a tick (4 ms here) or
/// when that thread is switched out, so a reading taken while a shard runs on through a
/// round shorter than a tick leaves out most of that round. Taking [`process_usage`]
/// after this makes every thread's share current.
pub fn settle_threads(limit: Duration) -> bool {
    let me = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_owned()));
    let deadline = Instant::now() + limit;
    loop {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return false;
        };
        let running = tasks.flatten().any(|task| {
            if Some(task.file_name()) == me {
                return false;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            // The state is the first field after the parenthesised command name.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            state == Some("R")
        });
        if !running {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

thread_local! {
    /// CPU time this thread has spent in [`settled_usage`] waiting for others to settle.
    static SETTLING: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// CPU time of the calling thread, current to the moment of the call.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// [`process_usage`] once the other threads have settled (see [`settle_threads`]; waits
/// at most 100 ms, and warns when they did not settle), less the CPU time this thread
/// has spent waiting for them in such calls, so the wait is not counted as work.
pub fn settled_usage() -> (Duration, u64) {
    let before = thread_cpu();
    if !settle_threads(Duration::from_millis(100)) {
        eprintln!("note: a thread was still running after 100 ms; its CPU time may lag");
    }
    let waited = thread_cpu().saturating_sub(before);
    let total = SETTLING.with(|s| {
        s.set(s.get() + waited);
        s.get()
    });
    let (cpu, switches) = process_usage();
    (cpu.saturating_sub(total), switches)
}

/// Median of `values` (sorts them); NaN when empty.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The `p`-th percentile (0..=100, nearest rank) of already sorted `sorted`; 0 when empty.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64 - 1e-9).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_exact_length() {
        let mut rng = Rng::new(1);
        let mut out = Vec::new();
        for len in [0, 1, 2, 10, 100, 1024] {
            payload(7, len, &mut rng, &mut out);
            assert_eq!(out.len(), len);
        }
    }

    #[test]
    fn workload_batches_fit_the_target() {
        let w = Workload::new(100, BATCH_BYTES, 3, Compression::None);
        assert_eq!(w.batches.len(), 3);
        assert!(w.batches.iter().all(|b| b.len() <= BATCH_BYTES));
        assert!(w.records_per_batch > 500, "{}", w.records_per_batch);
        assert_eq!(w.records, 3 * w.records_per_batch as u64);
    }

    /// Ours and raw put the very same bytes on disk, whichever mode writes them.
    #[test]
    fn ours_and_raw_write_identical_bytes() {
        let w = Workload::new(1024, BATCH_BYTES, 40, Compression::None);
        let expected = w.copies_with_offsets().concat();
        for (backend, _) in BACKENDS {
            for durability in [Durability::Written, Durability::Fsync] {
                let sync = durability == Durability::Fsync;
                let (dir, mut log) = open_ours(durability, backend).unwrap();
                ours_sync_each(&mut log, w.copies()[..20].to_vec(), None).unwrap();
                let groups = ours_pipelined(&mut log, w.copies()[20..].to_vec(), 4).unwrap();
                assert_eq!(groups.iter().sum::<usize>(), 20, "{groups:?}");
                assert!(groups.iter().all(|&g| g <= 4), "{groups:?}");
                assert_eq!(log.high_watermark(), w.records);
                let ours = std::fs::read(dir.path().join("00000000000000000000.log")).unwrap();
                assert_eq!(&ours[..expected.len()], &expected[..]);

                let mut raw = RawFile::create(SEGMENT_BYTES).unwrap();
                let mut copies = w.copies_with_offsets();
                let second = copies.split_off(20);
                let mut lat = Vec::new();
                raw.write_each(copies, sync, Some(&mut lat)).unwrap();
                raw.write_groups(second, &[1, 3, 7], sync).unwrap();
                assert_eq!(lat.len(), 20);
                let raw_bytes = std::fs::read(raw.path()).unwrap();
                assert_eq!(&raw_bytes[..expected.len()], &expected[..]);
            }
        }
    }

    #[test]
    fn process_usage_counts_cpu_and_switches_of_exited_threads() {
        let (cpu0, switches0) = process_usage();
        std::thread::spawn(|| {
            let t = std::time::Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_millis(50) {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            std::thread::sleep(Duration::from_millis(1));
        })
        .join()
        .unwrap();
        let (cpu1, switches1) = process_usage();
        assert!(
            cpu1 >= cpu0 + Duration::from_millis(20),
            "{cpu0:?} -> {cpu1:?}"
        );
        assert!(switches1 > switches0, "{switches0} -> {switches1}");
    }

    #[test]
    fn settled_usage_includes_a_thread_that_was_running_when_asked() {
        use std::sync::mpsc;
        let spin = |d: Duration| {
            let t = Instant::now();
            let mut x = 0u64;
            while t.elapsed() < d {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        };
        let (go_tx, go_rx) = mpsc::channel();
        let (spent_tx, spent_rx) = mpsc::channel();
        let (exit_tx, exit_rx) = mpsc::channel::<()>();
        let (cpu0, _) = process_usage();
        let t = std::thread::spawn(move || {
            spin(Duration::from_millis(3));
            go_tx.send(()).unwrap();
            // Still running when the reading is asked for: only settling waits this out.
            spin(Duration::from_millis(5));
            spent_tx.send(thread_cpu()).unwrap();
            exit_rx.recv().unwrap();
        });
        go_rx.recv().unwrap();
        let (cpu1, _) = settled_usage();
        let spent: Duration = spent_rx.recv().unwrap();
        exit_tx.send(()).unwrap();
        t.join().unwrap();
        assert!(
            cpu1 - cpu0 >= spent,
            "{cpu0:?} -> {cpu1:?}, the spinner spent {spent:?}"
        );
    }

    #[test]
    fn a_running_thread_never_settles() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let t = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        std::thread::sleep(Duration::from_millis(2));
        assert!(!settle_threads(Duration::from_millis(20)));
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
    }

    #[test]
    fn statistics() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 50.0), 500);
        assert_eq!(percentile(&v, 99.0), 990);
        assert_eq!(percentile(&v, 99.9), 999);
        assert_eq!(percentile(&v, 100.0), 1000);
    }
}
