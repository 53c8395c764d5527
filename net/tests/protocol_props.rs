//! Property tests of the sans-IO wire protocol (`strata_net::protocol`): every request
//! and response survives encode → split → decode; concatenated frames split back
//! exactly whatever the chunking; arbitrary and mutated bytes never make the splitter or
//! the decoders panic; and `docs/PROTOCOL.md` agrees with the code.

use bytes::{Bytes, BytesMut};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::TestRunner;
use std::collections::{BTreeMap, BTreeSet};
use strata_log::engine::{AssignmentStrategy, GroupSummary, PartitionState, TopicPartition};
use strata_log::format::Compression;
use strata_log::{Durability, OffsetQuery, TopicConfig};
use strata_net::protocol::frame::{
    BODY_LEN_OFFSET, FLAGS_OFFSET, KIND_OFFSET, REQUEST_ID_OFFSET, RESERVED_OFFSET,
};
use strata_net::protocol::wire::MAX_STR_LEN;
use strata_net::protocol::{
    ALPN, Acks, DEFAULT_MAX_FRAME, ErrorCode, HEADER_LEN, ProtocolError, Request, Response,
    TopicInfo, VERSION, kind, kind_name, split_frame,
};

// The fuzz target's body, compiled here too so CI runs it on stable.
#[path = "../fuzz/shared/frame_decoder.rs"]
mod fuzz_shared;

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Short strings of any characters (multi-byte ones included).
fn text() -> impl Strategy<Value = String> {
    "(?s).{0,12}"
}

fn nonempty_text() -> impl Strategy<Value = String> {
    "(?s).{1,12}"
}

fn batch_bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

fn durability() -> impl Strategy<Value = Durability> {
    prop_oneof![
        Just(Durability::None),
        Just(Durability::Written),
        Just(Durability::Fsync)
    ]
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![Just(Compression::None), Just(Compression::Lz4)]
}

fn strategy() -> impl Strategy<Value = AssignmentStrategy> {
    prop_oneof![
        Just(AssignmentStrategy::Range),
        Just(AssignmentStrategy::RoundRobin),
        Just(AssignmentStrategy::Sticky)
    ]
}

fn acks() -> impl Strategy<Value = Acks> {
    prop_oneof![Just(Acks::None), Just(Acks::Written), Just(Acks::Fsync)]
}

fn offset_query() -> impl Strategy<Value = OffsetQuery> {
    prop_oneof![
        Just(OffsetQuery::Earliest),
        Just(OffsetQuery::Latest),
        any::<i64>().prop_map(OffsetQuery::Timestamp)
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL.to_vec())
}

fn topic_config() -> impl Strategy<Value = TopicConfig> {
    (
        any::<u32>(),
        any::<u64>(),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        durability(),
        compression(),
    )
        .prop_map(
            |(
                partitions,
                segment_bytes,
                retention_bytes,
                retention_ms,
                durability,
                compression,
            )| {
                TopicConfig {
                    partitions,
                    segment_bytes,
                    retention_bytes,
                    retention_ms,
                    durability,
                    compression,
                }
            },
        )
}

fn topic_info() -> impl Strategy<Value = TopicInfo> {
    (text(), any::<u64>(), topic_config()).prop_map(|(name, id, config)| TopicInfo {
        name,
        id,
        config,
    })
}

fn topic_partition() -> impl Strategy<Value = TopicPartition> {
    (text(), any::<u32>()).prop_map(|(topic, partition)| TopicPartition { topic, partition })
}

fn partition_state() -> impl Strategy<Value = PartitionState> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(partition, shard, log_start_offset, high_watermark, size_bytes)| PartitionState {
                partition,
                // The wire carries the shard as a u32.
                shard: shard as usize,
                log_start_offset,
                high_watermark,
                size_bytes,
            },
        )
}

fn group_summary() -> impl Strategy<Value = GroupSummary> {
    (
        text(),
        any::<u32>(),
        strategy(),
        btree_map(text(), vec(topic_partition(), 0..4), 0..4),
        btree_map(topic_partition(), any::<u64>(), 0..4),
    )
        .prop_map(
            |(name, generation, strategy, members, committed)| GroupSummary {
                name,
                generation,
                strategy,
                members,
                committed,
            },
        )
}

/// Every request variant (the exhaustive match in `expected_request_kind` makes a new
/// variant fail to compile until it is added here too).
fn request() -> BoxedStrategy<Request> {
    Union::new(vec![
        (any::<u16>(), text(), text())
            .prop_map(|(version, token, client)| Request::Hello {
                version,
                token,
                client,
            })
            .boxed(),
        (text(), topic_config())
            .prop_map(|(name, config)| Request::CreateTopic { name, config })
            .boxed(),
        text()
            .prop_map(|name| Request::DeleteTopic { name })
            .boxed(),
        Just(Request::ListTopics).boxed(),
        text()
            .prop_map(|name| Request::DescribeTopic { name })
            .boxed(),
        vec(text(), 0..5)
            .prop_map(|topics| Request::Metadata { topics })
            .boxed(),
        Just(Request::InitProducer).boxed(),
        (
            text(),
            any::<u32>(),
            acks(),
            any::<Option<u64>>(),
            batch_bytes(),
        )
            .prop_map(
                |(topic, partition, acks, expected_offset, batch)| Request::Produce {
                    topic,
                    partition,
                    acks,
                    expected_offset,
                    batch,
                },
            )
            .boxed(),
        (
            text(),
            any::<u32>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(
                |(topic, partition, offset, max_bytes, max_wait_ms)| Request::Fetch {
                    topic,
                    partition,
                    offset,
                    max_bytes,
                    max_wait_ms,
                },
            )
            .boxed(),
        (text(), any::<u32>(), offset_query())
            .prop_map(|(topic, partition, query)| Request::ListOffset {
                topic,
                partition,
                query,
            })
            .boxed(),
        (text(), any::<u32>(), any::<u64>(), any::<u32>())
            .prop_map(|(topic, partition, offset, credit)| Request::Subscribe {
                topic,
                partition,
                offset,
                credit,
            })
            .boxed(),
        any::<u32>()
            .prop_map(|bytes| Request::Credit { bytes })
            .boxed(),
        (
            text(),
            // `Some("")` is sent as the empty string, which decodes as `None`.
            proptest::option::of(nonempty_text()),
            strategy(),
            any::<u32>(),
            vec(text(), 0..5),
        )
            .prop_map(|(group, member_id, strategy, session_timeout_ms, topics)| {
                Request::JoinGroup {
                    group,
                    member_id,
                    strategy,
                    session_timeout_ms,
                    topics,
                }
            })
            .boxed(),
        (text(), text())
            .prop_map(|(group, member_id)| Request::Heartbeat { group, member_id })
            .boxed(),
        (text(), text())
            .prop_map(|(group, member_id)| Request::LeaveGroup { group, member_id })
            .boxed(),
        (
            text(),
            proptest::option::of((text(), any::<u32>())),
            vec((topic_partition(), any::<u64>()), 0..5),
        )
            .prop_map(|(group, member, offsets)| Request::CommitOffsets {
                group,
                member,
                offsets,
            })
            .boxed(),
        (text(), vec(topic_partition(), 0..5))
            .prop_map(|(group, partitions)| Request::FetchOffsets { group, partitions })
            .boxed(),
        Just(Request::ListGroups).boxed(),
        text()
            .prop_map(|group| Request::DescribeGroup { group })
            .boxed(),
    ])
    .boxed()
}

/// Every response variant.
fn response() -> BoxedStrategy<Response> {
    Union::new(vec![
        Just(Response::Ok).boxed(),
        (any::<u16>(), text(), any::<u32>())
            .prop_map(|(version, server, shards)| Response::HelloOk {
                version,
                server,
                shards,
            })
            .boxed(),
        topic_info().prop_map(Response::Topic).boxed(),
        vec(topic_info(), 0..4).prop_map(Response::Topics).boxed(),
        (topic_info(), vec(partition_state(), 0..5))
            .prop_map(|(topic, partitions)| Response::TopicDescription { topic, partitions })
            .boxed(),
        (any::<u32>(), vec(topic_info(), 0..4))
            .prop_map(|(shards, topics)| Response::Metadata { shards, topics })
            .boxed(),
        (any::<u64>(), any::<u16>())
            .prop_map(|(producer_id, epoch)| Response::ProducerId { producer_id, epoch })
            .boxed(),
        any::<Option<(u64, u64)>>()
            .prop_map(|offsets| Response::Produced { offsets })
            .boxed(),
        (any::<u64>(), any::<u64>(), batch_bytes())
            .prop_map(
                |(high_watermark, log_start_offset, batches)| Response::Fetched {
                    high_watermark,
                    log_start_offset,
                    batches,
                },
            )
            .boxed(),
        any::<Option<u64>>().prop_map(Response::Offset).boxed(),
        (any::<u64>(), batch_bytes())
            .prop_map(|(high_watermark, batches)| Response::Data {
                high_watermark,
                batches,
            })
            .boxed(),
        (text(), any::<u32>(), vec(topic_partition(), 0..5))
            .prop_map(|(member_id, generation, assignment)| Response::Membership {
                member_id,
                generation,
                assignment,
            })
            .boxed(),
        vec(any::<Option<u64>>(), 0..8)
            .prop_map(Response::Offsets)
            .boxed(),
        vec(text(), 0..5).prop_map(Response::Groups).boxed(),
        proptest::option::of(group_summary())
            .prop_map(Response::GroupDescription)
            .boxed(),
        (error_code(), any::<u64>(), text())
            .prop_map(|(code, detail, message)| Response::Error {
                code,
                detail,
                message,
            })
            .boxed(),
    ])
    .boxed()
}

/// A request or a response, for mixed streams.
#[derive(Debug, Clone, PartialEq)]
enum Msg {
    Req(Request),
    Resp(Response),
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![request().prop_map(Msg::Req), response().prop_map(Msg::Resp)]
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The kind each request variant must carry, written independently of `Request::kind`.
fn expected_request_kind(r: &Request) -> u8 {
    match r {
        Request::Hello { .. } => 0x01,
        Request::CreateTopic { .. } => 0x02,
        Request::DeleteTopic { .. } => 0x03,
        Request::ListTopics => 0x04,
        Request::DescribeTopic { .. } => 0x05,
        Request::Metadata { .. } => 0x06,
        Request::InitProducer => 0x07,
        Request::Produce { .. } => 0x10,
        Request::Fetch { .. } => 0x11,
        Request::ListOffset { .. } => 0x12,
        Request::Subscribe { .. } => 0x13,
        Request::Credit { .. } => 0x14,
        Request::JoinGroup { .. } => 0x20,
        Request::Heartbeat { .. } => 0x21,
        Request::LeaveGroup { .. } => 0x22,
        Request::CommitOffsets { .. } => 0x23,
        Request::FetchOffsets { .. } => 0x24,
        Request::ListGroups => 0x25,
        Request::DescribeGroup { .. } => 0x26,
    }
}

/// The kind each response variant must carry, written independently of `Response::kind`.
fn expected_response_kind(r: &Response) -> u8 {
    match r {
        Response::Ok => 0x80,
        Response::HelloOk { .. } => 0x81,
        Response::Topic(_) => 0x82,
        Response::Topics(_) => 0x84,
        Response::TopicDescription { .. } => 0x85,
        Response::Metadata { .. } => 0x86,
        Response::ProducerId { .. } => 0x87,
        Response::Produced { .. } => 0x90,
        Response::Fetched { .. } => 0x91,
        Response::Offset(_) => 0x92,
        Response::Data { .. } => 0x93,
        Response::Membership { .. } => 0xA0,
        Response::Offsets(_) => 0xA4,
        Response::Groups(_) => 0xA5,
        Response::GroupDescription(_) => 0xA6,
        Response::Error { .. } => 0xFF,
    }
}

/// The whole frame of a request: `out`'s bytes followed by the returned tail.
fn request_frame(req: &Request, id: u64) -> Vec<u8> {
    let mut out = BytesMut::new();
    let tail = req.encode(id, &mut out);
    assert_eq!(
        tail.is_some(),
        matches!(req, Request::Produce { .. }),
        "only PRODUCE returns a tail"
    );
    let mut v = out.to_vec();
    if let Some(t) = tail {
        if let Request::Produce { batch, .. } = req {
            assert_eq!(&t, batch, "the tail is the batch, uncopied");
        }
        v.extend_from_slice(&t);
    }
    v
}

/// The whole frame of a response: `out`'s bytes followed by the returned tail.
fn response_frame(resp: &Response, id: u64) -> Vec<u8> {
    let mut out = BytesMut::new();
    let tail = resp.encode(id, &mut out);
    assert_eq!(
        tail.is_some(),
        matches!(resp, Response::Fetched { .. } | Response::Data { .. }),
        "only FETCHED and DATA return a tail"
    );
    let mut v = out.to_vec();
    if let Some(t) = tail {
        v.extend_from_slice(&t);
    }
    v
}

fn msg_frame(m: &Msg, id: u64) -> Vec<u8> {
    match m {
        Msg::Req(r) => request_frame(r, id),
        Msg::Resp(r) => response_frame(r, id),
    }
}

fn msg_kind(m: &Msg) -> u8 {
    match m {
        Msg::Req(r) => r.kind(),
        Msg::Resp(r) => r.kind(),
    }
}

fn decode_msg(m: &Msg, kind: u8, body: BytesMut) -> Result<Msg, ProtocolError> {
    match m {
        Msg::Req(_) => Request::decode(kind, body).map(Msg::Req),
        Msg::Resp(_) => Response::decode(kind, body).map(Msg::Resp),
    }
}

/// The header fields at the front of `b`, read by hand (independently of `FrameHeader`):
/// `(body_len, kind, flags, reserved, request_id)`.
fn read_header(b: &[u8]) -> (u32, u8, u8, u16, u64) {
    (
        u32::from_le_bytes(b[0..4].try_into().unwrap()),
        b[4],
        b[5],
        u16::from_le_bytes(b[6..8].try_into().unwrap()),
        u64::from_le_bytes(b[8..16].try_into().unwrap()),
    )
}

/// Runs `split_frame` over `input` until it stops, checking every outcome against a
/// hand-written model of the header, and decodes every frame both ways (a decoder may
/// fail, never panic; what it decodes must survive re-encoding). Returns the number of
/// whole frames split off.
fn split_all_checked(input: &[u8], max_frame: usize) -> usize {
    let mut buf = BytesMut::from(input);
    let mut pos = 0;
    let mut frames = 0;
    loop {
        let rest = &input[pos..];
        assert_eq!(
            &buf[..],
            rest,
            "the buffer holds exactly the unconsumed bytes"
        );
        match split_frame(&mut buf, max_frame) {
            Ok(Some(frame)) => {
                let (body_len, k, flags, reserved, id) = read_header(rest);
                assert_eq!((flags, reserved), (0, 0), "non-zero flags were accepted");
                let total = HEADER_LEN + body_len as usize;
                assert!(total <= max_frame, "a frame over the limit was accepted");
                assert_eq!((frame.kind, frame.request_id), (k, id));
                assert_eq!(&frame.body[..], &rest[HEADER_LEN..total]);
                pos += total;
                frames += 1;
                if let Ok(req) = Request::decode(frame.kind, frame.body.clone()) {
                    assert_eq!(req.kind(), frame.kind);
                    assert_request_round_trips(&req, id);
                }
                if let Ok(resp) = Response::decode(frame.kind, frame.body) {
                    assert_eq!(resp.kind(), frame.kind);
                    assert_response_round_trips(&resp, id);
                }
            }
            Ok(None) => {
                if rest.len() >= HEADER_LEN {
                    let (body_len, _, flags, reserved, _) = read_header(rest);
                    assert_eq!((flags, reserved), (0, 0));
                    let total = HEADER_LEN as u64 + u64::from(body_len);
                    assert!(total <= max_frame as u64);
                    assert!(
                        (rest.len() as u64) < total,
                        "a whole frame was not split off"
                    );
                }
                assert_eq!(&buf[..], rest, "an incomplete frame was consumed");
                return frames;
            }
            Err(ProtocolError::FrameTooLarge { size, limit }) => {
                let (body_len, _, flags, reserved, _) = read_header(rest);
                assert_eq!((flags, reserved), (0, 0));
                assert_eq!(size, HEADER_LEN as u64 + u64::from(body_len));
                assert_eq!(limit, max_frame);
                assert!(size > max_frame as u64);
                return frames;
            }
            Err(ProtocolError::Malformed(_)) => {
                let (_, _, flags, reserved, _) = read_header(rest);
                assert!(flags != 0 || reserved != 0, "a valid header was refused");
                return frames;
            }
            Err(e @ ProtocolError::UnsupportedVersion(_)) => {
                panic!("split_frame never checks versions, got {e:?}")
            }
        }
    }
}

fn assert_request_round_trips(req: &Request, id: u64) {
    let bytes = request_frame(req, id);
    let mut buf = BytesMut::from(&bytes[..]);
    let frame = split_frame(&mut buf, usize::MAX).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!(frame.request_id, id);
    assert_eq!(&Request::decode(frame.kind, frame.body).unwrap(), req);
}

fn assert_response_round_trips(resp: &Response, id: u64) {
    let bytes = response_frame(resp, id);
    let mut buf = BytesMut::from(&bytes[..]);
    let frame = split_frame(&mut buf, usize::MAX).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!(frame.request_id, id);
    assert_eq!(&Response::decode(frame.kind, frame.body).unwrap(), resp);
}

/// A damage done to valid bytes.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flips one bit (position taken modulo the length).
    FlipBit(usize, u8),
    /// Cuts the bytes at a position (modulo the length).
    Truncate(usize),
    /// Overwrites four bytes with a forged little-endian u32 (a length or a count).
    ForgeU32(usize, u32),
    /// Overwrites one byte (a kind, a presence byte, an enum value...).
    SetByte(usize, u8),
    /// Inserts bytes at a position.
    Insert(usize, Vec<u8>),
    /// Removes a run of bytes.
    Remove(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), prop_oneof![any::<u32>(), 0u32..64, Just(u32::MAX)])
            .prop_map(|(i, v)| Mutation::ForgeU32(i, v)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        1 => (any::<usize>(), vec(any::<u8>(), 1..8)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (any::<usize>(), 1usize..8).prop_map(|(i, n)| Mutation::Remove(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    let at = |i: usize| i % bytes.len();
    match m {
        Mutation::FlipBit(i, b) => {
            let i = at(*i);
            bytes[i] ^= 1 << b;
        }
        Mutation::Truncate(i) => {
            let i = at(*i);
            bytes.truncate(i);
        }
        Mutation::ForgeU32(i, v) => {
            let i = at(*i);
            for (k, byte) in v.to_le_bytes().into_iter().enumerate() {
                if let Some(slot) = bytes.get_mut(i + k) {
                    *slot = byte;
                }
            }
        }
        Mutation::SetByte(i, v) => {
            let i = at(*i);
            bytes[i] = *v;
        }
        Mutation::Insert(i, v) => {
            let i = at(*i);
            bytes.splice(i..i, v.iter().copied());
        }
        Mutation::Remove(i, n) => {
            let i = at(*i);
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
    }
}

/// Samples `n` values of `strategy` with a fixed seed (no flakiness).
fn sample<T: std::fmt::Debug>(strategy: &BoxedStrategy<T>, n: usize) -> Vec<T> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

/// Bytes of batches that end the body (PRODUCE, FETCHED, DATA), if it has such a tail.
fn batch_len(m: &Msg) -> Option<usize> {
    match m {
        Msg::Req(Request::Produce { batch, .. }) => Some(batch.len()),
        Msg::Resp(Response::Fetched { batches, .. } | Response::Data { batches, .. }) => {
            Some(batches.len())
        }
        _ => None,
    }
}

/// Frames with an enum, bool or presence byte at a known body position:
/// `(frame, position in the body, smallest invalid value)`.
fn enum_byte_cases() -> Vec<(Vec<u8>, usize, u8)> {
    let create = Request::CreateTopic {
        name: String::new(),
        config: TopicConfig::default(), // retention_bytes none, retention_ms 7 days
    };
    vec![
        // PRODUCE: topic "" (2) + partition (4), then acks.
        (
            request_frame(
                &Request::Produce {
                    topic: String::new(),
                    partition: 0,
                    acks: Acks::None,
                    expected_offset: None,
                    batch: Bytes::new(),
                },
                1,
            ),
            6,
            3,
        ),
        // LIST_OFFSET: topic "" (2) + partition (4), then the query byte.
        (
            request_frame(
                &Request::ListOffset {
                    topic: String::new(),
                    partition: 0,
                    query: OffsetQuery::Latest,
                },
                1,
            ),
            6,
            3,
        ),
        // JOIN_GROUP: group "" (2) + member id "" (2), then the strategy.
        (
            request_frame(
                &Request::JoinGroup {
                    group: String::new(),
                    member_id: None,
                    strategy: AssignmentStrategy::Range,
                    session_timeout_ms: 0,
                    topics: vec![],
                },
                1,
            ),
            4,
            3,
        ),
        // CREATE_TOPIC: name "" (2) + partitions (4) + segment_bytes (8), then the
        // retention_bytes presence byte; + 1 + retention_ms (9): durability, compression.
        (request_frame(&create, 1), 14, 2),
        (request_frame(&create, 1), 24, 3),
        (request_frame(&create, 1), 25, 2),
        // OFFSET: the presence byte.
        (response_frame(&Response::Offset(None), 1), 0, 2),
        // GROUP_DESCRIPTION: the "exists" byte.
        (response_frame(&Response::GroupDescription(None), 1), 0, 2),
        // PRODUCED: the presence byte.
        (
            response_frame(&Response::Produced { offsets: None }, 1),
            0,
            2,
        ),
    ]
}

fn all_kinds() -> Vec<u8> {
    (0..=255u8).filter(|k| kind_name(*k) != "unknown").collect()
}

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_request_round_trips(
        req in request(),
        id in any::<u64>(),
        prefix in vec(any::<u8>(), 0..8),
    ) {
        prop_assert_eq!(req.kind(), expected_request_kind(&req));
        prop_assert_ne!(kind_name(req.kind()), "unknown");
        // Encoding appends: whatever `out` held stays in front, untouched.
        let mut out = BytesMut::from(&prefix[..]);
        let tail = req.encode(id, &mut out);
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        let mut bytes = out[prefix.len()..].to_vec();
        if let Some(t) = &tail {
            bytes.extend_from_slice(t);
        }
        prop_assert_eq!(&bytes, &request_frame(&req, id));
        let (body_len, k, flags, reserved, rid) = read_header(&bytes);
        prop_assert_eq!(body_len as usize, bytes.len() - HEADER_LEN);
        prop_assert_eq!((k, flags, reserved, rid), (req.kind(), 0, 0, id));

        let mut buf = BytesMut::from(&bytes[..]);
        let frame = split_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(frame.kind, req.kind());
        prop_assert_eq!(frame.request_id, id);
        // Request kinds are not response kinds.
        prop_assert!(Response::decode(frame.kind, frame.body.clone()).is_err());
        prop_assert_eq!(Request::decode(frame.kind, frame.body).unwrap(), req);
    }

    #[test]
    fn every_response_round_trips(
        resp in response(),
        id in any::<u64>(),
        prefix in vec(any::<u8>(), 0..8),
    ) {
        prop_assert_eq!(resp.kind(), expected_response_kind(&resp));
        prop_assert_ne!(kind_name(resp.kind()), "unknown");
        let mut out = BytesMut::from(&prefix[..]);
        let tail = resp.encode(id, &mut out);
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        let mut bytes = out[prefix.len()..].to_vec();
        if let Some(t) = &tail {
            bytes.extend_from_slice(t);
        }
        prop_assert_eq!(&bytes, &response_frame(&resp, id));
        let (body_len, k, flags, reserved, rid) = read_header(&bytes);
        prop_assert_eq!(body_len as usize, bytes.len() - HEADER_LEN);
        prop_assert_eq!((k, flags, reserved, rid), (resp.kind(), 0, 0, id));

        let mut buf = BytesMut::from(&bytes[..]);
        let frame = split_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(frame.kind, resp.kind());
        prop_assert_eq!(frame.request_id, id);
        prop_assert!(Request::decode(frame.kind, frame.body.clone()).is_err());
        prop_assert_eq!(Response::decode(frame.kind, frame.body).unwrap(), resp);
    }

    /// A missing byte anywhere in a body is detected (no field is optional at the end),
    /// except in the batch bytes that end PRODUCE, FETCHED and DATA bodies.
    #[test]
    fn short_bodies_are_refused(
        m in msg(),
        id in any::<u64>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = msg_frame(&m, id);
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = split_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
        // An extra byte after a body without batch bytes is refused.
        let tail_len = batch_len(&m);
        if tail_len.is_none() {
            let mut long = frame.body.clone();
            long.extend_from_slice(&[0]);
            prop_assert!(decode_msg(&m, frame.kind, long).is_err());
        }
        let fixed = frame.body.len() - tail_len.unwrap_or(0);
        prop_assume!(fixed > 0);
        let keep = cut.index(fixed);
        let short = BytesMut::from(&frame.body[..keep]);
        prop_assert!(
            decode_msg(&m, frame.kind, short).is_err(),
            "body cut to {} of {} bytes decoded", keep, fixed
        );
    }
}

#[test]
fn the_strategies_cover_every_kind() {
    let mut seen = BTreeSet::new();
    for r in sample(&request(), 3000) {
        seen.insert(r.kind());
    }
    for r in sample(&response(), 3000) {
        seen.insert(r.kind());
    }
    let all: BTreeSet<u8> = all_kinds().into_iter().collect();
    assert_eq!(seen, all);
    assert_eq!(all.len(), 35, "19 request and 16 response kinds");
}

#[test]
fn strings_up_to_the_u16_limit_round_trip_and_longer_messages_are_cut() {
    let exact = "é".repeat(MAX_STR_LEN / 2) + "x"; // 65 535 bytes
    assert_eq!(exact.len(), MAX_STR_LEN);
    let req = Request::DescribeGroup {
        group: exact.clone(),
    };
    assert_request_round_trips(&req, 7);

    let long = "é".repeat(40_000); // 80 000 bytes: cut at a character boundary
    let resp = Response::error(ErrorCode::Internal, 0, long.clone());
    let bytes = response_frame(&resp, 1);
    let mut buf = BytesMut::from(&bytes[..]);
    let frame = split_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
    let Response::Error { message, .. } = Response::decode(frame.kind, frame.body).unwrap() else {
        panic!("not an ERROR");
    };
    assert_eq!(message.len(), MAX_STR_LEN - 1);
    assert!(long.starts_with(&message));
}

#[test]
fn edge_values_round_trip() {
    // Explicit extremes next to the random ones.
    for id in [0, 1, u64::MAX] {
        assert_request_round_trips(
            &Request::Hello {
                version: VERSION,
                token: String::new(),
                client: String::new(),
            },
            id,
        );
        assert_request_round_trips(
            &Request::ListOffset {
                topic: "t".into(),
                partition: u32::MAX,
                query: OffsetQuery::Timestamp(i64::MIN),
            },
            id,
        );
        assert_request_round_trips(
            &Request::Produce {
                topic: String::new(),
                partition: 0,
                acks: Acks::Fsync,
                expected_offset: Some(u64::MAX),
                batch: Bytes::new(),
            },
            id,
        );
        assert_response_round_trips(
            &Response::Fetched {
                high_watermark: u64::MAX,
                log_start_offset: 0,
                batches: Bytes::new(),
            },
            id,
        );
        assert_response_round_trips(&Response::Produced { offsets: None }, id);
        assert_response_round_trips(&Response::GroupDescription(None), id);
    }
    // The empty member id is how "no member id" travels.
    let join = Request::JoinGroup {
        group: "g".into(),
        member_id: Some(String::new()),
        strategy: AssignmentStrategy::Sticky,
        session_timeout_ms: 1,
        topics: vec![],
    };
    let bytes = request_frame(&join, 3);
    let frame = split_frame(&mut BytesMut::from(&bytes[..]), DEFAULT_MAX_FRAME)
        .unwrap()
        .unwrap();
    let Request::JoinGroup { member_id, .. } = Request::decode(frame.kind, frame.body).unwrap()
    else {
        panic!("not a JOIN_GROUP");
    };
    assert_eq!(member_id, None);
}

#[test]
fn unknown_error_codes_decode_as_internal() {
    let mut body = BytesMut::new();
    body.extend_from_slice(&1234u16.to_le_bytes());
    body.extend_from_slice(&42u64.to_le_bytes());
    body.extend_from_slice(&2u16.to_le_bytes());
    body.extend_from_slice(b"hi");
    assert_eq!(
        Response::decode(kind::ERROR, body).unwrap(),
        Response::error(ErrorCode::Internal, 42, "hi")
    );
}

// ---------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Frames written back to back and read in arbitrary chunks come out whole, in order,
    /// with nothing left over; an incomplete frame is never consumed.
    #[test]
    fn streams_split_back_into_the_same_frames(
        msgs in vec((msg(), any::<u64>()), 0..12),
        chunks in vec(1usize..97, 1..24),
    ) {
        let mut stream = Vec::new();
        for (m, id) in &msgs {
            stream.extend_from_slice(&msg_frame(m, *id));
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut fed = 0;
        let mut consumed = 0;
        let mut sizes = chunks.iter().cycle();
        while fed < stream.len() {
            let n = (*sizes.next().unwrap()).min(stream.len() - fed);
            buf.extend_from_slice(&stream[fed..fed + n]);
            fed += n;
            loop {
                let before = buf.clone();
                match split_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap() {
                    Some(frame) => {
                        consumed += HEADER_LEN + frame.body.len();
                        got.push(frame);
                    }
                    None => {
                        prop_assert_eq!(&buf, &before, "an incomplete frame was consumed");
                        break;
                    }
                }
            }
            prop_assert_eq!(buf.len(), fed - consumed);
        }
        prop_assert!(buf.is_empty(), "{} bytes of residue", buf.len());
        prop_assert_eq!(got.len(), msgs.len());
        for ((m, id), frame) in msgs.iter().zip(got) {
            prop_assert_eq!(frame.request_id, *id);
            prop_assert_eq!(frame.kind, msg_kind(m));
            prop_assert_eq!(&decode_msg(m, frame.kind, frame.body).unwrap(), m);
        }
    }

    /// The limit is inclusive: under a limit of `max`, exactly the frames before the
    /// first one longer than `max` are split off, then that one is refused as too large.
    #[test]
    fn the_frame_limit_is_inclusive(
        msgs in vec((msg(), any::<u64>()), 1..8),
        pick in any::<prop::sample::Index>(),
    ) {
        let frames: Vec<Vec<u8>> = msgs.iter().map(|(m, id)| msg_frame(m, *id)).collect();
        let stream: Vec<u8> = frames.concat();
        let size = frames[pick.index(frames.len())].len();
        for max in [size - 1, size, size + 1] {
            let first_too_big = frames.iter().position(|f| f.len() > max);
            let mut buf = BytesMut::from(&stream[..]);
            let mut passed = 0;
            let end = loop {
                match split_frame(&mut buf, max) {
                    Ok(Some(frame)) => {
                        prop_assert_eq!(HEADER_LEN + frame.body.len(), frames[passed].len());
                        passed += 1;
                    }
                    other => break other,
                }
            };
            match first_too_big {
                None => {
                    prop_assert_eq!(passed, frames.len());
                    prop_assert!(matches!(end, Ok(None)) && buf.is_empty());
                }
                Some(i) => {
                    prop_assert_eq!(passed, i);
                    let size = frames[i].len() as u64;
                    prop_assert_eq!(end, Err(ProtocolError::FrameTooLarge { size, limit: max }));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Robustness
// ---------------------------------------------------------------------------------------

fn max_frame() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(HEADER_LEN),
        HEADER_LEN..HEADER_LEN + 256,
        Just(4096),
        Just(DEFAULT_MAX_FRAME)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600), max in max_frame()) {
        split_all_checked(&bytes, max);
    }

    /// Headers that are valid but followed by arbitrary bodies, so the body decoders see
    /// every kind with garbage rather than mostly failing at the header.
    #[test]
    fn arbitrary_bodies_of_every_kind_never_panic(
        k in proptest::sample::select(all_kinds()),
        id in any::<u64>(),
        body in vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&[k, 0, 0, 0]);
        bytes.extend_from_slice(&id.to_le_bytes());
        bytes.extend_from_slice(&body);
        prop_assert_eq!(split_all_checked(&bytes, DEFAULT_MAX_FRAME), 1);
    }

    /// Valid frames damaged by bit flips, truncations, forged lengths and counts,
    /// overwritten bytes, insertions and removals.
    #[test]
    fn mutated_frames_never_panic(
        msgs in vec((msg(), any::<u64>()), 1..5),
        mutations in vec(mutation(), 1..5),
        max in max_frame(),
    ) {
        let mut bytes: Vec<u8> = msgs.iter().flat_map(|(m, id)| msg_frame(m, *id)).collect();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        split_all_checked(&bytes, max);
    }

    /// A truncated frame is incomplete (never an error, never consumed), and becomes
    /// whole once the missing bytes arrive.
    #[test]
    fn truncated_frames_wait_for_more(
        m in msg(),
        id in any::<u64>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = msg_frame(&m, id);
        let keep = cut.index(bytes.len());
        let mut buf = BytesMut::from(&bytes[..keep]);
        prop_assert!(split_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().is_none());
        prop_assert_eq!(&buf[..], &bytes[..keep]);
        buf.extend_from_slice(&bytes[keep..]);
        let frame = split_frame(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decode_msg(&m, frame.kind, frame.body).unwrap(), m);
    }

    /// Non-zero flags or reserved bits make the header malformed, whatever else it says.
    #[test]
    fn nonzero_flags_or_reserved_are_malformed(
        m in msg(),
        id in any::<u64>(),
        byte in FLAGS_OFFSET..REQUEST_ID_OFFSET,
        bit in 0u8..8,
        max in max_frame(),
    ) {
        let mut bytes = msg_frame(&m, id);
        bytes[byte] ^= 1 << bit;
        let r = split_frame(&mut BytesMut::from(&bytes[..]), max);
        prop_assert!(matches!(r, Err(ProtocolError::Malformed(_))), "got {:?}", r);
        prop_assert_eq!(r.unwrap_err().code(), ErrorCode::MalformedFrame);
    }

    /// A header declaring more than `max_frame` bytes is refused from the 16 header
    /// bytes alone: no body needs to arrive.
    #[test]
    fn oversize_frames_are_refused_from_the_header(
        body_len in 1u32..=u32::MAX,
        under in any::<prop::sample::Index>(),
        k in any::<u8>(),
        id in any::<u64>(),
    ) {
        // Any limit below the declared size, down to a bare header.
        let max = HEADER_LEN + under.index(body_len as usize);
        let total = HEADER_LEN as u64 + u64::from(body_len);
        let mut header = Vec::new();
        header.extend_from_slice(&body_len.to_le_bytes());
        header.extend_from_slice(&[k, 0, 0, 0]);
        header.extend_from_slice(&id.to_le_bytes());
        let mut buf = BytesMut::from(&header[..]);
        let r = split_frame(&mut buf, max);
        let Err(e) = r else { panic!("an oversize header was accepted") };
        prop_assert_eq!(e.code(), ErrorCode::FrameTooLarge);
        prop_assert_eq!(e, ProtocolError::FrameTooLarge { size: total, limit: max });
        // Fifteen bytes are not a header yet: nothing to decide.
        let mut partial = BytesMut::from(&header[..HEADER_LEN - 1]);
        prop_assert!(split_frame(&mut partial, max).unwrap().is_none());
    }

    /// A list count that differs from the real one is always refused (each element
    /// takes at least one byte, and nothing may follow the list).
    #[test]
    fn forged_list_counts_are_refused(
        which in 0usize..4,
        names in vec(text(), 0..6),
        offsets in vec(any::<Option<u64>>(), 0..6),
        forged in prop_oneof![0u32..16, any::<u32>()],
    ) {
        // (frame, position of the count in the body, real count)
        let (mut bytes, at, real) = match which {
            0 => (request_frame(&Request::Metadata { topics: names.clone() }, 1), 0, names.len()),
            1 => (response_frame(&Response::Groups(names.clone()), 1), 0, names.len()),
            2 => (response_frame(&Response::Offsets(offsets.clone()), 1), 0, offsets.len()),
            _ => {
                let group = "grp".to_string();
                let partitions: Vec<TopicPartition> = names
                    .iter()
                    .map(|n| TopicPartition { topic: n.clone(), partition: 3 })
                    .collect();
                let r = Request::FetchOffsets { group: group.clone(), partitions };
                (request_frame(&r, 1), 2 + group.len(), names.len())
            }
        };
        prop_assume!(forged as usize != real);
        let pos = HEADER_LEN + at;
        prop_assert_eq!(
            u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize,
            real
        );
        bytes[pos..pos + 4].copy_from_slice(&forged.to_le_bytes());
        let frame = split_frame(&mut BytesMut::from(&bytes[..]), DEFAULT_MAX_FRAME)
            .unwrap()
            .unwrap();
        let decoded = if frame.kind < 0x80 {
            Request::decode(frame.kind, frame.body).map(|_| ())
        } else {
            Response::decode(frame.kind, frame.body).map(|_| ())
        };
        prop_assert!(
            matches!(decoded, Err(ProtocolError::Malformed(_))),
            "count {} (real {}) decoded", forged, real
        );
    }

    /// Presence, boolean and enum bytes outside their range are refused.
    #[test]
    fn out_of_range_enum_bytes_are_refused(
        case in any::<prop::sample::Index>(),
        raw in any::<u8>(),
    ) {
        let cases = enum_byte_cases();
        let (mut bytes, at, invalid) = cases[case.index(cases.len())].clone();
        let v = invalid + raw % (u8::MAX - invalid + 1);
        bytes[HEADER_LEN + at] = v;
        let frame = split_frame(&mut BytesMut::from(&bytes[..]), DEFAULT_MAX_FRAME)
            .unwrap()
            .unwrap();
        let decoded = if frame.kind < 0x80 {
            Request::decode(frame.kind, frame.body).map(|_| ())
        } else {
            Response::decode(frame.kind, frame.body).map(|_| ())
        };
        prop_assert!(matches!(decoded, Err(ProtocolError::Malformed(_))), "value {} accepted", v);
    }

    /// Invalid UTF-8 in a string is refused.
    #[test]
    fn invalid_utf8_is_refused(s in nonempty_text(), at in any::<prop::sample::Index>()) {
        let mut bytes = request_frame(&Request::DeleteTopic { name: s.clone() }, 1);
        // 0xFF never occurs in UTF-8.
        bytes[HEADER_LEN + 2 + at.index(s.len())] = 0xFF;
        let frame = split_frame(&mut BytesMut::from(&bytes[..]), DEFAULT_MAX_FRAME)
            .unwrap()
            .unwrap();
        let decoded = Request::decode(frame.kind, frame.body);
        prop_assert!(matches!(decoded, Err(ProtocolError::Malformed(_))));
    }
}

// ---------------------------------------------------------------------------------------
// The fuzz target's body, on stable
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Runs `net/fuzz/fuzz_targets/frame_decoder.rs`'s body (shared through `#[path]`)
    /// over raw bytes and over damaged streams of valid frames, each behind a limit byte.
    #[test]
    fn fuzz_target_body_on_generated_inputs(
        pick in any::<u8>(),
        raw in vec(any::<u8>(), 0..400),
        msgs in vec((msg(), any::<u64>()), 0..5),
        mutations in vec(mutation(), 0..4),
        use_raw in any::<bool>(),
    ) {
        let mut input = vec![pick];
        if use_raw {
            input.extend_from_slice(&raw);
        } else {
            let mut bytes: Vec<u8> = msgs.iter().flat_map(|(m, id)| msg_frame(m, *id)).collect();
            for m in &mutations {
                apply(&mut bytes, m);
            }
            input.extend_from_slice(&bytes);
        }
        fuzz_shared::frame_decoder(&input);
        // And the same input under this file's stricter model of the splitter.
        split_all_checked(&input[1..], HEADER_LEN + usize::from(pick) * 16);
    }
}

#[test]
fn fuzz_target_body_on_edge_inputs() {
    fuzz_shared::frame_decoder(&[]);
    fuzz_shared::frame_decoder(&[0]);
    fuzz_shared::frame_decoder(&[255; 64]);
    let mut input = vec![255];
    input.extend(request_frame(
        &Request::Metadata {
            topics: vec!["a".into(), "b".into()],
        },
        9,
    ));
    input.extend(response_frame(
        &Response::Data {
            high_watermark: 5,
            batches: Bytes::from_static(b"batch"),
        },
        9,
    ));
    fuzz_shared::frame_decoder(&input);
}

// ---------------------------------------------------------------------------------------
// docs/PROTOCOL.md agrees with the code
// ---------------------------------------------------------------------------------------

const DOC: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md"));

/// Cells of every table row of the document (the separator rows excluded).
fn table_rows() -> Vec<Vec<String>> {
    DOC.lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|') && l.ends_with('|') && !l.contains("---"))
        .map(|l| {
            l[1..l.len() - 1]
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The text between backticks, in order.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The frame-kind table: kind → (name, direction, body field specs).
fn doc_kinds() -> BTreeMap<u8, (String, String, Vec<String>)> {
    let mut kinds = BTreeMap::new();
    for row in table_rows() {
        if row.len() != 4 {
            continue;
        }
        let Some(hex) = row[0].strip_prefix("`0x").and_then(|h| h.strip_suffix('`')) else {
            continue;
        };
        let k = u8::from_str_radix(hex, 16).expect("a hex kind");
        let name = row[1].trim_matches('`').to_string();
        let dup = kinds.insert(k, (name, row[2].clone(), code_spans(&row[3])));
        assert!(dup.is_none(), "kind {k:#04x} listed twice");
    }
    kinds
}

/// The structure table: name → field specs.
fn doc_structs() -> BTreeMap<String, Vec<String>> {
    table_rows()
        .into_iter()
        .filter(|r| r.len() == 2 && r[0].starts_with('`') && r[1].contains('·'))
        .map(|r| (r[0].trim_matches('`').to_string(), code_spans(&r[1])))
        .collect()
}

/// Walks `b` as the document describes type `ty`.
fn walk(structs: &BTreeMap<String, Vec<String>>, ty: &str, b: &mut &[u8]) -> Result<(), String> {
    fn take<'a>(b: &mut &'a [u8], n: usize, ty: &str) -> Result<&'a [u8], String> {
        if b.len() < n {
            return Err(format!("{ty}: need {n} bytes, {} left", b.len()));
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Ok(head)
    }
    match ty {
        "u8" => take(b, 1, ty).map(drop),
        "u16" => take(b, 2, ty).map(drop),
        "u32" => take(b, 4, ty).map(drop),
        "u64" | "i64" => take(b, 8, ty).map(drop),
        "bool" => match take(b, 1, ty)?[0] {
            0 | 1 => Ok(()),
            v => Err(format!("bool byte {v}")),
        },
        "str" => {
            let len = u16::from_le_bytes(take(b, 2, ty)?.try_into().unwrap());
            std::str::from_utf8(take(b, len.into(), ty)?)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        "bytes" => {
            *b = &[];
            Ok(())
        }
        _ => {
            if let Some(inner) = ty.strip_prefix("opt<").and_then(|t| t.strip_suffix('>')) {
                match take(b, 1, ty)?[0] {
                    0 => Ok(()),
                    1 => walk(structs, inner, b),
                    v => Err(format!("presence byte {v}")),
                }
            } else if let Some(inner) = ty.strip_prefix("list<").and_then(|t| t.strip_suffix('>')) {
                let n = u32::from_le_bytes(take(b, 4, ty)?.try_into().unwrap());
                (0..n).try_for_each(|_| walk(structs, inner, b))
            } else {
                let fields = structs
                    .get(ty)
                    .ok_or_else(|| format!("type {ty} is not in the document"))?;
                walk_fields(structs, fields, b)
            }
        }
    }
}

/// Walks a field list; each spec is `name type`.
fn walk_fields(
    structs: &BTreeMap<String, Vec<String>>,
    fields: &[String],
    b: &mut &[u8],
) -> Result<(), String> {
    for f in fields {
        let ty = f
            .split_whitespace()
            .last()
            .ok_or_else(|| format!("empty field spec {f:?}"))?;
        walk(structs, ty, b).map_err(|e| format!("{f}: {e}"))?;
    }
    Ok(())
}

#[test]
fn the_document_lists_every_kind_with_its_name_and_direction() {
    let doc = doc_kinds();
    let code: Vec<u8> = all_kinds();
    assert_eq!(doc.keys().copied().collect::<Vec<_>>(), code);
    for (k, (name, dir, _)) in &doc {
        assert_eq!(name, kind_name(*k), "kind {k:#04x}");
        let want = if *k < 0x80 { "C → S" } else { "S → C" };
        assert_eq!(dir, want, "{name}");
    }
}

#[test]
fn the_document_describes_every_body_byte_for_byte() {
    let kinds = doc_kinds();
    let structs = doc_structs();
    let mut bodies: Vec<(u8, BytesMut)> = Vec::new();
    let mut push = |bytes: Vec<u8>| {
        let frame = split_frame(&mut BytesMut::from(&bytes[..]), DEFAULT_MAX_FRAME)
            .unwrap()
            .unwrap();
        bodies.push((frame.kind, frame.body));
    };
    for r in sample(&request(), 2000) {
        push(request_frame(&r, 1));
    }
    for r in sample(&response(), 2000) {
        push(response_frame(&r, 1));
    }
    let mut walked = BTreeSet::new();
    for (k, body) in bodies {
        let (name, _, fields) = &kinds[&k];
        let mut b = &body[..];
        walk_fields(&structs, fields, &mut b)
            .unwrap_or_else(|e| panic!("{name} body {:02x?} against the document: {e}", &body[..]));
        assert!(
            b.is_empty(),
            "{name}: {} bytes left after the documented fields",
            b.len()
        );
        walked.insert(k);
    }
    assert_eq!(
        walked.len(),
        kinds.len(),
        "every documented kind was checked"
    );
}

#[test]
fn the_document_has_the_constants_and_error_codes() {
    let rows = table_rows();
    let has = |cells: &[&str]| {
        rows.iter()
            .any(|r| r.len() >= cells.len() && r.iter().zip(cells).all(|(a, b)| a == b))
    };
    for (name, value) in [
        ("BODY_LEN_OFFSET", BODY_LEN_OFFSET),
        ("KIND_OFFSET", KIND_OFFSET),
        ("FLAGS_OFFSET", FLAGS_OFFSET),
        ("RESERVED_OFFSET", RESERVED_OFFSET),
        ("REQUEST_ID_OFFSET", REQUEST_ID_OFFSET),
        ("HEADER_LEN", HEADER_LEN),
        ("MAX_STR_LEN", MAX_STR_LEN),
        ("DEFAULT_MAX_FRAME", DEFAULT_MAX_FRAME),
    ] {
        assert!(
            has(&[&format!("`{name}`"), &value.to_string()]),
            "no row `{name}` | {value}"
        );
    }
    let alpn = std::str::from_utf8(ALPN).unwrap();
    assert!(has(&["`ALPN`", &format!("`{alpn}`")]), "ALPN row");
    assert!(has(&["`VERSION`", &VERSION.to_string()]), "VERSION row");
    let mut documented = 0;
    for code in ErrorCode::ALL {
        let name = screaming_snake(&format!("{code:?}"));
        assert!(
            has(&[&(code as u16).to_string(), &format!("`{name}`")]),
            "no row | {} | `{name}` |",
            code as u16
        );
        documented += 1;
    }
    let code_rows = rows
        .iter()
        .filter(|r| {
            let name = r.get(1).map_or("", |c| c.trim_matches('`'));
            r[0].parse::<u16>().is_ok()
                && !name.is_empty()
                && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .count();
    assert_eq!(
        code_rows, documented,
        "the document lists exactly the codes"
    );
}
