//! Server TLS: configured certificates, or a self-signed one generated into the data dir.

use super::config::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Folder under the data dir holding the generated certificate and key.
pub const TLS_DIR: &str = "tls";
/// Generated certificate file name (what clients pin).
pub const CERT_FILE: &str = "cert.pem";
/// Generated key file name.
pub const KEY_FILE: &str = "key.pem";

/// A TLS setup problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot load {what} from {path}: {message}")]
    Load {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Certificate generation or the rustls configuration failed.
    #[error("TLS configuration failed: {0}")]
    Config(String),
}

/// The server's TLS configuration and the certificate clients should pin.
#[derive(Debug)]
pub struct ServerTls {
    /// rustls configuration (TLS 1.3 only, ALPN `strata/1`).
    pub config: Arc<rustls::ServerConfig>,
    /// The server's certificate file.
    pub cert_path: PathBuf,
    /// Whether the certificate was generated on this start.
    pub generated: bool,
}

/// The crypto provider used everywhere (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads every certificate of a PEM file.
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| load_error(what, path, e))?
        .collect();
    let certs = certs.map_err(|e| load_error(what, path, e))?;
    if certs.is_empty() {
        return Err(load_error(what, path, "no certificate in the file"));
    }
    Ok(certs)
}

/// Loads a private key from a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| load_error("a private key", path, e))
}

fn load_error(what: &'static str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Load {
        what,
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Builds the server TLS configuration from `config`, generating a certificate if none
/// is configured (kept in `<data_dir>/tls/` and reused on later starts).
pub fn server_tls(config: &ServerConfig) -> Result<ServerTls, TlsError> {
    let (cert_path, key_path, generated) = match (&config.tls.cert, &config.tls.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone(), false),
        _ => {
            let dir = config.data_dir.join(TLS_DIR);
            let generated = ensure_self_signed(&dir, config)?;
            (dir.join(CERT_FILE), dir.join(KEY_FILE), generated)
        }
    };
    let certs = load_certs(&cert_path, "the server certificate")?;
    let key = load_key(&key_path)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &config.tls.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in load_certs(ca, "the client CA")? {
                roots
                    .add(c)
                    .map_err(|e| load_error("the client CA", ca, e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut tls = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    tls.alpn_protocols = vec![crate::protocol::ALPN.to_vec()];
    tls.max_early_data_size = 0;
    Ok(ServerTls {
        config: Arc::new(tls),
        cert_path,
        generated,
    })
}

/// Writes a self-signed certificate and key into `dir` unless both exist; true if written.
fn ensure_self_signed(dir: &Path, config: &ServerConfig) -> Result<bool, TlsError> {
    let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if cert_path.exists() && key_path.exists() {
        return Ok(false);
    }
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let ip = config.listen.ip();
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    names.extend(config.tls.names.iter().cloned());
    names.dedup();
    let certified =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Config(e.to_string()))?;
    let io = |e: std::io::Error| TlsError::Config(format!("writing {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    write_private(&key_path, certified.signing_key.serialize_pem().as_bytes()).map_err(io)?;
    write_private(&cert_path, certified.cert.pem().as_bytes()).map_err(io)?;
    Ok(true)
}

/// Writes a file atomically with mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            data_dir: dir.path().to_owned(),
            ..ServerConfig::default()
        };
        let first = server_tls(&config).unwrap();
        assert!(first.generated);
        let pem = std::fs::read(&first.cert_path).unwrap();
        let second = server_tls(&config).unwrap();
        assert!(!second.generated);
        assert_eq!(std::fs::read(&second.cert_path).unwrap(), pem);
        assert_eq!(second.config.alpn_protocols, vec![b"strata/1".to_vec()]);
    }

    #[test]
    fn a_missing_or_garbage_cert_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a pem").unwrap();
        let mut config = ServerConfig::default();
        config.tls.cert = Some(bad.clone());
        config.tls.key = Some(bad);
        let err = server_tls(&config).unwrap_err().to_string();
        assert!(err.contains("bad.pem"), "{err}");
        config.tls.cert = Some(dir.path().join("missing.pem"));
        let err = server_tls(&config).unwrap_err().to_string();
        assert!(err.contains("missing.pem"), "{err}");
    }
}
