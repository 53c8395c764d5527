//! Ours against raw, interleaved in one process: prints msgs/s, MB/s and ours/raw ratios.
//!
//! Criterion measures each function on its own, a minute apart on a noisy machine, and
//! computes no ratios. This harness runs, for every case of
//! [`strata_bench::append_cases`], `ROUNDS` rounds in which every writer writes the same
//! pre-encoded bytes once, each on a fresh preallocated file, rotating which goes first;
//! it prints the medians as Markdown tables (the figures `docs/BENCHMARKS.md` quotes).
//!
//! Writers: ours with the io_uring write path, with the pwritev fallback and with the
//! default configuration (`IoBackend::Auto`: pwritev for Written; io_uring for Fsync,
//! except that a blocking `append` to an idle partition syncs inline); raw with
//! `pwrite` per batch (sync-each) or `pwritev` of 64 batches (pipelined), each followed by
//! `fdatasync` for Fsync; and, pipelined, raw replaying the groups of batches that ours'
//! (io_uring) write jobs carried in the same or the previous round, so that both make
//! the same number of write and fdatasync calls with the same bytes.
//!
//! * `msgs/s`, `MB/s`: medians over the rounds; `best MB/s`: the fastest round.
//! * `ours/raw`: median ours throughput over median raw throughput, then in parentheses
//!   the same for the best rounds (noise on a shared machine only ever adds time).
//! * `batches/write`: mean batches per write job (ours) or per `pwritev` (raw).
//! * `CPU %`: process CPU time (all threads, io_uring workers included) over wall time.
//! * sync-each cases add per-batch latency percentiles.
//!
//! `cargo bench -p strata-bench --bench append_ratio [-- FILTER]`; `STRATA_BENCH_ROUNDS`
//! sets the rounds (default 15). Without `--bench` (as under `cargo test --benches`) it
//! runs one tiny round per case as a smoke test.

use std::time::Duration;
use strata_bench::{
    AppendCase, BoxError, Mode, RawGroups, RunStats, append_cases, median, percentile,
};
use strata_log::IoBackend;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Writer {
    Ours(IoBackend),
    Raw,
    RawReplay,
}

impl Writer {
    fn label(self) -> &'static str {
        match self {
            Writer::Ours(IoBackend::Fallback) => "strata (pwritev)",
            Writer::Ours(IoBackend::Auto) => "strata (default)",
            Writer::Ours(_) => "strata (io_uring)",
            Writer::Raw => "raw",
            Writer::RawReplay => "raw, ours' groups",
        }
    }
}

/// Samples of one writer across the rounds.
struct Samples {
    writer: Writer,
    secs: Vec<f64>,
    wall: Duration,
    cpu: Duration,
    writes: usize,
    batches: usize,
    latencies: Vec<u64>,
}

impl Samples {
    fn new(writer: Writer) -> Self {
        Samples {
            writer,
            secs: Vec::new(),
            wall: Duration::ZERO,
            cpu: Duration::ZERO,
            writes: 0,
            batches: 0,
            latencies: Vec::new(),
        }
    }

    fn push(&mut self, s: RunStats) {
        self.secs.push(s.elapsed.as_secs_f64());
        self.wall += s.elapsed;
        self.cpu += s.cpu;
        self.writes += s.groups.len();
        self.batches += s.groups.iter().sum::<usize>();
        self.latencies.extend(s.latencies);
    }

    fn median_secs(&self) -> f64 {
        median(&mut self.secs.clone())
    }

    fn best_secs(&self) -> f64 {
        self.secs.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// Ours/raw throughput ratio of the medians, and of the best rounds.
    fn ratio_to(&self, raw: &Samples) -> (f64, f64) {
        (
            raw.median_secs() / self.median_secs(),
            raw.best_secs() / self.best_secs(),
        )
    }
}

struct Row {
    case: String,
    records: u64,
    bytes: u64,
    writers: Vec<Samples>,
}

impl Row {
    fn get(&self, writer: Writer) -> Option<&Samples> {
        self.writers.iter().find(|s| s.writer == writer)
    }
}

fn run_case(case: &AppendCase, rounds: usize) -> Result<Row, BoxError> {
    let w = case.workload();
    let latencies = case.mode == Mode::SyncEach;
    let mut writers = vec![
        Writer::Ours(IoBackend::Uring),
        Writer::Ours(IoBackend::Fallback),
        Writer::Ours(IoBackend::Auto),
        Writer::Raw,
    ];
    if case.mode == Mode::Pipelined {
        writers.push(Writer::RawReplay);
    }
    // Warm-up (discarded), which also gives the first groups to replay.
    let mut replay = case.run_ours(&w, IoBackend::Uring, false)?.groups;
    case.run_raw(&w, RawGroups::Window, false)?;
    let mut samples: Vec<Samples> = writers.iter().map(|&wr| Samples::new(wr)).collect();
    for round in 0..rounds {
        for i in 0..writers.len() {
            let k = (round + i) % writers.len();
            let stats = match writers[k] {
                Writer::Ours(backend) => {
                    let stats = case.run_ours(&w, backend, latencies)?;
                    if backend == IoBackend::Uring {
                        replay = stats.groups.clone();
                    }
                    stats
                }
                Writer::Raw => case.run_raw(&w, RawGroups::Window, latencies)?,
                Writer::RawReplay => case.run_raw(&w, RawGroups::Replay(&replay), false)?,
            };
            samples[k].push(stats);
        }
    }
    Ok(Row {
        case: case.name(),
        records: w.records,
        bytes: w.bytes,
        writers: samples,
    })
}

fn rate(n: u64, secs: f64) -> f64 {
    n as f64 / secs
}

fn print_tables(rows: &mut [Row]) {
    println!();
    println!(
        "| case | writer | msgs/s | MB/s | best MB/s | batches/write | CPU % \
         | ours/raw (best) | ours/raw, ours' groups (best) |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    for row in rows.iter() {
        let raw = row.get(Writer::Raw).expect("raw always runs");
        let replay = row.get(Writer::RawReplay);
        for s in &row.writers {
            let secs = s.median_secs();
            let ratio = |raw: Option<&Samples>| match (s.writer, raw) {
                (Writer::Ours(_), Some(raw)) => {
                    let (median, best) = s.ratio_to(raw);
                    format!("**{median:.2}** ({best:.2})")
                }
                _ => String::new(),
            };
            let replay_ratio = match s.writer {
                Writer::Ours(IoBackend::Uring) => ratio(replay),
                _ => String::new(),
            };
            println!(
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.0} | {} | {} |",
                row.case,
                s.writer.label(),
                rate(row.records, secs),
                rate(row.bytes, secs) / 1e6,
                rate(row.bytes, s.best_secs()) / 1e6,
                s.batches as f64 / s.writes.max(1) as f64,
                100.0 * s.cpu.as_secs_f64() / s.wall.as_secs_f64(),
                ratio(Some(raw)),
                replay_ratio
            );
        }
    }
    let mut header = false;
    for row in rows.iter_mut() {
        for s in row.writers.iter_mut().filter(|s| !s.latencies.is_empty()) {
            if !header {
                println!();
                println!("| case | writer | samples | p50 µs | p99 µs | p99.9 µs | max µs |");
                println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
                header = true;
            }
            s.latencies.sort_unstable();
            let us = |p: f64| percentile(&s.latencies, p) as f64 / 1e3;
            println!(
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                row.case,
                s.writer.label(),
                s.latencies.len(),
                us(50.0),
                us(99.0),
                us(99.9),
                us(100.0)
            );
        }
    }
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let full = args.iter().any(|a| a == "--bench");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let rounds = match std::env::var("STRATA_BENCH_ROUNDS") {
        Ok(v) => v.parse()?,
        Err(_) if full => 15,
        Err(_) => 1,
    };
    let cases: Vec<AppendCase> = append_cases()
        .into_iter()
        .map(|mut c| {
            if !full {
                c.batches = 8;
            }
            c
        })
        .filter(|c| {
            let name = format!("append_ratio/{}", c.name());
            filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
        })
        .collect();
    if cases.is_empty() {
        return Ok(());
    }
    println!(
        "append_ratio: {rounds} rounds per case, data dir {} (MB = 10^6 bytes)",
        std::env::temp_dir().display()
    );
    let mut rows = Vec::new();
    for case in &cases {
        let row = run_case(case, rounds)?;
        let mbps = |s: &Samples| rate(row.bytes, s.median_secs()) / 1e6;
        let summary: Vec<String> = row
            .writers
            .iter()
            .map(|s| format!("{} {:.0} MB/s", s.writer.label(), mbps(s)))
            .collect();
        eprintln!("  {}: {}", row.case, summary.join(", "));
        rows.push(row);
    }
    print_tables(&mut rows);
    Ok(())
}
