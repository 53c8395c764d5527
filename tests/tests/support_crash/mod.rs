//! Shared helpers of the crash and fault tests: a deterministic record model, writers
//! that remember where each batch landed, readers that check every served record against
//! the model, file surgery, and tmpfs mounts that always come down again.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use bytes::BytesMut;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use strata_log::format::{BatchBuilder, BatchIter, BuilderOptions, Compression, Header};
use strata_log::recovery::ScanStop;
use strata_log::{Durability, Error, IoBackend, Partition, PartitionConfig};

/// Both write paths; every scenario runs on each.
pub const BACKENDS: [IoBackend; 2] = [IoBackend::Uring, IoBackend::Fallback];
/// Smallest segment size the log accepts; the active segment is preallocated to it.
pub const SEGMENT_BYTES: u64 = 1 << 20;
/// Small index interval, so that segments of a few KiB get many index entries.
pub const INDEX_INTERVAL: u32 = 256;
/// Timestamp of offset 0 (µs); later offsets are roughly 1 ms apart, with jitter.
pub const BASE_TS: i64 = 1_700_000_000_000_000;

/// Offset index entry size.
pub const OFFSET_ENTRY: usize = 8;
/// Time index entry size.
pub const TIME_ENTRY: usize = 12;
/// Fixed batch header size.
pub const HEADER_LEN: u64 = 56;

/// The test configuration: 1 MiB segments, 256-byte index interval, nothing expires.
pub fn config(backend: IoBackend) -> PartitionConfig {
    PartitionConfig {
        segment_bytes: SEGMENT_BYTES,
        segment_age: None,
        index_interval_bytes: INDEX_INTERVAL,
        durability: Durability::Written,
        retention_bytes: None,
        retention_age: None,
        io_backend: backend,
        preallocate: true,
        ..PartitionConfig::default()
    }
}

/// Opens `dir` with `config`, panicking with the context on failure.
///
/// `Error::Locked` is retried for a while: a process spawned by another test thread
/// (`mount`, or a test's child process) holds a copy of every open descriptor, the lock
/// file's included, until it execs, so a reopen right after a drop can briefly find the
/// lock taken. A lock that is never released still fails the test.
pub fn open_with(dir: &Path, config: PartitionConfig, ctx: &str) -> Partition {
    let backend = config.io_backend;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Partition::open(dir, config.clone()) {
            Ok(p) => return p,
            Err(Error::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!(
                "{ctx}: opening {} on {backend:?} failed: {e}",
                dir.display()
            ),
        }
    }
}

/// Opens `dir` with the test configuration on `backend`.
pub fn open(dir: &Path, backend: IoBackend, ctx: &str) -> Partition {
    open_with(dir, config(backend), ctx)
}

// ---------------------------------------------------------------------------------------
// Deterministic randomness.

/// SplitMix64 finaliser: a stateless 64-bit hash.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A small seeded generator (SplitMix64), so that every failure is reproducible.
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Prng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0);
        self.next_u64() % n
    }

    /// Uniform-ish in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo)
    }

    /// `len` random bytes, none of them zero.
    pub fn nonzero_bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| 1 + self.below(255) as u8).collect()
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

// ---------------------------------------------------------------------------------------
// The record model: every field of the record at offset `o` is a function of `o`.

/// Timestamp of the record at offset `o`: increasing overall, but not monotonic (jitter
/// of ±0.75 ms between neighbours, and some records 5 s early or late).
pub fn record_ts(o: u64) -> i64 {
    let outlier = match o % 23 {
        11 => 5_000_000,
        17 => -5_000_000,
        _ => 0,
    };
    BASE_TS + (o as i64) * 1000 + (mix(o) % 1501) as i64 - 750 + outlier
}

/// Key of the record at offset `o` (some records have none).
pub fn record_key(o: u64) -> Option<Vec<u8>> {
    (o % 7 != 3).then(|| format!("key-{o}").into_bytes())
}

/// Value of the record at offset `o` (some records are tombstones).
pub fn record_value(o: u64) -> Option<Vec<u8>> {
    (o % 11 != 5).then(|| {
        let reps = 1 + (mix(o ^ 0x5EED) % 5) as usize;
        format!("value-{o};").repeat(reps).into_bytes()
    })
}

/// Headers of the record at offset `o`, as (key, value) pairs.
pub fn record_headers(o: u64) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    if o % 5 == 0 {
        vec![(b"trace".to_vec(), Some(o.to_le_bytes().to_vec()))]
    } else {
        Vec::new()
    }
}

/// Encodes the records for offsets `first..first + count` as one batch.
pub fn build_batch(first: u64, count: u64, compression: Compression) -> BytesMut {
    let mut builder = BatchBuilder::new(BuilderOptions {
        compression,
        ..BuilderOptions::default()
    });
    for o in first..first + count {
        let key = record_key(o);
        let value = record_value(o);
        let owned = record_headers(o);
        let headers: Vec<Header<'_>> = owned
            .iter()
            .map(|(k, v)| Header {
                key: k,
                value: v.as_deref(),
            })
            .collect();
        builder
            .push(record_ts(o), key.as_deref(), value.as_deref(), &headers)
            .expect("record fits the batch");
    }
    builder.finish().expect("batch is not empty")
}

/// Where one acknowledged batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Offset of its first record.
    pub base: u64,
    /// Offset after its last record.
    pub next: u64,
    /// Base offset of the segment holding it.
    pub segment: u64,
    /// Byte position in that segment.
    pub pos: u64,
    /// Encoded length.
    pub len: u64,
}

impl Written {
    /// Byte position just past the batch.
    pub fn end(&self) -> u64 {
        self.pos + self.len
    }
}

/// Appends one batch of `count` model records and checks the offsets it was given.
pub fn append(p: &mut Partition, count: u64, compression: Compression) -> Written {
    let first = p.next_offset();
    assert_eq!(first, p.high_watermark(), "no append is pending");
    let batch = build_batch(first, count, compression);
    let len = batch.len() as u64;
    let appended = p
        .append(batch)
        .unwrap_or_else(|e| panic!("append at {first} failed: {e}"));
    assert_eq!(appended.base_offset, first, "append got the next offset");
    assert_eq!(appended.last_offset, first + count - 1);
    assert_eq!(
        p.high_watermark(),
        first + count,
        "acknowledged means readable"
    );
    let seg = *p.segments().last().expect("there is an active segment");
    assert!(seg.size >= len);
    Written {
        base: first,
        next: first + count,
        segment: seg.base_offset,
        pos: seg.size - len,
        len,
    }
}

/// Appends `batches` batches of 1 to 6 records, every third one lz4-compressed.
pub fn fill(p: &mut Partition, batches: usize, seed: u64) -> Vec<Written> {
    (0..batches as u64)
        .map(|i| {
            let h = mix(seed ^ i);
            let count = 1 + h % 6;
            let compression = if (h >> 8) % 3 == 2 {
                Compression::Lz4
            } else {
                Compression::None
            };
            append(p, count, compression)
        })
        .collect()
}

/// The batches of `written` that live in segment `segment`.
pub fn in_segment(written: &[Written], segment: u64) -> Vec<Written> {
    written
        .iter()
        .copied()
        .filter(|w| w.segment == segment)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Reading back.

/// Reads every record from the log start to the high watermark, checking each against
/// the model, and returns the offsets served (in order).
///
/// Also checks that a read at the high watermark is empty and one past it is refused.
pub fn read_all(p: &Partition, ctx: &str) -> Vec<u64> {
    let hw = p.high_watermark();
    let mut next = p.log_start_offset();
    let mut served = Vec::new();
    let mut scratch = Vec::new();
    while next < hw {
        let fetch = p
            .read(next, 8 * 1024)
            .unwrap_or_else(|e| panic!("{ctx}: read({next}) below hw {hw} failed: {e}"));
        assert_eq!(fetch.high_watermark, hw, "{ctx}");
        assert!(
            !fetch.bytes.is_empty(),
            "{ctx}: read({next}) below hw {hw} returned no batch"
        );
        for batch in BatchIter::new(&fetch.bytes) {
            let batch =
                batch.unwrap_or_else(|e| panic!("{ctx}: read({next}) served a bad batch: {e}"));
            let h = *batch.header();
            assert!(
                h.base_offset >= next,
                "{ctx}: read({next}) served batch {}..{} that starts before it",
                h.base_offset,
                h.next_offset()
            );
            assert!(
                h.next_offset() <= hw,
                "{ctx}: served batch {}..{} past the high watermark {hw}",
                h.base_offset,
                h.next_offset()
            );
            let records = batch
                .records(&mut scratch)
                .unwrap_or_else(|e| panic!("{ctx}: batch at {}: {e}", h.base_offset));
            let mut expect = h.base_offset;
            for record in records {
                let r = record
                    .unwrap_or_else(|e| panic!("{ctx}: record in batch {}: {e}", h.base_offset));
                assert_eq!(r.offset, expect, "{ctx}: record offsets are contiguous");
                let o = r.offset;
                assert_eq!(r.timestamp, record_ts(o), "{ctx}: timestamp of {o}");
                assert_eq!(
                    r.key.map(<[u8]>::to_vec),
                    record_key(o),
                    "{ctx}: key of {o}"
                );
                assert_eq!(
                    r.value.map(<[u8]>::to_vec),
                    record_value(o),
                    "{ctx}: value of {o}"
                );
                let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = r
                    .headers
                    .map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec)))
                    .collect();
                assert_eq!(headers, record_headers(o), "{ctx}: headers of {o}");
                served.push(o);
                expect += 1;
            }
            assert_eq!(
                expect,
                h.next_offset(),
                "{ctx}: record count of {}",
                h.base_offset
            );
            next = h.next_offset();
        }
    }
    let at_hw = p
        .read(hw, 1024)
        .unwrap_or_else(|e| panic!("{ctx}: read at hw {hw} failed: {e}"));
    assert!(
        at_hw.bytes.is_empty(),
        "{ctx}: read at hw {hw} served bytes"
    );
    assert!(
        matches!(p.read(hw + 1, 1024), Err(Error::OffsetOutOfRange { .. })),
        "{ctx}: read past hw {hw} was not refused"
    );
    served
}

/// Offsets covered by `ranges`, in order.
pub fn offsets_of(ranges: &[std::ops::Range<u64>]) -> Vec<u64> {
    ranges.iter().flat_map(|r| r.clone()).collect()
}

/// Asserts that the log serves exactly the records at `expected` offsets, all intact.
pub fn assert_serves(p: &Partition, expected: &[u64], ctx: &str) {
    let served = read_all(p, ctx);
    if served != expected {
        let first_diff = served
            .iter()
            .zip(expected)
            .position(|(a, b)| a != b)
            .unwrap_or(served.len().min(expected.len()));
        panic!(
            "{ctx}: served {} records, expected {}; first difference at #{first_diff}: \
             served {:?}, expected {:?}",
            served.len(),
            expected.len(),
            served.get(first_diff),
            expected.get(first_diff)
        );
    }
}

/// Asserts that time lookups agree with a brute-force search over the `expected` offsets,
/// probing around the timestamp of every `stride`-th record and past both ends.
pub fn assert_time_lookups(p: &Partition, expected: &[u64], stride: usize, ctx: &str) {
    let brute = |t: i64| expected.iter().copied().find(|&o| record_ts(o) >= t);
    let mut probes = vec![i64::MIN, BASE_TS - 10_000_000];
    for &o in expected.iter().step_by(stride.max(1)) {
        let t = record_ts(o);
        probes.extend([t - 1, t, t + 1]);
    }
    if let Some(max) = expected.iter().map(|&o| record_ts(o)).max() {
        probes.extend([max, max + 1, i64::MAX]);
    }
    for t in probes {
        let got = p
            .offset_for_timestamp(t)
            .unwrap_or_else(|e| panic!("{ctx}: offset_for_timestamp({t}) failed: {e}"));
        assert_eq!(got, brute(t), "{ctx}: offset_for_timestamp({t})");
    }
}

// ---------------------------------------------------------------------------------------
// Files.

/// Path of the file of segment `base` with `suffix` in `dir`.
pub fn seg_file(dir: &Path, base: u64, suffix: &str) -> PathBuf {
    dir.join(format!("{base:020}.{suffix}"))
}

/// Copies every regular file of `src` into `dst` (created if needed).
pub fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("create copy dir");
    for entry in fs::read_dir(src).expect("read pristine dir") {
        let entry = entry.expect("dir entry");
        if entry.file_type().expect("file type").is_file() {
            fs::copy(entry.path(), dst.join(entry.file_name())).expect("copy file");
        }
    }
}

/// A fresh copy of `pristine` in a new temporary directory.
pub fn fresh_copy(pristine: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(pristine, dir.path());
    dir
}

/// Sets the length of `path`.
pub fn set_len(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len))
        .unwrap_or_else(|e| panic!("set_len {}: {e}", path.display()));
}

/// Writes `bytes` at `pos` of `path` (the file grows if needed).
pub fn write_at(path: &Path, pos: u64, bytes: &[u8]) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.write_all_at(bytes, pos))
        .unwrap_or_else(|e| {
            panic!(
                "write {} bytes at {pos} of {}: {e}",
                bytes.len(),
                path.display()
            )
        });
}

/// Zeroes bytes `from..to` of `path`, as a torn write inside a preallocated file leaves them.
pub fn zero_range(path: &Path, from: u64, to: u64) {
    if to > from {
        write_at(path, from, &vec![0u8; (to - from) as usize]);
    }
}

/// Flips bit `bit` of the byte at `pos` of `path`.
pub fn flip_bit(path: &Path, pos: u64, bit: u8) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open for bit flip");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, pos).expect("read byte to flip");
    b[0] ^= 1 << bit;
    f.write_all_at(&b, pos).expect("write flipped byte");
}

/// Reads a whole file.
pub fn read_file(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Length of a file.
pub fn file_len(path: &Path) -> u64 {
    File::open(path)
        .and_then(|f| f.metadata())
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .len()
}

/// Asserts that the active segment file is back to its preallocated length and that
/// everything from `valid_len` on reads as zeros (the torn or corrupt tail is gone).
pub fn assert_active_file_repaired(path: &Path, valid_len: u64, ctx: &str) {
    let bytes = read_file(path);
    assert_eq!(
        bytes.len() as u64,
        SEGMENT_BYTES,
        "{ctx}: active segment file length after recovery"
    );
    if let Some(i) = bytes[valid_len as usize..].iter().position(|&b| b != 0) {
        panic!(
            "{ctx}: byte {} of the active segment is nonzero after recovery truncated it to {valid_len}",
            valid_len as usize + i
        );
    }
}

// ---------------------------------------------------------------------------------------
// A pristine partition directory, copied and damaged once per case.

/// A partition directory written once and copied for each damage.
pub struct Pristine {
    /// The directory (kept for the lifetime of the test).
    pub dir: tempfile::TempDir,
    /// Write path used to write it and to reopen the copies.
    pub backend: IoBackend,
    /// Closed cleanly (marker present) rather than dropped.
    pub clean: bool,
    /// Every acknowledged batch, oldest first.
    pub written: Vec<Written>,
    /// Base offsets of all segments, the active one last.
    pub segments: Vec<u64>,
    /// Base offset of the active segment.
    pub active: u64,
    /// Valid bytes in the active segment.
    pub data_len: u64,
    /// The active segment file as written.
    pub bytes: Vec<u8>,
}

impl Pristine {
    /// One sealed segment per entry of `sealed` (that many batches each), then
    /// `active_batches` batches in the active segment and a last batch of 6 uncompressed
    /// records (a few hundred bytes); then closed (`clean`) or dropped.
    pub fn build(
        backend: IoBackend,
        sealed: &[usize],
        active_batches: usize,
        clean: bool,
        seed: u64,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = open(dir.path(), backend, "pristine");
        let mut written = Vec::new();
        for (i, &n) in sealed.iter().enumerate() {
            written.extend(fill(&mut p, n, seed.wrapping_add(i as u64)));
            p.roll().expect("roll");
        }
        written.extend(fill(&mut p, active_batches, seed.wrapping_sub(1)));
        written.push(append(&mut p, 6, Compression::None));
        let segments: Vec<u64> = p.segments().iter().map(|s| s.base_offset).collect();
        assert_eq!(segments.len(), sealed.len() + 1);
        let active = *segments.last().expect("active");
        let data_len = written.last().expect("batches").end();
        if clean {
            p.close().expect("close");
        } else {
            drop(p);
        }
        let bytes = read_file(&seg_file(dir.path(), active, "log"));
        assert_eq!(
            bytes.len() as u64,
            SEGMENT_BYTES,
            "active segment is preallocated"
        );
        Pristine {
            dir,
            backend,
            clean,
            written,
            segments,
            active,
            data_len,
            bytes,
        }
    }

    /// The active segment's data file in `dir` (a copy of this directory).
    pub fn active_log(&self, dir: &Path) -> PathBuf {
        seg_file(dir, self.active, "log")
    }

    /// A fresh copy of the directory.
    pub fn copy(&self) -> tempfile::TempDir {
        fresh_copy(self.dir.path())
    }

    /// Offset after the last batch.
    pub fn end_offset(&self) -> u64 {
        self.written.last().expect("batches").next
    }

    /// Reopens a damaged copy and checks that exactly the first `keep` batches survive
    /// (the damage being in the active segment), then that appends continue right after
    /// them, across one more reopen.
    pub fn check_recovery(&self, dir: &Path, keep: usize, expect: Expect, ctx: &str) {
        let (hw, valid_len) = match self.written.get(keep) {
            Some(w) => {
                assert_eq!(
                    w.segment, self.active,
                    "{ctx}: damage is in the active segment"
                );
                (w.base, w.pos)
            }
            None => (self.end_offset(), self.data_len),
        };
        let mut p = open(dir, self.backend, ctx);
        let report = p.open_report().clone();
        assert_eq!(report.clean_shutdown, self.clean, "{ctx}: {report:?}");
        assert_eq!(report.segments, self.segments.len(), "{ctx}: {report:?}");
        assert_eq!(p.high_watermark(), hw, "{ctx}: high watermark; {report:?}");
        assert_eq!(p.next_offset(), hw, "{ctx}: next offset");
        assert_eq!(report.active_valid_len, valid_len, "{ctx}: {report:?}");
        expect.check(report.truncated_because.as_ref(), ctx);
        if !self.clean {
            assert!(
                report.rebuilt_active_index,
                "{ctx}: unclean open rebuilds: {report:?}"
            );
        }
        assert_active_file_repaired(&self.active_log(dir), valid_len, ctx);
        assert_serves(&p, &(0..hw).collect::<Vec<_>>(), ctx);

        let w = append(&mut p, 3, Compression::Lz4);
        assert_eq!(w.base, hw, "{ctx}: the first append after recovery");
        assert_eq!((w.segment, w.pos), (self.active, valid_len), "{ctx}");
        let w2 = append(&mut p, 2, Compression::None);
        assert_eq!(w2.base, hw + 3, "{ctx}");
        assert_serves(&p, &(0..hw + 5).collect::<Vec<_>>(), ctx);
        // Alternate a clean close and a crash (drop) before the second reopen.
        let clean_again = keep % 2 == 0;
        if clean_again {
            p.close().expect("close");
        } else {
            drop(p);
        }
        let ctx2 = format!("{ctx}, reopened after appending");
        let p = open(dir, self.backend, &ctx2);
        let report = p.open_report().clone();
        assert_eq!(report.clean_shutdown, clean_again, "{ctx2}: {report:?}");
        assert_eq!(report.truncated_because, None, "{ctx2}: {report:?}");
        assert_eq!(p.high_watermark(), hw + 5, "{ctx2}");
        assert_serves(&p, &(0..hw + 5).collect::<Vec<_>>(), &ctx2);
    }
}

/// The damage recovery must report for the active segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// None: whatever follows the valid prefix reads as zeros.
    Clean,
    /// A torn or corrupt batch (which of the two depends on the bytes).
    Damaged,
    /// A batch that fails validation (CRC, header fields).
    Corrupt,
    /// Exactly this.
    Exactly(ScanStop),
}

impl Expect {
    /// Asserts that recovery reported what is expected.
    pub fn check(&self, found: Option<&ScanStop>, ctx: &str) {
        match self {
            Expect::Clean => assert_eq!(found, None, "{ctx}: no damage expected"),
            Expect::Damaged => assert!(
                matches!(found, Some(ScanStop::Torn | ScanStop::Corrupt(_))),
                "{ctx}: expected a torn or corrupt batch, recovery found {found:?}"
            ),
            Expect::Corrupt => assert!(
                matches!(found, Some(ScanStop::Corrupt(_))),
                "{ctx}: expected a corrupt batch, recovery found {found:?}"
            ),
            Expect::Exactly(stop) => assert_eq!(found, Some(stop), "{ctx}"),
        }
    }
}

/// True when `bytes[from..to]` are all zero.
pub fn all_zero(bytes: &[u8], from: u64, to: u64) -> bool {
    bytes[from as usize..to as usize].iter().all(|&b| b == 0)
}

// ---------------------------------------------------------------------------------------
// tmpfs mounts (root only).

/// True when the environment asks to skip the tests that mount file systems.
pub fn skip_mount_tests() -> bool {
    std::env::var_os("STRATA_SKIP_MOUNT_TESTS").is_some_and(|v| v == "1")
}

/// A tmpfs mounted on a fresh temporary directory; lazily unmounted when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
    // Dropped after `drop` has unmounted, so that the empty mount point is removed.
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it).
    ///
    /// Fails the test when mounting is impossible, unless `STRATA_SKIP_MOUNT_TESTS=1`,
    /// in which case it prints a notice and returns `None`.
    pub fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir for the mount point");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => {
                return Some(Tmpfs {
                    path: dir.path().to_path_buf(),
                    _dir: dir,
                });
            }
            Ok(o) => format!(
                "`mount -t tmpfs` exited with {}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("could not run `mount`: {e}"),
        };
        if skip_mount_tests() {
            eprintln!("NOTICE: skipping a tmpfs test because STRATA_SKIP_MOUNT_TESTS=1 ({why})");
            return None;
        }
        panic!(
            "cannot mount a tmpfs at {}: {why}. The ENOSPC and read-only tests mount small \
             tmpfs file systems and must run as root (CAP_SYS_ADMIN); set \
             STRATA_SKIP_MOUNT_TESTS=1 to skip them",
            dir.path().display()
        );
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remounts with `options` (e.g. `ro` or `rw`).
    pub fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .output()
            .expect("run mount -o remount");
        assert!(
            out.status.success(),
            "mount -o remount,{options} {} failed: {}",
            self.path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
}

/// Runs `body` in a child process: this test binary again, filtered to the test `name`
/// (which must be the calling test), so that a fatal signal (SIGBUS from a memory-mapped
/// file on a full tmpfs, say) fails only this test and says so, instead of killing every
/// test of the binary.
pub fn in_child_process(name: &str, body: impl FnOnce()) {
    const CHILD: &str = "STRATA_TEST_CHILD";
    if std::env::var_os(CHILD).is_some_and(|v| v == name) {
        body();
        return;
    }
    // /proc/self/exe names this very binary even when a rebuild has since replaced the
    // file at its path.
    let exe = Path::new("/proc/self/exe");
    let exe = if exe.exists() {
        exe.to_path_buf()
    } else {
        std::env::current_exe().expect("test binary path")
    };
    let out = Command::new(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{name}: cannot run {} in a child process: {e}",
                exe.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let how = match (out.status.code(), out.status.signal()) {
        (_, Some(libc::SIGBUS)) => "was killed by SIGBUS".to_string(),
        (_, Some(sig)) => format!("was killed by signal {sig}"),
        (Some(code), None) => format!("exited with {code}"),
        (None, None) => "ended".to_string(),
    };
    assert!(
        out.status.success(),
        "{name}: the child process running it {how}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "{name}: the child process did not run the test\n--- stdout\n{stdout}"
    );
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: succeeds even while something still has a file open in the mount.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}
