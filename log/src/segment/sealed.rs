//! Sealed segments: immutable, indexed, read through a [`SegmentStore`].

use super::{
    FileSource, INDEX_SUFFIX, LOG_SUFFIX, LocalSegment, SegmentStore, TIME_INDEX_SUFFIX, map_file,
    read_index_file, recover, segment_path, write_indexes,
};
use crate::error::{IoContext, Result};
use crate::index::{OFFSET_ENTRY_LEN, TIME_ENTRY_LEN};
use bytes::Bytes;
use std::fs::File;
use std::path::Path;

/// A segment that no longer receives appends.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    pub base_offset: u64,
    pub next_offset: u64,
    pub max_timestamp: Option<i64>,
    pub offsets: Bytes,
    pub times: Bytes,
    pub store: Box<dyn SegmentStore>,
}

impl SealedSegment {
    /// Opens a sealed segment file, validating its tail and (re)building damaged indexes.
    ///
    /// A damaged tail is not served; the bytes are left on disk untouched.
    pub fn open(dir: &Path, base: u64, interval: u32) -> Result<Self> {
        let path = segment_path(dir, base, LOG_SUFFIX);
        let file = File::open(&path).at(&path)?;
        let len = file.metadata().at(&path)?.len();
        let source = FileSource { file: &file, len };
        let offsets = read_index_file(&segment_path(dir, base, INDEX_SUFFIX), OFFSET_ENTRY_LEN)?;
        let times = read_index_file(&segment_path(dir, base, TIME_INDEX_SUFFIX), TIME_ENTRY_LEN)?;
        let mut rec = recover(
            &source,
            base,
            offsets.as_deref(),
            times.as_deref(),
            interval,
            false,
        )
        .at(&path)?;
        if rec.damage.is_none() && len > rec.valid_len {
            // Zeros left past the data by a crash during a roll (before the trim).
            let trimmed = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(rec.valid_len).and_then(|()| f.sync_all()));
            if let Err(e) = trimmed {
                tracing::warn!(path = %path.display(), error = %e, "could not trim a sealed segment");
            }
        }
        // Map only the valid bytes: nothing past them is ever read.
        let data = map_file(&file, rec.valid_len, &path)?;
        rec.index.seal();
        if let Some(stop) = &rec.damage {
            tracing::warn!(
                path = %path.display(),
                valid_len = rec.valid_len,
                reason = ?stop,
                "sealed segment is damaged; serving only its valid prefix"
            );
        }
        if rec.rebuilt
            && let Err(e) = write_indexes(dir, base, &rec.index)
        {
            tracing::warn!(path = %path.display(), error = %e, "could not rewrite rebuilt index");
        }
        let max_timestamp = rec.index.max_timestamp();
        let (offsets, times) = rec.index.into_parts();
        Ok(SealedSegment {
            base_offset: base,
            next_offset: rec.next_offset,
            max_timestamp,
            offsets: Bytes::from(offsets),
            times: Bytes::from(times),
            store: Box::new(LocalSegment::new(
                path,
                data.slice(..rec.valid_len as usize),
            )),
        })
    }

    /// Size of the valid bytes.
    pub fn size(&self) -> u64 {
        self.store.len()
    }

    /// The segment's bytes.
    pub fn data(&self) -> Result<Bytes> {
        self.store.read(0, self.store.len() as usize)
    }

    /// Deletes the segment's data and index files: renamed at once (the caller syncs the
    /// directory), unlinked in the background.
    pub fn remove(&self, dir: &Path) -> Result<()> {
        self.store.remove()?;
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            super::deleter::retire(&segment_path(dir, self.base_offset, suffix))?;
        }
        Ok(())
    }
}
