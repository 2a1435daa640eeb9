//! Which broker errors are worth waiting out.
//!
//! Producers and workers reconnect after a broker restart or a network
//! failure, but must give up at once when waiting cannot help: wrong
//! credentials, a missing vhost, a certificate the client does not trust,
//! a queue declared with other arguments.

use std::io;

use lapin::ErrorKind;
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};

/// Whether `err` can go away by itself: the broker is restarting or out of
/// reach, or the connection broke. Such errors are retried with backoff;
/// every other error is reported at once.
pub fn is_transient(err: &lapin::Error) -> bool {
    match err.kind() {
        ErrorKind::IOError(io) => is_transient_io(io),
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Hard(hard) => is_transient_hard(hard),
            AMQPErrorKind::Soft(soft) => is_transient_soft(soft),
        },
        ErrorKind::InvalidChannel(_)
        | ErrorKind::InvalidChannelState(..)
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::MissingHeartbeatError => true,
        ErrorKind::ChannelsLimitReached
        | ErrorKind::InvalidProtocolVersion(_)
        | ErrorKind::RuntimeShutdownError(_)
        | ErrorKind::ParsingError(_)
        | ErrorKind::SerialisationError(_)
        | ErrorKind::AuthProviderError(_)
        | ErrorKind::FutureCompleted
        | ErrorKind::NoDefaultRuntime => false,
        // lapin's error kinds are not exhaustive; an unknown one is not
        // assumed to heal.
        _ => false,
    }
}

/// Whether the broker refused an operation because an exchange or queue
/// it names does not exist (`NOT_FOUND`).
pub fn is_not_found(err: &lapin::Error) -> bool {
    match err.kind() {
        ErrorKind::ProtocolError(amqp) => {
            matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
        }
        _ => false,
    }
}

/// Whether the broker refused an operation because another connection
/// holds the exclusive queue it names (`RESOURCE_LOCKED`).
pub fn is_resource_locked(err: &lapin::Error) -> bool {
    match err.kind() {
        ErrorKind::ProtocolError(amqp) => {
            matches!(
                amqp.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED)
            )
        }
        _ => false,
    }
}

/// Whether the broker refused a declaration because the entity exists
/// with other arguments (`PRECONDITION_FAILED`).
pub(crate) fn is_precondition_failed(err: &lapin::Error) -> bool {
    match err.kind() {
        ErrorKind::ProtocolError(amqp) => matches!(
            amqp.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
        ),
        _ => false,
    }
}

/// Refused, reset or timed-out connections heal; a TLS certificate the
/// client rejects (`InvalidData`) or a bad address does not.
fn is_transient_io(err: &io::Error) -> bool {
    use io::ErrorKind as Io;
    matches!(
        err.kind(),
        Io::ConnectionRefused
            | Io::ConnectionReset
            | Io::ConnectionAborted
            | Io::NotConnected
            | Io::BrokenPipe
            | Io::UnexpectedEof
            | Io::TimedOut
            | Io::Interrupted
            | Io::WouldBlock
            | Io::AddrNotAvailable
            | Io::HostUnreachable
            | Io::NetworkUnreachable
            | Io::NetworkDown
    )
}

/// Connection-level errors: the broker shutting down (`CONNECTION_FORCED`)
/// or short of resources heals; a missing vhost or a protocol error does
/// not.
fn is_transient_hard(err: &AMQPHardError) -> bool {
    match err {
        AMQPHardError::CONNECTIONFORCED
        | AMQPHardError::RESOURCEERROR
        | AMQPHardError::INTERNALERROR => true,
        AMQPHardError::INVALIDPATH
        | AMQPHardError::FRAMEERROR
        | AMQPHardError::SYNTAXERROR
        | AMQPHardError::COMMANDINVALID
        | AMQPHardError::CHANNELERROR
        | AMQPHardError::UNEXPECTEDFRAME
        | AMQPHardError::NOTALLOWED
        | AMQPHardError::NOTIMPLEMENTED => false,
    }
}

/// Channel-level errors: a refused login or permission, a queue declared
/// differently, a missing entity or an oversize message stay as they are;
/// an exclusive queue still held by a connection the broker has not yet
/// noticed is dead frees up.
fn is_transient_soft(err: &AMQPSoftError) -> bool {
    match err {
        AMQPSoftError::RESOURCELOCKED => true,
        AMQPSoftError::CONTENTTOOLARGE
        | AMQPSoftError::NOROUTE
        | AMQPSoftError::NOCONSUMERS
        | AMQPSoftError::ACCESSREFUSED
        | AMQPSoftError::NOTFOUND
        | AMQPSoftError::PRECONDITIONFAILED => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::protocol::AMQPError;
    use lapin::types::ShortString;

    fn amqp(kind: AMQPErrorKind) -> lapin::Error {
        ErrorKind::ProtocolError(AMQPError::new(kind, ShortString::from("x"))).into()
    }

    #[test]
    fn a_refused_connection_and_a_broker_shutdown_are_transient() {
        let refused: lapin::Error = io::Error::from(io::ErrorKind::ConnectionRefused).into();
        assert!(is_transient(&refused));
        let forced = amqp(AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED));
        assert!(is_transient(&forced));
    }

    #[test]
    fn bad_credentials_certificates_and_arguments_are_not() {
        let refused = amqp(AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED));
        assert!(!is_transient(&refused));
        let missing = amqp(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND));
        assert!(!is_transient(&missing) && is_not_found(&missing));
        let differing = amqp(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED));
        assert!(!is_transient(&differing) && is_precondition_failed(&differing));
        let vhost = amqp(AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED));
        assert!(!is_transient(&vhost));
        let certificate: lapin::Error =
            io::Error::new(io::ErrorKind::InvalidData, "invalid peer certificate").into();
        assert!(!is_transient(&certificate));
    }

    #[test]
    fn an_exclusive_queue_held_elsewhere_is_locked_and_frees_up() {
        let locked = amqp(AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED));
        assert!(is_resource_locked(&locked) && is_transient(&locked));
        let missing = amqp(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND));
        assert!(!is_resource_locked(&missing));
    }
}
