//! A rate in Celery's format (`100/m`), for [`RateLimit`](crate::RateLimit).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The shortest interval between two tokens: 1 µs, a million per second.
const SHORTEST_INTERVAL: Duration = Duration::from_micros(1);

/// A rate in Celery's format: `N/s`, `N/m`, `N/h`, or a plain `N` per
/// second, `N` a positive whole number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// How many tasks per period: at least 1.
    count: u32,
    /// The period, kept as written so that the rate displays as written
    /// (`100/m`, not `5/3s`).
    per: Duration,
}

/// Why a rate cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRate {
    /// Not `N`, `N/s`, `N/m` or `N/h`.
    #[error("`{0}` is not a rate: write N/s, N/m, N/h or N (per second), N a whole number")]
    Syntax(String),
    /// A unit other than `s`, `m` or `h`.
    #[error("`{rate}` has the unknown unit `{unit}`: use s, m or h")]
    Unit {
        /// The rate as written.
        rate: String,
        /// The unit as written.
        unit: String,
    },
    /// `0/…`: nothing could ever run.
    #[error(
        "`{0}` allows no task at all; the count must be at least 1 (remove the entry for no limit)"
    )]
    Zero(String),
    /// More than a million per second.
    #[error("`{0}` is faster than 1000000/s, the fastest rate celeriac paces")]
    TooFast(String),
}

impl Rate {
    /// `count` tasks per `per`. Refuses a count or period of zero, and
    /// more than a million tasks per second.
    pub fn new(count: u32, per: Duration) -> Result<Self, InvalidRate> {
        let rate = Self { count, per };
        if count == 0 || per.is_zero() {
            return Err(InvalidRate::Zero(rate.to_string()));
        }
        if per / count < SHORTEST_INTERVAL {
            return Err(InvalidRate::TooFast(rate.to_string()));
        }
        Ok(rate)
    }

    /// How many tasks per [`Rate::per`].
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// The time between two tokens: the period divided by the count.
    pub fn interval(&self) -> Duration {
        self.per / self.count.max(1)
    }
}

impl FromStr for Rate {
    type Err = InvalidRate;

    /// Reads Celery's format: `N/s`, `N/m`, `N/h`, or `N` per second.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (count, unit) = match text.trim().split_once('/') {
            Some((count, unit)) => (count.trim(), unit.trim()),
            None => (text.trim(), "s"),
        };
        let count: u32 = count
            .parse()
            .map_err(|_| InvalidRate::Syntax(text.to_owned()))?;
        let per = match unit {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => {
                return Err(InvalidRate::Unit {
                    rate: text.to_owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        match Self::new(count, per) {
            Err(InvalidRate::Zero(_)) => Err(InvalidRate::Zero(text.to_owned())),
            Err(InvalidRate::TooFast(_)) => Err(InvalidRate::TooFast(text.to_owned())),
            rate => rate,
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.per.as_secs() {
            1 if self.per.subsec_nanos() == 0 => write!(f, "{}/s", self.count),
            60 if self.per.subsec_nanos() == 0 => write!(f, "{}/m", self.count),
            3600 if self.per.subsec_nanos() == 0 => write!(f, "{}/h", self.count),
            _ => write!(f, "{}/{:?}", self.count, self.per),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn celerys_rate_format_is_read() {
        let rate = |text: &str| text.parse::<Rate>().unwrap();
        assert_eq!(rate("10/s").interval(), Duration::from_millis(100));
        assert_eq!(rate("100/m").interval(), Duration::from_millis(600));
        assert_eq!(rate("2/h").interval(), Duration::from_secs(1800));
        assert_eq!(rate("4").interval(), Duration::from_millis(250));
        assert_eq!(rate(" 7 / m ").to_string(), "7/m");
    }

    #[test]
    fn bad_rates_say_what_is_wrong() {
        let err = |text: &str| text.parse::<Rate>().unwrap_err();
        assert_eq!(err("0/m"), InvalidRate::Zero("0/m".into()));
        assert_eq!(
            err("10/d"),
            InvalidRate::Unit {
                rate: "10/d".into(),
                unit: "d".into()
            }
        );
        assert_eq!(err("ten/s"), InvalidRate::Syntax("ten/s".into()));
        assert_eq!(err("1.5/s"), InvalidRate::Syntax("1.5/s".into()));
        assert_eq!(err("-1/s"), InvalidRate::Syntax("-1/s".into()));
        assert_eq!(err("2000000/s"), InvalidRate::TooFast("2000000/s".into()));
    }
}
