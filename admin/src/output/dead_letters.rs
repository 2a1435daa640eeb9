//! How `celeriac dlq` prints dead letters for people.

use crate::DeadLetterEntry;
use celeriac_shared::DeadLetterTopology;
use chrono::SecondsFormat;
use indicatif::{ProgressBar, ProgressStyle};

/// Replays of at least this many dead letters show a progress bar (on a
/// terminal).
const PROGRESS_BAR_FROM: u64 = 50;

/// The header of `dlq list`.
pub fn list_header() -> String {
    format!(
        "{:<36}  {:<24}  {:<30}  {:<50}  {:>7}  {:<24}  QUEUE",
        "TASK ID", "TASK", "ARGS", "ERROR", "RETRIES", "FAILED AT"
    )
}

/// One line of `dlq list`.
pub fn list_row(entry: &DeadLetterEntry) -> String {
    format!(
        "{:<36}  {:<24}  {:<30}  {:<50}  {:>7}  {:<24}  {}",
        entry.task_id.as_deref().unwrap_or("-"),
        entry.task.as_deref().unwrap_or("-"),
        entry.short_args(30),
        shorten(&entry.short_error(), 50),
        entry.retries,
        failed_at(entry),
        entry.queue
    )
}

/// Everything about a dead letter, as `show` prints it.
pub fn describe(entry: &DeadLetterEntry) -> Result<String, serde_json::Error> {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<16}{value}\n"));
    line("task id:", or_dash(&entry.task_id));
    line("task:", or_dash(&entry.task));
    let dead = DeadLetterTopology::queue_name(&entry.queue);
    line(
        "queue:",
        format!("{} ({dead}, position {})", entry.queue, entry.position),
    );
    line("reason:", or_dash(&entry.reason));
    line("error:", entry.short_error());
    line("retries:", entry.retries.to_string());
    line("failed at:", failed_at(entry));
    line("worker:", or_dash(&entry.worker));
    line(
        "published to:",
        format!(
            "exchange `{}`, routing key `{}`",
            or_dash(&entry.original_exchange),
            or_dash(&entry.original_routing_key)
        ),
    );
    let replay = entry.replay_destination().map_or_else(
        || "- (its headers do not say where it was published)".into(),
        |(exchange, key)| format!("exchange `{exchange}`, routing key `{key}`"),
    );
    line("replays to:", replay);
    line("trace id:", or_dash(&entry.trace_id));
    line(
        "replayed:",
        format!("{} time(s) before", entry.replay_count),
    );
    line("args:", serde_json::to_string(&entry.args)?);
    line("kwargs:", serde_json::to_string(&entry.kwargs)?);
    if let Some(error) = &entry.decode_error {
        line("not a task:", error.clone());
    }
    out.push_str("traceback:\n");
    for text in entry.traceback.as_deref().unwrap_or("-").lines() {
        out.push_str(&format!("  {text}\n"));
    }
    out.push_str("headers:\n");
    for text in serde_json::to_string_pretty(&entry.headers)?.lines() {
        out.push_str(&format!("  {text}\n"));
    }
    Ok(out)
}

/// A bar on stderr (drawn only on a terminal) for large replays, else a
/// hidden one.
pub fn progress_bar(total: u64) -> ProgressBar {
    if total < PROGRESS_BAR_FROM {
        return ProgressBar::hidden();
    }
    ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} dead letters {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

fn failed_at(entry: &DeadLetterEntry) -> String {
    entry.failed_at.map_or_else(
        || "-".into(),
        |t| t.to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

/// The names, comma-separated, or that there is none.
pub fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "no dead-letter queue".into()
    } else {
        names.join(", ")
    }
}

fn shorten(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() <= max && line.len() == text.len() {
        return line.to_owned();
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}
