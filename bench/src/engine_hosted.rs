//! Producers hosted on the shard threads, the thread-per-core way the QUIC server runs its
//! connections: each shard's loop interleaves its turns with producing the batches handed
//! to it for the partitions it owns, so no record and no wake-up crosses a thread.
//!
//! This is the engine's in-process path without the cross-thread hand-off of
//! [`Producers`](crate::engine_load::Producers): what it costs over the bare log is the
//! engine's own work (routing, inbox, turn, reply), and with one partition per shard the
//! shards share nothing, so the load spreads across cores.

use crate::engine_load::{WINDOW, engine_with};
use bytes::BytesMut;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use strata_log::engine::{ShardCore, Waker};
use strata_log::{Appended, Engine, Pending};

/// One partition's batches for one round, to be produced on the shard that owns it.
struct Job {
    engine: Engine,
    partition: u32,
    batches: std::vec::IntoIter<BytesMut>,
    inflight: VecDeque<Pending<Appended>>,
    done: Sender<()>,
}

impl Job {
    /// Reaps answered batches (in order) and refills the window; true if anything moved.
    fn step(&mut self, cx: &mut Context<'_>) -> bool {
        let mut moved = false;
        while let Some(front) = self.inflight.front_mut() {
            match Pin::new(front).poll(cx) {
                Poll::Ready(result) => {
                    result.expect("hosted produce failed");
                    self.inflight.pop_front();
                    moved = true;
                }
                Poll::Pending => break,
            }
        }
        while self.inflight.len() < WINDOW {
            let Some(batch) = self.batches.next() else {
                break;
            };
            let pending = self
                .engine
                .produce("bench", self.partition, batch)
                .expect("hosted produce refused");
            self.inflight.push_back(pending);
            moved = true;
        }
        moved
    }

    fn finished(&self) -> bool {
        self.inflight.is_empty() && self.batches.len() == 0
    }
}

/// Runs `core` on its shard thread, producing every job that arrives on `jobs`.
fn host(mut core: ShardCore, jobs: Receiver<Job>) {
    let waker = core.waker().clone();
    // The shard answers on this same thread, so nothing needs waking: poll with a no-op.
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut active: Vec<Job> = Vec::new();
    let take = |active: &mut Vec<Job>| loop {
        match jobs.try_recv() {
            Ok(job) => active.push(job),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
        }
    };
    loop {
        take(&mut active);
        let mut moved = false;
        for job in &mut active {
            moved |= job.step(&mut cx);
        }
        let turn = core.turn(Instant::now());
        if turn.stopped {
            return;
        }
        active.retain(|job| {
            if job.finished() {
                // The round's receiver outlives every job it waits for.
                let _ = job.done.send(());
                false
            } else {
                true
            }
        });
        if moved || turn.progressed {
            continue;
        }
        waker.prepare_sleep();
        let before = active.len();
        take(&mut active);
        if active.len() != before || core.has_ready_work() {
            waker.cancel_sleep();
            continue;
        }
        let timeout = turn
            .next_deadline
            .map(|d| d.saturating_duration_since(Instant::now()));
        waker.sleep(timeout);
    }
}

/// An engine whose shard threads host the `bench` topic's producers.
pub struct HostedProducers {
    engine: Engine,
    jobs: Vec<Sender<Job>>,
    wakers: Vec<Arc<Waker>>,
}

impl HostedProducers {
    /// Opens the bench engine in `dir` with `shards` shards, each hosting producers.
    pub fn open(dir: &std::path::Path, shards: usize) -> Self {
        let (job_txs, job_rxs): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::channel()).unzip();
        let receivers: Arc<Vec<Mutex<Option<Receiver<Job>>>>> =
            Arc::new(job_rxs.into_iter().map(|r| Mutex::new(Some(r))).collect());
        let (waker_tx, waker_rx) = mpsc::channel::<(usize, Arc<Waker>)>();
        let waker_tx = Mutex::new(waker_tx);
        let runner = Arc::new(move |core: ShardCore| {
            let index = core.index();
            let jobs = receivers[index]
                .lock()
                .unwrap()
                .take()
                .expect("one runner per shard");
            let _ = waker_tx.lock().unwrap().send((index, core.waker().clone()));
            host(core, jobs);
        });
        let engine = engine_with(dir, shards, Some(runner));
        let mut wakers: Vec<Option<Arc<Waker>>> = vec![None; shards];
        for _ in 0..shards {
            let (index, waker) = waker_rx.recv().expect("every shard reports its waker");
            wakers[index] = Some(waker);
        }
        HostedProducers {
            engine,
            jobs: job_txs,
            wakers: wakers.into_iter().map(|w| w.unwrap()).collect(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Hands each partition's batches to the shard that owns it and waits until all are
    /// durable.
    pub fn round(&self, inputs: [Vec<BytesMut>; 2]) {
        let topic = self.engine.topic("bench").expect("bench topic exists");
        let (done_tx, done_rx) = mpsc::channel();
        for (partition, batches) in inputs.into_iter().enumerate() {
            let partition = partition as u32;
            let shard = self.engine.shard_for(topic.id, partition);
            let job = Job {
                engine: self.engine.clone(),
                partition,
                batches: batches.into_iter(),
                inflight: VecDeque::with_capacity(WINDOW),
                done: done_tx.clone(),
            };
            self.jobs[shard].send(job).expect("shard host alive");
            self.wakers[shard].wake();
        }
        drop(done_tx);
        for _ in 0..2 {
            done_rx.recv().expect("hosted producer finished its round");
        }
    }

    /// Shuts the engine down.
    pub fn shutdown(self) {
        self.engine.shutdown().unwrap();
    }
}
