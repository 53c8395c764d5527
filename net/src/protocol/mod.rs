//! The strata wire protocol (sans-IO): frames, message bodies and error codes.
//!
//! `docs/PROTOCOL.md` is the source of truth; the constants here match it. Nothing in
//! this module touches a socket, a thread or a clock: it turns bytes into typed
//! requests and responses and back.

pub mod batches;
mod code;
pub mod frame;
mod message;
pub mod wire;

pub use code::ErrorCode;
pub use frame::{FrameHeader, HEADER_LEN, RawFrame, split_frame};
pub use message::{Acks, Request, Response, TopicInfo, kind, kind_name};

/// ALPN protocol id negotiated in the TLS handshake.
pub const ALPN: &[u8] = b"strata/1";
/// Protocol version carried by `HELLO` (the only one this build speaks).
pub const VERSION: u16 = 1;
/// Default limit on one frame (header and body).
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// A violation of the protocol by the peer; the connection is closed with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A frame or body could not be parsed.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A frame is larger than the receiver's limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// Declared size (header and body).
        size: u64,
        /// The receiver's limit.
        limit: usize,
    },
    /// The peer speaks a protocol version this build does not.
    #[error("unsupported protocol version {0} (this build speaks {VERSION})")]
    UnsupportedVersion(u16),
}

impl ProtocolError {
    /// The error code that goes with this violation.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::Malformed(_) => ErrorCode::MalformedFrame,
            ProtocolError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            ProtocolError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
        }
    }
}
