//! A stock-refresh web service on celeriac, traced end to end.
//!
//! `POST /stocks/refresh` marks the stocks loading, sends a
//! `stocks.refresh` task and answers `202 Accepted` with the task id at
//! once; a worker does the slow part (a simulated price API, one slow call
//! per symbol) and returns the quotes over the service's reply queue; the
//! service then updates the stocks. `GET /tasks/{id}` shows the task's
//! state and result, `GET /stocks` the stocks.
//!
//! State lives in the service's memory: the worker reports back through
//! the reply queue (Celery's `rpc://`), so there is no database to run. A
//! restarted service forgets its stocks and tasks, and a result that
//! arrives while it is down is lost (the stock stays `loading` until the
//! next refresh).
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
//! HTTP against the real broker.

mod book;
mod http_span;
mod prices;
mod service;
mod task;

pub use book::{Stock, StockBook, StockStatus, TaskRecord, TaskStatus};
pub use prices::{fetch_price, refresh, registry};
pub use service::{App, RefreshOptions, router};
pub use task::{Quote, RefreshArgs, RefreshStocks, STOCKS_QUEUE};
