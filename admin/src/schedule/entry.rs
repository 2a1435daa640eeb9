//! One periodic task of a schedule: what to send, where, and when.

use std::time::Duration;

use celeriac_shared::SendOptions;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::cadence::Cadence;
use super::schedule_error::{EntryLabel, ErrorSite, Field, ScheduleError};

/// One `[[schedule]]` entry, checked: a task to send at each tick of its
/// cadence.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Names the entry in logs and in the runtime's record of the last
    /// tick sent; unique in its schedule.
    pub name: String,
    /// The Celery task name to send.
    pub task: String,
    /// When the task is due.
    pub cadence: Cadence,
    /// Positional arguments. Defaults to none.
    pub args: Vec<Value>,
    /// Keyword arguments. Defaults to none.
    pub kwargs: Map<String, Value>,
    /// Send to this queue instead of where the routing rules send the
    /// task. Defaults to the routing rules.
    pub queue: Option<String>,
    /// Discard the task if it has not started within this long of being
    /// sent, so a backlog does not run stale ticks. Defaults to never.
    pub expires: Option<Duration>,
    /// AMQP priority (needs a queue with `x-max-priority`). Defaults to
    /// none.
    pub priority: Option<u8>,
    /// Hard time limit of each run. Defaults to the worker's.
    pub time_limit: Option<Duration>,
    /// Ask the worker not to send a result back. Defaults to `true`:
    /// nobody waits for the results of beat's sends.
    pub ignore_result: bool,
}

impl Entry {
    /// The options to send this entry's task with.
    pub fn send_options(&self) -> SendOptions {
        SendOptions {
            queue: self.queue.clone(),
            priority: self.priority,
            expires: self.expires,
            time_limit: self.time_limit,
            ignore_result: self.ignore_result,
            ..SendOptions::default()
        }
    }

    /// Checks one table as written; `position` counts from 1 and labels
    /// the entry in errors when it has no name.
    pub(super) fn from_raw(
        raw: RawEntry,
        position: usize,
        origin: &str,
    ) -> Result<Self, ScheduleError> {
        let label = match raw.name.as_deref() {
            Some(name) if !name.trim().is_empty() => EntryLabel::Named(name.to_owned()),
            _ => EntryLabel::Numbered(position),
        };
        let site = ErrorSite {
            origin,
            entry: &label,
        };
        let name = required(raw.name, Field::Name, site)?;
        let task = required(raw.task, Field::Task, site)?;
        let cadence = Cadence::from_fields(
            raw.every.as_deref(),
            raw.cron.as_deref(),
            raw.timezone.as_deref(),
            site,
        )?;
        Ok(Entry {
            name,
            task,
            cadence,
            args: json_args(raw.args, site)?,
            kwargs: json_kwargs(raw.kwargs, site)?,
            queue: not_empty(raw.queue, Field::Queue, site)?,
            expires: duration(raw.expires, Field::Expires, site)?,
            priority: raw.priority,
            time_limit: duration(raw.time_limit, Field::TimeLimit, site)?,
            ignore_result: raw.ignore_result.unwrap_or(true),
        })
    }
}

/// One `[[schedule]]` table as written, before it is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEntry {
    name: Option<String>,
    task: Option<String>,
    cron: Option<String>,
    every: Option<String>,
    timezone: Option<String>,
    #[serde(default)]
    args: Vec<toml::Value>,
    #[serde(default)]
    kwargs: toml::Table,
    queue: Option<String>,
    expires: Option<String>,
    priority: Option<u8>,
    time_limit: Option<String>,
    ignore_result: Option<bool>,
}

/// A field that must be given and not blank.
fn required(
    value: Option<String>,
    field: Field,
    site: ErrorSite<'_>,
) -> Result<String, ScheduleError> {
    match value {
        Some(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(ScheduleError::MissingField {
            origin: site.origin(),
            entry: site.entry(),
            field,
        }),
    }
}

/// An optional field that must not be blank when given.
fn not_empty(
    value: Option<String>,
    field: Field,
    site: ErrorSite<'_>,
) -> Result<Option<String>, ScheduleError> {
    match value {
        Some(value) if value.trim().is_empty() => Err(ScheduleError::EmptyField {
            origin: site.origin(),
            entry: site.entry(),
            field,
        }),
        value => Ok(value),
    }
}

/// An optional humantime duration, longer than zero.
fn duration(
    text: Option<String>,
    field: Field,
    site: ErrorSite<'_>,
) -> Result<Option<Duration>, ScheduleError> {
    let Some(text) = text else {
        return Ok(None);
    };
    match humantime::parse_duration(&text) {
        Ok(value) if value.is_zero() => Err(ScheduleError::ZeroDuration {
            origin: site.origin(),
            entry: site.entry(),
            field,
            value: text,
        }),
        Ok(value) => Ok(Some(value)),
        Err(source) => Err(ScheduleError::InvalidDuration {
            origin: site.origin(),
            entry: site.entry(),
            field,
            value: text,
            source,
        }),
    }
}

fn json_args(args: Vec<toml::Value>, site: ErrorSite<'_>) -> Result<Vec<Value>, ScheduleError> {
    args.into_iter()
        .map(to_json)
        .collect::<Result<_, _>>()
        .map_err(|value| not_json(Field::Args, value, site))
}

fn json_kwargs(
    kwargs: toml::Table,
    site: ErrorSite<'_>,
) -> Result<Map<String, Value>, ScheduleError> {
    table_to_json(kwargs).map_err(|value| not_json(Field::Kwargs, value, site))
}

fn not_json(field: Field, value: f64, site: ErrorSite<'_>) -> ScheduleError {
    ScheduleError::NotJson {
        origin: site.origin(),
        entry: site.entry(),
        field,
        value,
    }
}

/// A TOML value as JSON: a date or time becomes its RFC 3339 text. Fails
/// with the first float JSON cannot carry (`nan`, `inf`).
fn to_json(value: toml::Value) -> Result<Value, f64> {
    Ok(match value {
        toml::Value::String(text) => Value::String(text),
        toml::Value::Integer(number) => Value::from(number),
        toml::Value::Float(number) => {
            Value::Number(serde_json::Number::from_f64(number).ok_or(number)?)
        }
        toml::Value::Boolean(flag) => Value::Bool(flag),
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
        toml::Value::Array(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(table) => Value::Object(table_to_json(table)?),
    })
}

fn table_to_json(table: toml::Table) -> Result<Map<String, Value>, f64> {
    table
        .into_iter()
        .map(|(key, value)| Ok((key, to_json(value)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(text: &str) -> Result<Entry, ScheduleError> {
        let raw: RawEntry = toml::from_str(text).expect("a table");
        Entry::from_raw(raw, 1, "test.toml")
    }

    #[test]
    fn send_options_carry_the_entry_s_options() {
        let entry = entry(
            r#"
            name = "n"
            task = "t"
            every = "1m"
            queue = "reports"
            expires = "10m"
            priority = 5
            time_limit = "5m"
            "#,
        )
        .expect("valid");
        let options = entry.send_options();
        assert_eq!(options.queue.as_deref(), Some("reports"));
        assert_eq!(options.expires, Some(Duration::from_secs(600)));
        assert_eq!(options.priority, Some(5));
        assert_eq!(options.time_limit, Some(Duration::from_secs(300)));
        assert!(options.ignore_result);
        assert_eq!(options.task_id, None);
        assert_eq!(options.countdown, None);
        assert_eq!(options.eta, None);
    }

    #[test]
    fn toml_dates_become_rfc3339_strings_and_tables_objects() {
        let entry = entry(
            r#"
            name = "n"
            task = "t"
            every = "1m"
            args = [1979-05-27T07:32:00Z, [1.5, true]]
            kwargs = { nested = { x = 1 } }
            "#,
        )
        .expect("valid");
        assert_eq!(
            entry.args,
            vec![json!("1979-05-27T07:32:00Z"), json!([1.5, true])]
        );
        assert_eq!(Value::Object(entry.kwargs), json!({ "nested": { "x": 1 } }));
    }

    #[test]
    fn a_nan_argument_is_refused() {
        let err = entry("name = \"n\"\ntask = \"t\"\nevery = \"1m\"\nkwargs = { x = nan }")
            .expect_err("nan");
        assert_eq!(
            err.to_string(),
            "test.toml: entry \"n\": kwargs holds NaN, which JSON cannot carry"
        );
    }
}
