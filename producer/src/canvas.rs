//! Celery's canvas from Rust: [`Producer::chain`], [`Producer::group`] and
//! [`Producer::chord`], built from [`Signature`]s (typed with
//! [`Signature::of`], or by name with JSON arguments for tasks defined in
//! Python).

use celeriac_shared::{
    CHORD_JOIN_TASK, CHORD_QUEUE, ChordJoin, MAX_CHAIN_STEPS, RESULTS_QUEUE_EXPIRES, Signature,
    SignatureError, TaskMessage, expire_unused, results_queue,
};
use chrono::Utc;
use futures_util::stream::{StreamExt, TryStreamExt};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::reply_slot::ReplySlot;
use crate::{Error, Group, Producer, TaskHandle};

/// How many header tasks of a chord (or tasks of a group) are sent at
/// once.
const SEND_CONCURRENCY: usize = 256;

impl Producer {
    /// Sends a chain: each step runs after the previous one succeeded,
    /// with its result prepended to its arguments (unless the step is
    /// [`Signature::immutable`]). Returns a handle on the last step's
    /// result; a failure of any step reaches it instead, and the steps
    /// after the failed one do not run. Steps may be Rust or Python tasks.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use celeriac_producer::Producer;
    /// use celeriac_shared::Signature;
    /// use serde_json::{json, Map};
    ///
    /// # async fn run(producer: Producer) -> Result<(), Box<dyn std::error::Error>> {
    /// let add = |x: i64| Signature::named("proj.add", vec![json!(x)], Map::new());
    /// let add_first = Signature::named("proj.add", vec![json!(2), json!(2)], Map::new());
    /// let handle = producer.chain::<i64>(vec![add_first, add(4), add(8)]).await?;
    /// assert_eq!(handle.wait(Duration::from_secs(10)).await?, 16);
    /// # Ok(()) }
    /// ```
    pub async fn chain<O: DeserializeOwned>(
        &self,
        steps: Vec<Signature>,
    ) -> Result<TaskHandle<O>, Error> {
        if steps.len() > MAX_CHAIN_STEPS {
            let steps = steps.len();
            return Err(SignatureError::TooDeep { steps }.into());
        }
        let mut steps: Vec<Signature> = steps.into_iter().map(|s| self.freeze(s)).collect();
        if steps.is_empty() {
            return Err(Error::EmptyWorkflow { what: "chain" });
        }
        let first = steps.remove(0);
        steps.reverse();
        let slot = match steps.is_empty() {
            true => ReplySlot::Message,
            false => ReplySlot::ChainLast,
        };
        let message = first.to_message(None, None, steps, Utc::now())?;
        self.send_message(message, first.queue(), Some(slot)).await
    }

    /// Sends a group: every task at once, their results gathered in order
    /// by the returned [`Group`], as [`Producer::map`] does for one typed
    /// task.
    pub async fn group<O: DeserializeOwned + Send + 'static>(
        &self,
        tasks: Vec<Signature>,
    ) -> Result<Group<O>, Error> {
        let group_id = uuid::Uuid::new_v4().to_string();
        let handles = futures_util::stream::iter(tasks.into_iter().enumerate())
            .map(|(index, task)| {
                let task = self
                    .freeze(task)
                    .option("group_id", group_id.as_str())
                    .option("group_index", index);
                async move {
                    let message = task.to_message(None, None, Vec::new(), Utc::now())?;
                    self.send_message(message, task.queue(), Some(ReplySlot::Message))
                        .await
                }
            })
            .buffered(SEND_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(Group::from_handles(handles))
    }

    /// Sends a chord: the `header` tasks at once, then `body` once with
    /// the header's results in header order (the first failure instead
    /// fails the body's handle with `ChordError`). The join needs no
    /// result backend: it works on RabbitMQ alone, survives workers killed
    /// at any moment (the body then runs at least once), and holds no
    /// message unacknowledged while the header runs. Header tasks may run
    /// on Python workers with Celery's `rpc://` backend. A worker that
    /// joins chords (the default) must consume [`CHORD_QUEUE`].
    pub async fn chord<O: DeserializeOwned>(
        &self,
        header: Vec<Signature>,
        body: Signature,
    ) -> Result<TaskHandle<O>, Error> {
        let chord_id = uuid::Uuid::new_v4().to_string();
        let results = results_queue(&chord_id);
        self.declare_results_queue(&results).await?;
        let body = self.freeze(body);
        let header: Vec<Signature> = header
            .into_iter()
            .enumerate()
            .map(|(index, task)| {
                self.freeze(task)
                    .option("group_id", chord_id.as_str())
                    .option("group_index", index)
                    .option("reply_to", results.as_str())
            })
            .collect();
        let ids = header
            .iter()
            .map(|task| task.task_id().unwrap_or_default().to_owned())
            .collect();
        futures_util::stream::iter(&header)
            .map(|task| async move {
                let message = task.to_message(None, None, Vec::new(), Utc::now())?;
                self.send_message::<Value>(message, task.queue(), None)
                    .await
                    .map(drop)
            })
            .buffer_unordered(SEND_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        let join = ChordJoin {
            chord_id,
            results_queue: results,
            header: ids,
            body,
        };
        let Value::Object(kwargs) = serde_json::to_value(&join).unwrap_or_default() else {
            unreachable!("a ChordJoin is a JSON object")
        };
        let mut message = TaskMessage::new(CHORD_JOIN_TASK, Vec::new(), kwargs);
        message.headers.group = Some(join.chord_id.clone());
        self.send_message(message, Some(CHORD_QUEUE), Some(ReplySlot::ChordBody))
            .await
    }

    /// Gives a signature its task id and, unless it names an exchange, the
    /// queue this producer's router sends its task to.
    fn freeze(&self, signature: Signature) -> Signature {
        let mut signature = signature;
        if signature.task_id().is_none() {
            let id = uuid::Uuid::new_v4().to_string();
            signature = signature.option("task_id", id);
        }
        if signature.queue().is_none() && signature.exchange_and_key().is_none() {
            let queue = self
                .config()
                .router
                .queue_for(&signature.task, None)
                .to_owned();
            signature = signature.option("queue", queue);
        }
        signature
    }

    /// Declares a chord's results queue: durable, deleted by RabbitMQ if
    /// unused for [`RESULTS_QUEUE_EXPIRES`] (a join checks it far more
    /// often).
    async fn declare_results_queue(&self, name: &str) -> Result<(), Error> {
        let channel = self.open_channel().await?;
        let mut arguments = FieldTable::default();
        expire_unused(&mut arguments, RESULTS_QUEUE_EXPIRES);
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(name.into(), options, arguments)
            .await
            .map_err(Error::amqp("queue.declare"));
        let _ = channel.close(200, "declared".into()).await;
        declared.map(drop)
    }
}
