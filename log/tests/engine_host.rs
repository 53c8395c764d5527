//! Hosted shards (`Engine::open_hosted`): tasks spawned on a shard's own runtime produce,
//! fetch and tail without crossing a thread, and the handles fail cleanly.
#![cfg(feature = "tokio-host")]

use bytes::BytesMut;
use std::collections::VecDeque;
use std::time::Duration;
use strata_log::engine::host::ShardTasks;
use strata_log::format::{BatchBuilder, BatchIter, BuilderOptions};
use strata_log::{Appended, Engine, EngineConfig, Error, Pending, TopicConfig};

const PARTITIONS: u32 = 4;
const BATCHES: u64 = 50;
const PER_BATCH: u64 = 10;

fn open(dir: &std::path::Path, shards: usize) -> (Engine, ShardTasks) {
    let mut c = EngineConfig::new(dir);
    c.shards = shards;
    c.pin_threads = false;
    let (engine, tasks) = Engine::open_hosted(c).unwrap();
    let topic = TopicConfig {
        partitions: PARTITIONS,
        segment_bytes: 1 << 20,
        ..TopicConfig::default()
    };
    engine.create_topic("t", topic).unwrap();
    (engine, tasks)
}

/// A batch of `PER_BATCH` records whose values are `partition:sequence`.
fn batch(partition: u32, first: u64) -> BytesMut {
    let mut b = BatchBuilder::new(BuilderOptions::default());
    for seq in first..first + PER_BATCH {
        let value = format!("{partition}:{seq}");
        b.push(seq as i64, None, Some(value.as_bytes()), &[])
            .unwrap();
    }
    b.finish().unwrap()
}

/// Runs `f` to completion on a throwaway runtime of the calling thread.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn tasks_on_the_owning_shard_produce_and_read_back_in_order_on_that_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tasks) = open(dir.path(), 2);
    let topic = engine.topic("t").unwrap();
    let mut joins = Vec::new();
    for p in 0..PARTITIONS {
        let shard = engine.shard_for(topic.id, p);
        let e = engine.clone();
        joins.push(
            tasks
                .spawn_on(shard, async move {
                    let thread = std::thread::current().name().map(str::to_owned);
                    // Eight appends in flight at a time, awaited in order.
                    let mut inflight: VecDeque<Pending<Appended>> = VecDeque::new();
                    let mut last = None;
                    for i in 0..BATCHES {
                        if inflight.len() == 8 {
                            let a = inflight.pop_front().unwrap().await.unwrap();
                            last = Some(a.last_offset);
                        }
                        inflight.push_back(e.produce("t", p, batch(p, i * PER_BATCH)).unwrap());
                    }
                    for pending in inflight {
                        last = Some(pending.await.unwrap().last_offset);
                    }
                    // Read everything back from the same thread.
                    let mut values = Vec::new();
                    let mut offset = 0;
                    let mut scratch = Vec::new();
                    while offset <= last.unwrap() {
                        let f = e.fetch("t", p, offset, 4096, None).unwrap().await.unwrap();
                        for b in BatchIter::new(&f.bytes) {
                            for r in b.unwrap().records(&mut scratch).unwrap() {
                                let r = r.unwrap();
                                if r.offset >= offset {
                                    assert_eq!(r.offset, offset, "contiguous offsets");
                                    values.push(
                                        String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
                                    );
                                    offset += 1;
                                }
                            }
                        }
                    }
                    (thread, values)
                })
                .unwrap(),
        );
    }
    for (p, join) in joins.into_iter().enumerate() {
        let (thread, values) = block_on(join).unwrap();
        let shard = engine.shard_for(topic.id, p as u32);
        assert_eq!(
            thread.as_deref(),
            Some(format!("strata-shard-{shard}").as_str())
        );
        let expected: Vec<String> = (0..BATCHES * PER_BATCH)
            .map(|s| format!("{p}:{s}"))
            .collect();
        assert_eq!(
            values, expected,
            "partition {p}: every record once, in order"
        );
    }
    engine.shutdown().unwrap();
}

#[test]
fn a_hosted_tailing_fetch_is_woken_by_a_produce_from_another_shard() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tasks) = open(dir.path(), 2);
    let topic = engine.topic("t").unwrap();
    let p = 0;
    let owner = engine.shard_for(topic.id, p);
    let other = (owner + 1) % tasks.shard_count();
    let e = engine.clone();
    let tail = tasks
        .spawn_on(owner, async move {
            let f = e
                .fetch("t", p, 0, 4096, Some(Duration::from_secs(30)))
                .unwrap()
                .await
                .unwrap();
            BatchIter::new(&f.bytes)
                .map(|b| b.unwrap().header().record_count)
                .sum::<u32>()
        })
        .unwrap();
    // Give the fetch time to park at the high watermark before anything is written.
    std::thread::sleep(Duration::from_millis(50));
    let e = engine.clone();
    let produce = tasks
        .spawn_on(other, async move {
            e.produce("t", p, batch(p, 0)).unwrap().await
        })
        .unwrap();
    let appended = block_on(produce).unwrap().unwrap();
    assert_eq!(
        (appended.base_offset, appended.last_offset),
        (0, PER_BATCH - 1)
    );
    assert_eq!(block_on(tail).unwrap(), PER_BATCH as u32);
    engine.shutdown().unwrap();
}

#[test]
fn bad_shard_indexes_and_own_runners_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tasks) = open(dir.path(), 2);
    assert_eq!(tasks.shard_count(), engine.shard_count());
    match tasks.spawn_on(2, async {}) {
        Err(Error::UnknownShard {
            shard: 2,
            shards: 2,
        }) => {}
        other => panic!("expected UnknownShard, got {:?}", other.map(|_| ())),
    }
    engine.shutdown().unwrap();

    let other = tempfile::tempdir().unwrap();
    let mut c = EngineConfig::new(other.path());
    c.shards = 1;
    c.runner = Some(std::sync::Arc::new(strata_log::engine::run_shard));
    assert!(matches!(
        Engine::open_hosted(c),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn tasks_spawned_after_shutdown_are_cancelled_and_requests_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tasks) = open(dir.path(), 1);
    engine.shutdown().unwrap();
    let join = tasks.spawn_on(0, async { 7 }).unwrap();
    let err = block_on(join).unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert!(matches!(
        engine.produce("t", 0, batch(0, 0)),
        Err(Error::ShuttingDown)
    ));
}

#[test]
fn the_last_handle_dropped_in_a_hosted_task_stops_the_engine_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tasks) = open(dir.path(), 2);
    let topic = engine.topic("t").unwrap();
    let shard = engine.shard_for(topic.id, 0);
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let e = engine.clone();
    tasks
        .spawn_on(shard, async move {
            let _ = go_rx.await;
            // The last handle: dropping it shuts the engine down from this shard thread.
            drop(e);
            let _ = done_tx.send(());
        })
        .unwrap();
    drop(engine);
    go_tx.send(()).unwrap();
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("dropping the engine on its own shard thread returned");
    // Every shard let go of its partitions: the directory opens again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let reopened = loop {
        match Engine::open(EngineConfig::new(dir.path())) {
            Ok(e) => break e,
            Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("reopen: {e}"),
        }
    };
    assert_eq!(reopened.topics().len(), 1);
    reopened.shutdown().unwrap();
}

#[test]
fn shutdown_from_a_hosted_task_returns_and_stops_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tasks) = open(dir.path(), 2);
    let e = engine.clone();
    let join = tasks.spawn_on(1, async move { e.shutdown() }).unwrap();
    block_on(join).unwrap().unwrap();
    assert!(matches!(
        engine.produce("t", 0, batch(0, 0)),
        Err(Error::ShuttingDown)
    ));
}
