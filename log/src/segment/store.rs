//! Where a sealed segment's bytes live: the one interface tiered storage plugs into.

use crate::error::{Error, Result};
use bytes::Bytes;
use std::fmt;
use std::path::{Path, PathBuf};

/// Read access to a sealed (immutable) segment's bytes, wherever they are kept.
pub trait SegmentStore: Send + Sync + fmt::Debug {
    /// Length of the segment's valid bytes.
    fn len(&self) -> u64;

    /// True when the segment holds no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `len` bytes starting at `pos`, zero-copy where the store allows.
    fn read(&self, pos: u64, len: usize) -> Result<Bytes>;

    /// Deletes the bytes for good.
    fn remove(&self) -> Result<()>;
}

/// A sealed segment in a local file, served from a read-only memory mapping.
pub struct LocalSegment {
    path: PathBuf,
    data: Bytes,
}

impl fmt::Debug for LocalSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSegment")
            .field("path", &self.path)
            .field("len", &self.data.len())
            .finish()
    }
}

impl LocalSegment {
    /// Wraps `data` (the mapping's valid bytes) of the file at `path`.
    pub(crate) fn new(path: PathBuf, data: Bytes) -> Self {
        LocalSegment { path, data }
    }

    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl SegmentStore for LocalSegment {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn read(&self, pos: u64, len: usize) -> Result<Bytes> {
        let end = pos.checked_add(len as u64).filter(|&e| e <= self.len());
        match end {
            Some(end) => Ok(self.data.slice(pos as usize..end as usize)),
            None => Err(Error::Corrupt {
                path: self.path.clone(),
                reason: format!("read of {len} bytes at {pos} past the end ({})", self.len()),
            }),
        }
    }

    fn remove(&self) -> Result<()> {
        // Renamed now, unlinked off this thread (see `deleter`).
        super::deleter::retire(&self.path)
    }
}
