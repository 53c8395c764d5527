//! Typed errors for every failure the log can report.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout strata-log.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong while decoding bytes that claim to be a record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Fewer bytes than the fixed header or the declared batch length.
    #[error("truncated batch: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the header says the batch needs.
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// The declared batch length is outside the allowed range.
    #[error("invalid batch length {0}")]
    InvalidLength(u32),
    /// The magic byte names a format version this build does not read.
    #[error("unsupported batch format version {0}")]
    UnsupportedVersion(u8),
    /// The CRC stored in the header does not match the bytes.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes as read.
        computed: u32,
    },
    /// The attributes byte names an unknown compression codec or sets reserved bits.
    #[error("invalid attributes byte {0:#04x}")]
    InvalidAttributes(u8),
    /// A header field contradicts another (record count vs last offset delta, timestamps).
    #[error("inconsistent header: {0}")]
    InconsistentHeader(&'static str),
    /// The records section could not be parsed.
    #[error("malformed record {index}: {reason}")]
    MalformedRecord {
        /// Zero-based index of the record within the batch.
        index: u32,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// The lz4 block could not be decompressed.
    #[error("lz4 decompression failed: {0}")]
    Decompress(String),
    /// A batch with no records was submitted.
    #[error("a batch must hold at least one record")]
    Empty,
    /// A batch, once encoded, is larger than the configured limit.
    #[error("batch of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
}

/// Every failure the log reports to its callers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bytes that should be a batch are not a valid batch.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The device or filesystem is full (ENOSPC or EDQUOT).
    #[error("no space left for {path}: {source}")]
    NoSpace {
        /// File being written or created.
        path: PathBuf,
        /// Underlying OS error.
        source: io::Error,
    },
    /// The directory or a file in it cannot be written (EROFS, EACCES, EPERM).
    #[error("{path} is read-only or not writable: {source}")]
    ReadOnly {
        /// File or directory concerned.
        path: PathBuf,
        /// Underlying OS error.
        source: io::Error,
    },
    /// Any other I/O failure, with the file it concerned.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// File or directory concerned.
        path: PathBuf,
        /// Underlying OS error.
        source: io::Error,
    },
    /// The requested offset is outside `[log_start, high_watermark]`.
    #[error("offset {requested} is out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        /// Offset asked for.
        requested: u64,
        /// First offset still retained.
        log_start: u64,
        /// Next offset that will become readable.
        high_watermark: u64,
    },
    /// A configuration value is out of its allowed range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// io_uring was required by configuration but cannot be used here.
    #[error("io_uring unavailable: {0}")]
    UringUnavailable(io::Error),
    /// Another process (or another handle in this one) has the partition open.
    #[error("partition directory {path} is locked by another owner")]
    Locked {
        /// The partition directory.
        path: PathBuf,
    },
    /// No topic has this name.
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    /// The topic exists but has no such partition.
    #[error("topic {topic:?} has no partition {partition}")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// Partition asked for.
        partition: u32,
    },
    /// A topic with this name already exists.
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    /// A topic name is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid topic name {0:?}: use 1-249 characters from [A-Za-z0-9._-]")]
    InvalidTopicName(String),
    /// A conditional append found another next offset than the one expected.
    #[error("conditional append expected next offset {expected}, partition is at {actual}")]
    Conflict {
        /// Offset the caller expected.
        expected: u64,
        /// The partition's actual next offset.
        actual: u64,
    },
    /// An idempotent batch's sequence does not follow the producer's last one.
    #[error("producer {producer_id}: expected sequence {expected}, received {received}")]
    OutOfOrderSequence {
        /// Producer id.
        producer_id: u64,
        /// Sequence the partition expected next.
        expected: i32,
        /// Base sequence of the batch.
        received: i32,
    },
    /// A batch comes from an older epoch of a producer that has been superseded.
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current_epoch}")]
    ProducerFenced {
        /// Producer id.
        producer_id: u64,
        /// Epoch of the batch.
        epoch: u16,
        /// Current epoch.
        current_epoch: u16,
    },
    /// An idempotent batch carries an impossible sequence.
    #[error("producer {producer_id}: {reason}")]
    InvalidSequence {
        /// Producer id.
        producer_id: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A group name is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid group name {0:?}: use 1-249 characters from [A-Za-z0-9._-]")]
    InvalidGroupName(String),
    /// The consumer group has no member with this id (it left or its session expired).
    #[error("unknown group member {0:?}: join the group again")]
    UnknownMember(String),
    /// A commit carries an older generation than the group's: the member must rejoin.
    #[error("group {group:?} is at generation {current}, the request carried {generation:?}")]
    StaleGeneration {
        /// Group name.
        group: String,
        /// Generation of the request (None for a commit without membership).
        generation: Option<u32>,
        /// The group's generation.
        current: u32,
    },
    /// A shard's bounded queue is full: retry later.
    #[error("shard {shard} is overloaded: its request queue is full")]
    Overloaded {
        /// Index of the shard.
        shard: usize,
    },
    /// The engine is shutting down or a shard has stopped.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// No shard has this index.
    #[error("no shard {shard}: the engine has {shards}")]
    UnknownShard {
        /// Index asked for.
        shard: usize,
        /// Number of shards.
        shards: usize,
    },
    /// An append failed because an earlier write in the same group commit failed.
    #[error("append failed: {0}")]
    AppendFailed(String),
    /// A file in the partition directory is damaged beyond what recovery repairs.
    #[error("corrupt file {path}: {reason}")]
    Corrupt {
        /// File concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error, classifying full-disk and read-only failures.
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace { path, source },
            Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM) => {
                Error::ReadOnly { path, source }
            }
            _ => Error::Io { path, source },
        }
    }

    /// True when the failure is a full disk.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::NoSpace { .. })
    }
}

/// Extension to attach a path to `io::Result`s.
pub(crate) trait IoContext<T> {
    /// Converts the error into [`Error`] naming `path`.
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e.into()))
    }
}
