//! Samples of every measurement, summarised as median [min–max] in one
//! Markdown table, with each system's ratio to raw lapin.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::System;

/// A latency percentile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Percentile {
    P50,
    P90,
    P99,
}

impl Percentile {
    const ALL: [Self; 3] = [Self::P50, Self::P90, Self::P99];

    fn label(self) -> &'static str {
        match self {
            Self::P50 => "p50",
            Self::P90 => "p90",
            Self::P99 => "p99",
        }
    }

    /// The nearest-rank percentile of `sorted` (ascending).
    fn of(self, sorted: &[Duration]) -> Duration {
        let fraction = match self {
            Self::P50 => 0.50,
            Self::P90 => 0.90,
            Self::P99 => 0.99,
        };
        let rank = (fraction * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
}

/// One line of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Row {
    /// Confirmed publishes per second.
    Publish,
    /// Tasks per second drained from a pre-filled queue by one worker.
    Drain,
    /// The same with the worker sending task events (celeriac only).
    DrainEvents,
    /// Tasks per second with producer and worker running at once.
    EndToEnd,
    /// Call-and-wait latency through a named exclusive reply queue, ms.
    RoundTrip(Percentile),
    /// Call-and-wait latency through direct reply-to (raw lapin only), ms.
    DirectReplyTo(Percentile),
    /// Peak RSS of the worker process during the drain, MiB.
    PeakRss,
    /// RSS of an idle worker while N delayed tasks wait, MiB.
    DelayedRss,
    /// The p50 latency of a whole chain divided by its steps, ms.
    ChainStep,
    /// Time from sending a chord of this many header tasks to its body's
    /// result, s.
    Chord(usize),
}

impl Row {
    fn label(self) -> String {
        match self {
            Self::Publish => "confirmed publish (tasks/s)".into(),
            Self::Drain => "worker drain (tasks/s)".into(),
            Self::DrainEvents => "worker drain, task events on (tasks/s)".into(),
            Self::EndToEnd => "end to end (tasks/s)".into(),
            Self::RoundTrip(p) | Self::DirectReplyTo(p) => format!("round trip {} (ms)", p.label()),
            Self::PeakRss => "worker peak RSS, drain (MiB)".into(),
            Self::DelayedRss => "worker RSS, N delayed tasks waiting (MiB)".into(),
            Self::ChainStep => "chain, per step p50 (ms)".into(),
            Self::Chord(size) => format!("chord of {} tasks (s)", thousands(size as u64)),
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Self::Publish | Self::Drain | Self::DrainEvents | Self::EndToEnd => {
                thousands(value.round() as u64)
            }
            Self::RoundTrip(_) | Self::DirectReplyTo(_) | Self::ChainStep => {
                format!("{value:.3}")
            }
            Self::PeakRss | Self::DelayedRss => format!("{value:.1}"),
            Self::Chord(_) => format!("{value:.2}"),
        }
    }
}

/// Every sample taken, by row and system.
#[derive(Debug, Default)]
pub(crate) struct Report {
    samples: BTreeMap<(Row, System), Vec<f64>>,
    /// Lines printed under the table: skipped systems, settings.
    pub(crate) notes: Vec<String>,
}

impl Report {
    /// Records one sample.
    pub(crate) fn add(&mut self, row: Row, system: System, value: f64) {
        self.samples.entry((row, system)).or_default().push(value);
    }

    /// Records the percentiles of one run of round trips.
    pub(crate) fn add_latencies(
        &mut self,
        row: fn(Percentile) -> Row,
        system: System,
        mut latencies: Vec<Duration>,
    ) {
        latencies.sort_unstable();
        if latencies.is_empty() {
            return;
        }
        for p in Percentile::ALL {
            self.add(row(p), system, p.of(&latencies).as_secs_f64() * 1e3);
        }
    }

    /// Records one run of chains of `steps` steps: the p50 of their
    /// latencies, per step.
    pub(crate) fn add_chains(
        &mut self,
        system: System,
        mut latencies: Vec<Duration>,
        steps: usize,
    ) {
        latencies.sort_unstable();
        if latencies.is_empty() || steps == 0 {
            return;
        }
        let p50 = Percentile::P50.of(&latencies).as_secs_f64() * 1e3;
        self.add(Row::ChainStep, system, p50 / steps as f64);
    }

    /// The median of a row's samples for a system.
    pub(crate) fn median(&self, row: Row, system: System) -> Option<f64> {
        self.summary(row, system).map(|s| s.median)
    }

    fn summary(&self, row: Row, system: System) -> Option<Summary> {
        self.samples
            .get(&(row, system))
            .and_then(|v| Summary::of(v))
    }

    /// The table: one row per measurement, one column per system, then
    /// ratios of medians; the drain with task events and the workflow
    /// rows only if measured; then the reply-queue comparison and the
    /// notes.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let header = "| measurement | lapin | celeriac | celery | celeriac/lapin | celery/lapin | celeriac/celery |";
        let _ = writeln!(out, "{header}\n|---|---|---|---|---|---|---|");
        let mut rows = vec![Row::Publish, Row::Drain];
        if self.samples.keys().any(|&(row, _)| row == Row::DrainEvents) {
            rows.push(Row::DrainEvents);
        }
        rows.push(Row::EndToEnd);
        rows.extend(Percentile::ALL.map(Row::RoundTrip));
        rows.extend([Row::PeakRss, Row::DelayedRss]);
        let workflows = self.workflow_rows();
        for row in rows.into_iter().chain(workflows.iter().copied()) {
            let cell = |system| self.cell(row, system);
            let ratio = |a, b| ratio(self.median(row, a), self.median(row, b));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.label(),
                cell(System::Lapin),
                cell(System::Celeriac),
                cell(System::Celery),
                ratio(System::Celeriac, System::Lapin),
                ratio(System::Celery, System::Lapin),
                ratio(System::Celeriac, System::Celery),
            );
            match row {
                Row::DrainEvents => out.push_str(&self.render_events_on_off()),
                Row::ChainStep => out.push_str(&self.render_step_per_call()),
                _ => {}
            }
        }
        if Percentile::ALL
            .iter()
            .any(|&p| self.summary(Row::DirectReplyTo(p), System::Lapin).is_some())
        {
            out.push_str(&self.render_reply_queues());
        }
        for note in &self.notes {
            let _ = writeln!(out, "\n- {note}");
        }
        out
    }

    /// The chain and chord rows that have samples, in order.
    fn workflow_rows(&self) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .samples
            .keys()
            .map(|&(row, _)| row)
            .filter(|row| matches!(row, Row::ChainStep | Row::Chord(_)))
            .collect();
        rows.dedup();
        rows
    }

    /// Per system, the drain with task events on over the drain with
    /// them off, when both were measured (celeriac only).
    fn render_events_on_off(&self) -> String {
        let cell = |system| {
            ratio(
                self.median(Row::DrainEvents, system),
                self.median(Row::Drain, system),
            )
        };
        format!(
            "| drain events on / off | {} | {} | {} | – | – | – |\n",
            cell(System::Lapin),
            cell(System::Celeriac),
            cell(System::Celery),
        )
    }

    /// Per system, a chain step's p50 over a single call's round trip
    /// p50 (the `rtt` row), when both were measured.
    fn render_step_per_call(&self) -> String {
        let cell = |system| {
            ratio(
                self.median(Row::ChainStep, system),
                self.median(Row::RoundTrip(Percentile::P50), system),
            )
        };
        format!(
            "| chain step p50 / round trip p50 | {} | {} | {} | – | – | – |\n",
            cell(System::Lapin),
            cell(System::Celeriac),
            cell(System::Celery),
        )
    }

    /// Raw lapin's round trips: named exclusive reply queue vs direct
    /// reply-to.
    fn render_reply_queues(&self) -> String {
        let mut out = String::from(
            "\nReply queue, raw lapin:\n\n| round trip | named exclusive queue | amq.rabbitmq.reply-to | direct/named |\n|---|---|---|---|\n",
        );
        for p in Percentile::ALL {
            let (named, direct) = (Row::RoundTrip(p), Row::DirectReplyTo(p));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                named.label(),
                self.cell(named, System::Lapin),
                self.cell(direct, System::Lapin),
                ratio(
                    self.median(direct, System::Lapin),
                    self.median(named, System::Lapin)
                ),
            );
        }
        out
    }

    fn cell(&self, row: Row, system: System) -> String {
        match self.summary(row, system) {
            None => "–".into(),
            Some(s) if s.count == 1 => row.format(s.median),
            Some(s) => format!(
                "{} [{}–{}]",
                row.format(s.median),
                row.format(s.min),
                row.format(s.max)
            ),
        }
    }
}

/// Median, min and max of some samples.
#[derive(Debug, Clone, Copy)]
struct Summary {
    median: f64,
    min: f64,
    max: f64,
    count: usize,
}

impl Summary {
    fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len();
        let median = match count {
            0 => return None,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[count - 1],
            count,
        })
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "–".into(),
    }
}

/// `1234567` as `1,234,567`.
fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_take_the_middle_sample() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Summary::of(&[1.0, 2.0, 4.0, 8.0]).unwrap().median, 3.0);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(Percentile::P50.of(&sorted), Duration::from_millis(50));
        assert_eq!(Percentile::P99.of(&sorted), Duration::from_millis(99));
        assert_eq!(Percentile::P90.of(&sorted[..1]), Duration::from_millis(1));
    }

    #[test]
    fn workflow_rows_show_only_when_measured() {
        let mut report = Report::default();
        assert!(!report.render().contains("chain"));
        let latencies = (1..=5).map(Duration::from_millis).map(|d| d * 10).collect();
        report.add_chains(System::Celeriac, latencies, 10);
        report.add(Row::RoundTrip(Percentile::P50), System::Celeriac, 2.0);
        report.add(Row::Chord(1000), System::Celeriac, 1.5);
        let table = report.render();
        assert!(
            table.contains("| chain, per step p50 (ms) | – | 3.000 |"),
            "{table}"
        );
        assert!(
            table.contains("| chain step p50 / round trip p50 | – | 1.50x |"),
            "{table}"
        );
        assert!(
            table.contains("| chord of 1,000 tasks (s) | – | 1.50 |"),
            "{table}"
        );
    }

    #[test]
    fn the_drain_with_task_events_shows_only_when_measured() {
        let mut report = Report::default();
        report.add(Row::Drain, System::Celeriac, 10_000.0);
        assert!(!report.render().contains("task events"));
        report.add(Row::DrainEvents, System::Celeriac, 9_000.0);
        let table = report.render();
        assert!(
            table.contains(
                "| worker drain (tasks/s) | – | 10,000 | – | – | – | – |\n\
                 | worker drain, task events on (tasks/s) | – | 9,000 | – | – | – | – |\n\
                 | drain events on / off | – | 0.90x | – | – | – | – |\n\
                 | end to end"
            ),
            "{table}"
        );
    }

    #[test]
    fn rates_get_thousands_separators() {
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
