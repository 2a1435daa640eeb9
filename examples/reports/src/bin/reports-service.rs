//! The reports web service: `POST /reports/{id}` on `--listen` (default
//! `0.0.0.0:8081`), sending `reports.build` to the `reports` queue. See
//! the crate docs.
//!
//! ```text
//! reports-service --listen 127.0.0.1:8081 --build-time 10s --unique-ttl 10m
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use celeriac_example_reports::{App, REPORTS_QUEUE, router};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{BrokerUrl, Route, Router};
use celeriac_telemetry::{LogFormat, Logs, Telemetry};
use clap::Parser;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(about = "The reports example's web service")]
struct Args {
    /// The address to serve HTTP on.
    #[arg(long, default_value = "0.0.0.0:8081")]
    listen: SocketAddr,
    /// The queue builds go to.
    #[arg(long, default_value = REPORTS_QUEUE)]
    queue: String,
    /// How long the simulated build takes, e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    build_time: Duration,
    /// How long a report's key is held at most (1s to 24h).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    unique_ttl: Duration,
    /// Broker URL. Repeat the flag, or give a comma-separated list (also
    /// in CELERIAC_BROKER_URL), for several addresses (a cluster's nodes).
    #[arg(long, env = "CELERIAC_BROKER_URL", default_value = BrokerUrl::LOCAL, hide_env_values = true)]
    broker: Vec<String>,
    /// Log lines as `human` text or `json`.
    #[arg(long, env = "CELERIAC_LOG_FORMAT", default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let logs = Logs::stdout(args.log_format, "RUST_LOG", "info,lapin=warn");
    let telemetry = Telemetry::init("reports-service", logs)?;
    let config = ProducerConfig {
        broker_url: BrokerUrl::from_addresses(&args.broker),
        router: Router::new(vec![Route::new("reports.*", &args.queue)], REPORTS_QUEUE),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(config)
        .await
        .context("cannot reach the broker")?;
    let app = App {
        producer,
        build_time: args.build_time,
        unique_ttl: args.unique_ttl,
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %args.listen, "reports service listening");
    let served = axum::serve(listener, router(app))
        .with_graceful_shutdown(celeriac_telemetry::shutdown_signal())
        .await;
    if let Err(err) = telemetry.shutdown() {
        tracing::warn!(error = %err, "spans may be lost");
    }
    Ok(served?)
}
