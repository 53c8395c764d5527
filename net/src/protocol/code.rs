//! Error codes carried by `ERROR` frames and connection-close reasons.

use strata_log::{Error as LogError, FormatError};

/// Why a request failed; the numeric value travels in `ERROR` frames (u16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// A frame or body could not be parsed (closes the connection).
    MalformedFrame = 1,
    /// The client's protocol version is not served (closes the connection).
    UnsupportedVersion = 2,
    /// A frame exceeds the server's frame size limit (closes the connection).
    FrameTooLarge = 3,
    /// A produced batch failed its CRC check.
    CrcMismatch = 4,
    /// No topic has this name.
    UnknownTopic = 5,
    /// The topic has no such partition.
    UnknownPartition = 6,
    /// The token is missing or lacks the permission for this request.
    Unauthorized = 7,
    /// A conditional append found another next offset; `detail` is the actual one.
    Conflict = 8,
    /// The server is at a limit (queue full, too many connections): retry later.
    Throttled = 9,
    /// A topic with this name already exists.
    TopicExists = 10,
    /// A request value is invalid (name, config, acks above the topic's durability...).
    InvalidRequest = 11,
    /// The offset is outside the partition's range; `detail` is the high watermark.
    OffsetOutOfRange = 12,
    /// An idempotent batch does not follow the producer's last sequence; `detail` is the
    /// expected sequence.
    OutOfOrderSequence = 13,
    /// The producer epoch was superseded.
    ProducerFenced = 14,
    /// The group has no such member: join again.
    UnknownMember = 15,
    /// The member's generation is stale: join again; `detail` is the current one.
    StaleGeneration = 16,
    /// The server's disk is full; nothing was written.
    StorageFull = 17,
    /// The server could not read or write its storage.
    StorageError = 18,
    /// The server is shutting down: reconnect later.
    ShuttingDown = 19,
    /// A batch is not a valid batch for another reason than its CRC.
    InvalidBatch = 20,
    /// An unexpected server-side failure.
    Internal = 99,
}

impl ErrorCode {
    /// Every code, for tests and documentation.
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::MalformedFrame,
        ErrorCode::UnsupportedVersion,
        ErrorCode::FrameTooLarge,
        ErrorCode::CrcMismatch,
        ErrorCode::UnknownTopic,
        ErrorCode::UnknownPartition,
        ErrorCode::Unauthorized,
        ErrorCode::Conflict,
        ErrorCode::Throttled,
        ErrorCode::TopicExists,
        ErrorCode::InvalidRequest,
        ErrorCode::OffsetOutOfRange,
        ErrorCode::OutOfOrderSequence,
        ErrorCode::ProducerFenced,
        ErrorCode::UnknownMember,
        ErrorCode::StaleGeneration,
        ErrorCode::StorageFull,
        ErrorCode::StorageError,
        ErrorCode::ShuttingDown,
        ErrorCode::InvalidBatch,
        ErrorCode::Internal,
    ];

    /// The code with this numeric value, if any.
    pub fn from_u16(v: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| *c as u16 == v)
    }

    /// Whether a client may retry the same request later and expect it to succeed.
    pub fn is_retriable(self) -> bool {
        matches!(self, ErrorCode::Throttled | ErrorCode::ShuttingDown)
    }

    /// The code and detail value that describe an engine error.
    pub fn for_log_error(e: &LogError) -> (ErrorCode, u64) {
        match e {
            LogError::Format(FormatError::CrcMismatch { .. }) => (ErrorCode::CrcMismatch, 0),
            LogError::Format(_) => (ErrorCode::InvalidBatch, 0),
            LogError::NoSpace { .. } => (ErrorCode::StorageFull, 0),
            LogError::ReadOnly { .. } | LogError::Io { .. } | LogError::Corrupt { .. } => {
                (ErrorCode::StorageError, 0)
            }
            LogError::AppendFailed(_) => (ErrorCode::StorageError, 0),
            LogError::OffsetOutOfRange { high_watermark, .. } => {
                (ErrorCode::OffsetOutOfRange, *high_watermark)
            }
            LogError::InvalidConfig(_)
            | LogError::InvalidTopicName(_)
            | LogError::InvalidGroupName(_)
            | LogError::InvalidSequence { .. } => (ErrorCode::InvalidRequest, 0),
            LogError::UnknownTopic(_) => (ErrorCode::UnknownTopic, 0),
            LogError::UnknownPartition { .. } => (ErrorCode::UnknownPartition, 0),
            LogError::TopicExists(_) => (ErrorCode::TopicExists, 0),
            LogError::Conflict { actual, .. } => (ErrorCode::Conflict, *actual),
            LogError::OutOfOrderSequence { expected, .. } => {
                (ErrorCode::OutOfOrderSequence, *expected as u32 as u64)
            }
            LogError::ProducerFenced { .. } => (ErrorCode::ProducerFenced, 0),
            LogError::UnknownMember(_) => (ErrorCode::UnknownMember, 0),
            LogError::StaleGeneration { current, .. } => {
                (ErrorCode::StaleGeneration, u64::from(*current))
            }
            LogError::Overloaded { .. } => (ErrorCode::Throttled, 0),
            LogError::ShuttingDown => (ErrorCode::ShuttingDown, 0),
            LogError::Locked { .. }
            | LogError::UringUnavailable(_)
            | LogError::UnknownShard { .. } => (ErrorCode::Internal, 0),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            ErrorCode::MalformedFrame => "malformed frame",
            ErrorCode::UnsupportedVersion => "unsupported version",
            ErrorCode::FrameTooLarge => "frame too large",
            ErrorCode::CrcMismatch => "CRC mismatch",
            ErrorCode::UnknownTopic => "unknown topic",
            ErrorCode::UnknownPartition => "unknown partition",
            ErrorCode::Unauthorized => "unauthorised",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Throttled => "throttled",
            ErrorCode::TopicExists => "topic exists",
            ErrorCode::InvalidRequest => "invalid request",
            ErrorCode::OffsetOutOfRange => "offset out of range",
            ErrorCode::OutOfOrderSequence => "out-of-order sequence",
            ErrorCode::ProducerFenced => "producer fenced",
            ErrorCode::UnknownMember => "unknown member",
            ErrorCode::StaleGeneration => "stale generation",
            ErrorCode::StorageFull => "storage full",
            ErrorCode::StorageError => "storage error",
            ErrorCode::ShuttingDown => "shutting down",
            ErrorCode::InvalidBatch => "invalid batch",
            ErrorCode::Internal => "internal error",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c as u16));
            assert_eq!(ErrorCode::from_u16(c as u16), Some(c));
        }
        assert_eq!(ErrorCode::from_u16(0), None);
        assert_eq!(ErrorCode::from_u16(1000), None);
    }
}
