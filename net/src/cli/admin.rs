//! `strata topic …` and `strata group …`.

use super::ConnectArgs;
use strata_log::format::Compression;
use strata_log::{Durability, TopicConfig};

/// Topic commands.
#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name ([A-Za-z0-9._-], at most 249 characters).
        name: String,
        /// Number of partitions.
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// When appends are acknowledged: none, written or fsync.
        #[arg(long, default_value = "written", value_parser = parse_durability)]
        durability: Durability,
        /// Codec producers use by default: none or lz4.
        #[arg(long, default_value = "none", value_parser = parse_compression)]
        compression: Compression,
        /// Segment size in bytes.
        #[arg(long, default_value_t = 1 << 30)]
        segment_bytes: u64,
        /// Keep at most this many bytes per partition.
        #[arg(long)]
        retention_bytes: Option<u64>,
        /// Delete segments older than this many milliseconds (default 7 days).
        #[arg(long)]
        retention_ms: Option<u64>,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic name.
        name: String,
    },
    /// List topics.
    List,
    /// Show a topic's configuration and partition offsets.
    Describe {
        /// Topic name.
        name: String,
    },
}

/// Consumer group commands.
#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// List consumer groups.
    List,
    /// Show a group's members, assignment and committed offsets.
    Describe {
        /// Group name.
        name: String,
    },
}

/// Parses `none`, `written` or `fsync`.
pub fn parse_durability(s: &str) -> Result<Durability, String> {
    match s {
        "none" => Ok(Durability::None),
        "written" => Ok(Durability::Written),
        "fsync" => Ok(Durability::Fsync),
        _ => Err(format!("{s:?}: expected none, written or fsync")),
    }
}

/// Parses `none` or `lz4`.
pub fn parse_compression(s: &str) -> Result<Compression, String> {
    match s {
        "none" => Ok(Compression::None),
        "lz4" => Ok(Compression::Lz4),
        _ => Err(format!("{s:?}: expected none or lz4")),
    }
}

fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::None => "none",
        Durability::Written => "written",
        Durability::Fsync => "fsync",
    }
}

fn describe_config(c: &TopicConfig) -> String {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    format!(
        "partitions={} durability={} compression={} segment_bytes={} retention_bytes={} retention_ms={}",
        c.partitions,
        durability_name(c.durability),
        match c.compression {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
        },
        c.segment_bytes,
        opt(c.retention_bytes),
        opt(c.retention_ms),
    )
}

/// Runs a topic command.
pub async fn topic(conn: &ConnectArgs, command: TopicCommand) -> Result<(), String> {
    let client = conn.connect().await?;
    let result = match command {
        TopicCommand::Create {
            name,
            partitions,
            durability,
            compression,
            segment_bytes,
            retention_bytes,
            retention_ms,
        } => {
            let config = TopicConfig {
                partitions,
                segment_bytes,
                retention_bytes,
                retention_ms: retention_ms.or(TopicConfig::default().retention_ms),
                durability,
                compression,
            };
            client.create_topic(&name, config).await.map(|t| {
                println!("created topic {} ({})", t.name, describe_config(&t.config));
            })
        }
        TopicCommand::Delete { name } => client
            .delete_topic(&name)
            .await
            .map(|()| println!("deleted topic {name}")),
        TopicCommand::List => client.list_topics().await.map(|topics| {
            for t in topics {
                println!("{}\t{}", t.name, describe_config(&t.config));
            }
        }),
        TopicCommand::Describe { name } => client.describe_topic(&name).await.map(|d| {
            println!("{}\t{}", d.topic.name, describe_config(&d.topic.config));
            println!("partition\tshard\tlog_start\thigh_watermark\tbytes");
            for p in d.partitions {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    p.partition, p.shard, p.log_start_offset, p.high_watermark, p.size_bytes
                );
            }
        }),
    };
    client.close().await;
    result.map_err(|e| e.to_string())
}

/// Runs a group command.
pub async fn group(conn: &ConnectArgs, command: GroupCommand) -> Result<(), String> {
    let client = conn.connect().await?;
    let result = match command {
        GroupCommand::List => client
            .list_groups()
            .await
            .map(|groups| {
                for g in groups {
                    println!("{g}");
                }
            })
            .map_err(|e| e.to_string()),
        GroupCommand::Describe { name } => match client.describe_group(&name).await {
            Ok(None) => Err(format!("no group named {name:?}")),
            Ok(Some(g)) => {
                println!(
                    "group {} generation {} strategy {:?}",
                    g.name, g.generation, g.strategy
                );
                for (member, partitions) in &g.members {
                    let list: Vec<String> = partitions
                        .iter()
                        .map(|tp| format!("{}/{}", tp.topic, tp.partition))
                        .collect();
                    println!("member {member}: {}", list.join(" "));
                }
                for (tp, offset) in &g.committed {
                    println!("committed {}/{} {offset}", tp.topic, tp.partition);
                }
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        },
    };
    client.close().await;
    result
}
