//! Fault tests: bit flips in the active segment, damaged index files, truncated sealed
//! segments, a full disk (ENOSPC) and a read-only file system.
//!
//! The disk-full and read-only tests mount small tmpfs file systems and so must run as
//! root; set `STRATA_SKIP_MOUNT_TESTS=1` to skip them elsewhere. Every scenario runs on
//! both write paths (io_uring and the pwritev fallback).

mod support_crash;

use proptest::prelude::*;
use std::path::Path;
use strata_log::format::{BatchBuilder, BatchIter, BuilderOptions, Compression};
use strata_log::index::{decode_file, encode_file};
use strata_log::recovery::ScanStop;
use strata_log::{Error, IoBackend, Partition, PartitionConfig};
use support_crash::*;

// ---------------------------------------------------------------------------------------
// Bit flips in the active segment, found by the full scan after an unclean shutdown.

/// A single flipped bit anywhere in a batch but its base offset (which the CRC does not
/// cover) is caught by the CRC or the header checks: recovery keeps exactly the batches
/// before the damaged one, serves nothing after it, and appends continue at its offset.
#[test]
fn bit_flips_in_the_active_segment_truncate_at_the_damaged_batch() {
    for backend in BACKENDS {
        let seed = 0xB17F ^ backend as u64;
        let pristine = Pristine::build(backend, &[8], 40, false, seed);
        let active: Vec<usize> = (0..pristine.written.len())
            .filter(|&i| pristine.written[i].segment == pristine.active)
            .collect();
        let mut rng = Prng::new(seed);
        let pick = |rng: &mut Prng| active[rng.below(active.len() as u64) as usize];
        // Every header byte after the base offset of one batch, then random bytes anywhere.
        let mut cases = Vec::new();
        let one = pick(&mut rng);
        for byte in 8..HEADER_LEN {
            cases.push((one, byte, rng.below(8) as u8));
        }
        for _ in 0..120 {
            let i = pick(&mut rng);
            let w = pristine.written[i];
            cases.push((i, rng.range(8, w.len), rng.below(8) as u8));
        }
        for (i, byte, bit) in cases {
            let w = pristine.written[i];
            let ctx = format!(
                "{backend:?}, seed {seed:#x}: bit {bit} of byte {byte} of batch {i} ({w:?})"
            );
            let copy = pristine.copy();
            flip_bit(&pristine.active_log(copy.path()), w.pos + byte, bit);
            pristine.check_recovery(copy.path(), i, Expect::Damaged, &ctx);
        }
    }
}

/// A flipped bit in a base offset (not covered by the CRC) breaks offset continuity:
/// recovery reports the gap and truncates there.
#[test]
fn bit_flips_in_a_base_offset_truncate_at_the_gap() {
    for backend in BACKENDS {
        let seed = 0xBA5E ^ backend as u64;
        let pristine = Pristine::build(backend, &[8], 30, false, seed);
        let mut rng = Prng::new(seed);
        for (i, w) in pristine.written.iter().enumerate() {
            if w.segment != pristine.active {
                continue;
            }
            // Low, middle and the highest bits all get their turn.
            let bit = match i % 3 {
                0 => rng.below(8),
                1 => rng.below(64),
                _ => 56 + rng.below(8),
            };
            let ctx = format!("{backend:?}: bit {bit} of the base offset of batch {i} ({w:?})");
            let copy = pristine.copy();
            flip_bit(
                &pristine.active_log(copy.path()),
                w.pos + bit / 8,
                (bit % 8) as u8,
            );
            let expect = Expect::Exactly(ScanStop::OffsetGap {
                expected: w.base,
                found: w.base ^ (1 << bit),
            });
            pristine.check_recovery(copy.path(), i, expect, &ctx);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Damaged index files on a cleanly closed partition with several sealed segments.

/// The entries of an index file, which must be valid.
fn entries_of(file: &[u8], entry_len: usize, what: &str) -> Vec<u8> {
    decode_file(file, entry_len)
        .unwrap_or_else(|| panic!("{what} is not a valid index file"))
        .to_vec()
}

/// A cleanly closed partition with three sealed segments and the index files as written.
struct Indexed {
    pristine: Pristine,
    /// Per segment (oldest first): valid data length, `.index` and `.timeindex` files.
    files: Vec<(u64, Vec<u8>, Vec<u8>)>,
}

impl Indexed {
    fn build(backend: IoBackend, seed: u64) -> Self {
        let pristine = Pristine::build(backend, &[40, 35, 45], 40, true, seed);
        let dir = pristine.dir.path();
        let files = pristine
            .segments
            .iter()
            .map(|&base| {
                let len = if base == pristine.active {
                    pristine.data_len
                } else {
                    file_len(&seg_file(dir, base, "log"))
                };
                let index = read_file(&seg_file(dir, base, "index"));
                let times = read_file(&seg_file(dir, base, "timeindex"));
                let entries = entries_of(&index, OFFSET_ENTRY, "the .index").len();
                assert!(
                    entries >= 8 * OFFSET_ENTRY,
                    "segment {base} has index entries"
                );
                let entries = entries_of(&times, TIME_ENTRY, "the .timeindex").len();
                assert!(entries >= 3 * TIME_ENTRY, "segment {base} has time entries");
                (len, index, times)
            })
            .collect();
        Indexed { pristine, files }
    }

    /// Offset after the last record of segment `i`.
    fn segment_end(&self, i: usize) -> u64 {
        self.pristine
            .segments
            .get(i + 1)
            .copied()
            .unwrap_or(self.pristine.end_offset())
    }
}

/// How index files are damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexDamage {
    /// Both files overwritten with random bytes of the same length.
    RandomSameLength,
    /// Both files replaced by random bytes of a random length.
    RandomLength,
    /// Both files lose their last 1 to 11 bytes.
    CutShort,
    /// Both files cut to half their length.
    CutInHalf,
    /// Both files empty (created, then a crash before anything was written).
    Empty,
    /// Only the time index is empty; the offset index is intact.
    EmptyTimesOnly,
    /// Only the offset index is empty; the time index is intact.
    EmptyOffsetsOnly,
    /// Both files hold their entries but nothing after them.
    EntriesOnly,
    /// Both files deleted.
    Deleted,
    /// A well-formed offset index whose last entry points past the end of the data.
    OffsetPastEnd,
    /// A well-formed offset index whose last entry points into the middle of a batch.
    OffsetInsideBatch,
    /// A well-formed time index whose last entry names an offset past the segment's end.
    TimePastEnd,
}

impl IndexDamage {
    const ALL: [IndexDamage; 12] = [
        IndexDamage::RandomSameLength,
        IndexDamage::RandomLength,
        IndexDamage::CutShort,
        IndexDamage::CutInHalf,
        IndexDamage::Empty,
        IndexDamage::EmptyTimesOnly,
        IndexDamage::EmptyOffsetsOnly,
        IndexDamage::EntriesOnly,
        IndexDamage::Deleted,
        IndexDamage::OffsetPastEnd,
        IndexDamage::OffsetInsideBatch,
        IndexDamage::TimePastEnd,
    ];
}

fn damage_index(dir: &Path, ix: &Indexed, i: usize, damage: IndexDamage, rng: &mut Prng) {
    let base = ix.pristine.segments[i];
    let (len, ref index, ref times) = ix.files[i];
    let index_path = seg_file(dir, base, "index");
    let times_path = seg_file(dir, base, "timeindex");
    let mut offsets = entries_of(index, OFFSET_ENTRY, "the .index");
    let mut stamps = entries_of(times, TIME_ENTRY, "the .timeindex");
    let write = |path: &Path, bytes: &[u8]| std::fs::write(path, bytes).expect("write index");
    match damage {
        IndexDamage::RandomSameLength => {
            write(&index_path, &rng.bytes(index.len()));
            write(&times_path, &rng.bytes(times.len()));
        }
        IndexDamage::RandomLength => {
            let n = rng.range(1, 2000) as usize;
            write(&index_path, &rng.bytes(n));
            let n = rng.range(1, 2000) as usize;
            write(&times_path, &rng.bytes(n));
        }
        IndexDamage::CutShort => {
            set_len(&index_path, index.len() as u64 - rng.range(1, 12));
            set_len(&times_path, times.len() as u64 - rng.range(1, 12));
        }
        IndexDamage::CutInHalf => {
            set_len(&index_path, index.len() as u64 / 2);
            set_len(&times_path, times.len() as u64 / 2);
        }
        IndexDamage::Empty => {
            set_len(&index_path, 0);
            set_len(&times_path, 0);
        }
        IndexDamage::EmptyTimesOnly => set_len(&times_path, 0),
        IndexDamage::EmptyOffsetsOnly => set_len(&index_path, 0),
        IndexDamage::EntriesOnly => {
            write(&index_path, &offsets);
            write(&times_path, &stamps);
        }
        IndexDamage::Deleted => {
            std::fs::remove_file(&index_path).expect("remove index");
            std::fs::remove_file(&times_path).expect("remove time index");
        }
        IndexDamage::OffsetPastEnd | IndexDamage::OffsetInsideBatch => {
            let at = offsets.len() - OFFSET_ENTRY + 4;
            let old = u32::from_le_bytes(offsets[at..at + 4].try_into().expect("4 bytes"));
            let pos = match damage {
                IndexDamage::OffsetInsideBatch => u64::from(old) + 1 + rng.below(20),
                _ if rng.below(2) == 0 => len + rng.below(1000),
                _ => u64::from(u32::MAX),
            };
            offsets[at..at + 4].copy_from_slice(&(pos as u32).to_le_bytes());
            write(&index_path, &encode_file(&offsets));
        }
        IndexDamage::TimePastEnd => {
            let at = stamps.len() - TIME_ENTRY + 8;
            let span = ix.segment_end(i) - base;
            let rel = span + rng.below(1000);
            stamps[at..at + 4].copy_from_slice(&(rel as u32).to_le_bytes());
            write(&times_path, &encode_file(&stamps));
        }
    }
}

/// Damaged index files of every segment (sealed and active) are detected and rebuilt:
/// the partition opens, serves everything, knows each segment's largest timestamp and
/// answers time lookups correctly; the sealed segments' index files are rewritten as they
/// were, and the active one's on close.
#[test]
fn damaged_index_files_are_rebuilt() {
    for backend in BACKENDS {
        let ix = Indexed::build(backend, 0x1DE ^ backend as u64);
        let end = ix.pristine.end_offset();
        let all: Vec<u64> = (0..end).collect();
        let mut rng = Prng::new(0x1DE);
        for damage in IndexDamage::ALL {
            let ctx = format!("{backend:?}: {damage:?} in every segment's index");
            let copy = ix.pristine.copy();
            let dir = copy.path();
            for i in 0..ix.files.len() {
                damage_index(dir, &ix, i, damage, &mut rng);
            }
            let p = open(dir, backend, &ctx);
            let report = p.open_report().clone();
            assert!(report.clean_shutdown, "{ctx}: {report:?}");
            assert_eq!(report.truncated_because, None, "{ctx}: {report:?}");
            assert!(report.rebuilt_active_index, "{ctx}: {report:?}");
            assert_eq!(p.high_watermark(), end, "{ctx}");
            assert_serves(&p, &all, &ctx);
            for (i, seg) in p.segments().iter().enumerate() {
                let max = (seg.base_offset..ix.segment_end(i)).map(record_ts).max();
                assert_eq!(
                    seg.max_timestamp, max,
                    "{ctx}: max timestamp of segment {}",
                    seg.base_offset
                );
            }
            assert_time_lookups(&p, &all, 2, &ctx);
            for (i, &base) in ix.pristine.segments.iter().enumerate() {
                if base == ix.pristine.active {
                    continue;
                }
                let (_, index, times) = &ix.files[i];
                assert!(
                    read_file(&seg_file(dir, base, "index")) == *index,
                    "{ctx}: .index of sealed segment {base} not rewritten as it was"
                );
                assert!(
                    read_file(&seg_file(dir, base, "timeindex")) == *times,
                    "{ctx}: .timeindex of sealed segment {base} not rewritten as it was"
                );
            }
            p.close().expect("close");
            let (_, index, times) = ix.files.last().expect("active");
            let active = ix.pristine.active;
            assert!(
                read_file(&seg_file(dir, active, "index")) == *index,
                "{ctx}: active .index after close"
            );
            assert!(
                read_file(&seg_file(dir, active, "timeindex")) == *times,
                "{ctx}: active .timeindex after close"
            );

            let mut p = open(dir, backend, &ctx);
            assert!(
                !p.open_report().rebuilt_active_index,
                "{ctx}: the rewritten index is trusted again"
            );
            assert_serves(&p, &all, &ctx);
            let w = append(&mut p, 4, Compression::Lz4);
            assert_eq!(w.base, end, "{ctx}: appends continue");
            drop(p);
            let p = open(dir, backend, &ctx);
            let all_after: Vec<u64> = (0..end + 4).collect();
            assert_serves(&p, &all_after, &ctx);
            assert_time_lookups(&p, &all_after, 7, &ctx);
        }
    }
}

/// Single bit flips anywhere in an index file never change what is served or what time
/// lookups answer.
#[test]
fn bit_flips_in_index_files_do_not_change_what_is_served() {
    for backend in BACKENDS {
        let ix = Indexed::build(backend, 0xF11 ^ backend as u64);
        let end = ix.pristine.end_offset();
        let all: Vec<u64> = (0..end).collect();
        let mut rng = Prng::new(0xF11 ^ backend as u64);
        for n in 0..40 {
            let i = rng.below(ix.files.len() as u64) as usize;
            let base = ix.pristine.segments[i];
            let (_, index, times) = &ix.files[i];
            let (suffix, len) = if n % 2 == 0 {
                ("index", index.len())
            } else {
                ("timeindex", times.len())
            };
            let byte = rng.below(len as u64);
            let bit = rng.below(8) as u8;
            let ctx =
                format!("{backend:?}: bit {bit} of byte {byte} of segment {base}'s .{suffix}");
            let copy = ix.pristine.copy();
            flip_bit(&seg_file(copy.path(), base, suffix), byte, bit);
            let p = open(copy.path(), backend, &ctx);
            assert_eq!(p.high_watermark(), end, "{ctx}");
            assert_serves(&p, &all, &ctx);
            assert_time_lookups(&p, &all, 2, &ctx);
        }
    }
}

/// Minimal reproduction: the active segment's time index loses a growth of the maximum
/// timestamp across a clean close and reopen when that growth came less than one index
/// interval after the last time entry and before the last offset entry.
#[test]
fn clean_reopen_keeps_the_max_timestamp_of_the_active_segment() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = open(dir.path(), backend, "write");
        // ~100-byte batches with a 256-byte index interval: a time entry at batch 4, the
        // maximum grows again at batch 5 (too close for an entry), offset entry at 6.
        let stamps = [100i64, 50, 60, 70, 200, 300, 80];
        for &ts in &stamps {
            let mut b = BatchBuilder::new(BuilderOptions::default());
            b.push(ts, Some(b"k"), Some(&[7u8; 40]), &[]).expect("push");
            p.append(b.finish().expect("finish")).expect("append");
        }
        assert_eq!(p.offset_for_timestamp(250).expect("lookup"), Some(5));
        p.close().expect("close");
        // The premise: the last offset index entry is batch 6, so a clean reopen scans
        // from there and never sees batch 5.
        let index = entries_of(&read_file(&seg_file(dir.path(), 0, "index")), 8, ".index");
        let last = &index[index.len() - OFFSET_ENTRY..];
        assert_eq!(
            last[..4],
            6u32.to_le_bytes(),
            "{backend:?}: offset index {index:?}"
        );
        let p = open(dir.path(), backend, "reopen");
        let seg = p.segments()[0];
        assert_eq!(
            seg.max_timestamp,
            Some(300),
            "{backend:?}: max timestamp after reopen"
        );
        assert_eq!(
            p.offset_for_timestamp(250).expect("lookup"),
            Some(5),
            "{backend:?}: first record at or after 250 after reopen"
        );
    }
}

/// A batch of records with explicit timestamps, for the time index property.
fn batch_with_stamps(stamps: &[i64]) -> bytes::BytesMut {
    let mut b = BatchBuilder::new(BuilderOptions::default());
    for &ts in stamps {
        b.push(ts, Some(b"key"), Some(&[0x5A; 24]), &[])
            .expect("push");
    }
    b.finish().expect("finish")
}

fn check_time_model(p: &Partition, stamps: &[i64]) -> Result<(), TestCaseError> {
    let brute = |t: i64| stamps.iter().position(|&s| s >= t).map(|o| o as u64);
    let max = stamps.iter().copied().max();
    prop_assert_eq!(p.segments().last().expect("active").max_timestamp, max);
    for &s in stamps {
        for t in [s - 1, s, s + 1] {
            prop_assert_eq!(
                p.offset_for_timestamp(t).expect("lookup"),
                brute(t),
                "t = {}",
                t
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        // Integration tests have no lib.rs next to them to keep regression files by.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Any sequence of appends, clean closes and reopens keeps time lookups and the
    /// maximum timestamp equal to a brute-force search over the records.
    #[test]
    fn clean_reopens_keep_time_lookups_exact(
        batches in prop::collection::vec(
            (prop::collection::vec(-400i64..400, 1..4), any::<bool>()),
            1..40,
        ),
        uring in any::<bool>(),
    ) {
        let backend = if uring { IoBackend::Uring } else { IoBackend::Fallback };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = open(dir.path(), backend, "property");
        let mut stamps = Vec::new();
        for (i, (jitter, reopen)) in batches.iter().enumerate() {
            // Timestamps trend upwards (so the maximum keeps growing) with jitter.
            let batch: Vec<i64> = jitter.iter().map(|j| i as i64 * 250 + j).collect();
            p.append(batch_with_stamps(&batch)).expect("append");
            stamps.extend_from_slice(&batch);
            if *reopen {
                p.close().expect("close");
                p = open(dir.path(), backend, "property reopen");
                check_time_model(&p, &stamps)?;
            }
        }
        check_time_model(&p, &stamps)?;
        p.close().expect("close");
        let p = open(dir.path(), backend, "property final reopen");
        check_time_model(&p, &stamps)?;
    }
}

// ---------------------------------------------------------------------------------------
// Truncated sealed segments.

/// A sealed segment cut short (in the middle of a batch, at a batch boundary or to
/// nothing) does not stop the partition from opening: the segment's valid prefix and all
/// other segments stay readable, nothing past the cut is served, reads of the lost offsets
/// go on at the next segment, and appends continue at the high watermark.
#[test]
fn truncated_sealed_segments_serve_their_valid_prefix() {
    for backend in BACKENDS {
        for clean in [true, false] {
            let seed = 0x5EA1 ^ backend as u64 ^ u64::from(clean);
            let pristine = Pristine::build(backend, &[30, 40, 30], 20, clean, seed);
            let mut rng = Prng::new(seed);
            let sealed_batches = |s: usize| in_segment(&pristine.written, pristine.segments[s]);
            // Every byte of one batch in the middle of segment 1, then random cuts
            // (including the segment start and batch boundaries) in every sealed segment.
            let mut cuts = Vec::new();
            let mid = sealed_batches(1)[20];
            for cut in mid.pos..mid.end() {
                cuts.push((1, cut, Tear::Truncate));
            }
            for s in 0..3 {
                let batches = sealed_batches(s);
                let len = batches.last().expect("batches").end();
                cuts.push((s, 0, Tear::Truncate));
                cuts.push((s, batches[5].pos, Tear::Truncate));
                for _ in 0..8 {
                    let tear = if rng.below(3) == 0 {
                        Tear::ZeroFill
                    } else {
                        Tear::Truncate
                    };
                    cuts.push((s, rng.below(len), tear));
                }
            }
            for (n, (s, cut, tear)) in cuts.into_iter().enumerate() {
                let base = pristine.segments[s];
                let ctx = format!(
                    "{backend:?}, clean {clean}: sealed segment {base} {tear:?} at byte {cut}"
                );
                check_sealed_cut(&pristine, s, cut, tear, n % 5 == 0, &ctx);
            }
        }
    }
}

/// How a sealed segment was damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tear {
    /// The file ends at the cut.
    Truncate,
    /// The file keeps its length; the bytes from the cut on are zeros.
    ZeroFill,
}

fn check_sealed_cut(pristine: &Pristine, s: usize, cut: u64, tear: Tear, lookups: bool, ctx: &str) {
    let backend = pristine.backend;
    let base = pristine.segments[s];
    let next_base = pristine.segments[s + 1];
    let batches = in_segment(&pristine.written, base);
    let seg_len = batches.last().expect("batches").end();
    let copy = pristine.copy();
    let dir = copy.path();
    let log = seg_file(dir, base, "log");
    assert_eq!(
        file_len(&log),
        seg_len,
        "{ctx}: sealed segments are trimmed"
    );
    match tear {
        Tear::Truncate => set_len(&log, cut),
        Tear::ZeroFill => zero_range(&log, cut, seg_len),
    }
    // Batches wholly before the cut survive; with zeros, so does the batch holding the
    // cut when the bytes zeroed in it were zeros already.
    let pristine_log = read_file(&seg_file(pristine.dir.path(), base, "log"));
    let keep = batches
        .iter()
        .filter(|w| {
            w.end() <= cut
                || (tear == Tear::ZeroFill && w.pos < cut && all_zero(&pristine_log, cut, w.end()))
        })
        .count();
    let lost_from = if keep == 0 {
        base
    } else {
        batches[keep - 1].next
    };
    let valid_len = if keep == 0 {
        0
    } else {
        batches[keep - 1].end()
    };
    let end = pristine.end_offset();
    let expected: Vec<u64> = (0..end)
        .filter(|o| !(lost_from..next_base).contains(o))
        .collect();

    for round in 0..2 {
        let ctx = format!("{ctx}, open #{round}");
        let mut p = open(dir, backend, &ctx);
        let report = p.open_report().clone();
        assert_eq!(
            report.segments,
            pristine.segments.len(),
            "{ctx}: {report:?}"
        );
        assert_eq!(
            report.truncated_because, None,
            "{ctx}: the active segment is intact"
        );
        let hw = end + 3 * round;
        assert_eq!(p.high_watermark(), hw, "{ctx}");
        assert_eq!(p.log_start_offset(), 0, "{ctx}");
        let seg = p.segments()[s];
        assert_eq!(
            (seg.base_offset, seg.next_offset, seg.size),
            (base, lost_from, valid_len),
            "{ctx}: the damaged segment's valid prefix"
        );
        let mut want = expected.clone();
        want.extend(end..hw);
        assert_serves(&p, &want, &ctx);
        if lost_from < next_base {
            // Reads of a lost offset go on at the next segment's first batch.
            let o = lost_from + (next_base - lost_from) / 2;
            let fetch = p
                .read(o, 1)
                .unwrap_or_else(|e| panic!("{ctx}: read({o}): {e}"));
            let first = BatchIter::new(&fetch.bytes)
                .next()
                .unwrap_or_else(|| panic!("{ctx}: read({o}) served nothing"))
                .unwrap_or_else(|e| panic!("{ctx}: read({o}) served a bad batch: {e}"));
            assert_eq!(first.header().base_offset, next_base, "{ctx}: read({o})");
        }
        if lookups {
            assert_time_lookups(&p, &want, 3, &ctx);
        }
        // Documented: a damaged sealed segment is left on disk unmodified, while zeros past
        // its valid bytes (what a crash during a roll leaves) are trimmed off.
        let expected_len = match tear {
            Tear::Truncate => cut,
            Tear::ZeroFill if cut <= valid_len => valid_len,
            Tear::ZeroFill => seg_len,
        };
        assert_eq!(file_len(&log), expected_len, "{ctx}");
        if round == 0 {
            let w = append(&mut p, 3, Compression::None);
            assert_eq!(w.base, end, "{ctx}: appends continue at the high watermark");
            drop(p);
        }
    }
}

// ---------------------------------------------------------------------------------------
// A full disk (ENOSPC) on a small tmpfs.

/// Appends 32-record batches until one fails; returns the error and the acknowledged end.
fn fill_until_error(p: &mut Partition, ctx: &str) -> (Error, u64) {
    for _ in 0..5_000 {
        let first = p.next_offset();
        match p.append(build_batch(first, 32, Compression::None)) {
            Ok(a) => {
                assert_eq!(a.base_offset, first, "{ctx}");
                assert_eq!(p.high_watermark(), a.last_offset + 1, "{ctx}");
            }
            Err(e) => return (e, first),
        }
    }
    panic!("{ctx}: a 3 MiB file system never filled up");
}

/// A 3 MiB tmpfs holding a 1.06 MiB filler file, and the partition directory to use on
/// it; none when tmpfs cannot be mounted here.
fn small_disk_with_filler() -> Option<(Tmpfs, std::path::PathBuf, std::path::PathBuf)> {
    let fs = Tmpfs::mount("3m")?;
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![0xA5u8; (1 << 20) + (64 << 10)]).expect("write filler");
    let dir = fs.path().join("partition");
    Some((fs, filler, dir))
}

/// Fills a 3 MiB tmpfs (1 MiB of it taken by a filler file) through appends until one
/// fails, checks the error is `NoSpace` and that everything acknowledged is readable
/// (from the same partition, or after reopening while the disk is still full), then frees
/// the filler and checks appends continue at exactly the failed append's offset.
fn disk_full(preallocate: bool, backend: IoBackend, reopen_while_full: bool) {
    let ctx =
        format!("{backend:?}, preallocate {preallocate}, reopen while full {reopen_while_full}");
    let Some((_mount, filler, dir)) = small_disk_with_filler() else {
        return;
    };
    let cfg = PartitionConfig {
        preallocate,
        ..config(backend)
    };
    let mut p = open_with(&dir, cfg.clone(), &ctx);
    let (err, acked) = fill_until_error(&mut p, &ctx);
    assert!(err.is_no_space(), "{ctx}: expected NoSpace, got {err:?}");
    assert!(
        acked > 0,
        "{ctx}: some appends succeeded before the disk filled"
    );
    let Error::NoSpace { path, .. } = &err else {
        unreachable!()
    };
    let segments = p.segments();
    let active = segments.last().expect("active").base_offset;
    if preallocate {
        // With preallocation the disk fills when a segment rolls, never mid-write.
        let new = seg_file(&dir, acked, "log");
        assert_eq!(
            path, &new,
            "{ctx}: the error names the segment that could not be made"
        );
        assert!(
            !new.exists(),
            "{ctx}: the segment that could not be reserved is removed"
        );
    } else {
        assert_eq!(
            path,
            &seg_file(&dir, active, "log"),
            "{ctx}: the write that failed"
        );
    }
    assert_eq!(
        p.high_watermark(),
        acked,
        "{ctx}: nothing unacknowledged is visible"
    );
    assert_eq!(
        p.next_offset(),
        acked,
        "{ctx}: the failed append's offsets are reused"
    );
    let acknowledged: Vec<u64> = (0..acked).collect();
    assert_serves(&p, &acknowledged, &ctx);
    if reopen_while_full {
        drop(p);
        p = open_with(&dir, cfg.clone(), &format!("{ctx}, reopened while full"));
        assert_eq!(p.high_watermark(), acked, "{ctx}: after reopening");
        assert_serves(&p, &acknowledged, &ctx);
    }

    std::fs::remove_file(&filler).expect("remove filler");
    let segments_before = p.segments().len();
    let w = append(&mut p, 32, Compression::None);
    assert_eq!(
        w.base, acked,
        "{ctx}: appends continue at the failed append's offset"
    );
    if preallocate {
        assert_eq!(
            p.segments().len(),
            segments_before + 1,
            "{ctx}: the roll went through"
        );
    }
    let more = fill(&mut p, 20, 0xF1);
    let end = more.last().expect("batches").next;
    let all: Vec<u64> = (0..end).collect();
    assert_serves(&p, &all, &ctx);
    p.close().expect("close");
    let p = open_with(&dir, cfg, &format!("{ctx}, reopened"));
    assert!(p.open_report().clean_shutdown, "{ctx}");
    assert_serves(&p, &all, &ctx);
    assert_time_lookups(&p, &all, 11, &ctx);
    drop(p);
}

// Each runs in a child process: a memory-mapped read that the full tmpfs cannot back
// with a page is a SIGBUS, which would otherwise take every test of this binary down.

#[test]
fn disk_full_with_preallocation_fails_the_roll() {
    in_child_process("disk_full_with_preallocation_fails_the_roll", || {
        for backend in BACKENDS {
            for reopen in [false, true] {
                disk_full(true, backend, reopen);
            }
        }
    });
}

#[test]
fn disk_full_without_preallocation_fails_the_write() {
    in_child_process("disk_full_without_preallocation_fails_the_write", || {
        for backend in BACKENDS {
            disk_full(false, backend, false);
        }
    });
}

#[test]
fn disk_full_without_preallocation_then_reopen_while_full() {
    in_child_process(
        "disk_full_without_preallocation_then_reopen_while_full",
        || {
            for backend in BACKENDS {
                disk_full(false, backend, true);
            }
        },
    );
}

/// Pipelined Fsync appends (a window of 16 batches, so on io_uring a write may run while
/// the one before it syncs) until the disk is full: the error is `NoSpace`, nothing past the
/// high watermark is visible or pending, every acknowledged record is served (also after
/// reopening), once space is freed appends continue at the high watermark, and what the
/// failed writes left on disk never reappears after a reopen.
fn disk_full_pipelined(backend: IoBackend) {
    let ctx = format!("{backend:?}, pipelined");
    let Some((_mount, filler, dir)) = small_disk_with_filler() else {
        return;
    };
    let cfg = PartitionConfig {
        preallocate: false,
        durability: strata_log::Durability::Fsync,
        ..config(backend)
    };
    let mut p = open_with(&dir, cfg.clone(), &ctx);
    let mut unacked = std::collections::VecDeque::new();
    let err = 'fill: loop {
        let first = p.next_offset();
        match p.submit(build_batch(first, 32, Compression::None)) {
            Ok(a) => unacked.push_back(a.last_offset),
            Err(e) => break 'fill e,
        }
        while unacked.len() >= 16 {
            match p.poll() {
                Ok(hwm) => {
                    assert!(p.writes_in_flight() <= 2, "{ctx}: the pipeline is bounded");
                    while unacked.front().is_some_and(|&l| l < hwm) {
                        unacked.pop_front();
                    }
                }
                Err(e) => break 'fill e,
            }
        }
        assert!(
            p.next_offset() < 1_000_000,
            "{ctx}: a 3 MiB file system never filled up"
        );
    };
    assert!(err.is_no_space(), "{ctx}: expected NoSpace, got {err:?}");
    let acked = p.high_watermark();
    assert!(
        acked > 0,
        "{ctx}: some appends succeeded before the disk filled"
    );
    assert_eq!(
        p.next_offset(),
        acked,
        "{ctx}: the failed appends' offsets are reused"
    );
    assert_eq!(p.unflushed_bytes(), 0, "{ctx}: nothing is pending");
    assert_eq!(p.writes_in_flight(), 0, "{ctx}: no write is in flight");
    let acknowledged: Vec<u64> = (0..acked).collect();
    assert_serves(&p, &acknowledged, &ctx);
    std::fs::remove_file(&filler).expect("remove filler");
    let w = append(&mut p, 32, Compression::None);
    assert_eq!(
        w.base, acked,
        "{ctx}: appends continue at the high watermark"
    );
    let end = w.next;
    let all: Vec<u64> = (0..end).collect();
    assert_serves(&p, &all, &ctx);
    p.close().expect("close");
    let p = open_with(&dir, cfg, &format!("{ctx}, reopened"));
    assert_eq!(p.high_watermark(), end, "{ctx}: after reopening");
    assert_serves(&p, &all, &ctx);
    drop(p);
}

#[test]
fn disk_full_while_pipelined_keeps_every_acknowledged_append() {
    in_child_process(
        "disk_full_while_pipelined_keeps_every_acknowledged_append",
        || {
            for backend in BACKENDS {
                disk_full_pipelined(backend);
            }
        },
    );
}

// ---------------------------------------------------------------------------------------
// A read-only file system.

/// Opening a partition on a read-only file system fails with `Error::ReadOnly` (both a
/// cleanly closed one and one left by a crash); once writable again it opens with its
/// data intact and appends continue.
#[test]
fn read_only_file_system_is_a_typed_error() {
    for backend in BACKENDS {
        for clean in [true, false] {
            let ctx = format!("{backend:?}, clean {clean}");
            let Some(fs) = Tmpfs::mount("8m") else {
                return;
            };
            let dir = fs.path().join("partition");
            let mut p = open(&dir, backend, &ctx);
            fill(&mut p, 20, 0x20);
            p.roll().expect("roll");
            let end = fill(&mut p, 20, 0x21).last().expect("batches").next;
            if clean {
                p.close().expect("close");
            } else {
                drop(p);
            }
            fs.remount("ro");
            match Partition::open(&dir, config(backend)) {
                Err(Error::ReadOnly { .. }) => {}
                other => panic!("{ctx}: opening on a read-only fs gave {other:?}"),
            }
            match Partition::open(fs.path().join("new"), config(backend)) {
                Err(Error::ReadOnly { .. }) => {}
                other => panic!("{ctx}: creating on a read-only fs gave {other:?}"),
            }
            fs.remount("rw");
            let mut p = open(&dir, backend, &ctx);
            assert_eq!(
                p.open_report().clean_shutdown,
                clean,
                "{ctx}: the marker survived"
            );
            let all: Vec<u64> = (0..end).collect();
            assert_serves(&p, &all, &ctx);
            let w = append(&mut p, 5, Compression::Lz4);
            assert_eq!(w.base, end, "{ctx}");
            p.close().expect("close");
            let p = open(&dir, backend, &ctx);
            assert_serves(&p, &(0..end + 5).collect::<Vec<_>>(), &ctx);
        }
    }
}
