//! A broker URL that never prints its password.

use std::fmt;

/// An AMQP broker URL (`amqp://user:password@host:port/vhost`).
///
/// `Display` and `Debug` replace the password with `***`, so the URL can be
/// logged and shown in errors without leaking credentials; [`BrokerUrl::expose`]
/// gives the real string to the connection code.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl(String);

impl BrokerUrl {
    /// The URL used when none is configured: the local broker's default
    /// account and vhost.
    pub const LOCAL: &'static str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    /// Wraps a URL string.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its password, for the connection only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
            return url.clone();
        };
        let authority_end = url[scheme_end..]
            .find('/')
            .map_or(url.len(), |i| scheme_end + i);
        let authority = &url[scheme_end..authority_end];
        let Some(at) = authority.rfind('@') else {
            return url.clone();
        };
        let userinfo = &authority[..at];
        let user = userinfo.split(':').next().unwrap_or_default();
        if !userinfo.contains(':') {
            return url.clone();
        }
        format!(
            "{}{}:***{}",
            &url[..scheme_end],
            user,
            &url[scheme_end + at..]
        )
    }
}

impl Default for BrokerUrl {
    fn default() -> Self {
        Self::new(Self::LOCAL)
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BrokerUrl").field(&self.redacted()).finish()
    }
}

impl From<&str> for BrokerUrl {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for BrokerUrl {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_debug_hide_the_password() {
        let url = BrokerUrl::new("amqp://app:s3cret@rabbit:5672/%2f");
        assert_eq!(url.to_string(), "amqp://app:***@rabbit:5672/%2f");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.expose(), "amqp://app:s3cret@rabbit:5672/%2f");
    }

    #[test]
    fn urls_without_a_password_are_unchanged() {
        for raw in ["amqp://rabbit/%2f", "amqp://app@rabbit/", "not a url"] {
            assert_eq!(BrokerUrl::new(raw).to_string(), raw);
        }
    }
}
