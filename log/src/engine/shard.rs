//! A shard: one thread that exclusively owns a set of partitions.
//!
//! [`ShardCore`] holds the partitions and does one non-blocking turn of work at a time:
//! drain the inbox, reap write completions, answer appends that became durable and
//! fetches that can be served. The thread that runs it sleeps on the shard's [`Waker`]
//! eventfd, which both other threads and the partitions' io_uring rings signal, so the
//! same core can later be driven from an async reactor instead of [`run`].

use super::group::{AssignmentStrategy, Coordinator, GroupSummary, Membership, TopicPartition};
use super::waiters::{Waiter, Waiters, fail_accepted_from};
use super::wake::Waker;
use crate::config::{Durability, PartitionConfig};
use crate::error::{Error, Result};
use crate::partition::{Appended, Fetch, Partition};
use bytes::BytesMut;
use crossbeam_queue::ArrayQueue;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

/// Most commands handled in one turn, so that completions are not starved.
const COMMANDS_PER_TURN: usize = 1024;

/// Sends one command's result back to whoever asked.
pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// Identifies a partition across the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionId {
    /// The topic's id (see `TopicMeta::id`).
    pub topic_id: u64,
    /// Partition number within the topic.
    pub partition: u32,
}

/// Which offset to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetQuery {
    /// The first retained offset.
    Earliest,
    /// The high watermark: the offset the next durable record gets.
    Latest,
    /// The first record at or after this timestamp (µs since the Unix epoch).
    Timestamp(i64),
}

/// A partition's offsets and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    /// Partition number.
    pub partition: u32,
    /// Shard that owns it.
    pub shard: usize,
    /// First retained offset.
    pub log_start_offset: u64,
    /// Offset after the last durable record.
    pub high_watermark: u64,
    /// Durable bytes on disk.
    pub size_bytes: u64,
}

/// Work sent to a shard.
pub(crate) enum Command {
    Open {
        id: PartitionId,
        dir: PathBuf,
        config: PartitionConfig,
        reply: Reply<()>,
    },
    Remove {
        id: PartitionId,
        dir: PathBuf,
        /// Where the folder is moved before it is deleted in the background.
        trash: PathBuf,
        reply: Reply<()>,
    },
    Produce {
        id: PartitionId,
        batch: BytesMut,
        expected_offset: Option<u64>,
        reply: Reply<Appended>,
    },
    ProduceMany {
        id: PartitionId,
        batches: Vec<BytesMut>,
        reply: Reply<Vec<Result<Appended>>>,
    },
    Fetch {
        id: PartitionId,
        offset: u64,
        max_bytes: usize,
        wait_until: Option<Instant>,
        reply: Reply<Fetch>,
    },
    Offset {
        id: PartitionId,
        query: OffsetQuery,
        reply: Reply<Option<u64>>,
    },
    State {
        id: PartitionId,
        reply: Reply<PartitionState>,
    },
    Retention {
        now: SystemTime,
        reply: Reply<usize>,
    },
    Shutdown {
        reply: Reply<()>,
    },
    OpenCoordinator {
        index: u32,
        dir: PathBuf,
        defaults: PartitionConfig,
        reply: Reply<()>,
    },
    JoinGroup {
        coordinator: u32,
        group: String,
        member_id: Option<String>,
        topics: Vec<String>,
        strategy: AssignmentStrategy,
        session_timeout: Duration,
        partitions: BTreeMap<String, u32>,
        reply: Reply<Membership>,
    },
    Heartbeat {
        coordinator: u32,
        group: String,
        member_id: String,
        reply: Reply<Membership>,
    },
    LeaveGroup {
        coordinator: u32,
        group: String,
        member_id: String,
        reply: Reply<()>,
    },
    CommitOffsets {
        coordinator: u32,
        group: String,
        member: Option<(String, u32)>,
        offsets: Vec<(TopicPartition, u64)>,
        reply: Reply<()>,
    },
    FetchOffsets {
        coordinator: u32,
        group: String,
        partitions: Vec<TopicPartition>,
        reply: Reply<Vec<Option<u64>>>,
    },
    DescribeGroup {
        coordinator: u32,
        group: String,
        reply: Reply<Option<GroupSummary>>,
    },
    ListGroups {
        reply: Reply<Vec<String>>,
    },
}

/// A fetch parked until data arrives past its offset or its deadline passes.
struct Tailer {
    offset: u64,
    max_bytes: usize,
    deadline: Instant,
    reply: Reply<Fetch>,
}

/// One owned partition and the requests waiting on it.
struct Slot {
    partition: Partition,
    /// Appends waiting for durability, in offset order.
    waiters: Waiters,
    tailers: Vec<Tailer>,
    /// Whether the partition's completions signal the shard's eventfd.
    signals: bool,
    /// Offset up to which the observer has seen the partition.
    observed: u64,
}

impl Slot {
    /// Hands the batches that became durable since the last call to `observer`.
    fn observe(&mut self, id: PartitionId, observer: &mut dyn DurableObserver) {
        let hw = self.partition.high_watermark();
        self.observed = self.observed.max(self.partition.log_start_offset());
        while self.observed < hw {
            match self.partition.read(self.observed, OBSERVE_CHUNK) {
                Ok(fetch) if !fetch.bytes.is_empty() => {
                    let next = last_next_offset(&fetch.bytes).unwrap_or(hw);
                    observer.on_durable(id, &fetch.bytes);
                    self.observed = next;
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, ?id, "observer could not read durable batches");
                    break;
                }
            }
        }
    }

    /// Answers the appends that are now durable; returns whether any was.
    fn settle_waiters(&mut self) -> bool {
        self.waiters.settle(self.partition.high_watermark())
    }

    /// Fails the appends a failed write dropped (those at or past the next offset).
    fn fail_dropped(&mut self, err: &Error) {
        self.waiters.fail_from(self.partition.next_offset(), err);
    }

    /// Accepts one batch of a produce request without starting a write (the turn's poll
    /// writes everything accepted in one job); returns its offsets. With `expected`, only
    /// if the partition's next offset is that (else [`Error::Conflict`]).
    fn accept(&mut self, batch: BytesMut, expected: Option<u64>) -> Result<Appended> {
        self.partition
            .enqueue_if(batch, expected)
            .inspect_err(|e| self.fail_dropped(e))
    }

    /// Accepts every batch of a `produce_many` request, in order, and queues its answer.
    ///
    /// The accepted batches are always a prefix of the request: after the first failure
    /// the rest are not tried and fail with `AppendFailed`.
    fn accept_many(&mut self, batches: Vec<BytesMut>, reply: Reply<Vec<Result<Appended>>>) {
        let mut results = Vec::with_capacity(batches.len());
        let mut failed: Option<String> = None;
        for batch in batches {
            if let Some(e) = &failed {
                results.push(Err(Error::AppendFailed(format!(
                    "not attempted: an earlier batch of the request failed: {e}"
                ))));
                continue;
            }
            match self.accept(batch, None) {
                Ok(appended) => results.push(Ok(appended)),
                Err(e) => {
                    // A failed write may also have dropped this request's earlier batches.
                    fail_accepted_from(&mut results, self.partition.next_offset(), &e);
                    failed = Some(e.to_string());
                    results.push(Err(e));
                }
            }
        }
        let last = results
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|a| a.last_offset))
            .max();
        match last {
            Some(last)
                if last >= self.partition.high_watermark()
                    && self.partition.config().durability != Durability::None =>
            {
                self.waiters.push(last, Waiter::Many(results, reply));
            }
            _ => {
                let _ = reply.send(Ok(results));
            }
        }
    }

    /// Serves tailers that have data or whose deadline passed; returns whether any was.
    fn settle_tailers(&mut self, now: Instant, next_deadline: &mut Option<Instant>) -> bool {
        let hw = self.partition.high_watermark();
        let mut any = false;
        let mut i = 0;
        while i < self.tailers.len() {
            let t = &self.tailers[i];
            if hw > t.offset || now >= t.deadline {
                let t = self.tailers.swap_remove(i);
                let _ = t.reply.send(self.partition.read(t.offset, t.max_bytes));
                any = true;
            } else {
                *next_deadline = Some(next_deadline.map_or(t.deadline, |d| d.min(t.deadline)));
                i += 1;
            }
        }
        any
    }
}

/// Sees every durable batch of a shard's partitions, in offset order, on the shard thread.
///
/// `batches` holds whole batches (zero-copy slices of the segment mapping); it is called
/// once the batches are durable and before appends waiting on them are answered.
pub trait DurableObserver: Send {
    /// Called with the next durable batches of partition `id`.
    fn on_durable(&mut self, id: PartitionId, batches: &bytes::Bytes);
}

/// Builds the observer of shard `index` (called once per shard at engine start).
pub type ObserverFactory = Arc<dyn Fn(usize) -> Box<dyn DurableObserver> + Send + Sync>;

/// Drives shard `core` on the calling (shard) thread until [`Turn::stopped`].
///
/// It must call [`ShardCore::turn`] again whenever a turn progressed, the shard's
/// [`Waker`] fd became readable, or `next_deadline` passed; [`run`] is the blocking loop.
pub type ShardRunner = Arc<dyn Fn(ShardCore) + Send + Sync>;

/// Most bytes handed to an observer in one call.
const OBSERVE_CHUNK: usize = 1 << 20;

/// What one turn did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn {
    /// Whether anything happened (run another turn before sleeping).
    pub progressed: bool,
    /// When the shard next has timed work: a parked fetch's deadline, a group
    /// coordinator's session check, or the next retention pass.
    pub next_deadline: Option<Instant>,
    /// Whether the shard has shut down.
    pub stopped: bool,
}

/// A shard's state: its partitions, its inbox and the requests in progress.
pub struct ShardCore {
    index: usize,
    waker: Arc<Waker>,
    inbox: Arc<ArrayQueue<Command>>,
    slots: HashMap<PartitionId, Slot>,
    parked: usize,
    max_parked: usize,
    stopped: bool,
    observer: Option<Box<dyn DurableObserver>>,
    /// Group coordinators hosted here, with whether their log signals the eventfd.
    coordinators: HashMap<u32, (Coordinator, bool)>,
    /// How often retention runs, and when next.
    retention: Option<(Duration, Instant)>,
}

impl ShardCore {
    pub(crate) fn new(
        index: usize,
        waker: Arc<Waker>,
        inbox: Arc<ArrayQueue<Command>>,
        max_parked: usize,
        observer: Option<Box<dyn DurableObserver>>,
        retention_interval: Option<Duration>,
    ) -> Self {
        ShardCore {
            index,
            waker,
            inbox,
            slots: HashMap::new(),
            parked: 0,
            max_parked,
            stopped: false,
            observer,
            coordinators: HashMap::new(),
            // An interval too long to add to a clock reading means never.
            retention: retention_interval
                .and_then(|every| Some((every, Instant::now().checked_add(every)?))),
        }
    }

    /// This shard's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The eventfd this shard sleeps on.
    pub fn waker(&self) -> &Arc<Waker> {
        &self.waker
    }

    /// Whether work is ready right now (so the shard must not sleep).
    pub fn has_ready_work(&self) -> bool {
        !self.inbox.is_empty()
            || self
                .slots
                .values()
                .any(|s| !s.signals && s.partition.is_writing())
            || self
                .coordinators
                .values()
                .any(|(c, signals)| !signals && c.is_writing())
    }

    /// Does one round of non-blocking work.
    pub fn turn(&mut self, now: Instant) -> Turn {
        // Answers given during the turn wake their blocked callers once, at its end.
        let _defer = super::DeferWakes::new();
        let mut progressed = false;
        for _ in 0..COMMANDS_PER_TURN {
            let Some(cmd) = self.inbox.pop() else { break };
            progressed = true;
            self.handle(cmd, now);
            if self.stopped {
                return Turn {
                    progressed,
                    next_deadline: None,
                    stopped: true,
                };
            }
        }
        let mut next_deadline = None;
        self.parked = 0;
        for (id, slot) in self.slots.iter_mut() {
            // Starts one write of everything the inbox brought (see `Slot::accept`). A
            // write path without completion signals finishes it inside `poll`, so poll
            // once more to reap it and answer its appends in this same turn.
            for _ in 0..if slot.signals { 1 } else { 2 } {
                if !slot.partition.is_writing() {
                    break;
                }
                if let Err(e) = slot.partition.poll() {
                    slot.fail_dropped(&e);
                    progressed = true;
                }
            }
            if let Some(observer) = self.observer.as_deref_mut() {
                slot.observe(*id, observer);
            }
            progressed |= slot.settle_waiters();
            progressed |= slot.settle_tailers(now, &mut next_deadline);
            self.parked += slot.tailers.len();
        }
        for (c, _) in self.coordinators.values_mut() {
            let (p, deadline) = c.tick(now);
            progressed |= p;
            if let Some(d) = deadline {
                next_deadline = Some(next_deadline.map_or(d, |n: Instant| n.min(d)));
            }
        }
        if let Some((every, due)) = self.retention {
            let due = if now >= due {
                self.enforce_retention(SystemTime::now());
                now.checked_add(every)
            } else {
                Some(due)
            };
            self.retention = due.map(|due| (every, due));
            if let Some(due) = due {
                next_deadline = Some(next_deadline.map_or(due, |n: Instant| n.min(due)));
            }
        }
        Turn {
            progressed,
            next_deadline,
            stopped: false,
        }
    }

    /// Applies every partition's retention as of `now`; failures are logged, and the
    /// next check tries again.
    fn enforce_retention(&mut self, now: SystemTime) {
        for (id, slot) in self.slots.iter_mut() {
            match slot.partition.apply_retention(now) {
                Ok(r) if r.segments_deleted > 0 => tracing::info!(
                    ?id,
                    segments = r.segments_deleted,
                    bytes = r.bytes_deleted,
                    log_start_offset = r.log_start_offset,
                    "retention deleted segments"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(?id, error = %e, "retention failed"),
            }
        }
    }

    fn handle(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Open {
                id,
                dir,
                config,
                reply,
            } => {
                let result = Partition::open(&dir, config).and_then(|partition| {
                    let signals = partition.register_completion_eventfd(self.waker.fd())?;
                    // The observer sees only batches that become durable from now on.
                    let observed = partition.high_watermark();
                    self.slots.insert(
                        id,
                        Slot {
                            partition,
                            waiters: Waiters::default(),
                            tailers: Vec::new(),
                            signals,
                            observed,
                        },
                    );
                    Ok(())
                });
                let _ = reply.send(result);
            }
            Command::Remove {
                id,
                dir,
                trash,
                reply,
            } => {
                let result = match self.slots.remove(&id) {
                    Some(mut slot) => {
                        let flushed = slot.partition.flush();
                        slot.settle_waiters();
                        for w in slot.waiters.drain() {
                            w.fail(Error::UnknownTopic(format!("#{}", id.topic_id)));
                        }
                        for t in slot.tailers.drain(..) {
                            let _ = t
                                .reply
                                .send(Err(Error::UnknownTopic(format!("#{}", id.topic_id))));
                        }
                        drop(slot);
                        if let Err(e) = flushed {
                            tracing::warn!(error = %e, "flush before removing a partition failed");
                        }
                        remove_dir(&dir, &trash)
                    }
                    None => remove_dir(&dir, &trash),
                };
                let _ = reply.send(result);
            }
            Command::Produce {
                id,
                batch,
                expected_offset,
                reply,
            } => {
                let Some(slot) = self.slots.get_mut(&id) else {
                    let _ = reply.send(Err(unknown(id)));
                    return;
                };
                match slot.accept(batch, expected_offset) {
                    Ok(appended) if slot.partition.config().durability == Durability::None => {
                        let _ = reply.send(Ok(appended));
                    }
                    Ok(appended) => slot
                        .waiters
                        .push(appended.last_offset, Waiter::One(appended, reply)),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::ProduceMany { id, batches, reply } => match self.slots.get_mut(&id) {
                Some(slot) => slot.accept_many(batches, reply),
                None => {
                    let _ = reply.send(Err(unknown(id)));
                }
            },
            Command::Fetch {
                id,
                offset,
                max_bytes,
                wait_until,
                reply,
            } => {
                let Some(slot) = self.slots.get_mut(&id) else {
                    let _ = reply.send(Err(unknown(id)));
                    return;
                };
                let at_end = offset == slot.partition.high_watermark();
                match wait_until {
                    Some(deadline) if at_end && deadline > now => {
                        if self.parked >= self.max_parked {
                            let _ = reply.send(Err(Error::Overloaded { shard: self.index }));
                        } else {
                            self.parked += 1;
                            slot.tailers.push(Tailer {
                                offset,
                                max_bytes,
                                deadline,
                                reply,
                            });
                        }
                    }
                    _ => {
                        let _ = reply.send(slot.partition.read(offset, max_bytes));
                    }
                }
            }
            Command::Offset { id, query, reply } => {
                let result = match self.slots.get(&id) {
                    None => Err(unknown(id)),
                    Some(slot) => match query {
                        OffsetQuery::Earliest => Ok(Some(slot.partition.log_start_offset())),
                        OffsetQuery::Latest => Ok(Some(slot.partition.high_watermark())),
                        OffsetQuery::Timestamp(ts) => slot.partition.offset_for_timestamp(ts),
                    },
                };
                let _ = reply.send(result);
            }
            Command::State { id, reply } => {
                let result = match self.slots.get(&id) {
                    None => Err(unknown(id)),
                    Some(slot) => Ok(PartitionState {
                        partition: id.partition,
                        shard: self.index,
                        log_start_offset: slot.partition.log_start_offset(),
                        high_watermark: slot.partition.high_watermark(),
                        size_bytes: slot.partition.size_bytes(),
                    }),
                };
                let _ = reply.send(result);
            }
            Command::Retention { now, reply } => {
                let mut deleted = 0;
                let mut first_error = None;
                for slot in self.slots.values_mut() {
                    match slot.partition.apply_retention(now) {
                        Ok(r) => deleted += r.segments_deleted,
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                let _ = reply.send(match first_error {
                    Some(e) => Err(e),
                    None => Ok(deleted),
                });
            }
            Command::OpenCoordinator {
                index,
                dir,
                defaults,
                reply,
            } => {
                let result = Coordinator::open(&dir, &defaults).and_then(|c| {
                    let signals = c.register_completion_eventfd(self.waker.fd())?;
                    self.coordinators.insert(index, (c, signals));
                    Ok(())
                });
                let _ = reply.send(result);
            }
            Command::JoinGroup {
                coordinator,
                group,
                member_id,
                topics,
                strategy,
                session_timeout,
                partitions,
                reply,
            } => {
                let result = self.coordinator(coordinator).and_then(|c| {
                    c.group(&group).join(
                        member_id.as_deref(),
                        topics,
                        strategy,
                        session_timeout,
                        partitions,
                        now,
                    )
                });
                let _ = reply.send(result);
            }
            Command::Heartbeat {
                coordinator,
                group,
                member_id,
                reply,
            } => {
                let result = self.coordinator(coordinator).and_then(|c| {
                    c.member_group(&group, &member_id)?
                        .heartbeat(&member_id, now)
                });
                let _ = reply.send(result);
            }
            Command::LeaveGroup {
                coordinator,
                group,
                member_id,
                reply,
            } => {
                let result = self
                    .coordinator(coordinator)
                    .and_then(|c| c.member_group(&group, &member_id)?.leave(&member_id));
                let _ = reply.send(result);
            }
            Command::CommitOffsets {
                coordinator,
                group,
                member,
                offsets,
                reply,
            } => match self.coordinator(coordinator) {
                Ok(c) => c.commit(
                    &group,
                    member.as_ref().map(|(m, g)| (m.as_str(), *g)),
                    offsets,
                    reply,
                ),
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::FetchOffsets {
                coordinator,
                group,
                partitions,
                reply,
            } => {
                let result = self
                    .coordinator(coordinator)
                    .map(|c| c.committed(&group, &partitions));
                let _ = reply.send(result);
            }
            Command::DescribeGroup {
                coordinator,
                group,
                reply,
            } => {
                let result = self.coordinator(coordinator).map(|c| c.describe(&group));
                let _ = reply.send(result);
            }
            Command::ListGroups { reply } => {
                let mut names: Vec<String> = self
                    .coordinators
                    .values()
                    .flat_map(|(c, _)| c.group_names())
                    .collect();
                names.sort();
                let _ = reply.send(Ok(names));
            }
            Command::Shutdown { reply } => {
                let mut first_error = None;
                for (_, (c, _)) in self.coordinators.drain() {
                    if let Err(e) = c.close() {
                        first_error.get_or_insert(e);
                    }
                }
                for (_, mut slot) in self.slots.drain() {
                    if let Err(e) = slot.partition.flush() {
                        slot.fail_dropped(&e);
                        first_error.get_or_insert(e);
                    }
                    slot.settle_waiters();
                    for t in slot.tailers.drain(..) {
                        let _ = t.reply.send(slot.partition.read(t.offset, t.max_bytes));
                    }
                    if let Err(e) = slot.partition.close() {
                        first_error.get_or_insert(e);
                    }
                }
                // Anything still queued will never run: answer it.
                while let Some(cmd) = self.inbox.pop() {
                    refuse(cmd);
                }
                self.stopped = true;
                let _ = reply.send(first_error.map_or(Ok(()), Err));
            }
        }
    }
}

/// Offset after the last whole batch in `bytes`.
fn last_next_offset(bytes: &[u8]) -> Option<u64> {
    let mut pos = 0;
    let mut next = None;
    while pos < bytes.len() {
        let h = crate::format::BatchHeader::parse(&bytes[pos..]).ok()?;
        next = Some(h.next_offset());
        pos += h.length as usize;
    }
    next
}

impl ShardCore {
    fn coordinator(&mut self, index: u32) -> Result<&mut Coordinator> {
        let shard = self.index;
        self.coordinators
            .get_mut(&index)
            .map(|(c, _)| c)
            .ok_or_else(|| Error::Corrupt {
                path: PathBuf::from(format!("coordinator {index}")),
                reason: format!("coordinator {index} is not open on shard {shard}"),
            })
    }
}

fn unknown(id: PartitionId) -> Error {
    Error::UnknownPartition {
        topic: format!("#{}", id.topic_id),
        partition: id.partition,
    }
}

/// Removes a partition's folder: moved to `trash` at once, its files unlinked in the
/// background (unlinking files with cached pages would stall the shard, see
/// `segment::deleter`); inline if the move fails.
fn remove_dir(dir: &std::path::Path, trash: &std::path::Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let moved = std::fs::create_dir_all(trash.parent().unwrap_or(trash))
        .and_then(|()| std::fs::rename(dir, trash));
    match moved {
        Ok(()) => {
            crate::segment::remove_later(trash.to_owned());
            Ok(())
        }
        Err(e) => {
            tracing::debug!(dir = %dir.display(), error = %e, "could not move to the trash; removing inline");
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r.map_err(|e| Error::io(dir, e)),
            }
        }
    }
}

/// Answers a command that will never run because the shard stopped.
pub(crate) fn refuse(cmd: Command) {
    fn shutting_down<T>(reply: Reply<T>) {
        let _ = reply.send(Err(Error::ShuttingDown));
    }
    match cmd {
        Command::Shutdown { reply } => {
            let _ = reply.send(Ok(()));
        }
        Command::Open { reply, .. }
        | Command::Remove { reply, .. }
        | Command::OpenCoordinator { reply, .. }
        | Command::LeaveGroup { reply, .. }
        | Command::CommitOffsets { reply, .. } => shutting_down(reply),
        Command::Produce { reply, .. } => shutting_down(reply),
        Command::ProduceMany { reply, .. } => shutting_down(reply),
        Command::Fetch { reply, .. } => shutting_down(reply),
        Command::Offset { reply, .. } => shutting_down(reply),
        Command::State { reply, .. } => shutting_down(reply),
        Command::Retention { reply, .. } => shutting_down(reply),
        Command::JoinGroup { reply, .. } | Command::Heartbeat { reply, .. } => shutting_down(reply),
        Command::FetchOffsets { reply, .. } => shutting_down(reply),
        Command::DescribeGroup { reply, .. } => shutting_down(reply),
        Command::ListGroups { reply } => shutting_down(reply),
    }
}

/// Runs a shard on the current thread until it shuts down, sleeping when idle.
pub fn run(mut core: ShardCore) {
    loop {
        let turn = core.turn(Instant::now());
        if turn.stopped {
            return;
        }
        if turn.progressed {
            continue;
        }
        core.waker.prepare_sleep();
        if core.has_ready_work() {
            core.waker.cancel_sleep();
            continue;
        }
        let timeout = turn
            .next_deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        core.waker.sleep(timeout);
    }
}
