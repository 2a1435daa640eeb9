//! The demo tasks run by `celeriac-demo-worker`, used by the README demo,
//! the CLI's `sum` command and the tests.

use serde::{Deserialize, Serialize};

use celeriac_shared::Task;

/// `demo.add(x, y)`: returns `x + y`.
#[derive(Debug)]
pub struct Add;

/// Arguments of [`Add`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddArgs {
    /// The first addend.
    pub x: i64,
    /// The second addend.
    pub y: i64,
}

impl Task for Add {
    const NAME: &'static str = "demo.add";
    type Args = AddArgs;
    type Output = i64;
}

/// `demo.sum_range(start, end)`: the sum of the integers from `start` to
/// `end` inclusive, exact for `end` up to 10^10 and beyond.
#[derive(Debug)]
pub struct SumRange;

/// Arguments of [`SumRange`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SumRangeArgs {
    /// The first integer of the range.
    pub start: i64,
    /// The last integer of the range, inclusive.
    pub end: i64,
}

impl Task for SumRange {
    const NAME: &'static str = "demo.sum_range";
    type Args = SumRangeArgs;
    /// An `i128` so that sums up to 10^10 (about 5 * 10^19) do not overflow;
    /// serialized as a JSON integer.
    type Output = i128;
}

/// The sum of the integers from `start` to `end` inclusive (0 for an empty
/// range), computed in closed form without overflow.
pub fn sum_range(start: i64, end: i64) -> i128 {
    if end < start {
        return 0;
    }
    let (start, end) = (i128::from(start), i128::from(end));
    (start + end) * (end - start + 1) / 2
}

/// `demo.sleep(seconds)`: sleeps, then returns the seconds.
#[derive(Debug)]
pub struct Sleep;

/// Arguments of [`Sleep`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SleepArgs {
    /// How long to sleep, in seconds (fractions allowed).
    pub seconds: f64,
}

impl Task for Sleep {
    const NAME: &'static str = "demo.sleep";
    type Args = SleepArgs;
    type Output = f64;
}

/// `demo.fail(message)`: always fails permanently with that message.
#[derive(Debug)]
pub struct Fail;

/// Arguments of [`Fail`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailArgs {
    /// The error message.
    pub message: String,
}

impl Task for Fail {
    const NAME: &'static str = "demo.fail";
    type Args = FailArgs;
    type Output = ();
}

/// `demo.flaky(failures)`: fails with a retryable error while its retry
/// count is below `failures`, then returns the number of attempts.
#[derive(Debug)]
pub struct Flaky;

/// Arguments of [`Flaky`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlakyArgs {
    /// How many attempts fail before one succeeds.
    pub failures: u32,
}

impl Task for Flaky {
    const NAME: &'static str = "demo.flaky";
    type Args = FlakyArgs;
    type Output = u32;
}

/// `demo.total(values)`: the sum of a list of integers, as a chord's body
/// gets its header's results.
#[derive(Debug)]
pub struct Total;

/// Arguments of [`Total`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotalArgs {
    /// The integers to add up.
    pub values: Vec<i64>,
}

impl Task for Total {
    const NAME: &'static str = "demo.total";
    type Args = TotalArgs;
    type Output = i64;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_range_is_exact_up_to_ten_to_the_ten() {
        assert_eq!(sum_range(1, 100), 5050);
        assert_eq!(sum_range(5, 4), 0);
        let n: i128 = 10_000_000_000;
        assert_eq!(sum_range(1, 10_000_000_000), n * (n + 1) / 2);
        assert_eq!(sum_range(-3, 3), 0);
    }
}
