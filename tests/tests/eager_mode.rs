//! The eager sender runs handlers in-process through the same wire codec,
//! so application code written against `Sender` is tested without a
//! broker and fails on what would not survive RabbitMQ.
//!
//! No broker needed; run with `cargo test -p celeriac-tests --test eager_mode`.
#![allow(clippy::unwrap_used)]

use celeriac_demo::{Add, AddArgs, Fail, FailArgs};
use celeriac_shared::{CallError, SendOptions, Sender, Task, TaskFailure};
use celeriac_tests::GUARD;
use celeriac_worker::{EagerSender, TaskContext, TaskError};
use serde_json::{Map, Value, json};

/// A task taking a single `f64`, to send a value JSON cannot carry.
struct Half;

impl Task for Half {
    const NAME: &'static str = "test.half";
    type Args = f64;
    type Output = f64;
}

async fn half(value: f64, _ctx: TaskContext) -> Result<f64, TaskError> {
    Ok(value / 2.0)
}

fn eager() -> EagerSender {
    EagerSender::new(celeriac_demo::registry())
}

/// The failure inside `err`, failing the test if the call did not run and
/// fail.
fn failure(err: CallError) -> TaskFailure {
    match err {
        CallError::Failed { failure, .. } => failure,
        other => panic!("expected a task failure, got {other:?}"),
    }
}

/// Application code: written once against `Sender`, deployed with the
/// producer, tested with the eager sender.
async fn total<S: Sender>(sender: &S, numbers: &[i64]) -> Result<i64, CallError> {
    let mut sum = 0;
    for &x in numbers {
        sum = sender
            .call_task::<Add>(&AddArgs { x, y: sum }, GUARD)
            .await?;
    }
    Ok(sum)
}

#[tokio::test]
async fn a_call_runs_the_handler_and_returns_its_typed_result() {
    let sum = eager()
        .call_task::<Add>(&AddArgs { x: 2, y: 3 }, GUARD)
        .await;

    assert_eq!(sum.unwrap(), 5);
}

#[tokio::test]
async fn application_code_generic_over_sender_runs_eagerly() {
    let sum = total(&eager(), &[1, 2, 3, 4]).await;

    assert_eq!(sum.unwrap(), 10);
}

#[tokio::test]
async fn a_failing_handler_returns_its_message_as_a_task_failure() {
    let args = FailArgs {
        message: "out of coffee".into(),
    };
    let err = eager().call_task::<Fail>(&args, GUARD).await.unwrap_err();

    let failure = failure(err);
    assert_eq!(
        (failure.exc_type.as_str(), failure.message.as_str()),
        ("Reject", "out of coffee")
    );
}

#[tokio::test]
async fn a_send_returns_the_task_id() {
    let options = SendOptions::default();
    let id = eager()
        .send_task::<Add>(&AddArgs { x: 2, y: 3 }, options)
        .await
        .unwrap();

    assert!(uuid::Uuid::parse_str(&id).is_ok(), "not a UUID: {id}");
}

#[tokio::test]
async fn an_unknown_task_fails_as_not_registered() {
    let err = eager()
        .call_task_raw("nope", vec![], Map::new(), SendOptions::default(), GUARD)
        .await
        .unwrap_err();

    assert_eq!(failure(err).exc_type, "NotRegistered");
}

#[tokio::test]
async fn arguments_that_do_not_fit_fail_as_a_type_error() {
    let args: Vec<Value> = vec![json!("a"), json!(1)];
    let err = eager()
        .call_task_raw("demo.add", args, Map::new(), SendOptions::default(), GUARD)
        .await
        .unwrap_err();

    let failure = failure(err);
    assert_eq!(failure.exc_type, "TypeError");
    assert!(failure.message.contains("demo.add"), "{}", failure.message);
}

#[tokio::test]
async fn a_value_that_would_not_survive_the_wire_fails_eagerly_too() {
    let mut registry = celeriac_demo::registry();
    registry.register::<Half, _, _>(half);
    let sender = EagerSender::new(registry);
    assert_eq!(sender.call_task::<Half>(&3.0, GUARD).await.unwrap(), 1.5);

    // JSON has no NaN: it travels as `null`, which is no `f64`.
    let err = sender
        .call_task::<Half>(&f64::NAN, GUARD)
        .await
        .unwrap_err();

    assert_eq!(failure(err).exc_type, "TypeError");
}

#[tokio::test]
async fn an_eager_timeout_names_the_task_id() {
    let err = eager()
        .call_task_raw(
            "demo.sleep",
            vec![json!(5.0)],
            Map::new(),
            SendOptions::default(),
            std::time::Duration::from_millis(20),
        )
        .await
        .unwrap_err();
    let CallError::Timeout { task_id, .. } = &err else {
        panic!("expected a timeout, got {err:?}");
    };
    assert_eq!(task_id.len(), 36, "a real task id: {err}");
    assert!(err.to_string().contains(task_id.as_str()));
}
