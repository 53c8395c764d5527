//! A shard thread's async host: one tokio current-thread runtime that drives the
//! engine shard (woken through its eventfd) and serves that shard's QUIC endpoint.

use super::connection;
use super::session::Shared;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_log::engine::{ShardCore, Waker};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::task::JoinSet;

/// Longest an endpoint waits for its connections to close during shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs on shard thread `core.index()` for the life of the engine.
pub fn run_shard(shared: Arc<Shared>, core: ShardCore) {
    let index = core.index();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name(format!("strata-shard-{index}-blocking"))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(shard = index, error = %e, "cannot start the shard's runtime: serving no connections on it");
            if let Ok(tx) = shared.drained.lock() {
                let _ = tx.send(index);
            }
            strata_log::engine::run_shard(core);
            return;
        }
    };
    runtime.block_on(async move {
        tokio::spawn(serve_endpoint(shared, index));
        drive(core).await;
    });
    // Dropping the runtime cancels whatever connection tasks are left.
}

/// The shard's eventfd as something tokio's reactor can watch.
struct WakerFd(Arc<Waker>);

impl AsRawFd for WakerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.fd().as_raw_fd()
    }
}

/// Turns the shard whenever it has work, sleeping on its eventfd (and the earliest
/// parked-fetch deadline) in between, so the runtime's other tasks run meanwhile.
async fn drive(mut core: ShardCore) {
    let waker = core.waker().clone();
    // SAFETY: `WakerFd` owns an `Arc<Waker>`, and the waker owns the eventfd (`OwnedFd`)
    // and never replaces it, so the fd stays open and the same for as long as the
    // `AsyncFd` (which owns the `WakerFd`) lives. Exercised by every server test.
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
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                    _ = timer => {}
                }
            }
        }
        waker.woke();
    }
}

async fn serve_endpoint(shared: Arc<Shared>, index: usize) {
    let report_drained = |shared: &Shared| {
        if let Ok(tx) = shared.drained.lock() {
            let _ = tx.send(index);
        }
    };
    let socket = shared
        .sockets
        .lock()
        .ok()
        .and_then(|mut s| s.get_mut(index).and_then(Option::take));
    let Some(socket) = socket else {
        tracing::error!(shard = index, "no socket for this shard");
        report_drained(&shared);
        return;
    };
    let endpoint = match quinn::Endpoint::new(
        crate::quic::endpoint_config(),
        Some(shared.quinn.clone()),
        socket,
        Arc::new(quinn::TokioRuntime),
    ) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(shard = index, error = %e, "cannot start the QUIC endpoint");
            report_drained(&shared);
            return;
        }
    };
    let mut ready = shared.engine.subscribe();
    let engine = match ready.wait_for(Option::is_some).await {
        Ok(e) => e.clone().expect("waited for Some"),
        Err(_) => {
            report_drained(&shared);
            return;
        }
    };
    if index == 0 {
        let listener = shared
            .metrics_listener
            .lock()
            .ok()
            .and_then(|mut l| l.take());
        if let Some(listener) = listener {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => {
                    tokio::spawn(super::metrics::serve(
                        l,
                        shared.metrics.clone(),
                        engine.clone(),
                    ));
                }
                Err(e) => tracing::error!(error = %e, "cannot serve metrics"),
            }
        }
    }
    let mut stop = shared.stop_signal();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    connections.spawn(connection::run(shared.clone(), engine.clone(), incoming));
                }
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    endpoint.set_server_config(None);
    let drained = async { while connections.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(connection::DRAIN_TIMEOUT, drained).await;
    connections.abort_all();
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, endpoint.wait_idle()).await;
    drop(engine);
    report_drained(&shared);
}
