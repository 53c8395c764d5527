//! io_uring write path: vectored writes, each linked to an fdatasync when durability asks,
//! with up to [`MAX_JOBS`](super::MAX_JOBS) jobs in flight.

use super::{Pipeline, Resubmit, Slot, WriteDone};
use io_uring::{IoUring, Probe, opcode, squeue, types};
use std::io;
use std::os::fd::AsRawFd;

/// Low bit of a completion's tag: set for the fdatasync, clear for the write.
const SYNC_BIT: u64 = 1;
const RING_ENTRIES: u32 = 8;

/// One ring per partition; the jobs in flight live in `pipeline`.
pub(crate) struct UringDriver {
    ring: IoUring,
    pub(super) pipeline: Pipeline,
    /// iovec lists of finished jobs, reused by the next ones (at most `MAX_JOBS`).
    spare_iov: Vec<Vec<libc::iovec>>,
    /// Runs jobs inline (pwritev + fdatasync) when the caller blocks anyway.
    pub(super) inline: super::FallbackDriver,
    /// Jobs run inline so far.
    pub(super) inline_runs: u64,
    /// The registered eventfd, which inline jobs signal.
    signal: std::cell::OnceCell<std::os::fd::OwnedFd>,
}

impl std::fmt::Debug for UringDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringDriver")
            .field("inflight", &self.pipeline.len())
            .finish()
    }
}

// SAFETY: the ring and the raw iovec pointers are only touched through `&mut self`; the
// buffers they point into are owned by the in-flight jobs, which move with the driver.
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
            pipeline: Pipeline::default(),
            spare_iov: Vec::with_capacity(super::MAX_JOBS),
            inline: super::FallbackDriver::default(),
            inline_runs: 0,
            signal: std::cell::OnceCell::new(),
        })
    }

    /// Has the kernel signal `fd` (an eventfd) whenever a completion is posted.
    /// Jobs run inline signal it too (through a descriptor of its own, so that it stays
    /// valid whatever the caller does with `fd`).
    pub fn register_eventfd(&self, fd: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
        let own = fd.try_clone_to_owned()?;
        self.ring.submitter().register_eventfd(fd.as_raw_fd())?;
        // The ring accepts one eventfd (a second registration fails above).
        let _ = self.signal.set(own);
        Ok(())
    }

    /// Runs `job` inline (pwritev + fdatasync); its completion signals the eventfd like
    /// the ring's completions do.
    pub fn start_inline(&mut self, job: super::WriteJob) {
        self.inline_runs += 1;
        self.inline.start(job);
        if let Some(fd) = self.signal.get() {
            // A full counter (EAGAIN) already wakes any waiter.
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
    }

    /// Queues the write (and linked fdatasync) of `slot`'s current attempt.
    fn push(ring: &mut IoUring, slot: &Slot) -> io::Result<()> {
        let job = &slot.job;
        let fd = types::Fd(job.file.as_raw_fd());
        let mut write = opcode::Writev::new(fd, slot.iov.as_ptr(), slot.iov.len() as u32)
            .offset(job.pos + job.skip as u64)
            .build()
            .user_data(slot.seq << 1);
        if job.sync {
            write = write.flags(squeue::Flags::IO_LINK);
        }
        let sync = opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build()
            .user_data((slot.seq << 1) | SYNC_BIT);
        let need = if job.sync { 2 } else { 1 };
        let mut sq = ring.submission();
        if sq.capacity() - sq.len() < need {
            // Never with RING_ENTRIES >= 2 * MAX_JOBS; checked so that a write is never
            // queued without the fdatasync linked to it.
            return Err(io::Error::other("submission queue full"));
        }
        // SAFETY: the iovecs in `slot.iov` and the buffers they point into are owned by the
        // slot, which stays in the pipeline, unmoved on the heap where the kernel reads them
        // (a `Vec`'s buffer does not move with the `Vec`), and is neither dropped nor
        // mutated until this attempt's completions are reaped (see `reap` and `Drop`).
        // There is room for both entries (checked above), so neither push fails.
        unsafe {
            sq.push(&write)
                .map_err(|_| io::Error::other("submission queue full"))?;
            if job.sync {
                sq.push(&sync)
                    .map_err(|_| io::Error::other("submission queue full"))?;
            }
        }
        Ok(())
    }

    /// Adds `job` to the pipeline and submits its write (and linked fdatasync).
    pub fn start(&mut self, job: super::WriteJob) -> io::Result<()> {
        let iov = self
            .spare_iov
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(super::MAX_IOVECS));
        let slot = self.pipeline.push(job, iov);
        if let Err(e) = Self::push(&mut self.ring, slot) {
            // Nothing was queued: take the job back out (it is the newest) and drop it.
            self.pipeline.remove_newest();
            return Err(e);
        }
        // The entries are queued and the job is owned by the pipeline: should this submit
        // fail, `reap` submits again, so the job is never abandoned mid-flight.
        let _ = self.ring.submit();
        Ok(())
    }

    /// Moves posted completions into the pipeline, resubmitting the rest of short writes;
    /// returns how many it took in.
    fn drain(&mut self) -> io::Result<usize> {
        let mut seen = 0;
        loop {
            // At most 2 * MAX_JOBS completions are outstanding; take them in small batches
            // so that resubmitting (which needs the submission queue) can follow.
            let mut cqes = [(0u64, 0i32); 8];
            let mut n = 0;
            for cqe in self.ring.completion().take(cqes.len()) {
                cqes[n] = (cqe.user_data(), cqe.result());
                n += 1;
            }
            if n == 0 {
                return Ok(seen);
            }
            seen += n;
            for &(tag, res) in &cqes[..n] {
                let sync = tag & SYNC_BIT != 0;
                if let Resubmit::Rest(seq) = self.pipeline.on_completion(tag >> 1, sync, res) {
                    let slot = self.pipeline.slot_mut(seq).expect("just completed");
                    Self::push(&mut self.ring, slot)?;
                    self.ring.submit()?;
                }
            }
        }
    }

    /// Takes in posted completions; with `wait`, blocks for one if none is posted and the
    /// oldest job is not finished.
    pub fn reap(&mut self, wait: bool) -> io::Result<()> {
        if self.pipeline.is_empty() {
            return Ok(());
        }
        if !self.ring.submission().is_empty() {
            self.ring.submit()?;
        }
        if self.drain()? > 0 || !wait || self.pipeline_done() {
            return Ok(());
        }
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.drain().map(|_| ())
    }

    /// True when the oldest job is finished (nothing to wait for before handing it back).
    fn pipeline_done(&self) -> bool {
        self.pipeline.front_done()
    }

    /// True while a job is in flight or waits to be handed back.
    pub fn busy(&self) -> bool {
        !self.pipeline.is_empty() || self.inline.busy()
    }

    /// Hands back the inline job, or else the oldest pipeline job once it is finished.
    pub fn pop_done(&mut self) -> Option<WriteDone> {
        if let Some(done) = self.inline.complete() {
            return Some(done);
        }
        let (done, iov) = self.pipeline.pop_done()?;
        if self.spare_iov.len() < super::MAX_JOBS {
            self.spare_iov.push(iov);
        }
        Some(done)
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        // The kernel may still read the jobs' buffers: wait before they are freed.
        while !self.pipeline.is_empty() {
            if self.reap(true).is_err() {
                // The ring itself failed; leak the buffers rather than free memory the
                // kernel might still read.
                std::mem::forget(std::mem::take(&mut self.pipeline));
                return;
            }
            while self.pop_done().is_some() {}
        }
    }
}
