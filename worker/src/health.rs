//! What `/healthz` and `/readyz` report: whether the worker is connected
//! to the broker and consuming its queues, read live from lapin's
//! connection and channel states.

use std::sync::Mutex;

use lapin::{ChannelStatus, ConnectionStatus};

/// The worker's broker state, updated by the worker as it connects, starts
/// and stops consuming, and read by the health endpoints.
#[derive(Default)]
pub(crate) struct Health {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The connection's live status, once connected.
    connection: Option<ConnectionStatus>,
    /// The live status of each queue's consumer channel while consuming;
    /// empty before consuming starts and after it stopped.
    consumers: Vec<ChannelStatus>,
}

/// A snapshot of the broker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Readiness {
    /// The broker connection is open.
    pub(crate) connected: bool,
    /// Every queue has its consumer, on an open channel.
    pub(crate) consuming: bool,
}

impl Readiness {
    /// Ready to take tasks: connected and consuming.
    pub(crate) fn is_ready(self) -> bool {
        self.connected && self.consuming
    }
}

impl Health {
    /// The worker connected; `status` follows the connection from now on
    /// (lapin updates it when the broker or the network closes it).
    pub(crate) fn connected(&self, status: ConnectionStatus) {
        self.lock().connection = Some(status);
    }

    /// The worker consumes each queue on these channels.
    pub(crate) fn consuming(&self, consumers: Vec<ChannelStatus>) {
        self.lock().consumers = consumers;
    }

    /// The worker stopped consuming (shutdown, or a lost consumer).
    pub(crate) fn stopped(&self) {
        self.lock().consumers.clear();
    }

    /// The state as of now.
    pub(crate) fn readiness(&self) -> Readiness {
        let state = self.lock();
        let connected = state
            .connection
            .as_ref()
            .is_some_and(ConnectionStatus::connected);
        let consuming =
            !state.consumers.is_empty() && state.consumers.iter().all(ChannelStatus::connected);
        Readiness {
            connected,
            consuming,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_that_never_connected_is_not_ready() {
        let health = Health::default();
        let readiness = health.readiness();
        assert!(!readiness.connected && !readiness.consuming && !readiness.is_ready());
    }
}
