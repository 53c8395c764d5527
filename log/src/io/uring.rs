//! io_uring write path: a vectored write, linked to an fdatasync when durability asks.

use super::{WriteDone, WriteJob};
use io_uring::{IoUring, Probe, opcode, squeue, types};
use std::io;
use std::os::fd::AsRawFd;

const WRITE_TAG: u64 = 1;
const SYNC_TAG: u64 = 2;
const RING_ENTRIES: u32 = 8;

/// The job in flight and the completions seen so far.
#[derive(Debug)]
struct InFlight {
    job: WriteJob,
    expected: u8,
    write_res: Option<i32>,
    sync_res: Option<i32>,
}

/// One ring per partition, with at most one write (plus its linked sync) in flight.
pub(crate) struct UringDriver {
    ring: IoUring,
    /// iovecs of the job in flight; the kernel may read them until its completion.
    iov: Vec<libc::iovec>,
    inflight: Option<InFlight>,
}

impl std::fmt::Debug for UringDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringDriver")
            .field("inflight", &self.inflight.is_some())
            .finish()
    }
}

// SAFETY: the ring and the raw iovec pointers are only touched through `&mut self`; the
// buffers they point into are owned by the in-flight job, which moves with the driver.
unsafe impl Send for UringDriver {}

impl UringDriver {
    /// Creates a ring and checks that the kernel supports the opcodes used.
    pub fn new() -> io::Result<Self> {
        let ring = IoUring::new(RING_ENTRIES)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::Writev::CODE, "writev"),
            (opcode::Fsync::CODE, "fsync"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("io_uring lacks the {name} opcode"),
                ));
            }
        }
        Ok(UringDriver {
            ring,
            iov: Vec::with_capacity(super::MAX_IOVECS),
            inflight: None,
        })
    }

    pub fn busy(&self) -> bool {
        self.inflight.is_some()
    }

    /// Has the kernel signal `fd` (an eventfd) whenever a completion is posted.
    pub fn register_eventfd(&self, fd: std::os::fd::RawFd) -> io::Result<()> {
        self.ring.submitter().register_eventfd(fd)
    }

    pub fn start(&mut self, job: WriteJob) -> io::Result<()> {
        job.fill_iovecs(&mut self.iov);
        let fd = types::Fd(job.file.as_raw_fd());
        let mut write = opcode::Writev::new(fd, self.iov.as_ptr(), self.iov.len() as u32)
            .offset(job.pos + job.skip as u64)
            .build()
            .user_data(WRITE_TAG);
        if job.sync {
            write = write.flags(squeue::Flags::IO_LINK);
        }
        let sync = opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data(SYNC_TAG);
        {
            let mut sq = self.ring.submission();
            // SAFETY: the iovecs in `self.iov` and the buffers they point into are owned by
            // `job`, which is stored in `self.inflight` below and is neither dropped nor
            // mutated until both completions are reaped (see `complete` and `Drop`). The
            // ring has RING_ENTRIES >= 2 free slots because at most one job is in flight.
            unsafe {
                sq.push(&write)
                    .map_err(|_| io::Error::other("submission queue full"))?;
                if job.sync {
                    sq.push(&sync)
                        .map_err(|_| io::Error::other("submission queue full"))?;
                }
            }
        }
        let expected = if job.sync { 2 } else { 1 };
        self.inflight = Some(InFlight {
            job,
            expected,
            write_res: None,
            sync_res: None,
        });
        // The entries are queued and the job is owned by `inflight`: should this submit
        // fail, `complete` submits again, so the job is never abandoned mid-flight.
        let _ = self.ring.submit();
        Ok(())
    }

    pub fn complete(&mut self, wait: bool) -> io::Result<Option<WriteDone>> {
        let Some(inflight) = self.inflight.as_mut() else {
            return Ok(None);
        };
        if !self.ring.submission().is_empty() {
            self.ring.submit()?;
        }
        loop {
            for cqe in self.ring.completion() {
                match cqe.user_data() {
                    WRITE_TAG => inflight.write_res = Some(cqe.result()),
                    SYNC_TAG => inflight.sync_res = Some(cqe.result()),
                    other => debug_assert!(false, "unknown completion tag {other}"),
                }
            }
            let seen =
                u8::from(inflight.write_res.is_some()) + u8::from(inflight.sync_res.is_some());
            if seen == inflight.expected {
                break;
            }
            if !wait {
                return Ok(None);
            }
            let need = usize::from(inflight.expected - seen);
            loop {
                match self.ring.submit_and_wait(need) {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        let done = self.inflight.take().expect("checked above");
        self.iov.clear();
        let res = done.write_res.expect("write completion seen");
        let written = if res < 0 {
            Err(io::Error::from_raw_os_error(-res))
        } else {
            Ok(res as usize)
        };
        let whole = matches!(written, Ok(n) if n == done.job.total_len() - done.job.skip);
        let synced = match done.sync_res {
            // A short write severs the link and the sync is cancelled: the caller retries.
            Some(r) if whole => Some(if r < 0 {
                Err(io::Error::from_raw_os_error(-r))
            } else {
                Ok(())
            }),
            _ => None,
        };
        Ok(Some(WriteDone {
            job: done.job,
            written,
            synced,
        }))
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        // The kernel may still read the job's buffers: wait before they are freed.
        while self.inflight.is_some() {
            if self.complete(true).is_err() {
                // The ring itself failed; leak the buffers rather than free memory the
                // kernel might still read.
                if let Some(inflight) = self.inflight.take() {
                    std::mem::forget(inflight);
                }
            }
        }
    }
}
