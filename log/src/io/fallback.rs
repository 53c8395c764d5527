//! pwritev + fdatasync: the write path where io_uring is unavailable (one job at a time).

use super::{WriteDone, WriteJob};
use std::io;
use std::os::fd::AsRawFd;

/// Runs each job synchronously when it starts; the completion is handed back on the next poll.
#[derive(Debug, Default)]
pub(crate) struct FallbackDriver {
    iov: Vec<libc::iovec>,
    done: Option<WriteDone>,
}

// SAFETY: the raw pointers in `iov` are only used inside `start`, while the job's
// buffers are borrowed; between calls they are never dereferenced.
unsafe impl Send for FallbackDriver {}

impl FallbackDriver {
    /// True while a finished job waits to be handed back.
    pub fn busy(&self) -> bool {
        self.done.is_some()
    }

    /// Bytes of the finished job not yet handed back.
    pub fn bytes(&self) -> usize {
        self.done.as_ref().map_or(0, |d| d.job.total_len())
    }

    /// Writes (and syncs, when asked) `job` now, keeping the outcome for `complete`.
    pub fn start(&mut self, job: WriteJob) {
        let total = job.total_len() - job.skip;
        job.fill_iovecs(&mut self.iov);
        let fd = job.file.as_raw_fd();
        let mut written = 0usize;
        let mut error = None;
        let mut iov_at = 0usize;
        while written < total {
            let iov = &self.iov[iov_at..];
            let cnt = iov.len().min(super::MAX_IOVECS) as libc::c_int;
            // SAFETY: every iovec points into a buffer owned by `job`, which is alive and
            // not mutated for the duration of this call; `cnt` never exceeds `iov.len()`.
            let n = unsafe {
                libc::pwritev(
                    fd,
                    iov.as_ptr(),
                    cnt,
                    (job.pos + (job.skip + written) as u64) as libc::off_t,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                error = Some(e);
                break;
            }
            if n == 0 {
                error = Some(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "pwritev wrote 0 bytes",
                ));
                break;
            }
            written += n as usize;
            // Advance past fully written iovecs and trim a partially written one.
            let mut n = n as usize;
            while n > 0 {
                let first = &mut self.iov[iov_at];
                if n >= first.iov_len {
                    n -= first.iov_len;
                    iov_at += 1;
                } else {
                    // SAFETY: `n < iov_len`, so the new base stays inside the same buffer.
                    first.iov_base = unsafe { (first.iov_base as *mut u8).add(n) }.cast();
                    first.iov_len -= n;
                    n = 0;
                }
            }
        }
        self.iov.clear();
        let result = match error {
            // A write error, after part of the job or none of it, fails the job.
            Some(e) => Err(e),
            None if job.sync => loop {
                match rustix::fs::fdatasync(&*job.file) {
                    Err(rustix::io::Errno::INTR) => continue,
                    r => break r.map_err(io::Error::from),
                }
            },
            None => Ok(()),
        };
        self.done = Some(WriteDone { job, result });
    }

    /// Hands back the finished job, if any.
    pub fn complete(&mut self) -> Option<WriteDone> {
        self.done.take()
    }
}
