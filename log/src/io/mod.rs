//! The write path's I/O edge: vectored writes (each optionally followed by fdatasync)
//! through io_uring or, where io_uring is unavailable, pwritev + fdatasync.
//!
//! A [`WriteJob`] owns the buffers it writes, so the memory the kernel reads stays
//! alive and unmoved until the job's completion is handed back. On io_uring up to
//! [`MAX_JOBS`] jobs are in flight (the next one is written while the one before it is
//! synced); the [`Pipeline`] hands them back strictly in order. Short writes are
//! continued inside the driver, so a job comes back either whole or failed.

mod fallback;
mod uring;

use bytes::BytesMut;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) use fallback::FallbackDriver;
pub(crate) use uring::UringDriver;

/// Most buffers one job may carry (the kernel's IOV_MAX).
pub(crate) const MAX_IOVECS: usize = 1024;

/// Most jobs the io_uring path keeps in flight: one being written while the one before
/// it is in fdatasync.
pub(crate) const MAX_JOBS: usize = 2;

/// Which write path a partition uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoBackend {
    /// Fsync appends go through io_uring (writev linked to fdatasync), so the thread keeps
    /// accepting appends while the disk flushes, except a blocking `Partition::append` to
    /// an idle partition, which writes and syncs inline since its caller waits anyway;
    /// None and Written appends are written inline with pwritev, since a buffered io_uring
    /// write into fresh blocks is punted to a kernel worker on ext4, which measured about
    /// 4x slower than pwritev (docs/BENCHMARKS.md). Without io_uring everything uses
    /// pwritev (said once in the log).
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

/// A finished job.
#[derive(Debug)]
pub(crate) struct WriteDone {
    /// The job, buffers included, handed back.
    pub job: WriteJob,
    /// Ok once every byte is written (and synced when the job asks), else the first error.
    pub result: io::Result<()>,
}

/// What one attempt of a job leads to, once its completions are in.
#[derive(Debug)]
pub(crate) enum Next {
    /// A short write: `skip` was advanced and the rest must be written (and synced).
    Retry,
    /// The job is finished, whole or failed.
    Done(io::Result<()>),
}

impl WriteJob {
    /// Applies one attempt's outcome: bytes written past `skip` (or the write's error) and
    /// the fdatasync's result (`None` when it did not run).
    pub(crate) fn settle(
        &mut self,
        written: io::Result<usize>,
        synced: Option<io::Result<()>>,
    ) -> Next {
        let n = match written {
            Ok(n) => n,
            Err(e) => return Next::Done(Err(e)),
        };
        let rest = self.total_len() - self.skip;
        if n == 0 && rest > 0 {
            return Next::Done(Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write made no progress",
            )));
        }
        self.skip += n.min(rest);
        if self.skip < self.total_len() {
            return Next::Retry;
        }
        match (self.sync, synced) {
            (false, _) => Next::Done(Ok(())),
            (true, Some(r)) => Next::Done(r),
            (true, None) => Next::Done(Err(io::Error::other("fdatasync did not run"))),
        }
    }
}

/// Where a job in the pipeline is.
#[derive(Debug)]
enum Stage {
    /// Its write (or the rest of a short one) is in flight.
    Writing,
    /// Written whole; its fdatasync is in flight.
    Syncing,
    /// Finished; waits for the jobs before it to be handed back.
    Done(io::Result<()>),
}

/// One job in the pipeline and the completions of its current attempt.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Tag of the job's completions.
    pub seq: u64,
    /// The job; its buffers stay owned here until it is handed back.
    pub job: WriteJob,
    /// iovecs of the current attempt, which the kernel may read until its completions.
    pub iov: Vec<libc::iovec>,
    write_res: Option<i32>,
    sync_res: Option<i32>,
    stage: Stage,
}

fn errno(res: i32) -> io::Error {
    io::Error::from_raw_os_error(-res)
}

/// The jobs in flight, oldest first, and what their completions said (no I/O here).
///
/// At most [`MAX_JOBS`]; a new job may join only once every job in the pipeline has
/// been written whole, so at most one write is in flight, while the jobs before it may
/// be in fdatasync. Jobs are handed back strictly in the order they were pushed, each
/// only once it is finished: a job synced early never overtakes an earlier one.
#[derive(Debug, Default)]
pub(crate) struct Pipeline {
    slots: VecDeque<Slot>,
    next_seq: u64,
}

/// What a completion asks of the driver.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resubmit {
    /// Nothing.
    None,
    /// Submit the rest of the short-written job tagged `seq` (its iovecs are refilled).
    Rest(u64),
}

impl Pipeline {
    /// True when no job is in flight.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Jobs in the pipeline.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when another job may start: there is room and no write is in flight.
    pub fn can_start(&self) -> bool {
        self.slots.len() < MAX_JOBS
            && self
                .slots
                .iter()
                .all(|s| !matches!(s.stage, Stage::Writing))
    }

    /// Bytes of the jobs in flight.
    pub fn bytes(&self) -> usize {
        self.slots.iter().map(|s| s.job.total_len()).sum()
    }

    /// Adds `job`, whose iovecs are filled; returns its slot for submission.
    pub fn push(&mut self, job: WriteJob, mut iov: Vec<libc::iovec>) -> &mut Slot {
        debug_assert!(self.can_start(), "room and no write in flight");
        job.fill_iovecs(&mut iov);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.slots.push_back(Slot {
            seq,
            job,
            iov,
            write_res: None,
            sync_res: None,
            stage: Stage::Writing,
        });
        self.slots.back_mut().expect("just pushed")
    }

    /// True when the oldest job is finished.
    pub fn front_done(&self) -> bool {
        self.slots
            .front()
            .is_some_and(|s| matches!(s.stage, Stage::Done(_)))
    }

    /// Takes back the job just pushed, when its submission failed before the kernel saw it.
    pub fn remove_newest(&mut self) -> Option<WriteJob> {
        self.slots.pop_back().map(|s| s.job)
    }

    /// The slot of the job tagged `seq`.
    pub fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.seq == seq)
    }

    /// Records a completion (`sync`: of the fdatasync, else of the write) for job `seq`.
    pub fn on_completion(&mut self, seq: u64, sync: bool, res: i32) -> Resubmit {
        let Some(slot) = self.slot_mut(seq) else {
            debug_assert!(false, "completion for unknown job {seq}");
            return Resubmit::None;
        };
        if sync {
            slot.sync_res = Some(res);
        } else {
            slot.write_res = Some(res);
        }
        let Some(w) = slot.write_res else {
            return Resubmit::None;
        };
        let rest = slot.job.total_len() - slot.job.skip;
        let whole = usize::try_from(w).is_ok_and(|n| n == rest);
        if slot.job.sync && slot.sync_res.is_none() {
            // A whole write leaves the fdatasync running; a short or failed one cancels it
            // (IO_LINK), whose completion is still to come.
            if whole {
                slot.stage = Stage::Syncing;
            }
            return Resubmit::None;
        }
        let written = if w < 0 { Err(errno(w)) } else { Ok(w as usize) };
        let synced = match slot.sync_res {
            Some(r) if whole => Some(if r < 0 { Err(errno(r)) } else { Ok(()) }),
            _ => None,
        };
        slot.write_res = None;
        slot.sync_res = None;
        match slot.job.settle(written, synced) {
            Next::Retry => {
                slot.stage = Stage::Writing;
                slot.job.fill_iovecs(&mut slot.iov);
                Resubmit::Rest(seq)
            }
            Next::Done(r) => {
                slot.stage = Stage::Done(r);
                Resubmit::None
            }
        }
    }

    /// Hands back the oldest job if it is finished, with its iovec list for reuse.
    pub fn pop_done(&mut self) -> Option<(WriteDone, Vec<libc::iovec>)> {
        if !matches!(self.slots.front()?.stage, Stage::Done(_)) {
            return None;
        }
        let slot = self.slots.pop_front().expect("checked above");
        let Stage::Done(result) = slot.stage else {
            unreachable!("checked above")
        };
        let mut iov = slot.iov;
        iov.clear();
        Some((
            WriteDone {
                job: slot.job,
                result,
            },
            iov,
        ))
    }
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

    /// True while a job is in flight or waits to be handed back.
    pub fn busy(&self) -> bool {
        match self {
            Driver::Uring(d) => d.busy(),
            Driver::Fallback(d) => d.busy(),
        }
    }

    /// True when [`start`](Self::start) may be called: io_uring keeps up to
    /// [`MAX_JOBS`] jobs in flight (a new one once the others are written and syncing),
    /// the fallback one.
    pub fn can_start(&self) -> bool {
        match self {
            Driver::Uring(d) => d.pipeline.can_start() && !d.inline.busy(),
            Driver::Fallback(d) => !d.busy(),
        }
    }

    /// Jobs in flight or finished but not yet handed back.
    pub fn jobs(&self) -> usize {
        match self {
            Driver::Uring(d) => d.pipeline.len() + usize::from(d.inline.busy()),
            Driver::Fallback(d) => usize::from(d.busy()),
        }
    }

    /// File positions of the jobs in flight, oldest first.
    #[cfg(test)]
    pub fn job_positions(&self) -> Vec<u64> {
        match self {
            Driver::Uring(d) => d.pipeline.slots.iter().map(|s| s.job.pos).collect(),
            Driver::Fallback(_) => Vec::new(),
        }
    }

    /// Bytes of the jobs in flight.
    pub fn inflight_bytes(&self) -> usize {
        match self {
            Driver::Uring(d) => d.pipeline.bytes() + d.inline.bytes(),
            Driver::Fallback(d) => d.bytes(),
        }
    }

    /// Has completions signal the eventfd `fd`; returns false for the fallback, whose
    /// jobs complete before `start` returns and so need no wake-up.
    pub fn register_eventfd(&self, fd: std::os::fd::BorrowedFd<'_>) -> io::Result<bool> {
        match self {
            Driver::Uring(d) => d.register_eventfd(fd).map(|()| true),
            Driver::Fallback(_) => Ok(false),
        }
    }

    /// Starts `job`; only when [`can_start`](Self::can_start).
    pub fn start(&mut self, job: WriteJob) -> io::Result<()> {
        debug_assert!(self.can_start(), "no room in the write pipeline");
        debug_assert!(job.bufs.len() <= MAX_IOVECS);
        match self {
            Driver::Uring(d) => d.start(job),
            Driver::Fallback(d) => {
                d.start(job);
                Ok(())
            }
        }
    }

    /// Runs `job` to completion on this thread with pwritev (+ fdatasync), whichever the
    /// write path; only when nothing is in flight. Its completion is handed back as usual.
    pub fn start_inline(&mut self, job: WriteJob) {
        debug_assert!(!self.busy(), "inline jobs run alone");
        match self {
            Driver::Uring(d) => d.start_inline(job),
            Driver::Fallback(d) => d.start(job),
        }
    }

    /// Jobs the io_uring path ran inline so far.
    #[cfg(test)]
    pub fn inline_runs(&self) -> u64 {
        match self {
            Driver::Uring(d) => d.inline_runs,
            Driver::Fallback(_) => 0,
        }
    }

    /// Takes in the completions posted so far; with `wait`, first blocks until one is
    /// posted if none is (and a job is in flight).
    pub fn reap(&mut self, wait: bool) -> io::Result<()> {
        match self {
            Driver::Uring(d) => d.reap(wait),
            Driver::Fallback(_) => Ok(()),
        }
    }

    /// Hands back the oldest job once it is finished (jobs come back in start order).
    pub fn pop_done(&mut self) -> Option<WriteDone> {
        match self {
            Driver::Uring(d) => d.pop_done(),
            Driver::Fallback(d) => d.complete(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECANCELED: i32 = -libc::ECANCELED;

    fn job(lens: &[usize], sync: bool) -> WriteJob {
        WriteJob {
            file: Arc::new(File::open("/dev/null").expect("open /dev/null")),
            pos: 0,
            bufs: lens
                .iter()
                .map(|&n| BytesMut::from(&vec![7u8; n][..]))
                .collect(),
            skip: 0,
            sync,
        }
    }

    fn push(p: &mut Pipeline, lens: &[usize]) -> u64 {
        p.push(job(lens, true), Vec::new()).seq
    }

    fn pop(p: &mut Pipeline) -> Option<(usize, io::Result<()>)> {
        p.pop_done().map(|(d, _)| (d.job.total_len(), d.result))
    }

    #[test]
    fn the_next_job_starts_only_once_the_one_before_is_written() {
        let mut p = Pipeline::default();
        assert!(p.can_start());
        let a = push(&mut p, &[100]);
        assert!(!p.can_start(), "a write is in flight");
        assert_eq!(p.on_completion(a, false, 100), Resubmit::None);
        assert!(p.can_start(), "the first job is only syncing");
        let b = push(&mut p, &[50, 50]);
        assert!(!p.can_start(), "the second is writing");
        assert_eq!(p.on_completion(b, false, 100), Resubmit::None);
        assert!(!p.can_start(), "both are syncing: the pipeline is full");
        assert_eq!(p.len(), MAX_JOBS);
        assert_eq!(p.bytes(), 200);
    }

    #[test]
    fn jobs_come_back_in_order_even_when_a_later_one_syncs_first() {
        let mut p = Pipeline::default();
        let a = push(&mut p, &[100]);
        p.on_completion(a, false, 100);
        let b = push(&mut p, &[30]);
        p.on_completion(b, false, 30);
        p.on_completion(b, true, 0);
        assert!(
            pop(&mut p).is_none(),
            "the later job waits for the earlier one"
        );
        assert!(!p.front_done());
        p.on_completion(a, true, 0);
        let (len, r) = pop(&mut p).expect("first job");
        assert_eq!(len, 100);
        r.expect("first job whole");
        let (len, r) = pop(&mut p).expect("second job");
        assert_eq!(len, 30);
        r.expect("second job whole");
        assert!(p.is_empty());
    }

    #[test]
    fn a_job_is_not_done_before_its_fdatasync_completes() {
        let mut p = Pipeline::default();
        let a = push(&mut p, &[10, 10]);
        p.on_completion(a, false, 20);
        assert!(pop(&mut p).is_none(), "written but not synced is not done");
        p.on_completion(a, true, 0);
        pop(&mut p).expect("done").1.expect("synced");
    }

    #[test]
    fn the_sync_completion_may_arrive_before_the_write_completion() {
        let mut p = Pipeline::default();
        let a = push(&mut p, &[10]);
        p.on_completion(a, true, 0);
        assert!(pop(&mut p).is_none());
        p.on_completion(a, false, 10);
        pop(&mut p).expect("done").1.expect("synced");
    }

    #[test]
    fn a_short_write_is_continued_in_place() {
        let mut p = Pipeline::default();
        let a = push(&mut p, &[40, 60]);
        p.on_completion(a, false, 10);
        assert!(!p.can_start(), "a short write is still being written");
        assert_eq!(p.on_completion(a, true, ECANCELED), Resubmit::Rest(a));
        let slot = p.slot_mut(a).expect("still in flight");
        assert_eq!(slot.job.skip, 10);
        let iov_lens: Vec<usize> = slot.iov.iter().map(|v| v.iov_len).collect();
        assert_eq!(iov_lens, [30, 60], "iovecs cover only the rest");
        // A second job cannot overtake the retry.
        assert!(!p.can_start());
        p.on_completion(a, false, 90);
        assert!(p.can_start());
        let b = push(&mut p, &[5]);
        p.on_completion(b, false, 5);
        p.on_completion(b, true, 0);
        assert!(pop(&mut p).is_none());
        p.on_completion(a, true, 0);
        let (len, r) = pop(&mut p).expect("retried job");
        assert_eq!(len, 100);
        r.expect("whole after the retry");
        pop(&mut p).expect("second job").1.expect("whole");
    }

    #[test]
    fn an_error_in_the_second_job_leaves_the_first_syncing_job_intact() {
        let mut p = Pipeline::default();
        let a = push(&mut p, &[100]);
        p.on_completion(a, false, 100);
        let b = push(&mut p, &[100]);
        p.on_completion(b, false, -libc::ENOSPC);
        p.on_completion(b, true, ECANCELED);
        assert!(pop(&mut p).is_none(), "the first job is still syncing");
        p.on_completion(a, true, 0);
        pop(&mut p).expect("first").1.expect("first job is durable");
        let err = pop(&mut p).expect("second").1.expect_err("second failed");
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    }

    #[test]
    fn a_failed_fdatasync_fails_its_job_and_not_the_one_before() {
        let mut p = Pipeline::default();
        let a = push(&mut p, &[8]);
        p.on_completion(a, false, 8);
        let b = push(&mut p, &[8]);
        p.on_completion(b, false, 8);
        p.on_completion(b, true, -libc::EIO);
        p.on_completion(a, true, 0);
        pop(&mut p).expect("first").1.expect("first synced");
        let err = pop(&mut p).expect("second").1.expect_err("sync failed");
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
    }

    #[test]
    fn a_write_without_progress_is_an_error() {
        let mut p = Pipeline::default();
        let a = push(&mut p, &[8]);
        p.on_completion(a, false, 0);
        p.on_completion(a, true, ECANCELED);
        let err = pop(&mut p).expect("done").1.expect_err("no progress");
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    }

    #[test]
    fn a_job_without_sync_is_done_when_written() {
        let mut p = Pipeline::default();
        let a = p.push(job(&[8], false), Vec::new()).seq;
        p.on_completion(a, false, 8);
        pop(&mut p).expect("done").1.expect("written");
    }
}
