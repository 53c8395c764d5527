//! Command-line options of `strata-loadgen`, their defaults (the main job: 100-byte keyed
//! messages, acks `written`, producers and consumers together for 20 s, judged against
//! 1 M msgs/s and a 5 ms p99) and the parsing helpers behind them.

use crate::baseline::DiskSync;
use crate::payload::Filler;
use crate::rate::{KeyDist, LoadMode, SizeDist};
use crate::stats::StatsConfig;
use clap::{Parser, ValueEnum};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The throughput target the verdict is judged against by default, msgs/s.
pub const DEFAULT_TARGET_MSGS_PER_S: f64 = 1_000_000.0;
/// The p99 latency target the verdict is judged against by default, ms.
pub const DEFAULT_TARGET_P99_MS: f64 = 5.0;
/// Default bound on sent-but-unconsumed messages in a closed loop with consumers.
pub const DEFAULT_MAX_UNCONSUMED: u64 = 20_000;

/// What the run exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Producers only.
    Produce,
    /// Consumers only: a catch-up read of a backlog written before the measurement.
    Consume,
    /// Producers and consumers together (end-to-end latency).
    E2e,
    /// End-to-end through a consumer group whose members join and leave during the run.
    Group,
}

impl Scenario {
    /// The name used on the command line and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::Produce => "produce",
            Scenario::Consume => "consume",
            Scenario::E2e => "e2e",
            Scenario::Group => "group",
        }
    }

    /// Whether the scenario runs producers during the measurement.
    pub fn produces(self) -> bool {
        !matches!(self, Scenario::Consume)
    }

    /// Whether the scenario runs consumers.
    pub fn consumes(self) -> bool {
        !matches!(self, Scenario::Produce)
    }
}

/// When the server acknowledges a produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AckLevel {
    /// Once queued (no offsets returned; lost messages cannot be detected).
    None,
    /// Once in the page cache.
    Written,
    /// Once on disk (fdatasync).
    Fsync,
}

impl AckLevel {
    /// The name used on the command line and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            AckLevel::None => "none",
            AckLevel::Written => "written",
            AckLevel::Fsync => "fsync",
        }
    }
}

/// Batch compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionKind {
    /// Uncompressed batches.
    None,
    /// LZ4-compressed batches.
    Lz4,
}

impl CompressionKind {
    /// The name used on the command line and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            CompressionKind::None => "none",
            CompressionKind::Lz4 => "lz4",
        }
    }
}

/// A combination of options that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// `strata-loadgen`: drive a strata server with producers and consumers, verify every
/// message, and report throughput and latency against the machine's raw limits.
#[derive(Debug, Clone, Parser)]
#[command(name = "strata-loadgen", version)]
pub struct Args {
    /// Server to load (default: start an embedded server on 127.0.0.1 in --data-dir).
    #[arg(long, env = "STRATA_SERVER")]
    pub server: Option<SocketAddr>,
    /// The server's certificate to pin (default: the embedded server's, DATA_DIR/tls/cert.pem).
    #[arg(long, env = "STRATA_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Name in the server's certificate.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// Bearer token (default: the embedded server's admin token).
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Producers, each on its own QUIC connection.
    #[arg(long, default_value_t = 4)]
    pub producers: u32,
    /// Consumers, each on its own QUIC connection.
    #[arg(long, default_value_t = 4)]
    pub consumers: u32,
    /// Topics to spread the load over.
    #[arg(long, default_value_t = 1)]
    pub topics: u32,
    /// Partitions per topic.
    #[arg(long, default_value_t = 8)]
    pub partitions: u32,
    /// Message size in bytes, header included: N, or MIN..MAX for uniform sizes
    /// (inclusive; at least 40, the payload header).
    #[arg(long, default_value = "100", value_parser = parse_size)]
    pub message_size: SizeDist,
    /// Record keys: none (round-robin partitions), uniform:K or zipf:K:S over K keys.
    #[arg(long, default_value = "uniform:1024", value_parser = parse_keys)]
    pub keys: KeyDist,
    /// Payload filler after the header: random (incompressible) or text (compressible).
    #[arg(long, value_enum, default_value_t = Filler::Random)]
    pub filler: Filler,
    /// Producer batch size limit, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub batch_bytes: usize,
    /// How long a producer waits for a batch to fill before sending it, ms (fractions ok;
    /// timers tick every millisecond, so a batch goes out at the first tick after this).
    #[arg(long, default_value_t = 0.2)]
    pub linger_ms: f64,
    /// Batch compression.
    #[arg(long, value_enum, default_value_t = CompressionKind::None)]
    pub compression: CompressionKind,
    /// Acknowledgement level.
    #[arg(long, value_enum, default_value_t = AckLevel::Written)]
    pub acks: AckLevel,
    /// Run length, warm-up included (e.g. 20s, 500ms, 2m).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many messages in all instead of after --duration.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Warm-up at the start of the run, excluded from the figures.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Open loop: target messages per second, all producers together (latency measured
    /// from each message's scheduled send time). Default: the throughput target for the
    /// e2e scenario, closed loop for the others.
    #[arg(long, conflicts_with = "closed_loop")]
    pub rate: Option<f64>,
    /// Closed loop (as fast as the in-flight bound allows) even for the e2e scenario.
    #[arg(long)]
    pub closed_loop: bool,
    /// Closed loop: unacknowledged batches allowed per producer.
    #[arg(long, default_value_t = 16)]
    pub max_in_flight: usize,
    /// Closed loop with consumers: messages sent and not yet consumed, all producers
    /// together, beyond which producers wait for the consumers (0: no bound).
    #[arg(long, default_value_t = DEFAULT_MAX_UNCONSUMED)]
    pub max_unconsumed: u64,
    /// Batches a producer keeps in flight per partition (1 to 5): while they are, the
    /// partition's next batch keeps growing (Kafka's max.in.flight.requests).
    #[arg(long, default_value_t = strata_log::producer::RECENT_BATCHES)]
    pub partition_window: usize,
    /// What to exercise.
    #[arg(long, value_enum, default_value_t = Scenario::E2e)]
    pub scenario: Scenario,
    /// Group scenario: how often a member joins or leaves.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub churn_interval: Duration,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the HTML report (self-contained, with plots) here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Fail (non-zero exit) below this many msgs/s.
    #[arg(long)]
    pub assert_msgs_per_s: Option<f64>,
    /// Fail (non-zero exit) above this p99 latency, ms.
    #[arg(long)]
    pub assert_p99_ms: Option<f64>,
    /// Data dir of the embedded server, and where the disk baseline writes (default: a
    /// temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Shards of the embedded server (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub shards: usize,
    /// MiB written by each raw baseline (QUIC bulk transfer and disk writes).
    #[arg(long, default_value_t = 256)]
    pub baseline_mib: u64,
    /// Skip the raw QUIC and disk baselines.
    #[arg(long)]
    pub no_baselines: bool,
    /// No live progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Seed of the key and size generators (each producer derives its own).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn parse_size(s: &str) -> Result<SizeDist, String> {
    s.parse().map_err(|e: crate::rate::SpecError| e.to_string())
}

fn parse_keys(s: &str) -> Result<KeyDist, String> {
    s.parse().map_err(|e: crate::rate::SpecError| e.to_string())
}

/// Parses a duration: a number with a unit `ns`, `us`, `ms`, `s`, `m` or `h` (fractions
/// allowed: `1.5s`), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 20s, 500ms, 2m"))?;
    let secs_per_unit = match unit.trim() {
        "" | "s" => 1.0,
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {other:?} (ns, us, ms, s, m, h)"
            ));
        }
    };
    Duration::try_from_secs_f64(value * secs_per_unit)
        .map_err(|_| format!("invalid duration {s:?}: out of range"))
}

/// The throughput and latency targets of the verdict, and which ones set the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Targets {
    /// Throughput target, msgs/s.
    pub msgs_per_s: f64,
    /// p99 latency target, ms.
    pub p99_ms: f64,
    /// Whether missing the throughput target fails the run (`--assert-msgs-per-s`).
    pub enforce_msgs_per_s: bool,
    /// Whether missing the latency target fails the run (`--assert-p99-ms`).
    pub enforce_p99: bool,
}

/// The options worth echoing in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigEcho {
    /// Server address, or "embedded".
    pub server: String,
    /// Scenario.
    pub scenario: Scenario,
    /// Producers.
    pub producers: u32,
    /// Consumers.
    pub consumers: u32,
    /// Topics.
    pub topics: u32,
    /// Partitions per topic.
    pub partitions: u32,
    /// Message size specification.
    pub message_size: String,
    /// Key distribution specification.
    pub keys: String,
    /// Payload filler.
    pub filler: Filler,
    /// Batch size limit, bytes.
    pub batch_bytes: usize,
    /// Linger, ms.
    pub linger_ms: f64,
    /// Compression.
    pub compression: CompressionKind,
    /// Acknowledgement level.
    pub acks: AckLevel,
    /// Run length, s (warm-up included).
    pub duration_s: f64,
    /// Message-count limit, if any.
    pub messages: Option<u64>,
    /// Warm-up, s.
    pub warmup_s: f64,
    /// "closed" or "open".
    pub load: String,
    /// Open-loop target rate, msgs/s.
    pub rate: Option<f64>,
    /// Closed-loop in-flight batches per producer.
    pub max_in_flight: usize,
    /// Closed loop with consumers: bound on unconsumed messages (0: none).
    pub max_unconsumed: u64,
    /// Batches in flight per partition.
    pub partition_window: usize,
    /// Embedded server shards (0: one per core).
    pub shards: usize,
    /// Generator seed.
    pub seed: u64,
}

impl Args {
    /// Checks the combination of options; the error says what to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: String| Err(ConfigError(m));
        if self.producers == 0 {
            return fail("--producers must be at least 1 (the consume scenario uses them to write its backlog)".into());
        }
        if self.scenario.consumes() && self.consumers == 0 {
            return fail(format!(
                "--consumers must be at least 1 for the {} scenario",
                self.scenario.as_str()
            ));
        }
        if self.scenario == Scenario::Group && self.consumers < 2 {
            return fail(
                "--consumers must be at least 2 for the group scenario (members join and leave)"
                    .into(),
            );
        }
        if self.topics == 0 || self.partitions == 0 {
            return fail("--topics and --partitions must be at least 1".into());
        }
        if self.topics.checked_mul(self.partitions).is_none() {
            return fail("--topics times --partitions is too large".into());
        }
        if self.batch_bytes == 0 {
            return fail("--batch-bytes must be at least 1".into());
        }
        if !(self.linger_ms.is_finite() && self.linger_ms >= 0.0) {
            return fail(format!(
                "--linger-ms {} must be a non-negative number",
                self.linger_ms
            ));
        }
        if self.max_in_flight == 0 {
            return fail("--max-in-flight must be at least 1".into());
        }
        let most = strata_log::producer::RECENT_BATCHES;
        if !(1..=most).contains(&self.partition_window) {
            return fail(format!(
                "--partition-window must be in 1..={most} (the server remembers {most} batches per producer)"
            ));
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return fail(format!("--rate {r} must be a positive number of msgs/s"));
            }
        }
        if self.messages == Some(0) {
            return fail("--messages must be at least 1".into());
        }
        if self.messages.is_none() && self.warmup >= self.duration {
            return fail(format!(
                "--warmup ({:?}) must be shorter than --duration ({:?})",
                self.warmup, self.duration
            ));
        }
        if let Some(t) = self.assert_msgs_per_s {
            if !(t.is_finite() && t > 0.0) {
                return fail(format!("--assert-msgs-per-s {t} must be a positive number"));
            }
        }
        if let Some(t) = self.assert_p99_ms {
            if !(t.is_finite() && t > 0.0) {
                return fail(format!("--assert-p99-ms {t} must be a positive number"));
            }
        }
        if !self.no_baselines && self.baseline_mib == 0 {
            return fail("--baseline-mib must be at least 1 (or pass --no-baselines)".into());
        }
        if self.scenario == Scenario::Group && self.churn_interval.is_zero() {
            return fail("--churn-interval must be positive".into());
        }
        Ok(())
    }

    /// Partitions over all topics: run-wide partition indexes are `0..total_partitions()`
    /// (`topic_index * partitions + partition`).
    pub fn total_partitions(&self) -> u32 {
        self.topics.saturating_mul(self.partitions)
    }

    /// The bound on unconsumed messages that applies: `--max-unconsumed` in a closed loop
    /// whose consumers run alongside its producers (e2e, group), otherwise none (0);
    /// `consume` writes its backlog before any consumer starts.
    pub fn pacing_bound(&self) -> u64 {
        let closed = matches!(self.load_mode(), LoadMode::Closed { .. });
        let live = matches!(self.scenario, Scenario::E2e | Scenario::Group);
        if closed && live {
            self.max_unconsumed
        } else {
            0
        }
    }

    /// Open loop at `--rate`, or closed loop with `--max-in-flight`; without either, the
    /// e2e scenario runs open loop at the throughput target (its p99 is judged at that
    /// rate: a closed loop's latency is its window over its throughput) and the others
    /// closed loop.
    pub fn load_mode(&self) -> LoadMode {
        let closed = LoadMode::Closed {
            max_in_flight: self.max_in_flight,
        };
        match self.rate {
            Some(rate) => LoadMode::Open { rate },
            None if self.closed_loop => closed,
            None if self.scenario == Scenario::E2e => LoadMode::Open {
                rate: self.assert_msgs_per_s.unwrap_or(DEFAULT_TARGET_MSGS_PER_S),
            },
            None => closed,
        }
    }

    /// The open-loop rate, if the run is open loop.
    pub fn open_rate(&self) -> Option<f64> {
        match self.load_mode() {
            LoadMode::Open { rate } => Some(rate),
            LoadMode::Closed { .. } => None,
        }
    }

    /// The linger as a duration.
    pub fn linger(&self) -> Duration {
        Duration::try_from_secs_f64(self.linger_ms / 1e3).unwrap_or_default()
    }

    /// The measured length after warm-up (`None` when the run is bounded by --messages).
    pub fn measured(&self) -> Option<Duration> {
        match self.messages {
            Some(_) => None,
            None => Some(self.duration.saturating_sub(self.warmup)),
        }
    }

    /// The statistics configuration: warm-up, then the measured length.
    pub fn stats_config(&self) -> StatsConfig {
        StatsConfig::new(self.warmup, self.measured())
    }

    /// How the disk baseline syncs: every chunk for acks `fsync`, once at the end otherwise.
    pub fn disk_sync(&self) -> DiskSync {
        match self.acks {
            AckLevel::Fsync => DiskSync::EachChunk,
            AckLevel::None | AckLevel::Written => DiskSync::AtEnd,
        }
    }

    /// The verdict's targets: the asserted ones (enforced), else the defaults (shown only).
    pub fn targets(&self) -> Targets {
        Targets {
            msgs_per_s: self.assert_msgs_per_s.unwrap_or(DEFAULT_TARGET_MSGS_PER_S),
            p99_ms: self.assert_p99_ms.unwrap_or(DEFAULT_TARGET_P99_MS),
            enforce_msgs_per_s: self.assert_msgs_per_s.is_some(),
            enforce_p99: self.assert_p99_ms.is_some(),
        }
    }

    /// Seed for producer `index`'s generators (distinct per producer, fixed per --seed).
    pub fn producer_seed(&self, index: u32) -> u64 {
        self.seed
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(u64::from(index).wrapping_mul(0xbf58_476d_1ce4_e5b9))
    }

    /// The options worth echoing in a report.
    pub fn echo(&self) -> ConfigEcho {
        ConfigEcho {
            server: self
                .server
                .map_or_else(|| "embedded".to_owned(), |a| a.to_string()),
            scenario: self.scenario,
            producers: self.producers,
            consumers: self.consumers,
            topics: self.topics,
            partitions: self.partitions,
            message_size: self.message_size.to_string(),
            keys: self.keys.to_string(),
            filler: self.filler,
            batch_bytes: self.batch_bytes,
            linger_ms: self.linger_ms,
            compression: self.compression,
            acks: self.acks,
            duration_s: self.duration.as_secs_f64(),
            messages: self.messages,
            warmup_s: self.warmup.as_secs_f64(),
            load: if self.open_rate().is_some() {
                "open"
            } else {
                "closed"
            }
            .to_owned(),
            rate: self.open_rate(),
            max_in_flight: self.max_in_flight,
            max_unconsumed: self.pacing_bound(),
            partition_window: self.partition_window,
            shards: self.shards,
            seed: self.seed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("strata-loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn consumption_pacing_applies_only_to_live_closed_loops() {
        let bound = |args: &[&str]| parse(args).unwrap().pacing_bound();
        assert_eq!(bound(&[]), 0, "the default e2e run is an open loop");
        assert_eq!(bound(&["--closed-loop"]), DEFAULT_MAX_UNCONSUMED);
        assert_eq!(bound(&["--closed-loop", "--max-unconsumed", "7"]), 7);
        assert_eq!(bound(&["--scenario", "group"]), DEFAULT_MAX_UNCONSUMED);
        // Its backlog is written before any consumer runs: a bound would never clear.
        assert_eq!(bound(&["--scenario", "consume"]), 0);
        assert_eq!(bound(&["--scenario", "produce"]), 0);
        assert_eq!(bound(&["--closed-loop", "--max-unconsumed", "0"]), 0);
    }

    #[test]
    fn the_command_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_main_job() {
        let a = parse(&[]).unwrap();
        a.validate().unwrap();
        assert_eq!(a.server, None);
        assert_eq!(a.message_size, SizeDist::Fixed(100));
        assert!(matches!(a.keys, KeyDist::Uniform { .. }));
        assert_eq!(a.acks, AckLevel::Written);
        assert_eq!(a.scenario, Scenario::E2e);
        assert_eq!(a.duration, Duration::from_secs(20));
        assert_eq!(a.warmup, Duration::from_secs(2));
        assert_eq!(a.measured(), Some(Duration::from_secs(18)));
        assert_eq!(a.compression, CompressionKind::None);
        assert_eq!(a.load_mode(), LoadMode::Open { rate: 1e6 });
        assert_eq!(a.open_rate(), Some(1e6));
        assert_eq!(a.disk_sync(), DiskSync::AtEnd);
        assert_eq!(
            a.targets(),
            Targets {
                msgs_per_s: 1e6,
                p99_ms: 5.0,
                enforce_msgs_per_s: false,
                enforce_p99: false
            }
        );
        let sc = a.stats_config();
        assert_eq!((sc.warmup_ns, sc.end_ns), (2_000_000_000, 20_000_000_000));
        assert!(!a.no_baselines && !a.no_progress);
        assert_eq!(a.total_partitions(), 8);
        assert_eq!(a.linger(), Duration::from_micros(200));
        // The other scenarios, and --closed-loop, run closed loop by default.
        let closed = LoadMode::Closed { max_in_flight: 16 };
        assert_eq!(
            parse(&["--scenario", "produce"]).unwrap().load_mode(),
            closed
        );
        assert_eq!(parse(&["--scenario", "group"]).unwrap().load_mode(), closed);
        assert_eq!(parse(&["--closed-loop"]).unwrap().load_mode(), closed);
        assert!(parse(&["--closed-loop", "--rate", "5"]).is_err());
        // An asserted throughput is the rate the e2e scenario offers.
        let asserted = parse(&["--assert-msgs-per-s", "2000000"]).unwrap();
        assert_eq!(asserted.open_rate(), Some(2e6));
    }

    #[test]
    fn parses_every_option() {
        let a = parse(&[
            "--server",
            "127.0.0.1:7070",
            "--ca-cert",
            "c.pem",
            "--token",
            "t",
            "--producers",
            "8",
            "--consumers",
            "2",
            "--topics",
            "3",
            "--partitions",
            "4",
            "--message-size",
            "64..256",
            "--keys",
            "zipf:1000:1.1",
            "--filler",
            "text",
            "--batch-bytes",
            "1024",
            "--linger-ms",
            "0.5",
            "--compression",
            "lz4",
            "--acks",
            "fsync",
            "--duration",
            "1m",
            "--warmup",
            "500ms",
            "--rate",
            "50000",
            "--scenario",
            "group",
            "--churn-interval",
            "2s",
            "--json",
            "r.json",
            "--html",
            "r.html",
            "--assert-msgs-per-s",
            "200000",
            "--assert-p99-ms",
            "2.5",
            "--data-dir",
            "/tmp/x",
            "--shards",
            "2",
            "--baseline-mib",
            "16",
            "--no-progress",
            "--seed",
            "9",
        ])
        .unwrap();
        a.validate().unwrap();
        assert_eq!(a.server, Some("127.0.0.1:7070".parse().unwrap()));
        assert_eq!(a.message_size, SizeDist::Uniform { min: 64, max: 256 });
        assert_eq!(
            a.keys,
            KeyDist::Zipf {
                keys: 1000,
                exponent: 1.1
            }
        );
        assert_eq!(a.filler, Filler::Text);
        assert_eq!(a.compression, CompressionKind::Lz4);
        assert_eq!(a.acks, AckLevel::Fsync);
        assert_eq!(a.disk_sync(), DiskSync::EachChunk);
        assert_eq!(a.duration, Duration::from_secs(60));
        assert_eq!(a.load_mode(), LoadMode::Open { rate: 50_000.0 });
        assert_eq!(a.total_partitions(), 12);
        assert_eq!(a.linger(), Duration::from_micros(500));
        let t = a.targets();
        assert!(t.enforce_msgs_per_s && t.enforce_p99);
        assert_eq!((t.msgs_per_s, t.p99_ms), (200_000.0, 2.5));
        let echo = serde_json::to_value(a.echo()).unwrap();
        assert_eq!(echo["scenario"], "group");
        assert_eq!(echo["acks"], "fsync");
        assert_eq!(echo["keys"], "zipf:1000:1.1");
        assert_eq!(echo["load"], "open");
        assert_ne!(a.producer_seed(0), a.producer_seed(1));
    }

    #[test]
    fn bad_values_are_rejected_with_clear_errors() {
        let e = parse(&["--message-size", "10"]).unwrap_err().to_string();
        assert!(e.contains("at least 40 bytes"), "{e}");
        let e = parse(&["--keys", "zipf:10"]).unwrap_err().to_string();
        assert!(e.contains("uniform:K"), "{e}");
        let e = parse(&["--duration", "10 parsecs"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown unit"), "{e}");
        assert!(parse(&["--acks", "maybe"]).is_err());
        assert!(parse(&["--scenario", "chaos"]).is_err());
        let bad = |args: &[&str]| parse(args).unwrap().validate().unwrap_err().0;
        assert!(bad(&["--warmup", "30s"]).contains("shorter than --duration"));
        assert!(bad(&["--producers", "0"]).contains("--producers"));
        assert!(bad(&["--consumers", "0"]).contains("--consumers"));
        assert!(bad(&["--scenario", "group", "--consumers", "1"]).contains("at least 2"));
        assert!(bad(&["--rate", "0"]).contains("--rate"));
        assert!(bad(&["--linger-ms=-1"]).contains("--linger-ms"));
        assert!(bad(&["--assert-p99-ms", "0"]).contains("--assert-p99-ms"));
        assert!(bad(&["--partitions", "0"]).contains("--partitions"));
        assert!(bad(&["--baseline-mib", "0"]).contains("--no-baselines"));
        // Produce-only needs no consumers; a message count lifts the duration check.
        parse(&["--scenario", "produce", "--consumers", "0"])
            .unwrap()
            .validate()
            .unwrap();
        let a = parse(&["--messages", "1000", "--warmup", "30s"]).unwrap();
        a.validate().unwrap();
        assert_eq!(a.measured(), None);
        assert_eq!(a.stats_config().end_ns, u64::MAX);
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1e400s").is_err());
    }
}
