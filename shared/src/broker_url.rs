//! A broker URL, or a list of broker addresses, that never prints its
//! passwords.

use std::fmt;

use lapin::uri::AMQPUri;

use crate::Error;

/// One or more AMQP broker addresses (`amqp://user:password@host:port/vhost`),
/// written as a comma-separated list: `amqp://h1/%2f,amqp://h2/%2f`. A
/// single URL is a list of one.
///
/// Clients connect to the addresses in turn (see [`BrokerRotation`]): the
/// nodes of one RabbitMQ cluster, say.
///
/// `Display` and `Debug` replace every address's password with `***`, so
/// the list can be logged and shown in errors without leaking credentials;
/// [`BrokerUrl::expose`] gives the real string to the connection code.
///
/// A comma inside an address's user information (a raw `,` in a password)
/// belongs to that address, not to the list: the list is split only at
/// commas after the `@` that ends an address's user information (found as
/// [`BrokerUrl::redacted`] finds it). Percent-encoding it (`%2C`) is safer.
///
/// [`BrokerRotation`]: crate::BrokerRotation
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl(String);

impl BrokerUrl {
    /// The URL used when none is configured: the local broker's default
    /// account and vhost.
    pub const LOCAL: &'static str = "amqp://guest:guest@127.0.0.1:5672/%2f";

    /// Wraps a URL, or a comma-separated list of them. Nothing is checked
    /// here; [`BrokerUrl::parse`] does.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The list of `addresses` (each may itself be a comma-separated
    /// list), as from repeated `--broker` flags.
    pub fn from_addresses<S: AsRef<str>>(addresses: impl IntoIterator<Item = S>) -> Self {
        let addresses: Vec<S> = addresses.into_iter().collect();
        let addresses: Vec<&str> = addresses.iter().map(AsRef::as_ref).collect();
        Self(addresses.join(","))
    }

    /// The URL (the whole list) with its passwords, for the connection
    /// only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Each address of the list, in order, with surrounding whitespace
    /// trimmed. An empty entry (`a,,b`, or a comma at either end) is kept
    /// as an empty address, which [`BrokerUrl::parse`] refuses.
    pub fn addresses(&self) -> Vec<BrokerUrl> {
        split(&self.0)
            .into_iter()
            .map(|address| Self(address.trim().to_owned()))
            .collect()
    }

    /// The list with every address's password replaced by `***`.
    ///
    /// Errs on the side of hiding: an address's password is whatever lies
    /// between the first `:` after the scheme and the `@` that ends the
    /// user information, even in a malformed URL (a raw `/`, `?`, `#` or
    /// `,` in the password, or no `//` after the scheme), so a URL that the
    /// connection code refuses is still safe to print in its error.
    pub fn redacted(&self) -> String {
        split(&self.0)
            .into_iter()
            .map(redact)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parses every address for the connection code, in order; there is
    /// at least one. The error names the first bad address redacted (and
    /// its position when there are several), never a password (the
    /// parser's own message may quote the whole URL, so it is scrubbed).
    /// An empty address is an error.
    pub fn parse(&self) -> Result<Vec<AMQPUri>, Error> {
        let addresses = self.addresses();
        let count = addresses.len();
        addresses
            .iter()
            .enumerate()
            .map(|(index, address)| {
                let position = match count {
                    1 => String::new(),
                    _ => format!("address {} of {count}: ", index + 1),
                };
                if address.0.is_empty() {
                    return Err(Error::InvalidBrokerUrl {
                        url: self.redacted(),
                        reason: format!("{position}empty (two commas in a row, or one at an end)"),
                    });
                }
                address
                    .0
                    .parse::<AMQPUri>()
                    .map_err(|reason| Error::InvalidBrokerUrl {
                        url: address.redacted(),
                        reason: format!("{position}{}", self.scrub(&address.scrub(&reason))),
                    })
            })
            .collect()
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

/// The addresses of a list, split at the commas between them: each comma
/// not inside an address's user information.
fn split(list: &str) -> Vec<&str> {
    let mut addresses = Vec::new();
    let mut rest = list;
    loop {
        let after = user_information(rest).map_or(0, |(_, at)| at);
        let Some(comma) = rest[after..].find(',').map(|i| after + i) else {
            addresses.push(rest);
            return addresses;
        };
        addresses.push(&rest[..comma]);
        rest = &rest[comma + 1..];
    }
}

/// `address` with its password replaced by `***`.
fn redact(address: &str) -> String {
    match user_information(address) {
        Some((Some(colon), at)) => format!("{}:***{}", &address[..colon], &address[at..]),
        _ => address.to_owned(),
    }
}

/// Where the user information of the address at the start of `text` ends
/// (its `@`), with the `:` before its password if it has one, or `None`
/// when it has no `@`.
///
/// The `@` is the last one before the address's path, query or fragment;
/// failing that (a raw `/`, `?` or `#` in the password) the last one
/// before the next address that starts with a scheme (`,amqp://`). Either
/// way a comma before it belongs to the user information.
fn user_information(text: &str) -> Option<(Option<usize>, usize)> {
    let first_comma = text.find(',').unwrap_or(text.len());
    let start = text[..first_comma].find("://").map_or(0, |i| i + 3);
    let rest = &text[start..];
    let rest = &rest[..next_with_scheme(rest)];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end]
        .rfind('@')
        .or_else(|| rest.rfind('@'))?;
    let colon = rest[..at].find(':').map(|i| start + i);
    Some((colon, start + at))
}

/// Where the first comma followed by a scheme and `://` is in `text`, or
/// its length.
fn next_with_scheme(text: &str) -> usize {
    text.match_indices(',')
        .map(|(i, _)| i)
        .find(|&i| {
            let next = &text[i + 1..];
            next.find("://").is_some_and(|end| {
                let scheme = &next[..end];
                scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            })
        })
        .unwrap_or(text.len())
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
        assert_eq!(uri[0].authority.port, 5673);
    }

    #[test]
    fn a_comma_separated_list_gives_each_address_in_order() {
        let url =
            BrokerUrl::new("amqp://a:s3cret@h1:5672/%2f, amqp://h2/v,amqps://b:pw@h3:5671/%2f");
        let addresses: Vec<String> = url
            .addresses()
            .iter()
            .map(|a| a.expose().to_owned())
            .collect();
        assert_eq!(
            addresses,
            [
                "amqp://a:s3cret@h1:5672/%2f",
                "amqp://h2/v",
                "amqps://b:pw@h3:5671/%2f"
            ]
        );
        let uris = url.parse().unwrap();
        assert_eq!(uris.len(), 3);
        assert_eq!(uris[1].authority.host, "h2");
        assert_eq!(uris[2].authority.port, 5671);
    }

    #[test]
    fn every_address_of_a_list_hides_its_password() {
        let url = BrokerUrl::new("amqp://a:s3cret@h1/%2f,amqp://b:t0p@h2/%2f,amqp://h3/%2f");
        assert_eq!(
            url.to_string(),
            "amqp://a:***@h1/%2f,amqp://b:***@h2/%2f,amqp://h3/%2f"
        );
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(
                !shown.contains("s3cret") && !shown.contains("t0p"),
                "{shown}"
            );
        }
        for address in url.addresses() {
            assert!(!address.to_string().contains("s3cret"));
        }
    }

    #[test]
    fn a_comma_in_a_password_does_not_split_the_address() {
        let url = BrokerUrl::new("amqp://app:se,cr,et@h1/%2f,amqp://app:x,y@h2/%2f");
        assert_eq!(url.addresses().len(), 2);
        assert_eq!(
            url.to_string(),
            "amqp://app:***@h1/%2f,amqp://app:***@h2/%2f"
        );
        let single = BrokerUrl::new("amqp://app:se,cr,et@h1");
        assert_eq!(single.addresses().len(), 1);
        assert_eq!(single.to_string(), "amqp://app:***@h1");
        let uris = single.parse().unwrap();
        assert_eq!(uris[0].authority.userinfo.password, "se,cr,et");
    }

    #[test]
    fn each_address_splits_into_itself() {
        let url = BrokerUrl::new("amqp://a:p,q@h1/%2f,amqp://h2/v@eu,amqp://b:pa/ss@h3/%2f");
        for address in url.addresses() {
            assert_eq!(
                address.addresses(),
                std::slice::from_ref(&address),
                "{address}"
            );
        }
    }

    #[test]
    fn empty_entries_are_errors() {
        for raw in [
            "amqp://a:s3cret@h1/%2f,,amqp://h2/%2f",
            "amqp://a:s3cret@h1/%2f,",
            ",amqp://a:s3cret@h1/%2f",
            "",
        ] {
            let err = BrokerUrl::new(raw).parse().unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(text.contains("empty"), "{text}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }

    #[test]
    fn a_bad_address_is_named_redacted_with_its_position() {
        let url = BrokerUrl::new("amqp://a:s3cret@h1/%2f,amqp://b:s3cret@h2:port/%2f");
        let err = url.parse().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("amqp://b:***@h2:port/%2f"), "{text}");
        assert!(text.contains("address 2 of 2"), "{text}");
        assert!(!format!("{text} {err:?}").contains("s3cret"), "{text}");
    }

    #[test]
    fn repeated_addresses_join_into_one_list() {
        let url = BrokerUrl::from_addresses(["amqp://h1/%2f", "amqp://h2/%2f,amqp://h3/%2f"]);
        assert_eq!(url.expose(), "amqp://h1/%2f,amqp://h2/%2f,amqp://h3/%2f");
        assert_eq!(url.addresses().len(), 3);
    }
}
