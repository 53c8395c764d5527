//! The driver: runs producers and consumers against an embedded or remote server,
//! verifies every message and builds the [`Report`].
//!
//! | module | what |
//! | --- | --- |
//! | [`endpoint`] | the embedded server or the remote one, and per-task connections |
//! | [`shared`] | topics, run-wide partition indexes, one verifier per partition |
//! | [`produce`] | one producer task: payloads, pacing, acknowledgements |
//! | [`consume`] | one consumer task: explicit partitions or a churning group member |
//! | [`progress`] | the live progress bar |
//! | [`error`] | what stops a run |
//!
//! # A run
//!
//! 1. Start the embedded server in a temporary (or `--data-dir`) directory, or take
//!    `--server`; create `--topics` fresh topics (unique names per run, so a remote
//!    server's old data is never read) of `--partitions` partitions.
//! 2. Connect every producer and consumer on its own QUIC connection.
//! 3. Start the run clock; producers send until `--duration` (or `--messages`), then
//!    flush and collect their acknowledgements; consumers read until every acknowledged
//!    message arrived or [`DRAIN_TIMEOUT`] passed. The `consume` scenario first writes a
//!    backlog (unmeasured), then measures a catch-up read of it.
//! 4. Stop the embedded server, measure the raw baselines, build the report, write the
//!    JSON and HTML files asked for.

pub mod consume;
pub mod endpoint;
pub mod error;
pub mod pace;
pub mod produce;
pub mod progress;
pub mod shared;

pub use endpoint::{Endpoint, Target};
pub use error::Error;

use crate::baseline;
use crate::clock::{RunClock, duration_ns};
use crate::config::{AckLevel, Args, CompressionKind, Scenario};
use crate::rate::{KeyGen, Schedule, SizeGen};
use crate::report::{Baselines, Report, ReportInputs};
use crate::stats::{Stats, StatsConfig, StatsSummary};
use crate::verify::Summary;
use consume::{Assignment, ConsumeOutcome, ConsumePlan};
use produce::{ProduceOutcome, ProducePlan};
use progress::Progress;
use shared::Shared;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use strata_log::engine::TopicPartition;
use strata_log::format::Compression;
use strata_log::{Durability, TopicConfig};
use strata_net::client::{Client, Producer, ProducerConfig};
use strata_net::protocol::Acks;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Longest the consumers get, after the producers stopped, to receive every
/// acknowledged message.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the load described by `args` and returns its report (also written to `--json`
/// and `--html` when given). A failed verdict is a report with
/// [`passed`](Report::passed) false, not an error.
pub async fn run(args: Args) -> Result<Report, Error> {
    args.validate()?;
    let mut target = Target::open(&args).await?;
    let measured = measure(&args, &target.endpoint).await;
    let stopped = target.shutdown().await;
    let measured = measured?;
    stopped?;
    let baselines = if args.no_baselines {
        Baselines {
            notes: vec!["baselines skipped (--no-baselines)".to_owned()],
            ..Baselines::default()
        }
    } else {
        baselines(&args, &target).await
    };
    let mut report = Report::build(ReportInputs {
        config: args.echo(),
        targets: args.targets(),
        duration_s: measured.duration_s,
        warmup_s: args.warmup.as_secs_f64(),
        stats: measured.stats,
        verify: measured.verify,
        baselines,
    });
    report.verdict.notes.extend(measured.notes);
    if args.open_rate().is_none() && args.max_in_flight < args.total_partitions() as usize {
        report.verdict.notes.push(format!(
            "--max-in-flight {} is below the {} partitions a producer writes to: it waits for \
             an acknowledgement before most sends",
            args.max_in_flight,
            args.total_partitions()
        ));
    }
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, report.to_html())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    Ok(report)
}

/// What the measurement produced.
struct Measured {
    stats: StatsSummary,
    verify: Summary,
    duration_s: f64,
    notes: Vec<String>,
}

/// Topic names unique to this run.
fn topic_names(count: u32) -> Vec<String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let id = xxhash_rust::xxh3::xxh3_64(
        &[
            nanos.to_le_bytes(),
            u64::from(std::process::id()).to_le_bytes(),
        ]
        .concat(),
    );
    (0..count)
        .map(|i| format!("loadgen-{:08x}-{i}", id as u32))
        .collect()
}

fn producer_config(args: &Args) -> ProducerConfig {
    let acks = match args.acks {
        AckLevel::None => Acks::None,
        AckLevel::Written => Acks::Written,
        AckLevel::Fsync => Acks::Fsync,
    };
    let compression = match args.compression {
        CompressionKind::None => Compression::None,
        CompressionKind::Lz4 => Compression::Lz4,
    };
    let defaults = ProducerConfig::default();
    // Closed loop: the driver bounds the batches in flight itself; the producer's
    // memory budget only needs to stay out of its way.
    let budget = args
        .max_in_flight
        .saturating_mul(args.batch_bytes)
        .saturating_mul(2)
        .max(defaults.max_inflight_bytes)
        .min(u32::MAX as usize);
    ProducerConfig {
        acks,
        linger: args.linger(),
        batch_bytes: args.batch_bytes,
        compression: Some(compression),
        max_inflight_bytes: budget,
        max_inflight_batches: args.partition_window,
        ..defaults
    }
}

/// Connects `args.producers` producers, each on its own connection.
async fn connect_producers(args: &Args, endpoint: &Endpoint) -> Result<Vec<Producer>, Error> {
    let mut out = Vec::new();
    for i in 0..args.producers {
        let client = endpoint.connect().await?;
        let p = Producer::new(client, producer_config(args))
            .await
            .map_err(|e| Error::client(format!("producer {i}: starting"), e))?;
        out.push(p);
    }
    Ok(out)
}

/// Spawns the producer tasks.
fn spawn_producers(
    args: &Args,
    shared: &Arc<Shared>,
    producers: Vec<Producer>,
    clock: RunClock,
    stats: &Arc<Stats>,
    stop_ns: u64,
) -> Result<Vec<JoinHandle<Result<ProduceOutcome, Error>>>, Error> {
    let n = u64::from(args.producers);
    let mut handles = Vec::new();
    for (i, producer) in producers.into_iter().enumerate() {
        let index = i as u32;
        let seed = args.producer_seed(index);
        let bad = |e: crate::rate::SpecError| crate::config::ConfigError(e.to_string());
        let plan = ProducePlan {
            index,
            clock,
            schedule: Schedule::for_producer(
                args.load_mode(),
                clock.now_ns(),
                args.producers,
                index,
            )
            .map_err(bad)?,
            stop_ns,
            limit: args.messages.map(|m| m / n + u64::from((i as u64) < m % n)),
            track_acks: args.acks != AckLevel::None,
            keys: KeyGen::new(args.keys, seed).map_err(bad)?,
            sizes: SizeGen::new(args.message_size, seed ^ 0x5bd1_e995),
            max_size: args.message_size.max(),
            filler: args.filler,
        };
        handles.push(tokio::spawn(produce::run(
            shared.clone(),
            producer,
            plan,
            stats.recorder(),
        )));
    }
    Ok(handles)
}

/// Waits for every producer task and adds up their outcomes.
async fn join_producers(
    handles: Vec<JoinHandle<Result<ProduceOutcome, Error>>>,
) -> Result<ProduceOutcome, Error> {
    join_all(handles, ProduceOutcome::default(), |total, o| {
        total.sent += o.sent;
        total.acked += o.acked;
        total.failed += o.failed;
        if total.first_failure.is_none() {
            total.first_failure = o.first_failure;
        }
    })
    .await
}

/// Waits for every task, folding the outcomes into `total`; the first failure wins.
async fn join_all<T, A>(
    handles: Vec<JoinHandle<Result<T, Error>>>,
    mut total: A,
    mut add: impl FnMut(&mut A, T),
) -> Result<A, Error> {
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(o)) => add(&mut total, o),
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(Error::Task(e.to_string()));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// Which partitions each of up to `consumers` consumers reads (none are left idle:
/// with more consumers than partitions, the extra ones are not started).
fn explicit_assignments(shared: &Shared, consumers: u32) -> Vec<Vec<TopicPartition>> {
    let total = shared.total_partitions();
    let n = consumers.min(total).max(1);
    let mut out = vec![Vec::new(); n as usize];
    for p in 0..total {
        let topic = (p / shared.partitions) as usize;
        out[(p % n) as usize].push(TopicPartition {
            topic: shared.topics[topic].clone(),
            partition: p % shared.partitions,
        });
    }
    out
}

type ConsumerHandle = JoinHandle<Result<ConsumeOutcome, Error>>;

/// Connects and subscribes the consumers (before the clock starts), returning what
/// [`spawn_consumers`] needs.
async fn connect_consumers(
    args: &Args,
    shared: &Shared,
    endpoint: &Endpoint,
    group: Option<String>,
) -> Result<Vec<(Client, strata_net::client::Consumer, ConsumePlan)>, Error> {
    let assignments: Vec<Assignment> = match group {
        Some(name) => (0..args.consumers)
            .map(|_| Assignment::Group {
                name: name.clone(),
                pause: (args.churn_interval / 2).min(Duration::from_secs(1)),
            })
            .collect(),
        None => explicit_assignments(shared, args.consumers)
            .into_iter()
            .map(Assignment::Explicit)
            .collect(),
    };
    let consumers = assignments.len() as u32;
    let mut out = Vec::new();
    for (i, assignment) in assignments.into_iter().enumerate() {
        let client = endpoint.connect().await?;
        let plan = ConsumePlan {
            index: i as u32,
            consumers,
            // Replaced when the clock starts.
            clock: RunClock::start(),
            latency: args.scenario != Scenario::Consume,
            assignment,
        };
        let consumer = consume::open(client.clone(), shared, &plan).await?;
        out.push((client, consumer, plan));
    }
    Ok(out)
}

fn spawn_consumers(
    shared: &Arc<Shared>,
    connected: Vec<(Client, strata_net::client::Consumer, ConsumePlan)>,
    clock: RunClock,
    stats: &Arc<Stats>,
    stop: &Arc<AtomicBool>,
    churn: Option<&watch::Receiver<u64>>,
) -> Vec<ConsumerHandle> {
    connected
        .into_iter()
        .map(|(client, consumer, mut plan)| {
            plan.clock = clock;
            tokio::spawn(consume::run(
                shared.clone(),
                client,
                consumer,
                plan,
                stats.recorder(),
                stop.clone(),
                churn.cloned(),
            ))
        })
        .collect()
}

async fn join_consumers(handles: Vec<ConsumerHandle>) -> Result<ConsumeOutcome, Error> {
    join_all(handles, ConsumeOutcome::default(), |total, o| {
        total.deliveries += o.deliveries;
        total.rejoins += o.rejoins;
    })
    .await
}

/// Whether the consumers have everything: every acknowledged message, and with acks
/// `none` (no acknowledgements) at least as many messages as were sent.
fn drained(shared: &Shared, sent: u64, track_acks: bool) -> bool {
    let s = shared.summary();
    s.lost == 0 && (track_acks || s.received >= sent)
}

/// Waits until [`drained`] or `deadline_ns` on `clock`, or a consumer task ended early
/// (an error); returns when it stopped.
async fn drain(
    shared: &Shared,
    clock: RunClock,
    sent: u64,
    track_acks: bool,
    deadline_ns: u64,
    consumers: &[ConsumerHandle],
) -> u64 {
    loop {
        let now = clock.now_ns();
        if drained(shared, sent, track_acks)
            || now >= deadline_ns
            || consumers.iter().any(JoinHandle::is_finished)
        {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn delivery_notes(p: &ProduceOutcome, verify: &Summary, drained_ok: bool) -> Vec<String> {
    let mut notes = Vec::new();
    if p.failed > 0 {
        notes.push(format!(
            "{} message(s) not acknowledged (delivery failed: {})",
            p.failed,
            p.first_failure.as_deref().unwrap_or("unknown")
        ));
    }
    if !drained_ok && verify.lost > 0 {
        notes.push(format!(
            "consumers stopped after the {} s drain timeout with {} acknowledged message(s) outstanding",
            DRAIN_TIMEOUT.as_secs(),
            verify.lost
        ));
    }
    notes
}

/// Creates the topics, runs the scenario and collects its figures.
async fn measure(args: &Args, endpoint: &Endpoint) -> Result<Measured, Error> {
    let admin = endpoint.connect().await?;
    let topics = topic_names(args.topics);
    let durability = match args.acks {
        AckLevel::Fsync => Durability::Fsync,
        AckLevel::None | AckLevel::Written => Durability::Written,
    };
    for name in &topics {
        let config = TopicConfig {
            partitions: args.partitions,
            durability,
            retention_ms: None,
            ..TopicConfig::default()
        };
        admin
            .ensure_topic(name, config)
            .await
            .map_err(|e| Error::client(format!("creating topic {name}"), e))?;
    }
    let shared = Arc::new(Shared::new(
        topics.clone(),
        args.partitions,
        args.pacing_bound(),
    ));
    let result = match args.scenario {
        Scenario::Consume => measure_consume(args, endpoint, &shared).await,
        _ => measure_live(args, endpoint, &shared).await,
    };
    for name in &topics {
        let _ = admin.delete_topic(name).await;
    }
    admin.close().await;
    result
}

/// `produce`, `e2e` and `group`: producers (and consumers) together.
async fn measure_live(
    args: &Args,
    endpoint: &Endpoint,
    shared: &Arc<Shared>,
) -> Result<Measured, Error> {
    let track_acks = args.acks != AckLevel::None;
    let producers = connect_producers(args, endpoint).await?;
    let group = (args.scenario == Scenario::Group).then(|| format!("{}-group", shared.topics[0]));
    let connected = if args.scenario.consumes() {
        connect_consumers(args, shared, endpoint, group).await?
    } else {
        Vec::new()
    };
    let clock = RunClock::start();
    let stats = Stats::new(args.stats_config());
    let stop = Arc::new(AtomicBool::new(false));
    let (churn_tx, churn_rx) = watch::channel(0u64);
    let churning = args.scenario == Scenario::Group;
    let consumers = spawn_consumers(
        shared,
        connected,
        clock,
        &stats,
        &stop,
        churning.then_some(&churn_rx),
    );
    let (stop_ns, length) = run_length(args);
    let progress = Progress::start(
        !args.no_progress,
        args.scenario.as_str(),
        length,
        clock,
        stats.clone(),
    );
    let producing = spawn_producers(args, shared, producers, clock, &stats, stop_ns)?;
    let churn_task = churning.then(|| {
        let interval = args.churn_interval;
        tokio::spawn(async move {
            let mut tick = 0u64;
            loop {
                tokio::time::sleep(interval).await;
                tick += 1;
                if churn_tx.send(tick).is_err() {
                    return;
                }
            }
        })
    });
    let produced = join_producers(producing).await;
    let produced_ns = clock.now_ns();
    if let Some(t) = churn_task {
        t.abort();
    }
    let produced = match produced {
        Ok(p) => p,
        Err(e) => {
            stop.store(true, Ordering::Release);
            let _ = join_consumers(consumers).await;
            progress.finish();
            return Err(e);
        }
    };
    let mut drained_ok = true;
    if args.scenario.consumes() {
        let deadline = produced_ns.saturating_add(duration_ns(DRAIN_TIMEOUT));
        drain(
            shared,
            clock,
            produced.sent,
            track_acks,
            deadline,
            &consumers,
        )
        .await;
        drained_ok = drained(shared, produced.sent, track_acks);
    } else if track_acks {
        drained_ok = verify_read_back(args, endpoint, shared, produced.sent).await?;
    }
    stop.store(true, Ordering::Release);
    let consumed = join_consumers(consumers).await;
    progress.finish();
    consumed?;
    let verify = shared.summary();
    let summary = stats.summary(produced_ns);
    Ok(Measured {
        notes: delivery_notes(&produced, &verify, drained_ok),
        stats: summary,
        verify,
        duration_s: produced_ns as f64 / 1e9,
    })
}

/// `produce`: reads everything back after the measured run (not measured itself), so
/// that lost, duplicated, reordered and corrupted messages are counted there too.
/// Returns whether every acknowledged message arrived before the deadline.
async fn verify_read_back(
    args: &Args,
    endpoint: &Endpoint,
    shared: &Arc<Shared>,
    sent: u64,
) -> Result<bool, Error> {
    let connected = connect_consumers(args, shared, endpoint, None).await?;
    let clock = RunClock::start();
    let stats = Stats::new(StatsConfig::new(Duration::ZERO, None));
    let stop = Arc::new(AtomicBool::new(false));
    let readers = spawn_consumers(shared, connected, clock, &stats, &stop, None);
    let deadline = duration_ns(READ_BACK_TIMEOUT);
    drain(shared, clock, sent, true, deadline, &readers).await;
    let complete = drained(shared, sent, true);
    stop.store(true, Ordering::Release);
    join_consumers(readers).await?;
    Ok(complete)
}

/// Longest the produce scenario's verification read may take.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(120);

/// When producers stop (ns on the run clock) and the progress bar's length: a count run
/// has no deadline.
fn run_length(args: &Args) -> (u64, Duration) {
    match args.messages {
        Some(_) => (u64::MAX, Duration::ZERO),
        None => (duration_ns(args.duration), args.duration),
    }
}

/// `consume`: an unmeasured backlog, then a measured catch-up read of it.
async fn measure_consume(
    args: &Args,
    endpoint: &Endpoint,
    shared: &Arc<Shared>,
) -> Result<Measured, Error> {
    let track_acks = args.acks != AckLevel::None;
    // The backlog: --messages, or what the producers write in --duration.
    let producers = connect_producers(args, endpoint).await?;
    let backlog_clock = RunClock::start();
    let backlog_stats = Stats::new(StatsConfig::new(Duration::ZERO, None));
    let (stop_ns, length) = run_length(args);
    let progress = Progress::start(
        !args.no_progress,
        "backlog",
        length,
        backlog_clock,
        backlog_stats.clone(),
    );
    let producing = spawn_producers(
        args,
        shared,
        producers,
        backlog_clock,
        &backlog_stats,
        stop_ns,
    )?;
    let produced = join_producers(producing).await;
    progress.finish();
    let produced = produced?;
    let backlog = backlog_stats.summary(backlog_clock.now_ns()).run_totals;

    let connected = connect_consumers(args, shared, endpoint, None).await?;
    let clock = RunClock::start();
    let stats = Stats::new(args.stats_config());
    // The backlog's sends, for the report's message count (at time 0: not measured).
    let mut r = stats.recorder();
    r.record_sent(0, backlog.sent_msgs, backlog.sent_bytes);
    r.finish();
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Progress::start(
        !args.no_progress,
        "consume",
        args.duration,
        clock,
        stats.clone(),
    );
    let consumers = spawn_consumers(shared, connected, clock, &stats, &stop, None);
    let deadline = duration_ns(args.duration).saturating_add(duration_ns(DRAIN_TIMEOUT));
    let done_ns = drain(
        shared,
        clock,
        produced.sent,
        track_acks,
        deadline,
        &consumers,
    )
    .await;
    let drained_ok = drained(shared, produced.sent, track_acks);
    stop.store(true, Ordering::Release);
    let consumed = join_consumers(consumers).await;
    progress.finish();
    consumed?;
    let verify = shared.summary();
    Ok(Measured {
        notes: delivery_notes(&produced, &verify, drained_ok),
        stats: stats.summary(done_ns),
        verify,
        duration_s: done_ns.min(duration_ns(args.duration)) as f64 / 1e9,
    })
}

/// Measures the raw disk and QUIC limits (after the embedded server stopped, so they
/// do not compete with it).
async fn baselines(args: &Args, target: &Target) -> Baselines {
    let mut b = Baselines::default();
    let dir = target.data_dir().to_path_buf();
    let (mib, sync) = (args.baseline_mib, args.disk_sync());
    match tokio::task::spawn_blocking(move || baseline::disk_write(&dir, mib, sync)).await {
        Ok(Ok(d)) => b.disk = Some(d),
        Ok(Err(e)) => b.notes.push(format!("disk baseline failed: {e}")),
        Err(e) => b.notes.push(format!("disk baseline failed: {e}")),
    }
    let ip = target.endpoint.addr.ip();
    match baseline::quic_bulk(ip, mib).await {
        Ok(q) => b.quic = Some(q),
        Err(e) => b.notes.push(format!("QUIC baseline on {ip} failed: {e}")),
    }
    b
}
