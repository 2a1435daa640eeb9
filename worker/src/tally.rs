//! The few counts a worker always keeps, metrics server or not: what its
//! heartbeats announce (tasks processed and failed, deliveries in flight).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::outcome::Outcome;

/// Running totals since the worker started, shared by every session.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Deliveries whose handling ended, whatever the outcome (Celery's
    /// `processed`).
    processed: AtomicU64,
    /// Of those, the ones that failed (counted as the `tasks_failed`
    /// metric counts them).
    failed: AtomicU64,
    /// Deliveries being handled now.
    in_flight: AtomicU64,
}

/// A snapshot of a [`Tally`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) processed: u64,
    pub(crate) failed: u64,
    pub(crate) in_flight: u64,
}

impl Tally {
    /// Counts a delivery in flight until the guard drops.
    pub(crate) fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    /// Counts how handling a delivery ended.
    pub(crate) fn finished(&self, outcome: &Outcome) {
        self.processed.fetch_add(1, Ordering::Relaxed);
        if outcome.is_failure() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counts as of now.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            processed: self.processed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
        }
    }
}

/// Counts one delivery in flight while alive.
pub(crate) struct InFlight<'a>(&'a AtomicU64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskError;

    #[test]
    fn outcomes_and_deliveries_in_flight_are_counted() {
        let tally = Tally::default();
        let guard = tally.in_flight();
        assert_eq!(tally.counts().in_flight, 1);
        tally.finished(&Outcome::Expired);
        tally.finished(&Outcome::Failed(TaskError::reject("no")));
        drop(guard);
        let counts = tally.counts();
        assert_eq!(
            (counts.processed, counts.failed, counts.in_flight),
            (2, 1, 0)
        );
    }
}
