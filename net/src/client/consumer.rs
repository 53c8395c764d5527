//! A consumer: push subscriptions per assigned partition, consumer-group membership,
//! at-least-once offset commits, and retry / dead-letter topics.
//!
//! ```text
//!  feed task per partition: SUBSCRIBE ──DATA──▶ channel(1) ──▶ poll(): records from `position`
//!     (reopens from the offset after the last        │           position = last returned + 1
//!      batch it forwarded when the connection drops) │
//!                                                    ▼
//!  group task: HEARTBEAT every interval ──▶ watch(Membership) ──▶ rebalance in poll():
//!     (re-joins when the member expired)                          commit, drop lost, open new
//! ```

use super::connection::Client;
use super::error::ClientError;
use super::producer::{Producer, ProducerConfig};
use super::records::{ConsumedBatch, ConsumedRecord, RecordDecoder, next_offset, split_batches};
use crate::protocol::{Acks, ErrorCode};
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_log::engine::{AssignmentStrategy, Membership, TopicPartition};
use strata_log::{Durability, OffsetQuery};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

/// Suffix of the topic rejected records are republished to.
pub const RETRY_SUFFIX: &str = "-retry";
/// Suffix of the topic records go to once they ran out of attempts.
pub const DLQ_SUFFIX: &str = "-dlq";
/// Header: the topic a rejected record was first read from.
pub const HEADER_ORIGINAL_TOPIC: &str = "strata-original-topic";
/// Header: its partition there.
pub const HEADER_ORIGINAL_PARTITION: &str = "strata-original-partition";
/// Header: its offset there.
pub const HEADER_ORIGINAL_OFFSET: &str = "strata-original-offset";
/// Header: why it was last rejected.
pub const HEADER_REASON: &str = "strata-reason";
/// Header: how many times it was rejected so far (1 after the first rejection).
pub const HEADER_ATTEMPT: &str = "strata-attempt";

/// Where to start reading a partition that has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The first retained offset.
    #[default]
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// This offset.
    Offset(u64),
    /// The first record at or after this timestamp (µs since the Unix epoch); the high
    /// watermark when there is none.
    Timestamp(i64),
}

/// Consumer-group membership settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Group name (also where offsets are committed).
    pub name: String,
    /// How the group spreads partitions (the first member's choice wins).
    pub strategy: AssignmentStrategy,
    /// The member is expired after this long without a heartbeat.
    pub session_timeout: Duration,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
}

impl GroupConfig {
    /// A group with the default strategy (range), a 10 s session and 1 s heartbeats.
    pub fn new(name: impl Into<String>) -> Self {
        GroupConfig {
            name: name.into(),
            strategy: AssignmentStrategy::default(),
            session_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
        }
    }
}

/// Republishing of rejected records to `<topic>-retry`, then `<topic>-dlq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Rejections before a record goes to the dead-letter topic (1: straight there).
    pub max_attempts: u32,
}

/// What a [`Consumer`] reads and how it tracks progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Topics to read (all their partitions, or the group's share of them).
    pub topics: Vec<String>,
    /// Read exactly these partitions instead (with a group: offsets managed by hand,
    /// committed without membership).
    pub partitions: Option<Vec<TopicPartition>>,
    /// Join this consumer group (ignored for membership when `partitions` is set).
    pub group: Option<GroupConfig>,
    /// Where to start without a committed offset (retry topics always start earliest).
    pub start: StartFrom,
    /// Commit what previous polls returned at this interval (needs a group).
    pub auto_commit: Option<Duration>,
    /// Bytes each partition's subscription may have outstanding.
    pub credit: u32,
    /// Republish rejected records (see [`Consumer::reject`]).
    pub retry: Option<RetryPolicy>,
}

impl ConsumerConfig {
    /// Reads every partition of `topics`, from the earliest offset, auto-committing every 5 s.
    pub fn new<S: Into<String>>(topics: impl IntoIterator<Item = S>) -> Self {
        ConsumerConfig {
            topics: topics.into_iter().map(Into::into).collect(),
            partitions: None,
            group: None,
            start: StartFrom::Earliest,
            auto_commit: Some(Duration::from_secs(5)),
            credit: 4 << 20,
            retry: None,
        }
    }

    /// The same configuration in consumer group `group`.
    pub fn with_group(mut self, group: GroupConfig) -> Self {
        self.group = Some(group);
        self
    }

    /// Checks the values that need no server.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |m: &str| Err(ClientError::Config(m.to_owned()));
        match &self.partitions {
            Some(p) if p.is_empty() => return bad("partitions must not be empty when set"),
            None if self.topics.is_empty() => return bad("name at least one topic"),
            _ => {}
        }
        if self.credit == 0 {
            return bad("credit must be above zero");
        }
        if let Some(g) = &self.group {
            if g.name.is_empty() {
                return bad("the group name must not be empty");
            }
            if g.heartbeat_interval.is_zero() || g.heartbeat_interval >= g.session_timeout {
                return bad("heartbeat_interval must be positive and below session_timeout");
            }
        }
        if self.auto_commit.is_some_and(|d| d.is_zero()) {
            return bad("auto_commit interval must be positive");
        }
        if self.retry.is_some_and(|r| r.max_attempts == 0) {
            return bad("retry.max_attempts must be at least 1");
        }
        Ok(())
    }

    /// The source topics (named, or those of the explicit partitions).
    fn source_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = match &self.partitions {
            Some(parts) => parts.iter().map(|tp| tp.topic.clone()).collect(),
            None => self.topics.clone(),
        };
        topics.sort();
        topics.dedup();
        topics
    }
}

/// Where a rejected record goes, with the headers it carries there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Republish {
    topic: String,
    /// Partition in the original topic (the retry and dead-letter topics have as many).
    partition: u32,
    attempt: u32,
    headers: Vec<(String, Vec<u8>)>,
}

fn header_str<'a>(record: &'a ConsumedRecord, name: &str) -> Option<&'a str> {
    record
        .header(name)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Decides where a rejected record goes: `<original>-retry` with `strata-attempt`
/// incremented, or `<original>-dlq` once `max_attempts` rejections were reached.
fn plan_reject(record: &ConsumedRecord, reason: &str, max_attempts: u32) -> Republish {
    let from_retry = record.topic.ends_with(RETRY_SUFFIX);
    let previous = if from_retry {
        header_str(record, HEADER_ATTEMPT)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(1)
    } else {
        0
    };
    let attempt = previous.saturating_add(1);
    let original_topic = if from_retry {
        header_str(record, HEADER_ORIGINAL_TOPIC)
            .map(str::to_owned)
            .unwrap_or_else(|| record.topic[..record.topic.len() - RETRY_SUFFIX.len()].to_owned())
    } else {
        record.topic.to_string()
    };
    let original = |name: &str, own: u64| {
        if from_retry {
            header_str(record, name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(own)
        } else {
            own
        }
    };
    let partition = original(HEADER_ORIGINAL_PARTITION, u64::from(record.partition)) as u32;
    let offset = original(HEADER_ORIGINAL_OFFSET, record.offset);
    let topic = if attempt >= max_attempts {
        format!("{original_topic}{DLQ_SUFFIX}")
    } else {
        format!("{original_topic}{RETRY_SUFFIX}")
    };
    let ours = [
        HEADER_ORIGINAL_TOPIC,
        HEADER_ORIGINAL_PARTITION,
        HEADER_ORIGINAL_OFFSET,
        HEADER_REASON,
        HEADER_ATTEMPT,
    ];
    let mut headers: Vec<(String, Vec<u8>)> = record
        .headers
        .iter()
        .filter(|(k, _)| !ours.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.to_vec()))
        .collect();
    headers.push((HEADER_ORIGINAL_TOPIC.into(), original_topic.into_bytes()));
    headers.push((
        HEADER_ORIGINAL_PARTITION.into(),
        partition.to_string().into_bytes(),
    ));
    headers.push((
        HEADER_ORIGINAL_OFFSET.into(),
        offset.to_string().into_bytes(),
    ));
    headers.push((HEADER_REASON.into(), reason.as_bytes().to_vec()));
    headers.push((HEADER_ATTEMPT.into(), attempt.to_string().into_bytes()));
    Republish {
        topic,
        partition,
        attempt,
        headers,
    }
}

/// What a partition's feed task hands to `poll`.
enum FeedEvent {
    /// Pushed batches, contiguous with the previous ones.
    Data(Bytes),
    /// The subscription failed for good (or the server stayed unreachable).
    Failed(ClientError),
}

/// A running feed: its channel and task (aborted on drop).
struct Feed {
    rx: mpsc::Receiver<FeedEvent>,
    task: JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Subscribes to a partition and forwards its batches; on a lost connection it
/// re-subscribes from the offset after the last batch it forwarded (nothing skipped).
async fn feed(
    client: Client,
    topic: Arc<str>,
    partition: u32,
    mut offset: u64,
    credit: u32,
    tx: mpsc::Sender<FeedEvent>,
    ready: Arc<Notify>,
) {
    let backoff = client.config().backoff;
    let mut failing_since: Option<Instant> = None;
    let mut attempt = 0u32;
    loop {
        let err = match client.subscribe(&topic, partition, offset, credit).await {
            Ok(mut sub) => loop {
                match sub.next().await {
                    Some(Ok(data)) => {
                        failing_since = None;
                        attempt = 0;
                        offset = next_offset(&data.batches, offset);
                        if tx.send(FeedEvent::Data(data.batches)).await.is_err() {
                            return;
                        }
                        ready.notify_one();
                    }
                    Some(Err(e)) => break e,
                    None => {
                        break ClientError::Closed {
                            code: None,
                            reason: "the server ended the subscription".into(),
                        };
                    }
                }
            },
            Err(e) => e,
        };
        if tx.is_closed() {
            return;
        }
        let since = *failing_since.get_or_insert_with(Instant::now);
        if !err.is_retriable() || since.elapsed() >= backoff.give_up {
            let _ = tx.send(FeedEvent::Failed(err)).await;
            ready.notify_one();
            return;
        }
        tracing::debug!(%topic, partition, offset, error = %err, "resubscribing");
        tokio::time::sleep(backoff.delay(attempt)).await;
        attempt += 1;
    }
}

/// One assigned partition.
struct Cursor {
    topic: Arc<str>,
    partition: u32,
    /// Next offset to hand out (everything before it was returned by a poll).
    position: u64,
    /// Last committed position.
    committed: Option<u64>,
    feed: Option<Feed>,
}

/// The group membership as last seen by the heartbeat task.
#[derive(Debug, Clone)]
struct GroupView {
    membership: Membership,
    error: Option<ClientError>,
}

/// Heartbeats; re-joins when the member expired; publishes membership changes (and,
/// when kicked, the membership even if unchanged).
async fn heartbeat(
    client: Client,
    group: GroupConfig,
    topics: Vec<String>,
    mut member: Membership,
    tx: watch::Sender<GroupView>,
    kick: Arc<Notify>,
) {
    // A kick asks for the membership to be published even if unchanged; it stays
    // pending until a heartbeat succeeds.
    let mut kicked = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(group.heartbeat_interval) => {}
            _ = kick.notified() => kicked = true,
        }
        if tx.is_closed() {
            return;
        }
        let result = match client.heartbeat(&group.name, &member.member_id).await {
            Err(ClientError::Server {
                code: ErrorCode::UnknownMember,
                ..
            }) => {
                tracing::info!(group = %group.name, member = %member.member_id, "member expired: joining again");
                client
                    .join_group(
                        &group.name,
                        None,
                        group.strategy,
                        group.session_timeout,
                        &topics,
                    )
                    .await
            }
            other => other,
        };
        match result {
            Ok(m) => {
                if std::mem::take(&mut kicked) || m != member {
                    member = m.clone();
                    tx.send_replace(GroupView {
                        membership: m,
                        error: None,
                    });
                }
            }
            Err(e) if e.is_retriable() => {
                tracing::debug!(group = %group.name, error = %e, "heartbeat failed; retrying");
            }
            Err(e) => {
                tracing::warn!(group = %group.name, error = %e, "heartbeat failed");
                tx.send_replace(GroupView {
                    membership: member.clone(),
                    error: Some(e),
                });
            }
        }
    }
}

/// A consumer's group state.
struct GroupRuntime {
    config: GroupConfig,
    /// Offsets managed by hand (explicit partitions): commits carry no member.
    manual: bool,
    /// The membership applied to the cursors.
    member: Option<(String, u32)>,
    view: Option<watch::Receiver<GroupView>>,
    /// A change was seen by `changed()` while waiting, not applied yet.
    view_dirty: bool,
    kick: Arc<Notify>,
    task: Option<JoinHandle<()>>,
}

impl Drop for GroupRuntime {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Reads assigned partitions through push subscriptions; at-least-once with
/// [`Consumer::commit`] after processing.
///
/// Each assigned partition holds one stream of the client's connection (the server
/// allows 256 per connection by default, 4 of them are request lanes). Auto-commit and
/// rebalances commit the positions returned by earlier polls: call `poll` again only
/// once the records of the previous one are processed.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    cursors: Vec<Cursor>,
    ready: Arc<Notify>,
    group: Option<GroupRuntime>,
    retry: Option<(Producer, u32)>,
    decoder: RecordDecoder,
    next_scan: usize,
    last_commit: Instant,
    names: HashMap<String, Arc<str>>,
    /// An assignment from a rebalance not fully applied yet (an error interrupted it).
    pending_assignment: Option<Vec<TopicPartition>>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("assignment", &self.assignment())
            .field("group", &self.group.as_ref().map(|g| &g.config.name))
            .finish()
    }
}

/// Where polled data goes: records, or whole batches.
enum Sink<'a> {
    Records(&'a mut Vec<ConsumedRecord>),
    Batches(&'a mut Vec<ConsumedBatch>),
}

impl Consumer {
    /// Creates the consumer: prepares the retry topics, joins the group (or takes the
    /// explicit or all partitions), and subscribes from the committed offsets or `start`.
    pub async fn new(client: Client, config: ConsumerConfig) -> Result<Consumer, ClientError> {
        config.validate()?;
        let sources = config.source_topics();
        let mut read_topics = sources.clone();
        let retry = match config.retry {
            Some(policy) => {
                // Republish with the strongest acks every source topic's durability allows
                // (up to Written): `reject` returns once the record is stored that far.
                let mut acks = Acks::Written;
                for topic in &sources {
                    let durability = ensure_side_topics(&client, topic).await?;
                    acks = acks.min(Acks::allowed_by(durability));
                    read_topics.push(format!("{topic}{RETRY_SUFFIX}"));
                }
                let producer = Producer::new(
                    client.clone(),
                    ProducerConfig {
                        acks,
                        ..ProducerConfig::default()
                    },
                )
                .await?;
                Some((producer, policy.max_attempts))
            }
            None => None,
        };
        let mut consumer = Consumer {
            client: client.clone(),
            config: config.clone(),
            cursors: Vec::new(),
            ready: Arc::new(Notify::new()),
            group: None,
            retry,
            decoder: RecordDecoder::new(),
            next_scan: 0,
            last_commit: Instant::now(),
            names: HashMap::new(),
            pending_assignment: None,
        };
        let assignment = match (&config.group, &config.partitions) {
            (Some(group), None) => {
                let membership = client
                    .join_group(
                        &group.name,
                        None,
                        group.strategy,
                        group.session_timeout,
                        &read_topics,
                    )
                    .await?;
                let (tx, rx) = watch::channel(GroupView {
                    membership: membership.clone(),
                    error: None,
                });
                let kick = Arc::new(Notify::new());
                let task = tokio::spawn(heartbeat(
                    client.clone(),
                    group.clone(),
                    read_topics.clone(),
                    membership.clone(),
                    tx,
                    kick.clone(),
                ));
                consumer.group = Some(GroupRuntime {
                    config: group.clone(),
                    manual: false,
                    member: Some((membership.member_id.clone(), membership.generation)),
                    view: Some(rx),
                    view_dirty: false,
                    kick,
                    task: Some(task),
                });
                membership.assignment
            }
            (group, Some(parts)) => {
                consumer.group = group.as_ref().map(|g| GroupRuntime {
                    config: g.clone(),
                    manual: true,
                    member: None,
                    view: None,
                    view_dirty: false,
                    kick: Arc::new(Notify::new()),
                    task: None,
                });
                let mut all = parts.clone();
                if config.retry.is_some() {
                    all.extend(parts.iter().map(|tp| TopicPartition {
                        topic: format!("{}{RETRY_SUFFIX}", tp.topic),
                        partition: tp.partition,
                    }));
                }
                all
            }
            (None, None) => {
                let mut all = Vec::new();
                for topic in &read_topics {
                    let count = client.partition_count(topic).await?;
                    all.extend((0..count).map(|partition| TopicPartition {
                        topic: topic.clone(),
                        partition,
                    }));
                }
                all
            }
        };
        consumer.assign(assignment).await?;
        Ok(consumer)
    }

    /// The client this consumer reads through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The partitions currently assigned.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.cursors
            .iter()
            .map(|c| TopicPartition {
                topic: c.topic.to_string(),
                partition: c.partition,
            })
            .collect()
    }

    /// The next offset `poll` will return for a partition, if assigned.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.cursor(topic, partition)
            .map(|c| self.cursors[c].position)
    }

    /// The member id and generation in use, when in a group with membership.
    pub fn membership(&self) -> Option<(&str, u32)> {
        self.group
            .as_ref()
            .and_then(|g| g.member.as_ref())
            .map(|(m, g)| (m.as_str(), *g))
    }

    fn cursor(&self, topic: &str, partition: u32) -> Option<usize> {
        self.cursors
            .iter()
            .position(|c| &*c.topic == topic && c.partition == partition)
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(a) = self.names.get(name) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(name);
        self.names.insert(name.to_owned(), a.clone());
        a
    }

    /// Resolves `start` to an offset of a partition.
    async fn resolve(
        &self,
        topic: &str,
        partition: u32,
        start: StartFrom,
    ) -> Result<u64, ClientError> {
        let query = match start {
            StartFrom::Offset(o) => return Ok(o),
            StartFrom::Earliest => OffsetQuery::Earliest,
            StartFrom::Latest => OffsetQuery::Latest,
            StartFrom::Timestamp(t) => OffsetQuery::Timestamp(t),
        };
        match self.client.list_offset(topic, partition, query).await? {
            Some(o) => Ok(o),
            None => Ok(self
                .client
                .list_offset(topic, partition, OffsetQuery::Latest)
                .await?
                .unwrap_or(0)),
        }
    }

    fn start_feed(&mut self, i: usize) {
        let c = &mut self.cursors[i];
        c.feed = None;
        let (tx, rx) = mpsc::channel(1);
        let task = tokio::spawn(feed(
            self.client.clone(),
            c.topic.clone(),
            c.partition,
            c.position,
            self.config.credit,
            tx,
            self.ready.clone(),
        ));
        c.feed = Some(Feed { rx, task });
    }

    /// Makes `assignment` the set of assigned partitions: drops the others' feeds and
    /// subscribes the new ones from their committed offset or `start`.
    async fn assign(&mut self, assignment: Vec<TopicPartition>) -> Result<(), ClientError> {
        let wanted: BTreeSet<(&str, u32)> = assignment
            .iter()
            .map(|tp| (tp.topic.as_str(), tp.partition))
            .collect();
        self.cursors
            .retain(|c| wanted.contains(&(&*c.topic, c.partition)));
        let added: Vec<TopicPartition> = wanted
            .iter()
            .filter(|(t, p)| {
                !self
                    .cursors
                    .iter()
                    .any(|c| &*c.topic == *t && c.partition == *p)
            })
            .map(|(t, p)| TopicPartition {
                topic: (*t).to_owned(),
                partition: *p,
            })
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        let committed = match &self.group {
            Some(g) => {
                self.client
                    .fetch_offsets(&g.config.name, added.clone())
                    .await?
            }
            None => vec![None; added.len()],
        };
        for (tp, committed) in added.into_iter().zip(committed) {
            // Records in a retry topic are pending work: read those from the start.
            let start = if self.config.retry.is_some() && tp.topic.ends_with(RETRY_SUFFIX) {
                StartFrom::Earliest
            } else {
                self.config.start
            };
            let position = match committed {
                Some(o) => o,
                None => self.resolve(&tp.topic, tp.partition, start).await?,
            };
            let topic = self.intern(&tp.topic);
            self.cursors.push(Cursor {
                topic,
                partition: tp.partition,
                position,
                committed,
                feed: None,
            });
            let i = self.cursors.len() - 1;
            self.start_feed(i);
        }
        tracing::debug!(assignment = ?self.assignment(), "assignment changed");
        Ok(())
    }

    /// Applies a membership the heartbeat task published: commits what was processed
    /// (under the new generation: the old one is fenced), then reassigns.
    async fn apply_membership(&mut self, view: GroupView) -> Result<(), ClientError> {
        let Some(group) = self.group.as_mut() else {
            return Ok(());
        };
        if let Some(e) = view.error {
            return Err(e);
        }
        let m = view.membership;
        let same_member = group
            .member
            .as_ref()
            .is_some_and(|(id, g)| *id == m.member_id && *g == m.generation);
        if same_member {
            return Ok(());
        }
        tracing::info!(group = %group.config.name, generation = m.generation, partitions = m.assignment.len(), "rebalance");
        group.member = Some((m.member_id.clone(), m.generation));
        if let Err(e) = self.commit_positions().await {
            tracing::warn!(error = %e, "commit before rebalancing failed");
        }
        self.pending_assignment = Some(m.assignment);
        self.apply_pending_assignment().await
    }

    /// Applies the assignment of the last rebalance (again, if an error interrupted it).
    async fn apply_pending_assignment(&mut self) -> Result<(), ClientError> {
        if let Some(assignment) = self.pending_assignment.clone() {
            self.assign(assignment).await?;
            self.pending_assignment = None;
        }
        Ok(())
    }

    /// Applies a pending membership change, if any.
    async fn check_group(&mut self) -> Result<(), ClientError> {
        let Some(group) = self.group.as_mut() else {
            return Ok(());
        };
        let dirty = std::mem::take(&mut group.view_dirty);
        let view = match group.view.as_mut() {
            Some(rx) if dirty || rx.has_changed().unwrap_or(false) => {
                rx.borrow_and_update().clone()
            }
            _ => return Ok(()),
        };
        self.apply_membership(view).await
    }

    /// Auto-commit, membership changes, and feeds to restart.
    async fn maintain(&mut self) -> Result<(), ClientError> {
        self.check_group().await?;
        self.apply_pending_assignment().await?;
        if let Some(interval) = self.config.auto_commit {
            if self.group.is_some() && self.last_commit.elapsed() >= interval {
                self.last_commit = Instant::now();
                if let Err(e) = self.commit().await {
                    tracing::warn!(error = %e, "auto-commit failed");
                }
            }
        }
        for i in 0..self.cursors.len() {
            if self.cursors[i].feed.is_none() {
                self.start_feed(i);
            }
        }
        Ok(())
    }

    /// Takes at most one ready item per partition into `sink`; returns feed failures.
    fn take_ready(
        &mut self,
        sink: &mut Sink<'_>,
    ) -> Result<Vec<(usize, ClientError)>, ClientError> {
        let n = self.cursors.len();
        let mut failures = Vec::new();
        for k in 0..n {
            let i = (self.next_scan + k) % n;
            let c = &mut self.cursors[i];
            let Some(feed) = c.feed.as_mut() else {
                continue;
            };
            match feed.rx.try_recv() {
                Ok(FeedEvent::Data(batches)) => {
                    let decoded = match sink {
                        Sink::Records(out) => {
                            self.decoder
                                .decode(&c.topic, c.partition, &batches, c.position, out)
                        }
                        Sink::Batches(out) => {
                            let from = c.position;
                            split_batches(&batches, from, |batch, _| {
                                out.push(ConsumedBatch {
                                    topic: c.topic.clone(),
                                    partition: c.partition,
                                    batch,
                                    from_offset: from,
                                })
                            })
                        }
                    };
                    match decoded {
                        Ok(next) => c.position = next,
                        Err(e) => {
                            // Re-read from the position on the next poll; never skip.
                            c.feed = None;
                            self.next_scan = (i + 1) % n;
                            return Err(e.into());
                        }
                    }
                }
                Ok(FeedEvent::Failed(e)) => {
                    c.feed = None;
                    failures.push((i, e));
                }
                Err(_) => {}
            }
        }
        if n > 0 {
            self.next_scan = (self.next_scan + 1) % n;
        }
        Ok(failures)
    }

    /// Handles failed feeds: an offset out of range resets the position (to the
    /// earliest offset when below it, else to the high watermark); other failures are
    /// returned (the feed restarts on the next poll).
    async fn handle_failures(
        &mut self,
        failures: Vec<(usize, ClientError)>,
    ) -> Result<(), ClientError> {
        let mut first = None;
        for (i, e) in failures {
            let (topic, partition, position) = {
                let c = &self.cursors[i];
                (c.topic.clone(), c.partition, c.position)
            };
            if let ClientError::Server {
                code: ErrorCode::OffsetOutOfRange,
                detail,
                ..
            } = e
            {
                let earliest = self
                    .client
                    .list_offset(&topic, partition, OffsetQuery::Earliest)
                    .await?
                    .unwrap_or(0);
                let reset = if position < earliest {
                    earliest
                } else {
                    detail
                };
                tracing::warn!(%topic, partition, position, reset, "offset out of range: resetting");
                self.cursors[i].position = reset;
                self.start_feed(i);
            } else {
                tracing::warn!(%topic, partition, error = %e, "subscription failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Waits for data, a membership change, or the deadline; false at the deadline.
    async fn wait(&mut self, deadline: Instant) -> bool {
        let ready = self.ready.clone();
        let group = self.group.as_mut().filter(|g| g.view.is_some());
        match group {
            Some(g) => {
                let rx = g.view.as_mut().expect("filtered");
                tokio::select! {
                    _ = ready.notified() => true,
                    changed = rx.changed() => {
                        g.view_dirty = true;
                        if changed.is_err() {
                            // The heartbeat task is gone (never while this consumer
                            // lives); stop watching rather than spin.
                            g.view = None;
                        }
                        true
                    }
                    _ = tokio::time::sleep_until(deadline.into()) => false,
                }
            }
            None => tokio::select! {
                _ = ready.notified() => true,
                _ = tokio::time::sleep_until(deadline.into()) => false,
            },
        }
    }

    async fn poll_into(
        &mut self,
        timeout: Duration,
        sink: &mut Sink<'_>,
    ) -> Result<(), ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.maintain().await?;
            let failures = self.take_ready(sink)?;
            self.handle_failures(failures).await?;
            let got = match sink {
                Sink::Records(out) => !out.is_empty(),
                Sink::Batches(out) => !out.is_empty(),
            };
            if got || !self.wait(deadline).await {
                return Ok(());
            }
        }
    }

    /// Returns the records that arrived (waiting up to `timeout` for some); each is
    /// returned once, in offset order per partition.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumedRecord>, ClientError> {
        let mut out = Vec::new();
        self.poll_into(timeout, &mut Sink::Records(&mut out))
            .await?;
        Ok(out)
    }

    /// Like [`Consumer::poll`] but returns whole batches without decoding records (the
    /// first batch of a partition may hold records below `from_offset`: skip them).
    pub async fn poll_batches(
        &mut self,
        timeout: Duration,
    ) -> Result<Vec<ConsumedBatch>, ClientError> {
        let mut out = Vec::new();
        self.poll_into(timeout, &mut Sink::Batches(&mut out))
            .await?;
        Ok(out)
    }

    /// Commits the positions changed since the last commit (member id and generation).
    async fn commit_positions(&mut self) -> Result<(), ClientError> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        let changed: Vec<usize> = (0..self.cursors.len())
            .filter(|&i| self.cursors[i].committed != Some(self.cursors[i].position))
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let offsets = changed
            .iter()
            .map(|&i| {
                let c = &self.cursors[i];
                (
                    TopicPartition {
                        topic: c.topic.to_string(),
                        partition: c.partition,
                    },
                    c.position,
                )
            })
            .collect();
        let member = if group.manual {
            None
        } else {
            group.member.as_ref().map(|(m, g)| (m.as_str(), *g))
        };
        self.client
            .commit_offsets(&group.config.name, member, offsets)
            .await?;
        for i in changed {
            let c = &mut self.cursors[i];
            c.committed = Some(c.position);
        }
        Ok(())
    }

    /// Commits the positions of everything returned so far (call it after processing).
    ///
    /// A stale generation or an expired member makes the consumer catch up with the
    /// group (rebalancing if needed) and commit again.
    pub async fn commit(&mut self) -> Result<(), ClientError> {
        let Some(group) = &self.group else {
            return Err(ClientError::InvalidInput(
                "committing offsets needs a consumer group".into(),
            ));
        };
        let session = group.config.session_timeout;
        let has_membership = group.view.is_some();
        match self.commit_positions().await {
            Err(ClientError::Server {
                code: ErrorCode::StaleGeneration | ErrorCode::UnknownMember,
                ..
            }) if has_membership => {
                let g = self.group.as_mut().expect("checked above");
                g.kick.notify_one();
                let rx = g.view.as_mut().expect("checked above");
                if tokio::time::timeout(session, rx.changed()).await.is_ok() {
                    let view = rx.borrow_and_update().clone();
                    self.apply_membership(view).await?;
                }
                self.commit_positions().await
            }
            other => other,
        }
    }

    /// Moves a partition's position (the next poll returns records from there).
    pub async fn seek(
        &mut self,
        topic: &str,
        partition: u32,
        to: StartFrom,
    ) -> Result<(), ClientError> {
        let Some(i) = self.cursor(topic, partition) else {
            return Err(ClientError::InvalidInput(format!(
                "{topic}/{partition} is not assigned to this consumer"
            )));
        };
        let position = self.resolve(topic, partition, to).await?;
        self.cursors[i].position = position;
        self.start_feed(i);
        Ok(())
    }

    /// Republishes a record that could not be processed: to `<topic>-retry` with the
    /// `strata-*` headers (attempt incremented when it came from the retry topic), or to
    /// `<topic>-dlq` once `max_attempts` rejections were reached. Returns once the
    /// record is stored, so committing afterwards cannot lose it.
    pub async fn reject(
        &mut self,
        record: &ConsumedRecord,
        reason: &str,
    ) -> Result<(), ClientError> {
        let Some((producer, max_attempts)) = &self.retry else {
            return Err(ClientError::InvalidInput(
                "reject needs a retry policy in the consumer configuration".into(),
            ));
        };
        let plan = plan_reject(record, reason, *max_attempts);
        let partitions = producer.partitions(&plan.topic).await?;
        let headers: Vec<(&str, &[u8])> = plan
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        tracing::debug!(topic = %plan.topic, attempt = plan.attempt, "rejecting record");
        producer
            .send_to(
                &plan.topic,
                plan.partition % partitions,
                record.key.as_deref(),
                &record.value,
                &headers,
            )
            .await?
            .await?;
        Ok(())
    }

    /// Commits (with auto-commit), leaves the group, and stops every subscription.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let mut result = Ok(());
        if self.config.auto_commit.is_some() && self.group.is_some() {
            result = self.commit().await;
        }
        self.cursors.clear();
        if let Some(mut group) = self.group.take() {
            if let Some(task) = group.task.take() {
                task.abort();
            }
            if let (false, Some((member, _))) = (group.manual, &group.member) {
                let left = self.client.leave_group(&group.config.name, member).await;
                if result.is_ok() {
                    result = left;
                }
            }
        }
        if let Some((producer, _)) = self.retry.take() {
            let closed = producer.close().await;
            if result.is_ok() {
                result = closed;
            }
        }
        result
    }
}

/// Creates `<topic>-retry` and `<topic>-dlq` like `topic` unless they exist; returns
/// the source topic's durability.
async fn ensure_side_topics(client: &Client, topic: &str) -> Result<Durability, ClientError> {
    let meta = client.metadata(&[topic]).await?;
    let Some(source) = meta.topics.into_iter().find(|t| t.name == topic) else {
        return Err(ClientError::Server {
            code: ErrorCode::UnknownTopic,
            detail: 0,
            message: format!("unknown topic {topic:?}"),
        });
    };
    for suffix in [RETRY_SUFFIX, DLQ_SUFFIX] {
        let name = format!("{topic}{suffix}");
        match client.partition_count(&name).await {
            Ok(_) => {}
            Err(ClientError::Server {
                code: ErrorCode::UnknownTopic,
                ..
            }) => {
                client.ensure_topic(&name, source.config.clone()).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(source.config.durability)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &str, headers: &[(&str, &str)]) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from(topic),
            partition: 3,
            offset: 41,
            timestamp: 0,
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::from_static(b"v"),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Bytes::copy_from_slice(v.as_bytes())))
                .collect(),
        }
    }

    fn header<'a>(plan: &'a Republish, name: &str) -> &'a str {
        let v = &plan.headers.iter().find(|(k, _)| k == name).unwrap().1;
        std::str::from_utf8(v).unwrap()
    }

    #[test]
    fn first_rejection_goes_to_the_retry_topic() {
        let plan = plan_reject(&record("orders", &[("trace", "abc")]), "bad json", 3);
        assert_eq!(plan.topic, "orders-retry");
        assert_eq!((plan.partition, plan.attempt), (3, 1));
        assert_eq!(header(&plan, "trace"), "abc", "user headers are kept");
        assert_eq!(header(&plan, HEADER_ORIGINAL_TOPIC), "orders");
        assert_eq!(header(&plan, HEADER_ORIGINAL_PARTITION), "3");
        assert_eq!(header(&plan, HEADER_ORIGINAL_OFFSET), "41");
        assert_eq!(header(&plan, HEADER_REASON), "bad json");
        assert_eq!(header(&plan, HEADER_ATTEMPT), "1");
    }

    #[test]
    fn rejections_from_the_retry_topic_count_up_to_the_dead_letter_topic() {
        let from_retry = record(
            "orders-retry",
            &[
                (HEADER_ORIGINAL_TOPIC, "orders"),
                (HEADER_ORIGINAL_PARTITION, "5"),
                (HEADER_ORIGINAL_OFFSET, "7"),
                (HEADER_REASON, "old"),
                (HEADER_ATTEMPT, "1"),
            ],
        );
        let plan = plan_reject(&from_retry, "still bad", 3);
        assert_eq!(plan.topic, "orders-retry");
        assert_eq!((plan.partition, plan.attempt), (5, 2));
        assert_eq!(header(&plan, HEADER_ORIGINAL_OFFSET), "7");
        assert_eq!(header(&plan, HEADER_REASON), "still bad");
        assert_eq!(
            plan.headers
                .iter()
                .filter(|(k, _)| k == HEADER_ATTEMPT)
                .count(),
            1,
            "old strata headers are replaced"
        );
        let mut again = from_retry.clone();
        again.headers.retain(|(k, _)| k != HEADER_ATTEMPT);
        again
            .headers
            .push((HEADER_ATTEMPT.into(), Bytes::from_static(b"2")));
        let plan = plan_reject(&again, "x", 3);
        assert_eq!((plan.topic.as_str(), plan.attempt), ("orders-dlq", 3));
    }

    #[test]
    fn one_attempt_goes_straight_to_the_dead_letter_topic() {
        let plan = plan_reject(&record("t", &[]), "no", 1);
        assert_eq!(plan.topic, "t-dlq");
        // A record in a retry topic without headers still finds its origin.
        let plan = plan_reject(&record("t-retry", &[]), "no", 5);
        assert_eq!(
            (plan.topic.as_str(), plan.attempt, plan.partition),
            ("t-retry", 2, 3)
        );
        assert_eq!(header(&plan, HEADER_ORIGINAL_TOPIC), "t");
    }

    #[test]
    fn config_validation() {
        let mut c = ConsumerConfig::new(["a"]);
        assert!(c.validate().is_ok());
        c.credit = 0;
        assert!(c.validate().is_err());
        let mut c = ConsumerConfig::new(Vec::<String>::new());
        assert!(c.validate().is_err());
        c.partitions = Some(vec![TopicPartition {
            topic: "a".into(),
            partition: 0,
        }]);
        assert!(c.validate().is_ok());
        assert_eq!(c.source_topics(), vec!["a".to_string()]);
        let mut g = GroupConfig::new("g");
        g.heartbeat_interval = g.session_timeout;
        assert!(ConsumerConfig::new(["a"]).with_group(g).validate().is_err());
        let mut r = ConsumerConfig::new(["a"]);
        r.retry = Some(RetryPolicy { max_attempts: 0 });
        assert!(r.validate().is_err());
    }
}
