//! The dashboard as a value: its state, its background work, its router.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::DashboardConfig;
use super::management_api::ManagementApi;
use super::overview::Overview;
use super::routes::router;
use super::sampler::Sampler;
use super::security::Guard;
use super::task_list::{MAX_TASKS, TaskStore};
use super::throughput::Throughput;
use super::worker_events::consume_worker_events;
use super::worker_list::WorkerList;
use celeriac_producer::Producer;

use crate::{DeadLetters, Error};

/// A web dashboard of queues, workers and dead letters, over a
/// [`Producer`]'s connection.
///
/// [`Dashboard::router`] is the whole app as an axum [`Router`](axum::Router),
/// which tests call without a server; [`Dashboard::start`] starts the
/// background work that feeds it (sampling queue counts every
/// [`DashboardConfig::refresh`], listening to worker heartbeats and task
/// events);
/// [`Dashboard::serve`] does both on a listener until shutdown.
///
/// ```no_run
/// use celeriac_admin::{Dashboard, DashboardConfig};
/// use celeriac_producer::{Producer, ProducerConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let producer = Producer::connect(ProducerConfig::default()).await?;
/// let dashboard = Dashboard::new(&producer, DashboardConfig::default());
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// dashboard.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Dashboard {
    pub(crate) inner: Arc<Inner>,
}

/// What the handlers share.
pub(crate) struct Inner {
    pub(crate) config: DashboardConfig,
    /// Takes and keeps the snapshots.
    pub(crate) sampler: Arc<Sampler>,
    /// Lists, replays and deletes dead letters (with the library's
    /// guarantees: nothing lost).
    pub(crate) dead: DeadLetters,
    /// The token and the CSRF secret.
    pub(crate) guard: Guard,
    /// The tasks heard of in task events, fed by the events consumer.
    pub(crate) tasks: Arc<TaskStore>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("queues", &self.inner.config.queues)
            .field("guard", &self.inner.guard)
            .finish_non_exhaustive()
    }
}

/// The dashboard's background tasks; they stop when this is dropped.
#[derive(Debug)]
pub struct Running {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Dashboard {
    /// A dashboard of `config`'s queues over `producer`'s connection.
    /// Nothing runs until [`Dashboard::start`] or [`Dashboard::serve`].
    pub fn new(producer: &Producer, config: DashboardConfig) -> Self {
        let broker = &producer.config().broker_url;
        let management = config
            .management_url
            .as_deref()
            .and_then(|url| ManagementApi::new(url, broker));
        let sampler = Sampler {
            producer: producer.clone(),
            management,
            workers: Arc::new(Mutex::new(WorkerList::default())),
            overview: RwLock::new(Overview::default()),
            throughput: Mutex::new(Throughput::new(config.history)),
            delays: Mutex::new(None),
            config: config.clone(),
        };
        let inner = Inner {
            guard: Guard::new(config.token.clone()),
            sampler: Arc::new(sampler),
            dead: DeadLetters::new(producer),
            tasks: Arc::new(TaskStore::new(MAX_TASKS)),
            config,
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The app: every page, fragment, JSON endpoint and action.
    pub fn router(&self) -> axum::Router {
        router(Arc::clone(&self.inner))
    }

    /// Starts listening to worker and task events and sampling the
    /// queues; both stop when the returned value is dropped.
    pub fn start(&self) -> Running {
        let sampler = Arc::clone(&self.inner.sampler);
        let events = consume_worker_events(
            sampler.producer.clone(),
            Arc::clone(&sampler.workers),
            Arc::clone(&self.inner.tasks),
        );
        Running {
            tasks: vec![tokio::spawn(events), tokio::spawn(sampler.run())],
        }
    }

    /// Takes a sample of the queues and workers now (the background work
    /// does this every refresh).
    pub async fn refresh(&self) {
        self.inner.sampler.sample().await;
    }

    /// Binds `addr` for [`Dashboard::serve`]. Refuses
    /// ([`Error::Unprotected`]) an address that is not a loopback one
    /// unless [`DashboardConfig::token`] is set.
    pub async fn bind(&self, addr: SocketAddr) -> Result<TcpListener, Error> {
        let protected = self
            .inner
            .config
            .token
            .as_deref()
            .is_some_and(|t| !t.is_empty());
        if !addr.ip().is_loopback() && !protected {
            return Err(Error::Unprotected { addr });
        }
        TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Listen { addr, source })
    }

    /// Serves the dashboard on `listener` until `shutdown` completes,
    /// after a first sample (so the first page shown has numbers). Open
    /// event streams (`/tasks/events`) end when `shutdown` completes, so
    /// that the graceful shutdown does not wait for the pages left open.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.refresh().await;
        let _running = self.start();
        let tasks = Arc::clone(&self.inner.tasks);
        let shutdown = async move {
            shutdown.await;
            tasks.close();
        };
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}
