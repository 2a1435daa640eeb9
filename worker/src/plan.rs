//! The one place that decides a delivery's fate.
//!
//! [`plan`] is a pure function: it takes everything known about a delivery
//! ([`Facts`]: the decoded message or why it could not be decoded, the
//! time, how often it was delivered, the handler's outcome once it ran, the
//! retry policy) and returns a [`Plan`]. The dispatcher only carries plans
//! out; the property tests call this same function.

use std::time::Duration;

use celeriac_shared::{ResultMessage, TaskMessage, delay_until};
use chrono::{DateTime, Utc};

use crate::RetryPolicy;
use crate::TaskError;
use crate::outcome::Outcome;

/// Everything known about one delivery when its fate is decided.
#[derive(Debug)]
pub(crate) struct Facts<'a> {
    /// The decoded message; `None` when it could not be decoded (the
    /// outcome is then [`Outcome::Undecodable`]).
    pub(crate) message: Option<&'a TaskMessage>,
    /// Who waits for the result: `(reply_to, task_id)`.
    pub(crate) caller: Option<(&'a str, &'a str)>,
    /// Now, for expiry and eta.
    pub(crate) now: DateTime<Utc>,
    /// How often the message was delivered before.
    pub(crate) deliveries: Deliveries,
    /// Deliveries after which a message is dead-lettered unrun.
    pub(crate) delivery_limit: u32,
    /// The task's retry policy.
    pub(crate) policy: &'a RetryPolicy,
    /// Whether the task id is revoked.
    pub(crate) revoked: bool,
    /// How handling ended, once the handler ran or was skipped; `None`
    /// before.
    pub(crate) outcome: Option<&'a Outcome>,
}

/// What the broker and the message's headers say about earlier
/// deliveries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Deliveries {
    /// The broker's `redelivered` flag.
    pub(crate) redelivered: bool,
    /// A quorum queue's `x-delivery-count`, if present.
    pub(crate) quorum_count: Option<u32>,
    /// celeriac's own count on classic queues (`x-celeriac-deliveries`),
    /// 0 when absent.
    pub(crate) counted: u32,
}

/// What happens to a delivery.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Run the handler (`redelivered`: the message was delivered before),
    /// then plan again with its outcome. The message stays unacknowledged
    /// while it runs.
    Run {
        /// Whether the handler is told this is a redelivery.
        redelivered: bool,
    },
    /// Do not run the handler: plan again with this outcome (the task
    /// expired, or was delivered too often).
    Skip(Outcome),
    /// The task is due later: publish a copy through the delay topology
    /// that arrives at its eta, wait for the broker's confirm, then
    /// acknowledge the original. Nothing runs now and nobody is answered.
    Postpone {
        /// How long the copy waits.
        delay: Duration,
    },
    /// The message was redelivered on a classic queue: publish a copy with
    /// the delivery count `deliveries` to the back of its queue, wait for
    /// the confirm, then acknowledge the original, so a message that
    /// crashes every worker is dead-lettered once the count reaches the
    /// limit.
    Requeue {
        /// The delivery count the copy carries.
        deliveries: u32,
    },
    /// Done: send the reply (if any), then acknowledge the message.
    Ack {
        /// The final state for a waiting caller.
        reply: Option<Reply>,
    },
    /// Publish a copy with `retries + 1` through the delay topology, wait
    /// for its confirm, send the reply (a `RETRY` state), then acknowledge
    /// the original.
    Retry {
        /// How long the copy waits.
        delay: Duration,
        /// The `RETRY` state for a waiting caller.
        reply: Option<Reply>,
    },
    /// Publish the message byte for byte with the reason in its headers to
    /// its queue's dead-letter queue, wait for the confirm, send the reply
    /// (the failure), then acknowledge the original.
    DeadLetter {
        /// The reason written into the dead letter's headers.
        reason: &'static str,
        /// The failure for a waiting caller.
        reply: Option<Reply>,
    },
}

/// A result for the caller's reply queue.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The caller's reply queue.
    pub(crate) reply_to: String,
    /// What it is told.
    pub(crate) result: ResultMessage,
}

/// The fate of a message whose handling ended, for logs, spans and
/// metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Acknowledged: the message is done.
    Ack,
    /// Retried through the broker-side delay.
    Retry {
        /// How long the copy waits in the delay topology.
        delay: Duration,
    },
    /// Sent to the dead-letter queue.
    DeadLetter {
        /// The reason written into the dead letter's headers.
        reason: &'static str,
    },
}

/// Decides what happens to a delivery, given everything known about it.
pub(crate) fn plan(facts: &Facts<'_>) -> Plan {
    let Some(outcome) = facts.outcome else {
        return before_running(facts);
    };
    let retries = facts.message.map_or(0, |m| m.headers.retries);
    let disposition = disposition(outcome, retries, facts.policy);
    let reply = facts.caller.map(|(reply_to, task_id)| {
        let task = facts.message.map_or("", TaskMessage::task);
        let result = match disposition {
            Disposition::Retry { .. } => outcome.retry_message(task_id, task),
            Disposition::Ack | Disposition::DeadLetter { .. } => {
                outcome.result_message(task_id, task)
            }
        };
        Reply {
            reply_to: reply_to.to_owned(),
            result,
        }
    });
    match disposition {
        Disposition::Ack => Plan::Ack { reply },
        Disposition::Retry { delay } => Plan::Retry { delay, reply },
        Disposition::DeadLetter { reason } => Plan::DeadLetter { reason, reply },
    }
}

/// Expired tasks are skipped, tasks due later postponed, redeliveries
/// counted against the limit; the rest run.
fn before_running(facts: &Facts<'_>) -> Plan {
    let Some(message) = facts.message else {
        unreachable!("an undecodable message always comes with its outcome")
    };
    if facts.revoked {
        return Plan::Skip(Outcome::Revoked { terminated: false });
    }
    if message.headers.expires.is_some_and(|at| at <= facts.now) {
        return Plan::Skip(Outcome::Expired);
    }
    if let Some(seconds) = message
        .headers
        .eta
        .and_then(|eta| delay_until(eta.to_utc(), facts.now))
    {
        return Plan::Postpone {
            delay: Duration::from_secs(seconds),
        };
    }
    let deliveries = facts.deliveries;
    if let Some(count) = deliveries.quorum_count {
        return match count >= facts.delivery_limit {
            true => Plan::Skip(Outcome::DeliveryLimit(count + 1)),
            false => Plan::Run { redelivered: true },
        };
    }
    if !deliveries.redelivered {
        return Plan::Run {
            redelivered: deliveries.counted > 0,
        };
    }
    let count = deliveries.counted + 1;
    if count >= facts.delivery_limit {
        return Plan::Skip(Outcome::DeliveryLimit(count + 1));
    }
    Plan::Requeue { deliveries: count }
}

/// The fate of a message whose handling ended with `outcome`, after
/// `retries` retries, under `policy`.
pub(crate) fn disposition(outcome: &Outcome, retries: u32, policy: &RetryPolicy) -> Disposition {
    match outcome {
        Outcome::Succeeded(_) | Outcome::Expired | Outcome::Revoked { .. } => Disposition::Ack,
        Outcome::Failed(TaskError::Retry { countdown, .. }) => retry(retries, policy, *countdown),
        Outcome::Failed(TaskError::Reject { .. }) => Disposition::DeadLetter { reason: "rejected" },
        Outcome::Failed(TaskError::Failed { .. }) | Outcome::Panicked(_) | Outcome::TimedOut(_) => {
            if policy.retry_unexpected {
                retry(retries, policy, None)
            } else {
                Disposition::DeadLetter { reason: "failed" }
            }
        }
        Outcome::DeliveryLimit(_) => Disposition::DeadLetter {
            reason: "delivery limit",
        },
        Outcome::UnknownTask => Disposition::DeadLetter {
            reason: "unknown task",
        },
        Outcome::BadArguments(_) => Disposition::DeadLetter {
            reason: "bad arguments",
        },
        Outcome::Undecodable(_) => Disposition::DeadLetter {
            reason: "undecodable",
        },
    }
}

fn retry(retries: u32, policy: &RetryPolicy, countdown: Option<Duration>) -> Disposition {
    if retries >= policy.max_retries {
        return Disposition::DeadLetter {
            reason: "max retries exceeded",
        };
    }
    let delay = countdown.unwrap_or_else(|| policy.backoff.delay(retries));
    Disposition::Retry { delay }
}

impl Plan {
    /// The fate of a finished message; `None` for the plans that come
    /// before the handler's outcome.
    pub(crate) fn disposition(&self) -> Option<Disposition> {
        match self {
            Plan::Ack { .. } => Some(Disposition::Ack),
            Plan::Retry { delay, .. } => Some(Disposition::Retry { delay: *delay }),
            Plan::DeadLetter { reason, .. } => Some(Disposition::DeadLetter { reason }),
            Plan::Run { .. } | Plan::Skip(_) | Plan::Postpone { .. } | Plan::Requeue { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    fn ok() -> Outcome {
        Outcome::Succeeded(RawValue::from_string("1".into()).unwrap())
    }

    #[test]
    fn success_and_expiry_are_acknowledged() {
        let policy = RetryPolicy::default();
        assert_eq!(disposition(&ok(), 0, &policy), Disposition::Ack);
        assert_eq!(disposition(&Outcome::Expired, 0, &policy), Disposition::Ack);
    }

    #[test]
    fn expected_and_unexpected_failures_retry_until_the_limit() {
        let policy = RetryPolicy::default();
        let countdown = Outcome::Failed(TaskError::retry_after("x", Duration::from_secs(7)));
        assert_eq!(
            disposition(&countdown, 2, &policy),
            Disposition::Retry {
                delay: Duration::from_secs(7)
            }
        );
        for outcome in [
            Outcome::Failed(TaskError::failed("x")),
            Outcome::Panicked("x".into()),
            Outcome::TimedOut(Duration::from_secs(1)),
        ] {
            assert!(matches!(
                disposition(&outcome, 0, &policy),
                Disposition::Retry { .. }
            ));
            assert_eq!(
                disposition(&outcome, 3, &policy),
                Disposition::DeadLetter {
                    reason: "max retries exceeded"
                }
            );
        }
        let strict = RetryPolicy {
            retry_unexpected: false,
            ..RetryPolicy::default()
        };
        assert_eq!(
            disposition(&Outcome::Panicked("x".into()), 0, &strict),
            Disposition::DeadLetter { reason: "failed" }
        );
    }

    #[test]
    fn unusable_and_rejected_messages_are_dead_lettered_at_once() {
        let policy = RetryPolicy::default();
        for (outcome, reason) in [
            (Outcome::Failed(TaskError::reject("x")), "rejected"),
            (Outcome::UnknownTask, "unknown task"),
            (Outcome::DeliveryLimit(6), "delivery limit"),
        ] {
            assert_eq!(
                disposition(&outcome, 0, &policy),
                Disposition::DeadLetter { reason }
            );
        }
    }
}
