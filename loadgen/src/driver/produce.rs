//! One producer task: its own connection and [`Producer`], stamping every message with a
//! verifiable payload, pacing by the schedule (open loop) or by the batches in flight
//! and the consumers' backlog (closed loop), and recording each acknowledgement.
//!
//! Acknowledgements are collected in the same task, in send order (a FIFO of delivery
//! futures: they complete in order per partition), with no task or lock per message:
//! finished heads are taken without waiting after each send, and the task waits on the
//! oldest one only when the in-flight bound is reached or it has time before the next
//! scheduled send. Acknowledged sequences go to the partitions' verifiers as ranges,
//! a lock per partition every couple of milliseconds.

use super::error::Error;
use super::shared::Shared;
use crate::clock::RunClock;
use crate::payload::{self, Fields, Filler};
use crate::rate::{KeyGen, Schedule, SizeGen};
use crate::stats::Recorder;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use strata_net::client::{ClientError, DeliveryFuture, Producer, RecordMetadata};

/// How often acknowledged ranges are handed to the verifiers, ns.
const ACK_FLUSH_NS: u64 = 2_000_000;

/// Messages sent between reports to the run's pace (and checks of it): one shared
/// counter update per this many, not per message.
const PACE_REPORT: u64 = 64;

/// What one producer task does.
#[derive(Debug)]
pub struct ProducePlan {
    /// Producer id (stamped in payloads).
    pub index: u32,
    /// The run clock.
    pub clock: RunClock,
    /// Open or closed loop.
    pub schedule: Schedule,
    /// Stop sending at this time (`u64::MAX`: no time limit).
    pub stop_ns: u64,
    /// Stop after this many messages.
    pub limit: Option<u64>,
    /// Whether acknowledgements carry offsets (acks other than `none`).
    pub track_acks: bool,
    /// Keys and partitions.
    pub keys: KeyGen,
    /// Message sizes.
    pub sizes: SizeGen,
    /// Largest message size.
    pub max_size: usize,
    /// Payload filler.
    pub filler: Filler,
}

/// What one producer task did.
#[derive(Debug, Clone, Default)]
pub struct ProduceOutcome {
    /// Messages handed to the producer.
    pub sent: u64,
    /// Messages acknowledged.
    pub acked: u64,
    /// Messages whose delivery failed.
    pub failed: u64,
    /// The first delivery failure.
    pub first_failure: Option<String>,
}

/// A message waiting for its acknowledgement.
struct InFlight {
    delivery: DeliveryFuture,
    partition: u32,
    sequence: u64,
    send_ns: u64,
    size: u32,
}

/// Acknowledged sequences per partition, handed to the verifiers as ranges.
struct AckRanges {
    producer: u32,
    pending: Vec<Option<Range<u64>>>,
    last_flush_ns: u64,
}

impl AckRanges {
    fn add(&mut self, shared: &Shared, partition: u32, sequence: u64) {
        let slot = &mut self.pending[partition as usize];
        match slot {
            Some(r) if r.end == sequence => r.end += 1,
            _ => {
                if let Some(r) = slot.replace(sequence..sequence + 1) {
                    shared.verifier(partition).acked_range(self.producer, r);
                }
            }
        }
    }

    fn flush(&mut self, shared: &Shared, now_ns: u64) {
        self.last_flush_ns = now_ns;
        for (p, slot) in self.pending.iter_mut().enumerate() {
            if let Some(r) = slot.take() {
                shared.verifier(p as u32).acked_range(self.producer, r);
            }
        }
    }
}

/// The task's state between sends.
struct Task {
    shared: Arc<Shared>,
    clock: RunClock,
    recorder: Recorder,
    queue: VecDeque<InFlight>,
    acks: AckRanges,
    outcome: ProduceOutcome,
    /// Sends not yet reported to the recorder: messages, bytes.
    unreported: (u64, u64),
}

impl Task {
    fn complete(&mut self, m: InFlight, result: Result<RecordMetadata, ClientError>, now: u64) {
        match result {
            Ok(_) => {
                self.outcome.acked += 1;
                self.recorder.record_ack(m.send_ns, now, u64::from(m.size));
                self.acks.add(&self.shared, m.partition, m.sequence);
            }
            Err(e) => {
                self.outcome.failed += 1;
                // No consumer will see it: it must not hold the pacing bound.
                self.shared.pace.forget(1);
                if self.outcome.first_failure.is_none() {
                    self.outcome.first_failure = Some(e.to_string());
                }
            }
        }
    }

    /// Takes every finished message at the head of the queue, without waiting.
    fn take_ready(&mut self) {
        let mut now = None;
        while let Some(result) = self.queue.front().and_then(|m| m.delivery.try_result()) {
            let now = *now.get_or_insert_with(|| self.clock.now_ns());
            let m = self.queue.pop_front().expect("front exists");
            self.complete(m, result, now);
        }
        if let Some(now) = now {
            self.report_sent(now);
            if now.saturating_sub(self.acks.last_flush_ns) >= ACK_FLUSH_NS {
                self.acks.flush(&self.shared, now);
            }
        }
    }

    /// Waits for the oldest message, then takes every finished one.
    async fn wait_head(&mut self) {
        let Some(m) = self.queue.front_mut() else {
            return;
        };
        let result = (&mut m.delivery).await;
        let now = self.clock.now_ns();
        let m = self.queue.pop_front().expect("front exists");
        self.complete(m, result, now);
        self.take_ready();
    }

    /// Waits for room under the pacing bound (or until `stop_ns`), taking
    /// acknowledgements meanwhile so their latency is not charged with the wait.
    async fn wait_for_room(&mut self, stop_ns: u64) {
        let shared = self.shared.clone();
        // At most a minute at a time (the caller re-checks), so an unlimited run's
        // `stop_ns` never becomes a timer that far away.
        let horizon = self.clock.now_ns().saturating_add(60_000_000_000);
        let stop = tokio::time::Instant::from_std(self.clock.instant_at(stop_ns.min(horizon)));
        let timeout = tokio::time::sleep_until(stop);
        tokio::pin!(timeout);
        loop {
            self.take_ready();
            if shared.pace.has_room() {
                return;
            }
            let room = shared.pace.wait_for_room();
            let got = match self.queue.front_mut() {
                Some(m) => tokio::select! {
                    _ = room => None,
                    _ = &mut timeout => return,
                    r = &mut m.delivery => Some(r),
                },
                None => tokio::select! {
                    _ = room => None,
                    _ = &mut timeout => return,
                },
            };
            if let Some(result) = got {
                let now = self.clock.now_ns();
                let m = self.queue.pop_front().expect("front exists");
                self.complete(m, result, now);
            }
        }
    }

    /// Waits until `due_ns`, taking acknowledgements meanwhile.
    async fn wait_until(&mut self, due_ns: u64) {
        let deadline = tokio::time::Instant::from_std(self.clock.instant_at(due_ns));
        loop {
            self.take_ready();
            if self.clock.now_ns() >= due_ns {
                return;
            }
            let got = match self.queue.front_mut() {
                Some(m) => tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => None,
                    r = &mut m.delivery => Some(r),
                },
                None => {
                    tokio::time::sleep_until(deadline).await;
                    None
                }
            };
            if let Some(result) = got {
                let now = self.clock.now_ns();
                let m = self.queue.pop_front().expect("front exists");
                self.complete(m, result, now);
            }
        }
    }

    fn report_sent(&mut self, now: u64) {
        let (msgs, bytes) = std::mem::take(&mut self.unreported);
        if msgs > 0 {
            self.recorder.record_sent(now, msgs, bytes);
        }
    }
}

/// Runs one producer until its plan says stop, then flushes and waits for every
/// acknowledgement.
pub async fn run(
    shared: Arc<Shared>,
    producer: Producer,
    plan: ProducePlan,
    recorder: Recorder,
) -> Result<ProduceOutcome, Error> {
    let ProducePlan {
        index,
        clock,
        schedule,
        stop_ns,
        limit,
        track_acks,
        mut keys,
        mut sizes,
        max_size,
        filler,
    } = plan;
    let total = shared.total_partitions();
    let topics = shared.topics.len() as u64;
    let per_topic = shared.partitions;
    let mut task = Task {
        clock,
        recorder,
        queue: VecDeque::new(),
        acks: AckRanges {
            producer: index,
            pending: vec![None; total as usize],
            last_flush_ns: 0,
        },
        outcome: ProduceOutcome::default(),
        unreported: (0, 0),
        shared: shared.clone(),
    };
    let mut sequences = vec![0u64; total as usize];
    let mut buf = vec![0u8; max_size];
    let mut i: u64 = 0;
    let mut pace_unreported = 0u64;
    let result: Result<(), Error> = async {
        loop {
            if limit.is_some_and(|l| i >= l) {
                break;
            }
            let mut now = clock.now_ns();
            if now >= stop_ns {
                break;
            }
            if let Schedule::Open(o) = schedule {
                let due = o.scheduled_ns(i);
                if due > now {
                    task.wait_until(due.min(stop_ns)).await;
                    continue;
                }
            }
            let target = keys.next_target(per_topic);
            let topic_index = if topics > 1 { (i % topics) as usize } else { 0 };
            let partition = shared.run_partition(topic_index, target.partition);
            let size = sizes.next_size();
            if let Schedule::Closed { max_in_flight } = schedule {
                // At the bound, wait for the oldest message's batch. (Letting messages
                // join open batches at the bound lets the batches, and the latency, grow.)
                while track_acks
                    && producer.batches_in_flight() >= max_in_flight
                    && !task.queue.is_empty()
                {
                    task.wait_head().await;
                    now = clock.now_ns();
                }
            }
            let slot = &mut sequences[partition as usize];
            let sequence = *slot;
            *slot += 1;
            let fields = Fields {
                producer: index,
                partition,
                sequence,
                send_ns: schedule.send_time_ns(i, now),
            };
            let value = &mut buf[..size];
            payload::encode_into_with(value, &fields, filler).map_err(|e| Error::Format {
                context: "encoding a payload".into(),
                message: e.to_string(),
            })?;
            // The record's timestamp comes from the clock read above, not another read.
            let delivery = producer
                .send_to_at(
                    &shared.topics[topic_index],
                    target.partition,
                    clock.wall_micros(now),
                    target.key.as_ref().map(|k| k.as_bytes()),
                    value,
                    &[],
                )
                .await
                .map_err(|e| Error::client(format!("producer {index}: sending"), e))?;
            i += 1;
            task.outcome.sent += 1;
            pace_unreported += 1;
            if pace_unreported == PACE_REPORT {
                pace_unreported = 0;
                shared.pace.sent(PACE_REPORT);
                if !shared.pace.has_room() {
                    task.wait_for_room(stop_ns).await;
                }
            }
            task.unreported.0 += 1;
            task.unreported.1 += size as u64;
            if track_acks {
                task.queue.push_back(InFlight {
                    delivery,
                    partition,
                    sequence,
                    send_ns: fields.send_ns,
                    size: size as u32,
                });
                task.take_ready();
            } else if task.unreported.0 >= 256 {
                task.report_sent(now);
            }
        }
        Ok(())
    }
    .await;
    task.report_sent(clock.now_ns());
    // Deliver what is buffered and collect every acknowledgement, even after an error.
    let flushed = producer.flush().await;
    while !task.queue.is_empty() {
        task.wait_head().await;
    }
    task.acks.flush(&shared, clock.now_ns());
    let _ = producer.close().await;
    let Task {
        recorder, outcome, ..
    } = task;
    recorder.finish();
    result?;
    if let (Err(e), None) = (flushed, &outcome.first_failure) {
        let mut outcome = outcome;
        outcome.first_failure = Some(e.to_string());
        return Ok(outcome);
    }
    Ok(outcome)
}
