//! `strata consume`: records to stdout.

use super::ConnectArgs;
use crate::client::{Consumer, ConsumerConfig, GroupConfig, StartFrom};
use std::io::Write;
use std::time::{Duration, Instant};
use strata_log::engine::TopicPartition;

/// Options of `strata consume`.
#[derive(Debug, clap::Args)]
pub struct ConsumeArgs {
    /// Where and how to connect.
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Topic to read.
    pub topic: String,
    /// Read only these partitions (repeatable; default: all, or the group's share).
    #[arg(long)]
    pub partition: Vec<u32>,
    /// Where to start without a committed offset: earliest, latest, an offset, or
    /// @<milliseconds since the Unix epoch>.
    #[arg(long, default_value = "earliest", value_parser = parse_start)]
    pub from: StartFrom,
    /// Read as a member of this consumer group (committing what was printed).
    #[arg(long)]
    pub group: Option<String>,
    /// Exit after this many records.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Exit after this many seconds without a record.
    #[arg(long)]
    pub idle_exit: Option<f64>,
    /// Print the key before the value, separated by --separator.
    #[arg(long)]
    pub print_key: bool,
    /// Print partition and offset before the value.
    #[arg(long)]
    pub print_offset: bool,
    /// Separator between printed fields.
    #[arg(long, default_value = "\t")]
    pub separator: String,
}

/// Parses `earliest`, `latest`, an offset or `@<ms since epoch>`.
pub fn parse_start(s: &str) -> Result<StartFrom, String> {
    match s {
        "earliest" => Ok(StartFrom::Earliest),
        "latest" => Ok(StartFrom::Latest),
        _ => {
            if let Some(ms) = s.strip_prefix('@') {
                let ms: i64 = ms
                    .parse()
                    .map_err(|_| format!("{s:?}: expected @<milliseconds since the epoch>"))?;
                Ok(StartFrom::Timestamp(ms.saturating_mul(1000)))
            } else {
                s.parse()
                    .map(StartFrom::Offset)
                    .map_err(|_| format!("{s:?}: expected earliest, latest, an offset or @<ms>"))
            }
        }
    }
}

/// Prints records until `--count` or `--idle-exit` (or forever).
pub async fn run(args: ConsumeArgs) -> Result<(), String> {
    let client = args.conn.connect().await?;
    let mut config = ConsumerConfig::new([args.topic.clone()]);
    config.start = args.from;
    if !args.partition.is_empty() {
        config.partitions = Some(
            args.partition
                .iter()
                .map(|&partition| TopicPartition {
                    topic: args.topic.clone(),
                    partition,
                })
                .collect(),
        );
    }
    match &args.group {
        Some(g) => config.group = Some(GroupConfig::new(g.clone())),
        None => config.auto_commit = None,
    }
    let mut consumer = Consumer::new(client.clone(), config)
        .await
        .map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    let idle = args.idle_exit.map(Duration::from_secs_f64);
    let sep = args.separator.as_bytes();
    'outer: loop {
        if args.count.is_some_and(|n| printed >= n) {
            break;
        }
        let records = consumer
            .poll(Duration::from_millis(200))
            .await
            .map_err(|e| e.to_string())?;
        if records.is_empty() {
            if idle.is_some_and(|d| last_record.elapsed() >= d) {
                break;
            }
            continue;
        }
        last_record = Instant::now();
        let mut out = stdout.lock();
        let mut unprinted = std::collections::BTreeMap::<u32, u64>::new();
        for r in records {
            if args.count.is_some_and(|n| printed >= n) {
                // Rewind so a commit covers only what was printed (at-least-once).
                let first = unprinted.entry(r.partition).or_insert(r.offset);
                *first = (*first).min(r.offset);
                continue;
            }
            let mut line = Vec::with_capacity(r.value.len() + 32);
            if args.print_offset {
                line.extend_from_slice(format!("{}{}", r.partition, args.separator).as_bytes());
                line.extend_from_slice(format!("{}", r.offset).as_bytes());
                line.extend_from_slice(sep);
            }
            if args.print_key {
                line.extend_from_slice(r.key.as_deref().unwrap_or_default());
                line.extend_from_slice(sep);
            }
            line.extend_from_slice(&r.value);
            line.push(b'\n');
            if out.write_all(&line).is_err() {
                break 'outer; // stdout closed (e.g. piped into head)
            }
            printed += 1;
        }
        let _ = out.flush();
        drop(out);
        for (partition, offset) in unprinted {
            consumer
                .seek(&args.topic, partition, StartFrom::Offset(offset))
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    if args.group.is_some() {
        consumer.commit().await.map_err(|e| e.to_string())?;
    }
    consumer.close().await.map_err(|e| e.to_string())?;
    client.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        assert_eq!(parse_start("earliest"), Ok(StartFrom::Earliest));
        assert_eq!(parse_start("latest"), Ok(StartFrom::Latest));
        assert_eq!(parse_start("42"), Ok(StartFrom::Offset(42)));
        assert_eq!(
            parse_start("@1700000000000"),
            Ok(StartFrom::Timestamp(1_700_000_000_000_000))
        );
        assert!(parse_start("yesterday").is_err());
    }
}
