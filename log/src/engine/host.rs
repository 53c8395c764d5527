//! Async hosting of the shard threads (feature `tokio-host`): each shard thread runs one
//! tokio current-thread runtime that drives the shard and runs the tasks spawned onto it.
//!
//! A task spawned on the shard that owns a partition produces to it and fetches from it
//! without crossing a thread: no hand-off, no wake-up of another core. This is the
//! thread-per-core way to use the engine in-process; the QUIC server hosts its
//! connections the same way, with [`drive`] under its own runner.

use super::{Engine, EngineConfig, ShardCore};
use crate::error::{Error, Result};
use std::future::Future;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Polling interval of a shard whose eventfd the runtime cannot watch.
const FALLBACK_POLL: Duration = Duration::from_millis(1);

/// How long a stopped shard's runtime waits for blocking jobs its tasks started.
const BLOCKING_JOBS_TIMEOUT: Duration = Duration::from_secs(2);

/// The shard's eventfd as something tokio's reactor can watch.
struct WakerFd(Arc<super::Waker>);

impl AsRawFd for WakerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.fd().as_raw_fd()
    }
}

/// Drives `core` from the current tokio runtime until the shard stops.
///
/// Turns the shard whenever it has work and sleeps on its eventfd (and its next timed
/// work, [`Turn::next_deadline`](super::Turn::next_deadline)) in between, so the runtime's
/// other tasks run meanwhile. Run it with `block_on` on the shard thread, from an
/// [`EngineConfig::runner`].
pub async fn drive(mut core: ShardCore) {
    let waker = core.waker().clone();
    // SAFETY: `WakerFd` owns an `Arc<Waker>`, and the waker owns the eventfd (`OwnedFd`)
    // and never replaces it, so the fd stays open and the same for as long as the
    // `AsyncFd` (which owns the `WakerFd`) lives. Exercised by every hosted-engine test
    // and every server test.
    let registered =
        unsafe { AsyncFd::register_with_interest(WakerFd(waker.clone()), Interest::READABLE) };
    let fd = match registered {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!(shard = core.index(), error = %e, "cannot watch the shard eventfd; polling every millisecond");
            None
        }
    };
    loop {
        let turn = core.turn(Instant::now());
        if turn.stopped {
            return;
        }
        if turn.progressed {
            tokio::task::yield_now().await;
            continue;
        }
        waker.prepare_sleep();
        if core.has_ready_work() {
            waker.cancel_sleep();
            continue;
        }
        let deadline = turn.next_deadline.map(tokio::time::Instant::from_std);
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        match &fd {
            Some(fd) => {
                tokio::select! {
                    ready = fd.readable() => if let Ok(mut guard) = ready {
                        guard.clear_ready();
                    },
                    _ = timer => {}
                }
            }
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(FALLBACK_POLL) => {}
                    _ = timer => {}
                }
            }
        }
        waker.woke();
    }
}

/// Handles to the shard threads' runtimes, for running work on a chosen shard.
///
/// Tasks run on the shard thread between the shard's turns, so they must not block:
/// `.await` a [`Pending`](super::Pending), never [`wait`](super::Pending::wait) on it.
/// A task may hold an [`Engine`] and may be the one to drop its last handle or call
/// [`Engine::shutdown`]: its own shard then stops once the task yields. Once the engine
/// has shut down, the runtimes are gone and newly spawned tasks are cancelled at once
/// (their `JoinHandle` reports it); blocking jobs a task started get two seconds.
#[derive(Debug, Clone)]
pub struct ShardTasks {
    handles: Arc<[Handle]>,
}

impl ShardTasks {
    /// Number of shards (the same as [`Engine::shard_count`]).
    pub fn shard_count(&self) -> usize {
        self.handles.len()
    }

    /// Spawns `task` onto shard `shard`'s thread.
    pub fn spawn_on<F>(&self, shard: usize, task: F) -> Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = self.handles.get(shard).ok_or(Error::UnknownShard {
            shard,
            shards: self.handles.len(),
        })?;
        Ok(handle.spawn(task))
    }
}

impl Engine {
    /// Opens the engine with a tokio current-thread runtime on every shard thread, and
    /// returns the handles for spawning work onto the shards.
    ///
    /// `config.runner` must be unset: this installs its own.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use strata_log::format::{BatchBuilder, BuilderOptions};
    /// use strata_log::{Engine, EngineConfig, TopicConfig};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let (engine, tasks) = Engine::open_hosted(EngineConfig::new(dir.path()))?;
    /// let config = TopicConfig { segment_bytes: 1 << 20, ..TopicConfig::default() };
    /// let topic = engine.create_topic("orders", config)?;
    /// // Produce from the shard that owns partition 0: no thread hand-off.
    /// let shard = engine.shard_for(topic.id, 0);
    /// let e = engine.clone();
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// tasks.spawn_on(shard, async move {
    ///     let mut b = BatchBuilder::new(BuilderOptions::default());
    ///     b.push(0, None, Some(b"order #1"), &[]).unwrap();
    ///     let appended = e.produce("orders", 0, b.finish().unwrap()).unwrap().await;
    ///     let _ = tx.send(appended);
    /// })?;
    /// assert_eq!(rx.recv()??.base_offset, 0);
    /// engine.shutdown()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn open_hosted(mut config: EngineConfig) -> Result<(Engine, ShardTasks)> {
        if config.runner.is_some() {
            return Err(Error::InvalidConfig(
                "open_hosted installs its own shard runner; leave `runner` unset".into(),
            ));
        }
        let (tx, rx) = mpsc::channel::<(usize, std::result::Result<Handle, String>)>();
        let tx = Mutex::new(tx);
        config.runner = Some(Arc::new(move |core: ShardCore| {
            let index = core.index();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("strata-shard-{index}-blocking"))
                .build();
            let report = |handle| {
                if let Ok(tx) = tx.lock() {
                    // The receiver is gone only if open_hosted already failed.
                    let _ = tx.send((index, handle));
                }
            };
            match runtime {
                Ok(runtime) => {
                    report(Ok(runtime.handle().clone()));
                    runtime.block_on(drive(core));
                    runtime.shutdown_timeout(BLOCKING_JOBS_TIMEOUT);
                }
                Err(e) => {
                    tracing::error!(shard = index, error = %e, "cannot start the shard's runtime; it hosts no tasks");
                    report(Err(e.to_string()));
                    super::run_shard(core);
                }
            }
        }));
        let engine = Engine::open(config)?;
        let mut handles: Vec<Option<Handle>> = vec![None; engine.shard_count()];
        for _ in 0..handles.len() {
            match rx.recv() {
                Ok((index, Ok(handle))) => handles[index] = Some(handle),
                Ok((index, Err(e))) => {
                    let _ = engine.shutdown();
                    return Err(Error::InvalidConfig(format!(
                        "shard {index} could not start its tokio runtime: {e}"
                    )));
                }
                Err(_) => {
                    let _ = engine.shutdown();
                    return Err(Error::ShuttingDown);
                }
            }
        }
        let handles: Arc<[Handle]> = handles.into_iter().flatten().collect();
        Ok((engine, ShardTasks { handles }))
    }
}
