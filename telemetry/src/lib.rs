//! Logs, trace export and the shutdown signal for celeriac's binaries (the
//! demo worker, the `celeriac` CLI, the stocks example), and for yours.
//!
//! This is the edge: it reads the environment, the libraries do not.
//! [`Telemetry::init`] installs a `tracing` subscriber with
//!
//! - log lines to stdout or stderr, human-readable ([`LogFormat::Human`])
//!   or one JSON object per line ([`LogFormat::Json`]), filtered by an
//!   `EnvFilter` variable such as `RUST_LOG`. Log lines carry events only:
//!   spans go to the trace exporter, and every task line names its task
//!   id and task already;
//! - when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, an OpenTelemetry layer
//!   exporting spans over OTLP/HTTP (protobuf) in batches, honouring
//!   `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//!   `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`,
//!   `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*` and the other standard variables,
//!   with `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turning it
//!   off. Without an endpoint nothing is exported and celeriac's spans are
//!   disabled, so they cost nothing.
//!
//! [`Telemetry::shutdown`] flushes the spans still waiting to be exported;
//! call it before the process exits.
//!
//! ```no_run
//! use celeriac_telemetry::{LogFormat, Logs, Telemetry};
//!
//! # fn main() -> Result<(), celeriac_telemetry::Error> {
//! let telemetry = Telemetry::init("my-worker", Logs::stdout(LogFormat::Human, "RUST_LOG", "info"))?;
//! // ... run the worker ...
//! telemetry.shutdown()
//! # }
//! ```

mod error;
mod log_format;
mod logs;
mod otlp;
mod shutdown;
mod telemetry;

pub use error::Error;
pub use log_format::LogFormat;
pub use logs::{LogWriter, Logs};
pub use shutdown::shutdown_signal;
pub use telemetry::Telemetry;
