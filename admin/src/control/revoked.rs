//! `revoke`: a revocation that sticks (the stream) and Celery's `revoke`
//! command (for the workers running now, Python ones included).

use celeriac_shared::{REVOCATION_STREAM, Revocation, check_confirm, declare_revocation_stream};
use lapin::options::BasicPublishOptions;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Control, Replies};
use crate::Error;

/// What [`Control::revoke`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Revoked {
    /// The revoked task ids.
    pub task_ids: Vec<String>,
    /// Whether running tasks with these ids are cancelled too.
    pub terminate: bool,
    /// The stream the revocation was appended to ([`REVOCATION_STREAM`]).
    pub stream: &'static str,
    /// The workers that acknowledged Celery's `revoke` command, with their
    /// replies, in the order they arrived.
    pub replies: Replies,
}

impl Control {
    /// Revokes `task_ids` (and with `terminate`, cancels those running):
    /// appends a [`Revocation`] to the stream [`REVOCATION_STREAM`] and
    /// waits for the broker's confirm, so every celeriac worker skips the
    /// tasks, including one started later; then broadcasts Celery's
    /// `revoke` command (`{"task_id": [...], "terminate", "signal":
    /// "SIGTERM"}`) to the addressed workers, so Python workers running now
    /// skip them too, and collects their acknowledgements for
    /// [`Control::timeout`]. Nothing is sent for an empty list.
    pub async fn revoke(&self, task_ids: &[String], terminate: bool) -> Result<Revoked, Error> {
        let mut revoked = Revoked {
            task_ids: task_ids.to_vec(),
            terminate,
            stream: REVOCATION_STREAM,
            replies: Replies::new(),
        };
        if task_ids.is_empty() {
            return Ok(revoked);
        }
        self.append(&Revocation::new(revoked.task_ids.clone(), terminate))
            .await?;
        let mut arguments = Map::new();
        arguments.insert("task_id".into(), json!(task_ids));
        arguments.insert("terminate".into(), Value::Bool(terminate));
        arguments.insert("signal".into(), json!("SIGTERM"));
        revoked.replies = self.command("revoke", arguments).await?;
        Ok(revoked)
    }

    /// Appends `revocation` to the stream, declared first (on a channel of
    /// its own, so a refused declaration closes no shared channel), and
    /// waits for the broker's confirm.
    async fn append(&self, revocation: &Revocation) -> Result<(), Error> {
        let channel = self.producer.open_channel().await?;
        let declared = declare_revocation_stream(&channel).await;
        let _ = channel.close(200, "OK".into()).await;
        declared?;
        let (body, properties) = revocation.encode()?;
        let timeout = self.producer.config().send_timeout;
        let publish = async {
            let channel = self.producer.confirm_channel().await?;
            let options = BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            };
            let confirm = channel
                .basic_publish(
                    "".into(),
                    REVOCATION_STREAM.into(),
                    options,
                    &body,
                    properties,
                )
                .await
                .map_err(Error::amqp("basic.publish"))?;
            confirm.await.map_err(Error::amqp("publisher confirm"))
        };
        let confirmation =
            tokio::time::timeout(timeout, publish)
                .await
                .map_err(|_| Error::Unconfirmed {
                    what: "revocation",
                    timeout,
                })??;
        check_confirm(confirmation).map_err(Error::RevocationRefused)
    }
}
