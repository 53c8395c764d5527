//! End to end: the clients against a real server on a temporary directory.

use super::*;
use crate::protocol::{Acks, ErrorCode};
use crate::server::{Server, ServerConfig};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;
use strata_log::engine::{TopicPartition, partition_for_key};
use strata_log::format::{BatchBuilder, BuilderOptions};
use strata_log::{Durability, OffsetQuery, TopicConfig};

fn server_config(dir: &Path) -> ServerConfig {
    ServerConfig {
        data_dir: dir.to_owned(),
        listen: "127.0.0.1:0".parse().unwrap(),
        shards: 2,
        pin_threads: false,
        ..ServerConfig::default()
    }
}

fn client_config(server: &Server) -> ClientConfig {
    let token = server.admin_token().expect("admin token").1.to_owned();
    let mut c = ClientConfig::new(server.local_addr(), server.cert_path()).with_token(token);
    c.request_timeout = Duration::from_secs(10);
    c
}

fn topic(partitions: u32) -> TopicConfig {
    TopicConfig {
        partitions,
        segment_bytes: 1 << 20,
        durability: Durability::Written,
        ..TopicConfig::default()
    }
}

async fn stop(server: Server) {
    tokio::task::spawn_blocking(move || server.shutdown().unwrap())
        .await
        .unwrap();
}

/// Polls until `n` records arrived (or fails after 20 s).
async fn poll_n(consumer: &mut Consumer, n: usize) -> Vec<ConsumedRecord> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut all = Vec::new();
    while all.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} records arrived",
            all.len()
        );
        all.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_requests_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_config(dir.path())).unwrap();
    let client = Client::connect(client_config(&server)).await.unwrap();
    assert_eq!(client.server_info().shards, 2);

    let info = client.create_topic("rt", topic(2)).await.unwrap();
    assert_eq!(info.config.partitions, 2);
    let again = client.create_topic("rt", topic(2)).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::TopicExists));
    assert_eq!(
        client.ensure_topic("rt", topic(2)).await.unwrap().name,
        "rt"
    );
    assert_eq!(client.list_topics().await.unwrap().len(), 1);
    assert_eq!(client.partition_count("rt").await.unwrap(), 2);
    let missing = client.partition_count("nope").await.unwrap_err();
    assert_eq!(missing.code(), Some(ErrorCode::UnknownTopic));
    assert!(!missing.is_retriable());

    let mut b = BatchBuilder::new(BuilderOptions::default());
    for v in ["a", "b", "c"] {
        b.push(1, None, Some(v.as_bytes()), &[]).unwrap();
    }
    let batch = b.finish().unwrap().freeze();
    let offsets = client
        .produce("rt", 1, Acks::Written, None, batch.clone())
        .await
        .unwrap();
    assert_eq!(offsets, Some((0, 2)));
    let conflict = client
        .produce("rt", 1, Acks::Written, Some(0), batch.clone())
        .await
        .unwrap_err();
    assert_eq!(
        (conflict.code(), conflict.is_retriable()),
        (Some(ErrorCode::Conflict), false)
    );
    let fetched = client
        .fetch("rt", 1, 1, 1 << 20, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(fetched.high_watermark, 3);
    let mut out = Vec::new();
    let next = RecordDecoder::new()
        .decode(&"rt".into(), 1, &fetched.batches, 1, &mut out)
        .unwrap();
    assert_eq!(next, 3);
    assert_eq!(
        out.iter().map(|r| &r.value[..]).collect::<Vec<_>>(),
        vec![&b"b"[..], b"c"]
    );
    assert_eq!(
        client
            .list_offset("rt", 1, OffsetQuery::Latest)
            .await
            .unwrap(),
        Some(3)
    );
    let d = client.describe_topic("rt").await.unwrap();
    assert_eq!(d.partitions[1].high_watermark, 3);

    // Many concurrent calls over the lanes, answered by id.
    let calls: Vec<_> = (0..64)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.list_offset("rt", i % 2, OffsetQuery::Latest).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let expected = if i % 2 == 1 { 3 } else { 0 };
        assert_eq!(call.await.unwrap().unwrap(), Some(expected));
    }

    // A subscription grants credit as it is read.
    let mut sub = client.subscribe("rt", 1, 0, 64).await.unwrap();
    let data = sub.next().await.unwrap().unwrap();
    assert_eq!(next_offset(&data.batches, 0), 3);
    for _ in 0..3 {
        client
            .produce("rt", 1, Acks::Written, None, batch.clone())
            .await
            .unwrap();
    }
    let mut seen = 3;
    while seen < 12 {
        let data = sub.next().await.unwrap().unwrap();
        seen = next_offset(&data.batches, seen);
    }
    sub.close();

    client.delete_topic("rt").await.unwrap();
    assert!(client.list_topics().await.unwrap().is_empty());
    client.close().await;
    assert_eq!(
        client.list_topics().await.unwrap_err(),
        ClientError::ClientClosed
    );
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_without_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_config(dir.path())).unwrap();
    let config = client_config(&server).with_token("wrong");
    let err = Client::connect(config).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err:?}");
    assert!(!err.is_retriable());
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_servers_fail_within_the_configured_times() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_config(dir.path())).unwrap();
    let mut config = client_config(&server);
    config.connect_timeout = Duration::from_millis(300);
    config.backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
        give_up: Duration::from_millis(500),
    };
    let client = Client::connect(config.clone()).await.unwrap();
    stop(server).await;

    // Re-dialling gives up after `give_up` with a retriable error.
    let started = std::time::Instant::now();
    let err = client.list_topics().await.unwrap_err();
    assert!(err.is_retriable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Callers that waited for that attempt share its outcome instead of dialling again.
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.list_topics().await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().unwrap_err().is_retriable());
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // Nobody listening: the first connection attempt times out.
    let started = std::time::Instant::now();
    let err = Client::connect(config).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_records_are_consumed_in_order_per_partition() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_config(dir.path())).unwrap();
    let client = Client::connect(client_config(&server)).await.unwrap();
    client.create_topic("pc", topic(3)).await.unwrap();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_bytes: 4096,
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    assert!(producer.identity().is_some());
    let n = 2000usize;
    let mut futures = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("key-{}", i % 17);
        let value = format!("value-{i}");
        let f = producer
            .send("pc", Some(key.as_bytes()), value.as_bytes(), &[("i", b"x")])
            .await
            .unwrap();
        assert_eq!(f.partition(), partition_for_key(key.as_bytes(), 3));
        futures.push(f);
    }
    // Keyless records stick to one partition per batch.
    let keyless = producer.send("pc", None, b"keyless", &[]).await.unwrap();
    producer.flush().await.unwrap();
    let mut last: BTreeMap<u32, u64> = BTreeMap::new();
    for f in futures {
        let m = f.await.unwrap();
        let offset = m.offset.unwrap();
        if let Some(prev) = last.insert(m.partition, offset) {
            assert_eq!(offset, prev + 1, "offsets follow send order per partition");
        }
    }
    keyless.await.unwrap();

    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::new(["pc"]))
        .await
        .unwrap();
    assert_eq!(consumer.assignment().len(), 3);
    let records = poll_n(&mut consumer, n + 1).await;
    assert_eq!(records.len(), n + 1, "each record exactly once");
    let mut per_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for r in &records {
        per_partition.entry(r.partition).or_default().push(r.offset);
        if r.value.starts_with(b"value-") {
            assert_eq!(r.header("i").map(|v| &v[..]), Some(&b"x"[..]));
        }
    }
    for offsets in per_partition.values() {
        assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    }
    assert!(consumer.commit().await.is_err(), "no group to commit to");

    // Seeking re-reads from an offset; seeking to the end waits for new records.
    let end = consumer.position("pc", 0).unwrap();
    consumer.seek("pc", 0, StartFrom::Offset(5)).await.unwrap();
    let again = poll_n(&mut consumer, (end - 5) as usize).await;
    assert_eq!(again.first().map(|r| (r.partition, r.offset)), Some((0, 5)));
    assert_eq!(consumer.position("pc", 0), Some(end));
    consumer.seek("pc", 1, StartFrom::Latest).await.unwrap();
    assert!(
        consumer
            .poll(Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(consumer.seek("nope", 0, StartFrom::Earliest).await.is_err());

    // The batch path sees the same records.
    let mut batches = Consumer::new(client.clone(), ConsumerConfig::new(["pc"]))
        .await
        .unwrap();
    let mut count = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count < n as u64 + 1 && std::time::Instant::now() < deadline {
        for b in batches
            .poll_batches(Duration::from_millis(200))
            .await
            .unwrap()
        {
            let h = b.header().unwrap();
            count += h.next_offset() - h.base_offset.max(b.from_offset);
        }
    }
    assert_eq!(count, n as u64 + 1);
    batches.close().await.unwrap();
    consumer.close().await.unwrap();
    producer.close().await.unwrap();
    assert!(matches!(
        producer.send("pc", None, b"late", &[]).await,
        Err(ClientError::ClientClosed)
    ));
    stop(server).await;
}

/// Record counts of the batches stored in `partition` of `topic`, in offset order.
async fn stored_batches(client: &Client, topic: &str, partition: u32) -> Vec<u32> {
    let fetched = client
        .fetch(topic, partition, 0, 16 << 20, Duration::ZERO)
        .await
        .unwrap();
    strata_log::format::BatchIter::new(&fetched.batches)
        .map(|b| b.unwrap().header().record_count)
        .collect()
}

#[tokio::test]
async fn producers_use_the_topic_codec_unless_told_otherwise() {
    use strata_log::format::{BatchIter, Compression};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_config(dir.path())).unwrap();
    let client = Client::connect(client_config(&server)).await.unwrap();
    let lz4 = TopicConfig {
        compression: Compression::Lz4,
        ..topic(1)
    };
    client.create_topic("packed", lz4).await.unwrap();
    client.create_topic("plain", topic(1)).await.unwrap();
    let codecs = |topic: &'static str| {
        let client = client.clone();
        async move {
            let fetched = client
                .fetch(topic, 0, 0, 16 << 20, Duration::ZERO)
                .await
                .unwrap();
            BatchIter::new(&fetched.batches)
                .map(|b| b.unwrap().header().compression())
                .collect::<Vec<_>>()
        }
    };
    let by_default = Producer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let forced = ProducerConfig {
        compression: Some(Compression::None),
        ..ProducerConfig::default()
    };
    let forced = Producer::new(client.clone(), forced).await.unwrap();
    for (producer, topic) in [
        (&by_default, "packed"),
        (&by_default, "plain"),
        (&forced, "packed"),
    ] {
        producer
            .send(topic, None, &[b'x'; 512], &[])
            .await
            .unwrap()
            .await
            .unwrap();
        producer.flush().await.unwrap();
    }
    assert_eq!(
        codecs("packed").await,
        vec![Compression::Lz4, Compression::None]
    );
    assert_eq!(codecs("plain").await, vec![Compression::None]);
    by_default.close().await.unwrap();
    forced.close().await.unwrap();
    stop(server).await;
}

#[tokio::test]
async fn a_full_window_grows_the_open_batch_instead_of_queueing_small_ones() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_config(dir.path())).unwrap();
    let client = Client::connect(client_config(&server)).await.unwrap();
    client.create_topic("nb", topic(1)).await.unwrap();
    client.create_topic("lg", topic(1)).await.unwrap();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            linger: Duration::ZERO,
            max_inflight_batches: 1,
            batch_bytes: 64 * 1024,
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    producer.partitions("nb").await.unwrap();
    // On this single-threaded runtime nothing is answered while the loop runs: the first
    // record goes out alone (zero linger, a free slot), the other 499 wait for the slot
    // in the open batch rather than each becoming a batch of its own.
    let mut futures = Vec::new();
    for i in 0..500u32 {
        futures.push(
            producer
                .send_to("nb", 0, None, &i.to_le_bytes(), &[])
                .await
                .unwrap(),
        );
    }
    producer.flush().await.unwrap();
    for (i, f) in futures.into_iter().enumerate() {
        assert_eq!(f.await.unwrap().offset, Some(i as u64));
    }
    assert_eq!(stored_batches(&client, "nb", 0).await, vec![1, 499]);

    // A batch whose linger ran out while the window was full is sealed by the driver as
    // soon as the answer frees the slot (the linger task leaves full windows alone).
    let lingering = Producer::new(
        client.clone(),
        ProducerConfig {
            linger: Duration::from_millis(2),
            max_inflight_batches: 1,
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    lingering.partitions("lg").await.unwrap();
    let first = lingering.send_to("lg", 0, None, b"a", &[]).await.unwrap();
    // Blocking sleeps let lingers run out while no task runs; the yields let the linger
    // task seal "a" and its driver send it.
    std::thread::sleep(Duration::from_millis(3));
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    let mut rest = Vec::new();
    for _ in 0..3 {
        rest.push(lingering.send_to("lg", 0, None, b"b", &[]).await.unwrap());
    }
    std::thread::sleep(Duration::from_millis(3));
    assert_eq!(first.await.unwrap().offset, Some(0));
    for (i, f) in rest.into_iter().enumerate() {
        let delivered = tokio::time::timeout(Duration::from_secs(10), f).await;
        assert_eq!(delivered.unwrap().unwrap().offset, Some(i as u64 + 1));
    }
    assert_eq!(stored_batches(&client, "lg", 0).await, vec![1, 3]);
    producer.close().await.unwrap();
    lingering.close().await.unwrap();
    stop(server).await;
}

#[tokio::test]
async fn records_keep_the_timestamp_they_were_sent_with() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_config(dir.path())).unwrap();
    let client = Client::connect(client_config(&server)).await.unwrap();
    client.create_topic("ts", topic(1)).await.unwrap();
    let producer = Producer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let before = crate::client::producer::now_micros();
    let stamped = [1_600_000_000_000_000i64, 1_600_000_000_000_007, 42];
    let mut futures = Vec::new();
    for ts in stamped {
        futures.push(
            producer
                .send_to_at("ts", 0, ts, None, b"v", &[])
                .await
                .unwrap(),
        );
    }
    futures.push(producer.send_to("ts", 0, None, b"now", &[]).await.unwrap());
    producer.flush().await.unwrap();
    for f in futures {
        f.await.unwrap();
    }
    let fetched = client
        .fetch("ts", 0, 0, 1 << 20, Duration::ZERO)
        .await
        .unwrap();
    let mut scratch = Vec::new();
    let mut seen = Vec::new();
    for batch in strata_log::format::BatchIter::new(&fetched.batches) {
        let batch = batch.unwrap();
        for r in batch.records(&mut scratch).unwrap() {
            seen.push(r.unwrap().timestamp);
        }
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[..3], stamped);
    assert!(seen[3] >= before, "send_to stamps the time of the call");
    producer.close().await.unwrap();
    stop(server).await;
}

fn group(name: &str) -> GroupConfig {
    GroupConfig {
        heartbeat_interval: Duration::from_millis(100),
        session_timeout: Duration::from_secs(3),
        ..GroupConfig::new(name)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_commit_rebalance_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_config(dir.path())).unwrap();
    let client = Client::connect(client_config(&server)).await.unwrap();
    client.create_topic("g", topic(4)).await.unwrap();
    let producer = Producer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    for p in 0..4 {
        for i in 0..25 {
            drop(
                producer
                    .send_to("g", p, None, format!("{p}-{i}").as_bytes(), &[])
                    .await
                    .unwrap(),
            );
        }
    }
    producer.flush().await.unwrap();

    let config = ConsumerConfig {
        auto_commit: None,
        ..ConsumerConfig::new(["g"]).with_group(group("readers"))
    };
    let mut first = Consumer::new(client.clone(), config.clone()).await.unwrap();
    assert_eq!(first.assignment().len(), 4);
    let records = poll_n(&mut first, 100).await;
    assert_eq!(records.len(), 100);
    first.commit().await.unwrap();
    let (member, generation) = first.membership().map(|(m, g)| (m.to_owned(), g)).unwrap();

    // A second member: the group rebalances and the first learns it by heartbeat.
    let mut second = Consumer::new(client.clone(), config.clone()).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while first.assignment().len() == 4 {
        assert!(std::time::Instant::now() < deadline, "no rebalance");
        first.poll(Duration::from_millis(100)).await.unwrap();
    }
    assert_eq!(first.membership().unwrap().0, member);
    assert!(first.membership().unwrap().1 > generation);
    second.poll(Duration::from_millis(10)).await.unwrap();
    let a: HashSet<_> = first.assignment().into_iter().collect();
    let b: HashSet<_> = second.assignment().into_iter().collect();
    assert!(a.is_disjoint(&b));
    assert_eq!(a.len() + b.len(), 4, "{a:?} {b:?}");

    // The second resumes from the committed offsets: nothing old is redelivered.
    assert!(
        second
            .poll(Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    drop(producer.send_to("g", 0, None, b"new", &[]).await.unwrap());
    producer.flush().await.unwrap();
    let owner = if a.contains(&TopicPartition {
        topic: "g".into(),
        partition: 0,
    }) {
        &mut first
    } else {
        &mut second
    };
    let got = poll_n(owner, 1).await;
    assert_eq!((&got[0].value[..], got[0].offset), (&b"new"[..], 25));
    owner.commit().await.unwrap();

    // The coordinator forgets the first member: its heartbeat learns it, it joins again
    // under a new id, and its commits go through with the new membership.
    let old = first.membership().unwrap().0.to_owned();
    client.leave_group("readers", &old).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while first.membership().unwrap().0 == old {
        assert!(std::time::Instant::now() < deadline, "no re-join");
        first.poll(Duration::from_millis(100)).await.unwrap();
    }
    first.commit().await.unwrap();
    loop {
        second.poll(Duration::from_millis(50)).await.unwrap();
        first.poll(Duration::from_millis(50)).await.unwrap();
        let a: HashSet<_> = first.assignment().into_iter().collect();
        let b: HashSet<_> = second.assignment().into_iter().collect();
        if a.is_disjoint(&b) && a.len() + b.len() == 4 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{a:?} {b:?}");
    }

    first.close().await.unwrap();
    second.close().await.unwrap();
    let described = client.describe_group("readers").await.unwrap().unwrap();
    assert!(described.members.is_empty());
    assert_eq!(
        described.committed.get(&TopicPartition {
            topic: "g".into(),
            partition: 0
        }),
        Some(&26)
    );
    producer.close().await.unwrap();
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_records_go_to_retry_then_dead_letter_topics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_config(dir.path())).unwrap();
    let client = Client::connect(client_config(&server)).await.unwrap();
    client.create_topic("jobs", topic(2)).await.unwrap();
    let producer = Producer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    producer
        .send_to("jobs", 1, Some(b"k"), b"poison", &[("trace", b"t1")])
        .await
        .unwrap()
        .await
        .unwrap();

    let config = ConsumerConfig {
        retry: Some(RetryPolicy { max_attempts: 2 }),
        ..ConsumerConfig::new(["jobs"]).with_group(group("workers"))
    };
    let mut consumer = Consumer::new(client.clone(), config).await.unwrap();
    assert_eq!(client.partition_count("jobs-retry").await.unwrap(), 2);
    assert_eq!(client.partition_count("jobs-dlq").await.unwrap(), 2);
    assert_eq!(
        consumer.assignment().len(),
        4,
        "source and retry partitions"
    );

    let first = poll_n(&mut consumer, 1).await.remove(0);
    assert_eq!(&*first.topic, "jobs");
    consumer.reject(&first, "cannot parse").await.unwrap();
    consumer.commit().await.unwrap();
    let retried = poll_n(&mut consumer, 1).await.remove(0);
    assert_eq!(
        (&*retried.topic, retried.partition, &retried.value[..]),
        ("jobs-retry", 1, &b"poison"[..])
    );
    assert_eq!(retried.key.as_deref(), Some(&b"k"[..]));
    let h = |name: &str| retried.header(name).map(|v| v.to_vec());
    assert_eq!(h(HEADER_ATTEMPT), Some(b"1".to_vec()));
    assert_eq!(h(HEADER_ORIGINAL_TOPIC), Some(b"jobs".to_vec()));
    assert_eq!(h(HEADER_ORIGINAL_OFFSET), Some(b"0".to_vec()));
    assert_eq!(h(HEADER_REASON), Some(b"cannot parse".to_vec()));
    assert_eq!(h("trace"), Some(b"t1".to_vec()));
    consumer.reject(&retried, "still broken").await.unwrap();
    consumer.commit().await.unwrap();

    let fetched = client
        .fetch("jobs-dlq", 1, 0, 1 << 20, Duration::from_secs(5))
        .await
        .unwrap();
    let mut dead = Vec::new();
    RecordDecoder::new()
        .decode(&"jobs-dlq".into(), 1, &fetched.batches, 0, &mut dead)
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].header(HEADER_ATTEMPT).map(|v| &v[..]),
        Some(&b"2"[..])
    );
    assert_eq!(
        dead[0].header(HEADER_REASON).map(|v| &v[..]),
        Some(&b"still broken"[..])
    );
    consumer.close().await.unwrap();
    producer.close().await.unwrap();
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_reconnect_after_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_config(dir.path());
    let server = Server::start(cfg.clone()).unwrap();
    cfg.listen = server.local_addr();
    let client = Client::connect(client_config(&server)).await.unwrap();
    client.create_topic("r", topic(2)).await.unwrap();
    let producer = Producer::new(client.clone(), ProducerConfig::default())
        .await
        .unwrap();
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::new(["r"]))
        .await
        .unwrap();
    let grouped = ConsumerConfig {
        auto_commit: Some(Duration::from_millis(50)),
        ..ConsumerConfig::new(["r"]).with_group(group("survivors"))
    };
    let mut member = Consumer::new(client.clone(), grouped).await.unwrap();
    for i in 0..50 {
        drop(
            producer
                .send("r", Some(format!("{i}").as_bytes()), b"before", &[])
                .await
                .unwrap(),
        );
    }
    producer.flush().await.unwrap();
    let mut seen = poll_n(&mut consumer, 50).await.len();
    assert_eq!(poll_n(&mut member, 50).await.len(), 50);
    member.commit().await.unwrap();

    stop(server).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while client.is_connected() {
        assert!(
            std::time::Instant::now() < deadline,
            "the close was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let server = Server::start(cfg).unwrap();

    // Records sent while reconnecting are retried until delivered.
    let mut futures = Vec::new();
    for i in 0..50 {
        futures.push(
            producer
                .send("r", Some(format!("{i}").as_bytes()), b"after", &[])
                .await
                .unwrap(),
        );
    }
    for f in futures {
        f.await.unwrap();
    }
    client.reconnect().await.unwrap();
    assert!(client.is_connected());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut after = 0;
    while after < 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "{after} of 50 after restart"
        );
        for r in consumer.poll(Duration::from_millis(200)).await.unwrap() {
            seen += 1;
            if &r.value[..] == b"after" {
                after += 1;
            }
        }
    }
    assert_eq!(seen, 100, "nothing skipped or repeated");
    // The group member goes on after the restart (re-joining if the server forgot it),
    // from its committed offsets.
    let got = poll_n(&mut member, 50).await;
    assert!(got.iter().all(|r| &r.value[..] == b"after"), "{got:?}");
    assert!(member.membership().is_some());
    member.close().await.unwrap();
    consumer.close().await.unwrap();
    producer.close().await.unwrap();
    stop(server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_across_a_restart_store_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_config(dir.path());
    let server = Server::start(cfg.clone()).unwrap();
    cfg.listen = server.local_addr();
    let client = Client::connect(client_config(&server)).await.unwrap();
    client.create_topic("once", topic(3)).await.unwrap();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_bytes: 2048,
            linger: Duration::from_millis(1),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let n = 6000usize;
    let sending = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut futures = Vec::with_capacity(n);
            for i in 0..n {
                let value = format!("{i:08}");
                futures.push(
                    producer
                        .send("once", Some(value.as_bytes()), value.as_bytes(), &[])
                        .await
                        .unwrap(),
                );
                if i % 500 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let mut failed = 0;
            for f in futures {
                if f.await.is_err() {
                    failed += 1;
                }
            }
            failed
        })
    };
    // Lost connections while batches are in flight: answers are lost, batches resent.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(70)).await;
        client.break_connection();
    }
    stop(server).await;
    let server = Server::start(cfg).unwrap();
    assert_eq!(sending.await.unwrap(), 0, "every record delivered");
    producer.flush().await.unwrap();

    let mut values = Vec::new();
    for p in 0..3 {
        let mut offset = 0;
        loop {
            let f = client
                .fetch("once", p, offset, 1 << 20, Duration::ZERO)
                .await
                .unwrap();
            if f.batches.is_empty() {
                break;
            }
            let mut out = Vec::new();
            offset = RecordDecoder::new()
                .decode(&"once".into(), p, &f.batches, offset, &mut out)
                .unwrap();
            values.extend(out.into_iter().map(|r| r.value));
        }
    }
    let distinct: HashSet<_> = values.iter().collect();
    assert_eq!(distinct.len(), n, "no record lost");
    assert_eq!(values.len(), n, "no record stored twice");
    producer.close().await.unwrap();
    stop(server).await;
}

/// Compile-time check: the clients' futures can be spawned on a multi-threaded runtime.
#[allow(dead_code)]
fn futures_are_send(
    client: Client,
    producer: Producer,
    mut consumer: Consumer,
    record: ConsumedRecord,
) {
    fn spawnable<T: Send>(_: &T) {}
    spawnable(&client.call(0, crate::protocol::Request::ListTopics));
    spawnable(&client.subscribe("t", 0, 0, 1));
    spawnable(&client.reconnect());
    spawnable(&producer.send("t", None, b"v", &[]));
    spawnable(&producer.flush());
    spawnable(&consumer.poll(Duration::ZERO));
    spawnable(&consumer.poll_batches(Duration::ZERO));
    spawnable(&consumer.commit());
    spawnable(&consumer.seek("t", 0, StartFrom::Latest));
    spawnable(&consumer.reject(&record, "x"));
    spawnable(&consumer.close());
}
