//! Producers and readers hosted on the shard threads (`Engine::open_hosted`), the
//! thread-per-core way the QUIC server runs its connections: each partition's producer
//! or reader is a task on the shard that owns the partition, so no record and no wake-up
//! crosses a thread.
//!
//! This is the engine's in-process path without the cross-thread hand-off of
//! [`Producers`](crate::engine_load::Producers): what it costs over the bare log is the
//! engine's own work (routing, inbox, turn, reply, task wake-up), and with one partition
//! per shard the shards share nothing, so the load spreads across cores.

use crate::engine_load::{WINDOW, create_topic, engine_config, record_count};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::mpsc;
use strata_log::engine::OffsetQuery;
use strata_log::engine::host::ShardTasks;
use strata_log::{Appended, Engine, Pending};

/// An engine whose shard threads host the `bench` topic's producers and readers.
pub struct HostedEngine {
    engine: Engine,
    tasks: ShardTasks,
}

impl HostedEngine {
    /// Opens the bench engine in `dir` with `shards` hosted shards.
    pub fn open(dir: &std::path::Path, shards: usize) -> Self {
        let (engine, tasks) = Engine::open_hosted(engine_config(dir, shards)).unwrap();
        create_topic(&engine);
        HostedEngine { engine, tasks }
    }

    /// Hands each partition's batches to a task on the shard that owns it, which keeps
    /// `WINDOW` batches in flight, and waits until all are durable.
    pub fn round(&self, inputs: [Vec<BytesMut>; 2]) {
        let topic = self.engine.topic("bench").expect("bench topic exists");
        let (done_tx, done_rx) = mpsc::channel();
        for (partition, batches) in inputs.into_iter().enumerate() {
            let partition = partition as u32;
            let shard = self.engine.shard_for(topic.id, partition);
            let engine = self.engine.clone();
            let done = done_tx.clone();
            let task = async move {
                let mut inflight: VecDeque<Pending<Appended>> = VecDeque::with_capacity(WINDOW);
                for batch in batches {
                    if inflight.len() == WINDOW {
                        let oldest = inflight.pop_front().expect("window is full");
                        oldest.await.expect("hosted produce failed");
                    }
                    let pending = engine.produce("bench", partition, batch);
                    inflight.push_back(pending.expect("hosted produce refused"));
                }
                for pending in inflight {
                    pending.await.expect("hosted produce failed");
                }
                // The round's receiver outlives every task it waits for.
                let _ = done.send(());
            };
            self.tasks.spawn_on(shard, task).expect("shard exists");
        }
        drop(done_tx);
        for _ in 0..2 {
            done_rx.recv().expect("hosted producer finished its round");
        }
    }

    /// Reads every record of both partitions `rounds` times, 1 MiB per fetch, each
    /// partition by a task on its shard; returns the records read.
    pub fn read_rounds(&self, rounds: u64) -> u64 {
        let topic = self.engine.topic("bench").expect("bench topic exists");
        let (tx, rx) = mpsc::channel();
        for partition in 0..2u32 {
            let shard = self.engine.shard_for(topic.id, partition);
            let engine = self.engine.clone();
            let tx = tx.clone();
            let task = async move {
                let latest = engine.offset_for("bench", partition, OffsetQuery::Latest);
                let end = latest.expect("partition exists").await.expect("offset");
                let end = end.unwrap_or(0);
                let mut read = 0;
                for _ in 0..rounds {
                    let mut offset = 0;
                    while offset < end {
                        let fetch = engine.fetch("bench", partition, offset, 1 << 20, None);
                        let fetch = fetch.expect("partition exists").await.expect("fetch");
                        offset += record_count(&fetch.bytes);
                    }
                    read += offset;
                }
                // The receiver outlives every task it waits for.
                let _ = tx.send(read);
            };
            self.tasks.spawn_on(shard, task).expect("shard exists");
        }
        drop(tx);
        rx.iter().sum()
    }

    /// Shuts the engine down.
    pub fn shutdown(self) {
        self.engine.shutdown().unwrap();
    }
}
