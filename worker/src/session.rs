//! One connection's life: connect, declare, consume, run tasks until the
//! worker shuts down or the connection is lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use celeriac_shared::{
    BrokerRotation, DeadLetterTopology, DelayTopology, ErrorChain, declare_event_exchange,
};
use futures::StreamExt;
use lapin::options::{BasicCancelOptions, ConfirmSelectOptions};
use lapin::{Connection, ConnectionProperties};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::chord_join::ChordJoiner;
use crate::consumers::{Consumers, DeliveryStream, QueueConsumer, prefetch};
use crate::control::{Control, Panel};
use crate::dispatch::Dispatcher;
use crate::health::Health;
use crate::heartbeat::{Heartbeat, Identity};
use crate::intake::Intake;
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::rate_limiter::RateLimiter;
use crate::rate_limits::RateLimits;
use crate::refiller::Refillers;
use crate::revocations::{RevocationFollower, Revoked};
use crate::tally::Tally;
use crate::task_events::{EventFlusher, EventSwitch, TaskEvents};
use crate::unique_keys::UniqueKeys;
use crate::{Error, Registry, WorkerConfig};

/// What every session of a worker shares.
pub(crate) struct Shared<'a> {
    /// The task handlers.
    pub(crate) registry: &'a Registry,
    /// The broker's addresses, and which one the next session tries
    /// first: each session starts after the address the last one tried,
    /// so a session lost on one node is replaced on the next.
    pub(crate) brokers: &'a BrokerRotation,
    /// This worker's name, written into dead letters.
    pub(crate) node: String,
    /// What `/readyz` reports: each session points it at its connection.
    pub(crate) health: &'a Arc<Health>,
    /// Counts tasks when the worker serves metrics.
    pub(crate) metrics: &'a Option<Arc<Metrics>>,
    /// The counts heartbeats announce, always kept.
    pub(crate) tally: &'a Arc<Tally>,
    /// What heartbeats say, or `None` when they are off.
    pub(crate) identity: Option<&'a Arc<Identity>>,
    /// Whether task events are on.
    pub(crate) events: &'a EventSwitch,
    /// The clock of task events.
    pub(crate) event_clock: &'a Arc<AtomicU64>,
    /// Asks the worker to shut down (the `shutdown` control command).
    pub(crate) stop: &'a Arc<Notify>,
    /// When the worker started.
    pub(crate) started: std::time::Instant,
    /// The revoked task ids, kept across sessions.
    pub(crate) revoked: &'a Arc<Revoked>,
    /// The tasks' rate limits, with the buckets of those per worker, kept
    /// across sessions.
    pub(crate) rate_limits: &'a Arc<RateLimits>,
}

/// What [`start`] opens: the consumers, their deliveries, where added
/// consumers' deliveries arrive, and the dispatcher.
type Started = (
    Arc<Consumers>,
    Intake,
    mpsc::UnboundedReceiver<DeliveryStream>,
    Arc<Dispatcher>,
);

/// How a session ended.
pub(crate) enum Ended {
    /// The worker was asked to shut down; in-flight tasks had their grace
    /// period.
    Shutdown,
    /// The connection or a consumer was lost. In-flight tasks were
    /// abandoned: their acks can no longer reach the broker, which
    /// redelivers their messages.
    Lost(Error),
}

/// A connection consuming the worker's queues.
pub(crate) struct Session {
    connection: Arc<Connection>,
    consumers: Arc<Consumers>,
    deliveries: Intake,
    /// The deliveries of consumers added while the session runs.
    arrivals: mpsc::UnboundedReceiver<DeliveryStream>,
    dispatcher: Arc<Dispatcher>,
    /// The session's heartbeat, when heartbeats are on.
    heartbeat: Option<Heartbeat>,
    /// Answers remote control commands.
    control: Control,
    /// Follows the revocation stream, when the broker lets it.
    revocations: Option<RevocationFollower>,
    /// Stand for election as the refillers of cluster-wide rate limits.
    refillers: Refillers,
}

impl Session {
    /// Connects, declares the delay topology and each queue with its
    /// dead-letter queue and delayed-delivery binding, and starts one
    /// consumer per queue on its own channel with per-consumer prefetch.
    pub(crate) async fn open(config: &WorkerConfig, shared: &Shared<'_>) -> Result<Self, Error> {
        let connection = Arc::new(connect(config, shared.brokers).await?);
        shared.health.connected(connection.status().clone());
        let started = async {
            let revocations = match RevocationFollower::start(
                &connection,
                Arc::clone(shared.revoked),
                &shared.node,
                config.connect_timeout,
            )
            .await
            {
                Ok(follower) => Some(follower),
                Err(err) => {
                    let err = Error::Revocations(Box::new(err));
                    error!(
                        error = %ErrorChain(&err),
                        "running without the revocation stream until the next reconnect: \
                         revocations made meanwhile hold only on the workers that hear them"
                    );
                    None
                }
            };
            let (consumers, deliveries, arrivals, dispatcher) =
                start(&connection, config, shared).await?;
            let heartbeat = match shared.identity {
                Some(identity) => Some(Heartbeat::start(&connection, identity).await?),
                None => None,
            };
            let panel = Arc::new(panel(
                config,
                shared,
                &dispatcher,
                revocations.as_ref(),
                &consumers,
            ));
            let control = Control::start(&connection, panel).await?;
            Ok::<_, Error>((
                consumers,
                deliveries,
                arrivals,
                dispatcher,
                heartbeat,
                control,
                revocations,
            ))
        };
        match started.await {
            Ok((consumers, deliveries, arrivals, dispatcher, heartbeat, control, revocations)) => {
                let channels = consumers
                    .channels()
                    .iter()
                    .map(|c| c.status().clone())
                    .collect();
                shared.health.consuming(channels);
                Ok(Self {
                    refillers: Refillers::start(&connection, shared.rate_limits),
                    connection,
                    consumers,
                    deliveries,
                    arrivals,
                    dispatcher,
                    heartbeat,
                    control,
                    revocations,
                })
            }
            Err(err) => {
                let _ = connection.close(200, "worker setup failed".into()).await;
                Err(err)
            }
        }
    }

    /// Runs tasks (at most as many at once as `slots` has permits) until
    /// `shutdown` completes or the connection is lost.
    pub(crate) async fn run(
        self,
        config: &WorkerConfig,
        shared: &Shared<'_>,
        slots: &Arc<Semaphore>,
        shutdown: Pin<&mut impl Future<Output = ()>>,
    ) -> Ended {
        let Session {
            connection,
            consumers,
            mut deliveries,
            mut arrivals,
            dispatcher,
            heartbeat,
            control,
            revocations,
            refillers,
        } = self;
        let mut in_flight = JoinSet::new();
        let lost = pump(
            (&mut deliveries, &mut arrivals, &consumers),
            &dispatcher,
            slots,
            &mut in_flight,
            shutdown,
        )
        .await;
        shared.health.stopped();
        drop(deliveries);
        let consumers = consumers.take();
        let graceful = lost.is_none();
        let ended = match lost {
            None => {
                stop_consuming(&consumers).await;
                drain(config, &mut in_flight).await;
                Ended::Shutdown
            }
            Some(err) => {
                while in_flight.try_join_next().is_some() {}
                let abandoned = in_flight.len();
                in_flight.abort_all();
                while in_flight.join_next().await.is_some() {}
                if abandoned > 0 {
                    warn!(
                        abandoned,
                        "abandoned in-flight tasks; the broker redelivers them"
                    );
                }
                Ended::Lost(err)
            }
        };
        if let (Some(heartbeat), Some(identity)) = (heartbeat, shared.identity) {
            heartbeat.stop(identity, graceful).await;
        }
        control.stop().await;
        if let Some(revocations) = revocations {
            revocations.stop().await;
        }
        refillers.stop().await;
        close(connection, consumers, dispatcher).await;
        ended
    }
}

async fn stop_consuming(consumers: &[QueueConsumer]) {
    for consumer in consumers {
        let _ = consumer
            .channel
            .basic_cancel(consumer.tag.clone(), BasicCancelOptions::default())
            .await;
    }
}

/// Sends the last acks, closes every channel and then the connection: the
/// broker requeues whatever is still unacknowledged. Each channel is
/// closed before the connection, so that none is left to close itself
/// (when its last handle drops) while the connection is already closing,
/// which lapin would log as a connection error.
async fn close(
    connection: Arc<Connection>,
    consumers: Vec<QueueConsumer>,
    dispatcher: Arc<Dispatcher>,
) {
    for consumer in consumers {
        consumer.acks.close().await;
        let _ = consumer.channel.close(200, "worker shutdown".into()).await;
    }
    dispatcher.publisher.close().await;
    dispatcher.limiter.close().await;
    let flusher = dispatcher.events.take_flusher();
    drop(dispatcher);
    if let Some(flusher) = flusher {
        flusher.stop().await;
    }
    // Bounded: lapin was seen to leave a close unanswered for good.
    let closing = connection.close(200, "worker shutdown".into());
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
}

/// How long the connection's close may wait for the broker's `close-ok`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the session's control commands read and steer.
fn panel(
    config: &WorkerConfig,
    shared: &Shared<'_>,
    dispatcher: &Dispatcher,
    revocations: Option<&RevocationFollower>,
    consumers: &Arc<Consumers>,
) -> Panel {
    let mut registered: Vec<String> = shared
        .registry
        .names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    registered.sort();
    Panel {
        hostname: shared.node.clone(),
        registered,
        registry: shared.registry.clone(),
        topology: config.topology.clone(),
        consumers: Some(Arc::clone(consumers)),
        concurrency: config.concurrency,
        prefetch: prefetch(config),
        active: Arc::clone(&dispatcher.active),
        events: shared.events.clone(),
        tally: Arc::clone(shared.tally),
        stop: Arc::clone(shared.stop),
        started: shared.started,
        clock: AtomicU64::new(0),
        revoked: Arc::clone(shared.revoked),
        revocations: revocations.map(RevocationFollower::publisher),
    }
}

/// Opens the results channel, declares (the rate-limit token queues
/// too), and starts the consumers.
async fn start(
    connection: &Arc<Connection>,
    config: &WorkerConfig,
    shared: &Shared<'_>,
) -> Result<Started, Error> {
    let results = connection
        .create_channel()
        .await
        .map_err(Error::amqp("channel.open"))?;
    results
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(Error::amqp("confirm.select"))?;
    declare(config, connection).await?;
    let limiter = RateLimiter::start(connection, Arc::clone(shared.rate_limits)).await?;
    let events = connection
        .create_channel()
        .await
        .map_err(Error::amqp("channel.open"))?;
    declare_event_exchange(&events).await?;
    let (event_sender, event_flusher) = EventFlusher::start(events);
    let (consumers, streams, arrivals) = Consumers::start(connection, config).await?;
    let deliveries = Intake::new(streams);
    let dispatcher = Arc::new(Dispatcher {
        limiter,
        registry: shared.registry.clone(),
        publisher: Publisher::new(results, config.topology.clone(), Arc::clone(connection)),
        router: config.router.clone(),
        active: Arc::default(),
        revoked: Arc::clone(shared.revoked),
        events: TaskEvents {
            switch: shared.events.clone(),
            batches: event_sender,
            flusher: std::sync::Mutex::new(Some(event_flusher)),
            hostname: shared.node.clone(),
            clock: Arc::clone(shared.event_clock),
        },
        keys: UniqueKeys::new(Arc::clone(connection)),
        joiner: config
            .join_chords
            .then(|| ChordJoiner::new(Arc::clone(connection))),
        max_message_size: config.max_message_size,
        track_started: config.track_started,
        retry: config.retry.clone(),
        delivery_limit: config.delivery_limit.max(1),
        node: shared.node.clone(),
        metrics: shared.metrics.clone(),
        tally: Arc::clone(shared.tally),
        producer_span: config.producer_span,
    });
    Ok((Arc::new(consumers), deliveries, arrivals, dispatcher))
}

/// Connects to the first address of a round of `brokers` that answers,
/// each given [`WorkerConfig::connect_timeout`]; the error of the last
/// address when none does.
async fn connect(config: &WorkerConfig, brokers: &BrokerRotation) -> Result<Connection, Error> {
    let properties = ConnectionProperties::default()
        .with_connection_name(config.connection_name.as_str().into());
    brokers
        .first_answer(config.connect_timeout, |uri| {
            Connection::connect_uri(uri, properties.clone())
        })
        .await
        .map_err(|source| Error::Connect {
            url: config.broker_url.to_string(),
            source,
        })
}

/// Declares the delay topology, then each queue with its dead-letter
/// queue and its binding to the delay topology's delivery exchange.
async fn declare(config: &WorkerConfig, connection: &Connection) -> Result<(), Error> {
    let control = connection
        .create_channel()
        .await
        .map_err(Error::amqp("channel.open"))?;
    config.delay.declare(&control).await?;
    for queue in &config.consumed_queues() {
        config.topology.queue_def(queue).declare(&control).await?;
        DelayTopology::bind_queue(&control, queue).await?;
        let retention = config.topology.dead_letter_retention(queue);
        let queue_type = config.topology.queue_type(queue);
        DeadLetterTopology::declare_with(&control, queue, &retention, queue_type).await?;
    }
    let _ = control.close(200, "OK".into()).await;
    Ok(())
}

/// Takes deliveries while a concurrency slot is free. Returns `None` on
/// shutdown, or why the deliveries stopped.
async fn pump(
    (deliveries, arrivals, consumers): (
        &mut Intake,
        &mut mpsc::UnboundedReceiver<DeliveryStream>,
        &Consumers,
    ),
    dispatcher: &Arc<Dispatcher>,
    slots: &Arc<Semaphore>,
    in_flight: &mut JoinSet<()>,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> Option<Error> {
    loop {
        while in_flight.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = &mut shutdown => return None,
            permit = Arc::clone(slots).acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let delivery = loop {
            tokio::select! {
                () = &mut shutdown => return None,
                Some(added) = arrivals.recv() => deliveries.push(added),
                delivery = deliveries.next(), if !deliveries.is_empty() => break delivery,
            }
        };
        let (source, delivery) = match delivery {
            Some((source, Some(Ok(delivery)))) => (source, delivery),
            Some((_, Some(Err(err)))) => return Some(Error::amqp("basic.consume")(err)),
            Some((source, None)) if consumers.was_cancelled(&source.queue) => {
                info!(queue = %source.queue, "no longer consuming {}", source.queue);
                continue;
            }
            Some((source, None)) => {
                return Some(Error::ConsumerClosed {
                    queue: source.queue.clone(),
                });
            }
            None => continue,
        };
        source
            .acks
            .received(delivery.delivery_tag, delivery.acker.clone());
        let dispatcher = Arc::clone(dispatcher);
        // The dispatch future is large: boxed, it is built once on the
        // heap instead of being copied with the task on spawn and again
        // when the task ends (a measurable share of a drain's CPU).
        in_flight.spawn(async move {
            Box::pin(dispatcher.dispatch(&source, delivery)).await;
            drop(permit);
        });
    }
}

/// Waits up to the grace period for in-flight tasks, then abandons the
/// rest: their messages stay unacknowledged and the broker requeues them
/// when the connection closes.
async fn drain(config: &WorkerConfig, in_flight: &mut JoinSet<()>) {
    while in_flight.try_join_next().is_some() {}
    let running = in_flight.len();
    if running > 0 {
        info!(running, grace = ?config.grace_period, "waiting for in-flight tasks");
    }
    let finished = tokio::time::timeout(config.grace_period, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        warn!(
            unfinished = in_flight.len(),
            "grace period over; requeueing unfinished tasks"
        );
        in_flight.abort_all();
        while in_flight.join_next().await.is_some() {}
    }
}
