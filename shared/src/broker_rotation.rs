//! The order in which clients try a broker's addresses: round robin, so
//! that a connection lost on one node is replaced on the next.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::uri::AMQPUri;
use tracing::{info, warn};

use crate::{BrokerUrl, Error, ErrorChain};

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

    /// Runs `attempt` (which opens a connection) on each address of one
    /// [`round`](Self::round), giving each `timeout` so that an address
    /// that does not answer cannot hold up the others. The first
    /// connection made, or the error of the last address when none
    /// answers. Each failure but the last is logged when there are other
    /// addresses to try.
    pub async fn first_answer<T, F, Fut>(
        &self,
        timeout: Duration,
        mut attempt: F,
    ) -> Result<T, lapin::Error>
    where
        F: FnMut(AMQPUri) -> Fut,
        Fut: Future<Output = Result<T, lapin::Error>>,
    {
        let mut failure = None;
        for (address, uri) in self.round() {
            let err = match tokio::time::timeout(timeout, attempt(uri)).await {
                Ok(Ok(connection)) => {
                    info!(broker = %address, "connected to the broker at {address}");
                    return Ok(connection);
                }
                Ok(Err(err)) => err,
                Err(_) => lapin::Error::from(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                )),
            };
            if self.count() > 1 {
                warn!(
                    broker = %address, error = %ErrorChain(&err),
                    "cannot connect to the broker at {address}; trying the next address"
                );
            }
            failure = Some(err);
        }
        Err(failure.unwrap_or_else(|| io::Error::other("no broker address").into()))
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

    /// An attempt that fails on `h1`, never answers on `h2` and connects
    /// (to its host's name) on any other host.
    async fn attempt(uri: AMQPUri) -> Result<String, lapin::Error> {
        match uri.authority.host.as_str() {
            "h1" => Err(io::Error::from(io::ErrorKind::ConnectionRefused).into()),
            "h2" => std::future::pending().await,
            host => Ok(host.to_owned()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_address_that_answers_in_time_is_connected() {
        let rotation = BrokerRotation::new(&"amqp://h1/,amqp://h2/,amqp://h3/".into()).unwrap();
        let connected = rotation.first_answer(Duration::from_secs(5), attempt);
        assert_eq!(connected.await.unwrap(), "h3");
        assert_eq!(hosts(&rotation), ["h1", "h2", "h3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_error_is_returned_when_no_address_answers() {
        let rotation = BrokerRotation::new(&"amqp://h2/,amqp://h1/".into()).unwrap();
        let err = rotation
            .first_answer(Duration::from_secs(5), attempt)
            .await
            .unwrap_err();
        let refused = |e: &io::Error| e.kind() == io::ErrorKind::ConnectionRefused;
        assert!(
            matches!(err.kind(), lapin::ErrorKind::IOError(e) if refused(e)),
            "{err:?}"
        );
        let silent = BrokerRotation::new(&"amqp://h2/".into()).unwrap();
        let err = silent
            .first_answer(Duration::from_secs(5), attempt)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no answer within 5s"), "{err}");
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
