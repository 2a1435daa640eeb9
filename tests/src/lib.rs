//! Shared helpers for celeriac's integration tests against a real
//! RabbitMQ: unique names, producers and in-process workers, the demo
//! worker as a child process, throwaway vhosts and the Celery virtualenv.
//!
//! The broker is `CELERIAC_BROKER_URL` or the local default; `scripts/test`
//! makes sure one answers.

pub mod certificates;
mod cluster;
pub mod dashboard;
mod dead_letters;
pub mod ledger;
mod otlp_receiver;
mod processes;
mod proxy;
mod python;
mod rabbitmqctl;
pub mod redis_ledger;
mod scratch_broker;

pub use cluster::Cluster;
pub use dead_letters::{
    celeriac, declare_with_dead_letters, drain_task_ids, publish_dead_letters, rejected,
};
pub mod spans;

pub use otlp_receiver::{OtlpReceiver, ReceivedSpan};
pub use processes::{DemoWorker, workspace_binary};
pub use proxy::Proxy;
pub use python::{Python, Transcript};
pub use rabbitmqctl::{BrokerUser, Vhost, close_connections_named};
pub use scratch_broker::{ScratchBroker, TlsFiles};

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use celeriac_producer::{Producer, ProducerConfig, ResultListener};
use celeriac_shared::{BrokerRotation, BrokerUrl, ResultMessage, Router, Topology};
use celeriac_worker::{Registry, Worker, WorkerConfig};
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long any single wait in a test may take before the test fails.
pub const GUARD: Duration = Duration::from_secs(30);

/// The broker URL for tests.
pub fn broker_url() -> BrokerUrl {
    BrokerUrl::new(std::env::var("CELERIAC_BROKER_URL").unwrap_or_else(|_| BrokerUrl::LOCAL.into()))
}

/// The broker URL with the vhost replaced.
pub fn broker_url_for_vhost(vhost: &str) -> BrokerUrl {
    let url = broker_url();
    let base = url.expose();
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_end..]
        .find('/')
        .map_or(base.len(), |i| authority_end + i);
    BrokerUrl::new(format!("{}/{}", &base[..path_start], vhost))
}

/// A name nobody else uses: `prefix-<uuid>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Logs errors to the test output, or what `RUST_LOG` selects. Without
/// `RUST_LOG`, lapin's report of every channel the broker closes is left
/// out: [`wait_for_consumers`] provokes one per poll of a queue that does
/// not exist yet, and they would bury a failing test's message.
pub fn init_logging() {
    init_logging_with("error,lapin::channel=off");
}

/// As [`init_logging`], with `filter` (`RUST_LOG` syntax) unless
/// `RUST_LOG` is set: for a test whose failure needs more of the log.
pub fn init_logging_with(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A listener on `producer`'s named reply queue whose handler reports
/// every result to the returned channel.
pub async fn record_results(
    producer: &Producer,
) -> anyhow::Result<(ResultListener, mpsc::UnboundedReceiver<ResultMessage>)> {
    let (seen, results) = mpsc::unbounded_channel();
    let listener = producer
        .on_result(move |result: ResultMessage| {
            let seen = seen.clone();
            async move {
                let _ = seen.send(result);
                Ok::<_, std::io::Error>(())
            }
        })
        .await?;
    Ok((listener, results))
}

/// The task ids of results from `results` (see [`record_results`]) until
/// `count` distinct ones came, each within [`GUARD`] of the one before;
/// panics naming `what` otherwise.
pub async fn result_ids(
    results: &mut mpsc::UnboundedReceiver<ResultMessage>,
    count: usize,
    what: &str,
) -> HashSet<String> {
    let mut ids = HashSet::new();
    while ids.len() < count {
        let result = within(what, results.recv()).await;
        ids.insert(result.expect("the result listener ended").task_id);
    }
    ids
}

/// A producer on the test broker with default settings.
pub async fn producer() -> anyhow::Result<Producer> {
    producer_with(Router::default(), Topology::default()).await
}

/// A producer on the test broker that routes every task to `queue`.
pub async fn producer_for(queue: &str) -> anyhow::Result<Producer> {
    producer_with(Router::new(vec![], queue), Topology::default()).await
}

/// A producer on the test broker with these rules and queues.
pub async fn producer_with(router: Router, topology: Topology) -> anyhow::Result<Producer> {
    let config = ProducerConfig {
        broker_url: broker_url(),
        router,
        topology,
        ..ProducerConfig::default()
    };
    Ok(Producer::connect(config).await?)
}

/// A producer whose broker connection has a unique name, returned too, so
/// a test can close it with [`close_connections_named`].
pub async fn named_producer(router: Router) -> anyhow::Result<(Producer, String)> {
    let name = unique("producer");
    let config = ProducerConfig {
        broker_url: broker_url(),
        router,
        connection_name: name.clone(),
        ..ProducerConfig::default()
    };
    Ok((Producer::connect(config).await?, name))
}

/// A raw AMQP connection and channel, for publishing hand-made messages
/// and inspecting queues.
pub async fn channel() -> anyhow::Result<(Connection, Channel)> {
    channel_on(&broker_url()).await
}

/// As [`channel`], on the broker (or vhost) at `url`.
pub async fn channel_on(url: &BrokerUrl) -> anyhow::Result<(Connection, Channel)> {
    let connection = connection_on(url).await?;
    let channel = connection.create_channel().await?;
    Ok((connection, channel))
}

/// A raw AMQP connection to the first of `url`'s addresses that answers
/// within [`GUARD`]; the last address's error when none does.
pub async fn connection_on(url: &BrokerUrl) -> anyhow::Result<Connection> {
    let connect = |uri| Connection::connect_uri(uri, ConnectionProperties::default());
    let connection = BrokerRotation::new(url)?
        .first_answer(GUARD, connect)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    Ok(connection)
}

/// Closes a test's own connection, giving up after [`CLOSE_GUARD`]: the
/// close is cleanup, and a test once hung for good on a lapin close (or
/// connect) that never returned.
pub async fn close(connection: &Connection) {
    let _ = tokio::time::timeout(CLOSE_GUARD, connection.close(200, "OK".into())).await;
}

/// How long [`close`] waits for the broker's `close-ok`.
pub const CLOSE_GUARD: Duration = Duration::from_secs(5);

/// The number of ready messages in `queue`.
pub async fn message_count(channel: &Channel, queue: &str) -> anyhow::Result<u32> {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let q = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await?;
    Ok(q.message_count())
}

/// Takes one message from `queue`, if there is one.
pub async fn get_one(
    channel: &Channel,
    queue: &str,
) -> anyhow::Result<Option<lapin::message::BasicGetMessage>> {
    let options = BasicGetOptions { no_ack: true };
    Ok(channel.basic_get(queue.into(), options).await?)
}

/// Publishes a hand-made message to `queue` through the default exchange
/// and waits for the broker's confirm.
pub async fn publish_raw(
    channel: &Channel,
    queue: &str,
    body: &[u8],
    properties: lapin::BasicProperties,
) -> anyhow::Result<()> {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await?
        .await?;
    Ok(())
}

/// Declares a plain queue exclusive to `channel`'s connection (deleted
/// with it), e.g. a raw reply queue. Never a transient non-exclusive
/// queue, which RabbitMQ 4.3 refuses.
pub async fn declare_plain_queue(channel: &Channel, queue: &str) -> anyhow::Result<()> {
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), exclusive, FieldTable::default())
        .await?;
    Ok(())
}

/// Consumes `queue` without acknowledgements.
pub async fn consume(channel: &Channel, queue: &str) -> anyhow::Result<lapin::Consumer> {
    let options = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    Ok(channel
        .basic_consume(queue.into(), "".into(), options, FieldTable::default())
        .await?)
}

/// The consumer's next delivery, failing after [`GUARD`].
pub async fn next_delivery(
    consumer: &mut lapin::Consumer,
) -> anyhow::Result<lapin::message::Delivery> {
    use futures::StreamExt;
    let next = tokio::time::timeout(GUARD, consumer.next())
        .await
        .with_context(|| format!("no delivery within {GUARD:?}"))?;
    Ok(next.context("the consumer ended")??)
}

/// Awaits `future` for at most [`GUARD`], or panics naming `what`: a
/// wait in a test fails instead of hanging.
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: nothing within {GUARD:?}"),
    }
}

/// Deletes queues and their dead-letter queues (best effort), for cleanup
/// at the end of a test.
pub async fn delete_queues(queues: &[&str]) {
    if let Ok((connection, _)) = channel().await {
        for queue in queues {
            for name in [queue.to_string(), format!("{queue}.dead")] {
                // A channel per deletion: a refused one (an exclusive queue
                // of another connection) closes its channel.
                let Ok(channel) = connection.create_channel().await else {
                    break;
                };
                let _ = channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await;
                let _ = channel.close(200, "OK".into()).await;
            }
        }
        close(&connection).await;
    }
}

/// A worker running in this process, stopped through a oneshot.
pub struct TestWorker {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), celeriac_worker::Error>>,
}

impl TestWorker {
    /// Starts a worker on `queues` with `registry`, and returns once it
    /// consumes (its queues exist and have a consumer).
    pub async fn start(queues: &[&str], registry: Registry) -> anyhow::Result<Self> {
        let config = WorkerConfig {
            broker_url: broker_url(),
            queues: queues.iter().map(|q| (*q).to_owned()).collect(),
            concurrency: 8,
            ..WorkerConfig::default()
        };
        Self::start_with(config, registry).await
    }

    /// Starts a worker with a full configuration.
    pub async fn start_with(config: WorkerConfig, registry: Registry) -> anyhow::Result<Self> {
        Self::start_worker(Worker::with_registry(config, registry)).await
    }

    /// Starts a worker serving metrics and health on a free port of
    /// 127.0.0.1, and returns it with the base URL of its endpoints.
    pub async fn start_serving_metrics(
        mut config: WorkerConfig,
        registry: Registry,
    ) -> anyhow::Result<(Self, String)> {
        config.metrics_addr = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let mut worker = Worker::with_registry(config, registry);
        let addr = worker.bind_metrics().await?.context("no metrics address")?;
        Ok((Self::start_worker(worker).await?, format!("http://{addr}")))
    }

    async fn start_worker(worker: Worker) -> anyhow::Result<Self> {
        let config = worker.config();
        let queues = config.queues.clone();
        let url = config.broker_url.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(async {
            let _ = stopped.await;
        }));
        wait_for_consumers(&url, &queues).await?;
        Ok(Self {
            stop: Some(stop),
            task,
        })
    }

    /// Asks the worker to shut down gracefully and returns how `run` ended.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = &mut self.task;
        tokio::time::timeout(GUARD * 2, task)
            .await
            .context("worker did not stop")??
            .context("worker run failed")
    }
}

impl TestWorker {
    /// Waits up to [`GUARD`] for the worker to stop by itself (a
    /// `shutdown` control command, say) and returns how it ended.
    pub async fn stopped(mut self) -> anyhow::Result<()> {
        let task = &mut self.task;
        let ended = tokio::time::timeout(GUARD, task)
            .await
            .context("the worker did not stop")?;
        self.stop = None;
        Ok(ended??)
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

/// Waits until every queue has at least one consumer, checking through
/// passive declares (consumer counts are updated synchronously by the
/// broker when basic.consume-ok is sent).
pub async fn wait_for_consumers(url: &BrokerUrl, queues: &[String]) -> anyhow::Result<()> {
    let connection = connection_on(url).await?;
    let deadline = tokio::time::Instant::now() + GUARD;
    for queue in queues {
        loop {
            let channel = connection.create_channel().await?;
            let options = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            let consumers = match channel
                .queue_declare(queue.as_str().into(), options, FieldTable::default())
                .await
            {
                Ok(q) => q.consumer_count(),
                Err(_) => 0,
            };
            if consumers > 0 {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("queue {queue} got no consumer within {GUARD:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    close(&connection).await;
    Ok(())
}

/// The Python interpreter of the Celery virtualenv: `CELERIAC_PYTHON`, or
/// the one `scripts/celery-venv` creates (once; later calls are instant).
pub fn celery_python() -> anyhow::Result<PathBuf> {
    if let Ok(python) = std::env::var("CELERIAC_PYTHON") {
        return Ok(PathBuf::from(python));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/celery-venv");
    let output = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!("{} failed", script.display());
    }
    let stdout = String::from_utf8(output.stdout)?;
    let python = stdout
        .lines()
        .last()
        .context("celery-venv printed nothing")?;
    Ok(PathBuf::from(python.trim()))
}

/// GETs `url` and returns the status code and body.
pub async fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    let response = reqwest::get(url)
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// The folder of the Python helper scripts used by interop tests.
pub fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python")
}
