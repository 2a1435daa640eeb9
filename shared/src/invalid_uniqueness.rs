//! Why a uniqueness key is refused.

use std::time::Duration;

/// Why a [`Uniqueness`](crate::Uniqueness) is refused. Nothing is
/// declared or published for a refused one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidUniqueness {
    /// The key is the empty string.
    #[error("a uniqueness key must not be empty")]
    EmptyKey,
    /// The key is longer than [`MAX_UNIQUE_KEY_BYTES`](crate::MAX_UNIQUE_KEY_BYTES).
    #[error("a uniqueness key of {bytes} bytes is longer than the maximum of {max} bytes")]
    KeyTooLong {
        /// The key's length in bytes.
        bytes: usize,
        /// The maximum.
        max: usize,
    },
    /// The TTL is shorter than [`MIN_UNIQUE_TTL`](crate::MIN_UNIQUE_TTL)
    /// (zero included).
    #[error("a uniqueness TTL of {ttl:?} is shorter than the minimum of {min:?}")]
    TtlTooShort {
        /// The TTL asked for.
        ttl: Duration,
        /// The minimum.
        min: Duration,
    },
    /// The TTL is longer than [`MAX_UNIQUE_TTL`](crate::MAX_UNIQUE_TTL):
    /// a crashed worker must not hold a key for longer.
    #[error("a uniqueness TTL of {ttl:?} is longer than the maximum of {max:?}")]
    TtlTooLong {
        /// The TTL asked for.
        ttl: Duration,
        /// The maximum.
        max: Duration,
    },
    /// Not `started` or `finished` (the start of what was given).
    #[error("`{0}` is not a release mode: use `started` or `finished`")]
    Until(String),
}
