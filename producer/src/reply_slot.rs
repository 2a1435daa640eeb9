//! Where in a message the producer's reply queue goes, and whose result
//! its handle waits for.

use celeriac_shared::TaskMessage;
use serde_json::Value;

/// Where the reply queue is written, so that a result comes back to the
/// sending producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplySlot {
    /// The message's own `reply_to`: its own result.
    Message,
    /// The `reply_to` option of the chain's last step (the first element
    /// of the reversed `embed.chain`): the chain's result, and any step's
    /// failure (workers send it to every remaining step).
    ChainLast,
    /// The `reply_to` option of a chord join's body (its `body` keyword
    /// argument): the chord's result.
    ChordBody,
}

impl ReplySlot {
    /// Writes `queue` where this slot says.
    pub(crate) fn place(self, message: &mut TaskMessage, queue: &str) {
        let reply_to = Value::String(queue.to_owned());
        match self {
            ReplySlot::Message => message.reply_to = Some(queue.to_owned()),
            ReplySlot::ChainLast => {
                let options = chain_last(message)
                    .and_then(|step| step.get_mut("options"))
                    .and_then(Value::as_object_mut);
                if let Some(options) = options {
                    options.insert("reply_to".into(), reply_to);
                }
            }
            ReplySlot::ChordBody => {
                let options = message
                    .kwargs
                    .get_mut("body")
                    .and_then(|body| body.get_mut("options"))
                    .and_then(Value::as_object_mut);
                if let Some(options) = options {
                    options.insert("reply_to".into(), reply_to);
                }
            }
        }
    }

    /// The id of the task whose result comes back.
    pub(crate) fn task_id(self, message: &mut TaskMessage) -> String {
        let frozen = |signature: Option<&Value>| {
            signature
                .and_then(|s| s.pointer("/options/task_id"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        match self {
            ReplySlot::Message => None,
            ReplySlot::ChainLast => frozen(chain_last(message).map(|s| &*s)),
            ReplySlot::ChordBody => frozen(message.kwargs.get("body")),
        }
        .unwrap_or_else(|| message.id().to_owned())
    }
}

fn chain_last(message: &mut TaskMessage) -> Option<&mut Value> {
    message.embed.chain.as_mut()?.as_array_mut()?.first_mut()
}
