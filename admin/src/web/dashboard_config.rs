//! What the dashboard shows and how it reaches the broker.

use std::fmt;
use std::time::Duration;

/// How a [`Dashboard`](crate::Dashboard) samples the broker and what it
/// lets its visitors do. Its `Debug` output hides the token.
#[derive(Clone)]
pub struct DashboardConfig {
    /// The work queues to show (their dead-letter queues are
    /// `<queue>.dead`); queues that workers announce in their heartbeats
    /// are shown too. Defaults to `["celery"]`.
    pub queues: Vec<String>,
    /// How often queue counts are sampled and the open pages refresh.
    /// Defaults to 2 s.
    pub refresh: Duration,
    /// How often the delay ladder is read to count what waits for each
    /// queue (every waiting message is read and given back, see
    /// `docs/dead-letters.md`); `None` only counts the ladder's total.
    /// Defaults to 60 s.
    pub delay_scan: Option<Duration>,
    /// The RabbitMQ management API, for unacknowledged counts and rates;
    /// `None` uses AMQP counts only (ready and consumers, no rates).
    /// Defaults to `http://127.0.0.1:15672` with the broker URL's
    /// credentials.
    pub management_url: Option<String>,
    /// The Jaeger UI that a dead letter's trace id links to. Defaults to
    /// `http://127.0.0.1:16686`; `None` shows the trace id without a link.
    pub jaeger_url: Option<String>,
    /// The token every request must carry (`Authorization: Bearer`, or
    /// as the password of HTTP basic auth, any user name). Defaults to
    /// none: no authentication, for a dashboard bound to localhost only.
    pub token: Option<String>,
    /// Dead letters per page. Defaults to 50.
    pub page_size: usize,
    /// How much throughput history the chart shows. Defaults to 10
    /// minutes.
    pub history: Duration,
}

impl fmt::Debug for DashboardConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DashboardConfig")
            .field("queues", &self.queues)
            .field("refresh", &self.refresh)
            .field("delay_scan", &self.delay_scan)
            .field("management_url", &self.management_url)
            .field("jaeger_url", &self.jaeger_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("page_size", &self.page_size)
            .field("history", &self.history)
            .finish()
    }
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            queues: vec![celeriac_shared::DEFAULT_QUEUE.to_owned()],
            refresh: Duration::from_secs(2),
            delay_scan: Some(Duration::from_secs(60)),
            management_url: Some("http://127.0.0.1:15672".into()),
            jaeger_url: Some("http://127.0.0.1:16686".into()),
            token: None,
            page_size: 50,
            history: Duration::from_secs(600),
        }
    }
}
