//! State shared by a server's shards, and by the streams of one connection.

use super::auth::{Auth, Grant};
use super::config::Limits;
use crate::protocol::{ErrorCode, ProtocolError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use strata_log::Engine;
use tokio::sync::{Semaphore, watch};

/// What every shard's endpoint needs; built once by `Server::start`.
pub struct Shared {
    /// Connection and request bounds.
    pub limits: Limits,
    /// Token table.
    pub auth: Auth,
    /// QUIC server configuration (TLS, transport limits).
    pub quinn: quinn::ServerConfig,
    /// The UDP socket of each shard, taken by that shard's endpoint when it starts.
    pub sockets: Mutex<Vec<Option<std::net::UdpSocket>>>,
    /// The engine, published once it has opened.
    pub engine: watch::Sender<Option<Engine>>,
    /// Becomes true when the server starts shutting down.
    pub stop: watch::Sender<bool>,
    /// Open connections across shards.
    pub connections: AtomicUsize,
    /// Each shard's endpoint reports its index here once drained.
    pub drained: Mutex<std::sync::mpsc::Sender<usize>>,
    /// The metrics listener, taken by shard 0 once the engine is up.
    pub metrics_listener: Mutex<Option<std::net::TcpListener>>,
    /// Metrics registry.
    pub metrics: Arc<super::metrics::Metrics>,
}

impl Shared {
    /// A receiver that resolves when shutdown starts.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

/// Counts a connection while it lives.
pub struct ConnectionSlot(Arc<Shared>);

impl ConnectionSlot {
    /// Takes a slot, or returns None when the server is at its connection limit.
    pub fn take(shared: &Arc<Shared>) -> Option<ConnectionSlot> {
        let before = shared.connections.fetch_add(1, Ordering::SeqCst);
        if before >= shared.limits.max_connections {
            shared.connections.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        shared.metrics.connections.set(before as i64 + 1);
        Some(ConnectionSlot(shared.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let now = self.0.connections.fetch_sub(1, Ordering::SeqCst) - 1;
        self.0.metrics.connections.set(now as i64);
    }
}

/// One authenticated connection.
pub struct Session {
    /// Server-wide state.
    pub shared: Arc<Shared>,
    /// The engine.
    pub engine: Engine,
    /// What this connection may do.
    pub grant: Arc<Grant>,
    /// The QUIC connection (to close it on a protocol violation).
    pub conn: quinn::Connection,
    /// Bytes of requests in flight (bounded by `limits.max_inflight_bytes`).
    pub inflight: Arc<Semaphore>,
}

impl Session {
    /// Closes the connection because the peer broke the protocol.
    pub fn violation(&self, e: &ProtocolError) {
        tracing::info!(remote = %self.conn.remote_address(), error = %e, "closing connection: protocol violation");
        close(&self.conn, e.code(), &e.to_string());
    }
}

/// Closes `conn` with `code` as the application error code and `reason`.
pub fn close(conn: &quinn::Connection, code: ErrorCode, reason: &str) {
    let reason = &reason.as_bytes()[..reason.len().min(512)];
    conn.close(quinn::VarInt::from(code as u16 as u32), reason);
}
