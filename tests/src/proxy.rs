//! A TCP proxy between clients and the test broker, to break connections
//! the way a network does: without a clean AMQP close.
//!
//! [`Proxy::sever`] resets every connection it forwards at that moment
//! (`RST`, as a crashed peer or a firewall rejecting the flow would);
//! [`Proxy::blackhole`] stops forwarding on them in both directions but
//! keeps their sockets open (a cable pulled, a NAT entry dropped), so only
//! AMQP heartbeats can tell. Connections made afterwards are forwarded
//! normally.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use celeriac_shared::BrokerUrl;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker_url;

/// What happens to a forwarded connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Bytes flow both ways.
    None,
    /// Nothing flows any more; the sockets stay open.
    Blackhole,
    /// Both sockets are reset.
    Sever,
}

/// The forwarded connections, each steered through its own watch.
type Links = Arc<Mutex<Vec<watch::Sender<Fault>>>>;

/// A proxy on a free port of 127.0.0.1 forwarding to the test broker
/// ([`broker_url`]'s first address). Dropping it resets every connection
/// it still holds.
pub struct Proxy {
    addr: SocketAddr,
    /// The test broker's address as written: [`Proxy::url`] is this with
    /// the proxy's host and port.
    broker: BrokerUrl,
    links: Links,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards each connection to the broker.
    pub async fn start() -> anyhow::Result<Self> {
        let broker = broker_url()
            .addresses()
            .into_iter()
            .next()
            .context("no broker address")?;
        let parsed = broker
            .parse()?
            .into_iter()
            .next()
            .context("no broker address")?;
        let upstream = format!("{}:{}", parsed.authority.host, parsed.authority.port);
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let links = Links::default();
        let accept = tokio::spawn(accept(listener, upstream, Arc::clone(&links)));
        Ok(Self {
            addr,
            broker,
            links,
            accept,
        })
    }

    /// The broker URL through the proxy: the test broker's, as written
    /// (credentials, vhost, query), with the proxy's host and port.
    pub fn url(&self) -> BrokerUrl {
        let url = self.broker.expose();
        let authority = url.find("://").map_or(0, |i| i + 3);
        let end = url[authority..]
            .find(['/', '?'])
            .map_or(url.len(), |i| authority + i);
        let host = url[authority..end]
            .rfind('@')
            .map_or(authority, |i| authority + i + 1);
        BrokerUrl::new(format!("{}{}{}", &url[..host], self.addr, &url[end..]))
    }

    /// As [`Proxy::url`], asking for an AMQP heartbeat every `seconds`
    /// (`heartbeat=`), so that a blackholed connection is noticed within
    /// about twice that.
    pub fn url_with_heartbeat(&self, seconds: u16) -> BrokerUrl {
        let url = self.url();
        let separator = if url.expose().contains('?') { '&' } else { '?' };
        BrokerUrl::new(format!("{}{separator}heartbeat={seconds}", url.expose()))
    }

    /// Resets every connection forwarded now (both sockets closed with
    /// `RST`, whatever was in flight discarded); returns how many.
    pub fn sever(&self) -> usize {
        self.fault(Fault::Sever)
    }

    /// Stops forwarding on every connection forwarded now, in both
    /// directions, keeping their sockets open until [`Proxy::sever`] or
    /// the proxy's drop; returns how many.
    pub fn blackhole(&self) -> usize {
        self.fault(Fault::Blackhole)
    }

    fn fault(&self, fault: Fault) -> usize {
        let mut links = lock(&self.links);
        links.retain(|link| !link.is_closed());
        for link in links.iter() {
            link.send_replace(fault);
        }
        let count = links.len();
        if fault == Fault::Sever {
            // Dropping a sender ends its link too, but only once its task
            // saw the fault: sent first, so it is seen.
            links.clear();
        }
        count
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.fault(Fault::Sever);
    }
}

fn lock(links: &Links) -> MutexGuard<'_, Vec<watch::Sender<Fault>>> {
    links.lock().unwrap_or_else(|p| p.into_inner())
}

/// Accepts connections until aborted, each forwarded by a task of its own.
async fn accept(listener: TcpListener, upstream: String, links: Links) {
    while let Ok((client, _)) = listener.accept().await {
        let (link, fault) = watch::channel(Fault::None);
        {
            let mut links = lock(&links);
            links.retain(|link| !link.is_closed());
            links.push(link);
        }
        tokio::spawn(forward(client, upstream.clone(), fault));
    }
}

/// Forwards one connection until either side closes it or a fault hits.
async fn forward(mut client: TcpStream, upstream: String, mut fault: watch::Receiver<Fault>) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else {
        let _ = client.set_zero_linger();
        return;
    };
    for socket in [&client, &server] {
        let _ = socket.set_nodelay(true);
    }
    let hit = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
        hit = fault.wait_for(|f| *f != Fault::None) => hit.map_or(Fault::Sever, |f| *f),
    };
    if hit == Fault::Blackhole {
        // Neither read nor written from now on: the peers' bytes pile up
        // in the kernel's buffers, unanswered.
        let _ = fault.wait_for(|f| *f == Fault::Sever).await;
    }
    // SO_LINGER 0: dropping the sockets sends RST, not FIN.
    let _ = client.set_zero_linger();
    let _ = server.set_zero_linger();
}
