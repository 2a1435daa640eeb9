//! The schedule of `celeriac beat`: which tasks to send, and when.
//!
//! This module is pure: it parses and checks a schedule file and computes
//! when each entry is due. Sending, and choosing which replica sends,
//! belong to the runtime. A [`Schedule`] is read with [`Schedule::load`]
//! (`celeriac beat --schedule FILE`); [`Schedule::next_runs`] renders what
//! `celeriac beat --check FILE` prints.
//!
//! # The file
//!
//! ```toml
//! [[schedule]]
//! name = "nightly-cleanup"          # required, unique in the file
//! task = "reports.cleanup"          # required, the Celery task name
//! cron = "0 3 * * *"                # minute hour day-of-month month day-of-week, OR:
//! # every = "30s"                   # a duration of at least 1 s
//! timezone = "Europe/Berlin"        # IANA name, only with cron; default UTC
//! args = [1, "x"]                   # default []
//! kwargs = { verbose = true }       # default {}
//! queue = "reports"                 # default: the routing rules decide
//! expires = "10m"                   # discard if not started within; default never
//! priority = 5                      # 0..=255; default none
//! time_limit = "5m"                 # hard time limit; default the worker's
//! ignore_result = true              # default true: nobody waits for beat's results
//! ```
//!
//! Durations are humantime's (`"90s"`, `"1h 30m"`). Unknown keys, a
//! schedule without entries, and any invalid entry are errors
//! ([`ScheduleError`]) naming the file, the entry and the field.
//!
//! # Ticks
//!
//! A [`Cadence`] is a set of instants, its *ticks*; the task is due once
//! per tick. Ticks depend on the entry alone, never on when beat started,
//! so every replica computes the same ones and a new leader can tell which
//! tick its predecessor sent last. [`Cadence::next_after`] gives the first
//! tick strictly after an instant, and [`Cadence::latest_due`] the latest
//! tick in `(after, now]` without walking the ticks in between.
//!
//! - `every`: the ticks are the whole multiples of the period since the
//!   UNIX epoch, counted in milliseconds. `every = "1h"` ticks at each full
//!   hour UTC; `every = "1500ms"` at 00:00:00, 00:00:01.5, 00:00:03, ...
//! - `cron`: the ticks are the instants, at second 0, whose wall clock in
//!   `timezone` matches the five fields (Vixie cron: day of month OR day of
//!   week when both are restricted; croner's `L`, `W`, `#` and a `+`
//!   before the day of week, for AND, are accepted too).
//!
//! ## Daylight saving time
//!
//! Only `cron` in a time zone with daylight saving time is affected. The
//! rules are those of the croner crate, after Vixie cron, and depend on
//! whether an expression is *fixed-time* (a single minute and a single
//! hour, like `30 2 * * *`) or not (a wildcard, list, range or step in the
//! minute or hour, like `30 * * * *` or `*/15 * * * *`):
//!
//! - A wall-clock time that does not exist (spring forward): a fixed-time
//!   expression runs once, at the first instant after the gap (Berlin,
//!   2026-03-29: `30 2 * * *` runs at 03:00 CEST, 01:00 UTC); the others
//!   skip it, staying in step with real time (`30 * * * *` runs at 01:30
//!   CET, then 03:30 CEST, an hour apart).
//! - A wall-clock time that occurs twice (fall back): a fixed-time
//!   expression runs once, at the first occurrence (Berlin, 2026-10-25:
//!   `30 2 * * *` runs at 02:30 CEST, 00:30 UTC, not at 02:30 CET); the
//!   others run at both (`30 * * * *` runs at 02:30 CEST and 02:30 CET,
//!   an hour apart).

mod cadence;
mod entry;
mod next_runs;
#[expect(
    clippy::module_inception,
    reason = "one main type per file, named after it: `Schedule` lives in schedule.rs"
)]
mod schedule;
mod schedule_error;

pub use cadence::Cadence;
pub use entry::Entry;
pub use next_runs::NextRuns;
pub use schedule::Schedule;
pub use schedule_error::{EntryLabel, Field, ScheduleError};
