//! `strata produce`: lines from stdin or a file become records.

use super::ConnectArgs;
use crate::client::{DeliveryFuture, Producer, ProducerConfig};
use crate::protocol::Acks;
use std::collections::VecDeque;
use std::io::BufRead;
use std::path::PathBuf;

/// Deliveries awaited before reading more lines (bounds memory on huge inputs).
const MAX_UNCONFIRMED: usize = 100_000;

/// Options of `strata produce`.
#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// Where and how to connect.
    #[command(flatten)]
    pub conn: ConnectArgs,
    /// Topic to append to.
    pub topic: String,
    /// Read lines from this file instead of stdin.
    #[arg(long, short)]
    pub file: Option<PathBuf>,
    /// Split each line at the first occurrence of this separator into key and value.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// Append to this partition (default: by key, round-robin without one).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Acknowledgement level: none, written or fsync.
    #[arg(long, default_value = "written", value_parser = parse_acks)]
    pub acks: Acks,
}

/// Parses `none`, `written` or `fsync`.
pub fn parse_acks(s: &str) -> Result<Acks, String> {
    match s {
        "none" => Ok(Acks::None),
        "written" => Ok(Acks::Written),
        "fsync" => Ok(Acks::Fsync),
        _ => Err(format!("{s:?}: expected none, written or fsync")),
    }
}

/// Splits a line into (key, value) at the first `separator`, if given and present.
pub fn split_line<'a>(line: &'a str, separator: Option<&str>) -> (Option<&'a [u8]>, &'a [u8]) {
    match separator.and_then(|s| line.split_once(s)) {
        Some((k, v)) => (Some(k.as_bytes()), v.as_bytes()),
        None => (None, line.as_bytes()),
    }
}

/// Appends every line, waits until all are acknowledged, and reports the count.
pub async fn run(args: ProduceArgs) -> Result<(), String> {
    let input: Box<dyn BufRead> = match &args.file {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::BufReader::new(std::io::stdin())),
    };
    let client = args.conn.connect().await?;
    let config = ProducerConfig {
        acks: args.acks,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client.clone(), config)
        .await
        .map_err(|e| e.to_string())?;
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut count = 0u64;
    let separator = args.key_separator.as_deref();
    for line in input.lines() {
        let line = line.map_err(|e| format!("reading input: {e}"))?;
        let (key, value) = split_line(&line, separator);
        let delivery = match args.partition {
            Some(p) => producer.send_to(&args.topic, p, key, value, &[]).await,
            None => producer.send(&args.topic, key, value, &[]).await,
        }
        .map_err(|e| e.to_string())?;
        pending.push_back(delivery);
        count += 1;
        if pending.len() >= MAX_UNCONFIRMED {
            while let Some(d) = pending.pop_front() {
                d.await.map_err(|e| e.to_string())?;
            }
        }
    }
    producer.flush().await.map_err(|e| e.to_string())?;
    let mut last = None;
    for d in pending {
        last = Some(d.await.map_err(|e| e.to_string())?);
    }
    producer.close().await.map_err(|e| e.to_string())?;
    client.close().await;
    match last.and_then(|m| m.offset.map(|o| (m.partition, o))) {
        Some((p, o)) => eprintln!("produced {count} records (last: partition {p} offset {o})"),
        None => eprintln!("produced {count} records"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(
            split_line("k:v:w", Some(":")),
            (Some(&b"k"[..]), &b"v:w"[..])
        );
        assert_eq!(split_line("plain", Some(":")), (None, &b"plain"[..]));
        assert_eq!(split_line("k:v", None), (None, &b"k:v"[..]));
        assert!(parse_acks("fsync").is_ok() && parse_acks("all").is_err());
    }
}
