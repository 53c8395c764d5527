//! Where the load goes: an embedded server started for the run, or a remote one; and
//! how each producer or consumer opens its own connection to it.

use super::error::Error;
use crate::config::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use strata_net::client::{Client, ClientConfig};
use strata_net::server::{Server, ServerConfig};

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Its address.
    pub addr: SocketAddr,
    /// The certificate to pin.
    pub ca_cert: PathBuf,
    /// The name in its certificate.
    pub server_name: String,
    /// Bearer token.
    pub token: Option<String>,
}

impl Endpoint {
    /// Opens a new connection (each producer and consumer has its own).
    pub async fn connect(&self) -> Result<Client, Error> {
        let mut config = ClientConfig::new(self.addr, self.ca_cert.clone());
        config.server_name = self.server_name.clone();
        if let Some(t) = &self.token {
            config = config.with_token(t.clone());
        }
        Client::connect(config)
            .await
            .map_err(|e| Error::client(format!("connecting to {}", self.addr), e))
    }
}

/// The server under load: embedded (owned by the run, with its data directory) or remote.
pub struct Target {
    /// How to reach it.
    pub endpoint: Endpoint,
    /// The embedded server, if any (stopped by [`Target::shutdown`]).
    server: Option<Server>,
    /// Where the embedded server keeps its data and the disk baseline writes.
    data_dir: PathBuf,
    /// The temporary directory behind `data_dir`, when none was given.
    _temp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint)
            .field("embedded", &self.server.is_some())
            .field("data_dir", &self.data_dir)
            .finish()
    }
}

impl Target {
    /// Starts the embedded server (no `--server`) or describes the remote one.
    pub async fn open(args: &Args) -> Result<Target, Error> {
        let (data_dir, temp) = match &args.data_dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("strata-loadgen-")
                    .tempdir()
                    .map_err(|e| Error::io("creating a temporary data directory", e))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        if let Some(addr) = args.server {
            let ca_cert = args.ca_cert.clone().ok_or_else(|| {
                Error::Config(crate::config::ConfigError(
                    "--server needs --ca-cert (the server's certificate)".into(),
                ))
            })?;
            return Ok(Target {
                endpoint: Endpoint {
                    addr,
                    ca_cert,
                    server_name: args.server_name.clone(),
                    token: args.token.clone(),
                },
                server: None,
                data_dir,
                _temp: temp,
            });
        }
        let config = ServerConfig {
            data_dir: data_dir.clone(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            shards: args.shards,
            pin_threads: false,
            ..ServerConfig::default()
        };
        let server = tokio::task::spawn_blocking(move || Server::start(config))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
            .map_err(|e| Error::Server(e.to_string()))?;
        let token = args
            .token
            .clone()
            .or_else(|| server.admin_token().map(|(_, t)| t.to_owned()));
        let endpoint = Endpoint {
            addr: server.local_addr(),
            ca_cert: args
                .ca_cert
                .clone()
                .unwrap_or_else(|| server.cert_path().to_path_buf()),
            server_name: args.server_name.clone(),
            token,
        };
        Ok(Target {
            endpoint,
            server: Some(server),
            data_dir,
            _temp: temp,
        })
    }

    /// Whether the server is embedded.
    pub fn is_embedded(&self) -> bool {
        self.server.is_some()
    }

    /// The data directory (also where the disk baseline writes).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the embedded server (nothing for a remote one); the data directory stays
    /// until the target is dropped.
    pub async fn shutdown(&mut self) -> Result<(), Error> {
        if let Some(server) = self.server.take() {
            tokio::task::spawn_blocking(move || server.shutdown())
                .await
                .map_err(|e| Error::Task(e.to_string()))?
                .map_err(|e| Error::Server(e.to_string()))?;
        }
        Ok(())
    }
}
