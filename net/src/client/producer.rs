//! A batching, idempotent producer.
//!
//! ```text
//!  send() ──▶ memory semaphore (max_inflight_bytes) ──▶ open BatchBuilder of (topic, partition)
//!                                                           │ full (batch_bytes), or linger expired
//!                                                           │ while the partition has fewer than
//!                                                           │ max_inflight_batches unacknowledged
//!                                                           ▼
//!                                           sealed batch: stamped (producer id, epoch, sequence)
//!                                                           │ handoff queue
//!                                                           ▼
//!                              partition driver task: ≤ max_inflight_batches PRODUCE frames in
//!                              flight on the partition's lane; completes batches in order;
//!                              retries the same bytes after retriable errors or reconnects
//! ```
//!
//! A lingered batch is sealed only once its partition's pipeline has room: while the
//! window is full, records keep joining the open batch (up to `batch_bytes`), and the
//! driver seals it as soon as an answer frees a slot. Under load batches grow with the
//! round trip instead of queueing up small; with `linger` zero a record is sent at once
//! whenever the window has room.
//!
//! Every record of a batch shares one completion (`Arc<Completion>`); a record's
//! [`DeliveryFuture`] holds that and its index, so its offset is `base + index`.

use super::connection::{Client, PendingResponse, ProducerIdentity};
use super::error::ClientError;
use crate::protocol::{Acks, HEADER_LEN, Request, Response};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use strata_log::FormatError;
use strata_log::engine::{MAX_TOPIC_NAME_LEN, partition_for_key};
use strata_log::format::{
    BASE_SEQUENCE_POS, BatchBuilder, BuilderOptions, CRC_POS, CRC_START, Compression, Header,
    MAX_BATCH_LEN, NO_SEQUENCE,
};
use strata_log::producer::RECENT_BATCHES;
use tokio::sync::{Notify, Semaphore, TryAcquireError};

/// Bytes a PRODUCE frame needs besides its batch (header, topic name, fixed fields).
const PRODUCE_OVERHEAD: usize = HEADER_LEN + 2 + MAX_TOPIC_NAME_LEN + 4 + 1 + 9;
/// Bytes charged against `max_inflight_bytes` per record on top of its payload.
const RECORD_OVERHEAD: usize = 32;
/// Headers converted on the stack; more take one allocation.
const INLINE_HEADERS: usize = 8;
/// Most bytes a new batch's buffer is allocated with up front (it grows past that).
const MAX_BATCH_RESERVE: usize = 256 * 1024;
/// Room reserved past `batch_bytes`: a batch is sealed after the record that filled it.
const BATCH_RESERVE_SLACK: usize = 1024;

/// How a [`Producer`] batches and acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// What the server waits for before acknowledging (at most the topic's durability).
    pub acks: Acks,
    /// How long a batch may wait for more records before it is sent; while its
    /// partition already has `max_inflight_batches` in flight it waits (and grows) until
    /// an answer frees a slot. Zero sends whenever a slot is free.
    pub linger: Duration,
    /// Send a batch once it holds this many (uncompressed) bytes.
    pub batch_bytes: usize,
    /// Codec for the batches; `None` (the default) uses the topic's configured one.
    pub compression: Option<Compression>,
    /// Bytes of records buffered or in flight before `send` waits.
    pub max_inflight_bytes: usize,
    /// Stamp batches with a producer id and sequences so retries are never duplicated.
    pub idempotent: bool,
    /// Give up on a record this long after its batch was opened.
    pub delivery_timeout: Duration,
    /// Batches in flight per partition (at most 5 with idempotence: the server
    /// remembers a producer's last 5 batches to recognise retries); a full window holds
    /// the next batch open.
    pub max_inflight_batches: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::Written,
            linger: Duration::from_millis(2),
            batch_bytes: 256 * 1024,
            compression: None,
            max_inflight_bytes: 32 << 20,
            idempotent: true,
            delivery_timeout: Duration::from_secs(30),
            max_inflight_batches: RECENT_BATCHES,
        }
    }
}

impl ProducerConfig {
    /// Checks the values against a frame limit; returns the largest batch that fits.
    fn validate(&self, max_frame: usize) -> Result<usize, ClientError> {
        let bad = |m: String| Err(ClientError::Config(m));
        let max_batch = max_frame
            .saturating_sub(PRODUCE_OVERHEAD)
            .min(MAX_BATCH_LEN);
        if max_batch <= strata_log::format::HEADER_LEN {
            return bad(format!("max_frame {max_frame} leaves no room for a batch"));
        }
        if self.batch_bytes == 0 || self.batch_bytes > max_batch {
            return bad(format!(
                "batch_bytes must be in 1..={max_batch} (what fits in a frame)"
            ));
        }
        if self.max_inflight_bytes == 0 || self.max_inflight_bytes > u32::MAX as usize {
            return bad("max_inflight_bytes must be in 1..=4 GiB".into());
        }
        if self.delivery_timeout.is_zero() {
            return bad("delivery_timeout must be positive".into());
        }
        let most = if self.idempotent {
            RECENT_BATCHES
        } else {
            usize::MAX
        };
        if self.max_inflight_batches == 0 || self.max_inflight_batches > most {
            return bad(format!(
                "max_inflight_batches must be in 1..={most} (the server remembers {RECENT_BATCHES} batches per producer)"
            ));
        }
        Ok(max_batch)
    }
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Partition.
    pub partition: u32,
    /// Offset, or none when acks were [`Acks::None`].
    pub offset: Option<u64>,
}

/// The outcome of one batch, shared by its records.
#[derive(Debug)]
struct Completion {
    partition: u32,
    /// Base offset (none with acks `None`), or the failure.
    result: OnceLock<Result<Option<u64>, ClientError>>,
    wakers: Mutex<Vec<Waker>>,
}

impl Completion {
    fn new(partition: u32) -> Arc<Completion> {
        Arc::new(Completion {
            partition,
            result: OnceLock::new(),
            wakers: Mutex::new(Vec::new()),
        })
    }

    fn complete(&self, result: Result<Option<u64>, ClientError>) {
        if self.result.set(result).is_ok() {
            let wakers = match self.wakers.lock() {
                Ok(mut w) => std::mem::take(&mut *w),
                Err(_) => Vec::new(),
            };
            for w in wakers {
                w.wake();
            }
        }
    }

    fn poll_done(&self, cx: &mut Context<'_>) -> Poll<&Result<Option<u64>, ClientError>> {
        if let Some(r) = self.result.get() {
            return Poll::Ready(r);
        }
        let Ok(mut wakers) = self.wakers.lock() else {
            return Poll::Pending;
        };
        // Checked again under the lock: `complete` sets the result before taking it.
        if let Some(r) = self.result.get() {
            return Poll::Ready(r);
        }
        if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
            wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Resolves once a record's batch was acknowledged (or failed for good).
#[must_use = "a DeliveryFuture reports whether the record was stored"]
pub struct DeliveryFuture {
    completion: Arc<Completion>,
    index: u32,
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFuture")
            .field("partition", &self.completion.partition)
            .field("index", &self.index)
            .finish()
    }
}

impl DeliveryFuture {
    /// The partition the record was assigned to.
    pub fn partition(&self) -> u32 {
        self.completion.partition
    }

    /// The outcome if it is known already.
    pub fn try_result(&self) -> Option<Result<RecordMetadata, ClientError>> {
        self.completion.result.get().map(|r| self.metadata(r))
    }

    fn metadata(
        &self,
        r: &Result<Option<u64>, ClientError>,
    ) -> Result<RecordMetadata, ClientError> {
        match r {
            Ok(base) => Ok(RecordMetadata {
                partition: self.completion.partition,
                offset: base.map(|b| b + u64::from(self.index)),
            }),
            Err(e) => Err(e.clone()),
        }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ClientError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.completion.poll_done(cx) {
            Poll::Ready(r) => Poll::Ready(self.metadata(r)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Waits for a batch's completion.
struct CompletionWait(Arc<Completion>);

impl Future for CompletionWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_done(cx).map(|_| ())
    }
}

/// A sealed batch on its way to the server.
struct Sealed {
    bytes: Bytes,
    records: u32,
    /// Base sequence stamped in the batch ([`NO_SEQUENCE`] without idempotence).
    base_sequence: i32,
    completion: Arc<Completion>,
    /// Bytes of the memory budget to give back once the batch completes.
    reserved: usize,
    /// Fail the batch rather than retry after this instant.
    deadline: Instant,
}

/// The sequence after `count` records from `seq` (sequences wrap from `i32::MAX` to 0).
fn advance(seq: i32, count: u32) -> i32 {
    ((i64::from(seq) + i64::from(count)) % (i64::from(i32::MAX) + 1)) as i32
}

/// A copy of `batch` with another base sequence (and the CRC recomputed).
fn restamp(batch: &Bytes, base_sequence: i32) -> Bytes {
    let mut b = BytesMut::from(&batch[..]);
    b[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4].copy_from_slice(&base_sequence.to_le_bytes());
    let crc = crc32fast::hash(&b[CRC_START..]);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_le_bytes());
    b.freeze()
}

/// Microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The batch being filled for one partition.
struct OpenBatch {
    completion: Arc<Completion>,
    reserved: usize,
    opened: Instant,
}

/// One partition's accumulator: the open batch, the sequence counter, sealed batches
/// waiting for the driver.
struct PartitionBuf {
    partition: u32,
    builder: BatchBuilder,
    open: Option<OpenBatch>,
    next_sequence: i32,
    handoff: VecDeque<Sealed>,
    /// Batches sealed and not yet completed (in the handoff queue or the driver's pipeline).
    unacked: usize,
    /// The last batch sealed: once it completes, every earlier one has.
    last_sealed: Option<Arc<Completion>>,
    /// The driver task's wake-up, while one runs.
    driver: Option<Arc<Notify>>,
    /// Bytes allocated for a batch when it opens, so it does not grow by reallocation.
    reserve: usize,
    /// The producer's count of batches sealed and not yet completed, all partitions.
    sealed: Arc<AtomicUsize>,
}

impl PartitionBuf {
    fn new(partition: u32, options: BuilderOptions) -> Self {
        PartitionBuf {
            partition,
            builder: BatchBuilder::new(options),
            open: None,
            next_sequence: 0,
            handoff: VecDeque::new(),
            unacked: 0,
            last_sealed: None,
            driver: None,
            reserve: 0,
            sealed: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Adds a record to the open batch (sealing it first when the record does not fit);
    /// returns the batch's completion, the record's index, and whether a batch was
    /// opened (the linger timer must learn of it).
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        identity: Option<ProducerIdentity>,
        delivery_timeout: Duration,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header<'_>],
        reserved: usize,
    ) -> Result<(Arc<Completion>, u32, bool), ClientError> {
        let mut opened = false;
        loop {
            if self.open.is_none() {
                self.builder.reserve(self.reserve);
                self.open = Some(OpenBatch {
                    completion: Completion::new(self.partition),
                    reserved: 0,
                    opened: Instant::now(),
                });
                opened = true;
            }
            let index = self.builder.len() as u32;
            match self.builder.push(timestamp, key, value, headers) {
                Ok(()) => {
                    let open = self.open.as_mut().expect("opened above");
                    open.reserved += reserved;
                    return Ok((open.completion.clone(), index, opened));
                }
                Err(FormatError::TooLarge { size, limit }) if self.builder.is_empty() => {
                    self.open = None;
                    return Err(ClientError::RecordTooLarge { size, limit });
                }
                Err(FormatError::TooLarge { .. }) => {
                    self.seal(identity, delivery_timeout);
                }
                Err(e) => {
                    if self.builder.is_empty() {
                        self.open = None;
                    }
                    return Err(e.into());
                }
            }
        }
    }

    /// When the open batch's linger runs out, if one is open.
    fn linger_due(&self, linger: Duration) -> Option<Instant> {
        self.open.as_ref().map(|o| o.opened + linger)
    }

    /// Seals the open batch (if any) into the handoff queue; true if one was sealed.
    fn seal(&mut self, identity: Option<ProducerIdentity>, delivery_timeout: Duration) -> bool {
        let Some(open) = self.open.take() else {
            return false;
        };
        let records = self.builder.len() as u32;
        let base_sequence = match identity {
            Some(id) => {
                let seq = self.next_sequence;
                self.builder.set_producer(id.producer_id, id.epoch, seq);
                self.next_sequence = advance(seq, records);
                seq
            }
            None => NO_SEQUENCE,
        };
        match self.builder.finish() {
            Ok(bytes) => {
                self.unacked += 1;
                self.sealed.fetch_add(1, Ordering::Relaxed);
                self.last_sealed = Some(open.completion.clone());
                self.handoff.push_back(Sealed {
                    bytes: bytes.freeze(),
                    records,
                    base_sequence,
                    completion: open.completion,
                    reserved: open.reserved,
                    deadline: open.opened + delivery_timeout,
                });
                true
            }
            Err(e) => {
                // Only an empty builder fails, and an open batch holds a record.
                open.completion.complete(Err(e.into()));
                false
            }
        }
    }
}

/// One topic's partitions.
struct TopicBuf {
    name: Arc<str>,
    partitions: Vec<PartitionBuf>,
    /// Partition keyless records go to until its batch is sealed.
    sticky: u32,
}

impl TopicBuf {
    /// `batch_bytes`: the producer's batch size, which each new batch reserves room for;
    /// `sealed`: the producer's count of batches in flight.
    fn new(
        name: Arc<str>,
        count: u32,
        options: BuilderOptions,
        batch_bytes: usize,
        sealed: &Arc<AtomicUsize>,
    ) -> Self {
        let reserve = batch_bytes
            .saturating_add(BATCH_RESERVE_SLACK)
            .min(MAX_BATCH_RESERVE);
        TopicBuf {
            name,
            partitions: (0..count)
                .map(|p| PartitionBuf {
                    reserve,
                    sealed: sealed.clone(),
                    ..PartitionBuf::new(p, options)
                })
                .collect(),
            sticky: 0,
        }
    }

    fn count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// Seals partition `p`'s open batch; moves the sticky partition on when it was that one.
    fn seal(&mut self, p: u32, identity: Option<ProducerIdentity>, timeout: Duration) -> bool {
        let sealed = self.partitions[p as usize].seal(identity, timeout);
        if sealed && p == self.sticky {
            self.sticky = (self.sticky + 1) % self.count();
        }
        sealed
    }
}

#[derive(Default)]
struct State {
    topics: HashMap<Arc<str>, TopicBuf>,
}

/// What the producer's tasks share.
struct Shared {
    client: Client,
    config: ProducerConfig,
    identity: Option<ProducerIdentity>,
    options: BuilderOptions,
    state: Mutex<State>,
    memory: Arc<Semaphore>,
    linger_wake: Notify,
    /// No more sends are accepted.
    closed: AtomicBool,
    /// Tasks stop once their work is done.
    closing: AtomicBool,
    /// The first delivery failure since the last `flush`.
    first_error: Mutex<Option<ClientError>>,
    /// Batches sealed and not yet completed, all partitions.
    sealed: Arc<AtomicUsize>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a sealed batch of `p` to its driver, starting one if none runs.
    fn kick(self: &Arc<Self>, topic: &Arc<str>, pb: &mut PartitionBuf) {
        match &pb.driver {
            Some(wake) => wake.notify_one(),
            None => {
                let wake = Arc::new(Notify::new());
                pb.driver = Some(wake.clone());
                tokio::spawn(drive(self.clone(), topic.clone(), pb.partition, wake));
            }
        }
    }

    /// Seals partition `p` of a topic and wakes its driver.
    fn seal_and_kick(self: &Arc<Self>, tb: &mut TopicBuf, p: u32) {
        if tb.seal(p, self.identity, self.config.delivery_timeout) {
            let TopicBuf {
                name, partitions, ..
            } = tb;
            self.kick(name, &mut partitions[p as usize]);
        }
    }

    /// Seals every open batch; returns the last sealed batch of every partition.
    fn seal_all(self: &Arc<Self>) -> Vec<Arc<Completion>> {
        let mut st = self.lock();
        let mut last = Vec::new();
        for tb in st.topics.values_mut() {
            for p in 0..tb.count() {
                self.seal_and_kick(tb, p);
                if let Some(c) = &tb.partitions[p as usize].last_sealed {
                    if c.result.get().is_none() {
                        last.push(c.clone());
                    }
                }
            }
        }
        last
    }

    fn finish(&self, batch: Sealed, result: Result<Option<(u64, u64)>, ClientError>) {
        if let Err(e) = &result {
            tracing::warn!(partition = batch.completion.partition, error = %e, "batch not delivered");
            if let Ok(mut first) = self.first_error.lock() {
                first.get_or_insert_with(|| e.clone());
            }
        }
        batch
            .completion
            .complete(result.map(|o| o.map(|(base, _)| base)));
        self.memory.add_permits(batch.reserved);
    }

    fn stop_tasks(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.linger_wake.notify_one();
        let st = self.lock();
        for tb in st.topics.values() {
            for pb in &tb.partitions {
                if let Some(w) = &pb.driver {
                    w.notify_one();
                }
            }
        }
    }
}

/// Seals batches whose linger expired; on close, seals everything and stops.
async fn linger(shared: Arc<Shared>) {
    loop {
        let closing = shared.closing.load(Ordering::SeqCst);
        let next = {
            let mut st = shared.lock();
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for tb in st.topics.values_mut() {
                for p in 0..tb.count() {
                    let pb = &tb.partitions[p as usize];
                    let Some(due) = pb.linger_due(shared.config.linger) else {
                        continue;
                    };
                    if closing {
                        shared.seal_and_kick(tb, p);
                    } else if pb.unacked >= shared.config.max_inflight_batches {
                        // The window is full: the driver seals the batch (grown meanwhile)
                        // as soon as an answer frees a slot.
                    } else if due <= now {
                        shared.seal_and_kick(tb, p);
                    } else {
                        next = Some(next.map_or(due, |n| n.min(due)));
                    }
                }
            }
            next
        };
        if closing {
            return;
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at.into()) => {}
                    _ = shared.linger_wake.notified() => {}
                }
            }
            None => shared.linger_wake.notified().await,
        }
    }
}

/// A batch in a partition's pipeline.
struct Slot<P> {
    batch: Sealed,
    state: SlotState<P>,
    attempts: u32,
}

enum SlotState<P> {
    /// To be sent (again).
    Unsent,
    /// Written; its answer is pending.
    Sent(P),
    /// Acknowledged while an earlier batch was being retried: complete it in turn.
    Acked(Option<(u64, u64)>),
    /// Could not even be queued (the connection could not be re-established).
    Failed(ClientError),
}

/// A partition's batches from sealed to acknowledged, in sequence order. Pure: the
/// driver task does the I/O.
struct Pipeline<P> {
    slots: VecDeque<Slot<P>>,
    max_inflight: usize,
}

impl<P> Pipeline<P> {
    fn new(max_inflight: usize) -> Self {
        Pipeline {
            slots: VecDeque::new(),
            max_inflight,
        }
    }

    fn push(&mut self, batch: Sealed) {
        self.slots.push_back(Slot {
            batch,
            state: SlotState::Unsent,
            attempts: 0,
        });
    }

    fn in_flight(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s.state, SlotState::Sent(_)))
            .count()
    }

    /// The first batch to send, if the in-flight window has room.
    fn next_to_send(&self) -> Option<usize> {
        if self.in_flight() >= self.max_inflight {
            return None;
        }
        self.slots
            .iter()
            .position(|s| matches!(s.state, SlotState::Unsent))
    }

    /// Restamps every batch not yet acknowledged with consecutive sequences from
    /// `expected`; returns the sequence after the last one.
    fn restamp_from(&mut self, expected: i32) -> i32 {
        let mut seq = expected;
        for slot in &mut self.slots {
            if matches!(slot.state, SlotState::Acked(_)) {
                continue;
            }
            slot.batch.bytes = restamp(&slot.batch.bytes, seq);
            slot.batch.base_sequence = seq;
            seq = advance(seq, slot.batch.records);
        }
        seq
    }
}

/// What to do with the oldest batch once its attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Acknowledged.
    Done(Option<(u64, u64)>),
    /// Retry the same bytes, after the later batches in flight answered.
    Retry(ClientError),
    /// The server expects another sequence: restamp from it and resend in order.
    Resequence(i32),
    /// Give up on this batch.
    Fail(ClientError),
}

fn decide(
    result: Result<Option<(u64, u64)>, ClientError>,
    idempotent: bool,
    expired: bool,
) -> Decision {
    match result {
        Ok(offsets) => Decision::Done(offsets),
        Err(e) if expired => Decision::Fail(e),
        Err(ClientError::Server {
            code: crate::protocol::ErrorCode::OutOfOrderSequence,
            detail,
            ..
        }) if idempotent => Decision::Resequence(detail as u32 as i32),
        Err(e) if e.is_retriable() => Decision::Retry(e),
        Err(e) => Decision::Fail(e),
    }
}

fn produced(response: Result<Response, ClientError>) -> Result<Option<(u64, u64)>, ClientError> {
    match response? {
        Response::Produced { offsets } => Ok(offsets),
        other => Err(ClientError::unexpected("PRODUCED", &other)),
    }
}

/// Waits for the answers of the batches in flight behind the oldest one: acknowledged
/// ones are kept to complete in order, the others are sent again.
async fn settle_later(pipe: &mut Pipeline<PendingResponse>) {
    for slot in pipe.slots.iter_mut().skip(1) {
        if let SlotState::Sent(_) = slot.state {
            let SlotState::Sent(pending) = std::mem::replace(&mut slot.state, SlotState::Unsent)
            else {
                continue;
            };
            if let Ok(offsets) = produced(pending.wait().await) {
                slot.state = SlotState::Acked(offsets);
            }
        }
    }
}

/// Sends one partition's batches in order on its lane and completes them in order.
async fn drive(shared: Arc<Shared>, topic: Arc<str>, partition: u32, wake: Arc<Notify>) {
    let client = &shared.client;
    let lane = client.lane_for(&topic, partition);
    let idempotent = shared.identity.is_some();
    let window = shared.config.max_inflight_batches;
    let mut pipe: Pipeline<PendingResponse> = Pipeline::new(window);
    let mut retries = 0u32;
    // Batches completed since the state was last locked.
    let mut completed = 0usize;
    loop {
        {
            let mut st = shared.lock();
            let Some(tb) = st.topics.get_mut(&topic) else {
                return;
            };
            let Some(pb) = tb.partitions.get_mut(partition as usize) else {
                return;
            };
            debug_assert!(
                pb.unacked >= completed,
                "more completions than sealed batches"
            );
            let was_full = pb.unacked >= window;
            pb.unacked = pb.unacked.saturating_sub(completed);
            completed = 0;
            if was_full && pb.unacked < window {
                // A slot was freed: send the open batch if its linger ran out while the
                // window was full, or hand it back to the linger task's timer.
                match pb.linger_due(shared.config.linger) {
                    Some(due) if due <= Instant::now() => {
                        tb.seal(partition, shared.identity, shared.config.delivery_timeout);
                    }
                    Some(_) => shared.linger_wake.notify_one(),
                    None => {}
                }
            }
            let pb = &mut tb.partitions[partition as usize];
            for batch in pb.handoff.drain(..) {
                pipe.push(batch);
            }
            if pipe.slots.is_empty() && shared.closing.load(Ordering::SeqCst) {
                // Under the lock: a batch sealed after this starts a new driver.
                pb.driver = None;
                return;
            }
        }
        while let Some(i) = pipe.next_to_send() {
            let slot = &mut pipe.slots[i];
            let request = Request::Produce {
                topic: topic.to_string(),
                partition,
                acks: shared.config.acks,
                expected_offset: None,
                batch: slot.batch.bytes.clone(),
            };
            match client.submit(lane, request).await {
                Ok(pending) => slot.state = SlotState::Sent(pending),
                Err(e) => {
                    // The connection could not be re-established: settle this one
                    // first rather than dialling again for each batch behind it.
                    slot.state = SlotState::Failed(e);
                    break;
                }
            }
        }
        let Some(front) = pipe.slots.front_mut() else {
            wake.notified().await;
            continue;
        };
        let result = match std::mem::replace(&mut front.state, SlotState::Unsent) {
            SlotState::Sent(pending) => produced(pending.wait().await),
            SlotState::Acked(offsets) => Ok(offsets),
            SlotState::Failed(e) => Err(e),
            SlotState::Unsent => {
                // Not reachable (the oldest batch is always sent first); never spin.
                tokio::task::yield_now().await;
                continue;
            }
        };
        let expired = Instant::now() >= front.batch.deadline;
        match decide(result, idempotent, expired) {
            Decision::Done(offsets) => {
                retries = 0;
                if let Some(slot) = pipe.slots.pop_front() {
                    completed += 1;
                    shared.sealed.fetch_sub(1, Ordering::Relaxed);
                    shared.finish(slot.batch, Ok(offsets));
                }
            }
            Decision::Fail(e) => {
                if let Some(slot) = pipe.slots.pop_front() {
                    completed += 1;
                    shared.sealed.fetch_sub(1, Ordering::Relaxed);
                    shared.finish(slot.batch, Err(e));
                }
            }
            Decision::Retry(e) => {
                front.attempts += 1;
                tracing::debug!(%topic, partition, error = %e, attempt = front.attempts, "retrying batch");
                settle_later(&mut pipe).await;
                tokio::time::sleep(client.config().backoff.delay(retries)).await;
                retries += 1;
            }
            Decision::Resequence(expected) => {
                front.attempts += 1;
                tracing::info!(%topic, partition, expected, "out-of-order sequence: resequencing batches");
                settle_later(&mut pipe).await;
                let mut st = shared.lock();
                if let Some(pb) = st
                    .topics
                    .get_mut(&topic)
                    .and_then(|t| t.partitions.get_mut(partition as usize))
                {
                    for batch in pb.handoff.drain(..) {
                        pipe.push(batch);
                    }
                    pb.next_sequence = pipe.restamp_from(expected);
                }
            }
        }
    }
}

/// Shuts the producer's tasks down once the last handle is gone.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Buffered records are still sealed and delivered; no new ones are accepted.
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.stop_tasks();
    }
}

/// A record on its way into a batch.
struct RecordRef<'a> {
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [Header<'a>],
    /// Bytes charged against the memory budget.
    cost: usize,
}

/// Batches records per partition and sends them with bounded memory, in order per
/// partition, retrying (idempotently by default) until the delivery timeout.
///
/// Cheap to clone; dropping the last clone still delivers what was buffered.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("identity", &self.handle.shared.identity)
            .field("config", &self.handle.shared.config)
            .finish()
    }
}

impl Producer {
    /// Creates a producer (asking the server for a producer id when idempotent).
    pub async fn new(client: Client, config: ProducerConfig) -> Result<Producer, ClientError> {
        let max_batch = config.validate(client.config().max_frame)?;
        let identity = if config.idempotent {
            Some(client.init_producer().await?)
        } else {
            None
        };
        // The codec is settled per topic, from its configuration, on first use.
        let options = BuilderOptions {
            max_batch_bytes: max_batch,
            ..BuilderOptions::default()
        };
        let shared = Arc::new(Shared {
            memory: Arc::new(Semaphore::new(config.max_inflight_bytes)),
            client,
            config,
            identity,
            options,
            state: Mutex::new(State::default()),
            linger_wake: Notify::new(),
            closed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            first_error: Mutex::new(None),
            sealed: Arc::new(AtomicUsize::new(0)),
        });
        tokio::spawn(linger(shared.clone()));
        Ok(Producer {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// The producer id and epoch stamped on batches (none when not idempotent).
    pub fn identity(&self) -> Option<ProducerIdentity> {
        self.handle.shared.identity
    }

    /// Batches sealed and not yet acknowledged or failed, over all partitions (the ones
    /// in flight and the ones queued behind a full window).
    pub fn batches_in_flight(&self) -> usize {
        self.handle.shared.sealed.load(Ordering::Relaxed)
    }

    /// The client this producer sends through.
    pub fn client(&self) -> &Client {
        &self.handle.shared.client
    }

    /// The partition count of `topic` (from the server on first use, with the topic's
    /// codec, then cached).
    pub async fn partitions(&self, topic: &str) -> Result<u32, ClientError> {
        let shared = &self.handle.shared;
        if let Some(tb) = shared.lock().topics.get(topic) {
            return Ok(tb.count());
        }
        let config = shared.client.topic_config(topic).await?;
        let count = config.partitions;
        if count == 0 {
            return Err(ClientError::InvalidInput(format!(
                "topic {topic:?} has no partitions"
            )));
        }
        let options = BuilderOptions {
            compression: shared.config.compression.unwrap_or(config.compression),
            ..shared.options
        };
        let mut st = shared.lock();
        let name: Arc<str> = Arc::from(topic);
        let tb = st.topics.entry(name.clone()).or_insert_with(|| {
            TopicBuf::new(
                name,
                count,
                options,
                shared.config.batch_bytes,
                &shared.sealed,
            )
        });
        Ok(tb.count())
    }

    /// Queues a record for `topic`: partitioned by `key` (as the engine does) or, without
    /// a key, sticky per batch. Waits only for room in the memory budget (and, on a
    /// topic's first use, for its partition count).
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<DeliveryFuture, ClientError> {
        self.enqueue(topic, None, None, key, Some(value), headers)
            .await
    }

    /// Queues a record for an explicit partition of `topic`.
    pub async fn send_to(
        &self,
        topic: &str,
        partition: u32,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<DeliveryFuture, ClientError> {
        self.enqueue(topic, Some(partition), None, key, Some(value), headers)
            .await
    }

    /// Queues a record for an explicit partition of `topic` with its own timestamp
    /// (microseconds since the Unix epoch; [`send_to`](Self::send_to) stamps the time of
    /// the call), as a caller that already read the clock or replays events would.
    pub async fn send_to_at(
        &self,
        topic: &str,
        partition: u32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &[u8])],
    ) -> Result<DeliveryFuture, ClientError> {
        self.enqueue(
            topic,
            Some(partition),
            Some(timestamp),
            key,
            Some(value),
            headers,
        )
        .await
    }

    async fn enqueue(
        &self,
        topic: &str,
        partition: Option<u32>,
        timestamp: Option<i64>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Result<DeliveryFuture, ClientError> {
        let shared = &self.handle.shared;
        if shared.closed.load(Ordering::SeqCst) {
            return Err(ClientError::ClientClosed);
        }
        let cost = RECORD_OVERHEAD
            + key.map_or(0, <[u8]>::len)
            + value.map_or(0, <[u8]>::len)
            + headers
                .iter()
                .map(|(k, v)| k.len() + v.len() + 8)
                .sum::<usize>();
        if cost > shared.config.max_inflight_bytes {
            return Err(ClientError::RecordTooLarge {
                size: cost,
                limit: shared.config.max_inflight_bytes,
            });
        }
        let permits = cost as u32;
        match shared.memory.try_acquire_many(permits) {
            Ok(p) => p.forget(),
            Err(TryAcquireError::NoPermits) => shared
                .memory
                .acquire_many(permits)
                .await
                .map_err(|_| ClientError::ClientClosed)?
                .forget(),
            Err(TryAcquireError::Closed) => return Err(ClientError::ClientClosed),
        }
        let mut inline = [Header {
            key: &[],
            value: None,
        }; INLINE_HEADERS];
        let heap: Vec<Header<'_>>;
        let headers: &[Header<'_>] = if headers.len() <= INLINE_HEADERS {
            for (slot, (k, v)) in inline.iter_mut().zip(headers) {
                *slot = Header {
                    key: k.as_bytes(),
                    value: Some(v),
                };
            }
            &inline[..headers.len()]
        } else {
            heap = headers
                .iter()
                .map(|(k, v)| Header {
                    key: k.as_bytes(),
                    value: Some(v),
                })
                .collect();
            &heap
        };
        let record = RecordRef {
            timestamp: timestamp.unwrap_or_else(now_micros),
            key,
            value,
            headers,
            cost,
        };
        loop {
            match self.append(topic, partition, &record) {
                Some(Ok(f)) => return Ok(f),
                Some(Err(e)) => {
                    shared.memory.add_permits(cost);
                    return Err(e);
                }
                None => {
                    // First use of the topic: learn its partition count, then append.
                    if let Err(e) = self.partitions(topic).await {
                        shared.memory.add_permits(cost);
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Appends a record under the state lock; none when the topic is not known yet.
    fn append(
        &self,
        topic: &str,
        partition: Option<u32>,
        record: &RecordRef<'_>,
    ) -> Option<Result<DeliveryFuture, ClientError>> {
        let shared = &self.handle.shared;
        let mut st = shared.lock();
        if shared.closed.load(Ordering::SeqCst) {
            return Some(Err(ClientError::ClientClosed));
        }
        let tb = st.topics.get_mut(topic)?;
        let p = match (partition, record.key) {
            (Some(p), _) if p >= tb.count() => {
                return Some(Err(ClientError::InvalidInput(format!(
                    "topic {topic:?} has {} partitions, not {}",
                    tb.count(),
                    p + 1
                ))));
            }
            (Some(p), _) => p,
            (None, Some(k)) => partition_for_key(k, tb.count()),
            (None, None) => tb.sticky,
        };
        let TopicBuf {
            name, partitions, ..
        } = &mut *tb;
        let pb = &mut partitions[p as usize];
        let appended = pb.append(
            shared.identity,
            shared.config.delivery_timeout,
            record.timestamp,
            record.key,
            record.value,
            record.headers,
            record.cost,
        );
        // A record that did not fit sealed the previous batch: hand that one over.
        if !pb.handoff.is_empty() {
            shared.kick(name, pb);
        }
        let (completion, index, opened) = match appended {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        };
        let window_open = pb.unacked < shared.config.max_inflight_batches;
        if pb.builder.encoded_len() >= shared.config.batch_bytes
            || (shared.config.linger.is_zero() && window_open)
        {
            shared.seal_and_kick(tb, p);
        } else if opened && window_open {
            shared.linger_wake.notify_one();
        }
        Some(Ok(DeliveryFuture { completion, index }))
    }

    /// Sends everything buffered and waits until every record sent before the call was
    /// acknowledged or failed; returns the first delivery failure since the last flush.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let shared = &self.handle.shared;
        for completion in shared.seal_all() {
            CompletionWait(completion).await;
        }
        match shared.first_error.lock() {
            Ok(mut first) => first.take().map_or(Ok(()), Err),
            Err(_) => Ok(()),
        }
    }

    /// Stops accepting records, delivers what was buffered (see [`Producer::flush`]),
    /// and stops the background tasks.
    pub async fn close(&self) -> Result<(), ClientError> {
        let shared = &self.handle.shared;
        shared.closed.store(true, Ordering::SeqCst);
        let result = self.flush().await;
        shared.stop_tasks();
        shared.memory.close();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_log::format::BatchView;

    fn options() -> BuilderOptions {
        BuilderOptions {
            max_batch_bytes: 4096,
            ..BuilderOptions::default()
        }
    }

    const ID: ProducerIdentity = ProducerIdentity {
        producer_id: 42,
        epoch: 3,
    };
    const T: Duration = Duration::from_secs(30);

    fn push(pb: &mut PartitionBuf, value: &[u8]) -> (Arc<Completion>, u32) {
        let (c, i, _) = pb
            .append(Some(ID), T, 1, None, Some(value), &[], value.len())
            .unwrap();
        (c, i)
    }

    #[test]
    fn sequences_advance_by_record_count_and_wrap() {
        assert_eq!(advance(0, 3), 3);
        assert_eq!(advance(i32::MAX, 1), 0);
        assert_eq!(advance(i32::MAX - 1, 3), 1);

        let mut pb = PartitionBuf::new(7, options());
        for _ in 0..3 {
            push(&mut pb, b"a");
        }
        assert!(pb.seal(Some(ID), T));
        for _ in 0..2 {
            push(&mut pb, b"b");
        }
        assert!(pb.seal(Some(ID), T));
        assert!(!pb.seal(Some(ID), T), "nothing open");
        let seqs: Vec<(i32, u32)> = pb
            .handoff
            .iter()
            .map(|s| (s.base_sequence, s.records))
            .collect();
        assert_eq!(seqs, vec![(0, 3), (3, 2)]);
        assert_eq!(pb.next_sequence, 5);
        let view = BatchView::parse(&pb.handoff[1].bytes).unwrap();
        let h = view.header();
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (42, 3, 3)
        );
        assert_eq!(h.record_count, 2);
    }

    #[test]
    fn records_share_one_completion_per_batch() {
        let mut pb = PartitionBuf::new(1, options());
        let (c0, i0) = push(&mut pb, b"x");
        let (c1, i1) = push(&mut pb, b"y");
        assert!(Arc::ptr_eq(&c0, &c1));
        assert_eq!((i0, i1), (0, 1));
        assert_eq!(pb.open.as_ref().unwrap().reserved, 2);
        pb.seal(None, T);
        assert_eq!(pb.handoff[0].base_sequence, NO_SEQUENCE);
        let f = DeliveryFuture {
            completion: c1,
            index: i1,
        };
        assert!(f.try_result().is_none());
        c0.complete(Ok(Some(100)));
        assert_eq!(
            f.try_result().unwrap().unwrap(),
            RecordMetadata {
                partition: 1,
                offset: Some(101)
            }
        );
    }

    #[test]
    fn a_record_that_does_not_fit_seals_the_batch_first() {
        let mut pb = PartitionBuf::new(0, options());
        let big = vec![7u8; 3000];
        push(&mut pb, &big);
        let (c, i) = push(&mut pb, &big);
        assert_eq!(i, 0, "the second record starts a new batch");
        assert_eq!(pb.handoff.len(), 1);
        assert!(!Arc::ptr_eq(&c, &pb.handoff[0].completion));
        let huge = vec![0u8; 5000];
        let err = pb
            .append(Some(ID), T, 1, None, Some(&huge), &[], 1)
            .unwrap_err();
        assert!(matches!(err, ClientError::RecordTooLarge { .. }), "{err:?}");
        assert_eq!(pb.handoff.len(), 2, "the open batch was sealed, not lost");
        assert!(pb.open.is_none());
    }

    #[test]
    fn sticky_partition_moves_when_its_batch_is_sealed() {
        let mut tb = TopicBuf::new(Arc::from("t"), 3, options(), 1024, &Arc::default());
        assert_eq!(tb.sticky, 0);
        push(&mut tb.partitions[0], b"v");
        assert!(tb.seal(0, None, T));
        assert_eq!(tb.sticky, 1);
        push(&mut tb.partitions[2], b"v");
        tb.seal(2, None, T);
        assert_eq!(tb.sticky, 1, "sealing another partition keeps it");
    }

    #[test]
    fn restamping_rewrites_sequence_and_crc() {
        let mut pb = PartitionBuf::new(0, options());
        push(&mut pb, b"a");
        push(&mut pb, b"b");
        pb.seal(Some(ID), T);
        let original = pb.handoff[0].bytes.clone();
        let again = restamp(&original, 77);
        let view = BatchView::parse(&again).expect("CRC recomputed");
        assert_eq!(view.header().base_sequence, 77);
        assert_eq!(view.header().record_count, 2);
        assert_eq!(original.len(), again.len());
    }

    fn sealed(records: u32, seq: i32) -> Sealed {
        let mut b = BatchBuilder::new(options());
        for _ in 0..records {
            b.push(1, None, Some(b"v"), &[]).unwrap();
        }
        b.set_producer(1, 0, seq);
        Sealed {
            bytes: b.finish().unwrap().freeze(),
            records,
            base_sequence: seq,
            completion: Completion::new(0),
            reserved: 0,
            deadline: Instant::now() + T,
        }
    }

    #[test]
    fn pipeline_keeps_a_bounded_window_in_order() {
        let mut pipe: Pipeline<()> = Pipeline::new(2);
        for i in 0..4 {
            pipe.push(sealed(1, i));
        }
        assert_eq!(pipe.next_to_send(), Some(0));
        pipe.slots[0].state = SlotState::Sent(());
        assert_eq!(pipe.next_to_send(), Some(1));
        pipe.slots[1].state = SlotState::Sent(());
        assert_eq!(pipe.next_to_send(), None, "window full");
        // The oldest failed and goes back; the next one was acknowledged meanwhile.
        pipe.slots[0].state = SlotState::Unsent;
        pipe.slots[1].state = SlotState::Acked(Some((5, 5)));
        assert_eq!(pipe.next_to_send(), Some(0));
        pipe.slots[0].state = SlotState::Sent(());
        assert_eq!(pipe.next_to_send(), Some(2));
    }

    #[test]
    fn resequencing_skips_acknowledged_batches() {
        let mut pipe: Pipeline<()> = Pipeline::new(5);
        pipe.push(sealed(2, 0));
        pipe.push(sealed(3, 2));
        pipe.push(sealed(1, 5));
        pipe.slots[1].state = SlotState::Acked(Some((10, 12)));
        let next = pipe.restamp_from(9);
        assert_eq!(next, 12);
        let seqs: Vec<i32> = pipe
            .slots
            .iter()
            .map(|s| {
                BatchView::parse(&s.batch.bytes)
                    .unwrap()
                    .header()
                    .base_sequence
            })
            .collect();
        assert_eq!(seqs, vec![9, 2, 11]);
    }

    #[test]
    fn decisions_follow_error_kinds() {
        use crate::protocol::ErrorCode;
        let server = |code, detail| {
            Err(ClientError::Server {
                code,
                detail,
                message: String::new(),
            })
        };
        assert_eq!(
            decide(Ok(Some((1, 2))), true, false),
            Decision::Done(Some((1, 2)))
        );
        assert_eq!(decide(Ok(None), true, true), Decision::Done(None));
        assert!(matches!(
            decide(server(ErrorCode::Throttled, 0), true, false),
            Decision::Retry(_)
        ));
        assert!(matches!(
            decide(Err(ClientError::Timeout), false, false),
            Decision::Retry(_)
        ));
        assert!(matches!(
            decide(server(ErrorCode::Throttled, 0), true, true),
            Decision::Fail(_)
        ));
        assert_eq!(
            decide(server(ErrorCode::OutOfOrderSequence, 17), true, false),
            Decision::Resequence(17)
        );
        assert!(matches!(
            decide(server(ErrorCode::OutOfOrderSequence, 17), false, false),
            Decision::Fail(_)
        ));
        assert!(matches!(
            decide(server(ErrorCode::UnknownTopic, 0), true, false),
            Decision::Fail(_)
        ));
    }

    #[tokio::test]
    async fn delivery_futures_wake_when_the_batch_completes() {
        let completion = Completion::new(2);
        let futures: Vec<DeliveryFuture> = (0..3)
            .map(|index| DeliveryFuture {
                completion: completion.clone(),
                index,
            })
            .collect();
        let waiter = tokio::spawn(async move {
            let mut offsets = Vec::new();
            for f in futures {
                offsets.push(f.await.unwrap().offset.unwrap());
            }
            offsets
        });
        tokio::task::yield_now().await;
        completion.complete(Ok(Some(40)));
        assert_eq!(waiter.await.unwrap(), vec![40, 41, 42]);

        let failed = Completion::new(0);
        failed.complete(Err(ClientError::Timeout));
        let f = DeliveryFuture {
            completion: failed,
            index: 0,
        };
        assert_eq!(f.await, Err(ClientError::Timeout));
    }

    #[test]
    fn config_is_checked_against_the_frame_limit() {
        let c = ProducerConfig::default();
        assert!(c.validate(crate::protocol::DEFAULT_MAX_FRAME).is_ok());
        assert!(
            c.validate(64 * 1024).is_err(),
            "256 KiB batches need bigger frames"
        );
        let too_many = ProducerConfig {
            max_inflight_batches: 6,
            ..ProducerConfig::default()
        };
        assert!(
            too_many
                .validate(crate::protocol::DEFAULT_MAX_FRAME)
                .is_err()
        );
        let plain = ProducerConfig {
            idempotent: false,
            ..too_many
        };
        assert!(plain.validate(crate::protocol::DEFAULT_MAX_FRAME).is_ok());
    }
}
