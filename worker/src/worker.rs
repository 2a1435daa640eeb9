//! The worker: register handlers, then consume until shutdown, reconnecting
//! whenever the broker goes away.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use celeriac_shared::{BrokerRotation, ErrorChain, Task};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::health::Health;
use crate::heartbeat::Identity;
use crate::metrics_server::MetricsServer;
use crate::rate_limits::RateLimits;
use crate::session::{Ended, Session, Shared};
use crate::tally::Tally;
use crate::task_events::EventSwitch;
use crate::{Error, Registry, TaskContext, TaskError, TaskOptions, WorkerConfig};

/// Runs registered task handlers for messages from its queues.
#[derive(Debug)]
pub struct Worker {
    config: WorkerConfig,
    registry: Registry,
    /// The metrics listener, bound early by [`Worker::bind_metrics`].
    metrics_listener: Option<TcpListener>,
}

/// `celeriac-worker-<pid>@<host>` for the first worker of the process,
/// `celeriac-worker-<pid>-<n>@<host>` for the n-th after it: the name in
/// events, dead letters and remote control, which must be unique (each
/// worker's control queue is exclusive to it).
fn node_name() -> String {
    static WORKERS: AtomicUsize = AtomicUsize::new(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let (pid, host) = (std::process::id(), host.trim());
    match WORKERS.fetch_add(1, Ordering::Relaxed) {
        0 => format!("celeriac-worker-{pid}@{host}"),
        n => format!("celeriac-worker-{pid}-{n}@{host}"),
    }
}

impl Worker {
    /// A worker with no handlers yet.
    pub fn new(config: WorkerConfig) -> Self {
        Self::with_registry(config, Registry::new())
    }

    /// A worker running the handlers of `registry`.
    pub fn with_registry(config: WorkerConfig, registry: Registry) -> Self {
        Self {
            config,
            registry,
            metrics_listener: None,
        }
    }

    /// Binds [`WorkerConfig::metrics_addr`] now rather than in
    /// [`Worker::run`], and returns the address bound (the port chosen
    /// when it was 0), or `None` when no metrics address is configured.
    pub async fn bind_metrics(&mut self) -> Result<Option<SocketAddr>, Error> {
        let Some(addr) = self.config.metrics_addr else {
            return Ok(None);
        };
        let (listener, bound) = MetricsServer::bind(addr).await?;
        self.metrics_listener = Some(listener);
        Ok(Some(bound))
    }

    /// Registers a handler for task `T` with its own options (see
    /// [`Registry::register_with`]).
    pub fn register_with<T, F, Fut>(mut self, options: TaskOptions, handler: F) -> Self
    where
        T: Task,
        F: Fn(T::Args, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T::Output, TaskError>> + Send + 'static,
    {
        self.registry.register_with::<T, F, Fut>(options, handler);
        self
    }

    /// Registers a handler for task `T` (see [`Registry::register`]).
    pub fn register<T, F, Fut>(mut self, handler: F) -> Self
    where
        T: Task,
        F: Fn(T::Args, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T::Output, TaskError>> + Send + 'static,
    {
        self.registry.register::<T, F, Fut>(handler);
        self
    }

    /// The registered handlers.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The worker's configuration.
    pub fn config(&self) -> &WorkerConfig {
        &self.config
    }

    /// Consumes until `shutdown` completes, then stops taking deliveries,
    /// lets in-flight tasks finish within the grace period, and closes the
    /// connection (the broker requeues whatever is still unacknowledged).
    ///
    /// When the broker cannot be reached, or the connection or a consumer
    /// is lost, the worker abandons its in-flight tasks (the broker
    /// redelivers them), waits per [`WorkerConfig::reconnect`], connects
    /// again, re-declares its queues and consumes again, for as long as it
    /// takes. With several broker addresses in [`WorkerConfig::broker_url`],
    /// each connection attempt tries them in turn, starting with the one
    /// after the address last tried (see [`BrokerRotation`]), and waits
    /// only once none answered. It returns an error only for what waiting cannot mend (see
    /// [`Error::can_be_recovered`]): wrong credentials, a missing vhost, a
    /// queue declared with other arguments, an untrusted certificate.
    ///
    /// With [`WorkerConfig::metrics_addr`] set, serves `/metrics`,
    /// `/healthz` and `/readyz` until it returns; `/readyz` answers 200
    /// only while the broker connection is open and every queue is
    /// consumed.
    ///
    /// The worker runs as a task of the current tokio runtime, not on the
    /// thread that awaits `run`. Under `#[tokio::main]` that thread is the
    /// one blocked in `block_on`, outside the runtime's worker threads: a
    /// loop there hands every delivery to another thread, and on two cores
    /// the cross-thread wakeups cost a quarter of the drain rate. Dropping
    /// the `run` future stops the worker at once, as an abort would.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let (stop, stopped) = oneshot::channel::<()>();
        let mut worker = JoinSet::new();
        worker.spawn(self.serve(async {
            let _ = stopped.await;
        }));
        let joined = tokio::select! {
            joined = worker.join_next() => joined,
            () = shutdown => {
                let _ = stop.send(());
                worker.join_next().await
            }
        };
        match joined {
            Some(Ok(ended)) => ended,
            Some(Err(err)) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // Cancelled: only when the runtime shuts down, which drops this
            // future too; there is no one left to tell.
            Some(Err(_)) | None => Ok(()),
        }
    }

    /// [`Worker::run`]'s loop, on a runtime task of its own.
    async fn serve(mut self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        if self.config.queues.is_empty() {
            return Err(Error::NoQueues);
        }
        // Quorum queues are declared with the limit this worker applies,
        // so that the broker's own limit never acts first.
        let limit = self.config.delivery_limit.max(1);
        let topology = std::mem::take(&mut self.config.topology);
        self.config.topology = topology.delivery_limit(limit);
        for queue in self.config.consumed_queues() {
            let def = self.config.topology.queue_def(&queue);
            def.check()
                .map_err(|source| Error::QueueDefinition { queue, source })?;
        }
        let health = Arc::new(Health::default());
        let listener = self.metrics_listener.take();
        let (metrics, _server) =
            MetricsServer::serve(listener, self.config.metrics_addr, &health).await?;
        let config = &self.config;
        let brokers = match BrokerRotation::new(&config.broker_url) {
            Ok(brokers) => brokers,
            Err(err) => {
                let err = Error::InvalidBrokerUrl(err);
                error!(error = %ErrorChain(&err), "worker stopped: waiting cannot mend this");
                return Err(err);
            }
        };
        let remote_stop = Arc::new(Notify::new());
        let shutdown = async {
            tokio::select! {
                () = shutdown => {}
                () = remote_stop.notified() => {}
            }
        };
        let mut shutdown = std::pin::pin!(shutdown);
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let tally = Arc::new(Tally::default());
        let events = EventSwitch::new(config.task_events);
        let event_clock = Arc::new(AtomicU64::new(0));
        let node = node_name();
        let identity = config
            .heartbeat_interval
            .map(|_| Arc::new(Identity::new(config, node.clone(), Arc::clone(&tally))));
        let rate_limits = RateLimits::new(&config.rate_limits, &self.registry.names());
        let rate_limits = Arc::new(rate_limits);
        let shared = Shared {
            registry: &self.registry,
            brokers: &brokers,
            node,
            health: &health,
            metrics: &metrics,
            tally: &tally,
            identity: identity.as_ref(),
            events: &events,
            event_clock: &event_clock,
            stop: &remote_stop,
            revoked: &Arc::default(),
            rate_limits: &rate_limits,
            started: std::time::Instant::now(),
        };
        let mut failures = 0;
        loop {
            let opened = tokio::select! {
                () = &mut shutdown => break,
                opened = tokio::time::timeout(
                    config.connect_timeout,
                    Session::open(config, &shared),
                ) => opened.unwrap_or(Err(Error::Stalled { after: config.connect_timeout })),
            };
            let err = match opened {
                Ok(session) => {
                    if failures > 0 {
                        info!("reconnected to the broker");
                    }
                    failures = 0;
                    info!(
                        queues = ?config.queues, concurrency = config.concurrency,
                        tasks = ?self.registry.names(), "worker ready"
                    );
                    match session
                        .run(config, &shared, &slots, shutdown.as_mut())
                        .await
                    {
                        Ended::Shutdown => break,
                        Ended::Lost(err) => err,
                    }
                }
                Err(err) => err,
            };
            if !err.can_be_recovered() {
                error!(error = %ErrorChain(&err), "worker stopped: waiting cannot mend this");
                return Err(err);
            }
            let delay = config.reconnect.delay(failures);
            failures = failures.saturating_add(1);
            warn!(error = %ErrorChain(&err), retry_in = ?delay, "lost the broker connection, its channel or a consumer; reconnecting");
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
        info!("worker stopped");
        Ok(())
    }
}
