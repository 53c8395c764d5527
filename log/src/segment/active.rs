//! The active segment: the one file a partition appends to.

use super::FileSource;
use super::{
    INDEX_SUFFIX, LOG_SUFFIX, LocalSegment, Recovered, SealedSegment, TIME_INDEX_SUFFIX, map_file,
    read_index_file, recover, reserve, segment_path, write_indexes,
};
use crate::error::{Error, IoContext, Result};
use crate::format::BatchHeader;
use crate::index::{IndexBuilder, OFFSET_ENTRY_LEN, TIME_ENTRY_LEN};
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Opens `path` again for writing: a new open file description, with its own error state.
fn reopen(path: &Path) -> Result<Arc<File>> {
    let file = OpenOptions::new().write(true).open(path).at(path)?;
    Ok(Arc::new(file))
}

/// The segment being appended to, mapped read-only over its whole preallocated length.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub base_offset: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// A second open file description of the same file, for every other write job: each
    /// reports a write-back error to its own fdatasync once, so two jobs syncing at the
    /// same time each see the errors that concern them.
    pub alt_file: Arc<File>,
    /// Mapping of `capacity` bytes; only `..durable_len` is ever sliced.
    map: Bytes,
    pub capacity: u64,
    /// End of the bytes that are written (and synced, when durability asks).
    pub durable_len: u64,
    /// Offset after the last durable batch.
    pub next_offset: u64,
    pub index: IndexBuilder,
    pub created: Instant,
}

impl ActiveSegment {
    /// Creates a new, empty segment starting at `base`, reserving `capacity` bytes.
    pub fn create(
        dir: &Path,
        base: u64,
        capacity: u64,
        preallocate: bool,
        interval: u32,
    ) -> Result<Self> {
        let path = segment_path(dir, base, LOG_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .at(&path)?;
        if let Err(e) = reserve(&file, capacity, preallocate, true) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(Error::io(&path, e));
        }
        let map = map_file(&file, capacity, &path)?;
        let alt_file = reopen(&path)?;
        Ok(ActiveSegment {
            base_offset: base,
            path,
            file: Arc::new(file),
            alt_file,
            map,
            capacity,
            durable_len: 0,
            next_offset: base,
            index: IndexBuilder::new(base, interval),
            created: Instant::now(),
        })
    }

    /// Opens the last segment of a partition, truncating any torn or corrupt tail.
    ///
    /// After a clean shutdown the scan starts at the last index entry; otherwise the
    /// whole segment is scanned and its indexes rebuilt.
    pub fn open(
        dir: &Path,
        base: u64,
        min_capacity: u64,
        preallocate: bool,
        interval: u32,
        clean: bool,
    ) -> Result<(Self, Recovered)> {
        let path = segment_path(dir, base, LOG_SUFFIX);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        let file_len = file.metadata().at(&path)?.len();
        let (offsets, times) = if clean {
            (
                read_index_file(&segment_path(dir, base, INDEX_SUFFIX), OFFSET_ENTRY_LEN)?,
                read_index_file(&segment_path(dir, base, TIME_INDEX_SUFFIX), TIME_ENTRY_LEN)?,
            )
        } else {
            (None, None)
        };
        let source = FileSource {
            file: &file,
            len: file_len,
        };
        let rec = recover(
            &source,
            base,
            offsets.as_deref(),
            times.as_deref(),
            interval,
            !clean,
        )
        .at(&path)?;
        if rec.valid_len > crate::config::MAX_SEGMENT_BYTES {
            return Err(Error::Corrupt {
                path,
                reason: format!("{} valid bytes exceed the segment limit", rec.valid_len),
            });
        }
        let capacity = min_capacity.max(rec.valid_len);
        if rec.damage.is_some() || file_len != capacity {
            if let Some(stop) = &rec.damage {
                tracing::warn!(
                    path = %path.display(),
                    valid_len = rec.valid_len,
                    file_len,
                    reason = ?stop,
                    "truncating torn or corrupt tail of the active segment"
                );
            }
            // Cut the tail, then re-reserve: the kernel zero-fills the re-extended range.
            file.set_len(rec.valid_len).at(&path)?;
            reserve(&file, capacity, preallocate, false).map_err(|e| Error::io(&path, e))?;
            file.sync_all().at(&path)?;
        }
        let map = map_file(&file, capacity, &path)?;
        let alt_file = reopen(&path)?;
        let seg = ActiveSegment {
            base_offset: base,
            path,
            file: Arc::new(file),
            alt_file,
            map,
            capacity,
            durable_len: rec.valid_len,
            next_offset: rec.next_offset,
            index: rec.index.clone(),
            created: Instant::now(),
        };
        Ok((seg, rec))
    }

    /// The durable bytes, zero-copy.
    pub fn readable(&self) -> Bytes {
        self.map.slice(..self.durable_len as usize)
    }

    /// Records that the batch `header` at `pos` is now durable.
    pub fn commit(&mut self, pos: u64, header: &BatchHeader) {
        debug_assert_eq!(pos, self.durable_len, "batches become durable in order");
        debug_assert_eq!(
            header.base_offset, self.next_offset,
            "offsets are contiguous"
        );
        self.index.observe(pos as u32, header);
        self.durable_len = pos + u64::from(header.length);
        self.next_offset = header.next_offset();
    }

    /// Makes `from..to`, bytes that rolled-back writes may have left past the durable end,
    /// read as zeros, so that a later recovery scan cannot take them for batches (which it
    /// would when new batches of the same sizes are written before them). Best effort:
    /// zeroes the range keeping its blocks, or punches a hole where that is unsupported.
    pub fn discard(&self, from: u64, to: u64) {
        use rustix::fs::{FallocateFlags, fallocate};
        if to <= from {
            return;
        }
        let len = to - from;
        let keep = FallocateFlags::KEEP_SIZE;
        let zeroed = match fallocate(&*self.file, FallocateFlags::ZERO_RANGE | keep, from, len) {
            Err(rustix::io::Errno::OPNOTSUPP) => {
                fallocate(&*self.file, FallocateFlags::PUNCH_HOLE | keep, from, len)
            }
            r => r,
        };
        if let Err(e) = zeroed {
            tracing::warn!(
                path = %self.path.display(),
                error = %e,
                from,
                to,
                "could not zero the bytes of rolled-back writes"
            );
        }
    }

    /// Writes the indexes for a clean shutdown, leaving the segment active.
    ///
    /// The time index gets a final entry with the largest timestamp, so that a clean
    /// reopen, which scans only from the last offset index entry, still knows it.
    pub fn checkpoint(&mut self, dir: &Path) -> Result<()> {
        self.file.sync_data().at(&self.path)?;
        self.index.seal();
        write_indexes(dir, self.base_offset, &self.index)
    }

    /// Turns the segment into a sealed one: trims the reservation, writes indexes, and
    /// with `sync` makes the trimmed size durable.
    ///
    /// Without `sync` (None/Written durability) nothing waits for the disk on the append
    /// path: a trim lost to a power cut leaves zeros past the data, which open trims again.
    /// Failures here cost only disk space or a later index rebuild, so they are logged.
    pub fn seal(mut self, dir: &Path, sync: bool) -> SealedSegment {
        let trimmed = self
            .file
            .set_len(self.durable_len)
            .and_then(|()| if sync { self.file.sync_all() } else { Ok(()) });
        if let Err(e) = trimmed {
            tracing::warn!(path = %self.path.display(), error = %e, "could not trim sealed segment");
        }
        self.index.seal();
        if let Err(e) = write_indexes(dir, self.base_offset, &self.index) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not write segment indexes");
        }
        let max_timestamp = self.index.max_timestamp();
        let (offsets, times) = self.index.into_parts();
        let data = self.map.slice(..self.durable_len as usize);
        SealedSegment {
            base_offset: self.base_offset,
            next_offset: self.next_offset,
            max_timestamp,
            offsets: Bytes::from(offsets),
            times: Bytes::from(times),
            store: Box::new(LocalSegment::new(self.path, data)),
        }
    }
}
