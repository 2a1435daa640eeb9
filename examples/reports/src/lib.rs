//! A report service on celeriac whose reports are built at most once at a
//! time, however many requests ask for the same one.
//!
//! `POST /reports/{id}` sends a `reports.build` task with the uniqueness
//! key `report:{id}`, held until the build finished (at most
//! `--unique-ttl`, 1 h by default). The first request starts the build
//! and gets `202 Accepted` with `"started": true`; every request for the
//! same report while it is being built gets `200 OK` with the id of the
//! build already under way and `"started": false`, and publishes nothing.
//! Once the worker finished the build (or dead-lettered it), the next
//! request starts a new one.
//!
//! The key lives in RabbitMQ alone (no Redis, no database): see
//! docs/schedules-uniqueness-rate-limits.md.
//!
//! Run it against a local RabbitMQ (`docker compose up rabbitmq`):
//!
//! ```text
//! cargo run -p celeriac-example-reports --bin reports-worker &
//! cargo run -p celeriac-example-reports --bin reports-service &
//! curl -s -X POST localhost:8081/reports/q3   # {"started":true,...}
//! curl -s -X POST localhost:8081/reports/q3   # {"started":false,...}, same task_id
//! ```
//!
//! `examples/reports/tests/reports_are_built_once.rs` sends a hundred
//! concurrent requests for one report and checks that one build ran.

mod service;
mod task;

pub use service::{App, router};
pub use task::{BuildReport, REPORTS_QUEUE, Report, ReportArgs, build, registry};
