//! `celeriac beat` on the real broker: one leader among replicas, a
//! SIGKILLed leader replaced without a duplicate or a gap, and beat's tasks
//! run by a Python Celery worker. Each test runs in a vhost of its own.

use std::collections::HashMap;

use anyhow::Context;
use celeriac_admin::beat::{Beat, TickRecord};
use celeriac_shared::BrokerUrl;
use celeriac_shared::TaskMessage;
use celeriac_tests::DemoWorker;
use celeriac_tests::Python;
use celeriac_tests::{Vhost, channel_on, consume, next_delivery, unique};
use chrono::{DateTime, Duration, DurationRound, Utc};

/// The ticks of an entry `every = "<period> s"` that a test can see: one
/// minute around now, keyed by the id of the task each sends.
fn ticks_by_task_id(schedule: &str, entry: &str, period: i64) -> HashMap<String, DateTime<Utc>> {
    let now = Utc::now()
        .duration_trunc(Duration::seconds(period))
        .expect("a whole second truncates");
    (-30..30)
        .map(|i| now + Duration::seconds(i * period))
        .map(|tick| (Beat::task_id(schedule, entry, tick), tick))
        .collect()
}

/// Writes a one-entry schedule to a temporary file; returns its path.
fn schedule_file(body: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = std::env::temp_dir().join(format!("{}.toml", unique("schedule")));
    std::fs::write(&path, body)?;
    Ok(path)
}

/// Starts `celeriac beat` on `file` as schedule `name`, on the broker at
/// `url`.
fn beat(file: &std::path::Path, name: &str, url: &BrokerUrl) -> anyhow::Result<DemoWorker> {
    let file = file.to_str().context("a UTF-8 temp path")?;
    let env = [("CELERIAC_BROKER_URL", url.expose())];
    DemoWorker::spawn_cli(&["beat", "--schedule", file, "--name", name], &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_beat_hands_over_without_a_duplicate_or_a_gap() -> anyhow::Result<()> {
    let vhost = Vhost::create()?;
    let url = vhost.url();
    let name = unique("beat");
    let queue = unique("beat-ticks");
    let period = 2;
    let file = schedule_file(&format!(
        "[[schedule]]\nname = \"tick\"\ntask = \"beat_test.tick\"\nevery = \"{period}s\"\nqueue = \"{queue}\"\n"
    ))?;
    let mut first = beat(&file, &name, &url)?;
    first.wait_for_line("beat: leading").await?;
    let mut second = beat(&file, &name, &url)?;
    second
        .wait_for_line("beat: standing for leadership")
        .await?;

    let (connection, channel) = channel_on(&url).await?;
    let mut tasks = consume(&channel, &queue).await?;
    let mut received = Vec::new();
    for _ in 0..3 {
        received.push(next_delivery(&mut tasks).await?);
    }
    first.kill().await?;
    second.wait_for_line("beat: leading").await?;
    for _ in 0..3 {
        received.push(next_delivery(&mut tasks).await?);
    }
    second.kill().await?;

    let ticks = ticks_by_task_id(&name, "tick", period);
    let mut sent = Vec::new();
    for delivery in &received {
        let message = TaskMessage::decode(&delivery.properties, &delivery.data, 1 << 20)?;
        assert_eq!(message.task(), "beat_test.tick");
        let tick = ticks
            .get(message.id())
            .with_context(|| format!("task id {} is no tick's", message.id()))?;
        sent.push(*tick);
    }
    for pair in sent.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            Duration::seconds(period),
            "ticks sent: {sent:?} (first beat's log:\n{}\nsecond's:\n{})",
            first.log.join("\n"),
            second.log.join("\n")
        );
    }
    celeriac_tests::close(&connection).await;
    let _ = std::fs::remove_file(file);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_celery_worker_runs_the_tasks_beat_sends() -> anyhow::Result<()> {
    let vhost = Vhost::create()?;
    let url = vhost.url();
    let name = unique("beat");
    let queue = unique("beat-py");
    let file = schedule_file(&format!(
        "[[schedule]]\nname = \"echo\"\ntask = \"py.echo\"\nevery = \"1s\"\nargs = [\"from beat\"]\nqueue = \"{queue}\"\n"
    ))?;
    let celery = Python::celery_worker(&url, &queue, &unique("beat-py")).await?;
    let mut beat = beat(&file, &name, &url)?;
    beat.wait_for_line("beat: sent").await?;
    celery.wait_for_output("succeeded").await?;
    beat.kill().await?;
    let transcript = celery.terminate().await?;
    assert!(
        transcript.stderr.contains("Task py.echo["),
        "the Celery worker ran no py.echo:\n{transcript}"
    );
    let _ = std::fs::remove_file(file);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_missed_while_no_beat_ran_are_sent_once_not_in_a_burst() -> anyhow::Result<()> {
    let vhost = Vhost::create()?;
    let url = vhost.url();
    let name = unique("beat");
    let queue = unique("beat-missed");
    let period = 2;
    let file = schedule_file(&format!(
        "[[schedule]]\nname = \"tick\"\ntask = \"beat_test.tick\"\nevery = \"{period}s\"\nqueue = \"{queue}\"\n"
    ))?;
    // A record as a beat that stopped 20 ticks ago left it.
    let (connection, channel) = channel_on(&url).await?;
    let record_queue = Beat::record_queue(&name);
    TickRecord::declare(&channel, &record_queue).await?;
    let long_ago = Utc::now() - Duration::seconds(20 * period);
    let mut record = TickRecord::default();
    record.last.insert("tick".into(), long_ago);
    let (body, properties) = record.encode();
    channel
        .basic_publish(
            "".into(),
            record_queue.as_str().into(),
            lapin::options::BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await?
        .await?;

    let started = Utc::now();
    let mut beat = beat(&file, &name, &url)?;
    beat.wait_for_line("beat: leading").await?;
    let mut tasks = consume(&channel, &queue).await?;
    let ticks = ticks_by_task_id(&name, "tick", period);
    let mut sent = Vec::new();
    for _ in 0..2 {
        let delivery = next_delivery(&mut tasks).await?;
        let message = TaskMessage::decode(&delivery.properties, &delivery.data, 1 << 20)?;
        sent.push(*ticks.get(message.id()).context("a tick's task")?);
    }
    // Logged before the first send, so already written.
    beat.wait_for_line("ticks were missed").await?;
    beat.kill().await?;
    let caught_up = started.duration_trunc(Duration::seconds(period))?;
    assert!(
        sent[0] >= caught_up,
        "the first tick sent is the latest missed one ({caught_up}), not an old one: {sent:?}"
    );
    assert_eq!(
        sent[1] - sent[0],
        Duration::seconds(period),
        "no burst: {sent:?}"
    );
    celeriac_tests::close(&connection).await;
    let _ = std::fs::remove_file(file);
    Ok(())
}

#[test]
fn check_prints_next_runs_and_names_the_entry_and_field_of_an_error() -> anyhow::Result<()> {
    let cli = celeriac_tests::workspace_binary("celeriac")?;
    let good = schedule_file(
        "[[schedule]]\nname = \"nightly\"\ntask = \"reports.build\"\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Berlin\"\n",
    )?;
    let out = std::process::Command::new(&cli)
        .args(["beat", "--check"])
        .arg(&good)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("nightly"), "{stdout}");
    assert!(
        stdout.contains("03:00:00 CE"),
        "Berlin wall-clock times: {stdout}"
    );

    let bad = schedule_file(
        "[[schedule]]\nname = \"nightly\"\ntask = \"reports.build\"\ncron = \"0 3 * *\"\n",
    )?;
    let out = std::process::Command::new(&cli)
        .args(["beat", "--check"])
        .arg(&bad)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("nightly") && stderr.contains("cron"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(good);
    let _ = std::fs::remove_file(bad);
    Ok(())
}
