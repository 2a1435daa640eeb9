//! What a publisher confirm means: the one reading of lapin's
//! [`Confirmation`] that the producer, the worker and the operator tools
//! share.

use lapin::Confirmation;

/// Why the broker did not take responsibility for a published message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmError {
    /// The message was published `mandatory` and no queue is bound for its
    /// routing key: the broker returned it.
    #[error("unroutable: {reply_text}")]
    Unroutable {
        /// The broker's reply code (312, NO_ROUTE).
        reply_code: u16,
        /// The broker's reason.
        reply_text: String,
    },
    /// The broker refused the message (a negative confirm: a queue over
    /// its length limit with `reject-publish`, or an internal error).
    #[error("the broker refused the message (negative publisher confirm)")]
    Nacked,
    /// The channel is not in confirm mode, so nothing was confirmed.
    #[error("the channel is not in confirm mode")]
    NotRequested,
}

/// Whether the broker took the message: `Ok` only for a plain positive
/// confirm. A returned message is [`ConfirmError::Unroutable`] whether the
/// broker acked or nacked it afterwards.
pub fn check_confirm(confirmation: Confirmation) -> Result<(), ConfirmError> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
            Err(ConfirmError::Unroutable {
                reply_code: returned.reply_code,
                reply_text: returned.reply_text.to_string(),
            })
        }
        Confirmation::Nack(None) => Err(ConfirmError::Nacked),
        Confirmation::NotRequested => Err(ConfirmError::NotRequested),
    }
}
