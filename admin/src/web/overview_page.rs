//! The Overview and Workers pages and their live fragments.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::html::{Tab, count, live, page, rate, url_part};
use super::overview::{Overview, QueueRow};
use super::text::Text;
use super::throughput::Sample;
use super::worker_list::{WorkerRow, WorkerStatus};

/// The chart's size in SVG units.
const CHART_WIDTH: f64 = 600.0;
const CHART_HEIGHT: f64 = 120.0;

/// The queues table's column headings.
const QUEUE_COLUMNS: [&str; 8] = [
    "Queue",
    "Ready",
    "Unacked",
    "Consumers",
    "Publish",
    "Deliver",
    "Dead letters",
    "Delayed",
];

/// The workers table's column headings.
const WORKER_COLUMNS: [&str; 11] = [
    "Worker",
    "Status",
    "Software",
    "Queues",
    "Concurrency",
    "Active",
    "In flight",
    "Processed",
    "Failed",
    "Load",
    "Last heartbeat",
];

/// The Overview page around its first fragment.
pub(crate) fn overview_page(overview: &Overview, refresh_ms: u128, window_s: u64) -> Markup {
    let fragment = overview_fragment(overview, window_s);
    let body = live("overview", "/fragments/overview", refresh_ms, fragment);
    page(Tab::Overview, "Overview", body)
}

/// The queues table, the throughput chart and the totals.
pub(crate) fn overview_fragment(overview: &Overview, window_s: u64) -> Markup {
    html! {
        (summary(overview))
        (notes(overview))
        table class="queues" {
            thead { tr { @for column in QUEUE_COLUMNS { th { (column) } } } }
            tbody { @for queue in &overview.queues { (queue_row(queue)) } }
        }
        h2 { "Throughput, last " (window_s / 60) " min" }
        (chart(&overview.throughput, window_s))
    }
}

/// Workers online, what waits in the delay ladder, when it was sampled.
fn summary(overview: &Overview) -> Markup {
    let online = overview
        .workers
        .iter()
        .filter(|w| w.status == WorkerStatus::Online)
        .count();
    html! {
        p class="summary" {
            (online) " worker(s) online · " (count(overview.delayed_total))
            " waiting in the delay ladder" (scanned(overview.delay_scanned_at))
            " · sampled " (time(overview.taken_at))
        }
    }
}

/// One queue's row.
fn queue_row(q: &QueueRow) -> Markup {
    html! {
        tr data-queue=(Text(&q.name)) {
            td class="name" {
                (Text(&q.name))
                @if !q.exists { " " small { "(not declared)" } }
            }
            td class="ready" { (q.ready) }
            td class="unacked" { (count(q.unacked)) }
            td class="consumers" { (q.consumers) }
            td class="publish-rate" { (rate(q.publish_rate)) }
            td class="deliver-rate" { (rate(q.deliver_rate)) }
            td class="dead-letters" { (dead_letters(q)) }
            td class="delayed" { (count(q.delayed)) }
        }
    }
}

/// A queue's dead-letter count, a link to them when there are some.
fn dead_letters(q: &QueueRow) -> Markup {
    html! {
        @match q.dead_letters {
            Some(n) if n > 0 => a href={ "/dead-letters?queue=" (url_part(&q.name)) } { (n) },
            other => (count(other)),
        }
    }
}

/// Why some numbers are missing: no management API, the broker's errors.
fn notes(overview: &Overview) -> Markup {
    html! {
        @if !overview.management {
            p class="note" {
                "Unacknowledged counts and rates need RabbitMQ's management API, which did \
                 not answer: they are shown as –."
            }
        }
        @for problem in &overview.problems {
            p class="problem" { (Text(problem)) }
        }
    }
}

/// The Workers page around its first fragment.
pub(crate) fn workers_page(overview: &Overview, refresh_ms: u128) -> Markup {
    let fragment = workers_fragment(overview);
    let body = live("workers", "/fragments/workers", refresh_ms, fragment);
    page(Tab::Workers, "Workers", body)
}

/// The workers table.
pub(crate) fn workers_fragment(overview: &Overview) -> Markup {
    if overview.workers.is_empty() {
        return html! {
            p class="empty" {
                "No worker has sent a heartbeat. celeriac workers send them unless started \
                 with heartbeats off; Celery workers need " code { "-E" } "."
            }
        };
    }
    html! {
        table class="workers" {
            thead { tr { @for column in WORKER_COLUMNS { th { (column) } } } }
            tbody { @for worker in &overview.workers { (worker_row(worker)) } }
        }
    }
}

/// One worker's row.
fn worker_row(w: &WorkerRow) -> Markup {
    let status = match w.status {
        WorkerStatus::Online => "online",
        WorkerStatus::Offline => "offline",
        WorkerStatus::Lost => "lost",
    };
    let load: Vec<String> = w.loadavg.iter().map(|l| format!("{l:.2}")).collect();
    html! {
        tr data-worker=(Text(&w.hostname)) {
            td class="name" { (Text(&w.hostname)) }
            td class={ "status " (status) } { (status) }
            td { (Text(&w.software)) }
            td class="queues" { (Text(&w.queues.join(", "))) }
            td class="concurrency" { (count(w.concurrency)) }
            td class="active" { (w.active) }
            td class="in-flight" { (count(w.in_flight)) }
            td class="processed" { (w.processed) }
            td class="failed" { (count(w.failed)) }
            td { (load.join(" ")) }
            td { (time(Some(w.last_seen))) }
        }
    }
}

/// Processed and failed per second as two lines over the window, newest
/// at the right.
fn chart(samples: &[Sample], window_s: u64) -> Markup {
    let Some(last) = samples.last() else {
        return html! {
            p class="empty" { "No throughput yet: it is worked out from worker heartbeats." }
        };
    };
    let peak = samples
        .iter()
        .map(|s| s.processed_per_second.max(s.failed_per_second))
        .fold(1.0_f64, f64::max);
    let line = |value: fn(&Sample) -> f64| points(samples, last, window_s, peak, value);
    html! {
        figure class="chart" {
            svg viewBox={ "0 0 " (CHART_WIDTH) " " (CHART_HEIGHT) } role="img"
                aria-label="tasks per second" {
                polyline class="processed" fill="none" stroke="#2b8a3e" stroke-width="2"
                    points=(line(|s| s.processed_per_second)) {}
                polyline class="failed" fill="none" stroke="#c92a2a" stroke-width="2"
                    points=(line(|s| s.failed_per_second)) {}
            }
            figcaption {
                span class="processed" { "processed " (rate(Some(last.processed_per_second))) }
                " · "
                span class="failed" { "failed " (rate(Some(last.failed_per_second))) }
                " · peak " (rate(Some(peak)))
            }
        }
    }
}

/// One line of the chart: `value` of each sample as SVG points, scaled
/// to `peak` and placed by age within the window that ends at `last`.
fn points(
    samples: &[Sample],
    last: &Sample,
    window_s: u64,
    peak: f64,
    value: fn(&Sample) -> f64,
) -> String {
    let window = window_s.max(1) as f64;
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
}

/// A time of day, or `not yet`.
fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "not yet".to_owned(),
        |t| t.format("%H:%M:%S UTC").to_string(),
    )
}

/// When the per-queue delayed counts were read, if they were.
fn scanned(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(String::new, |t| {
        format!(" (per queue as of {})", t.format("%H:%M:%S"))
    })
}
