//! When an entry's task is due: its ticks, from a fixed period or a cron
//! expression read on a time zone's wall clock.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};

use super::schedule_error::{ErrorSite, Field, ScheduleError};

/// The shortest `every` a schedule file accepts.
const MIN_PERIOD: Duration = Duration::from_secs(1);

/// The fields of a cron expression: minute, hour, day of month, month,
/// day of week.
const CRON_FIELDS: usize = 5;

/// When an entry's task is due: the instants it *ticks* at.
///
/// Ticks depend on the cadence alone, never on when beat started, so
/// every replica computes the same ones. The [module docs](super) give
/// the rules, daylight saving time included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cadence {
    /// Ticks at the whole multiples of the period since the UNIX epoch,
    /// counted in milliseconds. A schedule file's period is at least 1 s
    /// and a whole number of milliseconds; of a period built by hand, a
    /// part finer than a millisecond is ignored, and one under 1 ms never
    /// ticks.
    Every(Duration),
    /// Ticks at second 0 of each minute whose wall-clock time in
    /// `timezone` matches `expression`.
    Cron {
        /// The five-field cron expression as written (`minute hour
        /// day-of-month month day-of-week`). One built by hand that does
        /// not parse never ticks.
        expression: String,
        /// The time zone whose wall clock the expression reads. A schedule
        /// file's entry without `timezone` gets UTC.
        timezone: Tz,
    },
}

impl Cadence {
    /// The first tick strictly after `t`, or `None` when there is none
    /// (beyond the year 5000, or for a cadence that never ticks).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Cadence::Every(period) => {
                let period = period_millis(*period)?;
                let index = t.timestamp_millis().div_euclid(period).checked_add(1)?;
                DateTime::from_timestamp_millis(index.checked_mul(period)?)
            }
            Cadence::Cron {
                expression,
                timezone,
            } => {
                let cron = parse_cron(expression).ok()?;
                // Ticks fall on whole seconds: none lies between `t` and its
                // whole second, and croner counts in whole seconds.
                let start = t.trunc_subsecs(0).with_timezone(timezone);
                let next = cron.find_next_occurrence(&start, false).ok()?;
                Some(next.with_timezone(&Utc))
            }
        }
    }

    /// The latest tick in `(after, now]`, or `None` when no tick falls in
    /// it (or `now` is not after `after`).
    ///
    /// The work does not grow with the length of the interval: `every` is
    /// arithmetic, and `cron` searches backwards from `now` once.
    pub fn latest_due(&self, after: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if now <= after {
            return None;
        }
        let latest = match self {
            Cadence::Every(period) => {
                let period = period_millis(*period)?;
                let index = now.timestamp_millis().div_euclid(period);
                DateTime::from_timestamp_millis(index.checked_mul(period)?)?
            }
            Cadence::Cron {
                expression,
                timezone,
            } => {
                let cron = parse_cron(expression).ok()?;
                let end = now.trunc_subsecs(0).with_timezone(timezone);
                let previous = cron.find_previous_occurrence(&end, true).ok()?;
                previous.with_timezone(&Utc)
            }
        };
        (latest > after).then_some(latest)
    }

    /// The ticks strictly after `t`, in order.
    pub fn ticks_after(&self, t: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(self.next_after(t), move |&tick| self.next_after(tick))
    }

    /// The time zone the cadence reads: UTC for [`Cadence::Every`].
    pub fn timezone(&self) -> Tz {
        match self {
            Cadence::Every(_) => Tz::UTC,
            Cadence::Cron { timezone, .. } => *timezone,
        }
    }

    /// Checks an entry's `every`, `cron` and `timezone` fields: exactly one
    /// of `every` and `cron`, and `timezone` only with `cron`.
    pub(super) fn from_fields(
        every: Option<&str>,
        cron: Option<&str>,
        timezone: Option<&str>,
        site: ErrorSite<'_>,
    ) -> Result<Self, ScheduleError> {
        match (every, cron) {
            (Some(_), Some(_)) => Err(ScheduleError::BothCadences {
                origin: site.origin(),
                entry: site.entry(),
            }),
            (None, None) => Err(ScheduleError::NoCadence {
                origin: site.origin(),
                entry: site.entry(),
            }),
            (Some(_), None) if timezone.is_some() => Err(ScheduleError::TimezoneWithEvery {
                origin: site.origin(),
                entry: site.entry(),
            }),
            (Some(every), None) => Self::parse_every(every, site),
            (None, Some(cron)) => Self::parse_cron(cron, timezone, site),
        }
    }

    /// Parses `every`: a humantime duration of at least 1 s, in whole
    /// milliseconds.
    fn parse_every(text: &str, site: ErrorSite<'_>) -> Result<Self, ScheduleError> {
        let period =
            humantime::parse_duration(text).map_err(|source| ScheduleError::InvalidDuration {
                origin: site.origin(),
                entry: site.entry(),
                field: Field::Every,
                value: text.to_owned(),
                source,
            })?;
        if period < MIN_PERIOD {
            return Err(ScheduleError::EveryTooShort {
                origin: site.origin(),
                entry: site.entry(),
                value: text.to_owned(),
            });
        }
        if period.subsec_nanos() % 1_000_000 != 0 {
            return Err(ScheduleError::EverySubMillisecond {
                origin: site.origin(),
                entry: site.entry(),
                value: text.to_owned(),
            });
        }
        Ok(Cadence::Every(period))
    }

    /// Parses `cron` and `timezone`, and checks that the expression
    /// matches some date.
    fn parse_cron(
        expression: &str,
        timezone: Option<&str>,
        site: ErrorSite<'_>,
    ) -> Result<Self, ScheduleError> {
        let found = expression.split_whitespace().count();
        if found != CRON_FIELDS {
            return Err(ScheduleError::CronFieldCount {
                origin: site.origin(),
                entry: site.entry(),
                expression: expression.to_owned(),
                found,
            });
        }
        parse_cron(expression).map_err(|source| ScheduleError::InvalidCron {
            origin: site.origin(),
            entry: site.entry(),
            expression: expression.to_owned(),
            source,
        })?;
        let timezone = match timezone {
            None => Tz::UTC,
            Some(name) => name.parse().map_err(|_| ScheduleError::UnknownTimezone {
                origin: site.origin(),
                entry: site.entry(),
                timezone: name.to_owned(),
            })?,
        };
        let cadence = Cadence::Cron {
            expression: expression.to_owned(),
            timezone,
        };
        // Five fields have no year: a date that exists at all comes round
        // within 28 years of any start.
        match cadence.next_after(DateTime::UNIX_EPOCH) {
            Some(_) => Ok(cadence),
            None => Err(ScheduleError::CronNeverMatches {
                origin: site.origin(),
                entry: site.entry(),
                expression: expression.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Cadence {
    /// `every 30s`, or `cron "0 3 * * *" (Europe/Berlin)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cadence::Every(period) => write!(f, "every {}", humantime::format_duration(*period)),
            Cadence::Cron {
                expression,
                timezone,
            } => write!(f, "cron {expression:?} ({timezone})"),
        }
    }
}

/// A period in whole milliseconds, or `None` when it is under 1 ms (or
/// too long to count).
fn period_millis(period: Duration) -> Option<i64> {
    i64::try_from(period.as_millis())
        .ok()
        .filter(|&millis| millis > 0)
}

/// Parses a five-field expression: no seconds, no year, POSIX weekdays
/// (0 and 7 are Sunday), day of month OR day of week unless the latter
/// starts with `+`.
fn parse_cron(expression: &str) -> Result<Cron, CronError> {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expression)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::schedule::EntryLabel;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid RFC 3339")
            .with_timezone(&Utc)
    }

    fn cron(expression: &str, timezone: &str) -> Cadence {
        let entry = EntryLabel::Numbered(1);
        let site = ErrorSite {
            origin: "test",
            entry: &entry,
        };
        Cadence::from_fields(None, Some(expression), Some(timezone), site).expect("valid cron")
    }

    fn next_ticks(cadence: &Cadence, after: &str, count: usize) -> Vec<DateTime<Utc>> {
        cadence.ticks_after(utc(after)).take(count).collect()
    }

    #[test]
    fn every_ticks_on_whole_multiples_of_the_period_since_the_epoch() {
        let seven_minutes = Cadence::Every(Duration::from_secs(7 * 60));
        // 2026-01-01T00:00:00Z is 1_767_225_600 s = 4_207_680 × 420 s.
        assert_eq!(
            seven_minutes.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-01T00:07:00Z"))
        );
        assert_eq!(
            seven_minutes.next_after(utc("2025-12-31T23:59:59.999Z")),
            Some(utc("2026-01-01T00:00:00Z"))
        );
        let hourly = Cadence::Every(Duration::from_secs(3600));
        assert_eq!(
            hourly.next_after(utc("2026-05-04T10:17:03.5Z")),
            Some(utc("2026-05-04T11:00:00Z"))
        );
    }

    #[test]
    fn every_counts_in_milliseconds() {
        let cadence = Cadence::Every(Duration::from_millis(1500));
        assert_eq!(
            next_ticks(&cadence, "1970-01-01T00:00:01Z", 3),
            vec![
                utc("1970-01-01T00:00:01.5Z"),
                utc("1970-01-01T00:00:03Z"),
                utc("1970-01-01T00:00:04.5Z"),
            ]
        );
        assert_eq!(
            cadence.next_after(utc("1969-12-31T23:59:59Z")),
            Some(utc("1970-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn every_latest_due_is_the_last_tick_up_to_now() {
        let cadence = Cadence::Every(Duration::from_secs(30));
        let after = utc("2026-05-04T10:00:00Z");
        assert_eq!(
            cadence.latest_due(after, utc("2026-05-04T10:01:10Z")),
            Some(utc("2026-05-04T10:01:00Z"))
        );
        assert_eq!(
            cadence.latest_due(after, utc("2026-05-04T10:00:30Z")),
            Some(utc("2026-05-04T10:00:30Z"))
        );
        assert_eq!(
            cadence.latest_due(after, utc("2026-05-04T10:00:29.9Z")),
            None
        );
        assert_eq!(cadence.latest_due(after, after), None);
        assert_eq!(cadence.latest_due(after, utc("2026-05-04T09:00:00Z")), None);
    }

    #[test]
    fn every_second_latest_due_is_instant_for_a_year_old_after() {
        let cadence = Cadence::Every(Duration::from_secs(1));
        let now = utc("2026-06-01T12:00:00.750Z");
        let after = now - chrono::Duration::days(365);
        let started = std::time::Instant::now();
        assert_eq!(
            cadence.latest_due(after, now),
            Some(utc("2026-06-01T12:00:00Z"))
        );
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
    }

    #[test]
    fn a_hand_built_zero_period_never_ticks() {
        let cadence = Cadence::Every(Duration::ZERO);
        let now = utc("2026-01-01T00:00:00Z");
        assert_eq!(cadence.next_after(now), None);
        assert_eq!(cadence.latest_due(DateTime::UNIX_EPOCH, now), None);
    }

    #[test]
    fn cron_next_after_is_strictly_after() {
        let cadence = cron("*/15 * * * *", "UTC");
        assert_eq!(
            next_ticks(&cadence, "2026-05-04T10:15:00Z", 2),
            vec![utc("2026-05-04T10:30:00Z"), utc("2026-05-04T10:45:00Z")]
        );
        assert_eq!(
            cadence.next_after(utc("2026-05-04T10:14:59.999Z")),
            Some(utc("2026-05-04T10:15:00Z"))
        );
    }

    #[test]
    fn cron_latest_due_searches_back_from_now() {
        let cadence = cron("0 3 * * *", "UTC");
        let now = utc("2026-05-04T10:00:00Z");
        assert_eq!(
            cadence.latest_due(utc("2025-05-04T10:00:00Z"), now),
            Some(utc("2026-05-04T03:00:00Z"))
        );
        assert_eq!(cadence.latest_due(utc("2026-05-04T03:00:00Z"), now), None);
        assert_eq!(
            cadence.latest_due(utc("2026-05-04T02:59:59Z"), utc("2026-05-04T03:00:00.4Z")),
            Some(utc("2026-05-04T03:00:00Z"))
        );
        let every_minute = cron("* * * * *", "UTC");
        let started = std::time::Instant::now();
        assert_eq!(
            every_minute.latest_due(utc("2025-05-04T10:00:00Z"), utc("2026-05-04T10:07:30Z")),
            Some(utc("2026-05-04T10:07:00Z"))
        );
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
    }

    #[test]
    fn berlin_3am_is_1am_utc_in_summer_and_2am_utc_in_winter() {
        let cadence = cron("0 3 * * *", "Europe/Berlin");
        assert_eq!(
            cadence.next_after(utc("2026-07-01T00:00:00Z")),
            Some(utc("2026-07-01T01:00:00Z"))
        );
        assert_eq!(
            cadence.next_after(utc("2026-12-01T00:00:00Z")),
            Some(utc("2026-12-01T02:00:00Z"))
        );
    }

    #[test]
    fn berlin_fixed_time_in_the_spring_gap_runs_once_right_after_the_gap() {
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 does
        // not exist, so that day's run is at 03:00 CEST.
        let cadence = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            next_ticks(&cadence, "2026-03-28T00:00:00Z", 3),
            vec![
                utc("2026-03-28T01:30:00Z"),
                utc("2026-03-29T01:00:00Z"),
                utc("2026-03-30T00:30:00Z"),
            ]
        );
        assert_eq!(
            cadence.latest_due(utc("2026-03-28T12:00:00Z"), utc("2026-03-29T01:00:00Z")),
            Some(utc("2026-03-29T01:00:00Z"))
        );
    }

    #[test]
    fn berlin_fixed_time_in_the_autumn_repeat_runs_once_at_the_first() {
        // 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC); 02:30
        // is 00:30 UTC (CEST) and again 01:30 UTC (CET).
        let cadence = cron("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            next_ticks(&cadence, "2026-10-24T12:00:00Z", 2),
            vec![utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")]
        );
        assert_eq!(
            cadence.latest_due(utc("2026-10-25T00:30:00Z"), utc("2026-10-25T02:00:00Z")),
            None
        );
        assert_eq!(
            cadence.latest_due(utc("2026-10-24T12:00:00Z"), utc("2026-10-25T02:00:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn berlin_hourly_follows_real_time_across_both_changes() {
        let cadence = cron("30 * * * *", "Europe/Berlin");
        // Spring: 01:30 CET, (02:30 does not exist), 03:30 CEST.
        assert_eq!(
            next_ticks(&cadence, "2026-03-29T00:00:00Z", 2),
            vec![utc("2026-03-29T00:30:00Z"), utc("2026-03-29T01:30:00Z")]
        );
        // Autumn: 02:30 CEST, 02:30 CET, 03:30 CET, an hour apart each.
        assert_eq!(
            next_ticks(&cadence, "2026-10-25T00:00:00Z", 3),
            vec![
                utc("2026-10-25T00:30:00Z"),
                utc("2026-10-25T01:30:00Z"),
                utc("2026-10-25T02:30:00Z"),
            ]
        );
        assert_eq!(
            cadence.latest_due(utc("2026-10-25T00:30:00Z"), utc("2026-10-25T02:00:00Z")),
            Some(utc("2026-10-25T01:30:00Z"))
        );
    }

    #[test]
    fn new_york_fixed_times_across_both_changes() {
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        let half_past_two = cron("30 2 * * *", "America/New_York");
        assert_eq!(
            next_ticks(&half_past_two, "2026-03-07T12:00:00Z", 2),
            vec![utc("2026-03-08T07:00:00Z"), utc("2026-03-09T06:30:00Z")]
        );
        // 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 is 05:30 UTC
        // (EDT) and again 06:30 UTC (EST).
        let half_past_one = cron("30 1 * * *", "America/New_York");
        assert_eq!(
            next_ticks(&half_past_one, "2026-10-31T12:00:00Z", 2),
            vec![utc("2026-11-01T05:30:00Z"), utc("2026-11-02T06:30:00Z")]
        );
        assert_eq!(
            half_past_one.latest_due(utc("2026-11-01T05:30:00Z"), utc("2026-11-01T07:00:00Z")),
            None
        );
    }

    #[test]
    fn cron_reads_the_wall_clock_of_its_timezone() {
        let tokyo: Tz = "Asia/Tokyo".parse().expect("known zone");
        let cadence = cron("0 9 * * 1-5", "Asia/Tokyo");
        // Friday 2026-05-08 09:00 JST, then Monday 2026-05-11.
        let friday = tokyo
            .with_ymd_and_hms(2026, 5, 8, 9, 0, 0)
            .single()
            .expect("unambiguous")
            .with_timezone(&Utc);
        assert_eq!(
            cadence.next_after(utc("2026-05-07T12:00:00Z")),
            Some(friday)
        );
        assert_eq!(
            cadence.next_after(friday),
            Some(utc("2026-05-11T00:00:00Z"))
        );
    }

    #[test]
    fn a_hand_built_invalid_expression_never_ticks() {
        let cadence = Cadence::Cron {
            expression: "61 * * * *".into(),
            timezone: Tz::UTC,
        };
        let now = utc("2026-01-01T00:00:00Z");
        assert_eq!(cadence.next_after(now), None);
        assert_eq!(cadence.latest_due(DateTime::UNIX_EPOCH, now), None);
    }

    #[test]
    fn cadences_display_as_written() {
        assert_eq!(
            Cadence::Every(Duration::from_secs(90)).to_string(),
            "every 1m 30s"
        );
        assert_eq!(
            cron("0 3 * * *", "Europe/Berlin").to_string(),
            "cron \"0 3 * * *\" (Europe/Berlin)"
        );
    }
}
