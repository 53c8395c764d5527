//! Segments: the files a partition is made of, and their recovery on open.
//!
//! A partition directory holds, for each segment starting at offset `B`:
//! `{B:020}.log` (batches), `{B:020}.index` (offset index) and `{B:020}.timeindex`.

mod active;
mod sealed;
mod store;

pub(crate) use active::ActiveSegment;
pub(crate) use sealed::SealedSegment;
pub use store::{LocalSegment, SegmentStore};

use crate::error::{IoContext, Result};
use crate::index::{self, IndexBuilder};
use crate::recovery::{ScanStop, scan};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Suffix of segment data files.
pub const LOG_SUFFIX: &str = "log";
/// Suffix of offset index files.
pub const INDEX_SUFFIX: &str = "index";
/// Suffix of time index files.
pub const TIME_INDEX_SUFFIX: &str = "timeindex";

/// Path of the file of segment `base` with `suffix`.
pub(crate) fn segment_path(dir: &Path, base: u64, suffix: &str) -> PathBuf {
    dir.join(format!("{base:020}.{suffix}"))
}

/// Parses `{base:020}.{suffix}` into (base, suffix).
pub(crate) fn parse_segment_name(name: &str) -> Option<(u64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix))
}

/// Flushes a directory's entries (new, renamed or removed files) to disk.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}

/// Reads an index file, treating a missing one as absent.
pub(crate) fn read_if_exists(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::error::Error::io(path, e)),
    }
}

/// A segment's state as established by recovery.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Indexes covering every valid batch.
    pub index: IndexBuilder,
    /// Bytes of whole, valid batches from the segment start.
    pub valid_len: u64,
    /// Offset after the last valid batch.
    pub next_offset: u64,
    /// What ended the valid prefix, when it was not clean.
    pub damage: Option<ScanStop>,
    /// Whether the indexes had to be rebuilt from the data.
    pub rebuilt: bool,
}

/// Finds a segment's valid prefix, trusting its indexes where they check out.
///
/// Pure over bytes. Unless `full_scan`, the scan starts at the last offset index entry;
/// a missing, malformed or inconsistent index triggers a full scan that rebuilds both.
pub(crate) fn recover(
    data: &[u8],
    base: u64,
    offsets: Option<&[u8]>,
    times: Option<&[u8]>,
    interval: u32,
    full_scan: bool,
) -> Recovered {
    if !full_scan
        && let (Some(o), Some(t)) = (offsets, times)
        && index::validate_offset_index(o, data.len() as u64)
        && index::validate_time_index(t, u32::MAX)
    {
        let (rel, pos) = index::last_offset_entry(o).unwrap_or((0, 0));
        let mut b = IndexBuilder::resume(base, interval, o, t);
        let start = pos as usize;
        let out = scan(&data[start..], base + u64::from(rel), true, |p, h| {
            b.observe((start + p) as u32, h)
        });
        let entry_checks_out = out.batches > 0 || (pos == 0 && rel == 0);
        let span = out.next_offset - base;
        let times_fit = index::last_time_entry(b.times()).is_none_or(|(_, r)| u64::from(r) < span);
        if entry_checks_out && times_fit {
            return Recovered {
                index: b,
                valid_len: (start + out.valid_len) as u64,
                next_offset: out.next_offset,
                damage: out.found_damage().then_some(out.stop),
                rebuilt: false,
            };
        }
    }
    let mut b = IndexBuilder::new(base, interval);
    let out = scan(data, base, true, |p, h| b.observe(p as u32, h));
    Recovered {
        index: b,
        valid_len: out.valid_len as u64,
        next_offset: out.next_offset,
        damage: out.found_damage().then_some(out.stop),
        rebuilt: true,
    }
}

/// Writes a segment's index files (not synced: a damaged index is rebuilt on open).
pub(crate) fn write_indexes(dir: &Path, base: u64, index: &IndexBuilder) -> Result<()> {
    let p = segment_path(dir, base, INDEX_SUFFIX);
    std::fs::write(&p, index.offsets()).at(&p)?;
    let p = segment_path(dir, base, TIME_INDEX_SUFFIX);
    std::fs::write(&p, index.times()).at(&p)
}

/// Maps the first `len` bytes of `file` read-only as `Bytes` (empty for `len == 0`).
pub(crate) fn map_file(file: &File, len: u64, path: &Path) -> Result<bytes::Bytes> {
    if len == 0 {
        return Ok(bytes::Bytes::new());
    }
    // SAFETY: the mapping is read-only and the file belongs to this partition: the
    // directory is locked (flock) against other strata processes. strata never rewrites
    // bytes it has served: appends land past the readable end, recovery truncates only
    // before mapping, sealing truncates only past the readable end, and retention
    // unlinks files (the mapping stays valid). Slices handed out never extend past the
    // readable end, so no access touches a page beyond the file's end.
    let map = unsafe { memmap2::MmapOptions::new().len(len as usize).map(file) }.at(path)?;
    Ok(bytes::Bytes::from_owner(map))
}

/// Reserves `len` bytes for `file`: fallocate when asked (and supported), else a sparse set_len.
///
/// With `strict`, a full disk during fallocate is an error; otherwise it falls back to a
/// sparse file so that the log stays openable and readable.
pub(crate) fn reserve(
    file: &File,
    len: u64,
    preallocate: bool,
    strict: bool,
) -> std::io::Result<()> {
    if preallocate {
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::OPNOTSUPP) => {}
            Err(e @ (rustix::io::Errno::NOSPC | rustix::io::Errno::DQUOT)) if strict => {
                return Err(e.into());
            }
            Err(rustix::io::Errno::NOSPC | rustix::io::Errno::DQUOT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    file.set_len(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let p = segment_path(Path::new("/d"), 42, LOG_SUFFIX);
        assert_eq!(p, Path::new("/d/00000000000000000042.log"));
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name), Some((42, "log")));
        assert_eq!(parse_segment_name("0042.log"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.log"), None);
    }
}
