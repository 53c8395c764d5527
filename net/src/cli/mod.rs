//! The `strata` command line: argument parsing and one module per command group.

mod admin;
mod consume;
mod produce;
pub mod serve;

use crate::client::{Client, ClientConfig};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// strata: a zero-copy event log served over QUIC.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every `strata` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server until SIGINT or SIGTERM.
    Serve(serve::ServeArgs),
    /// Create, delete, list and describe topics.
    Topic {
        /// Where and how to connect.
        #[command(flatten)]
        conn: ConnectArgs,
        /// The topic command.
        #[command(subcommand)]
        command: admin::TopicCommand,
    },
    /// Append lines from stdin or a file as records.
    Produce(produce::ProduceArgs),
    /// Print records to stdout.
    Consume(consume::ConsumeArgs),
    /// List and describe consumer groups.
    Group {
        /// Where and how to connect.
        #[command(flatten)]
        conn: ConnectArgs,
        /// The group command.
        #[command(subcommand)]
        command: admin::GroupCommand,
    },
    /// Run the load generator (the `strata-loadgen` binary next to this one).
    Bench {
        /// Arguments passed to the load generator (see `strata bench -- --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// How to reach a server.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Server address.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:7070",
        env = "STRATA_SERVER"
    )]
    pub server: SocketAddr,
    /// The server's certificate to pin (default: DATA_DIR/tls/cert.pem).
    #[arg(long, global = true, env = "STRATA_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Name in the server's certificate.
    #[arg(long, global = true, default_value = "localhost")]
    pub server_name: String,
    /// Bearer token (default: the contents of --token-file).
    #[arg(long, global = true, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the token (default: DATA_DIR/admin.token when it exists).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Data dir of a local server, for the default certificate and token paths.
    #[arg(long, global = true, default_value = "strata-data")]
    pub data_dir: PathBuf,
    /// Client certificate for mutual TLS (PEM).
    #[arg(long, global = true, requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Client key for mutual TLS (PEM).
    #[arg(long, global = true, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl ConnectArgs {
    /// The client configuration these options describe.
    pub fn client_config(&self) -> Result<ClientConfig, String> {
        let ca_cert = self
            .ca_cert
            .clone()
            .unwrap_or_else(|| self.data_dir.join("tls").join("cert.pem"));
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(read_token(f)?),
            (None, None) => {
                let default = self.data_dir.join(crate::server::auth::ADMIN_TOKEN_FILE);
                if default.exists() {
                    Some(read_token(&default)?)
                } else {
                    None
                }
            }
        };
        let mut config = ClientConfig::new(self.server, ca_cert);
        config.server_name = self.server_name.clone();
        config.token = token;
        config.client_cert = self.client_cert.clone();
        config.client_key = self.client_key.clone();
        Ok(config)
    }

    /// Connects (in `rt`).
    pub async fn connect(&self) -> Result<Client, String> {
        let config = self.client_config()?;
        Client::connect(config)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.server))
    }
}

fn read_token(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|t| t.trim().to_owned())
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Runs a parsed command; the error is one line for stderr.
pub fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(args) => serve::run(&args),
        Command::Topic { conn, command } => runtime()?.block_on(admin::topic(&conn, command)),
        Command::Group { conn, command } => runtime()?.block_on(admin::group(&conn, command)),
        Command::Produce(args) => runtime()?.block_on(produce::run(args)),
        Command::Consume(args) => runtime()?.block_on(consume::run(args)),
        Command::Bench { args } => bench(&args),
    }
}

/// Runs `strata-loadgen` from the directory of this executable with `args`.
fn bench(args: &[String]) -> Result<(), String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot locate strata: {e}"))?;
    let loadgen = me.with_file_name("strata-loadgen");
    if !loadgen.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p strata-loadgen` \
             (or run `cargo run --release -p strata-loadgen`)",
            loadgen.display()
        ));
    }
    let status = std::process::Command::new(&loadgen)
        .args(args)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", loadgen.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("load generator failed ({status})"))
    }
}
