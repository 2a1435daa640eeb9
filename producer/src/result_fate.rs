//! What becomes of one delivery from a named reply queue: the one place a
//! [`ResultListener`](crate::ResultListener) decides to ack, requeue or
//! reject a result, so that no result is lost to a failing handler.

/// What happened to one delivery from the named reply queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// The body is not a result message: no handler can ever take it.
    Undecodable,
    /// An intermediate state (`STARTED`, `RETRY`): not a result yet; the
    /// final one follows.
    Intermediate,
    /// The handler took the final result and returned `Ok`.
    Handled,
    /// The handler returned an error.
    HandlerFailed,
    /// The handler panicked.
    HandlerPanicked,
}

/// What the listener does with the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResultFate {
    /// `basic.ack`: the result is done with and leaves the queue.
    Ack,
    /// `basic.nack` with requeue, after a pause: the result goes back to
    /// the queue, for this replica or another to handle again.
    Requeue,
    /// `basic.reject` without requeue: dead-lettered if the queue has a
    /// dead-letter exchange (by policy), else dropped. Logged.
    Reject,
}

impl ResultFate {
    /// The fate of a delivery that was `received`.
    pub(crate) fn of(received: Received) -> Self {
        match received {
            Received::Handled | Received::Intermediate => ResultFate::Ack,
            Received::HandlerFailed | Received::HandlerPanicked => ResultFate::Requeue,
            Received::Undecodable => ResultFate::Reject,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_is_acked_only_once_the_handler_returned_ok() {
        assert_eq!(ResultFate::of(Received::Handled), ResultFate::Ack);
    }

    #[test]
    fn a_result_the_handler_failed_on_goes_back_to_the_queue() {
        assert_eq!(ResultFate::of(Received::HandlerFailed), ResultFate::Requeue);
        assert_eq!(
            ResultFate::of(Received::HandlerPanicked),
            ResultFate::Requeue
        );
    }

    #[test]
    fn intermediate_states_are_acked_without_the_handler() {
        assert_eq!(ResultFate::of(Received::Intermediate), ResultFate::Ack);
    }

    #[test]
    fn an_undecodable_reply_is_rejected_rather_than_redelivered_forever() {
        assert_eq!(ResultFate::of(Received::Undecodable), ResultFate::Reject);
    }
}
