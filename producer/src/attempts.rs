//! Sending through broker restarts: a send that fails because the broker
//! is away is tried again, with backoff, until the send timeout.

use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use crate::Error;

/// The shortest pause between two attempts.
const MIN_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// What to do after a failed attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Try again now, after declaring everything again.
    Redeclare,
    /// Try again now.
    Retry,
}

/// The attempts of one send.
pub(crate) struct Attempts {
    task_id: String,
    timeout: Duration,
    deadline: Instant,
    failures: u32,
    /// Whether declarations were already renewed once for this send.
    redeclared: bool,
    /// The last error that was worth waiting out, for the final report.
    last: Option<Error>,
}

impl Attempts {
    /// The first attempt of the send of `task_id`, with `timeout` for all.
    pub(crate) fn new(task_id: &str, timeout: Duration) -> Self {
        Self {
            task_id: task_id.to_owned(),
            timeout,
            deadline: Instant::now() + timeout,
            failures: 0,
            redeclared: false,
            last: None,
        }
    }

    /// Runs one attempt within what is left of the timeout.
    pub(crate) async fn run(
        &self,
        attempt: impl Future<Output = Result<(), Error>>,
    ) -> Result<(), Error> {
        match tokio::time::timeout_at(self.deadline, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                operation: "send",
                after: self.timeout,
            }),
        }
    }

    /// Decides after a failed attempt: wait (with exponential backoff and
    /// full jitter) and try again while the broker is away and time is
    /// left; declare again once when the exchange or queue has gone;
    /// otherwise give up with the error.
    pub(crate) async fn after(&mut self, err: Error) -> Result<Next, Error> {
        if err.needs_declaration() && !self.redeclared {
            self.redeclared = true;
            return Ok(Next::Redeclare);
        }
        if matches!(err, Error::Timeout { .. }) {
            return Err(self.give_up(err));
        }
        if !err.can_be_recovered() {
            return Err(err);
        }
        let cap = MIN_PAUSE
            .saturating_mul(2u32.saturating_pow(self.failures.min(16)))
            .min(MAX_PAUSE);
        let pause = MIN_PAUSE + cap.saturating_sub(MIN_PAUSE).mul_f64(fastrand::f64());
        self.failures += 1;
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.give_up(err));
        }
        // The last pause ends at the deadline, for one last attempt.
        let pause = pause.min(left);
        debug!(task_id = %self.task_id, error = %err, ?pause, "broker unavailable; sending again");
        self.last = Some(err);
        tokio::time::sleep(pause).await;
        Ok(Next::Retry)
    }

    /// The error for a send that ran out of time: what kept it from being
    /// confirmed, if it was the broker being away.
    fn give_up(&mut self, err: Error) -> Error {
        let last = match (self.last.take(), err) {
            (Some(last), Error::Timeout { .. }) => last,
            (_, err) if err.can_be_recovered() => err,
            (_, err) => return err,
        };
        Error::Unconfirmed {
            task_id: self.task_id.clone(),
            after: self.timeout,
            source: Box::new(last),
        }
    }
}
