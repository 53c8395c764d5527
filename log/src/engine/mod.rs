//! The thread-per-core engine: topics of partitions spread over shards, one thread each.
//!
//! Each shard thread exclusively owns its partitions (files, io_uring rings, in-memory
//! state); other threads reach it only through its bounded lock-free inbox. The topic
//! catalog is written by one control-plane writer at a time and read lock-free
//! (`arc-swap`). See `docs/ARCHITECTURE.md`.

mod catalog;
pub mod group;
#[cfg(feature = "tokio-host")]
pub mod host;
mod partitioner;
mod shard;
mod topic;
mod waiters;
mod wake;

pub use catalog::{CATALOG_FILE, Catalog, CatalogStore, TopicMeta};
pub use group::{AssignmentStrategy, GroupSummary, Membership, TopicPartition};
pub use partitioner::{Partitioning, partition_for_key};
pub use shard::{
    DurableObserver, ObserverFactory, OffsetQuery, PartitionId, PartitionState, ShardCore,
    ShardRunner, Turn, run as run_shard,
};
pub use topic::{MAX_TOPIC_NAME_LEN, TopicConfig, validate_topic_name};
pub use wake::Waker;

use crate::config::PartitionConfig;
use crate::error::{Error, IoContext, Result};
use crate::partition::{Appended, Fetch};
use arc_swap::ArcSwap;
use bytes::BytesMut;
use crossbeam_queue::ArrayQueue;
use shard::Command;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

/// Default of [`EngineConfig::retention_check_interval`]: five minutes, as Kafka's.
pub const DEFAULT_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(300);

/// Longest a tailing fetch waits; longer waits are cut to this.
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(3600);

/// Folder under the data directory that holds one folder per topic id.
pub const TOPICS_DIR: &str = "topics";

/// Folder under the data directory where removed partitions wait for their deletion.
pub const TRASH_DIR: &str = "deleted";

/// Settings of an engine.
#[derive(Clone)]
pub struct EngineConfig {
    /// Root directory: the catalog and every partition live under it.
    pub data_dir: PathBuf,
    /// Number of shards (threads); 0 means one per available core.
    pub shards: usize,
    /// Pin shard `i` to core `i` (modulo the core count).
    pub pin_threads: bool,
    /// Capacity of each shard's inbox; a full inbox rejects requests with `Overloaded`.
    pub inbox_capacity: usize,
    /// Most fetches a shard keeps parked waiting for data.
    pub max_parked_fetches: usize,
    /// Partition settings that topic configs do not override (index interval, I/O path…).
    pub partition_defaults: PartitionConfig,
    /// Builds, per shard, an observer of every batch that becomes durable on that shard.
    pub observer: Option<ObserverFactory>,
    /// Drives each shard's loop on its thread in place of [`shard::run`] (for example
    /// inside an async runtime that also serves the network).
    pub runner: Option<ShardRunner>,
    /// How often each shard applies its partitions' retention (Kafka's
    /// `log.retention.check.interval.ms`); `None` leaves it to [`Engine::apply_retention`].
    pub retention_check_interval: Option<Duration>,
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineConfig")
            .field("data_dir", &self.data_dir)
            .field("shards", &self.shards)
            .field("pin_threads", &self.pin_threads)
            .field("inbox_capacity", &self.inbox_capacity)
            .field("max_parked_fetches", &self.max_parked_fetches)
            .field("partition_defaults", &self.partition_defaults)
            .field("observer", &self.observer.is_some())
            .field("runner", &self.runner.is_some())
            .field("retention_check_interval", &self.retention_check_interval)
            .finish()
    }
}

impl EngineConfig {
    /// Defaults for an engine rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            shards: 0,
            pin_threads: true,
            inbox_capacity: 4096,
            max_parked_fetches: 10_000,
            partition_defaults: PartitionConfig::default(),
            observer: None,
            runner: None,
            retention_check_interval: Some(DEFAULT_RETENTION_CHECK_INTERVAL),
        }
    }
}

/// The result of a request sent to a shard: `.await` it, or [`wait`](Self::wait) for it.
#[derive(Debug)]
#[must_use = "a request's outcome is only known by awaiting or waiting for it"]
pub struct Pending<T>(oneshot::Receiver<Result<T>>);

impl<T> Pending<T> {
    /// Blocks the current thread until the shard answers.
    ///
    /// Works from any thread except a shard's own (it would wait on itself); inside async
    /// code prefer `.await`, which does not hold up the executor.
    pub fn wait(self) -> Result<T> {
        block_on(self.0).unwrap_or(Err(Error::ShuttingDown))
    }
}

/// Wakes a thread parked in [`block_on`].
struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let deferred = DEFERRED_WAKES.with(|d| match d.try_borrow_mut() {
            Ok(mut d) => match d.as_mut() {
                Some(list) => {
                    if !list.iter().any(|w| Arc::ptr_eq(w, self)) {
                        list.push(self.clone());
                    }
                    true
                }
                None => false,
            },
            Err(_) => false,
        });
        if !deferred {
            self.0.unpark();
        }
    }
}

thread_local! {
    /// While a [`DeferWakes`] is alive on this thread: the blocked threads to wake when it
    /// ends (each once). The list is kept between uses, so deferring allocates nothing.
    static DEFERRED_WAKES: std::cell::RefCell<Option<Vec<Arc<ThreadWaker>>>> =
        const { std::cell::RefCell::new(None) };
    /// The emptied list of the last [`DeferWakes`], reused by the next.
    static SPARE_WAKES: std::cell::Cell<Vec<Arc<ThreadWaker>>> =
        const { std::cell::Cell::new(Vec::new()) };
}

/// Holds back the wake-ups of threads blocked in [`Pending::wait`] that this thread causes
/// (by answering requests) until it is dropped, then wakes each such thread once.
///
/// A shard answers every append of a write in one go; waking the producer on the first
/// answer let it run (often preempting the shard on the same core), take that one answer,
/// find the next not yet sent and park again: one context-switch pair per batch. Deferred,
/// the producer wakes once and finds all of them. Async waiters are woken as before.
pub(crate) struct DeferWakes(());

impl DeferWakes {
    /// Starts deferring on the current thread (nesting keeps the outer one in charge).
    pub(crate) fn new() -> Option<Self> {
        DEFERRED_WAKES.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_some() {
                return None;
            }
            *d = Some(SPARE_WAKES.take());
            Some(DeferWakes(()))
        })
    }
}

impl Drop for DeferWakes {
    fn drop(&mut self) {
        let list = DEFERRED_WAKES.with(|d| d.borrow_mut().take());
        if let Some(mut list) = list {
            for w in list.drain(..) {
                w.0.unpark();
            }
            SPARE_WAKES.set(list);
        }
    }
}

thread_local! {
    /// This thread's waker for [`block_on`], made once rather than on every wait.
    static THREAD_WAKER: std::task::Waker =
        std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current())));
}

/// Polls `fut` on the current thread, parking between wake-ups.
///
/// Unlike tokio's `blocking_recv`, this may be called from a thread that also runs an
/// async runtime (an embedding program's `main`, a test): it blocks only this thread.
fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = THREAD_WAKER
        .try_with(std::task::Waker::clone)
        .unwrap_or_else(|_| std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current()))));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::ShuttingDown)))
    }
}

/// A shard as seen from other threads.
#[derive(Debug)]
struct ShardHandle {
    inbox: Arc<ArrayQueue<Command>>,
    waker: Arc<Waker>,
}

impl ShardHandle {
    fn send(&self, index: usize, cmd: Command, stopped: &AtomicBool) -> Result<()> {
        if stopped.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        match self.inbox.push(cmd) {
            Ok(()) => {
                self.waker.wake();
                // Shutdown may have drained this inbox between the check and the push:
                // answer whatever is left rather than let it wait forever.
                if stopped.load(Ordering::SeqCst) {
                    while let Some(cmd) = self.inbox.pop() {
                        shard::refuse(cmd);
                    }
                }
                Ok(())
            }
            Err(cmd) => {
                drop(cmd);
                Err(Error::Overloaded { shard: index })
            }
        }
    }
}

#[derive(Debug)]
struct Inner {
    config: EngineConfig,
    catalog: ArcSwap<catalog::Catalog>,
    /// Serialises control-plane changes (never taken on the data path).
    control: Mutex<CatalogStore>,
    shards: Vec<ShardHandle>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Set once shutdown starts; requests are refused from then on.
    stopped: AtomicBool,
}

/// An embeddable, thread-per-core log engine. Cheap to clone; all clones share it.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

fn partition_dir(data_dir: &Path, topic_id: u64, partition: u32) -> PathBuf {
    data_dir
        .join(TOPICS_DIR)
        .join(topic_id.to_string())
        .join(partition.to_string())
}

impl Engine {
    /// Opens the engine in `config.data_dir`: loads the catalog, starts the shards and
    /// opens (recovering) every partition.
    pub fn open(mut config: EngineConfig) -> Result<Self> {
        config.partition_defaults.validate()?;
        if config.retention_check_interval == Some(Duration::ZERO) {
            return Err(Error::InvalidConfig(
                "retention_check_interval must be positive (None turns the check off)".into(),
            ));
        }
        if config.inbox_capacity == 0 {
            return Err(Error::InvalidConfig(
                "inbox_capacity must be at least 1".into(),
            ));
        }
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        if config.shards == 0 {
            config.shards = cores.len().max(1);
        }
        let topics_dir = config.data_dir.join(TOPICS_DIR);
        std::fs::create_dir_all(&topics_dir).at(&topics_dir)?;
        let store = CatalogStore::new(&config.data_dir);
        let catalog = store.load()?;
        remove_orphan_topic_dirs(&topics_dir, &catalog)?;
        // Partitions removed before a crash and not yet deleted.
        let trash = config.data_dir.join(TRASH_DIR);
        if let Ok(entries) = std::fs::read_dir(&trash) {
            for entry in entries.flatten() {
                crate::segment::remove_later(entry.path());
            }
        }

        let mut shards = Vec::with_capacity(config.shards);
        let mut threads = Vec::with_capacity(config.shards);
        for index in 0..config.shards {
            let waker = Arc::new(Waker::new().map_err(|e| Error::io(&config.data_dir, e))?);
            let inbox = Arc::new(ArrayQueue::new(config.inbox_capacity));
            let observer = config.observer.as_ref().map(|make| make(index));
            let core = ShardCore::new(
                index,
                waker.clone(),
                inbox.clone(),
                config.max_parked_fetches,
                observer,
                config.retention_check_interval,
            );
            let pin = config
                .pin_threads
                .then(|| cores.get(index % cores.len().max(1)).copied())
                .flatten();
            let runner = config.runner.clone();
            let thread = std::thread::Builder::new()
                .name(format!("strata-shard-{index}"))
                .spawn(move || {
                    if let Some(core_id) = pin
                        && !core_affinity::set_for_current(core_id)
                    {
                        tracing::warn!(
                            shard = index,
                            core = core_id.id,
                            "could not pin the shard thread to its core; it runs unpinned"
                        );
                    }
                    match runner {
                        Some(runner) => runner(core),
                        None => shard::run(core),
                    }
                })
                .map_err(|e| Error::io(&config.data_dir, e))?;
            shards.push(ShardHandle { inbox, waker });
            threads.push(thread);
        }
        let engine = Engine {
            inner: Arc::new(Inner {
                config,
                catalog: ArcSwap::from_pointee(catalog.clone()),
                control: Mutex::new(store),
                shards,
                threads: Mutex::new(threads),
                stopped: AtomicBool::new(false),
            }),
        };
        // At most one inbox's worth of opens in flight, so that no inbox overflows however
        // many partitions the catalog holds (nothing else can reach the shards yet).
        let window = engine.inner.config.inbox_capacity;
        let mut opens: std::collections::VecDeque<Pending<()>> = Default::default();
        let mut start = |open: &dyn Fn() -> Result<Pending<()>>| -> Result<()> {
            if opens.len() >= window
                && let Some(oldest) = opens.pop_front()
            {
                oldest.wait()?;
            }
            opens.push_back(open()?);
            Ok(())
        };
        for k in 0..catalog.coordinators {
            let dir = engine
                .inner
                .config
                .data_dir
                .join(group::GROUPS_DIR)
                .join(k.to_string());
            let defaults = &engine.inner.config.partition_defaults;
            start(&|| {
                engine.request(k as usize % engine.shard_count(), |reply| {
                    Command::OpenCoordinator {
                        index: k,
                        dir: dir.clone(),
                        defaults: defaults.clone(),
                        reply,
                    }
                })
            })?;
        }
        for topic in catalog.topics.values() {
            for p in 0..topic.config.partitions {
                start(&|| engine.open_partition(topic, p))?;
            }
        }
        for pending in opens {
            pending.wait()?;
        }
        Ok(engine)
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The shard that owns partition `partition` of the topic with id `topic_id`.
    pub fn shard_for(&self, topic_id: u64, partition: u32) -> usize {
        ((topic_id as usize).wrapping_add(partition as usize)) % self.inner.shards.len()
    }

    fn request<T>(
        &self,
        shard: usize,
        build: impl FnOnce(shard::Reply<T>) -> Command,
    ) -> Result<Pending<T>> {
        let (tx, rx) = oneshot::channel();
        self.inner.shards[shard].send(shard, build(tx), &self.inner.stopped)?;
        Ok(Pending(rx))
    }

    fn open_partition(&self, topic: &TopicMeta, partition: u32) -> Result<Pending<()>> {
        let id = PartitionId {
            topic_id: topic.id,
            partition,
        };
        let dir = partition_dir(&self.inner.config.data_dir, topic.id, partition);
        let config = topic
            .config
            .partition_config(&self.inner.config.partition_defaults);
        self.request(self.shard_for(topic.id, partition), |reply| Command::Open {
            id,
            dir,
            config,
            reply,
        })
    }

    fn remove_partition(&self, topic: &TopicMeta, partition: u32) -> Result<Pending<()>> {
        let id = PartitionId {
            topic_id: topic.id,
            partition,
        };
        let dir = partition_dir(&self.inner.config.data_dir, topic.id, partition);
        let trash = self
            .inner
            .config
            .data_dir
            .join(TRASH_DIR)
            .join(format!("{}-{partition}", topic.id));
        self.request(self.shard_for(topic.id, partition), |reply| {
            Command::Remove {
                id,
                dir,
                trash,
                reply,
            }
        })
    }

    /// Creates a topic; durable once this returns.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Arc<TopicMeta>> {
        validate_topic_name(name)?;
        config.validate(&self.inner.config.partition_defaults)?;
        let store = self.inner.control.lock().unwrap_or_else(|e| e.into_inner());
        let mut catalog = catalog::Catalog::clone(&self.inner.catalog.load());
        if catalog.topics.contains_key(name) {
            return Err(Error::TopicExists(name.to_owned()));
        }
        let meta = Arc::new(TopicMeta {
            id: catalog.next_topic_id,
            name: name.to_owned(),
            config,
            round_robin: Default::default(),
        });
        catalog.next_topic_id += 1;
        // Partitions first: a crash before the catalog commit leaves orphan folders,
        // which the next open removes, so the topic either exists whole or not at all.
        let mut opened = 0;
        let mut result = Ok(());
        for p in 0..meta.config.partitions {
            match self.open_partition(&meta, p).and_then(Pending::wait) {
                Ok(()) => opened += 1,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        catalog.topics.insert(name.to_owned(), meta.clone());
        let result = result.and_then(|()| store.commit(&catalog));
        if let Err(e) = result {
            for p in 0..opened {
                if let Ok(pending) = self.remove_partition(&meta, p) {
                    let _ = pending.wait();
                }
            }
            return Err(e);
        }
        self.inner.catalog.store(Arc::new(catalog));
        Ok(meta)
    }

    /// Assigns a new idempotent producer id (durable, never reused) with epoch 0.
    ///
    /// Batches stamped with it (see `BatchBuilder::set_producer`) and consecutive base
    /// sequences are written once: a retried batch is acknowledged with its original
    /// offsets, and a sequence gap is rejected with [`Error::OutOfOrderSequence`].
    pub fn init_producer(&self) -> Result<u64> {
        let store = self.inner.control.lock().unwrap_or_else(|e| e.into_inner());
        let mut catalog = catalog::Catalog::clone(&self.inner.catalog.load());
        let id = catalog.next_producer_id;
        catalog.next_producer_id += 1;
        store.commit(&catalog)?;
        self.inner.catalog.store(Arc::new(catalog));
        Ok(id)
    }

    /// Deletes a topic and its data; the deletion is durable once this returns.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let store = self.inner.control.lock().unwrap_or_else(|e| e.into_inner());
        let mut catalog = catalog::Catalog::clone(&self.inner.catalog.load());
        let meta = catalog
            .topics
            .remove(name)
            .ok_or_else(|| Error::UnknownTopic(name.to_owned()))?;
        // Catalog first: a crash after it leaves orphan folders that the next open removes.
        store.commit(&catalog)?;
        self.inner.catalog.store(Arc::new(catalog));
        let mut first_error = None;
        for p in 0..meta.config.partitions {
            if let Err(e) = self.remove_partition(&meta, p).and_then(Pending::wait) {
                first_error.get_or_insert(e);
            }
        }
        let dir = self
            .inner
            .config
            .data_dir
            .join(TOPICS_DIR)
            .join(meta.id.to_string());
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            first_error.get_or_insert(Error::io(&dir, e));
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Every topic, by name.
    pub fn topics(&self) -> Vec<Arc<TopicMeta>> {
        self.inner.catalog.load().topics.values().cloned().collect()
    }

    /// One topic's metadata.
    pub fn topic(&self, name: &str) -> Result<Arc<TopicMeta>> {
        self.inner
            .catalog
            .load()
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic(name.to_owned()))
    }

    /// Offsets and sizes of every partition of a topic.
    pub fn describe_topic(&self, name: &str) -> Result<Vec<PartitionState>> {
        let topic = self.topic(name)?;
        let pending: Vec<_> = (0..topic.config.partitions)
            .map(|p| {
                let id = PartitionId {
                    topic_id: topic.id,
                    partition: p,
                };
                self.request(self.shard_for(topic.id, p), |reply| Command::State {
                    id,
                    reply,
                })
            })
            .collect::<Result<_>>()?;
        pending.into_iter().map(Pending::wait).collect()
    }

    fn partition_id(&self, topic: &str, partition: u32) -> Result<(PartitionId, usize)> {
        let meta = self.topic(topic)?;
        if partition >= meta.config.partitions {
            return Err(Error::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            });
        }
        Ok((
            PartitionId {
                topic_id: meta.id,
                partition,
            },
            self.shard_for(meta.id, partition),
        ))
    }

    /// Picks the partition a record goes to.
    pub fn partition_for(&self, topic: &str, how: Partitioning<'_>) -> Result<u32> {
        let meta = self.topic(topic)?;
        let n = meta.config.partitions;
        match how {
            Partitioning::Explicit(p) if p < n => Ok(p),
            Partitioning::Explicit(p) => Err(Error::UnknownPartition {
                topic: topic.to_owned(),
                partition: p,
            }),
            Partitioning::Key(key) => Ok(partition_for_key(key, n)),
            Partitioning::RoundRobin => Ok(meta.round_robin.next() % n),
        }
    }

    /// Appends an encoded batch to a partition; resolves with its offsets once durable.
    pub fn produce(
        &self,
        topic: &str,
        partition: u32,
        batch: BytesMut,
    ) -> Result<Pending<Appended>> {
        self.produce_inner(topic, partition, batch, None)
    }

    /// Appends only if the partition's next offset is `expected_offset`; otherwise the
    /// request fails with [`Error::Conflict`] carrying the actual offset.
    pub fn produce_if(
        &self,
        topic: &str,
        partition: u32,
        batch: BytesMut,
        expected_offset: u64,
    ) -> Result<Pending<Appended>> {
        self.produce_inner(topic, partition, batch, Some(expected_offset))
    }

    /// Appends several encoded batches to one partition, in order, in one request.
    ///
    /// Resolves once every accepted batch is durable, with one result per batch in the
    /// order given. The accepted batches are always a prefix of `batches`: after the
    /// first batch that fails, the rest are not tried and fail with
    /// [`Error::AppendFailed`]. One request per many batches costs one inbox slot, one
    /// wake-up and one reply, so it amortises the cross-thread round trip.
    pub fn produce_many(
        &self,
        topic: &str,
        partition: u32,
        batches: Vec<BytesMut>,
    ) -> Result<Pending<Vec<Result<Appended>>>> {
        let (id, shard) = self.partition_id(topic, partition)?;
        if batches.is_empty() {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Ok(Vec::new()));
            return Ok(Pending(rx));
        }
        self.request(shard, |reply| Command::ProduceMany { id, batches, reply })
    }

    fn produce_inner(
        &self,
        topic: &str,
        partition: u32,
        batch: BytesMut,
        expected_offset: Option<u64>,
    ) -> Result<Pending<Appended>> {
        let (id, shard) = self.partition_id(topic, partition)?;
        self.request(shard, |reply| Command::Produce {
            id,
            batch,
            expected_offset,
            reply,
        })
    }

    /// Reads whole batches from `offset`, up to `max_bytes` (at least one batch).
    ///
    /// With `wait`, a fetch at the high watermark waits up to that long (at most
    /// [`MAX_FETCH_WAIT`]) for new data and resolves as soon as it is durable (or empty at
    /// the deadline).
    pub fn fetch(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: usize,
        wait: Option<Duration>,
    ) -> Result<Pending<Fetch>> {
        let (id, shard) = self.partition_id(topic, partition)?;
        let wait_until = wait.map(|w| Instant::now() + w.min(MAX_FETCH_WAIT));
        self.request(shard, |reply| Command::Fetch {
            id,
            offset,
            max_bytes,
            wait_until,
            reply,
        })
    }

    /// Looks up the earliest or latest offset, or the first at or after a timestamp.
    pub fn offset_for(
        &self,
        topic: &str,
        partition: u32,
        query: OffsetQuery,
    ) -> Result<Pending<Option<u64>>> {
        let (id, shard) = self.partition_id(topic, partition)?;
        self.request(shard, |reply| Command::Offset { id, query, reply })
    }

    fn coordinator(&self, group: &str) -> Result<(u32, usize)> {
        validate_topic_name(group).map_err(|_| Error::InvalidGroupName(group.to_owned()))?;
        let k = group::coordinator_for(group, self.inner.catalog.load().coordinators);
        Ok((k, k as usize % self.shard_count()))
    }

    /// Joins (or re-joins, with `member_id`) a consumer group subscribed to `topics`.
    ///
    /// The coordinator assigns partitions with the group's strategy (set by its first
    /// member) and bumps the generation whenever membership changes. The member must
    /// heartbeat within `session_timeout` or it is expired and its partitions move.
    pub fn join_group(
        &self,
        group: &str,
        member_id: Option<&str>,
        topics: &[&str],
        strategy: AssignmentStrategy,
        session_timeout: Duration,
    ) -> Result<Pending<Membership>> {
        let (coordinator, shard) = self.coordinator(group)?;
        let catalog = self.inner.catalog.load();
        let mut partitions = std::collections::BTreeMap::new();
        for t in topics {
            let meta = catalog
                .topics
                .get(*t)
                .ok_or_else(|| Error::UnknownTopic((*t).to_owned()))?;
            partitions.insert((*t).to_owned(), meta.config.partitions);
        }
        let topics = topics.iter().map(|t| (*t).to_owned()).collect();
        let group = group.to_owned();
        let member_id = member_id.map(str::to_owned);
        self.request(shard, |reply| Command::JoinGroup {
            coordinator,
            group,
            member_id,
            topics,
            strategy,
            session_timeout,
            partitions,
            reply,
        })
    }

    /// Keeps a member alive; answers with the group's current generation and the member's
    /// assignment (a new generation means a rebalance happened).
    pub fn heartbeat(&self, group: &str, member_id: &str) -> Result<Pending<Membership>> {
        let (coordinator, shard) = self.coordinator(group)?;
        let (group, member_id) = (group.to_owned(), member_id.to_owned());
        self.request(shard, |reply| Command::Heartbeat {
            coordinator,
            group,
            member_id,
            reply,
        })
    }

    /// Leaves a group; its partitions are reassigned to the remaining members.
    pub fn leave_group(&self, group: &str, member_id: &str) -> Result<Pending<()>> {
        let (coordinator, shard) = self.coordinator(group)?;
        let (group, member_id) = (group.to_owned(), member_id.to_owned());
        self.request(shard, |reply| Command::LeaveGroup {
            coordinator,
            group,
            member_id,
            reply,
        })
    }

    /// Commits offsets (the next offset to consume) for a group; durable when it resolves.
    ///
    /// `member` is `(member id, generation)`: a commit from a stale generation or an
    /// unknown member is refused. Without a member the commit is accepted only while the
    /// group has no members (offsets managed by hand).
    pub fn commit_offsets(
        &self,
        group: &str,
        member: Option<(&str, u32)>,
        offsets: &[(TopicPartition, u64)],
    ) -> Result<Pending<()>> {
        let (coordinator, shard) = self.coordinator(group)?;
        let catalog = self.inner.catalog.load();
        for (tp, _) in offsets {
            let meta = catalog
                .topics
                .get(&tp.topic)
                .ok_or_else(|| Error::UnknownTopic(tp.topic.clone()))?;
            if tp.partition >= meta.config.partitions {
                return Err(Error::UnknownPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                });
            }
        }
        let group = group.to_owned();
        let member = member.map(|(m, g)| (m.to_owned(), g));
        let offsets = offsets.to_vec();
        self.request(shard, |reply| Command::CommitOffsets {
            coordinator,
            group,
            member,
            offsets,
            reply,
        })
    }

    /// The group's committed offsets for `partitions` (None where nothing was committed).
    pub fn committed_offsets(
        &self,
        group: &str,
        partitions: &[TopicPartition],
    ) -> Result<Pending<Vec<Option<u64>>>> {
        let (coordinator, shard) = self.coordinator(group)?;
        let group = group.to_owned();
        let partitions = partitions.to_vec();
        self.request(shard, |reply| Command::FetchOffsets {
            coordinator,
            group,
            partitions,
            reply,
        })
    }

    /// A group's members, assignment and committed offsets, if the group exists.
    pub fn describe_group(&self, group: &str) -> Result<Pending<Option<GroupSummary>>> {
        let (coordinator, shard) = self.coordinator(group)?;
        let group = group.to_owned();
        self.request(shard, |reply| Command::DescribeGroup {
            coordinator,
            group,
            reply,
        })
    }

    /// Names of every known group (with members or committed offsets).
    pub fn list_groups(&self) -> Result<Vec<String>> {
        let pending: Vec<_> = (0..self.shard_count())
            .map(|s| self.request(s, |reply| Command::ListGroups { reply }))
            .collect::<Result<_>>()?;
        let mut names = Vec::new();
        for p in pending {
            names.extend(p.wait()?);
        }
        names.sort();
        Ok(names)
    }

    /// Applies every partition's retention settings as of `now`; returns segments deleted.
    pub fn apply_retention(&self, now: SystemTime) -> Result<usize> {
        let pending: Vec<_> = (0..self.inner.shards.len())
            .map(|s| self.request(s, |reply| Command::Retention { now, reply }))
            .collect::<Result<_>>()?;
        pending.into_iter().map(Pending::wait).sum()
    }

    /// Flushes and closes every partition and stops the shard threads.
    ///
    /// Requests sent afterwards fail with [`Error::ShuttingDown`].
    pub fn shutdown(&self) -> Result<()> {
        self.inner.shutdown()
    }
}

impl Inner {
    fn shutdown(&self) -> Result<()> {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if threads.is_empty() {
            return Ok(());
        }
        self.stopped.store(true, Ordering::SeqCst);
        // Called on a shard thread (a hosted task, or the last handle dropped there), that
        // shard cannot answer while this waits: it is told to stop and left to do so once
        // this returns to its loop.
        let me = std::thread::current().id();
        let own = threads.iter().position(|t| t.thread().id() == me);
        let mut first_error = None;
        for (index, shard) in self.shards.iter().enumerate() {
            let (tx, rx) = oneshot::channel();
            let mut cmd = Command::Shutdown { reply: tx };
            // Shutdown must get through: wait for room rather than give up.
            loop {
                match shard.inbox.push(cmd) {
                    Ok(()) => break,
                    Err(back) if own == Some(index) => {
                        // Only this thread drains that inbox, so waiting here for room
                        // would never end: a helper delivers the command once the shard
                        // has turned again.
                        let (inbox, waker) = (shard.inbox.clone(), shard.waker.clone());
                        std::thread::spawn(move || {
                            let mut cmd = back;
                            while let Err(again) = inbox.push(cmd) {
                                cmd = again;
                                std::thread::yield_now();
                            }
                            waker.wake();
                        });
                        break;
                    }
                    Err(back) => {
                        cmd = back;
                        shard.waker.wake();
                        std::thread::yield_now();
                    }
                }
            }
            shard.waker.wake();
            if own == Some(index) {
                continue;
            }
            if let Err(e) = block_on(rx).unwrap_or(Err(Error::ShuttingDown)) {
                tracing::warn!(shard = index, error = %e, "shard shutdown reported an error");
                first_error.get_or_insert(e);
            }
        }
        for (index, t) in threads.drain(..).enumerate() {
            if own != Some(index) {
                let _ = t.join();
            }
        }
        // Requests that slipped in after a shard's last drain.
        for (index, shard) in self.shards.iter().enumerate() {
            if own == Some(index) {
                continue;
            }
            while let Some(cmd) = shard.inbox.pop() {
                shard::refuse(cmd);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "engine shutdown on drop failed");
        }
    }
}

/// Removes topic folders the catalog does not know (left by an interrupted create or delete).
fn remove_orphan_topic_dirs(topics_dir: &Path, catalog: &catalog::Catalog) -> Result<()> {
    let known: std::collections::HashSet<String> =
        catalog.topics.values().map(|t| t.id.to_string()).collect();
    for entry in std::fs::read_dir(topics_dir).at(topics_dir)? {
        let entry = entry.at(topics_dir)?;
        let name = entry.file_name();
        if !known.contains(name.to_string_lossy().as_ref()) {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing folder of a topic not in the catalog");
            std::fs::remove_dir_all(&path).at(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deferred_wakes_reach_every_blocked_waiter_once_the_guard_ends() {
        let (tx1, rx1) = oneshot::channel::<Result<u32>>();
        let (tx2, rx2) = oneshot::channel::<Result<u32>>();
        let waiter = std::thread::spawn(move || {
            let a = Pending(rx1).wait().unwrap();
            let b = Pending(rx2).wait().unwrap();
            a + b
        });
        // Let the waiter block on the first answer (it registers its thread waker).
        std::thread::sleep(Duration::from_millis(50));
        {
            let guard = DeferWakes::new().expect("not nested");
            assert!(
                DeferWakes::new().is_none(),
                "nesting leaves the outer in charge"
            );
            tx1.send(Ok(1)).unwrap();
            tx2.send(Ok(2)).unwrap();
            let held = DEFERRED_WAKES.with(|d| d.borrow().as_ref().map(Vec::len));
            assert!(held.unwrap() <= 1, "one thread is woken at most once");
            drop(guard);
        }
        assert_eq!(waiter.join().unwrap(), 3, "woken once the guard ended");
        assert!(
            DEFERRED_WAKES.with(|d| d.borrow().is_none()),
            "no deferral outside a guard"
        );
        // Outside a guard a wake is immediate again.
        let (tx, rx) = oneshot::channel::<Result<u32>>();
        let waiter = std::thread::spawn(move || Pending(rx).wait().unwrap());
        std::thread::sleep(Duration::from_millis(20));
        tx.send(Ok(7)).unwrap();
        assert_eq!(waiter.join().unwrap(), 7);
    }
}
