//! Property tests of the dispatch decision, without a broker: random and
//! mutated Celery messages go through decode, the registry (the demo
//! handlers and one that panics) and [`disposition`], and every one ends
//! as an ack, a retry or a dead letter, with the result a caller would get
//! and the dead letter's headers, never with a panic.
//!
//! `cargo test` runs a few hundred cases per property; `scripts/fuzz`
//! (`PROPTEST_CASES=100000`) many more.

use celeriac_shared::fuzzing::{RawMessage, task_message, task_message_for};
use celeriac_shared::{DeadLetter, Task, TaskMessage};
use chrono::Utc;
use proptest::prelude::*;
use serde_json::Value;

use crate::dispatch::log_outcome;
use crate::disposition::{Disposition, Outcome, disposition};
use crate::{Registry, TaskContext, TaskError, demo};

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

fn registry() -> Registry {
    let mut registry = demo::registry();
    registry.register::<Panics, _, _>(panics);
    registry
}

/// Task names the fuzzed messages carry: every registered one and one
/// nobody registered.
fn task_names() -> Vec<String> {
    let mut names: Vec<String> = registry().names().into_iter().map(str::to_owned).collect();
    names.push("fuzz.unregistered".to_owned());
    names
}

/// What the dispatcher does with one delivery, without the broker:
/// decode, run, decide, and build what would be published.
fn handle(registry: &Registry, message: &RawMessage) -> (Outcome, Disposition) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let limit = celeriac_shared::DEFAULT_MAX_MESSAGE_SIZE;
    let decoded = TaskMessage::decode(&message.properties, &message.body, limit);
    let (outcome, decoded) = match decoded {
        Ok(mut decoded) => {
            let outcome = runtime.block_on(registry.execute(&mut decoded, false));
            (outcome, Some(decoded))
        }
        Err(err) => (Outcome::Undecodable(err), None),
    };
    let retries = decoded.as_ref().map_or(0, |m| m.headers.retries);
    let task = decoded.as_ref().map_or("", |m| m.task());
    let id = decoded.as_ref().map_or("no-id", |m| m.id());
    let policy = registry.options(task).retry.unwrap_or_default();
    let decision = disposition(&outcome, retries, &policy);
    log_outcome("fuzz", decoded.as_ref(), &outcome, decision, 0.0);
    let result = match decision {
        Disposition::Retry { .. } => outcome.retry_message(id, task),
        Disposition::Ack | Disposition::DeadLetter { .. } => outcome.result_message(id, task),
    };
    result.encode().expect("every result encodes");
    if let Disposition::DeadLetter { reason } = decision {
        let failure = outcome.failure(task).expect("a dead letter has a failure");
        let letter = DeadLetter {
            reason: reason.to_owned(),
            error_type: failure.exc_type,
            error_message: failure.message,
            traceback: failure.traceback,
            retries,
            failed_at: Utc::now(),
            worker: "fuzz@host".to_owned(),
            original_queue: "fuzz".to_owned(),
            original_exchange: String::new(),
            original_routing_key: "fuzz".to_owned(),
        };
        let annotated = letter.annotate(&message.properties);
        let headers = annotated.headers().clone().unwrap_or_default();
        assert_eq!(
            DeadLetter::from_headers(&headers).map(|l| l.reason),
            Some(letter.reason)
        );
    }
    (outcome, decision)
}

proptest! {
    #[test]
    fn a_mutated_capture_is_acked_retried_or_dead_lettered(message in task_message()) {
        let (outcome, decision) = handle(&registry(), &message);
        if let Outcome::Undecodable(_) = outcome {
            prop_assert_eq!(decision, Disposition::DeadLetter { reason: "undecodable" });
        }
    }

    #[test]
    fn a_task_with_random_arguments_is_acked_retried_or_dead_lettered(
        message in task_message_for(task_names()),
    ) {
        let (outcome, decision) = handle(&registry(), &message);
        match outcome {
            Outcome::Succeeded(_) | Outcome::Expired => prop_assert_eq!(decision, Disposition::Ack),
            Outcome::UnknownTask => prop_assert_eq!(
                decision,
                Disposition::DeadLetter { reason: "unknown task" }
            ),
            Outcome::BadArguments(_) => prop_assert_eq!(
                decision,
                Disposition::DeadLetter { reason: "bad arguments" }
            ),
            _ => prop_assert_ne!(decision, Disposition::Ack),
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
    let message = RawMessage {
        properties: capture.properties.with_headers(table),
        body: br#"[[1], {}, null]"#.to_vec(),
    };
    let (outcome, decision) = handle(&registry(), &message);
    assert!(
        matches!(outcome, Outcome::Panicked(ref p) if p.contains("odd number")),
        "{outcome:?}"
    );
    assert!(
        matches!(decision, Disposition::Retry { .. }),
        "{decision:?}"
    );
}
