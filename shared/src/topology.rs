//! The exchanges and queues producers and workers declare, and where a
//! queue's messages are published.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::message::short_string;
use crate::{
    CHORD_QUEUE, DEFAULT_DELIVERY_LIMIT, DeadLetterRetention, Error, QueueType, QuorumConflict,
    json_to_field_table,
};

/// An exchange type celeriac declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeType {
    /// Routes on an exact routing key. Celery's default.
    #[default]
    Direct,
    /// Routes on patterns: `*` one word, `#` zero or more.
    Topic,
    /// Broadcasts to every bound queue.
    Fanout,
}

/// An exchange: name and type; always durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeDef {
    /// The exchange name.
    pub name: String,
    /// The exchange type. Defaults to direct.
    #[serde(default, rename = "type")]
    pub kind: ExchangeType,
}

/// A queue, the exchange it is bound to and how.
///
/// [`QueueDef::new`] gives Celery's default shape for a queue named `q`: a
/// durable classic queue `q` bound with routing key `q` to a durable direct
/// exchange `q`, without arguments. A Python Celery app declaring the same
/// queue agrees with it, so neither side gets `PRECONDITION_FAILED`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueDef {
    /// The queue name.
    pub name: String,
    /// The exchange the queue is bound to. Defaults to a direct exchange
    /// named after the queue.
    #[serde(default)]
    pub exchange: Option<ExchangeDef>,
    /// The binding key (for topic exchanges a pattern) and the routing key
    /// messages for this queue are published with. Defaults to the queue
    /// name.
    #[serde(default)]
    pub routing_key: Option<String>,
    /// Whether the queue survives a broker restart. Defaults to true.
    #[serde(default = "yes")]
    pub durable: bool,
    /// Classic or quorum. Defaults to none: the topology's default queue
    /// type ([`Topology::default_queue_type`]; in `celeriac.toml` the
    /// top-level `queue_type`), classic unless set.
    #[serde(default)]
    pub queue_type: Option<QueueType>,
    /// `x-max-priority`, enabling message priorities 0..=N on a classic
    /// queue. Defaults to none.
    #[serde(default)]
    pub max_priority: Option<u8>,
    /// Other queue arguments (`x-message-ttl`, `x-dead-letter-exchange`,
    /// ...). Defaults to none.
    #[serde(default)]
    pub arguments: Map<String, Value>,
    /// The retention of this queue's dead-letter queue `<name>.dead`,
    /// overriding the topology's default. Defaults to none (the
    /// topology's default applies).
    #[serde(default)]
    pub dead_letters: Option<DeadLetterRetention>,
}

fn yes() -> bool {
    true
}

/// Where a message for a queue is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The exchange name (`""` for the default exchange).
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
}

impl QueueDef {
    /// Celery's default queue shape for `name` (see the type's docs).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            exchange: None,
            routing_key: None,
            durable: true,
            queue_type: None,
            max_priority: None,
            arguments: Map::new(),
            dead_letters: None,
        }
    }

    /// Binds the queue to `exchange` of type `kind`.
    pub fn exchange(mut self, exchange: impl Into<String>, kind: ExchangeType) -> Self {
        self.exchange = Some(ExchangeDef {
            name: exchange.into(),
            kind,
        });
        self
    }

    /// Sets the binding and routing key.
    pub fn routing_key(mut self, key: impl Into<String>) -> Self {
        self.routing_key = Some(key.into());
        self
    }

    /// Makes the queue a quorum queue.
    pub fn quorum(mut self) -> Self {
        self.queue_type = Some(QueueType::Quorum);
        self
    }

    /// Makes the queue a classic queue, whatever the topology's default.
    pub fn classic(mut self) -> Self {
        self.queue_type = Some(QueueType::Classic);
        self
    }

    /// The queue's type: its own, else classic (a [`Topology`] fills in
    /// its default in [`Topology::queue_def`]).
    pub fn resolved_queue_type(&self) -> QueueType {
        self.queue_type.unwrap_or_default()
    }

    /// Refuses a definition its queue type cannot have (see
    /// [`QueueType::check`]).
    pub fn check(&self) -> Result<(), QuorumConflict> {
        self.resolved_queue_type()
            .check(self.durable, self.max_priority)
    }

    /// Enables priorities up to `max`.
    pub fn max_priority(mut self, max: u8) -> Self {
        self.max_priority = Some(max);
        self
    }

    /// Adds a queue argument.
    pub fn argument(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.arguments.insert(key.into(), value.into());
        self
    }

    /// The exchange, defaulted to a direct exchange named after the queue.
    pub fn exchange_def(&self) -> ExchangeDef {
        self.exchange.clone().unwrap_or_else(|| ExchangeDef {
            name: self.name.clone(),
            kind: ExchangeType::Direct,
        })
    }

    /// The routing key, defaulted to the queue name.
    pub fn binding_key(&self) -> &str {
        self.routing_key.as_deref().unwrap_or(&self.name)
    }

    /// Where messages for this queue are published.
    pub fn destination(&self) -> Destination {
        Destination {
            exchange: self.exchange_def().name,
            routing_key: self.binding_key().to_owned(),
        }
    }

    /// The queue arguments sent with `queue.declare`.
    pub fn declare_arguments(&self) -> FieldTable {
        let mut table = json_to_field_table(&self.arguments);
        self.resolved_queue_type().insert_argument(&mut table);
        if let Some(max) = self.max_priority {
            table.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(max));
        }
        table
    }

    /// Declares the exchange, the queue and the binding. Idempotent.
    pub async fn declare(&self, channel: &Channel) -> Result<(), Error> {
        let exchange = self.exchange_def();
        let queue_name = short_string("queue", &self.name)?;
        let exchange_name = short_string("exchange", &exchange.name)?;
        let key = short_string("routing key", self.binding_key())?;
        let kind = match exchange.kind {
            ExchangeType::Direct => ExchangeKind::Direct,
            ExchangeType::Topic => ExchangeKind::Topic,
            ExchangeType::Fanout => ExchangeKind::Fanout,
        };
        let declare_error = |what: String| move |source| Error::Declare { what, source };
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(exchange_name.clone(), kind, durable, FieldTable::default())
            .await
            .map_err(declare_error(format!("exchange `{}`", exchange.name)))?;
        let options = QueueDeclareOptions {
            durable: self.durable,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(queue_name.clone(), options, self.declare_arguments())
            .await
            .map_err(declare_error(format!("queue `{}`", self.name)))?;
        channel
            .queue_bind(
                queue_name,
                exchange_name,
                key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(declare_error(format!("binding of queue `{}`", self.name)))?;
        Ok(())
    }
}

/// The queues an application uses. A queue that is not listed gets
/// Celery's default shape ([`QueueDef::new`]), of the topology's default
/// queue type.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    queues: Vec<QueueDef>,
    /// The retention of dead-letter queues whose queue sets none.
    dead_letters: DeadLetterRetention,
    /// The type of every queue whose definition sets none: the one switch
    /// that makes all task queues and their dead-letter queues quorum.
    queue_type: QueueType,
    /// The `x-delivery-limit` of quorum task queues, which must be the
    /// workers' own delivery limit (and the same for every producer and
    /// worker, or the broker refuses the second declaration).
    delivery_limit: u32,
}

impl Default for Topology {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Topology {
    /// A topology with these queue definitions, unlimited dead-letter
    /// retention, classic queues by default and the default delivery
    /// limit ([`DEFAULT_DELIVERY_LIMIT`]).
    pub fn new(queues: Vec<QueueDef>) -> Self {
        Self {
            queues,
            dead_letters: DeadLetterRetention::UNLIMITED,
            queue_type: QueueType::Classic,
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
        }
    }

    /// Sets the type of every queue whose definition sets none, their
    /// dead-letter queues included. Defaults to [`QueueType::Classic`].
    pub fn default_queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// Sets the `x-delivery-limit` quorum task queues are declared with:
    /// the workers' delivery limit. Defaults to
    /// [`DEFAULT_DELIVERY_LIMIT`].
    pub fn delivery_limit(mut self, limit: u32) -> Self {
        self.delivery_limit = limit;
        self
    }

    /// The type of `queue` and of its dead-letter queue: its definition's,
    /// else the topology's default.
    pub fn queue_type(&self, queue: &str) -> QueueType {
        self.queues
            .iter()
            .find(|q| q.name == queue)
            .and_then(|q| q.queue_type)
            .unwrap_or(self.queue_type)
    }

    /// Sets the retention of every dead-letter queue whose queue does not
    /// set its own. Defaults to [`DeadLetterRetention::UNLIMITED`].
    pub fn dead_letter_retention_default(mut self, retention: DeadLetterRetention) -> Self {
        self.dead_letters = retention;
        self
    }

    /// The retention of `queue`'s dead-letter queue: the queue's own, else
    /// the topology's default. The chord queue ([`CHORD_QUEUE`]) is shared
    /// by every worker of a vhost, which must declare its dead-letter queue
    /// alike: only its own entry sets a retention there.
    pub fn dead_letter_retention(&self, queue: &str) -> DeadLetterRetention {
        let own = self
            .queues
            .iter()
            .find(|q| q.name == queue)
            .and_then(|q| q.dead_letters);
        match (own, queue) {
            (Some(retention), _) => retention,
            (None, CHORD_QUEUE) => DeadLetterRetention::UNLIMITED,
            (None, _) => self.dead_letters,
        }
    }

    /// Adds a queue definition.
    pub fn queue(mut self, queue: QueueDef) -> Self {
        self.queues.push(queue);
        self
    }

    /// The listed queues.
    pub fn queues(&self) -> &[QueueDef] {
        &self.queues
    }

    /// The definition of queue `name` as it is declared: the listed one,
    /// or the default shape, with its queue type resolved. A quorum queue
    /// also gets its delivery limit and dead-letter exchange (see
    /// `QueueType`'s module), unless its `arguments` set them.
    pub fn queue_def(&self, name: &str) -> QueueDef {
        let mut def = self
            .queues
            .iter()
            .find(|q| q.name == name)
            .cloned()
            .unwrap_or_else(|| QueueDef::new(name));
        let queue_type = *def.queue_type.get_or_insert(self.queue_type);
        for (key, value) in queue_type.task_queue_arguments(name, self.delivery_limit) {
            def.arguments.entry(key).or_insert(value);
        }
        def
    }

    /// Declares every listed queue, as [`Topology::queue_def`] resolves
    /// it. Idempotent.
    pub async fn declare(&self, channel: &Channel) -> Result<(), Error> {
        for queue in &self.queues {
            self.queue_def(&queue.name).declare(channel).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlisted_queue_gets_celerys_default_shape() {
        let q = Topology::default().queue_def("celery");
        assert_eq!(
            q.destination(),
            Destination {
                exchange: "celery".into(),
                routing_key: "celery".into()
            }
        );
        assert!(q.durable);
        assert!(
            q.declare_arguments().inner().is_empty(),
            "Celery declares no arguments"
        );
    }

    #[test]
    fn quorum_and_priority_become_queue_arguments() {
        let q = QueueDef::new("q")
            .quorum()
            .max_priority(9)
            .argument("x-message-ttl", 1000);
        let args = q.declare_arguments();
        assert_eq!(
            args.inner().get("x-queue-type"),
            Some(&AMQPValue::LongString("quorum".into()))
        );
        assert_eq!(
            args.inner().get("x-max-priority"),
            Some(&AMQPValue::ShortShortUInt(9))
        );
        assert_eq!(
            args.inner().get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(1000))
        );
    }

    #[test]
    fn a_queue_retention_beats_the_default_one() {
        let week = DeadLetterRetention {
            max_age: Some(std::time::Duration::from_secs(604_800)),
            max_length: None,
        };
        let mut short = QueueDef::new("short");
        short.dead_letters = Some(DeadLetterRetention {
            max_age: None,
            max_length: Some(10),
        });
        let t = Topology::new(vec![short]).dead_letter_retention_default(week);
        assert_eq!(t.dead_letter_retention("short").max_length, Some(10));
        assert_eq!(t.dead_letter_retention("short").max_age, None);
        assert_eq!(t.dead_letter_retention("other"), week);
        assert_eq!(
            Topology::default().dead_letter_retention("x"),
            DeadLetterRetention::UNLIMITED
        );
    }

    #[test]
    fn a_listed_queue_uses_its_exchange_and_key() {
        let t = Topology::default().queue(
            QueueDef::new("reports")
                .exchange("work", ExchangeType::Topic)
                .routing_key("reports.#"),
        );
        let d = t.queue_def("reports").destination();
        assert_eq!(
            (d.exchange.as_str(), d.routing_key.as_str()),
            ("work", "reports.#")
        );
    }
}
