//! A partition: an ordered, durable, checksummed sequence of record batches.

use crate::config::{Durability, PartitionConfig};
use crate::error::{Error, FormatError, IoContext, Result};
use crate::format::{BatchHeader, BatchView, patch_base_offset};
use crate::index;
use crate::io::{ActiveBackend, Driver, MAX_IOVECS, MAX_JOBS, WriteDone, WriteJob};
use crate::producer::{ProducerTable, SeqCheck};
use crate::recovery::ScanStop;
use crate::retention::{RetentionPolicy, SegmentStat, segments_to_delete};
use crate::segment::{
    self, ActiveSegment, INDEX_SUFFIX, LOG_SUFFIX, SealedSegment, TIME_INDEX_SUFFIX,
};
use bytes::{Bytes, BytesMut};
use std::collections::{BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Name of the marker a clean `close` leaves behind.
pub const CLEAN_SHUTDOWN_MARKER: &str = ".clean-shutdown";
/// Name of the file locked while a partition is open.
pub const LOCK_FILE: &str = ".lock";
/// Name of the idempotent-producer state snapshot (written on roll and close).
pub const PRODUCER_SNAPSHOT: &str = "producers.snapshot";

/// Offsets assigned to an accepted batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the batch's first record.
    pub base_offset: u64,
    /// Offset of the batch's last record.
    pub last_offset: u64,
}

/// Whole batches returned by a read, zero-copy.
#[derive(Debug, Clone)]
pub struct Fetch {
    /// Concatenated batches, starting with the one holding the requested offset.
    pub bytes: Bytes,
    /// Offset after the last readable record when the read was served.
    pub high_watermark: u64,
    /// First offset still retained.
    pub log_start_offset: u64,
}

/// What recovery found when the partition was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Whether the previous owner closed the partition cleanly.
    pub clean_shutdown: bool,
    /// Number of segments found.
    pub segments: usize,
    /// Valid bytes in the active segment after recovery.
    pub active_valid_len: u64,
    /// What ended the active segment's valid prefix, if its tail was torn or corrupt.
    pub truncated_because: Option<ScanStop>,
    /// Whether the active segment's indexes were rebuilt from the data.
    pub rebuilt_active_index: bool,
}

/// What one pass of retention deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionReport {
    /// Sealed segments deleted.
    pub segments_deleted: usize,
    /// Bytes those segments held.
    pub bytes_deleted: u64,
    /// First retained offset afterwards.
    pub log_start_offset: u64,
}

/// Summary of one segment, for inspection and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// First offset of the segment.
    pub base_offset: u64,
    /// Offset after its last durable record.
    pub next_offset: u64,
    /// Durable bytes.
    pub size: u64,
    /// Newest record timestamp, if any.
    pub max_timestamp: Option<i64>,
    /// False for the active segment.
    pub sealed: bool,
}

/// One partition of a topic: owned by one thread, appended through io_uring.
///
/// Appends are pipelined: [`submit`](Self::submit) queues a batch and returns its
/// offsets; the batch is durable once [`high_watermark`](Self::high_watermark) passes its
/// last offset. Everything queued while a write is in flight goes out in a later write
/// (group commit). On io_uring with Fsync durability the next write starts while the one
/// before it is in fdatasync; writes are acknowledged strictly in offset order, each once
/// its own fdatasync has completed. [`poll`](Self::poll) advances I/O without blocking;
/// [`append`](Self::append) is the blocking convenience.
///
/// If a write fails, every batch not yet durable is dropped, the error is returned and
/// the next append reuses their offsets; [`high_watermark`](Self::high_watermark) tells
/// which appends made it.
#[derive(Debug)]
pub struct Partition {
    dir: PathBuf,
    config: PartitionConfig,
    _lock: File,
    driver: Driver,
    sealed: VecDeque<SealedSegment>,
    active: ActiveSegment,
    /// Batches accepted but not yet handed to the driver.
    pending: VecDeque<BytesMut>,
    pending_bytes: usize,
    /// Offset the next accepted batch gets.
    next_offset: u64,
    /// Position in the active segment after the last accepted batch.
    tail_pos: u64,
    /// Position in the active segment after the last batch handed to the driver.
    queued_pos: u64,
    /// Whether the newest write job went through the segment's second descriptor.
    last_job_alt: bool,
    /// Buffer lists recycled from one write job to the next (at most `MAX_JOBS`).
    spare: Vec<Vec<BytesMut>>,
    /// Idempotent producers' recent batches, including accepted but not yet durable ones.
    producers: ProducerTable,
    report: OpenReport,
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .at(&path)?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Locked {
            path: dir.to_path_buf(),
        }),
        Err(e) => Err(Error::io(&path, e.into())),
    }
}

fn now_micros(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_micros()).unwrap_or(i64::MAX),
    }
}

/// From the batch at `pos`, skips batches before `offset`, then takes whole batches up to
/// `max_bytes` (always at least one).
fn slice_batches(
    data: &Bytes,
    mut pos: usize,
    offset: u64,
    max_bytes: usize,
) -> Result<Bytes, String> {
    let header_at = |pos: usize| -> Result<BatchHeader, String> {
        let h = BatchHeader::parse(&data[pos..]).map_err(|e| format!("batch at {pos}: {e}"))?;
        if pos + h.length as usize > data.len() {
            return Err(format!("batch at {pos} runs past the readable end"));
        }
        Ok(h)
    };
    loop {
        if pos >= data.len() {
            return Ok(Bytes::new());
        }
        let h = header_at(pos)?;
        if h.next_offset() > offset {
            break;
        }
        pos += h.length as usize;
    }
    let start = pos;
    let mut end = pos;
    while end < data.len() {
        let len = header_at(end)?.length as usize;
        if end > start && end + len - start > max_bytes {
            break;
        }
        end += len;
    }
    Ok(data.slice(start..end))
}

impl Partition {
    /// Opens (creating if needed) the partition stored in `dir`, recovering its tail.
    pub fn open(dir: impl AsRef<Path>, config: PartitionConfig) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).at(&dir)?;
        let lock = lock_dir(&dir)?;
        let driver = Driver::open(config.io_backend.for_durability(config.durability))
            .map_err(Error::UringUnavailable)?;

        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let clean = marker.exists();
        if clean {
            // From here on a crash must not look like a clean shutdown.
            std::fs::remove_file(&marker).at(&marker)?;
            segment::sync_dir(&dir)?;
        }

        let mut logs = BTreeSet::new();
        let mut indexes = Vec::new();
        for entry in std::fs::read_dir(&dir).at(&dir)? {
            let entry = entry.at(&dir)?;
            let name = entry.file_name();
            let Some((base, suffix)) = name.to_str().and_then(segment::parse_segment_name) else {
                continue;
            };
            if suffix.ends_with(".tmp") {
                // An index write interrupted by a crash: the rename never happened.
                let path = entry.path();
                std::fs::remove_file(&path).at(&path)?;
                continue;
            }
            if segment::is_retired(suffix) {
                // Retired by retention before a crash, not yet unlinked.
                segment::remove_later(entry.path());
                continue;
            }
            match suffix {
                LOG_SUFFIX => {
                    logs.insert(base);
                }
                INDEX_SUFFIX | TIME_INDEX_SUFFIX => indexes.push((base, entry.path())),
                _ => {}
            }
        }
        for (base, path) in indexes {
            if !logs.contains(&base) {
                // Left behind by an interrupted retention pass.
                std::fs::remove_file(&path).at(&path)?;
            }
        }

        let interval = config.index_interval_bytes;
        let last = logs.last().copied();
        let mut sealed = VecDeque::new();
        for &base in logs.iter().filter(|&&b| Some(b) != last) {
            sealed.push_back(SealedSegment::open(&dir, base, interval)?);
        }
        let (active, report) = match last {
            Some(base) => {
                let (active, rec) = ActiveSegment::open(
                    &dir,
                    base,
                    config.segment_bytes,
                    config.preallocate,
                    interval,
                    clean,
                )?;
                let report = OpenReport {
                    clean_shutdown: clean,
                    segments: logs.len(),
                    active_valid_len: rec.valid_len,
                    truncated_because: rec.damage,
                    rebuilt_active_index: rec.rebuilt,
                };
                (active, report)
            }
            None => {
                let active = ActiveSegment::create(
                    &dir,
                    0,
                    config.segment_bytes,
                    config.preallocate,
                    interval,
                )?;
                segment::sync_dir(&dir)?;
                let report = OpenReport {
                    clean_shutdown: clean,
                    segments: 1,
                    active_valid_len: 0,
                    truncated_because: None,
                    rebuilt_active_index: false,
                };
                (active, report)
            }
        };
        let mut partition = Partition {
            next_offset: active.next_offset,
            tail_pos: active.durable_len,
            queued_pos: active.durable_len,
            last_job_alt: false,
            dir,
            config,
            _lock: lock,
            driver,
            sealed,
            active,
            pending: VecDeque::new(),
            pending_bytes: 0,
            spare: Vec::with_capacity(MAX_JOBS),
            producers: ProducerTable::default(),
            report,
        };
        partition.rebuild_producers()?;
        Ok(partition)
    }

    /// Loads the producer snapshot if it is consistent with the log, then replays the
    /// batch headers after it.
    fn rebuild_producers(&mut self) -> Result<()> {
        let path = self.dir.join(PRODUCER_SNAPSHOT);
        let snapshot =
            segment::read_if_exists(&path)?.and_then(|b| ProducerTable::decode_snapshot(&b));
        let (mut table, mut from) = match snapshot {
            Some((table, covered)) if covered <= self.high_watermark() => (table, covered),
            _ => (ProducerTable::default(), 0),
        };
        from = from.max(self.log_start_offset());
        let mut error = None;
        self.for_each_header(from, |h| {
            if let Err(e) = table.check(h) {
                // The log is the truth: a fenced or gapped batch in it was accepted by an
                // earlier version of this state; record it and say so.
                error.get_or_insert(e);
            }
            table.record(
                h,
                Appended {
                    base_offset: h.base_offset,
                    last_offset: h.last_offset(),
                },
            );
        })?;
        if let Some(e) = error {
            tracing::warn!(dir = %self.dir.display(), error = %e, "producer state replay saw an out-of-sequence batch");
        }
        self.producers = table;
        Ok(())
    }

    /// Calls `f` with the header of every durable batch that ends after `from`, in order.
    fn for_each_header(&self, from: u64, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
        let first = self.sealed.partition_point(|s| s.next_offset <= from);
        let sealed = self
            .sealed
            .range(first..)
            .map(|s| (s.data(), &s.offsets[..], s.base_offset));
        let active = std::iter::once((
            Ok(self.active.readable()),
            self.active.index.offsets(),
            self.active.base_offset,
        ));
        for (data, offsets, base) in sealed.chain(active) {
            let data = data?;
            let rel = u32::try_from(from.saturating_sub(base)).unwrap_or(u32::MAX);
            let mut pos = index::lookup_position(offsets, rel) as usize;
            while pos < data.len() {
                let h = BatchHeader::parse(&data[pos..]).map_err(|e| Error::Corrupt {
                    path: segment::segment_path(&self.dir, base, LOG_SUFFIX),
                    reason: format!("batch at {pos}: {e}"),
                })?;
                if h.next_offset() > from {
                    f(&h);
                }
                pos += h.length as usize;
            }
        }
        Ok(())
    }

    /// Writes the producer snapshot, complete up to the high watermark (best effort:
    /// without it the state is replayed from the log).
    fn write_producer_snapshot(&self) {
        let path = self.dir.join(PRODUCER_SNAPSHOT);
        let tmp = self.dir.join(format!("{PRODUCER_SNAPSHOT}.tmp"));
        let bytes = self.producers.encode_snapshot(self.high_watermark());
        if let Err(e) = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path)) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the producer snapshot");
        }
    }

    /// What recovery found when the partition was opened.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The partition's configuration.
    pub fn config(&self) -> &PartitionConfig {
        &self.config
    }

    /// The write path in use (io_uring or the pwritev fallback).
    pub fn backend(&self) -> ActiveBackend {
        self.driver.backend()
    }

    /// Has write completions signal the eventfd `fd`, so an event loop can sleep on it.
    ///
    /// Returns false on the fallback write path, whose writes finish inside
    /// [`submit`](Self::submit) and [`poll`](Self::poll): there, poll again until
    /// [`is_writing`](Self::is_writing) is false instead of sleeping.
    pub fn register_completion_eventfd(&self, fd: BorrowedFd<'_>) -> Result<bool> {
        self.driver
            .register_eventfd(fd)
            .map_err(|e| Error::io(&self.dir, e))
    }

    /// True while a write is in flight or batches wait to be written.
    pub fn is_writing(&self) -> bool {
        self.driver.busy() || !self.pending.is_empty()
    }

    /// Write jobs in flight or finished but not yet applied: at most two on io_uring
    /// with Fsync durability (one writing while the one before it syncs), else one.
    pub fn writes_in_flight(&self) -> usize {
        self.driver.jobs()
    }

    /// Offset after the last durable (and readable) record.
    pub fn high_watermark(&self) -> u64 {
        self.active.next_offset
    }

    /// Offset the next accepted batch will get.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// First offset still retained.
    pub fn log_start_offset(&self) -> u64 {
        self.sealed
            .front()
            .map_or(self.active.base_offset, |s| s.base_offset)
    }

    /// Bytes accepted but not yet durable.
    pub fn unflushed_bytes(&self) -> u64 {
        self.tail_pos - self.active.durable_len
    }

    /// Durable bytes across all segments.
    pub fn size_bytes(&self) -> u64 {
        self.sealed.iter().map(SealedSegment::size).sum::<u64>() + self.active.durable_len
    }

    /// A summary of every segment, oldest first.
    pub fn segments(&self) -> Vec<SegmentInfo> {
        let mut out: Vec<SegmentInfo> = self
            .sealed
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size: s.size(),
                max_timestamp: s.max_timestamp,
                sealed: true,
            })
            .collect();
        out.push(SegmentInfo {
            base_offset: self.active.base_offset,
            next_offset: self.active.next_offset,
            size: self.active.durable_len,
            max_timestamp: self.active.index.max_timestamp(),
            sealed: false,
        });
        out
    }

    /// Queues an encoded batch, assigns its offsets and starts writing it if the disk is idle.
    ///
    /// The batch's CRC and header are checked; its base offset is overwritten in place.
    /// It is durable (per the configured [`Durability`]) once the high watermark passes
    /// `last_offset`. Waits for earlier writes only when `max_pending_bytes` is reached
    /// or the active segment must roll.
    pub fn submit(&mut self, batch: BytesMut) -> Result<Appended> {
        let appended = self.enqueue(batch)?;
        if !self.driver.busy() {
            // An idle disk starts at once; while writes are in flight, batches gather for
            // the next job, which `poll`/`wait` start when the pipeline has room.
            self.kick(false)?;
        }
        Ok(appended)
    }

    /// Like [`submit`](Self::submit), but starts no write: the next `poll`, `wait` or
    /// `flush` hands everything queued to the disk in one job.
    ///
    /// An event loop that accepts many batches in a row enqueues them all and polls once,
    /// so they coalesce into one vectored write instead of the first going out alone.
    pub(crate) fn enqueue(&mut self, batch: BytesMut) -> Result<Appended> {
        self.enqueue_if(batch, None)
    }

    /// [`enqueue`](Self::enqueue), only if the next offset is `expected` (when given);
    /// otherwise fails with [`Error::Conflict`].
    ///
    /// An idempotent retry of a batch already appended is answered with its original
    /// offsets before the check: the append it retries is the one that moved the offset.
    pub(crate) fn enqueue_if(
        &mut self,
        mut batch: BytesMut,
        expected: Option<u64>,
    ) -> Result<Appended> {
        let header = BatchHeader::parse_checked(&batch)?;
        if batch.len() != header.length as usize {
            return Err(
                FormatError::InconsistentHeader("buffer holds bytes past the batch").into(),
            );
        }
        if batch.len() > self.config.max_batch_bytes as usize {
            return Err(FormatError::TooLarge {
                size: batch.len(),
                limit: self.config.max_batch_bytes as usize,
            }
            .into());
        }
        if let SeqCheck::Duplicate(original) = self.producers.check(&header)? {
            return Ok(original);
        }
        if let Some(expected) = expected
            && expected != self.next_offset
        {
            return Err(Error::Conflict {
                expected,
                actual: self.next_offset,
            });
        }
        let len = batch.len() as u64;
        let aged = self
            .config
            .segment_age
            .is_some_and(|age| self.tail_pos > 0 && self.active.created.elapsed() >= age);
        if self.tail_pos + len > self.active.capacity || aged {
            self.roll()?;
        }
        while self.pending_bytes + batch.len() > self.config.max_pending_bytes {
            self.drive(true)?;
        }
        let base = self.next_offset;
        patch_base_offset(&mut batch, base);
        self.next_offset = base + u64::from(header.record_count);
        self.tail_pos += len;
        self.pending_bytes += batch.len();
        self.pending.push_back(batch);
        let appended = Appended {
            base_offset: base,
            last_offset: base + u64::from(header.last_offset_delta),
        };
        self.producers.record(&header, appended);
        Ok(appended)
    }

    /// Appends a batch and returns once the configured durability is met
    /// (immediately for [`Durability::None`]).
    ///
    /// With [`IoBackend::Auto`](crate::IoBackend::Auto) and Fsync durability, an append to
    /// an idle partition writes and syncs inline (pwritev + fdatasync): the caller waits
    /// anyway, and io_uring runs every fdatasync on a kernel worker, a hand-off that
    /// measured ~60 µs per append (docs/BENCHMARKS.md).
    pub fn append(&mut self, batch: BytesMut) -> Result<Appended> {
        let appended = self.enqueue(batch)?;
        if !self.driver.busy() {
            let inline = self.config.io_backend == crate::IoBackend::Auto
                && self.config.durability == Durability::Fsync;
            self.kick(inline)?;
        }
        if self.config.durability != Durability::None {
            while self.high_watermark() <= appended.last_offset {
                self.drive(true)?;
            }
        }
        Ok(appended)
    }

    /// Applies the writes that have finished and starts the next one, without blocking.
    ///
    /// Returns the high watermark.
    pub fn poll(&mut self) -> Result<u64> {
        self.drive(false)?;
        Ok(self.high_watermark())
    }

    /// Blocks until the oldest write in flight (if any) finishes and applies it (one write
    /// per call); while it waits, queued batches start as the next write once the one
    /// before it is syncing.
    ///
    /// Returns the high watermark.
    pub fn wait(&mut self) -> Result<u64> {
        self.drive(true)?;
        Ok(self.high_watermark())
    }

    /// Blocks until every accepted batch is durable; returns the high watermark.
    pub fn flush(&mut self) -> Result<u64> {
        while self.driver.busy() || !self.pending.is_empty() {
            self.drive(true)?;
        }
        Ok(self.high_watermark())
    }

    /// Flushes, then fdatasyncs the active segment whatever the durability setting.
    pub fn sync(&mut self) -> Result<u64> {
        self.flush()?;
        self.active.file.sync_data().at(&self.active.path)?;
        Ok(self.high_watermark())
    }

    /// Seals the active segment and starts a new one (no-op when it is empty).
    pub fn roll(&mut self) -> Result<()> {
        self.flush()?;
        if self.tail_pos == 0 {
            return Ok(());
        }
        let new = ActiveSegment::create(
            &self.dir,
            self.next_offset,
            self.config.segment_bytes,
            self.config.preallocate,
            self.config.index_interval_bytes,
        )?;
        segment::sync_dir(&self.dir)?;
        let old = std::mem::replace(&mut self.active, new);
        let sync = self.config.durability == Durability::Fsync;
        self.sealed.push_back(old.seal(&self.dir, sync));
        self.tail_pos = 0;
        self.queued_pos = 0;
        self.last_job_alt = false;
        self.write_producer_snapshot();
        Ok(())
    }

    /// Flushes and syncs everything, writes the indexes and marks the shutdown clean.
    pub fn close(mut self) -> Result<()> {
        self.flush()?;
        let dir = self.dir.clone();
        self.active.checkpoint(&dir)?;
        self.write_producer_snapshot();
        let marker = self.dir.join(CLEAN_SHUTDOWN_MARKER);
        File::create(&marker).at(&marker)?;
        segment::sync_dir(&self.dir)
    }

    /// Applies finished jobs in start (= offset) order and starts the next job when the
    /// driver has room.
    ///
    /// Without `wait`, applies every finished job, then starts the next. With `wait`,
    /// blocks until the oldest job is applied (one job per call), starting the next job
    /// meanwhile as soon as the one before it is syncing; once it has applied a job it
    /// starts another only if nothing is left in flight, so that the batches a producer
    /// queues after this returns join the next job instead of leaving in a small one.
    fn drive(&mut self, wait: bool) -> Result<()> {
        loop {
            self.driver
                .reap(false)
                .map_err(|e| Error::io(&self.active.path, e))?;
            if !wait {
                while let Some(done) = self.driver.pop_done() {
                    self.finish(done)?;
                }
                return self.kick(false);
            }
            if let Some(done) = self.driver.pop_done() {
                self.finish(done)?;
                if !self.driver.busy() {
                    self.kick(false)?;
                }
                return Ok(());
            }
            self.kick(false)?;
            if !self.driver.busy() {
                return Ok(());
            }
            self.driver
                .reap(true)
                .map_err(|e| Error::io(&self.active.path, e))?;
        }
    }

    /// Hands queued batches to the driver when it has room for another job.
    ///
    /// A job started while another is in flight takes about half of the bytes in flight
    /// and queued, leaving the rest for the next job: with a producer that keeps a fixed
    /// window of batches unacknowledged, job sizes then converge to half the window each
    /// instead of alternating between one batch and the rest of the window (a one-batch
    /// job costs a whole fdatasync).
    ///
    /// With `inline`, the job runs to completion on this thread (see [`append`](Self::append)).
    fn kick(&mut self, inline: bool) -> Result<()> {
        if !self.driver.can_start() || self.pending.is_empty() {
            return Ok(());
        }
        let inflight = self.driver.inflight_bytes();
        let target = if inflight == 0 {
            usize::MAX
        } else {
            (inflight + self.pending_bytes).div_ceil(2)
        };
        let mut bufs = self.spare.pop().unwrap_or_default();
        debug_assert!(bufs.is_empty());
        let mut bytes = 0;
        while bufs.len() < MAX_IOVECS && (bufs.is_empty() || bytes < target) {
            let Some(b) = self.pending.front() else {
                break;
            };
            if !bufs.is_empty() && bytes + b.len() > target {
                break;
            }
            let b = self.pending.pop_front().expect("checked above");
            self.pending_bytes -= b.len();
            bytes += b.len();
            bufs.push(b);
        }
        // A job started while another is in flight uses the other descriptor of the
        // segment: each open file reports a write-back error once, so two fdatasyncs in
        // flight on one descriptor could hand the earlier job's error to the later one
        // and let the earlier one look durable.
        let alt = self.driver.busy() && !self.last_job_alt;
        self.last_job_alt = alt;
        let file = if alt {
            self.active.alt_file.clone()
        } else {
            self.active.file.clone()
        };
        let job = WriteJob {
            file,
            pos: self.queued_pos,
            bufs,
            skip: 0,
            sync: self.config.durability == Durability::Fsync,
        };
        self.queued_pos += bytes as u64;
        let started = if inline {
            self.driver.start_inline(job);
            Ok(())
        } else {
            self.driver.start(job)
        };
        started.map_err(|e| self.rollback(e))
    }

    /// Applies a finished job: commits its batches (it is the oldest, so they start at the
    /// durable end), or rolls back on its error.
    fn finish(&mut self, done: WriteDone) -> Result<()> {
        let WriteDone { mut job, result } = done;
        if let Err(e) = result {
            drop(job);
            return Err(self.rollback(e));
        }
        debug_assert_eq!(job.pos, self.active.durable_len, "jobs finish in order");
        let mut pos = job.pos;
        for buf in job.bufs.drain(..) {
            let header = BatchHeader::parse(&buf).expect("validated when submitted");
            self.active.commit(pos, &header);
            pos += buf.len() as u64;
        }
        if self.spare.len() < MAX_JOBS {
            self.spare.push(job.bufs);
        }
        Ok(())
    }

    /// Drops every batch that is not durable and returns the error that caused it.
    ///
    /// Jobs still in flight after the failed one are waited for and discarded first, so
    /// that none of their writes lands after a later write to the same positions; then
    /// whatever they wrote past the durable end is zeroed (see `ActiveSegment::discard`).
    fn rollback(&mut self, e: std::io::Error) -> Error {
        while self.driver.busy() {
            while let Some(later) = self.driver.pop_done() {
                drop(later);
            }
            if !self.driver.busy() {
                break;
            }
            if let Err(ring) = self.driver.reap(true) {
                tracing::error!(error = %ring, "io_uring failed while discarding writes");
                break;
            }
        }
        if !self.driver.busy() {
            self.active
                .discard(self.active.durable_len, self.queued_pos);
        }
        let lost = self.next_offset - self.active.next_offset;
        tracing::warn!(
            path = %self.active.path.display(),
            error = %e,
            dropped_records = lost,
            "write failed; dropping appends that were not durable"
        );
        self.pending.clear();
        self.pending_bytes = 0;
        self.next_offset = self.active.next_offset;
        self.tail_pos = self.active.durable_len;
        self.queued_pos = self.active.durable_len;
        self.producers.truncate(self.next_offset);
        Error::io(&self.active.path, e)
    }

    /// Reads whole batches from the one holding `offset`, up to `max_bytes` (at least one batch).
    ///
    /// Returns no bytes at the high watermark; offsets outside
    /// `[log_start_offset, high_watermark]` are an error.
    pub fn read(&self, offset: u64, max_bytes: usize) -> Result<Fetch> {
        let high_watermark = self.high_watermark();
        let log_start_offset = self.log_start_offset();
        if offset < log_start_offset || offset > high_watermark {
            return Err(Error::OffsetOutOfRange {
                requested: offset,
                log_start: log_start_offset,
                high_watermark,
            });
        }
        let mut fetch = Fetch {
            bytes: Bytes::new(),
            high_watermark,
            log_start_offset,
        };
        if offset == high_watermark {
            return Ok(fetch);
        }
        let i = self.sealed.partition_point(|s| s.next_offset <= offset);
        let (data, offsets, base, path) = match self.sealed.get(i) {
            Some(s) => (s.data()?, &s.offsets[..], s.base_offset, s.base_offset),
            None => (
                self.active.readable(),
                self.active.index.offsets(),
                self.active.base_offset,
                self.active.base_offset,
            ),
        };
        // An offset in a gap between segments is served from the next segment's start.
        let offset = offset.max(base);
        let rel = u32::try_from(offset - base).unwrap_or(u32::MAX);
        let pos = index::lookup_position(offsets, rel) as usize;
        fetch.bytes =
            slice_batches(&data, pos, offset, max_bytes).map_err(|reason| Error::Corrupt {
                path: segment::segment_path(&self.dir, path, LOG_SUFFIX),
                reason,
            })?;
        Ok(fetch)
    }

    /// Offset of the first record whose timestamp is at or after `timestamp` (µs), if any.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<u64>> {
        let mut scratch = Vec::new();
        let active = (
            self.active.base_offset,
            self.active.index.max_timestamp(),
            self.active.index.offsets(),
            self.active.index.times(),
        );
        let sealed = self
            .sealed
            .iter()
            .map(|s| (s.base_offset, s.max_timestamp, &s.offsets[..], &s.times[..]));
        for (i, (base, max_ts, offsets, times)) in sealed.chain(std::iter::once(active)).enumerate()
        {
            if max_ts.is_none_or(|m| m < timestamp) {
                continue;
            }
            let data = match self.sealed.get(i) {
                Some(s) => s.data()?,
                None => self.active.readable(),
            };
            let rel = index::lookup_time(times, timestamp);
            let mut pos = index::lookup_position(offsets, rel) as usize;
            let corrupt = |reason: String| Error::Corrupt {
                path: segment::segment_path(&self.dir, base, LOG_SUFFIX),
                reason,
            };
            while pos < data.len() {
                let view = BatchView::parse(&data[pos..])
                    .map_err(|e| corrupt(format!("batch at {pos}: {e}")))?;
                let h = *view.header();
                if h.max_timestamp >= timestamp {
                    for record in view.records(&mut scratch)? {
                        let record = record?;
                        if record.timestamp >= timestamp {
                            return Ok(Some(record.offset));
                        }
                    }
                }
                pos += h.length as usize;
            }
        }
        Ok(None)
    }

    /// Deletes the sealed segments that hold only offsets below `offset`.
    pub fn delete_before(&mut self, offset: u64) -> Result<RetentionReport> {
        let n = self.sealed.partition_point(|s| s.next_offset <= offset);
        self.delete_oldest(n)
    }

    fn delete_oldest(&mut self, n: usize) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        for _ in 0..n {
            let seg = self.sealed.front().expect("n <= sealed.len()");
            seg.remove(&self.dir)?;
            report.segments_deleted += 1;
            report.bytes_deleted += seg.size();
            self.sealed.pop_front();
        }
        if n > 0 {
            segment::sync_dir(&self.dir)?;
        }
        report.log_start_offset = self.log_start_offset();
        Ok(report)
    }

    /// Deletes the oldest sealed segments that the retention settings no longer keep.
    pub fn apply_retention(&mut self, now: SystemTime) -> Result<RetentionReport> {
        let policy = RetentionPolicy {
            max_bytes: self.config.retention_bytes,
            max_age: self.config.retention_age,
        };
        let stats: Vec<SegmentStat> = self
            .sealed
            .iter()
            .map(|s| SegmentStat {
                size: s.size(),
                max_timestamp: s.max_timestamp,
            })
            .collect();
        let n = segments_to_delete(&stats, self.active.durable_len, &policy, now_micros(now));
        self.delete_oldest(n)
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        // Best effort: write what was accepted. No clean-shutdown marker is left, so the
        // next open scans the active segment in full.
        if let Err(e) = self.flush() {
            tracing::warn!(path = %self.dir.display(), error = %e, "flush on drop failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{BatchBuilder, BatchIter, BuilderOptions};
    use crate::io::IoBackend;
    use std::sync::Arc;

    fn batch(first: u64, records: u64) -> BytesMut {
        let mut b = BatchBuilder::new(BuilderOptions::default());
        for o in first..first + records {
            let value = format!("value-{o}-").repeat(40);
            b.push(
                1_700_000_000_000_000 + o as i64,
                None,
                Some(value.as_bytes()),
                &[],
            )
            .expect("record fits");
        }
        b.finish().expect("not empty")
    }

    fn fsync_uring(dir: &Path) -> Partition {
        let config = PartitionConfig {
            durability: Durability::Fsync,
            io_backend: IoBackend::Uring,
            segment_bytes: 64 << 20,
            ..PartitionConfig::default()
        };
        Partition::open(dir, config).expect("open")
    }

    /// Every record below the high watermark is served, in order, and nothing past it.
    fn check_reads(p: &Partition, ctx: &str) {
        let hwm = p.high_watermark();
        let fetch = p.read(0, usize::MAX).expect("read");
        assert_eq!(fetch.high_watermark, hwm, "{ctx}");
        let mut next = 0;
        for b in BatchIter::new(&fetch.bytes) {
            let b = b.expect("intact batch");
            assert_eq!(b.header().base_offset, next, "{ctx}: contiguous");
            next = b.header().next_offset();
        }
        assert_eq!(next, hwm, "{ctx}: reads end exactly at the high watermark");
    }

    /// The durable end never passes a job still in the pipeline, and the oldest job starts
    /// exactly there.
    fn check_pipeline(p: &Partition, ctx: &str) {
        let starts = p.driver.job_positions();
        if let Some(&first) = starts.first() {
            assert_eq!(
                first, p.active.durable_len,
                "{ctx}: oldest job starts at the durable end"
            );
        }
        assert!(
            starts.windows(2).all(|w| w[0] < w[1]),
            "{ctx}: jobs in offset order"
        );
    }

    #[test]
    fn two_jobs_in_flight_complete_in_offset_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = fsync_uring(dir.path());
        let mut max_in_flight = 0;
        let mut ends = vec![0u64];
        let mut unacked = VecDeque::new();
        for i in 0..400u64 {
            let ctx = format!("batch {i}");
            let a = p.submit(batch(p.next_offset(), 8)).expect("submit");
            ends.push(a.last_offset + 1);
            unacked.push_back(a.last_offset);
            max_in_flight = max_in_flight.max(p.writes_in_flight());
            check_pipeline(&p, &ctx);
            while unacked.len() >= 16 {
                let before = p.high_watermark();
                let hwm = if i % 2 == 0 {
                    // One wait applies at most one job: the durable end stops at or
                    // before the second job in flight.
                    let second = p.driver.job_positions().get(1).copied();
                    let hwm = p.wait().expect("wait");
                    if let Some(second) = second {
                        assert!(p.active.durable_len <= second, "{ctx}: one job per wait");
                    }
                    hwm
                } else {
                    p.poll().expect("poll")
                };
                assert!(hwm >= before, "{ctx}: the high watermark never moves back");
                assert!(
                    ends.contains(&hwm),
                    "{ctx}: the high watermark ends a batch"
                );
                max_in_flight = max_in_flight.max(p.writes_in_flight());
                assert!(p.writes_in_flight() <= 2, "{ctx}: the pipeline is bounded");
                check_pipeline(&p, &ctx);
                check_reads(&p, &ctx);
                while unacked.front().is_some_and(|&l| l < hwm) {
                    unacked.pop_front();
                }
            }
        }
        let end = p.flush().expect("flush");
        assert_eq!(end, p.next_offset());
        check_reads(&p, "flushed");
        assert_eq!(
            max_in_flight, 2,
            "a write started while the one before it synced"
        );
        p.close().expect("close");
        let p = fsync_uring(dir.path());
        assert_eq!(p.high_watermark(), end);
        check_reads(&p, "reopened");
    }

    #[test]
    fn an_error_in_the_second_job_while_the_first_syncs_leaves_a_consistent_log() {
        let mut overlapped = 0;
        for attempt in 0..40 {
            let ctx = format!("attempt {attempt}");
            let dir = tempfile::tempdir().expect("tempdir");
            let mut p = fsync_uring(dir.path());
            let durable = p.append(batch(0, 4)).expect("first append").last_offset + 1;
            // A job started while another is in flight uses the second descriptor; made
            // read-only, it fails that job's write with EBADF.
            let writable = p.active.alt_file.clone();
            p.active.alt_file = Arc::new(File::open(&p.active.path).expect("reopen read-only"));
            let a = p.submit(batch(durable, 4)).expect("second submit");
            assert_eq!(p.writes_in_flight(), 1);
            let b = p.submit(batch(a.last_offset + 1, 4)).expect("third submit");
            let c = p
                .submit(batch(b.last_offset + 1, 4))
                .expect("fourth submit");
            let mut saw_two = false;
            let err = loop {
                match p.poll() {
                    Ok(_) if !p.is_writing() => break None,
                    Ok(hwm) => {
                        saw_two |= p.writes_in_flight() == 2;
                        assert!(
                            !saw_two || hwm <= a.last_offset + 1,
                            "{ctx}: nothing past the first job"
                        );
                        check_reads(&p, &ctx);
                    }
                    Err(e) => break Some(e),
                }
            };
            let Some(err) = err else {
                // The first job finished before the next could start: no overlap, no
                // second descriptor, no error.
                assert!(!saw_two, "{ctx}: an overlapping job must have failed");
                assert_eq!(p.high_watermark(), c.last_offset + 1, "{ctx}");
                check_reads(&p, &ctx);
                continue;
            };
            assert!(
                saw_two,
                "{ctx}: only an overlapping job uses the second descriptor"
            );
            overlapped += 1;
            assert!(matches!(err, Error::Io { .. }), "{ctx}: {err:?}");
            assert_eq!(
                p.high_watermark(),
                a.last_offset + 1,
                "{ctx}: the first job is durable"
            );
            assert_eq!(
                p.next_offset(),
                p.high_watermark(),
                "{ctx}: the rest was dropped"
            );
            assert_eq!(p.unflushed_bytes(), 0, "{ctx}");
            assert_eq!(p.writes_in_flight(), 0, "{ctx}: the pipeline is drained");
            assert!(!p.is_writing(), "{ctx}");
            check_reads(&p, &ctx);
            p.active.alt_file = writable;
            let d = p
                .append(batch(p.next_offset(), 4))
                .expect("append after the error");
            assert_eq!(
                d.base_offset,
                a.last_offset + 1,
                "{ctx}: offsets are reused"
            );
            assert!(c.last_offset >= d.last_offset, "{ctx}");
            let e = p.append(batch(p.next_offset(), 4)).expect("and the next");
            check_reads(&p, &ctx);
            p.close().expect("close");
            let p = fsync_uring(dir.path());
            assert_eq!(p.high_watermark(), e.last_offset + 1, "{ctx}: after reopen");
            check_reads(&p, &ctx);
            if overlapped >= 3 {
                return;
            }
        }
        panic!("the failing job never ran while the one before it synced ({overlapped} times)");
    }

    #[test]
    fn a_blocking_fsync_append_on_an_idle_partition_syncs_inline_by_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = PartitionConfig {
            durability: Durability::Fsync,
            segment_bytes: 64 << 20,
            ..PartitionConfig::default()
        };
        let mut p = Partition::open(dir.path(), config.clone()).expect("open");
        assert_eq!(
            p.backend(),
            ActiveBackend::Uring,
            "Auto keeps io_uring for Fsync"
        );
        let efd =
            rustix::event::eventfd(0, rustix::event::EventfdFlags::NONBLOCK).expect("eventfd");
        assert!(
            p.register_completion_eventfd(std::os::fd::AsFd::as_fd(&efd))
                .expect("register")
        );
        for i in 0..3 {
            let a = p.append(batch(p.next_offset(), 4)).expect("append");
            assert_eq!(
                p.high_watermark(),
                a.last_offset + 1,
                "append {i} is durable"
            );
            assert_eq!(p.writes_in_flight(), 0);
        }
        assert_eq!(p.driver.inline_runs(), 3, "idle appends ran inline");
        let mut counter = [0u8; 8];
        assert_eq!(rustix::io::read(&efd, &mut counter).expect("signalled"), 8);
        assert_eq!(
            u64::from_ne_bytes(counter),
            3,
            "each inline append signalled the eventfd"
        );
        // Behind pipelined submits, an append joins the io_uring pipeline, in order.
        let s1 = p.submit(batch(p.next_offset(), 4)).expect("submit");
        let s2 = p.submit(batch(p.next_offset(), 4)).expect("submit");
        let a = p
            .append(batch(p.next_offset(), 4))
            .expect("append behind submits");
        assert_eq!(a.base_offset, s2.last_offset + 1);
        assert!(s1.last_offset < s2.last_offset);
        assert_eq!(p.high_watermark(), a.last_offset + 1);
        assert_eq!(
            p.driver.inline_runs(),
            3,
            "not inline while writes were in flight"
        );
        check_reads(&p, "mixed");
        p.close().expect("close");
        let p = Partition::open(dir.path(), config).expect("reopen");
        assert_eq!(p.high_watermark(), a.last_offset + 1);
        check_reads(&p, "reopened");

        // A forced io_uring path never runs inline.
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = fsync_uring(dir.path());
        p.append(batch(0, 4)).expect("append");
        assert_eq!(p.driver.inline_runs(), 0, "IoBackend::Uring uses the ring");
    }

    #[test]
    fn enqueued_batches_wait_for_the_next_poll_and_go_out_in_one_write() {
        // pwritev, and io_uring where available (Auto uses it for Fsync).
        for (io_backend, durability) in [
            (crate::io::IoBackend::Fallback, Durability::Written),
            (crate::io::IoBackend::Auto, Durability::Fsync),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let config = PartitionConfig {
                segment_bytes: 1 << 20,
                io_backend,
                durability,
                ..PartitionConfig::default()
            };
            let mut p = Partition::open(dir.path(), config).unwrap();
            let offsets: Vec<(u64, u64)> = [2, 1, 3]
                .into_iter()
                .map(|n| {
                    let a = p.enqueue(batch(0, n)).unwrap();
                    (a.base_offset, a.last_offset)
                })
                .collect();
            assert_eq!(offsets, vec![(0, 1), (2, 2), (3, 5)]);
            assert_eq!(p.next_offset(), 6);
            assert!(p.is_writing(), "queued batches count as writing");
            assert!(!p.driver.busy(), "enqueue starts no write");
            assert_eq!(p.high_watermark(), 0);
            // The first poll starts one job holding all three batches.
            p.poll().unwrap();
            assert!(p.driver.busy());
            assert!(p.pending.is_empty(), "every queued batch is in the one job");
            while p.high_watermark() < 6 {
                p.wait().unwrap();
            }
            assert!(!p.is_writing());
            let fetch = p.read(0, 1 << 20).unwrap();
            let records: u32 = crate::format::BatchIter::new(&fetch.bytes)
                .map(|b| b.unwrap().header().record_count)
                .sum();
            assert_eq!(records, 6);
            p.close().unwrap();
        }
    }
}
