//! The server's configuration: a TOML file, overridable by command-line flags.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Everything `strata serve` can be configured with; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Root directory of the log, the generated certificate and the admin token.
    pub data_dir: PathBuf,
    /// UDP address the QUIC endpoints listen on.
    pub listen: SocketAddr,
    /// Shards (threads, one QUIC endpoint each); 0 means one per core.
    pub shards: usize,
    /// Pin shard threads to cores.
    pub pin_threads: bool,
    /// TCP address of the Prometheus metrics endpoint; none disables it.
    pub metrics_listen: Option<SocketAddr>,
    /// Certificates.
    pub tls: TlsConfig,
    /// Who may do what.
    pub auth: AuthConfig,
    /// Bounds on what clients may make the server hold.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from("strata-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            shards: 0,
            pin_threads: true,
            metrics_listen: None,
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            limits: Limits::default(),
        }
    }
}

/// Certificate settings; with no `cert`, a self-signed one is generated in the data dir.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Server private key (PEM).
    pub key: Option<PathBuf>,
    /// CA whose certificates clients must present (mutual TLS); none disables it.
    pub client_ca: Option<PathBuf>,
    /// Extra names for the generated certificate (besides localhost and the listen IP).
    pub names: Vec<String>,
}

/// Authentication settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Let clients without a token do everything. Off unless set.
    pub allow_anonymous: bool,
    /// Bearer tokens and what each may do.
    pub tokens: Vec<TokenConfig>,
}

/// One bearer token's rights.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The secret the client presents in HELLO.
    pub token: String,
    /// Granted permissions.
    pub permissions: Vec<Permission>,
    /// Topic name patterns (`*` and `?` wildcards) the permissions apply to.
    #[serde(default = "all_topics")]
    pub topics: Vec<String>,
}

fn all_topics() -> Vec<String> {
    vec!["*".to_owned()]
}

/// What a token may do on the topics it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Append records.
    Produce,
    /// Read records, use consumer groups.
    Consume,
    /// Create and delete topics.
    Admin,
}

/// Bounds on connections and what each may make the server hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most open connections (per server); more are closed with THROTTLED.
    pub max_connections: usize,
    /// Most concurrent bidirectional streams per connection.
    pub max_streams_per_connection: u32,
    /// Largest frame (header and body) accepted.
    pub max_frame_bytes: usize,
    /// Most bytes of requests and fetch budgets in flight per connection.
    pub max_inflight_bytes: usize,
    /// Largest batch pushed to a subscription in one DATA frame.
    pub max_push_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            max_streams_per_connection: 256,
            max_frame_bytes: crate::protocol::DEFAULT_MAX_FRAME,
            max_inflight_bytes: 64 << 20,
            max_push_bytes: 1 << 20,
        }
    }
}

/// A configuration problem, reported before the server starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation (with line and column).
        message: String,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ServerConfig {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Checks value ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        if l.max_frame_bytes < 4096 {
            return Err(ConfigError::Invalid(
                "limits.max_frame_bytes must be at least 4096".into(),
            ));
        }
        if l.max_inflight_bytes < l.max_frame_bytes {
            return Err(ConfigError::Invalid(
                "limits.max_inflight_bytes must be at least limits.max_frame_bytes".into(),
            ));
        }
        if l.max_inflight_bytes > u32::MAX as usize {
            return Err(ConfigError::Invalid(
                "limits.max_inflight_bytes must be at most 4 GiB".into(),
            ));
        }
        if l.max_connections == 0 || l.max_streams_per_connection == 0 || l.max_push_bytes == 0 {
            return Err(ConfigError::Invalid("limits must be at least 1".into()));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid(
                "tls.cert and tls.key go together".into(),
            ));
        }
        for t in &self.auth.tokens {
            if t.token.is_empty() {
                return Err(ConfigError::Invalid("an auth token is empty".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file_and_rejects_unknown_keys() {
        let text = r#"
            data_dir = "/var/lib/strata"
            listen = "0.0.0.0:7000"
            shards = 4
            metrics_listen = "127.0.0.1:9464"
            [tls]
            cert = "c.pem"
            key = "k.pem"
            [auth]
            allow_anonymous = false
            [[auth.tokens]]
            token = "s3cret"
            permissions = ["produce", "consume"]
            topics = ["orders-*"]
            [limits]
            max_connections = 10
        "#;
        let c: ServerConfig = toml::from_str(text).unwrap();
        assert_eq!(c.shards, 4);
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(
            c.auth.tokens[0].permissions,
            vec![Permission::Produce, Permission::Consume]
        );
        assert_eq!(c.limits.max_connections, 10);
        assert_eq!(c.limits.max_frame_bytes, crate::protocol::DEFAULT_MAX_FRAME);
        c.validate().unwrap();
        assert!(toml::from_str::<ServerConfig>("listne = \"x\"").is_err());
    }

    #[test]
    fn validation_catches_bad_limits() {
        let mut c = ServerConfig::default();
        c.limits.max_inflight_bytes = 10;
        assert!(c.validate().is_err());
        let mut c = ServerConfig::default();
        c.tls.cert = Some("c.pem".into());
        assert!(c.validate().is_err());
    }
}
