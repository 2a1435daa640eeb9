//! The stocks web service: `POST /stocks/refresh`, `GET /tasks/{id}`,
//! `GET /stocks` on `--listen` (default `0.0.0.0:8080`), sending
//! `stocks.refresh` to the `stocks` queue and receiving results on the
//! reply queue every replica shares (`--reply-queue`, default
//! `stocks-service.replies`). See the crate docs.
//!
//! ```text
//! stocks-service --listen 127.0.0.1:8080 --symbols ACME,GLOBEX,INITECH
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use celeriac_example_stocks::{
    App, REPLY_QUEUE, RefreshOptions, STOCKS_QUEUE, StockBook, listen_for_results, router,
};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{BrokerUrl, Route, Router};
use celeriac_telemetry::{LogFormat, Logs, Telemetry};
use clap::Parser;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(about = "The stocks example's web service")]
struct Args {
    /// The address to serve HTTP on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// The stocks to track, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ACME,GLOBEX,INITECH,UMBRELLA"
    )]
    symbols: Vec<String>,
    /// The queue refresh tasks go to.
    #[arg(long, default_value = STOCKS_QUEUE)]
    queue: String,
    /// The durable reply queue that every replica of the service shares,
    /// so a result outlives the replica that sent its task.
    #[arg(long, default_value = REPLY_QUEUE)]
    reply_queue: String,
    /// The simulated price API's latency per symbol, e.g. `500ms`.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    latency: Duration,
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
    let telemetry = Telemetry::init("stocks-service", logs)?;
    let route = Route::new("stocks.*", &args.queue);
    let config = ProducerConfig {
        broker_url: BrokerUrl::from_addresses(&args.broker),
        router: Router::new(vec![route], celeriac_shared::DEFAULT_QUEUE),
        ..ProducerConfig::default()
    }
    .reply_queue(args.reply_queue);
    let producer = Producer::connect(config)
        .await
        .context("cannot reach the broker")?;
    let options = RefreshOptions {
        latency: args.latency,
    };
    let book = Arc::new(StockBook::new(args.symbols));
    let results = listen_for_results(&producer, Arc::clone(&book))
        .await
        .context("cannot consume the reply queue")?;
    let app = App {
        producer,
        book,
        options,
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %args.listen, "stocks service listening");
    let served = axum::serve(listener, router(app))
        .with_graceful_shutdown(celeriac_telemetry::shutdown_signal())
        .await;
    results.stop().await;
    if let Err(err) = telemetry.shutdown() {
        tracing::warn!(error = %err, "spans may be lost");
    }
    Ok(served?)
}
