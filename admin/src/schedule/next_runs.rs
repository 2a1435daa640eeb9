//! What `celeriac beat --check` prints: each entry and its next runs.

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::schedule::Schedule;

/// How run times are printed: to the millisecond only when there are any.
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";

/// Each entry of a schedule with its next runs, for display.
///
/// Prints, per entry, `name: task, cadence` and then one line per run with
/// its time in UTC and, for a cron entry in another time zone, its wall
/// clock time there:
///
/// ```text
/// nightly-cleanup: reports.cleanup, cron "0 3 * * *" (Europe/Berlin)
///   2026-12-08 02:00:00 UTC   2026-12-08 03:00:00 CET
/// ```
#[derive(Debug, Clone, Copy)]
pub struct NextRuns<'a> {
    /// The schedule to print.
    schedule: &'a Schedule,
    /// Runs strictly after this instant are printed.
    now: DateTime<Utc>,
    /// How many runs to print per entry.
    count: usize,
}

impl<'a> NextRuns<'a> {
    /// The next `count` runs after `now` of each entry of `schedule`.
    pub fn new(schedule: &'a Schedule, now: DateTime<Utc>, count: usize) -> Self {
        NextRuns {
            schedule,
            now,
            count,
        }
    }
}

impl fmt::Display for NextRuns<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, entry) in self.schedule.entries().iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{}: {}, {}", entry.name, entry.task, entry.cadence)?;
            let timezone = entry.cadence.timezone();
            let mut runs = entry.cadence.ticks_after(self.now).take(self.count);
            let Some(first) = runs.next() else {
                if self.count > 0 {
                    writeln!(f, "  no further runs")?;
                }
                continue;
            };
            for run in std::iter::once(first).chain(runs) {
                write!(f, "  {} UTC", run.format(TIME_FORMAT))?;
                if timezone != Tz::UTC {
                    let local = run.with_timezone(&timezone);
                    write!(f, "   {} {}", local.format(TIME_FORMAT), local.format("%Z"))?;
                }
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_entry_prints_its_next_runs_in_utc_and_its_timezone() {
        let schedule = Schedule::from_toml(
            r#"
            [[schedule]]
            name = "nightly-cleanup"
            task = "reports.cleanup"
            cron = "0 3 * * *"
            timezone = "Europe/Berlin"

            [[schedule]]
            name = "heartbeat"
            task = "health.ping"
            every = "1500ms"
            "#,
            "schedule.toml",
        )
        .expect("valid");
        let now = DateTime::parse_from_rfc3339("2026-03-27T12:00:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(
            schedule.next_runs(now, 2).to_string(),
            "nightly-cleanup: reports.cleanup, cron \"0 3 * * *\" (Europe/Berlin)\n\
             \x20 2026-03-28 02:00:00 UTC   2026-03-28 03:00:00 CET\n\
             \x20 2026-03-29 01:00:00 UTC   2026-03-29 03:00:00 CEST\n\
             \n\
             heartbeat: health.ping, every 1s 500ms\n\
             \x20 2026-03-27 12:00:01.500 UTC\n\
             \x20 2026-03-27 12:00:03 UTC\n"
        );
    }
}
