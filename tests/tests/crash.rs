//! Crash tests: torn writes at the tail of the active segment, garbage after the valid
//! data and crashes in the middle of a segment roll.
//!
//! Each scenario builds a pristine partition directory once, then for every damage copies
//! it, damages the copy the way a crash would, reopens it and checks that exactly the
//! intact prefix is served, that the high watermark is where that prefix ends and that
//! appends continue at exactly that offset (and survive another reopen). Every scenario
//! runs on both write paths (io_uring and the pwritev fallback).

mod support_crash;

use strata_log::format::Compression;
use strata_log::recovery::ScanStop;
use support_crash::*;
use tempfile::TempDir;

/// How a crash left the tail of the last write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tear {
    /// The file ends at the cut (the data was never extended past it).
    Truncate,
    /// The file keeps its preallocated length; the bytes from the cut on are zeros.
    ZeroFill,
}

/// Index (into `written`) of the first batch of the active segment not wholly before `cut`.
fn first_damaged(pristine: &Pristine, cut: u64) -> usize {
    pristine
        .written
        .iter()
        .position(|w| w.segment == pristine.active && w.end() > cut)
        .unwrap_or(pristine.written.len())
}

/// Copies the directory and tears the active segment at `cut`.
fn torn_copy(pristine: &Pristine, cut: u64, tear: Tear) -> TempDir {
    let copy = pristine.copy();
    let log = pristine.active_log(copy.path());
    match tear {
        Tear::Truncate => set_len(&log, cut),
        Tear::ZeroFill => zero_range(&log, cut, pristine.data_len),
    }
    copy
}

/// What recovery must find after tearing the active segment at `cut`: the number of
/// batches (of `written`) that survive, and the damage reported.
fn expected_after_tear(pristine: &Pristine, cut: u64, tear: Tear) -> (usize, Expect) {
    let k = first_damaged(pristine, cut);
    let Some(w) = pristine.written.get(k) else {
        return (k, Expect::Clean);
    };
    if tear == Tear::ZeroFill && all_zero(&pristine.bytes, cut, w.end()) {
        // Zeroing changed nothing in batch `k` (its tail was zeros already): it is
        // intact, and every later batch is now zero-filled space.
        return (k + 1, Expect::Clean);
    }
    if all_zero(&pristine.bytes, w.pos, cut) {
        // What is left of batch `k` reads as preallocated space.
        return (k, Expect::Clean);
    }
    let expect = match tear {
        Tear::Truncate => Expect::Exactly(ScanStop::Torn),
        Tear::ZeroFill => Expect::Damaged,
    };
    (k, expect)
}

/// Tears the last batch at every byte position (and at both of its ends).
fn every_cut_of_the_last_batch(tear: Tear, clean: bool) {
    for backend in BACKENDS {
        let pristine = Pristine::build(backend, &[8], 24, clean, 0xC0FFEE);
        let last = *pristine.written.last().expect("batches");
        assert!(
            (200..1000).contains(&last.len),
            "the last batch is a few hundred bytes ({})",
            last.len
        );
        let mut damaged = 0;
        for cut in last.pos..=last.end() {
            let ctx = format!("{backend:?}, {tear:?}, clean {clean}, cut at {cut} in {last:?}");
            let (keep, expect) = expected_after_tear(&pristine, cut, tear);
            if cut < last.end() && tear == Tear::Truncate {
                assert_eq!(keep, pristine.written.len() - 1, "{ctx}");
            }
            damaged += usize::from(expect != Expect::Clean);
            let copy = torn_copy(&pristine, cut, tear);
            pristine.check_recovery(copy.path(), keep, expect, &ctx);
        }
        assert!(
            damaged as u64 >= last.len / 2,
            "most cuts leave a torn batch behind"
        );
    }
}

#[test]
fn torn_last_batch_truncated_at_every_byte() {
    every_cut_of_the_last_batch(Tear::Truncate, false);
}

#[test]
fn torn_last_batch_zero_filled_at_every_byte() {
    every_cut_of_the_last_batch(Tear::ZeroFill, false);
}

/// The same tears after a clean close: the scan then starts at the last index entry.
#[test]
fn torn_last_batch_after_clean_close_at_every_byte() {
    every_cut_of_the_last_batch(Tear::Truncate, true);
    every_cut_of_the_last_batch(Tear::ZeroFill, true);
}

/// Tears at random points anywhere in the active segment's data (seeded, reproducible).
#[test]
fn random_tears_across_the_active_segment() {
    for backend in BACKENDS {
        for clean in [false, true] {
            let seed = 0x7EA2 ^ u64::from(clean);
            let pristine = Pristine::build(backend, &[8], 160, clean, seed);
            let first_active = pristine
                .written
                .iter()
                .position(|w| w.segment == pristine.active)
                .expect("active batches");
            let mut rng = Prng::new(seed);
            for i in 0..48 {
                let cut = rng.below(pristine.data_len + 1);
                let tear = if rng.below(2) == 0 {
                    Tear::Truncate
                } else {
                    Tear::ZeroFill
                };
                let ctx = format!(
                    "{backend:?}, clean {clean}, seed {seed:#x}, iteration {i}: {tear:?} at {cut} of {}",
                    pristine.data_len
                );
                let (keep, expect) = expected_after_tear(&pristine, cut, tear);
                assert!(keep >= first_active, "{ctx}");
                let copy = torn_copy(&pristine, cut, tear);
                pristine.check_recovery(copy.path(), keep, expect, &ctx);
                if i % 8 == 0 {
                    let p = open(copy.path(), backend, &ctx);
                    let offsets: Vec<u64> = (0..p.high_watermark()).collect();
                    assert_time_lookups(&p, &offsets, 5, &ctx);
                }
            }
        }
    }
}

/// Non-zero bytes written past the last batch (a write that never completed, or stale
/// data) are cut off, not served, and the next append overwrites them.
#[test]
fn garbage_after_the_last_batch_is_truncated() {
    for backend in BACKENDS {
        for clean in [false, true] {
            let seed = 0x6A5B ^ u64::from(clean);
            let pristine = Pristine::build(backend, &[8], 30, clean, seed);
            let mut rng = Prng::new(seed);
            let keep = pristine.written.len();
            let next = pristine.written.last().expect("batches").next;
            let stale = pristine.written[keep - 5];
            let stale_bytes = pristine.bytes[stale.pos as usize..stale.end() as usize].to_vec();
            let mut bad_crc = build_batch(next, 4, Compression::None).to_vec();
            bad_crc[..8].copy_from_slice(&next.to_le_bytes());
            let flip_at = rng.range(HEADER_LEN, bad_crc.len() as u64) as usize;
            bad_crc[flip_at] ^= 0x10;
            let mut torn_next = build_batch(next, 4, Compression::Lz4).to_vec();
            torn_next[..8].copy_from_slice(&next.to_le_bytes());
            torn_next.truncate(torn_next.len() / 2);
            let mut cases = vec![
                ("a complete batch with a bad CRC", bad_crc, Expect::Corrupt),
                ("half of the next batch", torn_next, Expect::Corrupt),
                (
                    "a stale copy of an earlier batch",
                    stale_bytes,
                    Expect::Exactly(ScanStop::OffsetGap {
                        expected: next,
                        found: stale.base,
                    }),
                ),
            ];
            for i in 0..12 {
                let len = if i % 2 == 0 {
                    rng.range(1, HEADER_LEN)
                } else {
                    rng.range(HEADER_LEN, 4096)
                };
                cases.push((
                    "random bytes",
                    rng.nonzero_bytes(len as usize),
                    Expect::Damaged,
                ));
            }
            for (what, garbage, expect) in cases {
                let ctx = format!(
                    "{backend:?}, clean {clean}: {what} ({} bytes) after the last batch",
                    garbage.len()
                );
                let copy = pristine.copy();
                write_at(
                    &pristine.active_log(copy.path()),
                    pristine.data_len,
                    &garbage,
                );
                pristine.check_recovery(copy.path(), keep, expect, &ctx);
            }
        }
    }
}

/// Bytes past the preallocated end of the active segment (the file grew) are cut off
/// with the file brought back to its preallocated length; the zeros in between end the
/// scan cleanly.
#[test]
fn garbage_past_the_preallocated_end_is_cut() {
    for backend in BACKENDS {
        for clean in [false, true] {
            let pristine = Pristine::build(backend, &[8], 10, clean, 0xE11D);
            let mut rng = Prng::new(0xE11D);
            for len in [1, 100, 5000] {
                let ctx = format!("{backend:?}, clean {clean}: {len} bytes past the file end");
                let copy = pristine.copy();
                let log = pristine.active_log(copy.path());
                write_at(&log, SEGMENT_BYTES, &rng.nonzero_bytes(len));
                assert_eq!(file_len(&log), SEGMENT_BYTES + len as u64);
                pristine.check_recovery(copy.path(), pristine.written.len(), Expect::Clean, &ctx);
            }
        }
    }
}

/// A batch that was wholly written but never acknowledged (the crash came between the
/// write and its completion) is valid and continues the log: recovery keeps it.
#[test]
fn complete_unacknowledged_batch_is_kept() {
    for backend in BACKENDS {
        let pristine = Pristine::build(backend, &[8], 10, false, 0xAC);
        let next = pristine.written.last().expect("batches").next;
        let ctx = format!("{backend:?}: a complete batch for offsets {next}.. after the tail");
        let copy = pristine.copy();
        let mut batch = build_batch(next, 4, Compression::Lz4).to_vec();
        batch[..8].copy_from_slice(&next.to_le_bytes());
        write_at(&pristine.active_log(copy.path()), pristine.data_len, &batch);
        let mut p = open(copy.path(), backend, &ctx);
        assert_eq!(p.open_report().truncated_because, None, "{ctx}");
        assert_eq!(
            p.open_report().active_valid_len,
            pristine.data_len + batch.len() as u64,
            "{ctx}"
        );
        assert_eq!(p.high_watermark(), next + 4, "{ctx}");
        let w = append(&mut p, 2, Compression::None);
        assert_eq!(w.base, next + 4, "{ctx}");
        drop(p);
        let p = open(copy.path(), backend, &ctx);
        assert_serves(&p, &(0..next + 6).collect::<Vec<_>>(), &ctx);
    }
}

/// Crashes at each step of a segment roll: before the new segment exists (the old one is
/// still preallocated and has no index files), after creating it empty, after
/// preallocating it, after trimming the old one but before its indexes were written, and
/// while they were being written (the old segment still has the complete index files of
/// an earlier clean close, next to half-written temporary files).
#[test]
fn crash_during_a_segment_roll() {
    #[derive(Debug, Clone, Copy)]
    enum Step {
        NewSegmentMissing,
        NewSegmentEmpty,
        NewSegmentPreallocated,
        OldIndexesMissing,
        OldIndexesFromCheckpoint,
    }
    for backend in BACKENDS {
        let pristine = tempfile::tempdir().expect("tempdir");
        let mut p = open(pristine.path(), backend, "pristine");
        let mut old = fill(&mut p, 20, 0x5011);
        p.close().expect("close");
        let checkpoint_index = read_file(&seg_file(pristine.path(), 0, "index"));
        let checkpoint_times = read_file(&seg_file(pristine.path(), 0, "timeindex"));
        let mut p = open(pristine.path(), backend, "pristine");
        old.extend(fill(&mut p, 10, 0x5013));
        p.roll().expect("roll");
        let new_base = p.next_offset();
        let new = fill(&mut p, 10, 0x5012);
        drop(p);
        let old_len = old.last().expect("batches").end();
        assert_ne!(
            checkpoint_index,
            read_file(&seg_file(pristine.path(), 0, "index"))
        );
        let old_index = read_file(&seg_file(pristine.path(), 0, "index"));
        let old_times = read_file(&seg_file(pristine.path(), 0, "timeindex"));
        assert!(
            old_index.len() >= 8 * OFFSET_ENTRY,
            "the old segment has index entries"
        );
        for step in [
            Step::NewSegmentMissing,
            Step::NewSegmentEmpty,
            Step::NewSegmentPreallocated,
            Step::OldIndexesMissing,
            Step::OldIndexesFromCheckpoint,
        ] {
            let ctx = format!("{backend:?}: crash at {step:?}");
            let copy = fresh_copy(pristine.path());
            let dir = copy.path();
            let untrim = || {
                set_len(&seg_file(dir, 0, "log"), SEGMENT_BYTES);
                for suffix in ["index", "timeindex"] {
                    std::fs::remove_file(seg_file(dir, 0, suffix)).expect("remove index");
                }
            };
            let new_log = seg_file(dir, new_base, "log");
            for suffix in ["index", "timeindex"] {
                let _ = std::fs::remove_file(seg_file(dir, new_base, suffix));
            }
            let (hw, segments) = match step {
                Step::NewSegmentMissing => {
                    std::fs::remove_file(&new_log).expect("remove new segment");
                    untrim();
                    (new_base, 1)
                }
                Step::NewSegmentEmpty => {
                    set_len(&new_log, 0);
                    untrim();
                    (new_base, 2)
                }
                Step::NewSegmentPreallocated => {
                    set_len(&new_log, 0);
                    set_len(&new_log, SEGMENT_BYTES);
                    untrim();
                    (new_base, 2)
                }
                Step::OldIndexesMissing => {
                    for suffix in ["index", "timeindex"] {
                        std::fs::remove_file(seg_file(dir, 0, suffix)).expect("remove index");
                    }
                    (new.last().expect("batches").next, 2)
                }
                Step::OldIndexesFromCheckpoint => {
                    write_at(&seg_file(dir, 0, "index"), 0, &checkpoint_index);
                    set_len(&seg_file(dir, 0, "index"), checkpoint_index.len() as u64);
                    write_at(&seg_file(dir, 0, "timeindex"), 0, &checkpoint_times);
                    set_len(
                        &seg_file(dir, 0, "timeindex"),
                        checkpoint_times.len() as u64,
                    );
                    for name in ["index.tmp", "timeindex.tmp"] {
                        let tmp = dir.join(format!("{:020}.{name}", 0));
                        std::fs::write(tmp, &old_index[..old_index.len() / 2]).expect("tmp");
                    }
                    (new.last().expect("batches").next, 2)
                }
            };
            let mut p = open(dir, backend, &ctx);
            let report = p.open_report().clone();
            assert_eq!(report.segments, segments, "{ctx}: {report:?}");
            assert_eq!(report.truncated_because, None, "{ctx}: {report:?}");
            for name in ["index.tmp", "timeindex.tmp"] {
                let tmp = dir.join(format!("{:020}.{name}", 0));
                assert!(!tmp.exists(), "{ctx}: leftover {name} is removed on open");
            }
            if segments == 2 {
                assert_eq!(
                    file_len(&seg_file(dir, 0, "log")),
                    old_len,
                    "{ctx}: an untrimmed old segment is trimmed when reopened"
                );
            }
            assert_eq!(p.high_watermark(), hw, "{ctx}");
            assert_eq!(p.log_start_offset(), 0, "{ctx}");
            let expected: Vec<u64> = (0..hw).collect();
            assert_serves(&p, &expected, &ctx);
            assert_time_lookups(&p, &expected, 3, &ctx);
            if segments == 2 {
                let sealed = p.segments()[0];
                assert_eq!(
                    (sealed.next_offset, sealed.size),
                    (new_base, old_len),
                    "{ctx}"
                );
                let max = (0..new_base).map(record_ts).max();
                assert_eq!(sealed.max_timestamp, max, "{ctx}: max timestamp");
            }
            if segments == 2 && !matches!(step, Step::OldIndexesFromCheckpoint) {
                // A sealed segment whose indexes were missing gets them rebuilt on disk.
                assert_eq!(read_file(&seg_file(dir, 0, "index")), old_index, "{ctx}");
                assert_eq!(
                    read_file(&seg_file(dir, 0, "timeindex")),
                    old_times,
                    "{ctx}"
                );
            }
            let w = append(&mut p, 3, Compression::None);
            assert_eq!(w.base, hw, "{ctx}: appends continue at the high watermark");
            if segments == 1 {
                assert_eq!((w.segment, w.pos), (0, old_len), "{ctx}");
            }
            drop(p);
            let p = open(dir, backend, &ctx);
            assert_serves(&p, &(0..hw + 3).collect::<Vec<_>>(), &ctx);
        }
    }
}
