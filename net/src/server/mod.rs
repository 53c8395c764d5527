//! The strata QUIC server: the engine's shards each host a tokio current-thread runtime
//! with its own QUIC endpoint on a shared `SO_REUSEPORT` UDP port.
//!
//! ```text
//!   client ──UDP──▶ kernel (SO_REUSEPORT hash of the 4-tuple)
//!                     │            │
//!               shard 0 thread   shard 1 thread        (pinned, one per core)
//!               ┌────────────┐   ┌────────────┐
//!               │ tokio rt   │   │ tokio rt   │   connections stay on the shard
//!               │ quinn ep.  │   │ quinn ep.  │   whose socket accepted them
//!               │ ShardCore  │   │ ShardCore  │   requests for other shards' partitions
//!               └─────┬──────┘   └─────┬──────┘   go through the engine's lock-free inboxes
//!                     └──── Engine ────┘
//! ```

pub mod auth;
pub mod config;
mod connection;
pub mod handler;
mod host;
pub mod metrics;
mod session;
mod stream;
mod subscription;
pub mod tls;

pub use config::{AuthConfig, Limits, Permission, ServerConfig, TlsConfig, TokenConfig};
pub use connection::SERVER_NAME;

use session::Shared;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use strata_log::{Engine, EngineConfig};

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The engine failed to open or to shut down.
    #[error("engine: {0}")]
    Engine(#[from] strata_log::Error),
    /// A socket or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let context = context.into();
    move |source| ServerError::Io { context, source }
}

/// A running server. Dropping it shuts it down.
pub struct Server {
    shared: Arc<Shared>,
    engine: Engine,
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    cert_path: PathBuf,
    admin_token: Option<(PathBuf, String)>,
    drained: Mutex<mpsc::Receiver<usize>>,
    shards: usize,
    stopped: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("shards", &self.shards)
            .finish()
    }
}

/// Binds a UDP socket that other sockets of this process can share (`SO_REUSEPORT`).
fn bind_shared_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Larger kernel buffers absorb bursts at high rates; the kernel caps them silently.
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(8 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Attempts at finding a free port when `listen` asks for any (port 0).
const PORT_ATTEMPTS: usize = 16;

/// Binds one socket per shard to the same address.
///
/// For port 0 the port is first reserved with an exclusive socket: the kernel may hand
/// a reuse-port socket an ephemeral port that another reuse-port group of the same user
/// already holds, and the two servers would then receive each other's packets.
fn bind_shard_sockets(
    listen: SocketAddr,
    shards: usize,
) -> std::io::Result<Vec<std::net::UdpSocket>> {
    let bind_all = |addr: SocketAddr| -> std::io::Result<Vec<std::net::UdpSocket>> {
        (0..shards).map(|_| bind_shared_udp(addr)).collect()
    };
    if listen.port() != 0 {
        return bind_all(listen);
    }
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        let reserved = std::net::UdpSocket::bind(listen)?.local_addr()?;
        // The exclusive socket is closed here; the port is free unless someone takes
        // it in between, in which case the bind below fails and another port is tried.
        match bind_all(reserved) {
            Ok(sockets) => return Ok(sockets),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => last_error = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::from(std::io::ErrorKind::AddrInUse)))
}

fn transport(limits: &Limits) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(limits.max_streams_per_connection.into())
        .max_concurrent_uni_streams(0u32.into())
        .stream_receive_window(quinn::VarInt::from_u32(16 << 20))
        .receive_window(quinn::VarInt::from_u32(64 << 20))
        .send_window(64 << 20)
        .keep_alive_interval(Some(Duration::from_secs(5)));
    if let Ok(idle) = quinn::IdleTimeout::try_from(Duration::from_secs(30)) {
        t.max_idle_timeout(Some(idle));
    }
    crate::quic::tune(&mut t);
    t
}

impl Server {
    /// Opens the engine in `config.data_dir` and starts serving on `config.listen`.
    pub fn start(config: ServerConfig) -> Result<Server, ServerError> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(io_err(format!("creating {}", config.data_dir.display())))?;
        let tls = tls::server_tls(&config)?;
        let mut auth = auth::Auth::new(&config.auth);
        let admin_token = if config.auth.tokens.is_empty() && !config.auth.allow_anonymous {
            let (path, token) = auth::ensure_admin_token(&config.data_dir)
                .map_err(io_err("creating the admin token"))?;
            auth.add_admin(token.clone());
            Some((path, token))
        } else {
            None
        };
        let quic_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls.config.clone())
            .map_err(|e| tls::TlsError::Config(e.to_string()))?;
        let mut quinn_config = quinn::ServerConfig::with_crypto(Arc::new(quic_crypto));
        quinn_config.transport_config(Arc::new(transport(&config.limits)));
        // A migrated connection would hash to another shard's socket, which does not know it.
        quinn_config.migration(false);

        let shards = if config.shards == 0 {
            core_count()
        } else {
            config.shards
        };
        let sockets = bind_shard_sockets(config.listen, shards)
            .map_err(io_err(format!("binding UDP {}", config.listen)))?;
        let local_addr = sockets[0]
            .local_addr()
            .map_err(io_err("reading the bound address"))?;
        let sockets = sockets.into_iter().map(Some).collect();
        let (metrics_listener, metrics_addr) = match config.metrics_listen {
            Some(addr) => {
                let l = metrics::bind(addr).map_err(io_err(format!("binding metrics {addr}")))?;
                let a = l
                    .local_addr()
                    .map_err(io_err("reading the metrics address"))?;
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        let (drained_tx, drained_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            limits: config.limits.clone(),
            auth,
            quinn: quinn_config,
            sockets: Mutex::new(sockets),
            engine: tokio::sync::watch::Sender::new(None),
            stop: tokio::sync::watch::Sender::new(false),
            connections: AtomicUsize::new(0),
            drained: Mutex::new(drained_tx),
            metrics_listener: Mutex::new(metrics_listener),
            metrics: Arc::new(metrics::Metrics::new()),
        });
        let mut engine_config = EngineConfig::new(&config.data_dir);
        engine_config.shards = shards;
        engine_config.pin_threads = config.pin_threads;
        let host_shared = shared.clone();
        engine_config.runner = Some(Arc::new(move |core| {
            host::run_shard(host_shared.clone(), core)
        }));
        let engine = match Engine::open(engine_config) {
            Ok(e) => e,
            Err(e) => {
                shared.stop.send_replace(true);
                return Err(e.into());
            }
        };
        shared.engine.send_replace(Some(engine.clone()));
        tracing::info!(
            addr = %local_addr,
            shards,
            cert = %tls.cert_path.display(),
            generated_cert = tls.generated,
            "strata server listening"
        );
        Ok(Server {
            shared,
            engine,
            local_addr,
            metrics_addr,
            cert_path: tls.cert_path,
            admin_token,
            drained: Mutex::new(drained_rx),
            shards,
            stopped: false,
        })
    }

    /// The UDP address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The TCP address of the metrics endpoint, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The server certificate clients should pin.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The generated admin token's file and value (when no tokens are configured).
    pub fn admin_token(&self) -> Option<(&Path, &str)> {
        self.admin_token
            .as_ref()
            .map(|(p, t)| (p.as_path(), t.as_str()))
    }

    /// The engine behind the server (for in-process consumers such as the CEP matcher).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.shared.metrics
    }

    /// Stops accepting, lets in-flight requests finish and their answers go out, closes
    /// connections, then flushes and closes the engine. Blocks; call it off async threads.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ServerError> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        self.shared.stop.send_replace(true);
        let deadline = Instant::now() + connection::DRAIN_TIMEOUT + Duration::from_secs(5);
        if let Ok(rx) = self.drained.lock() {
            for _ in 0..self.shards {
                let left = deadline.saturating_duration_since(Instant::now());
                if rx.recv_timeout(left).is_err() {
                    tracing::warn!("a shard did not drain its connections in time");
                    break;
                }
            }
        }
        let result = self.engine.shutdown();
        self.shared.engine.send_replace(None);
        result.map_err(ServerError::from)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "server shutdown on drop failed");
        }
    }
}

fn core_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
