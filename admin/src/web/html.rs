//! HTML building blocks: escaping, the page layout, links.
//!
//! Every value that comes from a message, a queue, a worker or a request
//! goes through [`escape`] (text and attribute values alike) or
//! [`url_part`] (a path segment or query value) before it is written
//! into a page.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What a path segment or query value may keep unencoded.
const URL_PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// `text` safe inside HTML text and inside quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` percent-encoded for a path segment or a query value.
pub(crate) fn url_part(text: &str) -> String {
    utf8_percent_encode(text, URL_PART).to_string()
}

/// The tabs of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    Overview,
    Workers,
    DeadLetters,
}

/// A whole page: `title` (escaped here) and `body` (already HTML).
pub(crate) fn page(tab: Tab, title: &str, body: &str) -> String {
    let link = |target: Tab, href: &str, label: &str| {
        let current = match target == tab {
            true => " aria-current=\"page\"",
            false => "",
        };
        format!("<a href=\"{href}\"{current}>{label}</a>")
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · celeriac</title>\
         <link rel=\"stylesheet\" href=\"/assets/dashboard.css\">\
         <script src=\"/assets/dashboard.js\" defer></script></head>\
         <body><header><span class=\"brand\">celeriac</span><nav>{}{}{}</nav></header>\
         <main><h1>{title}</h1>{body}</main></body></html>\n",
        link(Tab::Overview, "/", "Overview"),
        link(Tab::Workers, "/workers", "Workers"),
        link(Tab::DeadLetters, "/dead-letters", "Dead letters"),
        title = escape(title),
    )
}

/// A container whose content the page's script replaces with the
/// fragment at `source` every `refresh_ms` milliseconds.
pub(crate) fn live(id: &str, source: &str, refresh_ms: u128, content: &str) -> String {
    format!(
        "<div id=\"{id}\" data-fragment=\"{source}\" data-refresh-ms=\"{refresh_ms}\">{content}</div>"
    )
}

/// An optional number, `–` when unknown.
pub(crate) fn count(value: Option<u64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| v.to_string())
}

/// An optional rate per second, `–` when unavailable.
pub(crate) fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}/s"))
}

/// The hidden CSRF field every state-changing form carries.
pub(crate) fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(token)
    )
}

/// A hidden form field.
pub(crate) fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        escape(name),
        escape(value)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_quotes_are_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(url_part("a b/c?d&e"), "a%20b%2Fc%3Fd%26e");
    }
}
