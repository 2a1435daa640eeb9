//! A whole schedule file, parsed and checked.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::entry::{Entry, RawEntry};
use super::next_runs::NextRuns;
use super::schedule_error::{EntryLabel, ScheduleError};

/// The periodic tasks of `celeriac beat`, read from a TOML file of
/// `[[schedule]]` tables (see the [module docs](super) for the format).
///
/// A schedule is checked whole when it is parsed: it has at least one
/// entry, names are unique, and every entry is valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Where the schedule was read from, to name it in logs.
    origin: String,
    /// The entries, in the file's order.
    entries: Vec<Entry>,
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    #[serde(default)]
    schedule: Vec<RawEntry>,
}

impl Schedule {
    /// Parses and checks a TOML document; `origin` names it in errors.
    ///
    /// ```
    /// use celeriac_admin::schedule::Schedule;
    ///
    /// let schedule = Schedule::from_toml(
    ///     r#"
    ///     [[schedule]]
    ///     name = "nightly-cleanup"
    ///     task = "reports.cleanup"
    ///     cron = "0 3 * * *"
    ///     timezone = "Europe/Berlin"
    ///     "#,
    ///     "schedule.toml",
    /// )?;
    /// assert_eq!(schedule.entries()[0].task, "reports.cleanup");
    /// # Ok::<(), celeriac_admin::schedule::ScheduleError>(())
    /// ```
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ScheduleError> {
        let file: ScheduleFile = toml::from_str(text).map_err(|err| ScheduleError::Syntax {
            origin: origin.to_owned(),
            message: describe(text, &err),
        })?;
        if file.schedule.is_empty() {
            return Err(ScheduleError::Empty {
                origin: origin.to_owned(),
            });
        }
        let mut entries = Vec::with_capacity(file.schedule.len());
        let mut positions = HashMap::new();
        for (index, raw) in file.schedule.into_iter().enumerate() {
            let entry = Entry::from_raw(raw, index + 1, origin)?;
            if let Some(&first) = positions.get(&entry.name) {
                return Err(ScheduleError::DuplicateName {
                    origin: origin.to_owned(),
                    entry: EntryLabel::Named(entry.name),
                    first,
                });
            }
            positions.insert(entry.name.clone(), index + 1);
            entries.push(entry);
        }
        Ok(Schedule {
            origin: origin.to_owned(),
            entries,
        })
    }

    /// Reads, parses and checks a TOML file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ScheduleError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScheduleError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The entries, in the file's order; never empty.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry with this name.
    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    /// Where the schedule was read from: the file's path, or the origin
    /// given to [`Schedule::from_toml`].
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Each entry with its next `count` runs after `now`, as `celeriac
    /// beat --check` prints them.
    pub fn next_runs(&self, now: DateTime<Utc>, count: usize) -> NextRuns<'_> {
        NextRuns::new(self, now, count)
    }
}

/// A TOML error as `line L, column C: message`.
fn describe(text: &str, err: &toml::de::Error) -> String {
    let Some(span) = err.span() else {
        return err.message().to_owned();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {column}: {}", err.message())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono_tz::Tz;
    use serde_json::json;

    use super::*;
    use crate::schedule::Cadence;

    const EXAMPLE: &str = r#"
[[schedule]]
name = "nightly-cleanup"
task = "reports.cleanup"
cron = "0 3 * * *"
timezone = "Europe/Berlin"
args = [1, "x"]
kwargs = { verbose = true }
queue = "reports"
expires = "10m"
priority = 5
time_limit = "5m"
ignore_result = false

[[schedule]]
name = "heartbeat"
task = "health.ping"
every = "30s"
"#;

    /// The error message for `body` as the only entry of a file.
    fn error(body: &str) -> String {
        let text = format!("[[schedule]]\n{body}");
        Schedule::from_toml(&text, "schedule.toml")
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn a_full_example_parses_every_field() {
        let schedule = Schedule::from_toml(EXAMPLE, "schedule.toml").expect("valid");
        assert_eq!(schedule.origin(), "schedule.toml");
        let [cleanup, heartbeat] = schedule.entries() else {
            panic!("two entries expected");
        };
        assert_eq!(cleanup.name, "nightly-cleanup");
        assert_eq!(cleanup.task, "reports.cleanup");
        assert_eq!(
            cleanup.cadence,
            Cadence::Cron {
                expression: "0 3 * * *".into(),
                timezone: Tz::Europe__Berlin,
            }
        );
        assert_eq!(cleanup.args, vec![json!(1), json!("x")]);
        assert_eq!(cleanup.kwargs.get("verbose"), Some(&json!(true)));
        assert_eq!(cleanup.queue.as_deref(), Some("reports"));
        assert_eq!(cleanup.expires, Some(Duration::from_secs(600)));
        assert_eq!(cleanup.priority, Some(5));
        assert_eq!(cleanup.time_limit, Some(Duration::from_secs(300)));
        assert!(!cleanup.ignore_result);

        assert_eq!(heartbeat.cadence, Cadence::Every(Duration::from_secs(30)));
        assert!(heartbeat.args.is_empty());
        assert!(heartbeat.kwargs.is_empty());
        assert_eq!(heartbeat.queue, None);
        assert_eq!(heartbeat.expires, None);
        assert_eq!(heartbeat.priority, None);
        assert_eq!(heartbeat.time_limit, None);
        assert!(heartbeat.ignore_result);
        assert_eq!(schedule.entry("heartbeat"), Some(heartbeat));
    }

    #[test]
    fn a_cron_without_timezone_reads_utc() {
        let text = "[[schedule]]\nname = \"n\"\ntask = \"t\"\ncron = \"0 3 * * *\"";
        let schedule = Schedule::from_toml(text, "schedule.toml").expect("valid");
        assert_eq!(schedule.entries()[0].cadence.timezone(), Tz::UTC);
    }

    #[test]
    fn a_cron_with_four_fields_is_refused_naming_entry_and_field() {
        assert_eq!(
            error("name = \"nightly-cleanup\"\ntask = \"t\"\ncron = \"0 3 * *\""),
            "schedule.toml: entry \"nightly-cleanup\": cron \"0 3 * *\": expected 5 fields \
             (minute hour day-of-month month day-of-week), found 4"
        );
        assert!(error("name = \"n\"\ntask = \"t\"\ncron = \"0 0 3 * * *\"").ends_with("found 6"));
    }

    #[test]
    fn an_invalid_cron_field_is_refused_with_the_parser_s_reason() {
        let text = "[[schedule]]\nname = \"n\"\ntask = \"t\"\ncron = \"61 3 * * *\"";
        let err = Schedule::from_toml(text, "schedule.toml").expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "schedule.toml: entry \"n\": cron \"61 3 * * *\" is not a valid cron expression"
        );
        let source = std::error::Error::source(&err).expect("the parser's reason");
        assert!(!source.to_string().is_empty());
    }

    #[test]
    fn a_cron_that_never_matches_is_refused() {
        assert_eq!(
            error("name = \"n\"\ntask = \"t\"\ncron = \"0 0 30 2 *\""),
            "schedule.toml: entry \"n\": cron \"0 0 30 2 *\" never matches"
        );
    }

    #[test]
    fn an_unknown_timezone_is_refused() {
        assert_eq!(
            error("name = \"n\"\ntask = \"t\"\ncron = \"0 3 * * *\"\ntimezone = \"Europe/Berln\""),
            "schedule.toml: entry \"n\": timezone \"Europe/Berln\" is not an IANA time zone \
             name like \"Europe/Berlin\" or \"UTC\""
        );
    }

    #[test]
    fn a_duplicate_name_is_refused_naming_the_first() {
        let text = "[[schedule]]\nname = \"a\"\ntask = \"t\"\nevery = \"1m\"\n\
                    [[schedule]]\nname = \"b\"\ntask = \"t\"\nevery = \"1m\"\n\
                    [[schedule]]\nname = \"a\"\ntask = \"u\"\nevery = \"2m\"\n";
        let err = Schedule::from_toml(text, "schedule.toml").expect_err("duplicate");
        assert_eq!(
            err.to_string(),
            "schedule.toml: entry \"a\": the name is already taken by entry 1"
        );
    }

    #[test]
    fn every_below_one_second_is_refused() {
        assert_eq!(
            error("name = \"n\"\ntask = \"t\"\nevery = \"500ms\""),
            "schedule.toml: entry \"n\": every \"500ms\" is shorter than the minimum of 1 s"
        );
    }

    #[test]
    fn every_finer_than_a_millisecond_is_refused() {
        assert_eq!(
            error("name = \"n\"\ntask = \"t\"\nevery = \"1s 500us\""),
            "schedule.toml: entry \"n\": every \"1s 500us\" is not a whole number of milliseconds"
        );
    }

    #[test]
    fn an_unparsable_duration_is_refused_naming_the_field() {
        assert_eq!(
            error("name = \"n\"\ntask = \"t\"\nevery = \"1m\"\nexpires = \"ten minutes\""),
            "schedule.toml: entry \"n\": expires \"ten minutes\" is not a duration like \
             \"30s\", \"5m\" or \"1h 30m\""
        );
        assert!(
            error("name = \"n\"\ntask = \"t\"\nevery = \"soon\"")
                .starts_with("schedule.toml: entry \"n\": every \"soon\" is not a duration")
        );
    }

    #[test]
    fn a_zero_time_limit_is_refused() {
        assert_eq!(
            error("name = \"n\"\ntask = \"t\"\nevery = \"1m\"\ntime_limit = \"0s\""),
            "schedule.toml: entry \"n\": time_limit \"0s\" must be longer than zero"
        );
    }

    #[test]
    fn both_every_and_cron_are_refused() {
        assert_eq!(
            error("name = \"n\"\ntask = \"t\"\nevery = \"1m\"\ncron = \"* * * * *\""),
            "schedule.toml: entry \"n\": give either `every` or `cron`, not both"
        );
    }

    #[test]
    fn neither_every_nor_cron_is_refused() {
        assert_eq!(
            error("name = \"n\"\ntask = \"t\""),
            "schedule.toml: entry \"n\": give `every` (like \"30s\") or `cron` \
             (like \"0 3 * * *\")"
        );
    }

    #[test]
    fn a_timezone_with_every_is_refused() {
        assert_eq!(
            error("name = \"n\"\ntask = \"t\"\nevery = \"1m\"\ntimezone = \"Europe/Berlin\""),
            "schedule.toml: entry \"n\": `timezone` applies to `cron` only, not to `every`"
        );
    }

    #[test]
    fn an_entry_without_a_name_is_labelled_by_its_position() {
        let text = "[[schedule]]\nname = \"a\"\ntask = \"t\"\nevery = \"1m\"\n\
                    [[schedule]]\ntask = \"t\"\nevery = \"1m\"\n";
        let err = Schedule::from_toml(text, "schedule.toml").expect_err("no name");
        assert_eq!(
            err.to_string(),
            "schedule.toml: entry 2: `name` is required and must not be empty"
        );
        assert_eq!(
            error("name = \"\"\ntask = \"t\"\nevery = \"1m\""),
            "schedule.toml: entry 1: `name` is required and must not be empty"
        );
    }

    #[test]
    fn a_missing_task_or_empty_queue_is_refused() {
        assert_eq!(
            error("name = \"n\"\nevery = \"1m\""),
            "schedule.toml: entry \"n\": `task` is required and must not be empty"
        );
        assert_eq!(
            error("name = \"n\"\ntask = \"t\"\nevery = \"1m\"\nqueue = \"\""),
            "schedule.toml: entry \"n\": `queue` must not be empty"
        );
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line_and_column() {
        let message = error("name = \"n\"\ntask = \"t\"\nevery = \"1m\"\nqueu = \"reports\"");
        assert!(
            message.starts_with("schedule.toml: line 5, column 1: unknown field `queu`"),
            "{message}"
        );
    }

    #[test]
    fn a_syntax_error_gives_its_line_and_column() {
        let message = error("name = \"n\"\ntask = \"t\nevery = \"1m\"");
        assert!(
            message.starts_with("schedule.toml: line 3, column "),
            "{message}"
        );
        let wrong_type = error("name = \"n\"\ntask = \"t\"\nevery = \"1m\"\npriority = 300");
        assert!(
            wrong_type.starts_with("schedule.toml: line 5, column 12: "),
            "{wrong_type}"
        );
    }

    #[test]
    fn an_empty_schedule_is_refused() {
        let err = Schedule::from_toml("# nothing yet\n", "schedule.toml").expect_err("empty");
        assert_eq!(err.to_string(), "schedule.toml: no [[schedule]] entries");
    }

    #[test]
    fn an_unreadable_file_names_its_path() {
        let err = Schedule::load("/nonexistent/schedule.toml").expect_err("missing");
        assert_eq!(
            err.to_string(),
            "cannot read schedule file /nonexistent/schedule.toml"
        );
        assert!(matches!(err, ScheduleError::Read { .. }));
    }
}
