//! The write path's I/O edge: one vectored write (and optional fdatasync) at a time,
//! through io_uring or, where io_uring is unavailable, pwritev + fdatasync.
//!
//! A [`WriteJob`] owns the buffers it writes, so the memory the kernel reads stays
//! alive and unmoved until the job's completion is handed back.

mod fallback;
mod uring;

use bytes::BytesMut;
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) use fallback::FallbackDriver;
pub(crate) use uring::UringDriver;

/// Most buffers one job may carry (the kernel's IOV_MAX).
pub(crate) const MAX_IOVECS: usize = 1024;

/// Which write path a partition uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoBackend {
    /// Fsync appends go through io_uring (writev linked to fdatasync), so the thread keeps
    /// accepting appends while the disk flushes; None and Written appends are written
    /// inline with pwritev, since a buffered io_uring write into fresh blocks is punted
    /// to a kernel worker on ext4, which measured about 4x slower than pwritev
    /// (docs/BENCHMARKS.md). Without io_uring everything uses pwritev (said once in the log).
    #[default]
    Auto,
    /// io_uring for every append: opening fails if it is unavailable.
    Uring,
    /// pwritev + fdatasync, even where io_uring works.
    Fallback,
}

impl IoBackend {
    /// The path appends with `durability` take under this setting.
    pub fn for_durability(self, durability: crate::config::Durability) -> IoBackend {
        match (self, durability) {
            (IoBackend::Auto, crate::config::Durability::Fsync) => IoBackend::Auto,
            (IoBackend::Auto, _) => IoBackend::Fallback,
            (other, _) => other,
        }
    }
}

/// The write path actually in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveBackend {
    /// Writes go through an io_uring ring.
    Uring,
    /// Writes are synchronous pwritev calls.
    Fallback,
}

/// A vectored write at a file position, optionally followed by fdatasync.
#[derive(Debug)]
pub(crate) struct WriteJob {
    /// File to write; kept open until the job completes.
    pub file: Arc<File>,
    /// File position of the first byte of `bufs[0]`.
    pub pos: u64,
    /// Buffers written back to back (at most [`MAX_IOVECS`]).
    pub bufs: Vec<BytesMut>,
    /// Bytes at the front of `bufs` already written by an earlier, short attempt.
    pub skip: usize,
    /// Whether to fdatasync after the write.
    pub sync: bool,
}

impl WriteJob {
    /// Total bytes across all buffers.
    pub fn total_len(&self) -> usize {
        self.bufs.iter().map(|b| b.len()).sum()
    }

    /// Fills `iov` with the buffers' unwritten bytes (after `skip`).
    pub(crate) fn fill_iovecs(&self, iov: &mut Vec<libc::iovec>) {
        iov.clear();
        let mut skip = self.skip;
        for buf in &self.bufs {
            if skip >= buf.len() {
                skip -= buf.len();
                continue;
            }
            let rest = &buf[skip..];
            skip = 0;
            iov.push(libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: rest.len(),
            });
        }
    }
}

/// A finished job with what the kernel reported.
#[derive(Debug)]
pub(crate) struct WriteDone {
    /// The job, buffers included, handed back.
    pub job: WriteJob,
    /// Bytes this attempt wrote (past `job.skip`), or the write's error.
    pub written: io::Result<usize>,
    /// The fdatasync's result when one was asked for and the write was whole.
    pub synced: Option<io::Result<()>>,
}

/// The partition's write path.
#[derive(Debug)]
pub(crate) enum Driver {
    Uring(Box<UringDriver>),
    Fallback(FallbackDriver),
}

static FALLBACK_NOTICE: AtomicBool = AtomicBool::new(false);

impl Driver {
    /// Opens the write path `backend` asks for.
    pub fn open(backend: IoBackend) -> Result<Self, io::Error> {
        match backend {
            IoBackend::Fallback => Ok(Driver::Fallback(FallbackDriver::default())),
            IoBackend::Uring => UringDriver::new().map(|d| Driver::Uring(Box::new(d))),
            IoBackend::Auto => match UringDriver::new() {
                Ok(d) => Ok(Driver::Uring(Box::new(d))),
                Err(e) => {
                    if !FALLBACK_NOTICE.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            error = %e,
                            "io_uring unavailable; strata-log writes with pwritev + fdatasync"
                        );
                    }
                    Ok(Driver::Fallback(FallbackDriver::default()))
                }
            },
        }
    }

    /// The write path in use.
    pub fn backend(&self) -> ActiveBackend {
        match self {
            Driver::Uring(_) => ActiveBackend::Uring,
            Driver::Fallback(_) => ActiveBackend::Fallback,
        }
    }

    /// True while a job is in flight.
    pub fn busy(&self) -> bool {
        match self {
            Driver::Uring(d) => d.busy(),
            Driver::Fallback(d) => d.busy(),
        }
    }

    /// Has completions signal the eventfd `fd`; returns false for the fallback, whose
    /// jobs complete before `start` returns and so need no wake-up.
    pub fn register_eventfd(&self, fd: std::os::fd::RawFd) -> io::Result<bool> {
        match self {
            Driver::Uring(d) => d.register_eventfd(fd).map(|()| true),
            Driver::Fallback(_) => Ok(false),
        }
    }

    /// Starts `job`; at most one job is in flight.
    pub fn start(&mut self, job: WriteJob) -> io::Result<()> {
        debug_assert!(!self.busy(), "one write in flight at a time");
        debug_assert!(job.bufs.len() <= MAX_IOVECS);
        match self {
            Driver::Uring(d) => d.start(job),
            Driver::Fallback(d) => {
                d.start(job);
                Ok(())
            }
        }
    }

    /// Returns the in-flight job once it has finished; with `wait`, blocks until it has.
    pub fn complete(&mut self, wait: bool) -> io::Result<Option<WriteDone>> {
        match self {
            Driver::Uring(d) => d.complete(wait),
            Driver::Fallback(d) => Ok(d.complete()),
        }
    }
}
