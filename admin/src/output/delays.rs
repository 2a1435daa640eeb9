//! How `celeriac retries` prints the delay ladder.

use std::fmt::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use crate::DelayReport;

/// The report as pretty JSON, limited to `queues` (the tasks of other
/// queues are only counted).
pub fn json(report: &DelayReport, queues: &[String]) -> Result<String, serde_json::Error> {
    let by_queue = report.by_queue();
    let selected: Vec<_> = report
        .tasks
        .iter()
        .filter(|t| queues.contains(&t.queue))
        .collect();
    let shown: serde_json::Map<String, serde_json::Value> = by_queue
        .iter()
        .filter(|(queue, _)| queues.contains(queue))
        .map(|(queue, delays)| Ok((queue.clone(), serde_json::to_value(delays)?)))
        .collect::<Result<_, serde_json::Error>>()?;
    let doc = json!({
        "waiting": report.waiting(),
        "browsed": report.browsed,
        "levels": report.levels,
        "queues": shown,
        "other_queues": report.tasks.len() - selected.len(),
        "tasks": selected,
    });
    serde_json::to_string_pretty(&doc)
}

/// The report as text: the levels, then per queue of `queues` how many
/// wait and when the next and last are due.
pub fn text(report: &DelayReport, queues: &[String]) -> String {
    let mut out = String::new();
    if !report.is_declared() {
        let _ = writeln!(
            out,
            "no delay queues on the broker: nothing was ever delayed or retried"
        );
        return out;
    }
    let _ = writeln!(
        out,
        "{} message(s) waiting in the delay queues",
        report.waiting()
    );
    let _ = writeln!(out, "{:<20}  {:>8}  DUE WITHIN", "LEVEL", "WAITING");
    for level in report.levels.iter().filter(|l| l.messages.unwrap_or(0) > 0) {
        let more = if level.truncated {
            " (not all read)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{:<20}  {:>8}  {}{more}",
            level.queue,
            level.messages.unwrap_or(0),
            humantime::format_duration(level.due_within)
        );
    }
    if !report.browsed {
        return out;
    }
    let now = Utc::now();
    let _ = writeln!(
        out,
        "{:<30}  {:>8}  {:<36}  LAST DUE",
        "QUEUE", "WAITING", "NEXT DUE"
    );
    let by_queue = report.by_queue();
    for queue in queues {
        let _ = match by_queue.get(queue) {
            Some(d) => writeln!(
                out,
                "{queue:<30}  {:>8}  {:<36}  {}",
                d.count,
                due(d.next_due, now),
                due(d.last_due, now)
            ),
            None => writeln!(out, "{queue:<30}  {:>8}  -", 0),
        };
    }
    let others: usize = by_queue
        .iter()
        .filter(|(queue, _)| !queues.contains(queue))
        .map(|(_, d)| d.count)
        .sum();
    if others > 0 {
        let _ = writeln!(
            out,
            "({others} more for other queues; name them with --queue)"
        );
    }
    out
}

/// `in 4s (2026-01-01T10:00:04Z)`.
fn due(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let left = (at - now).to_std().unwrap_or_default();
    let left = std::time::Duration::from_secs(left.as_secs());
    format!(
        "in {} ({})",
        humantime::format_duration(left),
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}
