//! Client configuration and the TLS/QUIC setup built from it.

use super::error::ClientError;
use crate::protocol::{ALPN, DEFAULT_MAX_FRAME};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Exponential backoff between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Pause after the first failed attempt.
    pub initial: Duration,
    /// Longest pause between attempts (the pause doubles up to this).
    pub max: Duration,
    /// Stop trying after this long and report the last error.
    pub give_up: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(2),
            give_up: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The pause before retry number `attempt` (0-based): `initial * 2^attempt`, capped at `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// How to reach and authenticate to a strata server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The server's UDP address.
    pub server: SocketAddr,
    /// Name checked against the server certificate (default `localhost`).
    pub server_name: String,
    /// PEM file with the server's certificate: the only certificate trusted (pinning).
    pub ca_cert: PathBuf,
    /// Bearer token sent in HELLO (none sends an empty token).
    pub token: Option<String>,
    /// PEM certificate chain for mutual TLS (needs `client_key`).
    pub client_cert: Option<PathBuf>,
    /// PEM private key for mutual TLS (needs `client_cert`).
    pub client_key: Option<PathBuf>,
    /// Free-form name sent in HELLO, shown in the server's logs.
    pub client_name: String,
    /// Long-lived request streams per connection (requests are spread over them).
    pub lanes: usize,
    /// Requests queued per lane before callers wait (backpressure).
    pub lane_queue: usize,
    /// Largest frame accepted from the server.
    pub max_frame: usize,
    /// Longest a connection attempt (QUIC handshake and HELLO) may take.
    pub connect_timeout: Duration,
    /// Longest a request may wait for its answer.
    pub request_timeout: Duration,
    /// Close the connection after this long without any packet from the server.
    pub idle_timeout: Duration,
    /// Reconnect backoff.
    pub backoff: Backoff,
}

impl ClientConfig {
    /// A configuration for `server`, trusting only the certificate in `ca_cert`.
    pub fn new(server: SocketAddr, ca_cert: impl Into<PathBuf>) -> Self {
        ClientConfig {
            server,
            server_name: "localhost".to_owned(),
            ca_cert: ca_cert.into(),
            token: None,
            client_cert: None,
            client_key: None,
            client_name: concat!("strata-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            lanes: 4,
            lane_queue: 1024,
            max_frame: DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            backoff: Backoff::default(),
        }
    }

    /// The same configuration with a bearer token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Checks the values that do not need the file system.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |m: &str| Err(ClientError::Config(m.to_owned()));
        if self.lanes == 0 {
            return bad("lanes must be at least 1");
        }
        if self.lane_queue == 0 {
            return bad("lane_queue must be at least 1");
        }
        if self.max_frame < crate::protocol::HEADER_LEN + 64 {
            return bad("max_frame is too small");
        }
        if self.server_name.is_empty() {
            return bad("server_name must not be empty");
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return bad("client_cert and client_key go together");
        }
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return bad("timeouts must be positive");
        }
        if self
            .token
            .as_ref()
            .is_some_and(|t| t.len() > u16::MAX as usize)
            || self.client_name.len() > u16::MAX as usize
        {
            return bad("token and client_name must fit in 65535 bytes");
        }
        Ok(())
    }

    /// Builds the QUIC client configuration: TLS 1.3 (ring), ALPN `strata/1`, the pinned
    /// server certificate and the optional client certificate.
    pub fn quic_config(&self) -> Result<quinn::ClientConfig, ClientError> {
        self.validate()?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in load_certs(&self.ca_cert, "the server certificate (ca_cert)")? {
            roots
                .add(cert)
                .map_err(|e| tls_error("the server certificate (ca_cert)", &self.ca_cert, e))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let mut tls = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = load_certs(cert, "the client certificate")?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| tls_error("the client key", key, e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| ClientError::Tls(format!("client certificate: {e}")))?
            }
            _ => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(Arc::new(self.transport()));
        Ok(config)
    }

    fn transport(&self) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        // The server never opens streams towards a client. The receive windows are only
        // flow-control ceilings: what the server may send is already bounded by the
        // requests in flight and the subscriptions' credit, and a tight connection
        // window would let idle subscriptions starve the request lanes (heartbeats).
        t.max_concurrent_bidi_streams(0u32.into())
            .max_concurrent_uni_streams(0u32.into())
            .stream_receive_window(quinn::VarInt::from_u32(64 << 20))
            .receive_window(quinn::VarInt::from_u32(1 << 30))
            .send_window(64 << 20)
            .keep_alive_interval(Some(
                (self.idle_timeout / 3).max(Duration::from_millis(100)),
            ));
        if let Ok(idle) = quinn::IdleTimeout::try_from(self.idle_timeout) {
            t.max_idle_timeout(Some(idle));
        }
        crate::quic::tune(&mut t);
        t
    }
}

fn tls_error(what: &str, path: &Path, e: impl std::fmt::Display) -> ClientError {
    ClientError::Tls(format!("cannot load {what} from {}: {e}", path.display()))
}

/// Loads every certificate of a PEM file; an empty file is an error.
fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(what, path, e))?
        .collect();
    let certs = certs.map_err(|e| tls_error(what, path, e))?;
    if certs.is_empty() {
        return Err(tls_error(what, path, "no certificate in the file"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff::default();
        assert_eq!(b.delay(0), Duration::from_millis(50));
        assert_eq!(b.delay(1), Duration::from_millis(100));
        assert_eq!(b.delay(5), Duration::from_millis(1600));
        assert_eq!(b.delay(6), Duration::from_secs(2));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(2));
    }

    #[test]
    fn bad_pem_paths_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let config = ClientConfig::new("127.0.0.1:1".parse().unwrap(), &missing);
        let err = config.quic_config().unwrap_err();
        assert!(matches!(err, ClientError::Tls(_)), "{err:?}");
        assert!(err.to_string().contains("missing.pem"), "{err}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let config = ClientConfig::new("127.0.0.1:1".parse().unwrap(), &garbage);
        let err = config.quic_config().unwrap_err().to_string();
        assert!(
            err.contains("garbage.pem") && err.contains("no certificate"),
            "{err}"
        );
    }

    #[test]
    fn a_generated_certificate_builds_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let path = dir.path().join("cert.pem");
        std::fs::write(&path, cert.cert.pem()).unwrap();
        let config = ClientConfig::new("127.0.0.1:1".parse().unwrap(), &path);
        config.quic_config().unwrap();

        let mut mtls = config.clone();
        mtls.client_cert = Some(path.clone());
        assert!(matches!(mtls.validate(), Err(ClientError::Config(_))));
        let key = dir.path().join("key.pem");
        std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
        mtls.client_key = Some(key);
        mtls.quic_config().unwrap();

        let mut zero = config;
        zero.lanes = 0;
        assert!(matches!(zero.validate(), Err(ClientError::Config(_))));
    }
}
