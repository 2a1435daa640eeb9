//! The one place that decides a delivery's fate.
//!
//! [`plan`] is a pure function: it takes everything known about a delivery
//! ([`Facts`]: the decoded message or why it could not be decoded, the
//! time, how often it was delivered, the handler's outcome once it ran, the
//! retry policy) and returns a [`Plan`]. The dispatcher only carries plans
//! out; the property tests call this same function.

use std::time::Duration;

use celeriac_shared::{ResultMessage, TaskMessage, UniqueUntil, delay_until};
use chrono::{DateTime, Utc};

use crate::RetryPolicy;
use crate::TaskError;
use crate::outcome::Outcome;

/// The shortest time a task over its rate limit is sent away for: the
/// delay topology's granularity, which also keeps a task from coming back
/// at once, again and again, while its limit has no token.
pub(crate) const SHORTEST_RATE_LIMIT_DELAY: Duration = Duration::from_secs(1);

/// The most a rate-limited task's delay is lengthened at random, so that
/// tasks turned away by different workers for the same moment do not all
/// come back at once. (Those turned away by one worker are already told
/// to come back a token interval apart.)
pub(crate) const RATE_LIMIT_JITTER: Duration = Duration::from_millis(100);

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
    /// The task is over its rate limit: a token is expected after this
    /// long. `None` when it has no limit, got its token, or was not asked
    /// yet (the limit is asked only when the task would run).
    pub(crate) rate_limited: Option<Duration>,
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
    /// The task would run but is over its rate limit: publish a copy with
    /// the same retries and its `eta` set `delay` from now through the
    /// delay topology, wait for the broker's confirm, then acknowledge the
    /// original. Nothing runs now, nobody is answered, and it counts as
    /// neither a failure nor a retry.
    RateLimited {
        /// How long the copy waits: until a token is expected for it, at
        /// least a second, with a little jitter.
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
        return match (before_running(facts), facts.rate_limited) {
            (Plan::Run { .. }, Some(wait)) => Plan::RateLimited {
                delay: rate_limit_delay(wait),
            },
            (plan, _) => plan,
        };
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
    // A quorum queue counts earlier deliveries itself, and declares the
    // same limit as its `x-delivery-limit`: its count is the only one, so
    // the message runs `delivery_limit` times and is dead-lettered here on
    // the next delivery, the last one the broker allows.
    if let Some(count) = deliveries.quorum_count {
        return match count >= facts.delivery_limit {
            true => Plan::Skip(Outcome::DeliveryLimit(count + 1)),
            false => Plan::Run {
                redelivered: count > 0 || deliveries.redelivered,
            },
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

/// How long a task over its rate limit waits in the delay topology, when
/// a token is expected for it after `wait`: that long, at least
/// [`SHORTEST_RATE_LIMIT_DELAY`], plus up to [`RATE_LIMIT_JITTER`], to the
/// millisecond (the copy is sent with `DelayTopology::precise_route`).
pub(crate) fn rate_limit_delay(wait: Duration) -> Duration {
    let jitter = u64::try_from(RATE_LIMIT_JITTER.as_millis()).unwrap_or(u64::MAX);
    wait.max(SHORTEST_RATE_LIMIT_DELAY) + Duration::from_millis(fastrand::u64(0..=jitter))
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

/// Whether carrying out `plan` lets go of the message's uniqueness key,
/// held until `until`; `ran`: the handler ran for this delivery (so a key
/// held until the task started was released when it did).
///
/// A key held until the task started is released when it is about to
/// run; one held until it finished, once its outcome is final: acked
/// (success, expiry, revocation) or dead-lettered (any reason). A retry,
/// a postponed or a counted copy carries the key on: the copy decides.
/// A task that never runs (expired, revoked, dead-lettered unrun) releases
/// the key in both modes. The dispatcher releases only after the message
/// was settled with an ack, never when it is requeued (it runs again).
pub(crate) fn releases_key(plan: &Plan, until: UniqueUntil, ran: bool) -> bool {
    match (plan, until) {
        (Plan::Run { .. }, UniqueUntil::Started) => true,
        (Plan::Run { .. }, UniqueUntil::Finished) => false,
        (Plan::Ack { .. } | Plan::DeadLetter { .. }, UniqueUntil::Finished) => true,
        (Plan::Ack { .. } | Plan::DeadLetter { .. }, UniqueUntil::Started) => !ran,
        (
            Plan::Retry { .. }
            | Plan::Postpone { .. }
            | Plan::RateLimited { .. }
            | Plan::Requeue { .. }
            | Plan::Skip(_),
            _,
        ) => false,
    }
}

impl Plan {
    /// The fate of a finished message; `None` for the plans that come
    /// before the handler's outcome.
    pub(crate) fn disposition(&self) -> Option<Disposition> {
        match self {
            Plan::Ack { .. } => Some(Disposition::Ack),
            Plan::Retry { delay, .. } => Some(Disposition::Retry { delay: *delay }),
            Plan::DeadLetter { reason, .. } => Some(Disposition::DeadLetter { reason }),
            Plan::Run { .. }
            | Plan::Skip(_)
            | Plan::Postpone { .. }
            | Plan::RateLimited { .. }
            | Plan::Requeue { .. } => None,
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
    fn a_key_held_until_started_is_released_when_the_task_starts_or_never_will() {
        let started = UniqueUntil::Started;
        assert!(releases_key(
            &Plan::Run { redelivered: false },
            started,
            false
        ));
        assert!(!releases_key(&Plan::Ack { reply: None }, started, true));
        assert!(releases_key(&Plan::Ack { reply: None }, started, false));
        let expired = Plan::DeadLetter {
            reason: "delivery limit",
            reply: None,
        };
        assert!(releases_key(&expired, started, false));
        let later = Plan::Postpone {
            delay: Duration::from_secs(1),
        };
        assert!(!releases_key(&later, started, false));
    }

    #[test]
    fn a_key_held_until_finished_survives_retries_and_goes_with_the_final_outcome() {
        let finished = UniqueUntil::Finished;
        assert!(!releases_key(
            &Plan::Run { redelivered: true },
            finished,
            false
        ));
        let retry = Plan::Retry {
            delay: Duration::from_secs(1),
            reply: None,
        };
        assert!(!releases_key(&retry, finished, true));
        assert!(!releases_key(
            &Plan::Requeue { deliveries: 2 },
            finished,
            false
        ));
        assert!(releases_key(&Plan::Ack { reply: None }, finished, true));
        let dead = Plan::DeadLetter {
            reason: "rejected",
            reply: None,
        };
        assert!(releases_key(&dead, finished, true));
    }

    /// The facts of a fresh delivery of `message`, over its rate limit
    /// by `rate_limited`.
    fn fresh<'a>(
        message: &'a TaskMessage,
        policy: &'a RetryPolicy,
        rate_limited: Option<Duration>,
    ) -> Facts<'a> {
        Facts {
            message: Some(message),
            caller: Some(("reply", message.id())),
            now: Utc::now(),
            deliveries: Deliveries::default(),
            delivery_limit: 5,
            policy,
            revoked: false,
            outcome: None,
            rate_limited,
        }
    }

    #[test]
    fn a_task_over_its_rate_limit_is_postponed_not_failed_nor_answered() {
        let message = TaskMessage::new("api.fetch", Vec::new(), Default::default());
        let policy = RetryPolicy::default();
        let wait = Some(Duration::from_millis(300));
        let Plan::RateLimited { delay } = plan(&fresh(&message, &policy, wait)) else {
            panic!("not rate-limited")
        };
        let second = Duration::from_secs(1);
        assert!(
            delay >= second && delay <= second + RATE_LIMIT_JITTER,
            "{delay:?}"
        );
        let again = plan(&fresh(&message, &policy, wait));
        assert!(again.disposition().is_none());
        assert!(matches!(
            plan(&fresh(&message, &policy, None)),
            Plan::Run { redelivered: false }
        ));
    }

    #[test]
    fn an_expired_or_early_task_is_handled_as_such_before_its_rate_limit() {
        let mut message = TaskMessage::new("api.fetch", Vec::new(), Default::default());
        let policy = RetryPolicy::default();
        let wait = Some(Duration::from_secs(1));
        message.headers.expires = Some((Utc::now() - chrono::Duration::seconds(1)).fixed_offset());
        assert!(matches!(
            plan(&fresh(&message, &policy, wait)),
            Plan::Skip(Outcome::Expired)
        ));
        message.headers.expires = None;
        message.headers.eta = Some((Utc::now() + chrono::Duration::seconds(30)).fixed_offset());
        assert!(matches!(
            plan(&fresh(&message, &policy, wait)),
            Plan::Postpone { .. }
        ));
    }

    #[test]
    fn a_rate_limit_delay_is_at_least_a_second_with_a_little_jitter() {
        let delays = |wait: Duration| (0..500).map(move |_| rate_limit_delay(wait));
        let within = |low: Duration| move |d: Duration| d >= low && d <= low + RATE_LIMIT_JITTER;
        assert!(delays(Duration::from_millis(10)).all(within(Duration::from_secs(1))));
        assert!(delays(Duration::from_secs(60)).all(within(Duration::from_secs(60))));
        let spread: std::collections::HashSet<Duration> = delays(Duration::ZERO).collect();
        assert!(spread.len() > 20, "too little jitter: {}", spread.len());
    }

    #[test]
    fn a_quorum_queues_count_is_the_only_one_and_ends_the_message_at_the_limit() {
        let message = TaskMessage::new("t", Vec::new(), Default::default());
        let policy = RetryPolicy::default();
        let at = |quorum_count, counted| {
            let mut facts = fresh(&message, &policy, None);
            facts.delivery_limit = 2;
            facts.deliveries = Deliveries {
                redelivered: quorum_count > 0,
                quorum_count: Some(quorum_count),
                counted,
            };
            plan(&facts)
        };
        assert!(matches!(at(0, 0), Plan::Run { redelivered: false }));
        assert!(matches!(at(1, 0), Plan::Run { redelivered: true }));
        assert!(matches!(at(1, 1), Plan::Run { redelivered: true }));
        assert!(matches!(at(2, 0), Plan::Skip(Outcome::DeliveryLimit(3))));
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
