//! The order in which clients try a broker's addresses: round robin, so
//! that a connection lost on one node is replaced on the next.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use lapin::uri::AMQPUri;

use crate::{BrokerUrl, Error};

/// A [`BrokerUrl`]'s addresses, parsed, and which one to try next.
///
/// Each connection attempt takes a [`BrokerRotation::round`]: every address
/// once, starting with the one after the address last tried, stopping at
/// the first that answers. So the first connection goes to the first
/// address that answers, and when that connection is lost its replacement
/// goes to the next address (wrapping around to the first after the last).
/// The rotation is shared: concurrent attempts (a pool's connections) each
/// move it on. Waiting between rounds is the caller's backoff.
pub struct BrokerRotation {
    /// Each address, as written (for logs, redacted) and parsed (for
    /// connecting). Never empty.
    addresses: Vec<(BrokerUrl, AMQPUri)>,
    /// How many addresses were handed out; the next is at this modulo
    /// their count.
    next: AtomicUsize,
}

impl BrokerRotation {
    /// Parses every address of `url`; see [`BrokerUrl::parse`] for the
    /// errors.
    pub fn new(url: &BrokerUrl) -> Result<Self, Error> {
        let uris = url.parse()?;
        Ok(Self {
            addresses: url.addresses().into_iter().zip(uris).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// How many addresses there are (at least one).
    pub fn count(&self) -> usize {
        self.addresses.len()
    }

    /// One round of attempts: every address once, as written (to log, it
    /// shows redacted) and parsed (to connect), starting after the one
    /// last handed out. Each address taken moves the rotation on, even if
    /// the attempt on it is abandoned (timed out).
    pub fn round(&self) -> impl Iterator<Item = (&BrokerUrl, AMQPUri)> + '_ {
        (0..self.addresses.len()).map(|_| {
            let index = self.next.fetch_add(1, Ordering::Relaxed) % self.addresses.len();
            let (address, uri) = &self.addresses[index];
            (address, uri.clone())
        })
    }
}

impl fmt::Debug for BrokerRotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addresses: Vec<&BrokerUrl> = self.addresses.iter().map(|(url, _)| url).collect();
        f.debug_struct("BrokerRotation")
            .field("addresses", &addresses)
            .field("next", &self.next)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(rotation: &BrokerRotation) -> Vec<String> {
        rotation
            .round()
            .map(|(_, uri)| uri.authority.host)
            .collect()
    }

    #[test]
    fn the_first_round_starts_at_the_first_address() {
        let rotation = BrokerRotation::new(&"amqp://h1/,amqp://h2/,amqp://h3/".into()).unwrap();
        assert_eq!(rotation.count(), 3);
        assert_eq!(hosts(&rotation), ["h1", "h2", "h3"]);
    }

    #[test]
    fn a_new_round_starts_after_the_address_last_tried() {
        let rotation = BrokerRotation::new(&"amqp://h1/,amqp://h2/,amqp://h3/".into()).unwrap();
        let connected = rotation.round().take(2).last().unwrap();
        assert_eq!(connected.1.authority.host, "h2");
        assert_eq!(hosts(&rotation), ["h3", "h1", "h2"]);
    }

    #[test]
    fn a_single_address_is_always_tried() {
        let rotation = BrokerRotation::new(&BrokerUrl::default()).unwrap();
        for _ in 0..3 {
            assert_eq!(hosts(&rotation), ["127.0.0.1"]);
        }
    }

    #[test]
    fn debug_hides_every_password() {
        let url = BrokerUrl::new("amqp://a:s3cret@h1/,amqp://b:s3cret@h2/");
        let shown = format!("{:?}", BrokerRotation::new(&url).unwrap());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("h2"), "{shown}");
    }

    #[test]
    fn a_bad_address_refuses_the_rotation() {
        let url = BrokerUrl::new("amqp://h1/,amqp://a:s3cret@h2:port/");
        let err = BrokerRotation::new(&url).unwrap_err().to_string();
        assert!(
            err.contains("address 2 of 2") && !err.contains("s3cret"),
            "{err}"
        );
    }
}
