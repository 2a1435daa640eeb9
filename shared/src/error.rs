//! The error type of the shared crate.

/// Everything that can go wrong in encoding, decoding, routing and
/// configuration.
///
/// Decode errors say what is wrong with a message, so that a worker can log
/// the reason when it rejects it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The body is not valid JSON.
    #[error("message body is not JSON")]
    NotJson(#[source] serde_json::Error),
    /// The body is JSON but not `[args, kwargs, embed]`.
    #[error("message body has the wrong shape: {0}")]
    BodyShape(String),
    /// A required application header is absent (the `task` header marks
    /// protocol v2).
    #[error("message has no `{0}` header")]
    MissingHeader(&'static str),
    /// A header has a value of the wrong type or format.
    #[error("header `{name}` is invalid: {reason}")]
    InvalidHeader {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The content type is not JSON; pickle and YAML are refused, never
    /// evaluated.
    #[error("unsupported content type `{0}`: only application/json is accepted")]
    UnsupportedContentType(String),
    /// The content encoding is not UTF-8.
    #[error("unsupported content encoding `{0}`: only utf-8 is accepted")]
    UnsupportedContentEncoding(String),
    /// The body is larger than the configured limit.
    #[error("message body of {size} bytes exceeds the limit of {limit} bytes")]
    Oversize {
        /// The body's size in bytes.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// The arguments do not fit the task's argument type.
    #[error("arguments do not fit task `{task}`: {reason}")]
    Arguments {
        /// The task name.
        task: String,
        /// What did not fit.
        reason: String,
    },
    /// A value could not be serialized to JSON.
    #[error("cannot encode {what} as JSON")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// A queue, exchange or routing key name is not a valid AMQP short
    /// string (at most 255 bytes).
    #[error("invalid {kind} name `{name}`: at most 255 bytes allowed")]
    InvalidName {
        /// What the name is for: queue, exchange, routing key.
        kind: &'static str,
        /// The offending name, truncated for display.
        name: String,
    },
    /// The configuration file could not be read.
    #[error("cannot read config file {path}")]
    ConfigRead {
        /// The file's path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid; the message names the line.
    #[error("invalid config {origin}: {message}")]
    Config {
        /// The file's path, or `<string>`.
        origin: String,
        /// What is wrong, with the line and column.
        message: String,
    },
    /// A result message is not in Celery's rpc result format.
    #[error("invalid result message: {0}")]
    InvalidResult(String),
    /// A countdown or eta is further away than the delay ladder reaches.
    #[error("a delay of {seconds} s is longer than the maximum of {max} s (2^28 - 1)")]
    DelayTooLong {
        /// The requested delay in seconds.
        seconds: u64,
        /// The maximum delay in seconds.
        max: u64,
    },
    /// The broker URL cannot be parsed. Both fields hide the password.
    #[error("invalid broker URL {url}: {reason}")]
    InvalidBrokerUrl {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Declaring the topology on the broker failed.
    #[error("declaring {what} failed")]
    Declare {
        /// What was being declared.
        what: String,
        /// The broker's error.
        #[source]
        source: lapin::Error,
    },
    /// An AMQP operation failed.
    #[error("AMQP {what} failed")]
    Broker {
        /// The operation, e.g. `basic.consume`.
        what: &'static str,
        /// The broker's error.
        #[source]
        source: lapin::Error,
    },
    /// A cluster-wide rate limit's token queue exists with other
    /// arguments, most likely another burst: workers (or an earlier
    /// configuration) disagree about the limit.
    #[error(
        "rate-limit token queue `{queue}` exists with other arguments than a burst (x-max-length) \
         of {burst}: every worker must configure the same burst for the task; to change it, stop \
         the workers serving the task and delete the queue"
    )]
    RateLimitMismatch {
        /// The token queue.
        queue: String,
        /// The burst this worker declared it with.
        burst: u32,
        /// The broker's refusal (`PRECONDITION_FAILED`).
        #[source]
        source: lapin::Error,
    },
    /// A leader election's consumer ended: its channel closed or the
    /// queue was deleted.
    #[error("the leadership consumer on `{queue}` ended")]
    LeadershipEnded {
        /// The election's queue.
        queue: String,
    },
}

impl Error {
    /// Whether this error can go away by itself: a declaration that failed
    /// because the connection broke (see [`is_transient`](crate::is_transient)).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Declare { source, .. } | Error::Broker { source, .. } => {
                crate::is_transient(source)
            }
            Error::LeadershipEnded { .. } => true,
            Error::NotJson(_)
            | Error::BodyShape(_)
            | Error::MissingHeader(_)
            | Error::InvalidHeader { .. }
            | Error::UnsupportedContentType(_)
            | Error::UnsupportedContentEncoding(_)
            | Error::Oversize { .. }
            | Error::Arguments { .. }
            | Error::InvalidResult(_)
            | Error::Encode { .. }
            | Error::InvalidName { .. }
            | Error::ConfigRead { .. }
            | Error::Config { .. }
            | Error::DelayTooLong { .. }
            | Error::InvalidBrokerUrl { .. }
            | Error::RateLimitMismatch { .. } => false,
        }
    }

    /// Whether this error means the message itself is unusable (it could
    /// never be processed, however often it is redelivered).
    pub fn is_bad_message(&self) -> bool {
        match self {
            Error::NotJson(_)
            | Error::BodyShape(_)
            | Error::MissingHeader(_)
            | Error::InvalidHeader { .. }
            | Error::UnsupportedContentType(_)
            | Error::UnsupportedContentEncoding(_)
            | Error::Oversize { .. }
            | Error::Arguments { .. }
            | Error::InvalidResult(_) => true,
            Error::Encode { .. }
            | Error::InvalidName { .. }
            | Error::ConfigRead { .. }
            | Error::Config { .. }
            | Error::DelayTooLong { .. }
            | Error::InvalidBrokerUrl { .. }
            | Error::Declare { .. }
            | Error::Broker { .. }
            | Error::LeadershipEnded { .. }
            | Error::RateLimitMismatch { .. } => false,
        }
    }
}
