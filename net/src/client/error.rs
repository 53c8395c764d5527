//! The client's error type.

use crate::protocol::{ErrorCode, ProtocolError};
use strata_log::FormatError;

/// Why a client operation failed.
///
/// Cheap to clone: a batch's failure is handed to every record of the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The configuration is invalid.
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// TLS could not be set up (a certificate or key file could not be read or parsed).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The server could not be reached or the QUIC/TLS handshake failed.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The server address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The connection was closed (by the server, the network, or an idle timeout).
    #[error("connection closed{}: {reason}", code.map(|c| format!(" ({c})")).unwrap_or_default())]
    Closed {
        /// The server's close code, when it closed with one of the protocol's codes.
        code: Option<ErrorCode>,
        /// The reason given, or what happened.
        reason: String,
    },
    /// The server answered the request with an `ERROR` frame.
    #[error("server error ({code}, detail {detail}): {message}")]
    Server {
        /// What kind of failure.
        code: ErrorCode,
        /// The number that goes with the code (see [`ErrorCode`]).
        detail: u64,
        /// The server's explanation.
        message: String,
    },
    /// The server broke the protocol (or answered with an unexpected frame).
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolError),
    /// No answer arrived within the request timeout (the request may have been applied).
    #[error("request timed out")]
    Timeout,
    /// A record does not fit into a batch or a frame, or exceeds the producer's memory.
    #[error("record of {size} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge {
        /// Encoded size of the record (or of the batch it would need).
        size: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// Batch bytes received from the server could not be decoded.
    #[error("invalid batch: {0}")]
    Format(#[from] FormatError),
    /// A caller-supplied argument is invalid.
    #[error("invalid argument: {0}")]
    InvalidInput(String),
    /// The client, producer or consumer was closed by its owner.
    #[error("closed by the application")]
    ClientClosed,
}

impl ClientError {
    /// Whether the same operation may succeed if retried later (possibly after reconnecting).
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Timeout => true,
            ClientError::Closed { code, .. } => code.is_none_or(ErrorCode::is_retriable),
            ClientError::Server { code, .. } => code.is_retriable(),
            ClientError::Config(_)
            | ClientError::Tls(_)
            | ClientError::Protocol(_)
            | ClientError::RecordTooLarge { .. }
            | ClientError::Format(_)
            | ClientError::InvalidInput(_)
            | ClientError::ClientClosed => false,
        }
    }

    /// Whether this error means the connection is gone (the next request re-dials).
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            ClientError::Closed { .. } | ClientError::Connect { .. }
        )
    }

    /// The server error code, if the server answered with one (or closed with one).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            ClientError::Closed { code, .. } => *code,
            _ => None,
        }
    }

    /// The error for an unexpected response kind.
    pub(crate) fn unexpected(expected: &str, got: &crate::protocol::Response) -> ClientError {
        ClientError::Protocol(ProtocolError::Malformed(format!(
            "expected {expected}, got {}",
            crate::protocol::kind_name(got.kind())
        )))
    }

    /// The error describing a lost QUIC connection.
    pub(crate) fn from_connection(e: &quinn::ConnectionError) -> ClientError {
        match e {
            quinn::ConnectionError::ApplicationClosed(c) => ClientError::Closed {
                code: u16::try_from(c.error_code.into_inner())
                    .ok()
                    .and_then(ErrorCode::from_u16),
                reason: String::from_utf8_lossy(&c.reason).into_owned(),
            },
            quinn::ConnectionError::LocallyClosed => ClientError::ClientClosed,
            other => ClientError::Closed {
                code: None,
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriability_follows_the_codes() {
        let server = |code| ClientError::Server {
            code,
            detail: 0,
            message: String::new(),
        };
        assert!(server(ErrorCode::Throttled).is_retriable());
        assert!(server(ErrorCode::ShuttingDown).is_retriable());
        assert!(!server(ErrorCode::UnknownTopic).is_retriable());
        assert!(!server(ErrorCode::OutOfOrderSequence).is_retriable());
        let closed = |code| ClientError::Closed {
            code,
            reason: "x".into(),
        };
        assert!(closed(None).is_retriable());
        assert!(closed(Some(ErrorCode::ShuttingDown)).is_retriable());
        assert!(!closed(Some(ErrorCode::Unauthorized)).is_retriable());
        assert!(ClientError::Timeout.is_retriable());
        assert!(!ClientError::ClientClosed.is_retriable());
        assert!(!ClientError::Protocol(ProtocolError::Malformed("x".into())).is_retriable());
        assert_eq!(
            closed(Some(ErrorCode::ShuttingDown)).to_string(),
            "connection closed (shutting down): x"
        );
    }

    #[test]
    fn application_close_codes_map_back() {
        let e = quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: quinn::VarInt::from_u32(ErrorCode::Unauthorized as u32),
            reason: bytes::Bytes::from_static(b"unknown token"),
        });
        assert_eq!(
            ClientError::from_connection(&e),
            ClientError::Closed {
                code: Some(ErrorCode::Unauthorized),
                reason: "unknown token".into()
            }
        );
    }
}
