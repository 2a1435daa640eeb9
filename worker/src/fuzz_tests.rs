//! Property tests of the dispatch decision, without a broker: random and
//! mutated Celery messages, with random delivery histories, expiry and
//! eta, go through decode, the registry (typed handlers and one that
//! panics) and the real [`plan`], driven as the dispatcher drives it, and
//! every one ends in a plan the dispatcher can carry out, with the result
//! a caller would get and the dead letter's headers, never with a panic.
//!
//! `cargo test` runs a few hundred cases per property; `scripts/fuzz`
//! (`PROPTEST_CASES=100000`) many more.

use celeriac_shared::fuzzing::{RawMessage, task_message, task_message_for};
use celeriac_shared::{DeadLetter, MAX_DELAY, Task, TaskMessage};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dispatch::log_outcome;
use crate::outcome::Outcome;
use crate::plan::{Deliveries, Facts, Plan, plan};
use crate::{Registry, TaskContext, TaskError};

/// The delivery limit the properties use.
const LIMIT: u32 = 5;

thread_local! {
    /// Whether [`handle`] treats the task as revoked.
    static REVOKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A task whose handler panics on odd input, to check that panics become
/// [`Outcome::Panicked`] and never escape.
struct Panics;

impl Task for Panics {
    const NAME: &'static str = "fuzz.panics";
    type Args = Vec<Value>;
    type Output = usize;
}

async fn panics(args: Vec<Value>, _ctx: TaskContext) -> Result<usize, TaskError> {
    assert!(args.len().is_multiple_of(2), "an odd number of arguments");
    Ok(args.len())
}

/// `demo.add`'s shape: typed keyword arguments that random input often
/// does not fit.
struct Add;

#[derive(Serialize, Deserialize)]
struct AddArgs {
    x: i64,
    y: i64,
}

impl Task for Add {
    const NAME: &'static str = "demo.add";
    type Args = AddArgs;
    type Output = i64;
}

async fn add(args: AddArgs, _ctx: TaskContext) -> Result<i64, TaskError> {
    args.x
        .checked_add(args.y)
        .ok_or_else(|| TaskError::reject("overflow"))
}

/// A task that fails in the way its argument names.
struct Fails;

impl Task for Fails {
    const NAME: &'static str = "fuzz.fails";
    type Args = Vec<Value>;
    type Output = ();
}

async fn fails(args: Vec<Value>, _ctx: TaskContext) -> Result<(), TaskError> {
    match args.len() % 3 {
        0 => Err(TaskError::reject("rejected")),
        1 => Err(TaskError::retry("try again")),
        _ => Err(TaskError::failed("unexpected")),
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register::<Panics, _, _>(panics)
        .register::<Add, _, _>(add)
        .register::<Fails, _, _>(fails);
    registry
}

/// Task names the fuzzed messages carry: every registered one and one
/// nobody registered.
fn task_names() -> Vec<String> {
    let mut names: Vec<String> = registry().names().into_iter().map(str::to_owned).collect();
    names.push("fuzz.unregistered".to_owned());
    names
}

/// A delivery history: the broker's flag, a quorum queue's count, our own.
fn deliveries() -> impl Strategy<Value = Deliveries> {
    (any::<bool>(), proptest::option::of(0..8u32), 0..8u32).prop_map(
        |(redelivered, quorum_count, counted)| Deliveries {
            redelivered,
            quorum_count,
            counted,
        },
    )
}

/// What the dispatcher does with one delivery, without the broker:
/// decode, plan, run or skip as planned, plan again, and build what would
/// be published. Returns the outcome (if the handler ran or was skipped)
/// and the final plan.
fn handle(
    registry: &Registry,
    message: &RawMessage,
    deliveries: Deliveries,
    now: DateTime<Utc>,
    eta_in: Option<i64>,
) -> (Option<Outcome>, Plan) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let limit = celeriac_shared::DEFAULT_MAX_MESSAGE_SIZE;
    let (mut decoded, mut outcome) =
        match TaskMessage::decode(&message.properties, &message.body, limit) {
            Ok(decoded) => (Some(decoded), None),
            Err(err) => (None, Some(Outcome::Undecodable(err))),
        };
    if let (Some(decoded), Some(seconds)) = (decoded.as_mut(), eta_in) {
        decoded.headers.eta = Some((now + chrono::Duration::seconds(seconds)).fixed_offset());
    }
    let task = decoded.as_ref().map_or("", |m| m.task()).to_owned();
    let policy = registry.options(&task).retry.unwrap_or_default();
    let final_plan = loop {
        let facts = Facts {
            message: decoded.as_ref(),
            caller: decoded.as_ref().map(|m| ("caller", m.id())),
            now,
            deliveries,
            delivery_limit: LIMIT,
            policy: &policy,
            revoked: REVOKED.with(|revoked| revoked.get()),
            outcome: outcome.as_ref(),
            rate_limited: None,
        };
        match plan(&facts) {
            Plan::Run { redelivered } => {
                let message = decoded.as_mut().expect("only a decoded message runs");
                outcome = Some(runtime.block_on(registry.execute(message, redelivered)));
            }
            Plan::Skip(skipped) => outcome = Some(skipped),
            settled => break settled,
        }
    };
    check_side_effects(message, decoded.as_ref(), outcome.as_ref(), &final_plan);
    (outcome, final_plan)
}

/// What carrying the plan out would log, reply and dead-letter is well
/// formed.
fn check_side_effects(
    raw: &RawMessage,
    message: Option<&TaskMessage>,
    outcome: Option<&Outcome>,
    plan: &Plan,
) {
    if let (Some(outcome), Some(disposition)) = (outcome, plan.disposition()) {
        log_outcome("fuzz", message, outcome, disposition, 0.0);
    }
    match plan {
        Plan::Ack { reply } | Plan::Retry { reply, .. } | Plan::DeadLetter { reply, .. } => {
            assert_eq!(reply.is_some(), message.is_some(), "the caller is answered");
            if let Some(reply) = reply {
                reply.result.encode().expect("every result encodes");
            }
        }
        Plan::Postpone { delay } => assert!(*delay > std::time::Duration::ZERO),
        Plan::RateLimited { delay } => assert!(*delay >= std::time::Duration::from_secs(1)),
        Plan::Requeue { deliveries } => assert!(*deliveries < LIMIT),
        Plan::Run { .. } | Plan::Skip(_) => unreachable!("the loop runs these"),
    }
    let (Plan::DeadLetter { reason, .. }, Some(outcome)) = (plan, outcome) else {
        return;
    };
    let task = message.map_or("", |m| m.task());
    let failure = outcome.failure(task).expect("a dead letter has a failure");
    let letter = DeadLetter {
        reason: (*reason).to_owned(),
        error_type: failure.exc_type,
        error_message: failure.message,
        traceback: failure.traceback,
        retries: message.map_or(0, |m| m.headers.retries),
        failed_at: Utc::now(),
        worker: "fuzz@host".to_owned(),
        original_queue: "fuzz".to_owned(),
        original_exchange: String::new(),
        original_routing_key: "fuzz".to_owned(),
    };
    let annotated = letter.annotate(&raw.properties);
    let headers = annotated.headers().clone().unwrap_or_default();
    assert_eq!(
        DeadLetter::from_headers(&headers).map(|l| l.reason),
        Some(letter.reason)
    );
}

fn fresh() -> Deliveries {
    Deliveries::default()
}

proptest! {
    #[test]
    fn a_mutated_capture_gets_a_plan(message in task_message(), history in deliveries()) {
        let (outcome, plan) = handle(&registry(), &message, history, Utc::now(), None);
        if let Some(Outcome::Undecodable(_)) = outcome {
            prop_assert!(matches!(plan, Plan::DeadLetter { reason: "undecodable", .. }), "{plan:?}");
        }
    }

    #[test]
    fn a_task_with_random_arguments_is_acked_retried_or_dead_lettered(
        message in task_message_for(task_names()),
    ) {
        let (outcome, plan) = handle(&registry(), &message, fresh(), Utc::now(), None);
        match outcome {
            Some(Outcome::Succeeded(_) | Outcome::Expired) => {
                prop_assert!(matches!(plan, Plan::Ack { .. }), "{plan:?}")
            }
            Some(Outcome::UnknownTask) => prop_assert!(
                matches!(plan, Plan::DeadLetter { reason: "unknown task", .. }), "{plan:?}"
            ),
            Some(Outcome::BadArguments(_)) => prop_assert!(
                matches!(plan, Plan::DeadLetter { reason: "bad arguments", .. }), "{plan:?}"
            ),
            Some(_) => prop_assert!(
                matches!(plan, Plan::Retry { .. } | Plan::DeadLetter { .. }), "{plan:?}"
            ),
            None => prop_assert!(false, "a fresh delivery without eta runs: {plan:?}"),
        }
    }

    #[test]
    fn a_task_due_later_is_postponed_and_not_run(
        message in task_message_for(task_names()),
        eta_in in 2..(MAX_DELAY.as_secs() as i64 * 2),
    ) {
        let now = Utc::now();
        let (outcome, plan) = handle(&registry(), &message, fresh(), now, Some(eta_in));
        if !matches!(outcome, Some(Outcome::Expired | Outcome::Undecodable(_))) {
            prop_assert!(outcome.is_none(), "it did not run: {outcome:?}");
            let Plan::Postpone { delay } = plan else {
                return Err(TestCaseError::fail(format!("{plan:?}")));
            };
            prop_assert!(delay.as_secs() <= eta_in.unsigned_abs(), "{delay:?} > {eta_in}s");
        }
    }

    #[test]
    fn redeliveries_are_counted_until_the_limit(
        message in task_message_for(task_names()),
        history in deliveries(),
    ) {
        let (outcome, plan) = handle(&registry(), &message, history, Utc::now(), None);
        if matches!(outcome, Some(Outcome::Expired | Outcome::Undecodable(_))) {
            return Ok(());
        }
        let over = match history.quorum_count {
            Some(count) => count >= LIMIT,
            None => history.redelivered && history.counted + 1 >= LIMIT,
        };
        if over {
            prop_assert!(matches!(outcome, Some(Outcome::DeliveryLimit(_))), "{outcome:?}");
            prop_assert!(matches!(plan, Plan::DeadLetter { reason: "delivery limit", .. }), "{plan:?}");
        } else if history.quorum_count.is_none() && history.redelivered {
            prop_assert!(outcome.is_none(), "not run before it is counted: {outcome:?}");
            prop_assert!(
                matches!(plan, Plan::Requeue { deliveries } if deliveries == history.counted + 1),
                "{plan:?}"
            );
        } else {
            prop_assert!(outcome.is_some(), "it ran: {plan:?}");
        }
    }
}

#[test]
fn a_panicking_handler_is_caught_and_retried() {
    let capture = celeriac_shared::fuzzing::task_captures().remove(0);
    let mut table = capture.properties.headers().clone().unwrap_or_default();
    table.insert(
        "task".into(),
        lapin::types::AMQPValue::LongString(Panics::NAME.into()),
    );
    for due in ["eta", "expires"] {
        table.insert(due.into(), lapin::types::AMQPValue::Void);
    }
    let message = RawMessage {
        properties: capture.properties.with_headers(table),
        body: br#"[[1], {}, null]"#.to_vec(),
    };
    let (outcome, plan) = handle(&registry(), &message, fresh(), Utc::now(), None);
    assert!(
        matches!(outcome, Some(Outcome::Panicked(ref p)) if p.contains("odd number")),
        "{outcome:?}"
    );
    assert!(matches!(plan, Plan::Retry { .. }), "{plan:?}");
}

#[test]
fn a_revoked_task_is_acknowledged_unrun_and_its_caller_told() {
    let message = task_message_for(vec!["demo.add".to_owned()]);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..50 {
        let message = message.new_tree(&mut runner).expect("a message").current();
        REVOKED.with(|revoked| revoked.set(true));
        let (outcome, plan) = handle(&registry(), &message, fresh(), Utc::now(), None);
        REVOKED.with(|revoked| revoked.set(false));
        if matches!(outcome, Some(Outcome::Undecodable(_))) {
            continue;
        }
        assert!(
            matches!(outcome, Some(Outcome::Revoked { terminated: false })),
            "{outcome:?}"
        );
        let Plan::Ack { reply: Some(reply) } = plan else {
            panic!("{plan:?}");
        };
        assert_eq!(reply.result.status, celeriac_shared::TaskState::Revoked);
    }
}
