//! Request and response bodies, their frame kinds, and their encoding.
//!
//! Each body is a fixed sequence of fields (see `docs/PROTOCOL.md`); [`Request::decode`]
//! and [`Response::decode`] are pure functions over a frame's body.

use super::frame::{FrameHeader, HEADER_LEN};
use super::wire::{Reader, put_opt_u64, put_str};
use super::{ErrorCode, ProtocolError};
use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;
use strata_log::engine::{AssignmentStrategy, GroupSummary, PartitionState, TopicPartition};
use strata_log::format::Compression;
use strata_log::{Durability, OffsetQuery, TopicConfig};

/// Frame kinds: requests below 0x80, responses from 0x80.
pub mod kind {
    /// Opens a connection: version and token.
    pub const HELLO: u8 = 0x01;
    /// Creates a topic.
    pub const CREATE_TOPIC: u8 = 0x02;
    /// Deletes a topic.
    pub const DELETE_TOPIC: u8 = 0x03;
    /// Lists topics with their configuration.
    pub const LIST_TOPICS: u8 = 0x04;
    /// One topic's configuration and partition offsets.
    pub const DESCRIBE_TOPIC: u8 = 0x05;
    /// Server facts and the partition counts producers route by.
    pub const METADATA: u8 = 0x06;
    /// Assigns an idempotent producer id.
    pub const INIT_PRODUCER: u8 = 0x07;
    /// Appends one batch.
    pub const PRODUCE: u8 = 0x10;
    /// Reads batches from an offset.
    pub const FETCH: u8 = 0x11;
    /// Earliest, latest or by-timestamp offset.
    pub const LIST_OFFSET: u8 = 0x12;
    /// Opens a push subscription on this stream.
    pub const SUBSCRIBE: u8 = 0x13;
    /// Grants a subscription more bytes.
    pub const CREDIT: u8 = 0x14;
    /// Joins a consumer group.
    pub const JOIN_GROUP: u8 = 0x20;
    /// Keeps a group member alive.
    pub const HEARTBEAT: u8 = 0x21;
    /// Leaves a consumer group.
    pub const LEAVE_GROUP: u8 = 0x22;
    /// Commits group offsets.
    pub const COMMIT_OFFSETS: u8 = 0x23;
    /// Reads committed group offsets.
    pub const FETCH_OFFSETS: u8 = 0x24;
    /// Lists consumer groups.
    pub const LIST_GROUPS: u8 = 0x25;
    /// Describes one consumer group.
    pub const DESCRIBE_GROUP: u8 = 0x26;

    /// Success without a body.
    pub const OK: u8 = 0x80;
    /// Handshake accepted.
    pub const HELLO_OK: u8 = 0x81;
    /// A created topic.
    pub const TOPIC: u8 = 0x82;
    /// A list of topics.
    pub const TOPICS: u8 = 0x84;
    /// A topic and its partitions.
    pub const TOPIC_DESCRIPTION: u8 = 0x85;
    /// Server metadata.
    pub const METADATA_RESULT: u8 = 0x86;
    /// A producer id.
    pub const PRODUCER_ID: u8 = 0x87;
    /// Offsets of an appended batch.
    pub const PRODUCED: u8 = 0x90;
    /// Batches read by a fetch.
    pub const FETCHED: u8 = 0x91;
    /// An offset (or none).
    pub const OFFSET: u8 = 0x92;
    /// Batches pushed to a subscription.
    pub const DATA: u8 = 0x93;
    /// A member's generation and assignment.
    pub const MEMBERSHIP: u8 = 0xA0;
    /// Committed offsets.
    pub const OFFSETS: u8 = 0xA4;
    /// Group names.
    pub const GROUPS: u8 = 0xA5;
    /// A group's description.
    pub const GROUP_DESCRIPTION: u8 = 0xA6;
    /// A failed request: code, detail and message.
    pub const ERROR: u8 = 0xFF;
}

/// What a producer waits for before its append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Acks {
    /// Acknowledged once queued on the owning shard (no offsets returned).
    None = 0,
    /// Acknowledged once in the page cache.
    #[default]
    Written = 1,
    /// Acknowledged once on disk (the topic's durability must be fsync).
    Fsync = 2,
}

impl Acks {
    /// The acks a topic with this durability can honour at most.
    pub fn allowed_by(durability: Durability) -> Acks {
        match durability {
            Durability::None => Acks::None,
            Durability::Written => Acks::Written,
            Durability::Fsync => Acks::Fsync,
        }
    }
}

/// A topic's name, id and configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Id assigned at creation.
    pub id: u64,
    /// Its configuration.
    pub config: TopicConfig,
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Handshake: the first frame of a connection.
    Hello {
        /// Protocol version the client speaks.
        version: u16,
        /// Bearer token (empty for none).
        token: String,
        /// Free-form client name, for logs.
        client: String,
    },
    /// Creates a topic.
    CreateTopic {
        /// Topic name.
        name: String,
        /// Its configuration.
        config: TopicConfig,
    },
    /// Deletes a topic and its data.
    DeleteTopic {
        /// Topic name.
        name: String,
    },
    /// Lists every topic.
    ListTopics,
    /// Describes one topic.
    DescribeTopic {
        /// Topic name.
        name: String,
    },
    /// Server facts and topics (all of them when `topics` is empty).
    Metadata {
        /// Topics to describe.
        topics: Vec<String>,
    },
    /// Assigns a fresh idempotent producer id.
    InitProducer,
    /// Appends one batch (in the log's format) to a partition.
    Produce {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// When to acknowledge.
        acks: Acks,
        /// Append only if the partition's next offset is this.
        expected_offset: Option<u64>,
        /// The batch, exactly as stored.
        batch: Bytes,
    },
    /// Reads whole batches from an offset.
    Fetch {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// First offset wanted.
        offset: u64,
        /// Byte budget (at least one batch is returned).
        max_bytes: u32,
        /// How long to wait for data at the high watermark (0 = answer at once).
        max_wait_ms: u32,
    },
    /// Looks up an offset.
    ListOffset {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// Earliest, latest or by timestamp.
        query: OffsetQuery,
    },
    /// Starts pushing batches from `offset` on this stream, within `credit` bytes.
    Subscribe {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: u32,
        /// First offset wanted.
        offset: u64,
        /// Bytes the server may push before it needs more credit.
        credit: u32,
    },
    /// Grants a subscription more bytes.
    Credit {
        /// Additional bytes.
        bytes: u32,
    },
    /// Joins a consumer group.
    JoinGroup {
        /// Group name.
        group: String,
        /// Member id when rejoining.
        member_id: Option<String>,
        /// Assignment strategy (the first member's choice wins).
        strategy: AssignmentStrategy,
        /// Expire the member after this long without a heartbeat.
        session_timeout_ms: u32,
        /// Subscribed topics.
        topics: Vec<String>,
    },
    /// Keeps a member alive.
    Heartbeat {
        /// Group name.
        group: String,
        /// Member id.
        member_id: String,
    },
    /// Leaves a group.
    LeaveGroup {
        /// Group name.
        group: String,
        /// Member id.
        member_id: String,
    },
    /// Commits offsets (the next offsets to consume).
    CommitOffsets {
        /// Group name.
        group: String,
        /// `(member id, generation)`, or none for offsets managed by hand.
        member: Option<(String, u32)>,
        /// Offsets per partition.
        offsets: Vec<(TopicPartition, u64)>,
    },
    /// Reads committed offsets.
    FetchOffsets {
        /// Group name.
        group: String,
        /// Partitions asked about.
        partitions: Vec<TopicPartition>,
    },
    /// Lists groups.
    ListGroups,
    /// Describes one group.
    DescribeGroup {
        /// Group name.
        group: String,
    },
}

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Success without a body.
    Ok,
    /// Handshake accepted.
    HelloOk {
        /// Version the server will speak.
        version: u16,
        /// Server software and version.
        server: String,
        /// Shards (cores) serving.
        shards: u32,
    },
    /// The created topic.
    Topic(TopicInfo),
    /// Every topic.
    Topics(Vec<TopicInfo>),
    /// A topic and its partitions.
    TopicDescription {
        /// The topic.
        topic: TopicInfo,
        /// Its partitions.
        partitions: Vec<PartitionState>,
    },
    /// Server facts and topics.
    Metadata {
        /// Shards serving.
        shards: u32,
        /// Topics asked about.
        topics: Vec<TopicInfo>,
    },
    /// A fresh producer id and its epoch.
    ProducerId {
        /// Id.
        producer_id: u64,
        /// Epoch.
        epoch: u16,
    },
    /// Offsets of an appended batch (none when acks were `None`).
    Produced {
        /// `(base offset, last offset)`.
        offsets: Option<(u64, u64)>,
    },
    /// Batches read.
    Fetched {
        /// Offset after the last durable record.
        high_watermark: u64,
        /// First retained offset.
        log_start_offset: u64,
        /// Whole batches, possibly empty.
        batches: Bytes,
    },
    /// An offset, if one matched.
    Offset(Option<u64>),
    /// Batches pushed to a subscription.
    Data {
        /// Offset after the last durable record.
        high_watermark: u64,
        /// Whole batches.
        batches: Bytes,
    },
    /// A member's standing in its group.
    Membership {
        /// Member id.
        member_id: String,
        /// Group generation.
        generation: u32,
        /// Partitions this member owns.
        assignment: Vec<TopicPartition>,
    },
    /// Committed offsets, in the order asked.
    Offsets(Vec<Option<u64>>),
    /// Group names.
    Groups(Vec<String>),
    /// A group, if it exists.
    GroupDescription(Option<GroupSummary>),
    /// The request failed.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A number that goes with the code (see [`ErrorCode`]), else 0.
        detail: u64,
        /// Human-readable explanation.
        message: String,
    },
}

/// Writes a frame header with room for the body, runs `body`, then patches the length.
fn encode_frame(
    out: &mut BytesMut,
    kind: u8,
    request_id: u64,
    tail: Option<&Bytes>,
    body: impl FnOnce(&mut BytesMut),
) {
    let start = out.len();
    out.put_bytes(0, HEADER_LEN);
    body(out);
    let body_len = out.len() - start - HEADER_LEN + tail.map_or(0, Bytes::len);
    let body_len = u32::try_from(body_len).expect("frames are bounded far below 4 GiB");
    FrameHeader {
        body_len,
        kind,
        request_id,
    }
    .encode(&mut &mut out[start..start + HEADER_LEN]);
}

fn put_topic_config(out: &mut BytesMut, c: &TopicConfig) {
    out.put_u32_le(c.partitions);
    out.put_u64_le(c.segment_bytes);
    put_opt_u64(out, c.retention_bytes);
    put_opt_u64(out, c.retention_ms);
    out.put_u8(match c.durability {
        Durability::None => 0,
        Durability::Written => 1,
        Durability::Fsync => 2,
    });
    out.put_u8(match c.compression {
        Compression::None => 0,
        Compression::Lz4 => 1,
    });
}

fn get_topic_config(r: &mut Reader<'_>) -> Result<TopicConfig, ProtocolError> {
    let partitions = r.u32("partitions")?;
    let segment_bytes = r.u64("segment_bytes")?;
    let retention_bytes = r.opt_u64("retention_bytes")?;
    let retention_ms = r.opt_u64("retention_ms")?;
    let durability = match r.u8("durability")? {
        0 => Durability::None,
        1 => Durability::Written,
        2 => Durability::Fsync,
        v => return Err(r.invalid("durability", v)),
    };
    let compression = match r.u8("compression")? {
        0 => Compression::None,
        1 => Compression::Lz4,
        v => return Err(r.invalid("compression", v)),
    };
    Ok(TopicConfig {
        partitions,
        segment_bytes,
        retention_bytes,
        retention_ms,
        durability,
        compression,
    })
}

fn put_topic_info(out: &mut BytesMut, t: &TopicInfo) {
    put_str(out, &t.name);
    out.put_u64_le(t.id);
    put_topic_config(out, &t.config);
}

fn get_topic_info(r: &mut Reader<'_>) -> Result<TopicInfo, ProtocolError> {
    Ok(TopicInfo {
        name: r.str("name")?,
        id: r.u64("id")?,
        config: get_topic_config(r)?,
    })
}

fn put_topics(out: &mut BytesMut, topics: &[TopicInfo]) {
    out.put_u32_le(topics.len() as u32);
    for t in topics {
        put_topic_info(out, t);
    }
}

fn get_topics(r: &mut Reader<'_>) -> Result<Vec<TopicInfo>, ProtocolError> {
    let n = r.count("topics", 2 + 8 + 4 + 8 + 1 + 1 + 1 + 1)?;
    (0..n).map(|_| get_topic_info(r)).collect()
}

fn put_strs(out: &mut BytesMut, items: &[String]) {
    out.put_u32_le(items.len() as u32);
    for s in items {
        put_str(out, s);
    }
}

fn get_strs(r: &mut Reader<'_>, field: &str) -> Result<Vec<String>, ProtocolError> {
    let n = r.count(field, 2)?;
    (0..n).map(|_| r.str(field)).collect()
}

fn put_tp(out: &mut BytesMut, tp: &TopicPartition) {
    put_str(out, &tp.topic);
    out.put_u32_le(tp.partition);
}

fn get_tp(r: &mut Reader<'_>) -> Result<TopicPartition, ProtocolError> {
    Ok(TopicPartition {
        topic: r.str("topic")?,
        partition: r.u32("partition")?,
    })
}

fn put_tps(out: &mut BytesMut, tps: &[TopicPartition]) {
    out.put_u32_le(tps.len() as u32);
    for tp in tps {
        put_tp(out, tp);
    }
}

fn get_tps(r: &mut Reader<'_>) -> Result<Vec<TopicPartition>, ProtocolError> {
    let n = r.count("partitions", 6)?;
    (0..n).map(|_| get_tp(r)).collect()
}

fn strategy_byte(s: AssignmentStrategy) -> u8 {
    match s {
        AssignmentStrategy::Range => 0,
        AssignmentStrategy::RoundRobin => 1,
        AssignmentStrategy::Sticky => 2,
    }
}

fn get_strategy(r: &mut Reader<'_>) -> Result<AssignmentStrategy, ProtocolError> {
    match r.u8("strategy")? {
        0 => Ok(AssignmentStrategy::Range),
        1 => Ok(AssignmentStrategy::RoundRobin),
        2 => Ok(AssignmentStrategy::Sticky),
        v => Err(r.invalid("strategy", v)),
    }
}

impl Request {
    /// This request's frame kind.
    pub fn kind(&self) -> u8 {
        match self {
            Request::Hello { .. } => kind::HELLO,
            Request::CreateTopic { .. } => kind::CREATE_TOPIC,
            Request::DeleteTopic { .. } => kind::DELETE_TOPIC,
            Request::ListTopics => kind::LIST_TOPICS,
            Request::DescribeTopic { .. } => kind::DESCRIBE_TOPIC,
            Request::Metadata { .. } => kind::METADATA,
            Request::InitProducer => kind::INIT_PRODUCER,
            Request::Produce { .. } => kind::PRODUCE,
            Request::Fetch { .. } => kind::FETCH,
            Request::ListOffset { .. } => kind::LIST_OFFSET,
            Request::Subscribe { .. } => kind::SUBSCRIBE,
            Request::Credit { .. } => kind::CREDIT,
            Request::JoinGroup { .. } => kind::JOIN_GROUP,
            Request::Heartbeat { .. } => kind::HEARTBEAT,
            Request::LeaveGroup { .. } => kind::LEAVE_GROUP,
            Request::CommitOffsets { .. } => kind::COMMIT_OFFSETS,
            Request::FetchOffsets { .. } => kind::FETCH_OFFSETS,
            Request::ListGroups => kind::LIST_GROUPS,
            Request::DescribeGroup { .. } => kind::DESCRIBE_GROUP,
        }
    }

    /// Appends this request as one frame to `out`.
    ///
    /// A produce request's batch is not copied: it is returned, and the caller sends it
    /// right after `out`'s bytes (the frame length already counts it).
    pub fn encode(&self, request_id: u64, out: &mut BytesMut) -> Option<Bytes> {
        let tail = match self {
            Request::Produce { batch, .. } => Some(batch.clone()),
            _ => None,
        };
        encode_frame(out, self.kind(), request_id, tail.as_ref(), |o| {
            self.encode_body(o)
        });
        tail
    }

    fn encode_body(&self, o: &mut BytesMut) {
        match self {
            Request::Hello {
                version,
                token,
                client,
            } => {
                o.put_u16_le(*version);
                put_str(o, token);
                put_str(o, client);
            }
            Request::CreateTopic { name, config } => {
                put_str(o, name);
                put_topic_config(o, config);
            }
            Request::DeleteTopic { name } | Request::DescribeTopic { name } => put_str(o, name),
            Request::ListTopics | Request::InitProducer | Request::ListGroups => {}
            Request::Metadata { topics } => put_strs(o, topics),
            Request::Produce {
                topic,
                partition,
                acks,
                expected_offset,
                batch: _,
            } => {
                put_str(o, topic);
                o.put_u32_le(*partition);
                o.put_u8(*acks as u8);
                put_opt_u64(o, *expected_offset);
            }
            Request::Fetch {
                topic,
                partition,
                offset,
                max_bytes,
                max_wait_ms,
            } => {
                put_str(o, topic);
                o.put_u32_le(*partition);
                o.put_u64_le(*offset);
                o.put_u32_le(*max_bytes);
                o.put_u32_le(*max_wait_ms);
            }
            Request::ListOffset {
                topic,
                partition,
                query,
            } => {
                put_str(o, topic);
                o.put_u32_le(*partition);
                let (q, ts) = match query {
                    OffsetQuery::Earliest => (0, 0),
                    OffsetQuery::Latest => (1, 0),
                    OffsetQuery::Timestamp(t) => (2, *t),
                };
                o.put_u8(q);
                o.put_i64_le(ts);
            }
            Request::Subscribe {
                topic,
                partition,
                offset,
                credit,
            } => {
                put_str(o, topic);
                o.put_u32_le(*partition);
                o.put_u64_le(*offset);
                o.put_u32_le(*credit);
            }
            Request::Credit { bytes } => o.put_u32_le(*bytes),
            Request::JoinGroup {
                group,
                member_id,
                strategy,
                session_timeout_ms,
                topics,
            } => {
                put_str(o, group);
                put_str(o, member_id.as_deref().unwrap_or(""));
                o.put_u8(strategy_byte(*strategy));
                o.put_u32_le(*session_timeout_ms);
                put_strs(o, topics);
            }
            Request::Heartbeat { group, member_id } | Request::LeaveGroup { group, member_id } => {
                put_str(o, group);
                put_str(o, member_id);
            }
            Request::CommitOffsets {
                group,
                member,
                offsets,
            } => {
                put_str(o, group);
                match member {
                    Some((id, generation)) => {
                        o.put_u8(1);
                        put_str(o, id);
                        o.put_u32_le(*generation);
                    }
                    None => o.put_u8(0),
                }
                o.put_u32_le(offsets.len() as u32);
                for (tp, offset) in offsets {
                    put_tp(o, tp);
                    o.put_u64_le(*offset);
                }
            }
            Request::FetchOffsets { group, partitions } => {
                put_str(o, group);
                put_tps(o, partitions);
            }
            Request::DescribeGroup { group } => put_str(o, group),
        }
    }

    /// Decodes a request body of frame kind `kind`. Pure; never panics on any input.
    pub fn decode(kind: u8, mut body: BytesMut) -> Result<Request, ProtocolError> {
        let mut r = Reader::new(&mut body, kind_name(kind));
        let req = match kind {
            kind::HELLO => Request::Hello {
                version: r.u16("version")?,
                token: r.str("token")?,
                client: r.str("client")?,
            },
            kind::CREATE_TOPIC => Request::CreateTopic {
                name: r.str("name")?,
                config: get_topic_config(&mut r)?,
            },
            kind::DELETE_TOPIC => Request::DeleteTopic {
                name: r.str("name")?,
            },
            kind::LIST_TOPICS => Request::ListTopics,
            kind::DESCRIBE_TOPIC => Request::DescribeTopic {
                name: r.str("name")?,
            },
            kind::METADATA => Request::Metadata {
                topics: get_strs(&mut r, "topics")?,
            },
            kind::INIT_PRODUCER => Request::InitProducer,
            kind::PRODUCE => {
                let topic = r.str("topic")?;
                let partition = r.u32("partition")?;
                let acks = match r.u8("acks")? {
                    0 => Acks::None,
                    1 => Acks::Written,
                    2 => Acks::Fsync,
                    v => return Err(r.invalid("acks", v)),
                };
                let expected_offset = r.opt_u64("expected_offset")?;
                let batch = r.rest().freeze();
                Request::Produce {
                    topic,
                    partition,
                    acks,
                    expected_offset,
                    batch,
                }
            }
            kind::FETCH => Request::Fetch {
                topic: r.str("topic")?,
                partition: r.u32("partition")?,
                offset: r.u64("offset")?,
                max_bytes: r.u32("max_bytes")?,
                max_wait_ms: r.u32("max_wait_ms")?,
            },
            kind::LIST_OFFSET => {
                let topic = r.str("topic")?;
                let partition = r.u32("partition")?;
                let q = r.u8("query")?;
                let ts = r.i64("timestamp")?;
                let query = match q {
                    0 => OffsetQuery::Earliest,
                    1 => OffsetQuery::Latest,
                    2 => OffsetQuery::Timestamp(ts),
                    v => return Err(r.invalid("query", v)),
                };
                Request::ListOffset {
                    topic,
                    partition,
                    query,
                }
            }
            kind::SUBSCRIBE => Request::Subscribe {
                topic: r.str("topic")?,
                partition: r.u32("partition")?,
                offset: r.u64("offset")?,
                credit: r.u32("credit")?,
            },
            kind::CREDIT => Request::Credit {
                bytes: r.u32("bytes")?,
            },
            kind::JOIN_GROUP => {
                let group = r.str("group")?;
                let member_id = Some(r.str("member_id")?).filter(|m| !m.is_empty());
                Request::JoinGroup {
                    group,
                    member_id,
                    strategy: get_strategy(&mut r)?,
                    session_timeout_ms: r.u32("session_timeout_ms")?,
                    topics: get_strs(&mut r, "topics")?,
                }
            }
            kind::HEARTBEAT => Request::Heartbeat {
                group: r.str("group")?,
                member_id: r.str("member_id")?,
            },
            kind::LEAVE_GROUP => Request::LeaveGroup {
                group: r.str("group")?,
                member_id: r.str("member_id")?,
            },
            kind::COMMIT_OFFSETS => {
                let group = r.str("group")?;
                let member = if r.bool("has_member")? {
                    Some((r.str("member_id")?, r.u32("generation")?))
                } else {
                    None
                };
                let n = r.count("offsets", 14)?;
                let mut offsets = Vec::with_capacity(n);
                for _ in 0..n {
                    let tp = get_tp(&mut r)?;
                    offsets.push((tp, r.u64("offset")?));
                }
                Request::CommitOffsets {
                    group,
                    member,
                    offsets,
                }
            }
            kind::FETCH_OFFSETS => Request::FetchOffsets {
                group: r.str("group")?,
                partitions: get_tps(&mut r)?,
            },
            kind::LIST_GROUPS => Request::ListGroups,
            kind::DESCRIBE_GROUP => Request::DescribeGroup {
                group: r.str("group")?,
            },
            other => {
                return Err(ProtocolError::Malformed(format!(
                    "unknown request kind {other:#04x}"
                )));
            }
        };
        r.finish()?;
        Ok(req)
    }
}

impl Response {
    /// This response's frame kind.
    pub fn kind(&self) -> u8 {
        match self {
            Response::Ok => kind::OK,
            Response::HelloOk { .. } => kind::HELLO_OK,
            Response::Topic(_) => kind::TOPIC,
            Response::Topics(_) => kind::TOPICS,
            Response::TopicDescription { .. } => kind::TOPIC_DESCRIPTION,
            Response::Metadata { .. } => kind::METADATA_RESULT,
            Response::ProducerId { .. } => kind::PRODUCER_ID,
            Response::Produced { .. } => kind::PRODUCED,
            Response::Fetched { .. } => kind::FETCHED,
            Response::Offset(_) => kind::OFFSET,
            Response::Data { .. } => kind::DATA,
            Response::Membership { .. } => kind::MEMBERSHIP,
            Response::Offsets(_) => kind::OFFSETS,
            Response::Groups(_) => kind::GROUPS,
            Response::GroupDescription(_) => kind::GROUP_DESCRIPTION,
            Response::Error { .. } => kind::ERROR,
        }
    }

    /// An error response.
    pub fn error(code: ErrorCode, detail: u64, message: impl Into<String>) -> Response {
        Response::Error {
            code,
            detail,
            message: message.into(),
        }
    }

    /// The error response for an engine error.
    pub fn from_log_error(e: &strata_log::Error) -> Response {
        let (code, detail) = ErrorCode::for_log_error(e);
        Response::error(code, detail, e.to_string())
    }

    /// Appends this response as one frame to `out`.
    ///
    /// Batches of a fetch or a push are not copied: they are returned, and the caller
    /// sends them right after `out`'s bytes (the frame length already counts them).
    pub fn encode(&self, request_id: u64, out: &mut BytesMut) -> Option<Bytes> {
        let tail = match self {
            Response::Fetched { batches, .. } | Response::Data { batches, .. } => {
                Some(batches.clone())
            }
            _ => None,
        };
        encode_frame(out, self.kind(), request_id, tail.as_ref(), |o| {
            self.encode_body(o)
        });
        tail
    }

    fn encode_body(&self, o: &mut BytesMut) {
        match self {
            Response::Ok => {}
            Response::HelloOk {
                version,
                server,
                shards,
            } => {
                o.put_u16_le(*version);
                put_str(o, server);
                o.put_u32_le(*shards);
            }
            Response::Topic(t) => put_topic_info(o, t),
            Response::Topics(ts) => put_topics(o, ts),
            Response::TopicDescription { topic, partitions } => {
                put_topic_info(o, topic);
                o.put_u32_le(partitions.len() as u32);
                for p in partitions {
                    o.put_u32_le(p.partition);
                    o.put_u32_le(p.shard as u32);
                    o.put_u64_le(p.log_start_offset);
                    o.put_u64_le(p.high_watermark);
                    o.put_u64_le(p.size_bytes);
                }
            }
            Response::Metadata { shards, topics } => {
                o.put_u32_le(*shards);
                put_topics(o, topics);
            }
            Response::ProducerId { producer_id, epoch } => {
                o.put_u64_le(*producer_id);
                o.put_u16_le(*epoch);
            }
            Response::Produced { offsets } => match offsets {
                Some((base, last)) => {
                    o.put_u8(1);
                    o.put_u64_le(*base);
                    o.put_u64_le(*last);
                }
                None => o.put_u8(0),
            },
            Response::Fetched {
                high_watermark,
                log_start_offset,
                batches: _,
            } => {
                o.put_u64_le(*high_watermark);
                o.put_u64_le(*log_start_offset);
            }
            Response::Offset(v) => put_opt_u64(o, *v),
            Response::Data {
                high_watermark,
                batches: _,
            } => o.put_u64_le(*high_watermark),
            Response::Membership {
                member_id,
                generation,
                assignment,
            } => {
                put_str(o, member_id);
                o.put_u32_le(*generation);
                put_tps(o, assignment);
            }
            Response::Offsets(v) => {
                o.put_u32_le(v.len() as u32);
                for x in v {
                    put_opt_u64(o, *x);
                }
            }
            Response::Groups(names) => put_strs(o, names),
            Response::GroupDescription(g) => match g {
                None => o.put_u8(0),
                Some(g) => {
                    o.put_u8(1);
                    put_str(o, &g.name);
                    o.put_u32_le(g.generation);
                    o.put_u8(strategy_byte(g.strategy));
                    o.put_u32_le(g.members.len() as u32);
                    for (member, tps) in &g.members {
                        put_str(o, member);
                        put_tps(o, tps);
                    }
                    o.put_u32_le(g.committed.len() as u32);
                    for (tp, offset) in &g.committed {
                        put_tp(o, tp);
                        o.put_u64_le(*offset);
                    }
                }
            },
            Response::Error {
                code,
                detail,
                message,
            } => {
                o.put_u16_le(*code as u16);
                o.put_u64_le(*detail);
                put_str(o, message);
            }
        }
    }

    /// Decodes a response body of frame kind `kind`. Pure; never panics on any input.
    pub fn decode(kind: u8, mut body: BytesMut) -> Result<Response, ProtocolError> {
        let mut r = Reader::new(&mut body, kind_name(kind));
        let resp = match kind {
            kind::OK => Response::Ok,
            kind::HELLO_OK => Response::HelloOk {
                version: r.u16("version")?,
                server: r.str("server")?,
                shards: r.u32("shards")?,
            },
            kind::TOPIC => Response::Topic(get_topic_info(&mut r)?),
            kind::TOPICS => Response::Topics(get_topics(&mut r)?),
            kind::TOPIC_DESCRIPTION => {
                let topic = get_topic_info(&mut r)?;
                let n = r.count("partitions", 32)?;
                let mut partitions = Vec::with_capacity(n);
                for _ in 0..n {
                    partitions.push(PartitionState {
                        partition: r.u32("partition")?,
                        shard: r.u32("shard")? as usize,
                        log_start_offset: r.u64("log_start_offset")?,
                        high_watermark: r.u64("high_watermark")?,
                        size_bytes: r.u64("size_bytes")?,
                    });
                }
                Response::TopicDescription { topic, partitions }
            }
            kind::METADATA_RESULT => Response::Metadata {
                shards: r.u32("shards")?,
                topics: get_topics(&mut r)?,
            },
            kind::PRODUCER_ID => Response::ProducerId {
                producer_id: r.u64("producer_id")?,
                epoch: r.u16("epoch")?,
            },
            kind::PRODUCED => Response::Produced {
                offsets: if r.bool("has_offsets")? {
                    Some((r.u64("base_offset")?, r.u64("last_offset")?))
                } else {
                    None
                },
            },
            kind::FETCHED => Response::Fetched {
                high_watermark: r.u64("high_watermark")?,
                log_start_offset: r.u64("log_start_offset")?,
                batches: r.rest().freeze(),
            },
            kind::OFFSET => Response::Offset(r.opt_u64("offset")?),
            kind::DATA => Response::Data {
                high_watermark: r.u64("high_watermark")?,
                batches: r.rest().freeze(),
            },
            kind::MEMBERSHIP => Response::Membership {
                member_id: r.str("member_id")?,
                generation: r.u32("generation")?,
                assignment: get_tps(&mut r)?,
            },
            kind::OFFSETS => {
                let n = r.count("offsets", 1)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(r.opt_u64("offset")?);
                }
                Response::Offsets(v)
            }
            kind::GROUPS => Response::Groups(get_strs(&mut r, "groups")?),
            kind::GROUP_DESCRIPTION => {
                if r.bool("exists")? {
                    let name = r.str("name")?;
                    let generation = r.u32("generation")?;
                    let strategy = get_strategy(&mut r)?;
                    let n = r.count("members", 6)?;
                    let mut members = BTreeMap::new();
                    for _ in 0..n {
                        let m = r.str("member")?;
                        members.insert(m, get_tps(&mut r)?);
                    }
                    let n = r.count("committed", 14)?;
                    let mut committed = BTreeMap::new();
                    for _ in 0..n {
                        let tp = get_tp(&mut r)?;
                        committed.insert(tp, r.u64("offset")?);
                    }
                    Response::GroupDescription(Some(GroupSummary {
                        name,
                        generation,
                        strategy,
                        members,
                        committed,
                    }))
                } else {
                    Response::GroupDescription(None)
                }
            }
            kind::ERROR => {
                let raw = r.u16("code")?;
                let code = ErrorCode::from_u16(raw).unwrap_or(ErrorCode::Internal);
                Response::Error {
                    code,
                    detail: r.u64("detail")?,
                    message: r.str("message")?,
                }
            }
            other => {
                return Err(ProtocolError::Malformed(format!(
                    "unknown response kind {other:#04x}"
                )));
            }
        };
        r.finish()?;
        Ok(resp)
    }
}

/// A frame kind's name, for messages.
pub fn kind_name(k: u8) -> &'static str {
    match k {
        kind::HELLO => "HELLO",
        kind::CREATE_TOPIC => "CREATE_TOPIC",
        kind::DELETE_TOPIC => "DELETE_TOPIC",
        kind::LIST_TOPICS => "LIST_TOPICS",
        kind::DESCRIBE_TOPIC => "DESCRIBE_TOPIC",
        kind::METADATA => "METADATA",
        kind::INIT_PRODUCER => "INIT_PRODUCER",
        kind::PRODUCE => "PRODUCE",
        kind::FETCH => "FETCH",
        kind::LIST_OFFSET => "LIST_OFFSET",
        kind::SUBSCRIBE => "SUBSCRIBE",
        kind::CREDIT => "CREDIT",
        kind::JOIN_GROUP => "JOIN_GROUP",
        kind::HEARTBEAT => "HEARTBEAT",
        kind::LEAVE_GROUP => "LEAVE_GROUP",
        kind::COMMIT_OFFSETS => "COMMIT_OFFSETS",
        kind::FETCH_OFFSETS => "FETCH_OFFSETS",
        kind::LIST_GROUPS => "LIST_GROUPS",
        kind::DESCRIBE_GROUP => "DESCRIBE_GROUP",
        kind::OK => "OK",
        kind::HELLO_OK => "HELLO_OK",
        kind::TOPIC => "TOPIC",
        kind::TOPICS => "TOPICS",
        kind::TOPIC_DESCRIPTION => "TOPIC_DESCRIPTION",
        kind::METADATA_RESULT => "METADATA_RESULT",
        kind::PRODUCER_ID => "PRODUCER_ID",
        kind::PRODUCED => "PRODUCED",
        kind::FETCHED => "FETCHED",
        kind::OFFSET => "OFFSET",
        kind::DATA => "DATA",
        kind::MEMBERSHIP => "MEMBERSHIP",
        kind::OFFSETS => "OFFSETS",
        kind::GROUPS => "GROUPS",
        kind::GROUP_DESCRIPTION => "GROUP_DESCRIPTION",
        kind::ERROR => "ERROR",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::split_frame;

    #[test]
    fn a_batch_from_a_frame_buffer_of_its_own_becomes_mutable_without_a_copy() {
        let batch = Bytes::from(vec![7u8; 64 * 1024]);
        let req = Request::Produce {
            topic: "t".into(),
            partition: 3,
            acks: Acks::Written,
            expected_offset: None,
            batch: batch.clone(),
        };
        let mut own = BytesMut::new();
        let tail = req.encode(9, &mut own).unwrap();
        own.extend_from_slice(&tail);
        let frame = split_frame(&mut own, 1 << 20).unwrap().unwrap();
        drop(own);
        let start = frame.body.as_ptr() as usize;
        let Request::Produce { batch: got, .. } = Request::decode(frame.kind, frame.body).unwrap()
        else {
            panic!()
        };
        assert_eq!(got, batch);
        let batch_ptr = got.as_ptr() as usize;
        assert!(batch_ptr > start, "the batch is a view into the frame body");
        let mutable = BytesMut::from(got);
        assert_eq!(
            mutable.as_ptr() as usize,
            batch_ptr,
            "converted without a copy"
        );

        // While another view of the allocation lives, the conversion has to copy: this
        // is why the server reads large frames into a buffer of their own.
        let mut shared = BytesMut::new();
        req.encode(9, &mut shared);
        shared.extend_from_slice(&tail);
        shared.extend_from_slice(&[0u8; 3]); // the start of a next frame
        let frame = split_frame(&mut shared, 1 << 20).unwrap().unwrap();
        let Request::Produce { batch: got, .. } = Request::decode(frame.kind, frame.body).unwrap()
        else {
            panic!()
        };
        let ptr = got.as_ptr() as usize;
        assert_ne!(BytesMut::from(got).as_ptr() as usize, ptr);
        assert_eq!(shared.len(), 3);
    }
}
