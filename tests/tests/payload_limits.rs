//! Bodies over `max_message_size`: a producer (and so the CLI) refuses to
//! send one, with an error naming both sizes, and publishes nothing; a
//! worker dead-letters one it receives unparsed, byte for byte, with the
//! reason, and carries on with the next message.
#![allow(clippy::unwrap_used)]

use celeriac_demo::{Add, AddArgs};
use celeriac_producer::{Error, Producer, ProducerConfig};
use celeriac_shared::{DeadLetter, DeadLetterTopology, Router, SendOptions, TaskMessage};
use celeriac_tests::{
    DemoWorker, GUARD, broker_url, channel, consume, delete_queues, get_one, message_count,
    next_delivery, producer_for, publish_raw, unique, workspace_binary,
};
use chrono::Utc;
use serde_json::{Map, Value, json};

const LIMIT: usize = 1024;

/// A config file routing everything to `queue`, with a 1 KiB limit.
fn small_limit_config(queue: &str) -> String {
    let path = std::env::temp_dir().join(format!("{queue}.toml"));
    let text = format!("default_queue = \"{queue}\"\nmax_message_size = {LIMIT}\n");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_over_the_limit_is_refused_at_send_time_and_nothing_is_published() {
    let queue = unique("oversize-send");
    let config = ProducerConfig {
        broker_url: broker_url(),
        router: Router::new(vec![], &queue),
        max_message_size: LIMIT,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(config).await.unwrap();
    let padding = json!("x".repeat(LIMIT));
    let options = SendOptions::ignore_result;
    let err = producer
        .send_raw::<Value>("demo.add", vec![padding], Map::new(), options())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, Error::Codec(celeriac_shared::Error::Oversize { size, limit })
            if size > LIMIT && limit == LIMIT),
        "{err:?}"
    );
    assert!(
        text.contains(&format!("exceeds the limit of {LIMIT} bytes")),
        "{text}"
    );
    assert!(!err.can_be_recovered(), "refused at once, not retried");

    let small = producer
        .send_raw::<Value>("demo.add", vec![json!(1), json!(2)], Map::new(), options())
        .await
        .unwrap();
    let (_connection, channel) = channel().await.unwrap();
    assert_eq!(message_count(&channel, &queue).await.unwrap(), 1);
    let only = get_one(&channel, &queue).await.unwrap().unwrap();
    let id = only.delivery.properties.correlation_id().clone().unwrap();
    assert_eq!(id.as_str(), small.id(), "only the small task was published");

    let cli = tokio::process::Command::new(workspace_binary("celeriac").unwrap())
        .args([
            "send",
            "demo.add",
            "--args",
            &format!("[\"{}\"]", "x".repeat(LIMIT)),
        ])
        .args(["--config", &small_limit_config(&queue)])
        .env("CELERIAC_BROKER_URL", broker_url().expose())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(!cli.status.success());
    assert!(
        stderr.contains(&format!("exceeds the limit of {LIMIT} bytes")),
        "{stderr}"
    );
    assert_eq!(message_count(&channel, &queue).await.unwrap(), 0);
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_dead_letters_an_oversize_message_unparsed_and_byte_for_byte() {
    let queue = unique("oversize-receive");
    let dead = DeadLetterTopology::queue_name(&queue);
    let config = small_limit_config(&queue);
    let mut worker = DemoWorker::start(&["--config", &config, "--concurrency", "1"])
        .await
        .unwrap();

    // A valid demo.add, padded past the limit: it would run if the worker
    // parsed it before looking at its size.
    let mut message = TaskMessage::new("demo.add", vec![json!(1), json!(2)], Map::new());
    message.embed.chord = Some(json!("x".repeat(4 * LIMIT)));
    let (body, properties) = message.encode(Utc::now()).unwrap();
    let (_connection, channel) = channel().await.unwrap();
    publish_raw(&channel, &queue, &body, properties)
        .await
        .unwrap();

    let producer = producer_for(&queue).await.unwrap();
    let handle = producer.send::<Add>(&AddArgs { x: 2, y: 3 }).await.unwrap();
    assert_eq!(
        handle.wait(GUARD).await.unwrap(),
        5,
        "the worker carried on"
    );

    let reason = format!(
        "message body of {} bytes exceeds the limit of {LIMIT} bytes",
        body.len()
    );
    worker.wait_for_line(&reason).await.unwrap();
    let mut dead_letters = consume(&channel, &dead).await.unwrap();
    let letter = next_delivery(&mut dead_letters).await.unwrap();
    assert!(letter.data == body, "the original body, byte for byte");
    let correlation_id = letter.properties.correlation_id().clone().unwrap();
    assert_eq!(correlation_id.as_str(), message.id());
    let why = DeadLetter::from_headers(letter.properties.headers().as_ref().unwrap()).unwrap();
    assert_eq!(why.reason, "undecodable");
    assert_eq!(why.error_type, "DecodeError");
    assert_eq!(why.error_message, reason);
    assert!(
        !worker
            .log
            .iter()
            .any(|l| l.contains(&format!("demo.add[{}]", message.id())))
    );
    assert_eq!(message_count(&channel, &queue).await.unwrap(), 0);
    delete_queues(&[&queue, &dead]).await;
}
