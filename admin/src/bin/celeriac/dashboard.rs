//! `celeriac dashboard`: the web dashboard of queues, workers and dead
//! letters.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use celeriac_admin::{Dashboard, DashboardConfig};
use celeriac_producer::Producer;
use celeriac_shared::Config;

/// Flags of `celeriac dashboard`.
#[derive(Debug, clap::Args)]
pub(crate) struct DashboardArgs {
    /// Where to listen. Any address but a loopback one needs --token.
    #[arg(
        long,
        env = "CELERIAC_DASHBOARD_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,
    /// The token every request must carry (`Authorization: Bearer`, or as
    /// the basic-auth password). Default: none (localhost only).
    #[arg(long, env = "CELERIAC_DASHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A work queue to show; repeatable. Default: the configured queues
    /// (plus any a worker's heartbeat names).
    #[arg(long = "queue", value_name = "QUEUE")]
    queues: Vec<String>,
    /// RabbitMQ's management API, for unacknowledged counts and rates
    /// (`off`: AMQP counts only). The broker URL's credentials are used.
    #[arg(
        long,
        env = "CELERIAC_MANAGEMENT_URL",
        default_value = "http://127.0.0.1:15672"
    )]
    management_url: String,
    /// The Jaeger UI that trace ids link to (`off`: no links).
    #[arg(
        long,
        env = "CELERIAC_JAEGER_URL",
        default_value = "http://127.0.0.1:16686"
    )]
    jaeger_url: String,
    /// How often counts are sampled and pages refresh.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    refresh: Duration,
    /// How often the delay ladder is read for per-queue delayed counts
    /// (`off`: the ladder's total only).
    #[arg(long, default_value = "60s")]
    delay_scan: String,
}

pub(crate) async fn run(
    producer: &Producer,
    file: &Config,
    args: DashboardArgs,
) -> anyhow::Result<ExitCode> {
    let off = |value: String| (value != "off").then_some(value);
    let delay_scan = match off(args.delay_scan) {
        Some(text) => Some(humantime::parse_duration(&text)?),
        None => None,
    };
    let config = DashboardConfig {
        queues: match args.queues.is_empty() {
            true => file.queue_names(),
            false => args.queues,
        },
        refresh: args.refresh.max(Duration::from_millis(100)),
        delay_scan,
        management_url: off(args.management_url),
        jaeger_url: off(args.jaeger_url),
        token: args.token.filter(|t| !t.is_empty()),
        ..DashboardConfig::default()
    };
    let dashboard = Dashboard::new(producer, config);
    let listener = dashboard.bind(args.listen).await?;
    println!(
        "celeriac dashboard listening on http://{}",
        listener.local_addr()?
    );
    dashboard
        .serve(listener, celeriac_telemetry::shutdown_signal())
        .await?;
    Ok(ExitCode::SUCCESS)
}
