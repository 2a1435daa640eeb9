//! Dead letters made by hand, the way a worker writes them, and the
//! `celeriac` CLI run against the test broker.

use std::process::Output;

use anyhow::Context;
use celeriac_shared::{DeadLetter, DeadLetterTopology, QueueDef, TaskMessage};
use chrono::{DateTime, Utc};
use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation};

use crate::{broker_url, workspace_binary};

/// Runs the `celeriac` binary with `args` against the test broker.
pub async fn celeriac(args: &[&str]) -> anyhow::Result<Output> {
    Ok(tokio::process::Command::new(workspace_binary("celeriac")?)
        .args(args)
        .env("CELERIAC_BROKER_URL", broker_url().expose())
        .output()
        .await?)
}

/// Declares `queue` in Celery's default shape and its dead-letter queue,
/// as a worker does at start-up.
pub async fn declare_with_dead_letters(channel: &Channel, queue: &str) -> anyhow::Result<()> {
    QueueDef::new(queue).declare(channel).await?;
    DeadLetterTopology::declare(channel, queue).await?;
    Ok(())
}

/// The dead letter a worker consuming `queue` would write for a task it
/// rejected at `failed_at`.
pub fn rejected(queue: &str, failed_at: DateTime<Utc>) -> DeadLetter {
    DeadLetter {
        reason: "rejected".into(),
        error_type: "Reject".into(),
        error_message: "broken on purpose".into(),
        traceback: Some("Reject: broken on purpose\n".into()),
        retries: 0,
        failed_at,
        worker: "celeriac-worker-1@test".into(),
        original_queue: queue.into(),
        original_exchange: queue.into(),
        original_routing_key: queue.into(),
    }
}

/// Publishes each message, with its dead letter's headers, to `queue`'s
/// dead-letter queue through `celeriac.dead`, as the worker does, and
/// waits for every confirm. Returns the task ids in publish order.
pub async fn publish_dead_letters(
    channel: &Channel,
    letters: &[(TaskMessage, DeadLetter)],
) -> anyhow::Result<Vec<String>> {
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut confirms = Vec::new();
    for (message, letter) in letters {
        let (body, properties) = message.encode(Utc::now())?;
        let confirm = channel
            .basic_publish(
                DeadLetterTopology::EXCHANGE.into(),
                letter.original_queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &body,
                letter.annotate(&properties),
            )
            .await?;
        confirms.push(confirm);
    }
    for confirm in confirms {
        match confirm.await? {
            Confirmation::Ack(None) => {}
            other => anyhow::bail!("dead letter not accepted: {other:?}"),
        }
    }
    Ok(letters.iter().map(|(m, _)| m.id().to_owned()).collect())
}

/// Takes every message out of `queue` (for the end of a test) and returns
/// their task ids (`correlation_id`) in queue order.
pub async fn drain_task_ids(channel: &Channel, queue: &str) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await?
    {
        let id = message
            .delivery
            .properties
            .correlation_id()
            .as_ref()
            .context("a message without correlation_id")?;
        ids.push(id.to_string());
    }
    Ok(ids)
}
