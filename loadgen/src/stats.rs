//! Throughput and latency statistics: HdrHistogram recorders, one per producer or
//! consumer task, merged without a lock per message.
//!
//! # Model
//!
//! A run creates one shared [`Stats`]; each producer or consumer task takes its own
//! [`Recorder`] from it and records into plain local histograms and counters. A
//! recorder touches the shared state (one mutex) only when its one-second interval
//! rolls over and when it is finished or dropped — never per message.
//!
//! All times are nanoseconds since the run's [`RunClock`](crate::clock::RunClock) epoch.
//! Latencies are recorded in microseconds (rounded up, so anything under 1 µs counts as
//! 1 µs) into histograms covering 1 µs ..= 60 s with 3 significant digits; a latency
//! above 60 s is recorded as 60 s and counted in [`StatsSummary::clamped`].
//!
//! # Warm-up and the measured window
//!
//! The measured window is `[warmup_ns, end_ns)`.
//!
//! * **Latency** of a message goes into the totals when it was (scheduled to be) *sent*
//!   inside the window, whenever its acknowledgement or delivery comes: a message that
//!   queued during warm-up does not count, and one sent just before the end is not
//!   dropped because it completed during the drain.
//! * **Throughput** counts events (send, acknowledgement, delivery) that *happened*
//!   inside the window, over the window's length; this is what a catch-up read of an
//!   old backlog needs too.
//! * The per-interval **time series** covers the whole run, warm-up included (flagged),
//!   bucketed by when each event happened. A recorder attributes an event that arrives
//!   after it has moved on to a later interval (a late timestamp) to its current one.

use crate::clock::duration_ns;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Lowest latency the histograms track, µs.
pub const LOWEST_US: u64 = 1;
/// Highest latency the histograms track, µs (60 s); above is clamped.
pub const HIGHEST_US: u64 = 60_000_000;
/// Significant digits of the run-wide latency histograms.
pub const SIGNIFICANT_DIGITS: u8 = 3;
/// Significant digits of the per-interval histograms (only their p99 is plotted).
pub const INTERVAL_SIGNIFICANT_DIGITS: u8 = 2;
/// Per-interval histograms older than this many intervals behind the newest are reduced
/// to their percentiles, bounding memory on long runs.
const KEEP_INTERVAL_HISTOGRAMS: u64 = 4;

/// A latency histogram in µs, 1 µs ..= 60 s, with `digits` significant digits.
pub fn latency_histogram(digits: u8) -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts.
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, digits).expect("valid histogram bounds")
}

/// Latency from `from_ns` to `to_ns` in whole µs, rounded up, at least 1.
pub fn latency_us(from_ns: u64, to_ns: u64) -> u64 {
    to_ns.saturating_sub(from_ns).div_ceil(1000).max(1)
}

/// Latency percentiles in µs (the shape of `produce_latency_us` and `e2e_latency_us`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest value recorded.
    pub max: u64,
    /// Smallest value recorded.
    pub min: u64,
    /// Mean.
    pub mean: f64,
    /// Number of values recorded (0: every other field is 0).
    pub count: u64,
}

impl Percentiles {
    /// The percentiles of `h` (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            min: h.min(),
            mean: h.mean(),
            count: h.len(),
        }
    }
}

/// One point of a latency percentile distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DistributionPoint {
    /// Percentile, 0 ..= 100 (100 is the maximum).
    pub percentile: f64,
    /// Latency at that percentile, µs.
    pub latency_us: u64,
}

/// The latency distribution of `h` at percentiles spaced evenly on a log scale of
/// `1 / (1 - q)` (0, 36.9, 60.2, 74.9, 84.2, 90, ... 99.999), up to the resolution the
/// sample count supports, then the maximum at 100. Empty for an empty histogram.
pub fn distribution(h: &Histogram<u64>) -> Vec<DistributionPoint> {
    if h.is_empty() {
        return Vec::new();
    }
    const STEPS_PER_DECADE: u32 = 5;
    let n = h.len() as f64;
    let mut points = Vec::new();
    for k in 0..=(5 * STEPS_PER_DECADE) {
        let q = 1.0 - 10f64.powf(-f64::from(k) / f64::from(STEPS_PER_DECADE));
        if k > 0 && (1.0 - q) * n < 1.0 - 1e-9 {
            break;
        }
        points.push(DistributionPoint {
            percentile: q * 100.0,
            latency_us: h.value_at_quantile(q),
        });
    }
    points.push(DistributionPoint {
        percentile: 100.0,
        latency_us: h.max(),
    });
    points
}

/// Message and byte counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Messages sent by producers.
    pub sent_msgs: u64,
    /// Payload bytes sent by producers.
    pub sent_bytes: u64,
    /// Messages acknowledged to producers.
    pub acked_msgs: u64,
    /// Payload bytes acknowledged to producers.
    pub acked_bytes: u64,
    /// Messages delivered to consumers.
    pub consumed_msgs: u64,
    /// Payload bytes delivered to consumers.
    pub consumed_bytes: u64,
}

impl Counters {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &Counters) {
        self.sent_msgs += other.sent_msgs;
        self.sent_bytes += other.sent_bytes;
        self.acked_msgs += other.acked_msgs;
        self.acked_bytes += other.acked_bytes;
        self.consumed_msgs += other.consumed_msgs;
        self.consumed_bytes += other.consumed_bytes;
    }
}

/// Where the measured window lies and how the time series is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsConfig {
    /// Start of the measured window (end of warm-up), ns since the run epoch.
    pub warmup_ns: u64,
    /// End of the measured window, ns since the run epoch (`u64::MAX`: open-ended).
    pub end_ns: u64,
    /// Length of one time-series interval, ns (at least 1).
    pub interval_ns: u64,
}

impl StatsConfig {
    /// Warm-up of `warmup`, then a window of `measure` (`None`: open-ended), 1 s intervals.
    pub fn new(warmup: Duration, measure: Option<Duration>) -> StatsConfig {
        let warmup_ns = duration_ns(warmup);
        StatsConfig {
            warmup_ns,
            end_ns: measure.map_or(u64::MAX, |m| warmup_ns.saturating_add(duration_ns(m))),
            interval_ns: 1_000_000_000,
        }
    }

    fn in_window(&self, ns: u64) -> bool {
        ns >= self.warmup_ns && ns < self.end_ns
    }

    fn interval_of(&self, ns: u64) -> u64 {
        ns / self.interval_ns.max(1)
    }
}

/// One interval's counts and latencies (by event time).
#[derive(Debug, Clone)]
struct Interval {
    counters: Counters,
    produce: Histogram<u64>,
    e2e: Histogram<u64>,
}

impl Interval {
    fn new() -> Interval {
        Interval {
            counters: Counters::default(),
            produce: latency_histogram(INTERVAL_SIGNIFICANT_DIGITS),
            e2e: latency_histogram(INTERVAL_SIGNIFICANT_DIGITS),
        }
    }

    fn is_empty(&self) -> bool {
        self.counters == Counters::default()
    }
}

/// An interval whose histograms were reduced to the plotted percentiles.
#[derive(Debug, Clone, Copy, Default)]
struct Sealed {
    counters: Counters,
    produce_p99_us: u64,
    e2e_p99_us: u64,
}

#[derive(Debug)]
struct Shared {
    totals: Counters,
    produce: Histogram<u64>,
    e2e: Histogram<u64>,
    clamped: u64,
    open: BTreeMap<u64, Interval>,
    sealed: BTreeMap<u64, Sealed>,
}

impl Shared {
    fn seal_old(&mut self) {
        let Some((&newest, _)) = self.open.last_key_value() else {
            return;
        };
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() + KEEP_INTERVAL_HISTOGRAMS > newest {
                break;
            }
            let (index, interval) = entry.remove_entry();
            let sealed = self.sealed.entry(index).or_default();
            sealed.counters.add(&interval.counters);
            // A late part of an already sealed interval only adds its counts.
            if !interval.produce.is_empty() && sealed.produce_p99_us == 0 {
                sealed.produce_p99_us = interval.produce.value_at_quantile(0.99);
            }
            if !interval.e2e.is_empty() && sealed.e2e_p99_us == 0 {
                sealed.e2e_p99_us = interval.e2e.value_at_quantile(0.99);
            }
        }
    }
}

/// The run-wide statistics every [`Recorder`] reports into.
#[derive(Debug)]
pub struct Stats {
    config: StatsConfig,
    shared: Mutex<Shared>,
}

impl Stats {
    /// Shared statistics for a run measured as `config` says.
    pub fn new(config: StatsConfig) -> Arc<Stats> {
        Arc::new(Stats {
            config,
            shared: Mutex::new(Shared {
                totals: Counters::default(),
                produce: latency_histogram(SIGNIFICANT_DIGITS),
                e2e: latency_histogram(SIGNIFICANT_DIGITS),
                clamped: 0,
                open: BTreeMap::new(),
                sealed: BTreeMap::new(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> StatsConfig {
        self.config
    }

    /// A recorder for one producer or consumer task.
    pub fn recorder(self: &Arc<Self>) -> Recorder {
        Recorder {
            stats: Arc::clone(self),
            config: self.config,
            totals: Counters::default(),
            produce: latency_histogram(SIGNIFICANT_DIGITS),
            e2e: latency_histogram(SIGNIFICANT_DIGITS),
            clamped: 0,
            current: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A recorder that panicked mid-merge leaves counts that are still usable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest interval that recorders have moved past (for a progress bar): its
    /// rates and p99s, and the counts so far. Recorders report an interval when they
    /// move past it, so this lags by about one interval.
    pub fn live(&self) -> Live {
        let shared = self.lock();
        let secs = self.config.interval_ns.max(1) as f64 / 1e9;
        let mut live = Live::default();
        for i in shared.sealed.values() {
            live.counters.add(&i.counters);
        }
        for i in shared.open.values() {
            live.counters.add(&i.counters);
        }
        let newest = shared.open.keys().next_back().copied();
        // The newest interval may still be filling up; show the one before it if any.
        let pick = match newest {
            Some(n) if n > 0 && shared.open.contains_key(&(n - 1)) => Some(n - 1),
            other => other,
        };
        if let Some(i) = pick.and_then(|k| shared.open.get(&k).map(|v| (k, v))) {
            live.interval_start_s = i.0 as f64 * secs;
            live.produce_msgs_per_s = i.1.counters.acked_msgs as f64 / secs;
            live.consume_msgs_per_s = i.1.counters.consumed_msgs as f64 / secs;
            live.produce_p99_us = p99(&i.1.produce);
            live.e2e_p99_us = p99(&i.1.e2e);
        }
        live
    }

    /// The run's figures, the measured window ending at `end_ns` (or at the configured
    /// end, if earlier). Recorders still alive have not merged their totals yet: finish
    /// or drop them first.
    pub fn summary(&self, end_ns: u64) -> StatsSummary {
        let mut shared = self.lock();
        // Seal every interval so the series is uniform.
        let open = std::mem::take(&mut shared.open);
        let mut series: BTreeMap<u64, Sealed> = shared.sealed.clone();
        for (index, interval) in open.iter() {
            let s = series.entry(*index).or_default();
            s.counters.add(&interval.counters);
            if s.produce_p99_us == 0 {
                s.produce_p99_us = p99(&interval.produce);
            }
            if s.e2e_p99_us == 0 {
                s.e2e_p99_us = p99(&interval.e2e);
            }
        }
        shared.open = open;
        let end = end_ns.min(self.config.end_ns);
        let measured_s = end.saturating_sub(self.config.warmup_ns) as f64 / 1e9;
        let secs = self.config.interval_ns.max(1) as f64 / 1e9;
        let t = &shared.totals;
        StatsSummary {
            measured_s,
            sent: Throughput::new(t.sent_msgs, t.sent_bytes, measured_s),
            acked: Throughput::new(t.acked_msgs, t.acked_bytes, measured_s),
            consumed: Throughput::new(t.consumed_msgs, t.consumed_bytes, measured_s),
            produce_latency_us: Percentiles::of(&shared.produce),
            e2e_latency_us: Percentiles::of(&shared.e2e),
            produce_distribution: distribution(&shared.produce),
            e2e_distribution: distribution(&shared.e2e),
            clamped: shared.clamped,
            run_totals: series.values().fold(Counters::default(), |mut c, s| {
                c.add(&s.counters);
                c
            }),
            series: series
                .into_iter()
                .map(|(index, s)| {
                    let start_ns = index.saturating_mul(self.config.interval_ns);
                    IntervalPoint {
                        start_s: start_ns as f64 / 1e9,
                        warmup: start_ns < self.config.warmup_ns,
                        counters: s.counters,
                        produce_msgs_per_s: s.counters.acked_msgs as f64 / secs,
                        consume_msgs_per_s: s.counters.consumed_msgs as f64 / secs,
                        produce_mb_per_s: s.counters.acked_bytes as f64 / secs / 1e6,
                        consume_mb_per_s: s.counters.consumed_bytes as f64 / secs / 1e6,
                        produce_p99_us: s.produce_p99_us,
                        e2e_p99_us: s.e2e_p99_us,
                    }
                })
                .collect(),
        }
    }
}

fn p99(h: &Histogram<u64>) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(0.99)
    }
}

/// What a progress bar shows: the latest complete interval and the counts so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Live {
    /// Start of the interval shown, s since the run epoch.
    pub interval_start_s: f64,
    /// Acknowledged messages per second in that interval.
    pub produce_msgs_per_s: f64,
    /// Delivered messages per second in that interval.
    pub consume_msgs_per_s: f64,
    /// p99 produce-acknowledgement latency in that interval, µs.
    pub produce_p99_us: u64,
    /// p99 end-to-end latency in that interval, µs.
    pub e2e_p99_us: u64,
    /// Counts reported so far (warm-up included).
    pub counters: Counters,
}

/// Messages and bytes over the measured window, and their rates (MB = 10^6 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Throughput {
    /// Messages.
    pub msgs: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// Megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
}

impl Throughput {
    /// `msgs` and `bytes` over `secs` seconds (rates 0 for an empty window).
    pub fn new(msgs: u64, bytes: u64, secs: f64) -> Throughput {
        let (msgs_per_s, mb_per_s) = if secs > 0.0 {
            (msgs as f64 / secs, bytes as f64 / secs / 1e6)
        } else {
            (0.0, 0.0)
        };
        Throughput {
            msgs,
            bytes,
            msgs_per_s,
            mb_per_s,
        }
    }
}

/// One interval of the time series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IntervalPoint {
    /// Interval start, s since the run epoch.
    pub start_s: f64,
    /// Whether the interval starts during warm-up.
    pub warmup: bool,
    /// Counts of events in the interval.
    pub counters: Counters,
    /// Acknowledged messages per second.
    pub produce_msgs_per_s: f64,
    /// Delivered messages per second.
    pub consume_msgs_per_s: f64,
    /// Acknowledged MB per second.
    pub produce_mb_per_s: f64,
    /// Delivered MB per second.
    pub consume_mb_per_s: f64,
    /// p99 produce-acknowledgement latency of acks in the interval, µs (0: none).
    pub produce_p99_us: u64,
    /// p99 end-to-end latency of deliveries in the interval, µs (0: none).
    pub e2e_p99_us: u64,
}

/// A run's statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsSummary {
    /// Length of the measured window, s.
    pub measured_s: f64,
    /// Sends in the window.
    pub sent: Throughput,
    /// Acknowledgements in the window.
    pub acked: Throughput,
    /// Deliveries in the window.
    pub consumed: Throughput,
    /// Produce-acknowledgement latency of messages sent in the window, µs.
    pub produce_latency_us: Percentiles,
    /// End-to-end latency of messages sent in the window, µs.
    pub e2e_latency_us: Percentiles,
    /// Produce latency distribution (for the percentile plot).
    pub produce_distribution: Vec<DistributionPoint>,
    /// End-to-end latency distribution (for the percentile plot).
    pub e2e_distribution: Vec<DistributionPoint>,
    /// Latencies above [`HIGHEST_US`], recorded as that.
    pub clamped: u64,
    /// Counts of the whole run: warm-up, measured window and drain.
    pub run_totals: Counters,
    /// The time series, one point per interval that saw an event.
    pub series: Vec<IntervalPoint>,
}

/// One task's recorder: local histograms and counters, merged into [`Stats`] when its
/// interval rolls over (counts and interval histograms) and when it is finished or
/// dropped (totals and run-wide histograms).
#[derive(Debug)]
pub struct Recorder {
    stats: Arc<Stats>,
    config: StatsConfig,
    totals: Counters,
    produce: Histogram<u64>,
    e2e: Histogram<u64>,
    clamped: u64,
    current: Option<(u64, Interval)>,
}

impl Recorder {
    /// The interval accumulating events at `event_ns`, rolling over if it moved on.
    fn interval(&mut self, event_ns: u64) -> &mut Interval {
        let index = self.config.interval_of(event_ns);
        match &self.current {
            Some((i, _)) if *i >= index => {}
            Some(_) => {
                self.flush_interval();
                self.current = Some((index, Interval::new()));
            }
            None => self.current = Some((index, Interval::new())),
        }
        match &mut self.current {
            Some((_, interval)) => interval,
            None => unreachable!("set above"),
        }
    }

    fn flush_interval(&mut self) {
        if let Some((index, interval)) = self.current.take() {
            if interval.is_empty() {
                return;
            }
            let mut shared = self.stats.lock();
            match shared.open.get_mut(&index) {
                Some(existing) => {
                    existing.counters.add(&interval.counters);
                    // Both have the same bounds, so adding cannot fail.
                    let _ = existing.produce.add(&interval.produce);
                    let _ = existing.e2e.add(&interval.e2e);
                }
                None => {
                    shared.open.insert(index, interval);
                }
            }
            shared.seal_old();
        }
    }

    fn record_latency(&mut self, sent_ns: u64, done_ns: u64, e2e: bool) {
        let us = latency_us(sent_ns, done_ns);
        let clamped = us > HIGHEST_US;
        if clamped {
            self.clamped += u64::from(self.config.in_window(sent_ns));
        }
        let interval = self.interval(done_ns);
        let h = if e2e {
            &mut interval.e2e
        } else {
            &mut interval.produce
        };
        h.saturating_record(us);
        if self.config.in_window(sent_ns) {
            let h = if e2e {
                &mut self.e2e
            } else {
                &mut self.produce
            };
            h.saturating_record(us);
        }
    }

    /// A producer sent `msgs` messages of `bytes` payload bytes in all at `now_ns`.
    pub fn record_sent(&mut self, now_ns: u64, msgs: u64, bytes: u64) {
        let c = &mut self.interval(now_ns).counters;
        c.sent_msgs += msgs;
        c.sent_bytes += bytes;
        if self.config.in_window(now_ns) {
            self.totals.sent_msgs += msgs;
            self.totals.sent_bytes += bytes;
        }
    }

    /// One message of `bytes` payload bytes, (scheduled to be) sent at `sent_ns`, was
    /// acknowledged at `acked_ns`.
    pub fn record_ack(&mut self, sent_ns: u64, acked_ns: u64, bytes: u64) {
        self.record_latency(sent_ns, acked_ns, false);
        let c = &mut self.interval(acked_ns).counters;
        c.acked_msgs += 1;
        c.acked_bytes += bytes;
        if self.config.in_window(acked_ns) {
            self.totals.acked_msgs += 1;
            self.totals.acked_bytes += bytes;
        }
    }

    /// A batch was acknowledged at `acked_ns`: one message per send time in `sent_ns`,
    /// `bytes` payload bytes in all.
    pub fn record_ack_batch(&mut self, sent_ns: &[u64], acked_ns: u64, bytes: u64) {
        for &s in sent_ns {
            self.record_latency(s, acked_ns, false);
        }
        let msgs = sent_ns.len() as u64;
        let c = &mut self.interval(acked_ns).counters;
        c.acked_msgs += msgs;
        c.acked_bytes += bytes;
        if self.config.in_window(acked_ns) {
            self.totals.acked_msgs += msgs;
            self.totals.acked_bytes += bytes;
        }
    }

    /// A consumer received a message of `bytes` payload bytes at `received_ns`, whose
    /// payload says it was (scheduled to be) sent at `sent_ns`.
    pub fn record_delivery(&mut self, sent_ns: u64, received_ns: u64, bytes: u64) {
        self.record_latency(sent_ns, received_ns, true);
        self.record_consumed(received_ns, 1, bytes);
    }

    /// A consumer received `msgs` messages (`bytes` in all) at `received_ns` without
    /// latency samples (corrupted payloads, re-reads, a backlog).
    pub fn record_consumed(&mut self, received_ns: u64, msgs: u64, bytes: u64) {
        let c = &mut self.interval(received_ns).counters;
        c.consumed_msgs += msgs;
        c.consumed_bytes += bytes;
        if self.config.in_window(received_ns) {
            self.totals.consumed_msgs += msgs;
            self.totals.consumed_bytes += bytes;
        }
    }

    /// Hands the current interval over if `now_ns` is past it (call on idle ticks so a
    /// quiet task does not hold back the live view).
    pub fn advance(&mut self, now_ns: u64) {
        if let Some((i, _)) = &self.current {
            if *i < self.config.interval_of(now_ns) {
                self.flush_interval();
            }
        }
    }

    /// Merges everything into the shared [`Stats`] (also done on drop).
    pub fn finish(mut self) {
        self.merge();
    }

    fn merge(&mut self) {
        self.flush_interval();
        let mut shared = self.stats.lock();
        shared.totals.add(&self.totals);
        let _ = shared.produce.add(&self.produce);
        let _ = shared.e2e.add(&self.e2e);
        shared.clamped += self.clamped;
        drop(shared);
        self.totals = Counters::default();
        self.produce.reset();
        self.e2e.reset();
        self.clamped = 0;
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.merge();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn stats(warmup_s: u64, measure_s: Option<u64>) -> Arc<Stats> {
        Stats::new(StatsConfig::new(
            Duration::from_secs(warmup_s),
            measure_s.map(Duration::from_secs),
        ))
    }

    #[test]
    fn latency_rounding_and_bounds() {
        assert_eq!(latency_us(0, 0), 1);
        assert_eq!(latency_us(0, 999), 1);
        assert_eq!(latency_us(0, 1001), 2);
        assert_eq!(latency_us(5, 3), 1);
        let mut h = latency_histogram(SIGNIFICANT_DIGITS);
        h.saturating_record(1);
        h.saturating_record(HIGHEST_US * 10);
        assert!(h.max() >= HIGHEST_US && h.max() < HIGHEST_US + HIGHEST_US / 500);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = latency_histogram(SIGNIFICANT_DIGITS);
        for v in 1..=100_000u64 {
            h.record(v).unwrap();
        }
        let p = Percentiles::of(&h);
        let close = |got: u64, want: u64| (got as f64 - want as f64).abs() / (want as f64) < 0.002;
        assert!(close(p.p50, 50_000), "{p:?}");
        assert!(close(p.p90, 90_000), "{p:?}");
        assert!(close(p.p99, 99_000), "{p:?}");
        assert!(close(p.p999, 99_900), "{p:?}");
        assert!(close(p.p9999, 99_990), "{p:?}");
        assert!(close(p.max, 100_000), "{p:?}");
        assert_eq!((p.min, p.count), (1, 100_000));
        assert_eq!(
            Percentiles::of(&latency_histogram(3)),
            Percentiles::default()
        );
        let json = serde_json::to_value(p).unwrap();
        for key in ["p50", "p90", "p99", "p999", "p9999", "max"] {
            assert!(json[key].is_u64(), "{key}");
        }
    }

    #[test]
    fn distribution_goes_as_far_as_the_samples_allow() {
        let mut h = latency_histogram(SIGNIFICANT_DIGITS);
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let d = distribution(&h);
        assert_eq!(d[0].percentile, 0.0);
        let last = d[d.len() - 1];
        assert_eq!((last.percentile, last.latency_us), (100.0, 1000));
        // 1000 samples resolve up to 99.9 %, not beyond.
        let before = d[d.len() - 2].percentile;
        assert!((before - 99.9).abs() < 1e-9, "{d:?}");
        assert!(d.windows(2).all(|w| w[0].latency_us <= w[1].latency_us));
        assert!(distribution(&latency_histogram(3)).is_empty());
    }

    #[test]
    fn warm_up_is_excluded_and_recorders_merge() {
        let stats = stats(2, Some(10));
        let mut producers: Vec<Recorder> = (0..3).map(|_| stats.recorder()).collect();
        let mut consumer = stats.recorder();
        for (k, r) in producers.iter_mut().enumerate() {
            // One message every 10 ms for 12 s, acked after 1 ms (+k µs).
            for i in 0..1200u64 {
                let sent = i * 10 * MS;
                let acked = sent + MS + k as u64 * 1000;
                r.record_sent(sent, 1, 100);
                r.record_ack(sent, acked, 100);
                consumer.record_delivery(sent, sent + 3 * MS, 100);
            }
        }
        drop(producers);
        consumer.finish();
        let s = stats.summary(12 * S);
        assert_eq!(s.measured_s, 10.0);
        // Events at t in [2 s, 12 s): 1000 per producer.
        assert_eq!(s.sent.msgs, 3000);
        assert_eq!(s.acked.msgs, 3000);
        assert_eq!(s.acked.bytes, 300_000);
        assert_eq!(s.consumed.msgs, 3000);
        assert!((s.acked.msgs_per_s - 300.0).abs() < 1e-9);
        assert!((s.acked.mb_per_s - 0.03).abs() < 1e-12);
        // Latency only for messages sent in the window.
        assert_eq!(s.produce_latency_us.count, 3000);
        assert_eq!(s.produce_latency_us.min, 1000);
        assert!(s.produce_latency_us.max >= 1002 && s.produce_latency_us.max < 1004);
        assert_eq!(s.e2e_latency_us.count, 3000);
        assert!((3000..=3002).contains(&s.e2e_latency_us.p50));
        // The series covers all 12 s, warm-up flagged.
        assert_eq!(s.series.len(), 12);
        assert!(s.series[0].warmup && s.series[1].warmup && !s.series[2].warmup);
        for p in &s.series {
            assert_eq!(p.counters.acked_msgs, 300, "{p:?}");
            assert!((p.produce_msgs_per_s - 300.0).abs() < 1e-9);
            assert!(p.produce_p99_us >= 1000 && p.produce_p99_us < 1010, "{p:?}");
            assert!(p.e2e_p99_us >= 2990 && p.e2e_p99_us < 3010, "{p:?}");
        }
        assert_eq!(s.clamped, 0);
        assert_eq!(s.run_totals.acked_msgs, 3600);
        assert_eq!(s.run_totals.consumed_msgs, 3600);
        assert_eq!(s.run_totals.sent_bytes, 360_000);
    }

    #[test]
    fn late_completions_count_for_latency_but_not_throughput_outside_the_window() {
        let stats = stats(1, Some(1));
        let mut r = stats.recorder();
        // Sent in the window, acked after it: latency counts, throughput does not.
        r.record_ack(1_900 * MS, 2_100 * MS, 10);
        // Sent during warm-up, acked in the window: throughput counts, latency does not.
        r.record_ack(900 * MS, 1_100 * MS, 10);
        // A latency beyond the histogram's range is clamped and counted.
        r.record_ack(1_000 * MS, 1_000 * MS + 61 * S, 10);
        drop(r);
        let s = stats.summary(u64::MAX);
        assert_eq!(s.measured_s, 1.0);
        assert_eq!(s.acked.msgs, 1);
        assert_eq!(s.produce_latency_us.count, 2);
        assert_eq!(s.clamped, 1);
        assert!(s.produce_latency_us.max >= HIGHEST_US);
    }

    #[test]
    fn batches_and_live_view() {
        let stats = stats(0, None);
        let mut r = stats.recorder();
        for second in 0..3u64 {
            for i in 0..100u64 {
                let t = second * S + i * 10 * MS;
                r.record_ack_batch(&[t, t, t, t], t + 2 * MS, 400);
            }
        }
        // Nothing past the first two intervals has been handed over yet.
        let live = stats.live();
        assert_eq!(live.interval_start_s, 0.0);
        assert_eq!(live.produce_msgs_per_s, 400.0);
        assert!(
            live.produce_p99_us >= 1990 && live.produce_p99_us <= 2010,
            "{live:?}"
        );
        assert_eq!(live.counters.acked_msgs, 800);
        r.advance(3 * S);
        let live = stats.live();
        assert_eq!(live.interval_start_s, 1.0);
        assert_eq!(live.counters.acked_msgs, 1200);
        r.finish();
        let s = stats.summary(3 * S);
        assert_eq!(s.acked.msgs, 1200);
        assert_eq!(s.produce_latency_us.count, 1200);
        assert_eq!(s.series.len(), 3);
    }

    #[test]
    fn old_intervals_are_sealed_and_memory_stays_bounded() {
        let stats = stats(0, None);
        let mut r = stats.recorder();
        for second in 0..50u64 {
            r.record_delivery(second * S, second * S + 5 * MS, 1);
        }
        r.advance(60 * S);
        {
            let shared = stats.lock();
            assert!(shared.open.len() as u64 <= KEEP_INTERVAL_HISTOGRAMS);
            assert!(shared.sealed.len() >= 45);
        }
        drop(r);
        let s = stats.summary(50 * S);
        assert_eq!(s.series.len(), 50);
        assert!(
            s.series
                .iter()
                .all(|p| p.e2e_p99_us >= 4990 && p.e2e_p99_us <= 5050)
        );
        assert_eq!(s.consumed.msgs, 50);
    }

    #[test]
    fn recorders_on_threads_merge_without_losing_counts() {
        let stats = stats(0, None);
        let handles: Vec<_> = (0..4)
            .map(|k| {
                let stats = Arc::clone(&stats);
                std::thread::spawn(move || {
                    let mut r = stats.recorder();
                    for i in 0..10_000u64 {
                        let t = i * MS / 10 + k;
                        r.record_ack(t, t + 50_000, 100);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = stats.summary(S);
        assert_eq!(s.acked.msgs, 40_000);
        assert_eq!(s.produce_latency_us.count, 40_000);
        assert_eq!(s.produce_latency_us.p50, 50);
        let total: u64 = s.series.iter().map(|p| p.counters.acked_msgs).sum();
        assert_eq!(total, 40_000);
    }
}
