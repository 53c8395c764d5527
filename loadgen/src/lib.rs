//! strata-loadgen: the verifying load generator (issue 5).
//!
//! This crate holds the parts of the load generator that do not talk to a server; the
//! driver that runs producers and consumers over strata's QUIC clients builds on them:
//!
//! | module | what |
//! | --- | --- |
//! | [`config`] | command-line options (clap), defaults, validation |
//! | [`clock`] | the run clock: monotonic ns since the run started |
//! | [`payload`] | the self-checking message payload: producer, partition, sequence, send time, checksum |
//! | [`rate`] | open-/closed-loop send schedules, key (none/uniform/Zipf) and size distributions |
//! | [`verify`] | the sans-IO verifier: lost, duplicated, reordered, corrupted |
//! | [`stats`] | per-task HdrHistogram recorders, warm-up exclusion, per-second time series |
//! | [`baseline`] | raw QUIC bulk throughput and raw disk write bandwidth |
//! | [`report`] | the report: JSON, terminal table, self-contained HTML, verdict |
//! | [`driver`] | the driver: embedded or remote server, producer and consumer tasks, [`run`] |
//!
//! # How a driver uses them
//!
//! ```
//! use std::time::Duration;
//! use strata_loadgen::clock::RunClock;
//! use strata_loadgen::payload::{self, Fields};
//! use strata_loadgen::rate::{KeyDist, KeyGen, LoadMode, Schedule};
//! use strata_loadgen::stats::{Stats, StatsConfig};
//! use strata_loadgen::verify::{Delivery, Verifier};
//!
//! let clock = RunClock::start();
//! let stats = Stats::new(StatsConfig::new(Duration::ZERO, Some(Duration::from_secs(1))));
//! let mut verifier = Verifier::new(8);
//!
//! // A producer task: pick the partition, stamp the payload, send, record the ack.
//! let mut recorder = stats.recorder();
//! let mut keys = KeyGen::new(KeyDist::Uniform { keys: 100 }, 1).unwrap();
//! let schedule = Schedule::for_producer(LoadMode::Open { rate: 1000.0 }, clock.now_ns(), 1, 0).unwrap();
//! let target = keys.next_target(8);
//! let fields = Fields { producer: 0, partition: target.partition, sequence: 0,
//!                       send_ns: schedule.send_time_ns(0, clock.now_ns()) };
//! let mut buf = [0u8; 100];
//! payload::encode_into(&mut buf, &fields).unwrap();
//! // ... send `buf` with key `target.key` to `target.partition`, await the ack ...
//! recorder.record_ack(fields.send_ns, clock.now_ns(), buf.len() as u64);
//! verifier.acked_range(0, target.partition, 0..1);
//!
//! // A consumer task: decode, verify, record.
//! let offset = 0; // from the fetch
//! let delivered = payload::decode(&buf);
//! if let Ok(f) = &delivered {
//!     recorder.record_delivery(f.send_ns, clock.now_ns(), buf.len() as u64);
//! }
//! verifier.received(target.partition, offset, Delivery::from(delivered));
//!
//! recorder.finish();
//! assert_eq!(verifier.summary().lost, 0);
//! assert_eq!(stats.summary(clock.now_ns()).acked.msgs, 1);
//! ```

pub mod baseline;
pub mod clock;
pub mod config;
pub mod driver;
pub mod payload;
pub mod rate;
pub mod report;
pub mod stats;
pub mod verify;

pub use driver::{Error, run};
