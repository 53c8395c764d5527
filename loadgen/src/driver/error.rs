//! What can stop a run before it produces a report.

use crate::config::ConfigError;
use strata_net::client::ClientError;

/// A run that could not complete (a failed verdict is not an error: see
/// [`Report::passed`](crate::report::Report::passed)).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options do not combine.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The embedded server failed to start or stop.
    #[error("embedded server: {0}")]
    Server(String),
    /// A client call failed.
    #[error("{context}: {source}")]
    Client {
        /// What was being done.
        context: String,
        /// The client's error.
        source: ClientError,
    },
    /// A local file or directory operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A fetched batch could not be parsed.
    #[error("{context}: {message}")]
    Format {
        /// Where.
        context: String,
        /// What was wrong.
        message: String,
    },
    /// A task of the run panicked or was cancelled.
    #[error("task failed: {0}")]
    Task(String),
}

impl Error {
    /// Wraps a client error with what was being done.
    pub(crate) fn client(context: impl Into<String>, source: ClientError) -> Error {
        Error::Client {
            context: context.into(),
            source,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
