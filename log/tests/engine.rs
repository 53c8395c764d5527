//! Engine tests: topics across shards, concurrent producers and readers, restart,
//! deletion, conditional appends and tailing fetches.

use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strata_log::engine::{CATALOG_FILE, OffsetQuery, TOPICS_DIR, TRASH_DIR};
use strata_log::format::{BatchBuilder, BatchIter, BuilderOptions};
use strata_log::{Durability, Engine, EngineConfig, Error, IoBackend, Partitioning, TopicConfig};

fn config(dir: &std::path::Path, shards: usize) -> EngineConfig {
    let mut c = EngineConfig::new(dir);
    c.shards = shards;
    c.pin_threads = false;
    c
}

/// An engine of `shards` shards in `dir` with topic `name` of `partitions` partitions.
fn open_with_topic(dir: &std::path::Path, shards: usize, name: &str, partitions: u32) -> Engine {
    let engine = Engine::open(config(dir, shards)).unwrap();
    engine.create_topic(name, topic(partitions)).unwrap();
    engine
}

fn topic(partitions: u32) -> TopicConfig {
    TopicConfig {
        partitions,
        segment_bytes: 1 << 20,
        ..TopicConfig::default()
    }
}

fn batch(values: &[Vec<u8>]) -> BytesMut {
    let mut b = BatchBuilder::new(BuilderOptions::default());
    for (i, v) in values.iter().enumerate() {
        b.push(i as i64, None, Some(v), &[]).unwrap();
    }
    b.finish().unwrap()
}

/// Reads every record of a partition from offset 0: (offset, value).
fn read_all(engine: &Engine, topic: &str, partition: u32) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = 0;
    let mut scratch = Vec::new();
    loop {
        let fetch = engine
            .fetch(topic, partition, offset, 64 * 1024, None)
            .unwrap()
            .wait()
            .unwrap();
        if fetch.bytes.is_empty() {
            return out;
        }
        for b in BatchIter::new(&fetch.bytes) {
            for r in b.unwrap().records(&mut scratch).unwrap() {
                let r = r.unwrap();
                if r.offset >= offset {
                    out.push((r.offset, r.value.unwrap().to_vec()));
                    offset = r.offset + 1;
                }
            }
        }
    }
}

#[test]
fn concurrent_producers_across_shards_read_back_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 2, "events", 4);
    let shards: std::collections::HashSet<usize> = engine
        .describe_topic("events")
        .unwrap()
        .iter()
        .map(|p| p.shard)
        .collect();
    assert_eq!(shards.len(), 2, "partitions are spread over both shards");

    const PRODUCERS: u32 = 4;
    const BATCHES: u32 = 50;
    let threads: Vec<_> = (0..PRODUCERS)
        .map(|producer| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for seq in 0..BATCHES {
                    let partition = (producer + seq) % 4;
                    let values: Vec<Vec<u8>> = (0..3)
                        .map(|i| format!("p{producer}-s{seq}-r{i}").into_bytes())
                        .collect();
                    let pending = engine.produce("events", partition, batch(&values)).unwrap();
                    let appended = pending.wait().unwrap();
                    assert_eq!(appended.last_offset - appended.base_offset, 2);
                    acked.push((partition, appended.base_offset, values));
                }
                acked
            })
        })
        .collect();
    let mut expected: HashMap<u32, Vec<(u64, Vec<u8>)>> = HashMap::new();
    for t in threads {
        for (partition, base, values) in t.join().unwrap() {
            let e = expected.entry(partition).or_default();
            for (i, v) in values.into_iter().enumerate() {
                e.push((base + i as u64, v));
            }
        }
    }
    let mut total = 0;
    for p in 0..4 {
        let mut want = expected.remove(&p).unwrap_or_default();
        want.sort();
        let got = read_all(&engine, "events", p);
        // Offsets are dense from 0 and every acknowledged record is there once.
        assert_eq!(
            got.iter().map(|r| r.0).collect::<Vec<_>>(),
            (0..got.len() as u64).collect::<Vec<_>>()
        );
        assert_eq!(got, want, "partition {p}");
        total += got.len();
    }
    assert_eq!(total, (PRODUCERS * BATCHES * 3) as usize);
    engine.shutdown().unwrap();
}

#[test]
fn topics_and_data_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(config(dir.path(), 2)).unwrap();
        let cfg = TopicConfig {
            durability: Durability::Fsync,
            ..topic(3)
        };
        engine.create_topic("orders", cfg.clone()).unwrap();
        engine.create_topic("audit", topic(1)).unwrap();
        for p in 0..3 {
            engine
                .produce("orders", p, batch(&[vec![p as u8; 10]]))
                .unwrap()
                .wait()
                .unwrap();
        }
        engine.shutdown().unwrap();
    }
    let engine = Engine::open(config(dir.path(), 3)).unwrap();
    let mut names: Vec<String> = engine.topics().iter().map(|t| t.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["audit", "orders"]);
    assert_eq!(
        engine.topic("orders").unwrap().config.durability,
        Durability::Fsync
    );
    for p in 0..3 {
        assert_eq!(read_all(&engine, "orders", p), vec![(0, vec![p as u8; 10])]);
    }
    // Appends continue after the recovered offsets.
    let a = engine
        .produce("orders", 0, batch(&[b"next".to_vec()]))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(a.base_offset, 1);
}

/// Whether the engine's trash folder is (or becomes, within 10 s) empty.
fn trash_empties(data_dir: &std::path::Path) -> bool {
    let trash = data_dir.join(TRASH_DIR);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let empty = std::fs::read_dir(&trash).map_or(true, |mut d| d.next().is_none());
        if empty {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn partitions_left_in_the_trash_by_a_crash_are_deleted_after_open() {
    let dir = tempfile::tempdir().unwrap();
    let leftover = dir.path().join(TRASH_DIR).join("7-0");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("00000000000000000000.log"), vec![1u8; 4096]).unwrap();
    let engine = Engine::open(config(dir.path(), 1)).unwrap();
    assert!(trash_empties(dir.path()));
    engine.shutdown().unwrap();
}

#[test]
fn delete_removes_data_and_a_recreated_topic_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), 2)).unwrap();
    let meta = engine.create_topic("t", topic(2)).unwrap();
    engine
        .produce("t", 1, batch(&[b"old".to_vec()]))
        .unwrap()
        .wait()
        .unwrap();
    assert!(matches!(
        engine.create_topic("t", topic(2)),
        Err(Error::TopicExists(_))
    ));
    engine.delete_topic("t").unwrap();
    assert!(
        !dir.path()
            .join(TOPICS_DIR)
            .join(meta.id.to_string())
            .exists()
    );
    assert!(matches!(
        engine.produce("t", 0, batch(&[b"x".to_vec()])),
        Err(Error::UnknownTopic(_))
    ));
    assert!(matches!(
        engine.delete_topic("t"),
        Err(Error::UnknownTopic(_))
    ));
    // The removed partitions went to the trash (not unlinked on the shard) and are
    // deleted in the background.
    assert!(dir.path().join(TRASH_DIR).is_dir(), "moved to the trash");
    assert!(trash_empties(dir.path()), "the trash was never emptied");
    let again = engine.create_topic("t", topic(2)).unwrap();
    assert_ne!(again.id, meta.id);
    assert!(read_all(&engine, "t", 1).is_empty());
    engine.shutdown().unwrap();
    let engine = Engine::open(config(dir.path(), 2)).unwrap();
    assert_eq!(engine.topic("t").unwrap().id, again.id);
}

#[test]
fn orphan_folders_from_an_interrupted_create_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_with_topic(dir.path(), 1, "kept", 1));
    // A crash between creating partition folders and committing the catalog leaves this.
    let orphan = dir.path().join(TOPICS_DIR).join("999").join("0");
    std::fs::create_dir_all(&orphan).unwrap();
    let engine = Engine::open(config(dir.path(), 1)).unwrap();
    assert!(!orphan.parent().unwrap().exists());
    assert_eq!(engine.topics().len(), 1);
}

#[test]
fn an_interrupted_delete_or_catalog_write_leaves_the_old_or_the_new_state() {
    use strata_log::engine::CatalogStore;
    let dir = tempfile::tempdir().unwrap();
    let gone_dir = {
        let engine = open_with_topic(dir.path(), 1, "kept", 1);
        let gone = engine.create_topic("gone", topic(2)).unwrap();
        engine
            .produce("kept", 0, batch(&[b"stays".to_vec()]))
            .unwrap()
            .wait()
            .unwrap();
        engine.shutdown().unwrap();
        dir.path().join(TOPICS_DIR).join(gone.id.to_string())
    };
    assert!(gone_dir.exists());
    // A delete that committed the catalog and crashed before removing the folders.
    let store = CatalogStore::new(dir.path());
    let mut catalog = store.load().unwrap();
    catalog.topics.remove("gone");
    store.commit(&catalog).unwrap();
    // And a later catalog write torn before its rename.
    std::fs::write(dir.path().join(format!("{CATALOG_FILE}.tmp")), b"{\"vers").unwrap();
    let engine = Engine::open(config(dir.path(), 1)).unwrap();
    assert!(
        !gone_dir.exists(),
        "the deleted topic's folders are removed at open"
    );
    let names: Vec<String> = engine.topics().iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, vec!["kept".to_string()]);
    assert_eq!(read_all(&engine, "kept", 0), vec![(0, b"stays".to_vec())]);
    // The next catalog write replaces the torn temporary file.
    engine.create_topic("new", topic(1)).unwrap();
    engine.shutdown().unwrap();
    drop(engine);
    let engine = Engine::open(config(dir.path(), 1)).unwrap();
    assert_eq!(engine.topics().len(), 2);
}

#[test]
fn a_damaged_catalog_fails_open_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(CATALOG_FILE), b"\x00garbage").unwrap();
    assert!(matches!(
        Engine::open(config(dir.path(), 1)),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn conditional_append_conflicts_carry_the_actual_offset() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 1, "stream", 1);
    let a = engine
        .produce_if("stream", 0, batch(&[b"e0".to_vec(), b"e1".to_vec()]), 0)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(a.base_offset, 0);
    let err = engine
        .produce_if("stream", 0, batch(&[b"stale".to_vec()]), 0)
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Conflict {
                expected: 0,
                actual: 2
            }
        ),
        "{err}"
    );
    let b = engine
        .produce_if("stream", 0, batch(&[b"e2".to_vec()]), 2)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(b.base_offset, 2);
    assert_eq!(
        read_all(&engine, "stream", 0).len(),
        3,
        "the conflicting batch was not written"
    );
}

#[test]
fn a_retried_conditional_append_gets_its_original_offsets_not_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 1, "stream", 1);
    let pid = engine.init_producer().unwrap();
    let append = |seq: i32, expected: u64| {
        engine
            .produce_if(
                "stream",
                0,
                idempotent_batch(pid, 0, seq, &[b"e0", b"e1"]),
                expected,
            )
            .unwrap()
            .wait()
    };
    let first = append(0, 0).unwrap();
    // The answer was lost and the client retries the same append with the same check.
    assert_eq!(append(0, 0).unwrap(), first);
    // A new append with the stale expectation is still a conflict.
    assert!(matches!(
        append(2, 0),
        Err(Error::Conflict {
            expected: 0,
            actual: 2
        })
    ));
    assert_eq!(read_all(&engine, "stream", 0).len(), 2, "written once");
}

#[test]
fn a_tailing_fetch_wakes_when_data_becomes_durable() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 2, "tail", 1);
    // Parked at the high watermark with a long deadline.
    let pending = engine
        .fetch("tail", 0, 0, 1 << 20, Some(Duration::from_secs(60)))
        .unwrap();
    let producer = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            engine
                .produce("tail", 0, batch(&[b"hello".to_vec()]))
                .unwrap()
                .wait()
                .unwrap()
        })
    };
    let fetch = pending.wait().unwrap();
    producer.join().unwrap();
    let view = BatchIter::new(&fetch.bytes)
        .next()
        .expect("woken with data")
        .unwrap();
    assert_eq!(view.header().base_offset, 0);
    assert_eq!(fetch.high_watermark, 1);
}

#[test]
fn a_tailing_fetch_returns_empty_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 1, "quiet", 1);
    let fetch = engine
        .fetch("quiet", 0, 0, 1 << 20, Some(Duration::from_millis(20)))
        .unwrap()
        .wait()
        .unwrap();
    assert!(fetch.bytes.is_empty());
    assert_eq!(fetch.high_watermark, 0);
}

#[test]
fn an_endless_tailing_wait_is_capped_not_a_panic_and_still_wakes_on_data() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 1, "t", 1);
    let tail = engine
        .fetch("t", 0, 0, 1 << 20, Some(Duration::MAX))
        .unwrap();
    engine
        .produce("t", 0, batch(&[b"late".to_vec()]))
        .unwrap()
        .wait()
        .unwrap();
    let fetch = tail.wait().unwrap();
    assert_eq!(fetch.high_watermark, 1);
    assert!(!fetch.bytes.is_empty());
}

#[test]
fn shards_apply_retention_by_themselves_every_check_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 2);
    c.retention_check_interval = Some(Duration::from_millis(20));
    let engine = Engine::open(c).unwrap();
    let t = TopicConfig {
        partitions: 2,
        segment_bytes: 1 << 20,
        retention_bytes: Some(1 << 20),
        retention_ms: None,
        ..TopicConfig::default()
    };
    engine.create_topic("r", t).unwrap();
    // 4 MiB per partition in 64 KiB records: several sealed 1 MiB segments each.
    let value = vec![7u8; 64 * 1024];
    for p in 0..2 {
        for _ in 0..64 {
            engine
                .produce("r", p, batch(std::slice::from_ref(&value)))
                .unwrap()
                .wait()
                .unwrap();
        }
    }
    // Nothing calls apply_retention: the shards' own check must move the log start.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for p in 0..2 {
        let earliest = loop {
            let earliest = engine
                .offset_for("r", p, OffsetQuery::Earliest)
                .unwrap()
                .wait()
                .unwrap()
                .unwrap();
            if earliest > 0 || std::time::Instant::now() > deadline {
                break earliest;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(earliest > 0, "partition {p}: retention never ran");
        // At least retention_bytes (16 records of 64 KiB) is kept, readable from the log
        // start. A pass may still move the start between reading it and fetching there
        // (the last produce's roll sealed one more segment): then read it again.
        let mut attempts = 0;
        let f = loop {
            let earliest = engine
                .offset_for("r", p, OffsetQuery::Earliest)
                .unwrap()
                .wait()
                .unwrap()
                .unwrap();
            assert!(
                earliest <= 64 - 16,
                "partition {p}: kept too little ({earliest})"
            );
            match engine
                .fetch("r", p, earliest, 1 << 20, None)
                .unwrap()
                .wait()
            {
                Ok(f) => break f,
                Err(Error::OffsetOutOfRange { .. }) if attempts < 100 => attempts += 1,
                Err(e) => panic!("partition {p}: fetch at the log start: {e}"),
            }
        };
        assert!(!f.bytes.is_empty());
    }

    let other = tempfile::tempdir().unwrap();
    let mut c = config(other.path(), 1);
    c.retention_check_interval = Some(Duration::ZERO);
    assert!(matches!(Engine::open(c), Err(Error::InvalidConfig(_))));
    // An interval past any clock reading means never, not a panic.
    let mut c = config(other.path(), 1);
    c.retention_check_interval = Some(Duration::MAX);
    let engine = Engine::open(c).unwrap();
    engine.create_topic("r", topic(1)).unwrap();
    let a = engine
        .produce("r", 0, batch(&[b"x".to_vec()]))
        .unwrap()
        .wait();
    assert_eq!(a.unwrap().base_offset, 0);
    engine.shutdown().unwrap();
}

#[test]
fn unknown_partitions_and_bad_names_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 1, "t", 2);
    assert!(matches!(
        engine.produce("t", 2, batch(&[b"x".to_vec()])),
        Err(Error::UnknownPartition { partition: 2, .. })
    ));
    assert!(matches!(
        engine.fetch("nope", 0, 0, 1, None),
        Err(Error::UnknownTopic(_))
    ));
    assert!(matches!(
        engine.create_topic("../etc", topic(1)),
        Err(Error::InvalidTopicName(_))
    ));
    assert!(matches!(
        engine.create_topic("z", topic(0)),
        Err(Error::InvalidConfig(_))
    ));
    // A corrupt batch is refused by the shard and leaves the partition untouched.
    let mut bad = batch(&[b"x".to_vec()]);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let err = engine.produce("t", 0, bad).unwrap().wait().unwrap_err();
    assert!(matches!(err, Error::Format(_)), "{err}");
    assert_eq!(
        engine
            .offset_for("t", 0, OffsetQuery::Latest)
            .unwrap()
            .wait()
            .unwrap(),
        Some(0)
    );
}

#[test]
fn partitioning_by_key_is_stable_and_round_robin_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 1, "k", 5);
    let p = engine
        .partition_for("k", Partitioning::Key(b"user-42"))
        .unwrap();
    assert_eq!(p, strata_log::engine::partition_for_key(b"user-42", 5));
    assert_eq!(
        engine
            .partition_for("k", Partitioning::Key(b"user-42"))
            .unwrap(),
        p
    );
    let rr: Vec<u32> = (0..10)
        .map(|_| engine.partition_for("k", Partitioning::RoundRobin).unwrap())
        .collect();
    let mut seen = rr.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        vec![0, 1, 2, 3, 4],
        "round-robin visits every partition: {rr:?}"
    );
    // Each topic has its own turn: alternating between two topics of two partitions
    // still visits both partitions of each.
    engine.create_topic("a", topic(2)).unwrap();
    engine.create_topic("b", topic(2)).unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        a.push(engine.partition_for("a", Partitioning::RoundRobin).unwrap());
        b.push(engine.partition_for("b", Partitioning::RoundRobin).unwrap());
    }
    assert_eq!((a, b), (vec![0, 1, 0, 1], vec![0, 1, 0, 1]));
}

#[test]
fn offsets_by_time_and_bounds_through_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1);
    cfg.partition_defaults.io_backend = IoBackend::Fallback;
    let engine = Arc::new(Engine::open(cfg).unwrap());
    engine.create_topic("ts", topic(1)).unwrap();
    let mut b = BatchBuilder::new(BuilderOptions::default());
    for ts in [100i64, 200, 300] {
        b.push(ts, None, Some(b"v"), &[]).unwrap();
    }
    engine
        .produce("ts", 0, b.finish().unwrap())
        .unwrap()
        .wait()
        .unwrap();
    let q = |query| engine.offset_for("ts", 0, query).unwrap().wait().unwrap();
    assert_eq!(q(OffsetQuery::Earliest), Some(0));
    assert_eq!(q(OffsetQuery::Latest), Some(3));
    assert_eq!(q(OffsetQuery::Timestamp(150)), Some(1));
    assert_eq!(q(OffsetQuery::Timestamp(301)), None);
}

fn idempotent_batch(producer_id: u64, epoch: u16, seq: i32, values: &[&[u8]]) -> BytesMut {
    let mut b = BatchBuilder::new(BuilderOptions::default());
    b.set_producer(producer_id, epoch, seq);
    for v in values {
        b.push(0, None, Some(v), &[]).unwrap();
    }
    b.finish().unwrap()
}

#[test]
fn idempotent_retries_are_written_once_even_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (pid, first) = {
        let engine = open_with_topic(dir.path(), 2, "idem", 1);
        let pid = engine.init_producer().unwrap();
        assert_ne!(engine.init_producer().unwrap(), pid, "ids are never reused");
        let first = engine
            .produce("idem", 0, idempotent_batch(pid, 0, 0, &[b"a", b"b"]))
            .unwrap()
            .wait()
            .unwrap();
        // The retry (same sequence) gets the original offsets back.
        let retry = engine
            .produce("idem", 0, idempotent_batch(pid, 0, 0, &[b"a", b"b"]))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(retry, first);
        // A gap is refused and names the expected sequence.
        let err = engine
            .produce("idem", 0, idempotent_batch(pid, 0, 5, &[b"x"]))
            .unwrap()
            .wait()
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::OutOfOrderSequence {
                    expected: 2,
                    received: 5,
                    ..
                }
            ),
            "{err}"
        );
        (pid, first)
    };
    // Unclean restart: drop the files' clean marker so the state is rebuilt from the log.
    for entry in walk(dir.path()) {
        if entry
            .file_name()
            .is_some_and(|n| n == "producers.snapshot" || n == ".clean-shutdown")
        {
            std::fs::remove_file(entry).unwrap();
        }
    }
    let engine = Engine::open(config(dir.path(), 1)).unwrap();
    let retry = engine
        .produce("idem", 0, idempotent_batch(pid, 0, 0, &[b"a", b"b"]))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(retry, first, "dedup state rebuilt from the log");
    let next = engine
        .produce("idem", 0, idempotent_batch(pid, 0, 2, &[b"c"]))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(next.base_offset, 2);
    let values: Vec<Vec<u8>> = read_all(&engine, "idem", 0)
        .into_iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(values, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    assert!(
        engine.init_producer().unwrap() > pid + 1,
        "producer ids survive restart"
    );
    // An older epoch is fenced once a newer one has written.
    let d = engine
        .produce("idem", 0, idempotent_batch(pid, 1, 0, &[b"d"]))
        .unwrap()
        .wait()
        .unwrap();
    let err = engine
        .produce("idem", 0, idempotent_batch(pid, 0, 3, &[b"e"]))
        .unwrap()
        .wait()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::ProducerFenced {
                current_epoch: 1,
                ..
            }
        ),
        "{err}"
    );
    // Clean restart: the state comes from the snapshot written at shutdown.
    engine.shutdown().unwrap();
    drop(engine);
    let snapshot = walk(dir.path())
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "producers.snapshot"));
    assert!(snapshot.is_some(), "shutdown writes the producer snapshot");
    let engine = Engine::open(config(dir.path(), 2)).unwrap();
    let retry = engine
        .produce("idem", 0, idempotent_batch(pid, 1, 0, &[b"d"]))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(retry, d);
    assert_eq!(read_all(&engine, "idem", 0).len(), 4);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Records what it saw: (shard thread name, topic id, partition, first offset, values).
struct Recorder(std::sync::mpsc::Sender<(String, u32, u64, Vec<Vec<u8>>)>);

impl strata_log::engine::DurableObserver for Recorder {
    fn on_durable(&mut self, id: strata_log::engine::PartitionId, batches: &bytes::Bytes) {
        let mut scratch = Vec::new();
        for b in BatchIter::new(batches) {
            let b = b.unwrap();
            let values = b
                .records(&mut scratch)
                .unwrap()
                .map(|r| r.unwrap().value.unwrap().to_vec())
                .collect();
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            self.0
                .send((thread, id.partition, b.header().base_offset, values))
                .unwrap();
        }
    }
}

#[test]
fn the_shard_observer_sees_every_durable_batch_in_order_on_its_own_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut cfg = config(dir.path(), 2);
    cfg.observer = Some(Arc::new(move |_shard| {
        Box::new(Recorder(tx.clone())) as Box<dyn strata_log::engine::DurableObserver>
    }));
    let engine = Engine::open(cfg).unwrap();
    engine.create_topic("cep", topic(2)).unwrap();
    let mut acked = Vec::new();
    let mut seen = Vec::new();
    for i in 0..20u8 {
        let p = u32::from(i % 2);
        let a = engine
            .produce("cep", p, batch(&[vec![i], vec![i + 100]]))
            .unwrap()
            .wait()
            .unwrap();
        acked.push((p, a.base_offset, vec![vec![i], vec![i + 100]]));
        // The observer saw the batch before its append was answered.
        seen.extend(rx.try_iter());
        assert!(
            seen.iter().any(|s| (s.1, s.2) == (p, a.base_offset)),
            "batch {i} acknowledged before it was observed"
        );
    }
    engine.shutdown().unwrap();
    drop(engine);
    seen.extend(rx.try_iter());
    assert!(
        seen.iter()
            .all(|(thread, ..)| thread.starts_with("strata-shard-"))
    );
    let mut seen: Vec<_> = seen.into_iter().map(|(_, p, o, v)| (p, o, v)).collect();
    // Per partition, batches arrive in offset order; overall, each exactly once.
    for p in 0..2 {
        let offsets: Vec<u64> = seen.iter().filter(|s| s.0 == p).map(|s| s.1).collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "in order: {offsets:?}"
        );
    }
    seen.sort();
    acked.sort();
    assert_eq!(seen, acked);
}

use strata_log::engine::{AssignmentStrategy, TopicPartition};

/// Joins `group` as a new member subscribed to `topic`.
fn join(
    engine: &Engine,
    group: &str,
    topic: &str,
    strategy: AssignmentStrategy,
    timeout: Duration,
) -> strata_log::engine::Membership {
    engine
        .join_group(group, None, &[topic], strategy, timeout)
        .unwrap()
        .wait()
        .unwrap()
}

fn tp(topic: &str, partition: u32) -> TopicPartition {
    TopicPartition {
        topic: topic.into(),
        partition,
    }
}

#[test]
fn groups_assign_rebalance_fence_and_keep_offsets_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(30);
    let last_generation = {
        let engine = open_with_topic(dir.path(), 2, "clicks", 4);
        let a = join(
            &engine,
            "analytics",
            "clicks",
            AssignmentStrategy::Range,
            timeout,
        );
        assert_eq!(a.assignment.len(), 4, "a lone member owns every partition");
        let b = join(
            &engine,
            "analytics",
            "clicks",
            AssignmentStrategy::Range,
            timeout,
        );
        assert_eq!(b.generation, a.generation + 1);
        // A learns about the rebalance on its heartbeat; together they cover all, disjointly.
        let a2 = engine
            .heartbeat("analytics", &a.member_id)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(a2.generation, b.generation);
        let mut all: Vec<_> = a2.assignment.iter().chain(&b.assignment).cloned().collect();
        all.sort();
        assert_eq!(all, (0..4).map(|p| tp("clicks", p)).collect::<Vec<_>>());
        // A commit from A's old generation is fenced; one from the current is durable.
        let stale = engine
            .commit_offsets(
                "analytics",
                Some((&a.member_id, a.generation)),
                &[(tp("clicks", 0), 5)],
            )
            .unwrap()
            .wait()
            .unwrap_err();
        assert!(matches!(stale, Error::StaleGeneration { .. }), "{stale}");
        engine
            .commit_offsets(
                "analytics",
                Some((&a.member_id, a2.generation)),
                &[(tp("clicks", 0), 7), (tp("clicks", 1), 9)],
            )
            .unwrap()
            .wait()
            .unwrap();
        let got = engine
            .committed_offsets(
                "analytics",
                &[tp("clicks", 0), tp("clicks", 1), tp("clicks", 2)],
            )
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(got, vec![Some(7), Some(9), None]);
        // Leaving hands B everything.
        engine
            .leave_group("analytics", &a.member_id)
            .unwrap()
            .wait()
            .unwrap();
        let b2 = engine
            .heartbeat("analytics", &b.member_id)
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(b2.assignment.len(), 4);
        assert!(matches!(
            engine.heartbeat("analytics", &a.member_id).unwrap().wait(),
            Err(Error::UnknownMember(_))
        ));
        assert_eq!(engine.list_groups().unwrap(), vec!["analytics".to_string()]);
        b2.generation
    };
    // Restart with another shard count: offsets are still there, generations keep growing,
    // and members from before the restart are unknown.
    let engine = Engine::open(config(dir.path(), 3)).unwrap();
    let got = engine
        .committed_offsets("analytics", &[tp("clicks", 0), tp("clicks", 1)])
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(got, vec![Some(7), Some(9)]);
    let c = join(
        &engine,
        "analytics",
        "clicks",
        AssignmentStrategy::Sticky,
        timeout,
    );
    assert!(
        c.generation > last_generation,
        "{} > {last_generation}",
        c.generation
    );
    let summary = engine
        .describe_group("analytics")
        .unwrap()
        .wait()
        .unwrap()
        .unwrap();
    assert_eq!(summary.members.len(), 1);
    assert_eq!(summary.committed.get(&tp("clicks", 1)), Some(&9));
}

#[test]
fn a_silent_member_is_expired_and_its_partitions_move() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 1, "jobs", 2);
    let short = Duration::from_millis(200);
    let quiet = join(
        &engine,
        "workers",
        "jobs",
        AssignmentStrategy::RoundRobin,
        short,
    );
    let alive = join(
        &engine,
        "workers",
        "jobs",
        AssignmentStrategy::RoundRobin,
        Duration::from_secs(30),
    );
    assert_eq!(alive.assignment.len(), 1);
    // Keep the live member beating until the quiet one's session has expired (bounded).
    let mut m = alive.clone();
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(25));
        m = engine
            .heartbeat("workers", &alive.member_id)
            .unwrap()
            .wait()
            .unwrap();
        if m.generation > alive.generation {
            break;
        }
    }
    assert_eq!(
        m.generation,
        alive.generation + 1,
        "the expiry triggered a rebalance"
    );
    assert_eq!(m.assignment.len(), 2, "the survivor owns both partitions");
    assert!(matches!(
        engine
            .heartbeat("workers", &quiet.member_id)
            .unwrap()
            .wait(),
        Err(Error::UnknownMember(_))
    ));
    // Manual commits are refused while the group has members.
    assert!(
        engine
            .commit_offsets("workers", None, &[(tp("jobs", 0), 1)])
            .unwrap()
            .wait()
            .is_err()
    );
    assert!(matches!(
        engine.heartbeat("bad/name", "x"),
        Err(Error::InvalidGroupName(_))
    ));
}

#[test]
fn tailing_readers_see_every_acknowledged_record_exactly_once_while_producers_write() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), 2)).unwrap();
    const PARTITIONS: u32 = 4;
    const PER_PARTITION: usize = 120;
    engine.create_topic("live", topic(PARTITIONS)).unwrap();
    // One tailing reader per partition, started before anything is written.
    let readers: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut offset = 0u64;
                let mut scratch = Vec::new();
                while got.len() < PER_PARTITION {
                    let fetch = engine
                        .fetch("live", p, offset, 16 * 1024, Some(Duration::from_secs(30)))
                        .unwrap()
                        .wait()
                        .unwrap();
                    assert!(
                        !fetch.bytes.is_empty(),
                        "woken with data before the deadline"
                    );
                    for b in BatchIter::new(&fetch.bytes) {
                        for r in b.unwrap().records(&mut scratch).unwrap() {
                            let r = r.unwrap();
                            if r.offset >= offset {
                                assert_eq!(r.offset, offset, "no gaps");
                                got.push(r.value.unwrap().to_vec());
                                offset += 1;
                            }
                        }
                    }
                }
                got
            })
        })
        .collect();
    // Two producers per partition, interleaving single-record batches.
    let producers: Vec<_> = (0..PARTITIONS * 2)
        .map(|i| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let p = i % PARTITIONS;
                for seq in 0..PER_PARTITION / 2 {
                    let v = format!("{i}:{seq}").into_bytes();
                    engine
                        .produce("live", p, batch(&[v]))
                        .unwrap()
                        .wait()
                        .unwrap();
                }
            })
        })
        .collect();
    for t in producers {
        t.join().unwrap();
    }
    for (p, t) in readers.into_iter().enumerate() {
        let got = t.join().unwrap();
        assert_eq!(got.len(), PER_PARTITION);
        // Each producer's records arrive once each, in the order it sent them.
        for producer in [p, p + PARTITIONS as usize] {
            let mine: Vec<usize> = got
                .iter()
                .map(|v| String::from_utf8(v.clone()).unwrap())
                .filter_map(|s| {
                    let (who, seq) = s.split_once(':').unwrap();
                    (who.parse::<usize>().unwrap() == producer).then(|| seq.parse().unwrap())
                })
                .collect();
            assert_eq!(
                mine,
                (0..PER_PARTITION / 2).collect::<Vec<_>>(),
                "partition {p}, producer {producer}"
            );
        }
    }
}

#[test]
fn requests_racing_a_shutdown_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 2, "closing", 2);
    // Queue requests without waiting, then shut down with them in flight.
    let pending: Vec<_> = (0..200u32)
        .map(|i| {
            engine
                .produce("closing", i % 2, batch(&[vec![1u8; 8]]))
                .unwrap()
        })
        .collect();
    let producer = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            // Keeps sending while the shutdown happens; every request must get an answer.
            for i in 0..2000u32 {
                match engine.produce("closing", i % 2, batch(&[vec![2u8; 8]])) {
                    Ok(p) => match p.wait() {
                        Ok(_) | Err(Error::ShuttingDown) => {}
                        Err(e) => panic!("unexpected error {e}"),
                    },
                    Err(Error::ShuttingDown) => return,
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
        })
    };
    engine.shutdown().unwrap();
    for p in pending {
        // Accepted before the shutdown command: written; the rest: refused. Never a hang.
        assert!(matches!(p.wait(), Ok(_) | Err(Error::ShuttingDown)));
    }
    producer.join().unwrap();
    assert!(matches!(
        engine.produce("closing", 0, batch(&[vec![3u8; 8]])),
        Err(Error::ShuttingDown)
    ));
}

#[test]
fn custom_runner_drives_every_shard_on_its_own_thread() {
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let seen: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
    let mut c = config(dir.path(), 2);
    let log = seen.clone();
    c.runner = Some(Arc::new(move |core: strata_log::engine::ShardCore| {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        log.lock().unwrap().push((core.index(), name));
        strata_log::engine::run_shard(core);
    }));
    let engine = Engine::open(c).unwrap();
    engine.create_topic("t", topic(2)).unwrap();
    for p in 0..2 {
        let a = engine
            .produce("t", p, batch(&[b"x".to_vec()]))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(a.base_offset, 0);
    }
    engine.shutdown().unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            (0, "strata-shard-0".to_owned()),
            (1, "strata-shard-1".to_owned())
        ]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn blocking_api_works_from_inside_an_async_runtime() {
    // An embedding program's async main may call the blocking control-plane API.
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 1, "t", 1);
    let a = engine
        .produce("t", 0, batch(&[b"x".to_vec()]))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(a.base_offset, 0);
    let awaited = engine
        .produce("t", 0, batch(&[b"y".to_vec()]))
        .unwrap()
        .await
        .unwrap();
    assert_eq!(awaited.base_offset, 1);
    engine.shutdown().unwrap();
}

fn values(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i}").into_bytes())
        .collect()
}

#[test]
fn produce_many_appends_in_order_with_contiguous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 2, "many", 2);
    for p in 0..2u32 {
        let first = engine
            .produce("many", p, batch(&values("a", 2)))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!((first.base_offset, first.last_offset), (0, 1));
        let sizes = [1usize, 3, 2];
        let batches = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| batch(&values(&format!("m{i}"), n)))
            .collect();
        let results = engine
            .produce_many("many", p, batches)
            .unwrap()
            .wait()
            .unwrap();
        let offsets: Vec<(u64, u64)> = results
            .into_iter()
            .map(|r| {
                let a = r.unwrap();
                (a.base_offset, a.last_offset)
            })
            .collect();
        assert_eq!(offsets, vec![(2, 2), (3, 5), (6, 7)]);
        let after = engine
            .produce("many", p, batch(&values("z", 1)))
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(
            after.base_offset, 8,
            "single produce continues after the request"
        );
        let got: Vec<(u64, Vec<u8>)> = read_all(&engine, "many", p);
        let mut want = Vec::new();
        for (prefix, n) in [("a", 2), ("m0", 1), ("m1", 3), ("m2", 2), ("z", 1)] {
            want.extend(values(prefix, n));
        }
        assert_eq!(got.len(), want.len());
        for (i, (offset, value)) in got.into_iter().enumerate() {
            assert_eq!(offset, i as u64);
            assert_eq!(value, want[i], "record {i} in request order");
        }
    }
    assert!(
        engine
            .produce_many("many", 0, Vec::new())
            .unwrap()
            .wait()
            .unwrap()
            .is_empty(),
        "an empty request resolves with no results"
    );
    let state = engine.describe_topic("many").unwrap();
    assert!(state.iter().all(|s| s.high_watermark == 9));
}

#[test]
fn produce_many_accepts_a_prefix_and_stops_at_the_first_bad_batch() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 1, "bad", 1);
    let mut corrupt = batch(&values("x", 2));
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xFF;
    let batches = vec![batch(&values("ok", 2)), corrupt, batch(&values("never", 1))];
    let results = engine
        .produce_many("bad", 0, batches)
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(results.len(), 3);
    let ok = results[0].as_ref().unwrap();
    assert_eq!((ok.base_offset, ok.last_offset), (0, 1));
    assert!(
        matches!(results[1], Err(Error::Format(_))),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(Error::AppendFailed(_))),
        "{:?}",
        results[2]
    );
    assert_eq!(
        read_all(&engine, "bad", 0)
            .into_iter()
            .map(|(_, v)| v)
            .collect::<Vec<_>>(),
        values("ok", 2),
        "only the prefix before the bad batch was written"
    );
    // The partition goes on normally after the failed request.
    let next = engine
        .produce("bad", 0, batch(&values("next", 1)))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(next.base_offset, 2);
}

#[test]
fn produce_many_errors_unknown_partitions_and_answers_across_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 2, "edge", 2);
    assert!(matches!(
        engine.produce_many("edge", 2, vec![batch(&values("v", 1))]),
        Err(Error::UnknownPartition { partition: 2, .. })
    ));
    assert!(matches!(
        engine.produce_many("nope", 0, vec![batch(&values("v", 1))]),
        Err(Error::UnknownTopic(_))
    ));
    let pending: Vec<_> = (0..100u32)
        .map(|i| {
            engine
                .produce_many(
                    "edge",
                    i % 2,
                    (0..4).map(|_| batch(&values("s", 3))).collect(),
                )
                .unwrap()
        })
        .collect();
    engine.shutdown().unwrap();
    let mut written = [0u64; 2];
    for (i, p) in pending.into_iter().enumerate() {
        match p.wait() {
            Ok(results) => {
                assert_eq!(results.len(), 4);
                for r in results {
                    let a = r.unwrap();
                    assert_eq!(a.base_offset, written[i % 2], "contiguous per partition");
                    written[i % 2] = a.last_offset + 1;
                }
            }
            Err(Error::ShuttingDown) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(matches!(
        engine.produce_many("edge", 0, vec![batch(&values("late", 1))]),
        Err(Error::ShuttingDown)
    ));
    // What was acknowledged survives a restart.
    let engine = Engine::open(config(dir.path(), 2)).unwrap();
    let state = engine.describe_topic("edge").unwrap();
    for s in state {
        assert_eq!(s.high_watermark, written[s.partition as usize]);
    }
}

#[test]
fn produce_many_without_durability_wait_and_with_idempotent_retries() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), 1)).unwrap();
    let none = TopicConfig {
        durability: Durability::None,
        ..topic(1)
    };
    engine.create_topic("fast", none).unwrap();
    let results = engine
        .produce_many(
            "fast",
            0,
            vec![batch(&values("f", 2)), batch(&values("g", 2))],
        )
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(results[1].as_ref().unwrap().base_offset, 2);
    assert_eq!(read_all(&engine, "fast", 0).len(), 4);

    engine.create_topic("idem", topic(1)).unwrap();
    let pid = engine.init_producer().unwrap();
    let request = || {
        vec![
            idempotent_batch(pid, 0, 0, &[b"i0", b"i1"]),
            idempotent_batch(pid, 0, 2, &[b"i2"]),
        ]
    };
    let first: Vec<_> = engine
        .produce_many("idem", 0, request())
        .unwrap()
        .wait()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let retry: Vec<_> = engine
        .produce_many("idem", 0, request())
        .unwrap()
        .wait()
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        first, retry,
        "a retried request is acknowledged with its offsets"
    );
    assert_eq!(read_all(&engine, "idem", 0).len(), 3, "written once");
}

#[test]
fn a_full_inbox_is_a_typed_overload_and_recovers_once_the_shard_drains_it() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 1);
    c.inbox_capacity = 4;
    // A runner that stops turning while `pause` is set, until told to resume.
    let pause = Arc::new(AtomicBool::new(false));
    let (paused_tx, paused_rx) = mpsc::channel::<()>();
    let (resume_tx, resume_rx) = mpsc::channel::<()>();
    let (paused_tx, resume_rx) = (Mutex::new(paused_tx), Mutex::new(resume_rx));
    let flag = pause.clone();
    c.runner = Some(Arc::new(move |mut core: strata_log::engine::ShardCore| {
        loop {
            if flag.swap(false, Ordering::SeqCst) {
                paused_tx.lock().unwrap().send(()).unwrap();
                resume_rx.lock().unwrap().recv().unwrap();
            }
            let turn = core.turn(std::time::Instant::now());
            if turn.stopped {
                return;
            }
            if !turn.progressed {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }));
    let engine = Engine::open(c).unwrap();
    engine.create_topic("t", topic(1)).unwrap();
    pause.store(true, Ordering::SeqCst);
    paused_rx.recv().unwrap();
    let queued: Vec<_> = (0..4)
        .map(|i| engine.produce("t", 0, batch(&[vec![i]])).unwrap())
        .collect();
    assert!(matches!(
        engine.produce("t", 0, batch(&[vec![9]])),
        Err(Error::Overloaded { shard: 0 })
    ));
    resume_tx.send(()).unwrap();
    let offsets: Vec<u64> = queued
        .into_iter()
        .map(|p| p.wait().unwrap().base_offset)
        .collect();
    assert_eq!(
        offsets,
        vec![0, 1, 2, 3],
        "the queued appends all landed, in order"
    );
    let after = engine.produce("t", 0, batch(&[vec![4]])).unwrap().wait();
    assert_eq!(after.unwrap().base_offset, 4);
    assert_eq!(
        read_all(&engine, "t", 0).len(),
        5,
        "the refused append was not written"
    );
    engine.shutdown().unwrap();
}

#[test]
fn too_many_parked_fetches_is_a_typed_overload() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 1);
    c.max_parked_fetches = 1;
    let engine = Engine::open(c).unwrap();
    engine.create_topic("t", topic(1)).unwrap();
    let wait = Some(Duration::from_secs(30));
    let parked = engine.fetch("t", 0, 0, 1 << 20, wait).unwrap();
    // The first fetch is parked once a turn has run: an unrelated request proves it.
    engine
        .offset_for("t", 0, OffsetQuery::Latest)
        .unwrap()
        .wait()
        .unwrap();
    let second = engine.fetch("t", 0, 0, 1 << 20, wait).unwrap().wait();
    assert!(
        matches!(second, Err(Error::Overloaded { shard: 0 })),
        "{second:?}"
    );
    engine
        .produce("t", 0, batch(&[b"x".to_vec()]))
        .unwrap()
        .wait()
        .unwrap();
    assert!(
        !parked.wait().unwrap().bytes.is_empty(),
        "the parked fetch still completes"
    );
}

#[test]
fn reopening_more_partitions_than_an_inbox_holds_waits_instead_of_overloading() {
    let dir = tempfile::tempdir().unwrap();
    let small = || {
        let mut c = config(dir.path(), 1);
        c.inbox_capacity = 4;
        c
    };
    let engine = Engine::open(small()).unwrap();
    engine.create_topic("wide", topic(16)).unwrap();
    for p in 0..16 {
        engine
            .produce("wide", p, batch(&[vec![p as u8]]))
            .unwrap()
            .wait()
            .unwrap();
    }
    engine.shutdown().unwrap();
    drop(engine);
    let engine = Engine::open(small()).unwrap();
    for p in 0..16 {
        assert_eq!(read_all(&engine, "wide", p), vec![(0, vec![p as u8])]);
    }
    engine.shutdown().unwrap();
}

#[test]
fn pinned_shards_run_on_their_own_core() {
    use std::sync::Mutex;
    let cores = core_affinity::get_core_ids().unwrap();
    // Where threads may not be pinned at all (a restricted container), there is nothing
    // to check: the engine logs that and runs its shards unpinned.
    let first = cores[0];
    let pinnable = std::thread::spawn(move || core_affinity::set_for_current(first))
        .join()
        .unwrap();
    if !pinnable {
        eprintln!("skipped: this environment refuses CPU pinning");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 2);
    c.pin_threads = true;
    type Seen = Vec<(usize, Vec<usize>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let log = seen.clone();
    c.runner = Some(Arc::new(move |core: strata_log::engine::ShardCore| {
        // The runner starts after pinning: the thread may run on one core only.
        let allowed = core_affinity::get_core_ids().unwrap_or_default();
        log.lock()
            .unwrap()
            .push((core.index(), allowed.iter().map(|c| c.id).collect()));
        strata_log::engine::run_shard(core);
    }));
    let engine = Engine::open(c).unwrap();
    engine.create_topic("t", topic(2)).unwrap();
    engine.shutdown().unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let expected: Seen = (0..2)
        .map(|i| (i, vec![cores[i % cores.len()].id]))
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn a_sticky_group_keeps_survivors_partitions_through_joins_and_leaves() {
    use std::collections::BTreeSet;
    let dir = tempfile::tempdir().unwrap();
    let engine = open_with_topic(dir.path(), 2, "orders", 6);
    let timeout = Duration::from_secs(30);
    let sticky = AssignmentStrategy::Sticky;
    let owned = |member: &str| -> BTreeSet<u32> {
        let m = engine.heartbeat("g", member).unwrap().wait().unwrap();
        m.assignment.iter().map(|t| t.partition).collect()
    };
    let a = join(&engine, "g", "orders", sticky, timeout).member_id;
    let b = join(&engine, "g", "orders", sticky, timeout).member_id;
    let (a1, b1) = (owned(&a), owned(&b));
    assert_eq!((a1.len(), b1.len()), (3, 3));
    // A joiner takes only what balance needs; the others keep the rest of theirs.
    let c = join(&engine, "g", "orders", sticky, timeout).member_id;
    let (a2, b2, c2) = (owned(&a), owned(&b), owned(&c));
    assert_eq!((a2.len(), b2.len(), c2.len()), (2, 2, 2));
    assert!(
        a2.is_subset(&a1) && b2.is_subset(&b1),
        "{a1:?}->{a2:?} {b1:?}->{b2:?}"
    );
    // A leaver's partitions go to the survivors, who lose none of theirs.
    engine.leave_group("g", &b).unwrap().wait().unwrap();
    let (a3, c3) = (owned(&a), owned(&c));
    assert!(
        a3.is_superset(&a2) && c3.is_superset(&c2),
        "{a2:?}->{a3:?} {c2:?}->{c3:?}"
    );
    assert_eq!(a3.union(&c3).count(), 6);
    assert!(a3.is_disjoint(&c3));
    engine.shutdown().unwrap();
}
