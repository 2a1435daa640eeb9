//! Celery's remote control, client side: kombu's `Mailbox` over the
//! `celery.pidbox` fanout exchange, answered by celeriac's Rust workers and
//! by Python Celery workers alike (see `docs/operations.md`, "Remote
//! control from the CLI").
//!
//! A command is an [`envelope`] published to [`PIDBOX_EXCHANGE`]; the
//! workers' replies come back through an exclusive queue of the
//! broadcast's own, bound to [`REPLY_EXCHANGE`] ([`pidbox`]), and
//! [`mailbox`] keeps those carrying the command's ticket.

mod envelope;
mod mailbox;
mod pidbox;
mod revoked;

use std::time::Duration;

use serde_json::Value;

pub use mailbox::Control;
pub use revoked::Revoked;

pub use celeriac_shared::{PIDBOX_EXCHANGE, REPLY_EXCHANGE};
/// How long a broadcast waits for replies unless told otherwise: Celery's
/// default.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(1);

/// What the workers answered: `(hostname, reply)` in the order the replies
/// arrived.
pub type Replies = Vec<(String, Value)>;
