//! Handlers for the demo tasks of this crate.

use std::time::Duration;

use crate::{
    Add, AddArgs, Fail, FailArgs, Flaky, FlakyArgs, Sleep, SleepArgs, SumRange, SumRangeArgs,
    Total, TotalArgs, sum_range,
};

use celeriac_worker::{Registry, TaskContext, TaskError};

/// A registry with `demo.add`, `demo.sum_range`, `demo.sleep`,
/// `demo.fail`, `demo.flaky` and `demo.total`.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register::<Add, _, _>(add)
        .register::<SumRange, _, _>(sum)
        .register::<Sleep, _, _>(sleep)
        .register::<Fail, _, _>(fail)
        .register::<Flaky, _, _>(flaky)
        .register::<Total, _, _>(total);
    registry
}

/// `demo.add(x, y)`: `x + y`; overflow is a permanent failure.
pub async fn add(args: AddArgs, _ctx: TaskContext) -> Result<i64, TaskError> {
    args.x
        .checked_add(args.y)
        .ok_or_else(|| TaskError::reject(format!("{} + {} overflows", args.x, args.y)))
}

/// `demo.sum_range(start, end)`: the sum of start..=end.
pub async fn sum(args: SumRangeArgs, _ctx: TaskContext) -> Result<i128, TaskError> {
    Ok(sum_range(args.start, args.end))
}

/// `demo.sleep(seconds)`: sleeps, then returns the seconds; stops early
/// with `SoftTimeLimitExceeded` at its soft time limit.
pub async fn sleep(args: SleepArgs, ctx: TaskContext) -> Result<f64, TaskError> {
    let duration = Duration::try_from_secs_f64(args.seconds)
        .map_err(|_| TaskError::reject(format!("cannot sleep {} seconds", args.seconds)))?;
    tokio::select! {
        () = tokio::time::sleep(duration) => Ok(args.seconds),
        stop = ctx.soft_time_limit() => Err(stop),
    }
}

/// `demo.fail(message)`: always fails permanently with that message
/// (straight to the dead-letter queue).
pub async fn fail(args: FailArgs, _ctx: TaskContext) -> Result<(), TaskError> {
    Err(TaskError::reject(args.message))
}

/// `demo.flaky(failures)`: fails with a retryable error (retried after
/// 1 s) while its retry count is below `failures`, then returns the number
/// of attempts.
pub async fn flaky(args: FlakyArgs, ctx: TaskContext) -> Result<u32, TaskError> {
    if ctx.retries() < args.failures {
        let message = format!("flaky failure {} of {}", ctx.retries() + 1, args.failures);
        return Err(TaskError::retry_after(message, Duration::from_secs(1)));
    }
    Ok(ctx.retries() + 1)
}

/// `demo.total(values)`: the sum; overflow is a permanent failure.
pub async fn total(args: TotalArgs, _ctx: TaskContext) -> Result<i64, TaskError> {
    args.values
        .iter()
        .try_fold(0i64, |sum, value| sum.checked_add(*value))
        .ok_or_else(|| TaskError::reject("the total overflows"))
}
