//! A shard thread's async host: one tokio current-thread runtime that drives the
//! engine shard (woken through its eventfd) and serves that shard's QUIC endpoint.

use super::connection;
use super::session::Shared;
use std::sync::Arc;
use std::time::Duration;
use strata_log::engine::ShardCore;
use strata_log::engine::host::drive;
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
