//! A send's uniqueness key: "run this only once while it is pending or
//! running", enforced on RabbitMQ alone (see [`UniqueLock`](crate::UniqueLock)
//! and docs/schedules-uniqueness-rate-limits.md).

use std::time::Duration;

use lapin::types::FieldTable;
use serde_json::{Map, Value};

use crate::{InvalidUniqueness, UniqueUntil, string_header};

/// The TTL of a key when none is given: one hour.
pub const DEFAULT_UNIQUE_TTL: Duration = Duration::from_secs(3600);

/// The shortest TTL a key may have: one second (so that zero, which would
/// hold nothing, is refused).
pub const MIN_UNIQUE_TTL: Duration = Duration::from_secs(1);

/// The longest TTL a key may have: 24 hours. However a worker dies, no key
/// is held longer than its TTL.
pub const MAX_UNIQUE_TTL: Duration = Duration::from_secs(24 * 3600);

/// The longest key, in bytes (it travels in every message's headers).
pub const MAX_UNIQUE_KEY_BYTES: usize = 1024;

/// The application header that carries a unique task's key, so that the
/// worker can release it. Celery ignores unknown headers: a Python worker
/// never releases, and the key's TTL does.
pub const UNIQUE_KEY_HEADER: &str = "celeriac_unique_key";

/// The application header that says when the worker releases the key:
/// `started` or `finished` ([`UniqueUntil`]).
pub const UNIQUE_UNTIL_HEADER: &str = "celeriac_unique_until";

/// A uniqueness key, when the worker releases it, and the TTL that bounds
/// the hold whatever happens. Built only through [`Uniqueness::new`] and
/// [`Uniqueness::with_ttl`], so an invalid one never reaches a send.
///
/// ```
/// use std::time::Duration;
/// use celeriac_shared::{UniqueUntil, Uniqueness};
///
/// let unique = Uniqueness::new("report:42")?
///     .with_until(UniqueUntil::Started)
///     .with_ttl(Duration::from_secs(600))?;
/// assert_eq!(unique.key(), "report:42");
/// # Ok::<(), celeriac_shared::InvalidUniqueness>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uniqueness {
    /// The key: any non-empty string of at most
    /// [`MAX_UNIQUE_KEY_BYTES`] bytes.
    key: String,
    /// When the worker releases the key.
    until: UniqueUntil,
    /// How long the key is held at most.
    ttl: Duration,
}

impl Uniqueness {
    /// `key`, released when the task finished ([`UniqueUntil::Finished`])
    /// or after [`DEFAULT_UNIQUE_TTL`] (one hour). Refuses an empty key and
    /// one over [`MAX_UNIQUE_KEY_BYTES`].
    pub fn new(key: impl Into<String>) -> Result<Self, InvalidUniqueness> {
        let key = key.into();
        if key.is_empty() {
            return Err(InvalidUniqueness::EmptyKey);
        }
        if key.len() > MAX_UNIQUE_KEY_BYTES {
            return Err(InvalidUniqueness::KeyTooLong {
                bytes: key.len(),
                max: MAX_UNIQUE_KEY_BYTES,
            });
        }
        Ok(Self {
            key,
            until: UniqueUntil::default(),
            ttl: DEFAULT_UNIQUE_TTL,
        })
    }

    /// Released when the task starts or when it finished. Defaults to
    /// [`UniqueUntil::Finished`].
    pub fn with_until(self, until: UniqueUntil) -> Self {
        Self { until, ..self }
    }

    /// Held at most `ttl`, between [`MIN_UNIQUE_TTL`] and
    /// [`MAX_UNIQUE_TTL`]. Defaults to [`DEFAULT_UNIQUE_TTL`]. The TTL
    /// counts from the send, in whole milliseconds.
    pub fn with_ttl(self, ttl: Duration) -> Result<Self, InvalidUniqueness> {
        if ttl < MIN_UNIQUE_TTL {
            return Err(InvalidUniqueness::TtlTooShort {
                ttl,
                min: MIN_UNIQUE_TTL,
            });
        }
        if ttl > MAX_UNIQUE_TTL {
            return Err(InvalidUniqueness::TtlTooLong {
                ttl,
                max: MAX_UNIQUE_TTL,
            });
        }
        Ok(Self { ttl, ..self })
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// When the worker releases the key.
    pub fn until(&self) -> UniqueUntil {
        self.until
    }

    /// How long the key is held at most.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Writes the key and its release mode into a task's application
    /// headers ([`UNIQUE_KEY_HEADER`], [`UNIQUE_UNTIL_HEADER`]).
    pub fn write_headers(&self, headers: &mut Map<String, Value>) {
        headers.insert(UNIQUE_KEY_HEADER.into(), Value::String(self.key.clone()));
        headers.insert(
            UNIQUE_UNTIL_HEADER.into(),
            Value::String(self.until.as_str().into()),
        );
    }

    /// The key and release mode a delivered task carries, if any: what
    /// [`Uniqueness::write_headers`] wrote. A key without a readable mode
    /// is released when the task finished (the safe side: later).
    pub fn read_headers(headers: Option<&FieldTable>) -> Option<(String, UniqueUntil)> {
        let key = string_header(headers, UNIQUE_KEY_HEADER).filter(|key| !key.is_empty())?;
        let until = string_header(headers, UNIQUE_UNTIL_HEADER)
            .and_then(|until| until.parse().ok())
            .unwrap_or_default();
        Some((key.to_owned(), until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_to_field_table;

    #[test]
    fn empty_keys_and_ttls_out_of_bounds_are_refused() {
        assert_eq!(Uniqueness::new(""), Err(InvalidUniqueness::EmptyKey));
        let long = "k".repeat(MAX_UNIQUE_KEY_BYTES + 1);
        assert!(matches!(
            Uniqueness::new(long),
            Err(InvalidUniqueness::KeyTooLong { .. })
        ));
        let unique = Uniqueness::new("k").unwrap();
        for ttl in [Duration::ZERO, Duration::from_millis(999)] {
            assert!(matches!(
                unique.clone().with_ttl(ttl),
                Err(InvalidUniqueness::TtlTooShort { .. })
            ));
        }
        assert!(matches!(
            unique
                .clone()
                .with_ttl(MAX_UNIQUE_TTL + Duration::from_millis(1)),
            Err(InvalidUniqueness::TtlTooLong { .. })
        ));
        assert_eq!(
            unique.with_ttl(MAX_UNIQUE_TTL).map(|u| u.ttl()),
            Ok(MAX_UNIQUE_TTL)
        );
    }

    #[test]
    fn the_headers_written_are_the_headers_read() {
        let unique = Uniqueness::new("report 42")
            .unwrap()
            .with_until(UniqueUntil::Started);
        let mut headers = Map::new();
        unique.write_headers(&mut headers);
        let table = json_to_field_table(&headers);
        assert_eq!(
            Uniqueness::read_headers(Some(&table)),
            Some(("report 42".to_owned(), UniqueUntil::Started))
        );
        assert_eq!(Uniqueness::read_headers(None), None);
    }
}
