//! RabbitMQ's management HTTP API: the counts and rates AMQP does not give.

use std::collections::HashMap;
use std::time::Duration;

use celeriac_shared::BrokerUrl;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

/// A client of `GET /api/queues/<vhost>` on the management plugin, with
/// the broker URL's user, password and vhost.
pub(crate) struct ManagementApi {
    client: reqwest::Client,
    /// `<base>/api/queues/<vhost, encoded>`.
    queues_url: String,
    user: String,
    /// Never printed.
    password: String,
}

/// What the API says about one queue (other fields are ignored).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub(crate) struct ManagedQueue {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) messages_ready: u64,
    #[serde(default)]
    pub(crate) messages_unacknowledged: u64,
    #[serde(default)]
    pub(crate) consumers: u64,
    #[serde(default)]
    message_stats: Option<MessageStats>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
struct MessageStats {
    #[serde(default)]
    publish_details: Option<Rate>,
    #[serde(default)]
    deliver_get_details: Option<Rate>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
struct Rate {
    rate: f64,
}

impl ManagedQueue {
    /// Messages published to it per second, recently.
    pub(crate) fn publish_rate(&self) -> f64 {
        let stats = self.message_stats.as_ref();
        stats
            .and_then(|s| s.publish_details)
            .map_or(0.0, |r| r.rate)
    }

    /// Messages delivered from it per second (to consumers and `basic.get`).
    pub(crate) fn deliver_rate(&self) -> f64 {
        let stats = self.message_stats.as_ref();
        stats
            .and_then(|s| s.deliver_get_details)
            .map_or(0.0, |r| r.rate)
    }
}

impl ManagementApi {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:15672`) for
    /// the vhost and credentials of `broker` (its first address); `None`
    /// if the broker URL does not parse.
    pub(crate) fn new(base: &str, broker: &BrokerUrl) -> Option<Self> {
        let uri = broker.parse().ok()?.into_iter().next()?;
        let vhost = utf8_percent_encode(&uri.vhost, NON_ALPHANUMERIC);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        Some(Self {
            client,
            queues_url: format!("{}/api/queues/{vhost}", base.trim_end_matches('/')),
            user: uri.authority.userinfo.username,
            password: uri.authority.userinfo.password,
        })
    }

    /// Every queue of the vhost by name, or why the API did not answer.
    pub(crate) async fn queues(&self) -> Result<HashMap<String, ManagedQueue>, ApiError> {
        let response = self
            .client
            .get(&self.queues_url)
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .map_err(|err| ApiError::Unreachable(without_url(&err)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ApiError::Status(status));
        }
        let queues: Vec<ManagedQueue> = response
            .json()
            .await
            .map_err(|err| ApiError::Malformed(without_url(&err)))?;
        Ok(queues.into_iter().map(|q| (q.name.clone(), q)).collect())
    }
}

/// Why the management API gave no queue list.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// No answer (reqwest's error, without the URL).
    #[error("management API unreachable: {0}")]
    Unreachable(String),
    /// An HTTP error status.
    #[error("management API answered {0}")]
    Status(reqwest::StatusCode),
    /// An answer that is not the queue list (reqwest's error).
    #[error("management API answered oddly: {0}")]
    Malformed(String),
}

/// reqwest's error without the URL (which holds no password, but is
/// long).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(&format!(" ({url})"), "");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates_are_read_and_missing_stats_are_zero() {
        let json = r#"[{"name": "celery", "messages_ready": 3, "messages_unacknowledged": 2,
            "consumers": 1, "message_stats": {"publish_details": {"rate": 1.5},
            "deliver_get_details": {"rate": 0.5}}, "vhost": "/"}, {"name": "idle"}]"#;
        let queues: Vec<ManagedQueue> = serde_json::from_str(json).unwrap();
        assert_eq!(queues[0].messages_unacknowledged, 2);
        assert_eq!(
            (queues[0].publish_rate(), queues[0].deliver_rate()),
            (1.5, 0.5)
        );
        assert_eq!(
            (queues[1].messages_ready, queues[1].publish_rate()),
            (0, 0.0)
        );
    }

    #[test]
    fn the_vhost_is_encoded_into_the_path() {
        let broker = BrokerUrl::new("amqp://u:p@127.0.0.1:5672/%2f");
        let api = ManagementApi::new("http://127.0.0.1:15672/", &broker).unwrap();
        assert_eq!(api.queues_url, "http://127.0.0.1:15672/api/queues/%2F");
        assert_eq!((api.user.as_str(), api.password.as_str()), ("u", "p"));
    }
}
