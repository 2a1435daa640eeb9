//! When a unique task lets go of its key.

use std::fmt;
use std::str::FromStr;

use crate::InvalidUniqueness;

/// When the worker releases a unique task's key (besides the key's TTL,
/// which always ends the hold).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum UniqueUntil {
    /// When a worker starts the task: a second send is refused only while
    /// the first one waits in its queue (or in the delay ladder).
    Started,
    /// When the task's outcome is final: it succeeded, was dead-lettered
    /// (any reason), expired or was revoked. A retry keeps the key.
    /// The default.
    #[default]
    Finished,
}

impl UniqueUntil {
    /// The word used in the `celeriac_unique_until` header and on the
    /// command line: `started` or `finished`.
    pub fn as_str(self) -> &'static str {
        match self {
            UniqueUntil::Started => "started",
            UniqueUntil::Finished => "finished",
        }
    }
}

impl fmt::Display for UniqueUntil {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UniqueUntil {
    type Err = InvalidUniqueness;

    /// `started` or `finished`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "started" => Ok(UniqueUntil::Started),
            "finished" => Ok(UniqueUntil::Finished),
            other => Err(InvalidUniqueness::Until(other.chars().take(32).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_words_read_back_as_the_modes_and_nothing_else_does() {
        for until in [UniqueUntil::Started, UniqueUntil::Finished] {
            assert_eq!(until.as_str().parse::<UniqueUntil>().ok(), Some(until));
        }
        assert!("Started".parse::<UniqueUntil>().is_err());
    }
}
