//! The connection pool's manager: connects to the broker's addresses in
//! turn, so that a pooled connection lost on one node is replaced on the
//! next.

use std::time::Duration;

use celeriac_shared::BrokerRotation;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use lapin::{Connection, ConnectionProperties};

/// Creates the pool's connections on the first address of a
/// [`BrokerRotation`] round that answers, and drops the ones that closed.
#[derive(Debug)]
pub(crate) struct BrokerManager {
    /// The addresses and which one to try next, shared by every
    /// connection of the pool so that a replacement goes to the next node.
    rotation: BrokerRotation,
    /// The name the broker shows for each connection.
    connection_name: String,
    /// How long one address may take to connect before the next is tried:
    /// an address that does not answer must not hold up the others.
    connect_timeout: Duration,
}

impl BrokerManager {
    pub(crate) fn new(
        rotation: BrokerRotation,
        connection_name: String,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            rotation,
            connection_name,
            connect_timeout,
        }
    }
}

impl managed::Manager for BrokerManager {
    type Type = Connection;
    type Error = lapin::Error;

    /// Tries each address once, starting after the one tried last; the
    /// error of the last address when none answers.
    async fn create(&self) -> Result<Connection, lapin::Error> {
        let properties = ConnectionProperties::default()
            .with_connection_name(self.connection_name.as_str().into());
        self.rotation
            .first_answer(self.connect_timeout, |uri| {
                Connection::connect_uri(uri, properties.clone())
            })
            .await
    }

    async fn recycle(
        &self,
        connection: &mut Connection,
        _: &Metrics,
    ) -> RecycleResult<lapin::Error> {
        match connection.status().connected() {
            true => Ok(()),
            false => Err(RecycleError::message("the connection is closed")),
        }
    }
}
