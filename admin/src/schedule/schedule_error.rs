//! Why a schedule file was refused, naming the file, the entry and the
//! field at fault.

use std::fmt;

/// Which entry of a schedule file an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryLabel {
    /// The entry by its `name`, shown as `entry "nightly-cleanup"`.
    Named(String),
    /// An entry without a usable `name`, by its position among the
    /// `[[schedule]]` tables counting from 1, shown as `entry 3`.
    Numbered(usize),
}

impl fmt::Display for EntryLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryLabel::Named(name) => write!(f, "entry {name:?}"),
            EntryLabel::Numbered(position) => write!(f, "entry {position}"),
        }
    }
}

/// A field of a `[[schedule]]` entry, shown as its TOML key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// `name`.
    Name,
    /// `task`.
    Task,
    /// `every`.
    Every,
    /// `args`.
    Args,
    /// `kwargs`.
    Kwargs,
    /// `queue`.
    Queue,
    /// `expires`.
    Expires,
    /// `time_limit`.
    TimeLimit,
}

impl Field {
    /// The TOML key.
    pub fn key(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::Task => "task",
            Field::Every => "every",
            Field::Args => "args",
            Field::Kwargs => "kwargs",
            Field::Queue => "queue",
            Field::Expires => "expires",
            Field::TimeLimit => "time_limit",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Why a schedule could not be loaded. `celeriac beat` refuses to start
/// on any of these: a schedule is checked whole before anything is sent.
///
/// Every message begins with the file (`origin`) and, for a fault in one
/// entry, the entry and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// The file could not be read.
    #[error("cannot read schedule file {path}")]
    Read {
        /// The file's path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, a value has the wrong type, or a key is
    /// unknown; the message gives the line and column.
    #[error("{origin}: {message}")]
    Syntax {
        /// The file's path, or what the text was read from.
        origin: String,
        /// What is wrong, starting with the line and column.
        message: String,
    },
    /// The file has no `[[schedule]]` entries.
    #[error("{origin}: no [[schedule]] entries")]
    Empty {
        /// The file's path, or what the text was read from.
        origin: String,
    },
    /// A required field (`name`, `task`) is missing or empty.
    #[error("{origin}: {entry}: `{field}` is required and must not be empty")]
    MissingField {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
        /// The missing field.
        field: Field,
    },
    /// An optional field (`queue`) is given but empty.
    #[error("{origin}: {entry}: `{field}` must not be empty")]
    EmptyField {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
        /// The empty field.
        field: Field,
    },
    /// Two entries have the same name.
    #[error("{origin}: {entry}: the name is already taken by entry {first}")]
    DuplicateName {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The later entry, by its name.
        entry: EntryLabel,
        /// The position of the first entry with that name, counting from 1.
        first: usize,
    },
    /// An entry gives both `every` and `cron`.
    #[error("{origin}: {entry}: give either `every` or `cron`, not both")]
    BothCadences {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
    },
    /// An entry gives neither `every` nor `cron`.
    #[error("{origin}: {entry}: give `every` (like \"30s\") or `cron` (like \"0 3 * * *\")")]
    NoCadence {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
    },
    /// An entry gives `timezone` with `every`, whose ticks count from the
    /// UNIX epoch in every time zone alike.
    #[error("{origin}: {entry}: `timezone` applies to `cron` only, not to `every`")]
    TimezoneWithEvery {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
    },
    /// A duration field (`every`, `expires`, `time_limit`) does not parse.
    #[error(
        "{origin}: {entry}: {field} {value:?} is not a duration like \"30s\", \"5m\" or \"1h 30m\""
    )]
    InvalidDuration {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
        /// The field.
        field: Field,
        /// The text as written.
        value: String,
        /// Why it does not parse.
        #[source]
        source: humantime::DurationError,
    },
    /// A duration field (`expires`, `time_limit`) is zero.
    #[error("{origin}: {entry}: {field} {value:?} must be longer than zero")]
    ZeroDuration {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
        /// The field.
        field: Field,
        /// The text as written.
        value: String,
    },
    /// `every` is shorter than one second.
    #[error("{origin}: {entry}: every {value:?} is shorter than the minimum of 1 s")]
    EveryTooShort {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
        /// The text as written.
        value: String,
    },
    /// `every` has a part finer than a millisecond.
    #[error("{origin}: {entry}: every {value:?} is not a whole number of milliseconds")]
    EverySubMillisecond {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
        /// The text as written.
        value: String,
    },
    /// `cron` does not have five fields.
    #[error(
        "{origin}: {entry}: cron {expression:?}: expected 5 fields \
         (minute hour day-of-month month day-of-week), found {found}"
    )]
    CronFieldCount {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
        /// The expression as written.
        expression: String,
        /// How many fields it has.
        found: usize,
    },
    /// `cron` has five fields, but one of them is invalid.
    #[error("{origin}: {entry}: cron {expression:?} is not a valid cron expression")]
    InvalidCron {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
        /// The expression as written.
        expression: String,
        /// What the cron parser found wrong.
        #[source]
        source: croner::errors::CronError,
    },
    /// `cron` names no date that exists, such as `0 0 30 2 *`.
    #[error("{origin}: {entry}: cron {expression:?} never matches")]
    CronNeverMatches {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
        /// The expression as written.
        expression: String,
    },
    /// `timezone` is not an IANA time zone name.
    #[error(
        "{origin}: {entry}: timezone {timezone:?} is not an IANA time zone name \
         like \"Europe/Berlin\" or \"UTC\""
    )]
    UnknownTimezone {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
        /// The name as written.
        timezone: String,
    },
    /// `args` or `kwargs` holds a number JSON cannot carry (`nan`, `inf`).
    #[error("{origin}: {entry}: {field} holds {value}, which JSON cannot carry")]
    NotJson {
        /// The file's path, or what the text was read from.
        origin: String,
        /// The entry.
        entry: EntryLabel,
        /// `args` or `kwargs`.
        field: Field,
        /// The number.
        value: f64,
    },
}

/// Where in a file a fault lies: what every entry-level variant of
/// [`ScheduleError`] names.
#[derive(Debug, Clone, Copy)]
pub(super) struct ErrorSite<'a> {
    /// The file's path, or what the text was read from.
    pub(super) origin: &'a str,
    /// The entry being checked.
    pub(super) entry: &'a EntryLabel,
}

impl ErrorSite<'_> {
    /// The origin, owned for an error.
    pub(super) fn origin(&self) -> String {
        self.origin.to_owned()
    }

    /// The entry's label, owned for an error.
    pub(super) fn entry(&self) -> EntryLabel {
        self.entry.clone()
    }
}
