//! The celeriac contract, shared by producers and workers.
//!
//! - [`TaskMessage`]: Celery task protocol v2 in JSON, encoded to and decoded
//!   from AMQP properties, application headers and body.
//! - [`Task`]: a typed task (name, argument type, output type), with
//!   arguments travelling as Celery kwargs or positional args.
//! - [`ResultMessage`]: Celery's `rpc://` result format.
//! - [`Router`] and [`Topology`]: Celery-style routing of task names to
//!   queues, and the exchanges and queues both sides declare.
//! - [`Config`]: routing and topology loaded from a TOML file.
//! - [`RateLimit`]: how many tasks of one name may start per second,
//!   minute or hour, per worker or across the cluster.
//! - [`Sender`]: the sending interface shared by the AMQP producer and the
//!   worker's eager runner.
//! - [`Uniqueness`] and [`UniqueLock`]: a send's uniqueness key and the
//!   queues per key that enforce it on RabbitMQ.
//! - [`WorkerEvent`]: Celery's worker events (online, heartbeat, offline)
//!   that workers publish and monitors such as the dashboard consume.
//! - [`trace_context`]: W3C `traceparent`, `tracestate` and `baggage` in
//!   task message headers, as opentelemetry-instrumentation-celery carries
//!   them.
//!
//! This crate opens no sockets, spawns nothing and reads no environment.
//! [`Topology::declare`] issues declarations on a channel that the caller
//! opened.

mod arguments;
mod broker_error;
mod broker_rotation;
mod broker_url;
mod chord;
mod config;
mod confirm;
mod dead_letter;
mod dead_letter_retention;
mod delay;
mod delivery_count;
mod error;
mod error_chain;
mod field_table;
#[cfg(test)]
mod fuzz_tests;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod invalid_uniqueness;
mod leadership;
mod message;
mod pidbox;
mod queue_type;
mod rate;
mod rate_limit;
mod result;
mod result_lost;
mod revocation;
mod routing;
mod sender;
mod signature;
mod task;
mod task_event;
mod task_headers;
mod time_limit;
mod topology;
pub mod trace_context;
mod unique_lock;
mod unique_until;
mod uniqueness;
mod worker_event;

pub use arguments::{decode_arguments, encode_arguments};
pub use broker_error::{is_not_found, is_resource_locked, is_transient};
pub use broker_rotation::BrokerRotation;
pub use broker_url::BrokerUrl;
pub use chord::{
    CHECK_LOCK_EXPIRES, CHORD_CHECKS_HEADER, CHORD_JOIN_TASK, CHORD_QUEUE, ChordJoin,
    MAX_CHECK_INTERVAL, RESULTS_QUEUE_EXPIRES, check_interval, results_queue,
};
pub use config::{Config, DEFAULT_MAX_MESSAGE_SIZE};
pub use confirm::{ConfirmError, check_confirm};
pub use dead_letter::{
    DEAD_LETTER_EXCHANGE, DeadLetter, DeadLetterTopology, headers as dead_letter_headers,
};
pub use dead_letter_retention::{DeadLetterRetention, InvalidRetention};
pub use delay::{
    DEAD_LETTERING_HEADERS, DELAY_BITS, DELAY_DELIVERY_EXCHANGE, DELAY_ENTRY_EXCHANGE,
    DelayTopology, MAX_DELAY, delay_until, strip_delay_prefix,
};
pub use delivery_count::{DEFAULT_DELIVERY_LIMIT, DELIVERIES_HEADER, QUORUM_DELIVERIES_HEADER};
pub use error::Error;
pub use error_chain::ErrorChain;
pub use field_table::{
    amqp_integer, amqp_str, expire_unused, field_table_to_json, integer_header,
    json_to_field_table, string_header,
};
pub use invalid_uniqueness::InvalidUniqueness;
pub use leadership::{Leader, Leadership, TOKEN_RENEWAL};
pub use message::{CONTENT_ENCODING, CONTENT_TYPE, Embed, TaskMessage};
pub use pidbox::{
    PIDBOX_EXCHANGE, REPLY_EXCHANGE, declare_pidbox_exchanges, pidbox_queue_arguments,
};
pub use queue_type::{
    DEAD_LETTER_QUEUE_DELIVERY_LIMIT, QueueType, QuorumConflict, UnknownQueueType,
};
pub use rate::{InvalidRate, Rate};
pub use rate_limit::{InvalidRateLimit, RateLimit, RateLimitScope};
pub use result::{ResultMessage, TaskFailure, TaskState};
pub use result_lost::ResultLost;
pub use revocation::{
    MAX_REVOKED, REVOCATION_STREAM, REVOCATION_STREAM_BYTES, REVOCATION_TTL, Revocation,
    declare_revocation_stream,
};
pub use routing::{Route, Router};
pub use sender::{CallError, SendOptions, Sender, decode_output};
pub use signature::{MAX_CHAIN_STEPS, Signature, SignatureError};
pub use task::Task;
pub use task_event::{TASK_EVENTS_BATCH_KEY, TaskEvent, TaskEventKind, python_repr};
pub use task_headers::TaskHeaders;
pub use time_limit::TimeLimit;
pub use topology::{Destination, ExchangeDef, ExchangeType, QueueDef, Topology};
pub use unique_lock::{
    Acquire, Release, UNIQUE_HOLDER_PREFIX, UNIQUE_LOCK_PREFIX, UNIQUE_QUEUE_EXPIRES,
    UNIQUE_RELEASE_PREFIX, UniqueLock, holder_record_ttl,
};
pub use unique_until::UniqueUntil;
pub use uniqueness::{
    DEFAULT_UNIQUE_TTL, MAX_UNIQUE_KEY_BYTES, MAX_UNIQUE_TTL, MIN_UNIQUE_TTL, UNIQUE_KEY_HEADER,
    UNIQUE_UNTIL_HEADER, Uniqueness,
};
pub use worker_event::{
    DEFAULT_HEARTBEAT_INTERVAL, EVENT_EXCHANGE, WORKER_EVENTS_BINDING, WorkerEvent,
    WorkerEventKind, declare_event_exchange,
};

/// The default queue, exchange and routing key name, as in Celery.
pub const DEFAULT_QUEUE: &str = "celery";

/// The `tracing` target of celeriac's messaging spans (`publish …`,
/// `process …`), so a subscriber can route them to a trace exporter and
/// keep them out of log lines.
pub const MESSAGING_SPAN_TARGET: &str = "celeriac::messaging";
