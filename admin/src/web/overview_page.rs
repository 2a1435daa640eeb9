//! The Overview and Workers pages and their live fragments.

use chrono::{DateTime, Utc};

use super::html::{Tab, count, escape, live, page, rate, url_part};
use super::overview::{Overview, QueueRow};
use super::throughput::Sample;
use super::worker_list::WorkerStatus;

/// The chart's size in SVG units.
const CHART_WIDTH: f64 = 600.0;
const CHART_HEIGHT: f64 = 120.0;

/// The Overview page around its first fragment.
pub(crate) fn overview_page(overview: &Overview, refresh_ms: u128, window_s: u64) -> String {
    let fragment = overview_fragment(overview, window_s);
    let body = live("overview", "/fragments/overview", refresh_ms, &fragment);
    page(Tab::Overview, "Overview", &body)
}

/// The queues table, the throughput chart and the totals.
pub(crate) fn overview_fragment(overview: &Overview, window_s: u64) -> String {
    let rows: String = overview.queues.iter().map(queue_row).collect();
    let online = overview
        .workers
        .iter()
        .filter(|w| w.status == WorkerStatus::Online)
        .count();
    format!(
        "<p class=\"summary\">{online} worker(s) online · {} waiting in the delay ladder{} · \
         sampled {}</p>{}\
         <table class=\"queues\"><thead><tr><th>Queue</th><th>Ready</th><th>Unacked</th>\
         <th>Consumers</th><th>Publish</th><th>Deliver</th><th>Dead letters</th>\
         <th>Delayed</th></tr></thead><tbody>{rows}</tbody></table>\
         <h2>Throughput, last {} min</h2>{}",
        count(overview.delayed_total),
        scanned(overview.delay_scanned_at),
        time(overview.taken_at),
        notes(overview),
        window_s / 60,
        chart(&overview.throughput, window_s),
    )
}

/// One queue's row.
fn queue_row(q: &QueueRow) -> String {
    let dead = match q.dead_letters {
        Some(n) if n > 0 => format!(
            "<a href=\"/dead-letters?queue={}\">{n}</a>",
            url_part(&q.name)
        ),
        other => count(other),
    };
    let name = match q.exists {
        true => escape(&q.name),
        false => format!("{} <small>(not declared)</small>", escape(&q.name)),
    };
    format!(
        "<tr data-queue=\"{}\"><td class=\"name\">{name}</td><td class=\"ready\">{}</td>\
         <td class=\"unacked\">{}</td><td class=\"consumers\">{}</td>\
         <td class=\"publish-rate\">{}</td><td class=\"deliver-rate\">{}</td>\
         <td class=\"dead-letters\">{dead}</td><td class=\"delayed\">{}</td></tr>",
        escape(&q.name),
        q.ready,
        count(q.unacked),
        q.consumers,
        rate(q.publish_rate),
        rate(q.deliver_rate),
        count(q.delayed),
    )
}

/// Why some numbers are missing: no management API, the broker's errors.
fn notes(overview: &Overview) -> String {
    let mut notes = String::new();
    if !overview.management {
        notes.push_str(
            "<p class=\"note\">Unacknowledged counts and rates need RabbitMQ's management \
             API, which did not answer: they are shown as –.</p>",
        );
    }
    for problem in &overview.problems {
        notes.push_str(&format!("<p class=\"problem\">{}</p>", escape(problem)));
    }
    notes
}

/// The Workers page around its first fragment.
pub(crate) fn workers_page(overview: &Overview, refresh_ms: u128) -> String {
    let body = live(
        "workers",
        "/fragments/workers",
        refresh_ms,
        &workers_fragment(overview),
    );
    page(Tab::Workers, "Workers", &body)
}

/// The workers table.
pub(crate) fn workers_fragment(overview: &Overview) -> String {
    if overview.workers.is_empty() {
        return "<p class=\"empty\">No worker has sent a heartbeat. celeriac workers send \
                them unless started with heartbeats off; Celery workers need <code>-E</code>.</p>"
            .into();
    }
    let mut rows = String::new();
    for w in &overview.workers {
        let status = match w.status {
            WorkerStatus::Online => "online",
            WorkerStatus::Offline => "offline",
            WorkerStatus::Lost => "lost",
        };
        let load: Vec<String> = w.loadavg.iter().map(|l| format!("{l:.2}")).collect();
        rows.push_str(&format!(
            "<tr data-worker=\"{}\"><td class=\"name\">{}</td>\
             <td class=\"status {status}\">{status}</td><td>{}</td><td class=\"queues\">{}</td>\
             <td class=\"concurrency\">{}</td><td class=\"active\">{}</td>\
             <td class=\"in-flight\">{}</td><td class=\"processed\">{}</td>\
             <td class=\"failed\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&w.hostname),
            escape(&w.hostname),
            escape(&w.software),
            escape(&w.queues.join(", ")),
            count(w.concurrency),
            w.active,
            count(w.in_flight),
            w.processed,
            count(w.failed),
            escape(&load.join(" ")),
            time(Some(w.last_seen)),
        ));
    }
    format!(
        "<table class=\"workers\"><thead><tr><th>Worker</th><th>Status</th><th>Software</th>\
         <th>Queues</th><th>Concurrency</th><th>Active</th><th>In flight</th>\
         <th>Processed</th><th>Failed</th><th>Load</th><th>Last heartbeat</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    )
}

/// Processed and failed per second as two lines over the window, newest
/// at the right.
fn chart(samples: &[Sample], window_s: u64) -> String {
    let Some(last) = samples.last() else {
        return "<p class=\"empty\">No throughput yet: it is worked out from worker \
                heartbeats.</p>"
            .into();
    };
    let peak = samples
        .iter()
        .map(|s| s.processed_per_second.max(s.failed_per_second))
        .fold(1.0_f64, f64::max);
    let window = window_s.max(1) as f64;
    let line = |value: fn(&Sample) -> f64| -> String {
        let points: Vec<String> = samples
            .iter()
            .map(|s| {
                let age = (last.at - s.at).num_milliseconds() as f64 / 1000.0;
                let x = CHART_WIDTH * (1.0 - (age / window).min(1.0));
                let y = CHART_HEIGHT * (1.0 - value(s) / peak);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        points.join(" ")
    };
    format!(
        "<figure class=\"chart\"><svg viewBox=\"0 0 {CHART_WIDTH} {CHART_HEIGHT}\" \
         role=\"img\" aria-label=\"tasks per second\">\
         <polyline class=\"processed\" fill=\"none\" stroke=\"#2b8a3e\" stroke-width=\"2\" points=\"{}\"/>\
         <polyline class=\"failed\" fill=\"none\" stroke=\"#c92a2a\" stroke-width=\"2\" points=\"{}\"/>\
         </svg><figcaption><span class=\"processed\">processed {:.1}/s</span> · \
         <span class=\"failed\">failed {:.1}/s</span> · peak {peak:.1}/s</figcaption></figure>",
        line(|s| s.processed_per_second),
        line(|s| s.failed_per_second),
        last.processed_per_second,
        last.failed_per_second,
    )
}

fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "not yet".to_owned(),
        |t| t.format("%H:%M:%S UTC").to_string(),
    )
}

fn scanned(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(String::new, |t| {
        format!(" (per queue as of {})", t.format("%H:%M:%S"))
    })
}
