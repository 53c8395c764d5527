//! Segments: the files a partition is made of, and their recovery on open.
//!
//! A partition directory holds, for each segment starting at offset `B`:
//! `{B:020}.log` (batches), `{B:020}.index` (offset index) and `{B:020}.timeindex`.

mod active;
mod deleter;
pub use deleter::DELETED_SUFFIX;
pub(crate) use deleter::{is_retired, remove_later};
mod sealed;
mod store;

pub(crate) use active::ActiveSegment;
pub(crate) use sealed::SealedSegment;
pub use store::{LocalSegment, SegmentStore};

use crate::error::{IoContext, Result};
use crate::index::{self, IndexBuilder};
use crate::recovery::{ScanOutcome, ScanStop, scan};
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

/// Reads an index file's entries; a missing file or one whose trailer does not check out
/// (cut short, bit-flipped) is reported as absent, so the index is rebuilt.
pub(crate) fn read_index_file(path: &Path, entry_len: usize) -> Result<Option<Vec<u8>>> {
    let Some(bytes) = read_if_exists(path)? else {
        return Ok(None);
    };
    match index::decode_file(&bytes, entry_len) {
        Some(entries) => Ok(Some(entries.to_vec())),
        None => {
            tracing::warn!(path = %path.display(), "damaged index file; rebuilding it");
            Ok(None)
        }
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

/// Bytes a recovery scan reads, from memory (tests) or from a file (with pread).
pub(crate) trait ScanSource {
    /// Length of the bytes.
    fn len(&self) -> u64;

    /// Runs [`scan`] from byte `start` (a batch boundary) expecting `expected` there;
    /// `visit` gets absolute positions. The outcome's `valid_len` is relative to `start`.
    fn scan_from(
        &self,
        start: u64,
        expected: u64,
        visit: &mut dyn FnMut(u64, &crate::format::BatchHeader),
    ) -> std::io::Result<ScanOutcome>;
}

impl ScanSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn scan_from(
        &self,
        start: u64,
        expected: u64,
        visit: &mut dyn FnMut(u64, &crate::format::BatchHeader),
    ) -> std::io::Result<ScanOutcome> {
        Ok(scan(&self[start as usize..], expected, true, |p, h| {
            visit(start + p as u64, h)
        }))
    }
}

/// A segment file read with pread in chunks.
///
/// Recovery never reads through a mapping: past the data a file may be sparse, and on
/// tmpfs a read fault on a hole allocates a page, which is SIGBUS once the disk is full.
/// pread of a hole returns zeros without allocating.
pub(crate) struct FileSource<'a> {
    pub file: &'a File,
    pub len: u64,
}

/// Bytes read per pread during recovery (more when one batch is larger).
const SCAN_CHUNK: usize = 4 << 20;

impl ScanSource for FileSource<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn scan_from(
        &self,
        start: u64,
        expected: u64,
        visit: &mut dyn FnMut(u64, &crate::format::BatchHeader),
    ) -> std::io::Result<ScanOutcome> {
        use std::os::unix::fs::FileExt;
        let mut buf = Vec::new();
        let mut pos = start;
        let mut next = expected;
        let mut batches = 0;
        let mut want = SCAN_CHUNK;
        loop {
            let n = (want as u64).min(self.len.saturating_sub(pos)) as usize;
            buf.resize(n, 0);
            self.file.read_exact_at(&mut buf, pos)?;
            let out = scan(&buf, next, true, |p, h| visit(pos + p as u64, h));
            batches += out.batches;
            next = out.next_offset;
            let at_eof = pos + n as u64 >= self.len;
            let rest = &buf[out.valid_len..];
            // A batch cut by the chunk's end, not by the file's: read on from it.
            let needed = match &out.stop {
                ScanStop::CleanEnd if !at_eof && rest.is_empty() => Some(SCAN_CHUNK),
                ScanStop::Torn if !at_eof => Some(
                    crate::format::peek_length(rest)
                        .map_or(crate::format::HEADER_LEN, |l| l as usize)
                        .max(SCAN_CHUNK),
                ),
                _ => None,
            };
            match needed {
                Some(need) if out.valid_len > 0 || need > n => {
                    pos += out.valid_len as u64;
                    want = need;
                }
                _ => {
                    return Ok(ScanOutcome {
                        valid_len: (pos - start) as usize + out.valid_len,
                        next_offset: next,
                        batches,
                        stop: out.stop,
                    });
                }
            }
        }
    }
}

/// Finds a segment's valid prefix, trusting its indexes where they check out.
///
/// Unless `full_scan`, the scan starts at the last offset index entry; a missing,
/// malformed or inconsistent index triggers a full scan that rebuilds both.
pub(crate) fn recover<S: ScanSource + ?Sized>(
    src: &S,
    base: u64,
    offsets: Option<&[u8]>,
    times: Option<&[u8]>,
    interval: u32,
    full_scan: bool,
) -> std::io::Result<Recovered> {
    if !full_scan
        && let (Some(o), Some(t)) = (offsets, times)
        && index::validate_offset_index(o, src.len())
        && index::validate_time_index(t, u32::MAX)
    {
        let (rel, pos) = index::last_offset_entry(o).unwrap_or((0, 0));
        let mut b = IndexBuilder::resume(base, interval, o, t);
        let start = u64::from(pos);
        let out = src.scan_from(start, base + u64::from(rel), &mut |p, h| {
            b.observe(p as u32, h)
        })?;
        let entry_checks_out = out.batches > 0 || (pos == 0 && rel == 0);
        let span = out.next_offset - base;
        let times_fit = index::last_time_entry(b.times()).is_none_or(|(_, r)| u64::from(r) < span);
        if entry_checks_out && times_fit {
            return Ok(Recovered {
                index: b,
                valid_len: start + out.valid_len as u64,
                next_offset: out.next_offset,
                damage: out.found_damage().then_some(out.stop),
                rebuilt: false,
            });
        }
    }
    let mut b = IndexBuilder::new(base, interval);
    let out = src.scan_from(0, base, &mut |p, h| b.observe(p as u32, h))?;
    Ok(Recovered {
        index: b,
        valid_len: out.valid_len as u64,
        next_offset: out.next_offset,
        damage: out.found_damage().then_some(out.stop),
        rebuilt: true,
    })
}

/// Writes a segment's index files, each via a temporary file and a rename (not synced:
/// a missing or damaged index is detected by its trailer and rebuilt on open).
pub(crate) fn write_indexes(dir: &Path, base: u64, index: &IndexBuilder) -> Result<()> {
    for (suffix, entries) in [
        (INDEX_SUFFIX, index.offsets()),
        (TIME_INDEX_SUFFIX, index.times()),
    ] {
        let path = segment_path(dir, base, suffix);
        let tmp = path.with_extension(format!("{suffix}.tmp"));
        std::fs::write(&tmp, index::encode_file(entries)).at(&tmp)?;
        std::fs::rename(&tmp, &path).at(&path)?;
    }
    Ok(())
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

    use crate::format::{BatchBuilder, BuilderOptions};

    /// Batches of `sizes` bytes of value each, back to back, with offsets from 0.
    fn batches(sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut b = BatchBuilder::new(BuilderOptions {
            max_batch_bytes: 16 << 20,
            ..BuilderOptions::default()
        });
        for (offset, &n) in sizes.iter().enumerate() {
            b.push(offset as i64, None, Some(&vec![7u8; n]), &[])
                .unwrap();
            let mut batch = b.finish().unwrap();
            crate::format::patch_base_offset(&mut batch, offset as u64);
            out.extend_from_slice(&batch);
        }
        out
    }

    fn scan_both(bytes: &[u8]) -> (ScanOutcome, Vec<u64>) {
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        let src = FileSource {
            file: &file,
            len: bytes.len() as u64,
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let from_file = src.scan_from(0, 0, &mut |p, _| a.push(p)).unwrap();
        let from_mem = bytes.scan_from(0, 0, &mut |p, _| b.push(p)).unwrap();
        assert_eq!(from_file, from_mem, "file and memory scans agree");
        assert_eq!(a, b);
        (from_file, a)
    }

    #[test]
    fn chunked_file_scan_crosses_chunk_boundaries_and_big_batches() {
        // ~9 MiB: batches straddle both 4 MiB chunk boundaries; one batch is larger than a chunk.
        let mut sizes = vec![300_000usize; 14];
        sizes.insert(5, 5 << 20);
        let bytes = batches(&sizes);
        let (out, visits) = scan_both(&bytes);
        assert_eq!(out.stop, ScanStop::CleanEnd);
        assert_eq!(out.valid_len, bytes.len());
        assert_eq!(visits.len(), sizes.len());
        assert_eq!(out.next_offset, sizes.len() as u64);

        // A torn last batch, and zero-filled preallocation after the data.
        let torn = &bytes[..bytes.len() - 10];
        let (out, _) = scan_both(torn);
        assert_eq!(out.stop, ScanStop::Torn);
        assert_eq!(out.next_offset, sizes.len() as u64 - 1);
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + (3 << 20), 0);
        let (out, _) = scan_both(&padded);
        assert_eq!((out.stop, out.valid_len), (ScanStop::CleanEnd, bytes.len()));
    }

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
