//! The run report: one [`Report`] rendered as JSON ([`Report::to_json`]), as a plain-text
//! table for the terminal ([`Report::to_table`]) and as a single self-contained HTML
//! file with inline SVG plots ([`Report::to_html`]: no script, no external resource).
//!
//! The verdict ([`Verdict`]) fails when any message was lost, duplicated, reordered or
//! corrupted, when nothing was sent or received, or when an *enforced* target
//! (`--assert-msgs-per-s`, `--assert-p99-ms`) is missed. The default targets (1 M msgs/s,
//! p99 5 ms) are always shown but only decide the verdict when asserted.
//!
//! Which figures the targets are judged on:
//! * throughput: produce msgs/s, except in the `consume` scenario (consume msgs/s);
//! * p99: end-to-end p99 in the `e2e` and `group` scenarios, produce-acknowledgement p99
//!   in `produce`; the `consume` scenario (a backlog) has no latency to judge.
//!
//! Produce throughput counts acknowledged messages, or sent ones with acks `none`
//! (which returns no acknowledgement). MB means 10^6 payload bytes.

use crate::baseline::{DiskBaseline, DiskSync, QuicBaseline};
use crate::config::{AckLevel, ConfigEcho, Scenario, Targets};
use crate::stats::{DistributionPoint, IntervalPoint, Percentiles, StatsSummary};
use crate::verify::Summary;
use serde::Serialize;
use std::fmt::Write as _;

/// The raw limits measured in the run, or why they are missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Baselines {
    /// Raw QUIC bulk transfer.
    pub quic: Option<QuicBaseline>,
    /// Raw sequential disk writes.
    pub disk: Option<DiskBaseline>,
    /// Why a baseline is missing (skipped or failed).
    pub notes: Vec<String>,
}

/// Share of an open loop's offered rate a run must reach to count as keeping it.
pub const KEPT_SCHEDULE: f64 = 0.99;

/// Top-level fields every JSON report carries (the contract).
pub const REQUIRED_FIELDS: [&str; 15] = [
    "scenario",
    "messages_sent",
    "messages_acked",
    "messages_received",
    "lost",
    "duplicated",
    "reordered",
    "corrupted",
    "produce_msgs_per_s",
    "consume_msgs_per_s",
    "produce_mb_per_s",
    "produce_latency_us",
    "e2e_latency_us",
    "raw_quic_mb_per_s",
    "raw_disk_mb_per_s",
];

/// Everything a report is made from.
#[derive(Debug, Clone)]
pub struct ReportInputs {
    /// The options of the run.
    pub config: ConfigEcho,
    /// The targets of the verdict.
    pub targets: Targets,
    /// Wall-clock length of the run (warm-up included, drain excluded), s.
    pub duration_s: f64,
    /// Warm-up, s.
    pub warmup_s: f64,
    /// The statistics.
    pub stats: StatsSummary,
    /// The verifier's counts, after the consumers drained.
    pub verify: Summary,
    /// The raw limits.
    pub baselines: Baselines,
}

/// One judged target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What is judged, e.g. "produce msgs/s".
    pub name: String,
    /// The target.
    pub target: f64,
    /// The measured value (`None`: nothing to judge).
    pub actual: Option<f64>,
    /// Whether the target was met (`None`: nothing to judge).
    pub met: Option<bool>,
    /// Whether this check decides the verdict (it was asserted).
    pub enforced: bool,
}

/// Pass or fail, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// True when nothing failed.
    pub pass: bool,
    /// Every reason the run failed (empty when it passed).
    pub reasons: Vec<String>,
    /// The throughput and latency checks, enforced or not.
    pub checks: Vec<Check>,
    /// Remarks that do not fail the run.
    pub notes: Vec<String>,
}

/// The run report. The field names are the JSON report's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Scenario: produce, consume, e2e or group.
    pub scenario: String,
    /// Messages sent over the whole run.
    pub messages_sent: u64,
    /// Distinct messages acknowledged over the whole run.
    pub messages_acked: u64,
    /// Distinct messages received intact over the whole run.
    pub messages_received: u64,
    /// Acknowledged messages never received intact.
    pub lost: u64,
    /// Deliveries of a message already received at another offset.
    pub duplicated: u64,
    /// Backward steps of a (producer, partition) sequence.
    pub reordered: u64,
    /// Deliveries that failed verification.
    pub corrupted: u64,
    /// Produce throughput in the measured window, msgs/s.
    pub produce_msgs_per_s: f64,
    /// Consume throughput in the measured window, msgs/s.
    pub consume_msgs_per_s: f64,
    /// Produce throughput in the measured window, MB/s.
    pub produce_mb_per_s: f64,
    /// Consume throughput in the measured window, MB/s.
    pub consume_mb_per_s: f64,
    /// Produce-acknowledgement latency, µs.
    pub produce_latency_us: Percentiles,
    /// End-to-end latency (scheduled send to consumer receipt), µs.
    pub e2e_latency_us: Percentiles,
    /// Raw QUIC bulk throughput, MB/s (`null` when not measured).
    pub raw_quic_mb_per_s: Option<f64>,
    /// Raw sequential disk write bandwidth, MB/s (`null` when not measured).
    pub raw_disk_mb_per_s: Option<f64>,
    /// The larger of produce and consume MB/s over raw QUIC MB/s.
    pub ratio_to_raw_quic: Option<f64>,
    /// Produce MB/s over raw disk MB/s.
    pub ratio_to_raw_disk: Option<f64>,
    /// Wall-clock length of the run, s.
    pub duration_s: f64,
    /// Warm-up, s.
    pub warmup_s: f64,
    /// Length of the measured window, s.
    pub measured_s: f64,
    /// Pass or fail, and why.
    pub verdict: Verdict,
    /// All of the verifier's counts.
    pub verification: Summary,
    /// The raw limits in detail.
    pub baselines: Baselines,
    /// The options of the run.
    pub config: ConfigEcho,
    /// The verdict's targets.
    pub targets: Targets,
    /// Latencies above 60 s (recorded as 60 s).
    pub latency_clamped: u64,
    /// Produce latency by percentile (for the distribution plot).
    pub produce_latency_distribution: Vec<DistributionPoint>,
    /// End-to-end latency by percentile (for the distribution plot).
    pub e2e_latency_distribution: Vec<DistributionPoint>,
    /// Per-interval throughput and p99 over the whole run.
    pub series: Vec<IntervalPoint>,
}

fn ratio(ours: f64, raw: Option<f64>) -> Option<f64> {
    raw.filter(|r| *r > 0.0).map(|r| ours / r)
}

impl Report {
    /// Builds the report and its verdict.
    pub fn build(inputs: ReportInputs) -> Report {
        let ReportInputs {
            config,
            targets,
            duration_s,
            warmup_s,
            stats,
            verify,
            baselines,
        } = inputs;
        let produce = if config.acks == AckLevel::None {
            stats.sent
        } else {
            stats.acked
        };
        let raw_quic = baselines.quic.map(|q| q.mb_per_s);
        let raw_disk = baselines.disk.map(|d| d.mb_per_s);
        let mut report = Report {
            scenario: config.scenario.as_str().to_owned(),
            messages_sent: stats.run_totals.sent_msgs,
            messages_acked: verify.acked,
            messages_received: verify.received,
            lost: verify.lost,
            duplicated: verify.duplicated,
            reordered: verify.reordered,
            corrupted: verify.corrupted,
            produce_msgs_per_s: produce.msgs_per_s,
            consume_msgs_per_s: stats.consumed.msgs_per_s,
            produce_mb_per_s: produce.mb_per_s,
            consume_mb_per_s: stats.consumed.mb_per_s,
            produce_latency_us: stats.produce_latency_us,
            e2e_latency_us: stats.e2e_latency_us,
            raw_quic_mb_per_s: raw_quic,
            raw_disk_mb_per_s: raw_disk,
            ratio_to_raw_quic: ratio(produce.mb_per_s.max(stats.consumed.mb_per_s), raw_quic),
            ratio_to_raw_disk: ratio(produce.mb_per_s, raw_disk),
            duration_s,
            warmup_s,
            measured_s: stats.measured_s,
            verdict: Verdict {
                pass: true,
                reasons: Vec::new(),
                checks: Vec::new(),
                notes: Vec::new(),
            },
            verification: verify,
            baselines,
            config,
            targets,
            latency_clamped: stats.clamped,
            produce_latency_distribution: stats.produce_distribution,
            e2e_latency_distribution: stats.e2e_distribution,
            series: stats.series,
        };
        report.verdict = report.judge();
        report
    }

    /// The verdict on the report's figures.
    fn judge(&self) -> Verdict {
        let mut reasons = Vec::new();
        let mut notes = Vec::new();
        for (count, what) in [
            (self.lost, "lost"),
            (self.duplicated, "duplicated"),
            (self.reordered, "reordered"),
            (self.corrupted, "corrupted"),
        ] {
            if count > 0 {
                reasons.push(format!("{} {what}", plural(count, "message")));
            }
        }
        let scenario = self.config.scenario;
        if scenario.produces() && self.messages_sent == 0 {
            reasons.push("no message was sent".to_owned());
        }
        if scenario.consumes() && self.messages_received == 0 {
            reasons.push("no message was received".to_owned());
        }
        if self.config.acks == AckLevel::None {
            notes.push(
                "acks none: the server confirms nothing, so losses cannot be detected".to_owned(),
            );
        }
        if self.latency_clamped > 0 {
            notes.push(format!(
                "{} above 60 s, recorded as 60 s",
                plural(self.latency_clamped, "latency")
            ));
        }
        if self.verification.redelivered > 0 {
            notes.push(format!(
                "{} re-read after rebalances or restarts (not a fault)",
                plural(self.verification.redelivered, "record")
            ));
        }
        if self.verification.received_unacked > 0 && self.config.acks != AckLevel::None {
            notes.push(format!(
                "{} received whose acknowledgement never arrived (not a fault)",
                plural(self.verification.received_unacked, "message")
            ));
        }

        let t = self.targets;
        let (rate_name, rate) = match scenario {
            Scenario::Consume => ("consume msgs/s", self.consume_msgs_per_s),
            _ => ("produce msgs/s", self.produce_msgs_per_s),
        };
        // Open loop, the producers offer a fixed rate: the run reaches the target when
        // it offers at least the target and keeps that schedule (a system that cannot
        // keep up falls behind it, and the measured rate drops below what was offered).
        let met = match self.config.rate.filter(|_| scenario.produces()) {
            Some(offered) => {
                notes.push(format!(
                    "open loop at {} msgs/s: the throughput target is met when the run keeps \
                     that schedule (at least {:.0} % of it)",
                    fmt_int(offered),
                    KEPT_SCHEDULE * 100.0
                ));
                offered >= t.msgs_per_s && rate >= offered * KEPT_SCHEDULE
            }
            None => rate >= t.msgs_per_s,
        };
        let rate_check = Check {
            name: rate_name.to_owned(),
            target: t.msgs_per_s,
            actual: Some(rate),
            met: Some(met),
            enforced: t.enforce_msgs_per_s,
        };
        let latency = match scenario {
            Scenario::Produce => Some(("produce p99 ms", self.produce_latency_us)),
            Scenario::E2e | Scenario::Group => Some(("end-to-end p99 ms", self.e2e_latency_us)),
            Scenario::Consume => None,
        };
        let p99_ms = latency
            .filter(|(_, p)| p.count > 0)
            .map(|(_, p)| p.p99 as f64 / 1000.0);
        let p99_check = Check {
            name: latency.map_or("p99 ms", |(n, _)| n).to_owned(),
            target: t.p99_ms,
            actual: p99_ms,
            met: p99_ms.map(|v| v <= t.p99_ms),
            enforced: t.enforce_p99,
        };
        for c in [&rate_check, &p99_check] {
            if !c.enforced {
                continue;
            }
            match (c.met, c.actual) {
                (Some(false), Some(v)) => {
                    let cmp = if c.name.contains("p99") {
                        "above"
                    } else {
                        "below"
                    };
                    reasons.push(format!(
                        "{} {} is {cmp} the target {}",
                        c.name,
                        fmt_num(v),
                        fmt_num(c.target)
                    ));
                }
                (None, _) => reasons.push(format!("{}: nothing measured to judge", c.name)),
                _ => {}
            }
        }
        Verdict {
            pass: reasons.is_empty(),
            reasons,
            checks: vec![rate_check, p99_check],
            notes,
        }
    }

    /// Whether the run passed (the process should exit non-zero otherwise).
    pub fn passed(&self) -> bool {
        self.verdict.pass
    }

    /// The JSON report (pretty-printed).
    pub fn to_json(&self) -> String {
        // Serializing plain structs of numbers and strings cannot fail (NaN and
        // infinities become null).
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// One line describing the workload.
    pub fn headline(&self) -> String {
        let c = &self.config;
        let load = match c.rate {
            Some(r) => format!("open loop at {} msgs/s", fmt_int(r)),
            None if c.max_unconsumed > 0 => format!(
                "closed loop, {} batches in flight, at most {} messages unconsumed",
                c.max_in_flight,
                fmt_int(c.max_unconsumed as f64)
            ),
            None => format!("closed loop, {} batches in flight", c.max_in_flight),
        };
        format!(
            "{} against {}: {} producers, {} consumers, {} x {} partitions, {} B messages, \
             keys {}, batches {} B / {} ms / {} in flight per partition, compression {}, \
             acks {}, {load}",
            c.scenario.as_str(),
            c.server,
            c.producers,
            c.consumers,
            plural(u64::from(c.topics), "topic"),
            c.partitions,
            c.message_size,
            c.keys,
            c.batch_bytes,
            c.linger_ms,
            c.partition_window,
            c.compression.as_str(),
            c.acks.as_str(),
        )
    }

    /// The terminal summary: plain text in aligned columns.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.headline());
        let _ = writeln!(
            out,
            "measured {:.1} s after a {:.1} s warm-up ({:.1} s in all)\n",
            self.measured_s, self.warmup_s, self.duration_s
        );
        let pct = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{:.1} %", r * 100.0));
        let produce_quic = ratio(self.produce_mb_per_s, self.raw_quic_mb_per_s);
        let consume_quic = ratio(self.consume_mb_per_s, self.raw_quic_mb_per_s);
        out.push_str(&table(
            &["throughput", "msgs/s", "MB/s", "of raw QUIC", "of raw disk"],
            &[
                vec![
                    "produce".into(),
                    fmt_int(self.produce_msgs_per_s),
                    format!("{:.2}", self.produce_mb_per_s),
                    pct(produce_quic),
                    pct(self.ratio_to_raw_disk),
                ],
                vec![
                    "consume".into(),
                    fmt_int(self.consume_msgs_per_s),
                    format!("{:.2}", self.consume_mb_per_s),
                    pct(consume_quic),
                    "-".into(),
                ],
            ],
        ));
        out.push('\n');
        let lat = |name: &str, p: &Percentiles| {
            let mut row = vec![name.to_owned()];
            for v in [p.p50, p.p90, p.p99, p.p999, p.p9999, p.max] {
                row.push(if p.count == 0 {
                    "-".into()
                } else {
                    fmt_int(v as f64)
                });
            }
            row.push(fmt_int(p.count as f64));
            row
        };
        out.push_str(&table(
            &[
                "latency (µs)",
                "p50",
                "p90",
                "p99",
                "p99.9",
                "p99.99",
                "max",
                "samples",
            ],
            &[
                lat("produce ack", &self.produce_latency_us),
                lat("end-to-end", &self.e2e_latency_us),
            ],
        ));
        out.push('\n');
        let v = &self.verification;
        out.push_str(&table(
            &[
                "messages",
                "sent",
                "acked",
                "received",
                "lost",
                "duplicated",
                "reordered",
                "corrupted",
                "re-read",
            ],
            &[vec![
                "count".into(),
                fmt_int(self.messages_sent as f64),
                fmt_int(self.messages_acked as f64),
                fmt_int(self.messages_received as f64),
                fmt_int(self.lost as f64),
                fmt_int(self.duplicated as f64),
                fmt_int(self.reordered as f64),
                fmt_int(self.corrupted as f64),
                fmt_int(v.redelivered as f64),
            ]],
        ));
        out.push('\n');
        let mut rows = Vec::new();
        if let Some(q) = &self.baselines.quic {
            rows.push(vec![
                "raw QUIC bulk transfer".into(),
                format!("{:.1}", q.mb_per_s),
                format!("{} MiB over one stream", q.bytes >> 20),
            ]);
        }
        if let Some(d) = &self.baselines.disk {
            let how = match d.sync {
                DiskSync::EachChunk => "fdatasync after each 1 MiB",
                DiskSync::AtEnd => "fdatasync at the end",
            };
            rows.push(vec![
                "raw disk sequential write".into(),
                format!("{:.1}", d.mb_per_s),
                format!("{} MiB, {how}", d.bytes >> 20),
            ]);
        }
        if !rows.is_empty() {
            out.push_str(&table_aligned(&["baseline", "MB/s", "how"], &rows, &[2]));
        }
        for n in &self.baselines.notes {
            let _ = writeln!(out, "baseline: {n}");
        }
        out.push('\n');
        let _ = writeln!(
            out,
            "verdict: {}",
            if self.verdict.pass { "PASS" } else { "FAIL" }
        );
        for c in &self.verdict.checks {
            let _ = writeln!(out, "  {}", check_line(c));
        }
        for r in &self.verdict.reasons {
            let _ = writeln!(out, "  FAIL: {r}");
        }
        for n in &self.verdict.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        out
    }

    /// The HTML report: one self-contained file (inline CSS and SVG, no script, no
    /// external resource) with the summary, throughput and p99 over time, and the
    /// latency percentile distribution.
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let verdict = if self.verdict.pass { "PASS" } else { "FAIL" };
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>strata-loadgen: {} {verdict}</title>\n<style>{CSS}</style>\n</head>\n<body>\n\
             <h1>strata-loadgen <span class=\"{}\">{verdict}</span></h1>\n<p>{}</p>\n",
            esc(&self.scenario),
            verdict.to_lowercase(),
            esc(&self.headline()),
        );
        h.push_str("<h2>Summary</h2>\n<pre>");
        h.push_str(&esc(&self.to_table()));
        h.push_str("</pre>\n");

        let shade = (self.warmup_s > 0.0).then_some((0.0, self.warmup_s, "warm-up"));
        let mid = |p: &IntervalPoint| p.start_s;
        let throughput = Chart {
            title: "Throughput over time",
            x_label: "time since start (s)",
            y_label: "messages per second",
            y_log: false,
            x_ticks: None,
            shade,
            series: vec![
                Series {
                    name: "produce",
                    color: PRODUCE_COLOR,
                    points: self
                        .series
                        .iter()
                        .map(|p| (mid(p), p.produce_msgs_per_s))
                        .collect(),
                },
                Series {
                    name: "consume",
                    color: CONSUME_COLOR,
                    points: self
                        .series
                        .iter()
                        .map(|p| (mid(p), p.consume_msgs_per_s))
                        .collect(),
                },
            ],
        };
        let p99 = Chart {
            title: "p99 latency over time",
            x_label: "time since start (s)",
            y_label: "p99 latency (ms)",
            y_log: false,
            x_ticks: None,
            shade,
            series: vec![
                Series {
                    name: "produce ack",
                    color: PRODUCE_COLOR,
                    points: self
                        .series
                        .iter()
                        .filter(|p| p.produce_p99_us > 0)
                        .map(|p| (mid(p), p.produce_p99_us as f64 / 1000.0))
                        .collect(),
                },
                Series {
                    name: "end-to-end",
                    color: CONSUME_COLOR,
                    points: self
                        .series
                        .iter()
                        .filter(|p| p.e2e_p99_us > 0)
                        .map(|p| (mid(p), p.e2e_p99_us as f64 / 1000.0))
                        .collect(),
                },
            ],
        };
        let dist = |d: &[DistributionPoint], count: u64| -> Vec<(f64, f64)> {
            d.iter()
                .map(|p| {
                    (
                        percentile_x(p.percentile, count),
                        p.latency_us as f64 / 1000.0,
                    )
                })
                .collect()
        };
        let max_x = [
            (
                &self.produce_latency_distribution,
                self.produce_latency_us.count,
            ),
            (&self.e2e_latency_distribution, self.e2e_latency_us.count),
        ]
        .iter()
        .filter(|(d, _)| !d.is_empty())
        .map(|(_, n)| percentile_x(100.0, *n))
        .fold(1.0f64, f64::max);
        let ticks = (0..=(max_x.floor() as u32).min(7))
            .map(|k| (f64::from(k), percentile_label(k)))
            .collect();
        let distribution = Chart {
            title: "Latency by percentile",
            x_label: "percentile",
            y_label: "latency (ms, log scale)",
            y_log: true,
            x_ticks: Some(ticks),
            shade: None,
            series: vec![
                Series {
                    name: "produce ack",
                    color: PRODUCE_COLOR,
                    points: dist(
                        &self.produce_latency_distribution,
                        self.produce_latency_us.count,
                    ),
                },
                Series {
                    name: "end-to-end",
                    color: CONSUME_COLOR,
                    points: dist(&self.e2e_latency_distribution, self.e2e_latency_us.count),
                },
            ],
        };
        for chart in [&throughput, &p99, &distribution] {
            let _ = write!(h, "<h2>{}</h2>\n{}\n", esc(chart.title), chart.render());
        }
        h.push_str("<h2>Configuration</h2>\n<table>\n");
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&self.config) {
            for (k, v) in map {
                let v = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Null => "-".to_owned(),
                    other => other.to_string(),
                };
                let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(&k), esc(&v));
            }
        }
        h.push_str("</table>\n</body>\n</html>\n");
        h
    }
}

fn check_line(c: &Check) -> String {
    let rel = if c.name.contains("p99") {
        "at most"
    } else {
        "at least"
    };
    let status = match c.met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    let how = if c.enforced {
        "asserted"
    } else {
        "default target, not asserted"
    };
    let actual = c.actual.map_or("-".to_owned(), fmt_num);
    format!(
        "{} {actual}, target {rel} {}: {status} ({how})",
        c.name,
        fmt_num(c.target)
    )
}

fn plural(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else if let Some(stem) = what.strip_suffix('y') {
        format!("{n} {stem}ies")
    } else {
        format!("{n} {what}s")
    }
}

/// Formats a number for humans: thousands separators for large values, 3 significant
/// digits for small ones.
fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    if v.abs() >= 1000.0 {
        fmt_int(v)
    } else if v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Rounds and groups thousands: 1234567.8 -> "1,234,568".
fn fmt_int(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    let n = v.round() as i128;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Renders rows under headers: first column left-aligned, the others right-aligned.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    table_aligned(headers, rows, &[])
}

/// Like [`table`], with the columns listed in `left` (besides the first) left-aligned.
fn table_aligned(headers: &[&str], rows: &[Vec<String>], left: &[usize]) -> String {
    let cols = headers.len();
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(cols) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(cell.chars().count());
            if i == 0 {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            } else if left.contains(&i) {
                s.push_str("  ");
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(headers.to_vec());
    let total: usize = width.iter().sum::<usize>() + 2 * (cols.saturating_sub(1));
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Position of a percentile on the distribution plot's x axis: `log10(1 / (1 - q))`
/// (0 % at 0, 90 % at 1, 99 % at 2, ...); the maximum (100 %) sits where one sample in
/// `count` lies, `log10(count)`.
fn percentile_x(percentile: f64, count: u64) -> f64 {
    let q = percentile / 100.0;
    if q >= 1.0 {
        (count.max(10) as f64).log10()
    } else {
        -(1.0 - q).log10()
    }
}

fn percentile_label(k: u32) -> String {
    match k {
        0 => "0%".to_owned(),
        1 => "90%".to_owned(),
        k => format!("99.{}%", "9".repeat(k as usize - 2)).replace("99.%", "99%"),
    }
}

const PRODUCE_COLOR: &str = "#1f77b4";
const CONSUME_COLOR: &str = "#d62728";
const CSS: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:900px}\
h1 span{padding:0 .4em;border-radius:4px;color:#fff}.pass{background:#2a9d4b}\
.fail{background:#c62828}pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:13px}\
table{border-collapse:collapse}th,td{text-align:left;padding:2px 12px 2px 0;font-size:14px}\
svg{background:#fff;border:1px solid #ddd}svg text{font-size:12px;fill:#333}";

/// One line of a chart.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    points: Vec<(f64, f64)>,
}

/// A line chart rendered as inline SVG.
struct Chart<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    y_log: bool,
    /// Fixed x ticks (position, label); default: evenly spaced numbers.
    x_ticks: Option<Vec<(f64, String)>>,
    /// An x range to shade, with a label.
    shade: Option<(f64, f64, &'a str)>,
    series: Vec<Series<'a>>,
}

const W: f64 = 820.0;
const H: f64 = 320.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 50.0;

/// A "nice" step (1, 2 or 5 times a power of ten) near `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    let n = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * p
}

/// Compact tick label: 1.5M, 200k, 12, 0.25.
fn tick_label(v: f64) -> String {
    let a = v.abs();
    let s = if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    };
    fn trim(v: f64) -> String {
        let s = format!("{v:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" {
            "0".to_owned()
        } else {
            s.to_owned()
        }
    }
    s
}

impl Chart<'_> {
    fn render(&self) -> String {
        let points = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.y_log || *y > 0.0))
        };
        let mut svg = format!(
            "<svg width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">\n",
            esc(self.title)
        );
        if points().next().is_none() {
            let _ = write!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no data</text>\n</svg>",
                W / 2.0,
                H / 2.0
            );
            return svg;
        }
        let (mut x0, mut x1) = points().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| {
            (a.min(*x), b.max(*x))
        });
        if let Some(ticks) = &self.x_ticks {
            for (x, _) in ticks {
                x0 = x0.min(*x);
                x1 = x1.max(*x);
            }
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        let (ymin, ymax) = points().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| {
            (a.min(*y), b.max(*y))
        });
        // y axis: linear from 0 with nice ticks, or log10 over whole decades.
        let (y0, y1, yticks): (f64, f64, Vec<f64>) = if self.y_log {
            let lo = ymin.log10().floor();
            let mut hi = ymax.log10().ceil();
            if hi <= lo {
                hi = lo + 1.0;
            }
            let ticks = (lo as i32..=hi as i32).map(|k| 10f64.powi(k)).collect();
            (lo, hi, ticks)
        } else {
            let top = if ymax > 0.0 { ymax * 1.1 } else { 1.0 };
            let step = nice_step(top / 5.0);
            let hi = (top / step).ceil() * step;
            let ticks = (0..=((hi / step).round() as u32))
                .map(|k| f64::from(k) * step)
                .collect();
            (0.0, hi, ticks)
        };
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let ty = |y: f64| if self.y_log { y.log10() } else { y };
        let sy = |y: f64| TOP + ph - (ty(y) - y0) / (y1 - y0) * ph;

        if let Some((a, b, label)) = self.shade {
            let (a, b) = (sx(a.max(x0)), sx(b.min(x1)));
            if b > a {
                let _ = writeln!(
                    svg,
                    "<rect x=\"{a:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{ph}\" fill=\"#eee\"/>\
                     <text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                    b - a,
                    (a + b) / 2.0,
                    TOP + 14.0,
                    esc(label)
                );
            }
        }
        // Grid and y tick labels.
        for y in &yticks {
            let py = sy(*y);
            let _ = writeln!(
                svg,
                "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT + pw,
                LEFT - 6.0,
                py + 4.0,
                tick_label(*y)
            );
        }
        // x ticks.
        let xticks: Vec<(f64, String)> = match &self.x_ticks {
            Some(t) => t.clone(),
            None => {
                let step = nice_step((x1 - x0) / 8.0);
                let first = (x0 / step).ceil() as i64;
                let last = (x1 / step).floor() as i64;
                (first..=last)
                    .map(|k| (k as f64 * step, tick_label(k as f64 * step)))
                    .collect()
            }
        };
        for (x, label) in &xticks {
            let px = sx(*x);
            let _ = writeln!(
                svg,
                "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"#eee\"/>\
                 <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                TOP + ph,
                TOP + ph + 16.0,
                esc(label)
            );
        }
        // Axes and their labels.
        let _ = writeln!(
            svg,
            "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            LEFT + pw / 2.0,
            H - 10.0,
            esc(self.x_label),
            TOP + ph / 2.0,
            esc(self.y_label)
        );
        // Lines, point markers and the legend.
        for (i, s) in self.series.iter().enumerate() {
            let pts: Vec<String> = s
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.y_log || *y > 0.0))
                .map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
                esc(s.color),
                pts.join(" ")
            );
            if pts.len() <= 60 {
                for p in &pts {
                    let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                    let _ = write!(
                        svg,
                        "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"2.5\" fill=\"{}\"/>",
                        esc(s.color)
                    );
                }
                svg.push('\n');
            }
            let lx = LEFT + 10.0 + 140.0 * i as f64;
            let _ = writeln!(
                svg,
                "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"14\" height=\"4\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                TOP + ph + 30.0,
                esc(s.color),
                lx + 18.0,
                TOP + ph + 36.0,
                esc(s.name)
            );
        }
        svg.push_str("</svg>");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Args;
    use crate::stats::{Counters, Stats, StatsConfig, Throughput};
    use clap::Parser;
    use std::time::Duration;

    fn args(extra: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("strata-loadgen").chain(extra.iter().copied()))
            .unwrap()
    }

    /// A small but real run through the recorders: 3 s, 1 s warm-up.
    fn stats_summary() -> StatsSummary {
        let stats = Stats::new(StatsConfig::new(
            Duration::from_secs(1),
            Some(Duration::from_secs(2)),
        ));
        let mut p = stats.recorder();
        let mut c = stats.recorder();
        for i in 0..3000u64 {
            let t = i * 1_000_000;
            p.record_sent(t, 1, 100);
            p.record_ack(t, t + 800_000 + (i % 100) * 10_000, 100);
            c.record_delivery(t, t + 1_500_000 + (i % 10) * 100_000, 100);
        }
        drop((p, c));
        stats.summary(3_000_000_000)
    }

    fn inputs(a: &Args, verify: Summary) -> ReportInputs {
        ReportInputs {
            config: a.echo(),
            targets: a.targets(),
            duration_s: 3.0,
            warmup_s: 1.0,
            stats: stats_summary(),
            verify,
            baselines: Baselines {
                quic: Some(QuicBaseline {
                    bytes: 256 << 20,
                    secs: 1.0,
                    mb_per_s: 2.0,
                }),
                disk: Some(DiskBaseline {
                    bytes: 256 << 20,
                    sync: DiskSync::AtEnd,
                    write_s: 0.1,
                    sync_s: 0.1,
                    mb_per_s: 0.4,
                }),
                notes: vec![],
            },
        }
    }

    fn clean() -> Summary {
        Summary {
            acked: 3000,
            received: 3000,
            deliveries: 3000,
            ..Summary::default()
        }
    }

    #[test]
    fn json_has_the_required_fields() {
        let r = Report::build(inputs(&args(&[]), clean()));
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for key in REQUIRED_FIELDS.iter().chain(&["consume_mb_per_s"]) {
            assert!(v.get(key).is_some_and(|x| !x.is_null()), "missing {key}");
        }
        for key in ["produce_latency_us", "e2e_latency_us"] {
            for p in ["p50", "p90", "p99", "p999", "p9999", "max"] {
                assert!(v[key][p].is_u64(), "{key}.{p}");
            }
        }
        assert_eq!(v["scenario"], "e2e");
        assert_eq!(v["messages_sent"], 3000);
        // About 2000 acks of 100 B each in the 2 s window.
        let close = |a: f64, b: f64| (a - b).abs() / b < 0.005;
        assert!(
            close(r.produce_msgs_per_s, 1000.0),
            "{}",
            r.produce_msgs_per_s
        );
        assert!(close(r.produce_mb_per_s, 0.1));
        assert!(close(r.ratio_to_raw_quic.unwrap(), 0.05));
        assert!(close(r.ratio_to_raw_disk.unwrap(), 0.25));
        assert!(v["verdict"]["pass"].as_bool().unwrap());
        assert!(v["series"].as_array().unwrap().len() >= 3);
        assert!(v["config"]["acks"] == "written");
    }

    #[test]
    fn integrity_faults_fail_the_run() {
        for (field, what) in [
            ("lost", "lost"),
            ("dup", "duplicated"),
            ("reo", "reordered"),
            ("cor", "corrupted"),
        ] {
            let mut s = clean();
            match field {
                "lost" => s.lost = 2,
                "dup" => s.duplicated = 1,
                "reo" => s.reordered = 3,
                _ => s.corrupted = 1,
            }
            let r = Report::build(inputs(&args(&[]), s));
            assert!(!r.passed(), "{field}");
            assert!(
                r.verdict.reasons.iter().any(|x| x.contains(what)),
                "{:?}",
                r.verdict.reasons
            );
            assert!(r.to_table().contains("verdict: FAIL"));
        }
    }

    #[test]
    fn open_loop_throughput_is_met_by_keeping_the_offered_schedule() {
        // The synthetic run measures 1000 msgs/s.
        let run = |extra: &[&str]| Report::build(inputs(&args(extra), clean()));
        // Offered 1010, kept 99 % of it: the target of 1000 is met.
        let r = run(&["--rate", "1010", "--assert-msgs-per-s", "1000"]);
        assert!(r.passed(), "{:?}", r.verdict);
        assert_eq!(r.verdict.checks[0].met, Some(true));
        assert!(
            r.verdict
                .notes
                .iter()
                .any(|n| n.contains("keeps that schedule"))
        );
        // Closed loop, the measured rate itself must reach the target.
        let r = run(&["--closed-loop", "--assert-msgs-per-s", "1010"]);
        assert!(!r.passed(), "{:?}", r.verdict);
        // Offered 1100 but only 1000 sent: behind the schedule, missed.
        let r = run(&["--rate", "1100", "--assert-msgs-per-s", "1000"]);
        assert!(!r.passed(), "{:?}", r.verdict);
        // Offered less than the target: missed however well it kept up.
        let r = run(&["--rate", "500", "--assert-msgs-per-s", "1000"]);
        assert_eq!(r.verdict.checks[0].met, Some(false));
    }

    #[test]
    fn default_targets_are_shown_but_only_asserted_ones_fail() {
        // 1000 msgs/s is far below the default 1 M target, but it is not asserted.
        let r = Report::build(inputs(&args(&[]), clean()));
        assert!(r.passed(), "{:?}", r.verdict);
        let rate = &r.verdict.checks[0];
        assert_eq!((rate.met, rate.enforced), (Some(false), false));
        assert!(
            r.to_table()
                .contains("MISSED (default target, not asserted)")
        );

        let r = Report::build(inputs(&args(&["--assert-msgs-per-s", "5000"]), clean()));
        assert!(!r.passed());
        assert!(
            r.verdict.reasons[0].contains("below the target 5,000"),
            "{:?}",
            r.verdict.reasons
        );

        let r = Report::build(inputs(&args(&["--assert-msgs-per-s", "900"]), clean()));
        assert!(r.passed(), "{:?}", r.verdict);

        // e2e p99 is about 2.4 ms here.
        let r = Report::build(inputs(&args(&["--assert-p99-ms", "1"]), clean()));
        assert!(!r.passed());
        assert!(
            r.verdict.reasons[0].contains("end-to-end p99"),
            "{:?}",
            r.verdict.reasons
        );
        let r = Report::build(inputs(&args(&["--assert-p99-ms", "3"]), clean()));
        assert!(r.passed(), "{:?}", r.verdict);
        // In the produce scenario the produce-ack p99 (under 2 ms) is judged.
        let r = Report::build(inputs(
            &args(&["--scenario", "produce", "--assert-p99-ms", "2"]),
            clean(),
        ));
        assert!(r.passed(), "{:?}", r.verdict);
        // A consume-only run has no latency to judge: asserting one fails clearly.
        let r = Report::build(inputs(
            &args(&["--scenario", "consume", "--assert-p99-ms", "2"]),
            clean(),
        ));
        assert!(!r.passed());
        assert!(
            r.verdict.reasons[0].contains("nothing measured"),
            "{:?}",
            r.verdict.reasons
        );
    }

    #[test]
    fn an_idle_run_fails_and_acks_none_counts_sends() {
        let a = args(&[]);
        let mut i = inputs(&a, Summary::default());
        i.stats.run_totals = Counters::default();
        let r = Report::build(i);
        assert!(!r.passed());
        assert!(
            r.verdict
                .reasons
                .iter()
                .any(|x| x.contains("no message was sent"))
        );
        assert!(
            r.verdict
                .reasons
                .iter()
                .any(|x| x.contains("no message was received"))
        );

        let a = args(&["--acks", "none"]);
        let mut i = inputs(&a, clean());
        i.stats.sent = Throughput::new(500, 50_000, 1.0);
        i.stats.acked = Throughput::default();
        let r = Report::build(i);
        assert_eq!(r.produce_msgs_per_s, 500.0);
        assert!(
            r.verdict
                .notes
                .iter()
                .any(|n| n.contains("losses cannot be detected"))
        );
    }

    #[test]
    fn missing_baselines_are_null() {
        let a = args(&["--no-baselines"]);
        let mut i = inputs(&a, clean());
        i.baselines = Baselines {
            notes: vec!["skipped (--no-baselines)".into()],
            ..Baselines::default()
        };
        let r = Report::build(i);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert!(v["raw_quic_mb_per_s"].is_null() && v["raw_disk_mb_per_s"].is_null());
        assert!(v["ratio_to_raw_quic"].is_null());
        assert!(r.to_table().contains("baseline: skipped"));
    }

    #[test]
    fn the_table_is_aligned() {
        let r = Report::build(inputs(&args(&[]), clean()));
        let t = r.to_table();
        assert!(t.contains("verdict: PASS"), "{t}");
        // Every table's rows line up under its header (right-aligned numbers).
        let lines: Vec<&str> = t.lines().collect();
        let header = lines
            .iter()
            .position(|l| l.starts_with("latency (µs)"))
            .unwrap();
        let len = |s: &str| s.chars().count();
        assert_eq!(len(lines[header]), len(lines[header + 2]));
        assert_eq!(len(lines[header]), len(lines[header + 3]));
        assert!(lines[header + 1].chars().all(|c| c == '-'));
        assert!(t.contains("raw QUIC bulk transfer"));
        assert!(t.contains("fdatasync at the end"));
        println!("{t}");
    }

    #[test]
    fn html_is_self_contained_with_three_plots() {
        let a = args(&["--server", "127.0.0.1:7070"]);
        let mut i = inputs(&a, clean());
        i.config.keys = "<script>alert(1)</script>".into();
        let r = Report::build(i);
        let h = r.to_html();
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert_eq!(h.matches("<svg").count(), 3);
        assert_eq!(h.matches("</svg>").count(), 3);
        assert!(
            h.matches("<polyline").count() >= 5,
            "two series per plot, minus none"
        );
        assert!(!h.contains("<script"), "escaped");
        assert!(h.contains("&lt;script&gt;"));
        assert!(!h.contains("http://") && !h.contains("https://") && !h.contains("src="));
        assert!(h.contains("Throughput over time") && h.contains("p99 latency over time"));
        assert!(h.contains("Latency by percentile") && h.contains("99.9%"));
        assert!(h.contains("warm-up"));
    }

    #[test]
    fn an_empty_plot_says_so() {
        let c = Chart {
            title: "t",
            x_label: "x",
            y_label: "y",
            y_log: true,
            x_ticks: None,
            shade: None,
            series: vec![Series {
                name: "s",
                color: "#000",
                points: vec![(1.0, 0.0)],
            }],
        };
        assert!(c.render().contains("no data"));
    }

    #[test]
    fn formatting_helpers() {
        assert_eq!(fmt_int(1_234_567.6), "1,234,568");
        assert_eq!(fmt_int(999.0), "999");
        assert_eq!(fmt_int(-1000.0), "-1,000");
        assert_eq!(fmt_num(2.5), "2.50");
        assert_eq!(fmt_num(5.0), "5");
        assert_eq!(fmt_num(1e6), "1,000,000");
        assert_eq!(fmt_num(f64::NAN), "-");
        assert_eq!(tick_label(1_500_000.0), "1.5M");
        assert_eq!(tick_label(200_000.0), "200k");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(140.0), 200.0);
        assert_eq!(percentile_label(0), "0%");
        assert_eq!(percentile_label(2), "99%");
        assert_eq!(percentile_label(4), "99.99%");
        assert!((percentile_x(99.0, 0) - 2.0).abs() < 1e-9);
        assert!((percentile_x(100.0, 1000) - 3.0).abs() < 1e-9);
        assert_eq!(plural(1, "message"), "1 message");
        assert_eq!(plural(2, "latency"), "2 latencies");
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }
}
