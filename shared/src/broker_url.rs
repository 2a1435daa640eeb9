//! A broker URL that never prints its password.

use std::fmt;

use lapin::uri::AMQPUri;

use crate::Error;

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
    ///
    /// Errs on the side of hiding: the password is whatever lies between
    /// the first `:` after the scheme and the `@` that ends the user
    /// information, even in a malformed URL (a raw `/`, `?` or `#` in the
    /// password, or no `//` after the scheme), so a URL that the
    /// connection code refuses is still safe to print in its error.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let start = url.find("://").map_or(0, |i| i + 3);
        let rest = &url[start..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let Some(at) = rest[..authority_end].rfind('@').or_else(|| rest.rfind('@')) else {
            return url.clone();
        };
        let Some(colon) = rest[..at].find(':') else {
            return url.clone();
        };
        format!("{}{}:***{}", &url[..start], &rest[..colon], &rest[at..])
    }

    /// Parses the URL for the connection code. The error names the URL
    /// redacted, never the password (the parser's own message may quote
    /// the whole URL, so it is scrubbed).
    pub fn parse(&self) -> Result<AMQPUri, Error> {
        self.0
            .parse::<AMQPUri>()
            .map_err(|reason| Error::InvalidBrokerUrl {
                url: self.redacted(),
                reason: self.scrub(&reason),
            })
    }

    /// `text` with every occurrence of the URL replaced by its redacted
    /// form.
    fn scrub(&self, text: &str) -> String {
        match self.0.is_empty() {
            true => text.to_owned(),
            false => text.replace(&self.0, &self.redacted()),
        }
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
        for raw in [
            "amqp://rabbit/%2f",
            "amqp://app@rabbit/",
            "amqp://app@rabbit:5672/vhost@eu",
            "amqps://rabbit:5671/%2f?heartbeat=10",
            "not a url",
            "",
        ] {
            assert_eq!(BrokerUrl::new(raw).to_string(), raw);
        }
    }

    #[test]
    fn malformed_urls_still_hide_the_password() {
        for (raw, shown) in [
            ("amqp://app:pa/ss@rabbit/%2f", "amqp://app:***@rabbit/%2f"),
            ("amqp://app:pa?ss#@rabbit/%2f", "amqp://app:***@rabbit/%2f"),
            ("amqp://app:p@ss@rabbit/%2f", "amqp://app:***@rabbit/%2f"),
            ("amqp:app:s3cret@rabbit/%2f", "amqp:***@rabbit/%2f"),
            ("app:s3cret@rabbit", "app:***@rabbit"),
            (
                "amqp://app:s3cret@rabbit/vhost@eu",
                "amqp://app:***@rabbit/vhost@eu",
            ),
        ] {
            assert_eq!(BrokerUrl::new(raw).to_string(), shown, "{raw}");
        }
    }

    #[test]
    fn a_url_the_parser_refuses_is_named_redacted_in_the_error() {
        for raw in [
            "amqp:app:s3cret@rabbit/%2f",
            "http://app:s3cret@rabbit/",
            "amqp://app:s3cret@rabbit:port/",
        ] {
            let err = BrokerUrl::new(raw).parse().unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(matches!(err, Error::InvalidBrokerUrl { .. }), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
        let uri = BrokerUrl::new("amqp://app:s3cret@rabbit:5673/v")
            .parse()
            .unwrap();
        assert_eq!(uri.authority.port, 5673);
    }
}
