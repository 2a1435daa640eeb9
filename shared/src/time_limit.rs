//! A task's time limits as Celery sends them: `[hard, soft]` seconds.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A task's time limits, on the wire `[hard, soft]` in seconds (each may be
/// `null`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TimeLimit {
    /// The task is killed after this long.
    pub hard: Option<Duration>,
    /// The task is asked to stop after this long.
    pub soft: Option<Duration>,
}

impl Serialize for TimeLimit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        fn seconds(limit: Option<Duration>) -> Value {
            match limit {
                None => Value::Null,
                Some(d) if d.subsec_nanos() == 0 => Value::from(d.as_secs()),
                Some(d) => Value::from(d.as_secs_f64()),
            }
        }
        [seconds(self.hard), seconds(self.soft)].serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for TimeLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let pair = Option::<Vec<Option<f64>>>::deserialize(deserializer)?.unwrap_or_default();
        let limit = |i: usize| -> Result<Option<Duration>, D::Error> {
            match pair.get(i).copied().flatten() {
                None => Ok(None),
                Some(s) => Duration::try_from_secs_f64(s)
                    .map(Some)
                    .map_err(|_| D::Error::custom(format!("{s} is not a valid number of seconds"))),
            }
        };
        if pair.len() > 2 {
            return Err(D::Error::custom("expected [hard, soft]"));
        }
        Ok(TimeLimit {
            hard: limit(0)?,
            soft: limit(1)?,
        })
    }
}
