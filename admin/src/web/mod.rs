//! The web dashboard (`celeriac dashboard`): queues, workers and dead
//! letters in a browser, refreshed live.
//!
//! The pages are rendered on the server from a snapshot that a background
//! task takes every refresh: queue counts by passive `queue.declare`
//! (ready, consumers, dead letters), unacknowledged counts and rates from
//! RabbitMQ's management API when it answers, workers from their Celery
//! `worker-heartbeat` events, what waits in the delay ladder from the
//! inspection library. Tasks come from Celery's task events, merged per
//! task id, and open Tasks pages follow them over server-sent events.
//! Dead letters are listed, replayed and deleted with
//! [`DeadLetters`](crate::DeadLetters), so the dashboard gives the
//! guarantees the CLI gives. See `docs/dashboard.md`.

mod dashboard;
mod dashboard_config;
mod dead_letter_form;
mod dead_letter_pages;
mod html;
mod management_api;
mod overview;
mod overview_page;
mod routes;
mod sampler;
mod security;
mod task_list;
mod task_pages;
mod text;
mod throughput;
mod worker_events;
mod worker_list;

pub use dashboard::{Dashboard, Running};
pub use dashboard_config::DashboardConfig;
