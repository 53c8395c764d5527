//! One consumer task: its own connection and [`Consumer`] (an explicit share of the
//! partitions, or a consumer-group member that leaves and rejoins when churned), feeding
//! every record to its partition's verifier and its latency to the statistics.

use super::error::Error;
use super::shared::Shared;
use crate::clock::RunClock;
use crate::payload;
use crate::stats::Recorder;
use crate::verify::{Delivery, Outcome};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use strata_log::engine::TopicPartition;
use strata_log::format::BatchView;
use strata_net::client::{Client, ConsumedBatch, Consumer, ConsumerConfig, GroupConfig, StartFrom};
use tokio::sync::watch;

/// How long one poll waits for data before the task checks whether to stop.
const POLL_TIMEOUT: Duration = Duration::from_millis(20);

/// Which partitions a consumer reads.
#[derive(Debug, Clone)]
pub enum Assignment {
    /// Exactly these.
    Explicit(Vec<TopicPartition>),
    /// Whatever group `name` assigns; leaves and rejoins on churn ticks naming it.
    Group {
        /// Group name.
        name: String,
        /// How long a member stays out when churned.
        pause: Duration,
    },
}

/// What one consumer task does.
#[derive(Debug)]
pub struct ConsumePlan {
    /// Consumer index.
    pub index: u32,
    /// Consumers in all (for the churn rotation).
    pub consumers: u32,
    /// The run clock.
    pub clock: RunClock,
    /// Whether deliveries carry an end-to-end latency (not for a backlog).
    pub latency: bool,
    /// Partitions or group.
    pub assignment: Assignment,
}

/// What one consumer task did.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsumeOutcome {
    /// Records delivered (re-reads included).
    pub deliveries: u64,
    /// Times it left and rejoined its group.
    pub rejoins: u64,
}

/// Creates the consumer of `plan` on `client`.
pub async fn open(client: Client, shared: &Shared, plan: &ConsumePlan) -> Result<Consumer, Error> {
    let mut config = ConsumerConfig::new(shared.topics.iter().cloned());
    config.start = StartFrom::Earliest;
    match &plan.assignment {
        Assignment::Explicit(parts) => {
            config.partitions = Some(parts.clone());
            config.auto_commit = None;
        }
        Assignment::Group { name, .. } => {
            let mut group = GroupConfig::new(name.clone());
            group.session_timeout = Duration::from_secs(6);
            group.heartbeat_interval = Duration::from_millis(300);
            config = config.with_group(group);
            config.auto_commit = Some(Duration::from_millis(250));
        }
    }
    Consumer::new(client, config)
        .await
        .map_err(|e| Error::client(format!("consumer {}: subscribing", plan.index), e))
}

/// Runs one consumer until `stop` is set.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    shared: Arc<Shared>,
    client: Client,
    mut consumer: Consumer,
    plan: ConsumePlan,
    mut recorder: Recorder,
    stop: Arc<AtomicBool>,
    mut churn: Option<watch::Receiver<u64>>,
) -> Result<ConsumeOutcome, Error> {
    let mut outcome = ConsumeOutcome::default();
    let mut scratch = Vec::new();
    // However this task ends, producers must not keep waiting for it to consume.
    let _release = ReleasePace(&shared);
    while !stop.load(Ordering::Acquire) {
        if let Some(rx) = churn.as_mut() {
            if rx.has_changed().unwrap_or(false) {
                let tick = *rx.borrow_and_update();
                let me =
                    tick > 0 && (tick - 1) % u64::from(plan.consumers) == u64::from(plan.index);
                if let (true, Assignment::Group { pause, .. }) = (me, &plan.assignment) {
                    consumer.close().await.map_err(|e| {
                        Error::client(format!("consumer {}: leaving", plan.index), e)
                    })?;
                    recorder.advance(plan.clock.now_ns());
                    tokio::time::sleep(*pause).await;
                    consumer = open(client.clone(), &shared, &plan).await?;
                    outcome.rejoins += 1;
                }
            }
        }
        let batches = consumer
            .poll_batches(POLL_TIMEOUT)
            .await
            .map_err(|e| Error::client(format!("consumer {}: polling", plan.index), e))?;
        let now = plan.clock.now_ns();
        let mut fresh = 0;
        for b in &batches {
            let taken = process(&shared, b, now, plan.latency, &mut recorder, &mut scratch)?;
            outcome.deliveries += taken.records;
            fresh += taken.fresh;
        }
        shared.pace.consumed(fresh);
        recorder.advance(now);
    }
    let _ = consumer.close().await;
    recorder.finish();
    Ok(outcome)
}

/// Closes the run's pace when a consumer task ends.
struct ReleasePace<'a>(&'a Shared);

impl Drop for ReleasePace<'_> {
    fn drop(&mut self) {
        self.0.pace.close();
    }
}

/// What one fetched batch held.
struct Taken {
    /// Records at or past the fetch offset (re-reads included).
    records: u64,
    /// Of those, first deliveries (new or reordered, not re-reads or duplicates).
    fresh: u64,
}

/// Verifies and records the records of one fetched batch; returns what it held.
fn process(
    shared: &Shared,
    b: &ConsumedBatch,
    now: u64,
    latency: bool,
    recorder: &mut Recorder,
    scratch: &mut Vec<u8>,
) -> Result<Taken, Error> {
    let Some(topic_index) = shared.topic_index(&b.topic) else {
        return Ok(Taken {
            records: 0,
            fresh: 0,
        });
    };
    let partition = shared.run_partition(topic_index, b.partition);
    let format = |e: strata_log::FormatError| Error::Format {
        context: format!(
            "{}/{} batch from offset {}",
            b.topic, b.partition, b.from_offset
        ),
        message: e.to_string(),
    };
    let view = BatchView::parse(&b.batch).map_err(format)?;
    let records = view.records(scratch).map_err(format)?;
    let mut verifier = shared.verifier(partition);
    let (mut count, mut fresh, mut plain, mut plain_bytes) = (0u64, 0u64, 0u64, 0u64);
    for record in records {
        let record = record.map_err(format)?;
        if record.offset < b.from_offset {
            continue;
        }
        count += 1;
        let value = record.value.unwrap_or(&[]);
        let decoded = payload::decode(value);
        let send_ns = decoded.as_ref().ok().map(|f| f.send_ns);
        let outcome = verifier.received(record.offset, Delivery::from(decoded));
        if matches!(outcome, Outcome::New | Outcome::Reordered) {
            fresh += 1;
        }
        match (send_ns, outcome) {
            (Some(sent), Outcome::New | Outcome::Reordered) if latency => {
                recorder.record_delivery(sent, now, value.len() as u64);
            }
            _ => {
                plain += 1;
                plain_bytes += value.len() as u64;
            }
        }
    }
    drop(verifier);
    if plain > 0 {
        recorder.record_consumed(now, plain, plain_bytes);
    }
    Ok(Taken {
        records: count,
        fresh,
    })
}
