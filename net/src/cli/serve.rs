//! `strata serve`: runs the server until SIGINT or SIGTERM.

use crate::server::{Server, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Options of `strata serve`; flags override the config file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML config file (see docs/PROTOCOL.md and README.md for the keys).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (log, generated certificate, admin token).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// UDP address to listen on.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Number of shards (threads); 0 = one per core.
    #[arg(long)]
    pub shards: Option<usize>,
    /// TCP address of the Prometheus metrics endpoint.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Server certificate chain (PEM); without it a self-signed one is generated.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS).
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// Let clients without a token do everything.
    #[arg(long)]
    pub allow_anonymous: bool,
}

impl ServeArgs {
    /// The configuration: the file (or defaults) with the flags applied on top.
    pub fn config(&self) -> Result<ServerConfig, String> {
        let mut c = match &self.config {
            Some(path) => ServerConfig::from_file(path).map_err(|e| e.to_string())?,
            None => ServerConfig::default(),
        };
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        if let Some(l) = self.listen {
            c.listen = l;
        }
        if let Some(s) = self.shards {
            c.shards = s;
        }
        if let Some(m) = self.metrics_listen {
            c.metrics_listen = Some(m);
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            c.tls.cert = Some(cert.clone());
            c.tls.key = Some(key.clone());
        }
        if let Some(ca) = &self.client_ca {
            c.tls.client_ca = Some(ca.clone());
        }
        if self.allow_anonymous {
            c.auth.allow_anonymous = true;
        }
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

/// Starts the server, prints where it listens, and serves until a signal arrives.
pub fn run(args: &ServeArgs) -> Result<(), String> {
    let config = args.config()?;
    let server = Server::start(config).map_err(|e| e.to_string())?;
    println!("strata listening on {} (QUIC)", server.local_addr());
    println!(
        "certificate for clients to pin: {}",
        server.cert_path().display()
    );
    if let Some((path, _)) = server.admin_token() {
        println!("admin token: {}", path.display());
    }
    if let Some(m) = server.metrics_addr() {
        println!("metrics: http://{m}/metrics");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the signal handler: {e}"))?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        Ok::<(), String>(())
    })?;
    println!("shutting down: finishing in-flight requests");
    server.shutdown().map_err(|e| e.to_string())?;
    println!("stopped");
    Ok(())
}
