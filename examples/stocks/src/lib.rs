//! A stock-refresh web service on celeriac, traced end to end.
//!
//! `POST /stocks/refresh` marks the stocks loading, sends a
//! `stocks.refresh` task and answers `202 Accepted` with the task id at
//! once; a worker does the slow part (a simulated price API, one slow call
//! per symbol) and returns the quotes over the service's named reply queue
//! (`stocks-service.replies`, `--reply-queue`); the service's result
//! handler then updates the stocks. `GET /tasks/{id}` shows the task's
//! state and result, `GET /stocks` the stocks.
//!
//! The reply queue is durable and shared by every replica of the service
//! ([`listen_for_results`]): a replica killed with refreshes in flight
//! loses none of their results. They wait in the queue, and another
//! replica (or the restarted one) receives them, records them (adopting
//! tasks it did not send) and only then acknowledges them.
//!
//! State lives in each replica's memory, so there is no database to run:
//! a restarted replica forgets the stocks and tasks it knew, and learns
//! them again from the results it receives; `GET /tasks/{id}` of a task
//! another replica sent answers 404 until its result reached this one.
//!
//! An incoming W3C `traceparent` header is honoured: the request's span
//! continues the client's trace, and the task's publish, its processing on
//! the worker (with one `fetch price` span per symbol) and its result are
//! all in that trace.
//!
//! Run it against a local RabbitMQ, with traces going to a local Jaeger
//! (`docker compose up rabbitmq jaeger`, or leave `OTEL_*` unset):
//!
//! ```text
//! export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318
//! cargo run -p celeriac-example-stocks --bin stocks-worker &
//! cargo run -p celeriac-example-stocks --bin stocks-service &
//! curl -s -X POST localhost:8080/stocks/refresh
//! curl -s localhost:8080/tasks/<task id>
//! curl -s localhost:8080/stocks
//! ```
//!
//! `docker compose up --build` runs both with everything else;
//! `examples/stocks/tests/refresh_over_http.rs` drives the service over
//! HTTP against the real broker (a replica dropped with a refresh in
//! flight included), and `a_killed_service_loses_no_results.rs` kills the
//! `stocks-service` process with refreshes in flight and sees their
//! results land on the next one.

mod book;
mod http_span;
mod prices;
mod results;
mod service;
mod task;

pub use book::{Stock, StockBook, StockStatus, TaskRecord, TaskStatus};
pub use prices::{fetch_price, refresh, registry};
pub use results::{REPLY_QUEUE, listen_for_results};
pub use service::{App, RefreshOptions, router};
pub use task::{Quote, RefreshArgs, RefreshStocks, STOCKS_QUEUE};
