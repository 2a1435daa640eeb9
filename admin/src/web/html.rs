//! HTML building blocks: the page layout, live containers, form fields,
//! links.
//!
//! Pages are written with [`maud::html!`], which escapes every value it
//! splices in, so a value that comes from a message, a queue, a worker or
//! a request cannot become markup. Such text goes in as [`Text`] (which
//! escapes the single quote too); a path segment or query value goes
//! through [`url_part`] first.

use maud::{DOCTYPE, Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::text::Text;

/// What a path segment or query value may keep unencoded.
const URL_PART: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// `text` percent-encoded for a path segment or a query value.
pub(crate) fn url_part(text: &str) -> String {
    utf8_percent_encode(text, URL_PART).to_string()
}

/// The tabs of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    Overview,
    Workers,
    Tasks,
    DeadLetters,
}

/// Every tab with its link target and label, in the bar's order.
const TABS: [(Tab, &str, &str); 4] = [
    (Tab::Overview, "/", "Overview"),
    (Tab::Workers, "/workers", "Workers"),
    (Tab::Tasks, "/tasks", "Tasks"),
    (Tab::DeadLetters, "/dead-letters", "Dead letters"),
];

/// A whole page: the head, the navigation bar with `tab` current, and
/// `title` over `body`.
pub(crate) fn page(tab: Tab, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (Text(title)) " · celeriac" }
                link rel="stylesheet" href="/assets/dashboard.css";
                script src="/assets/dashboard.js" defer {}
            }
            body {
                header {
                    span class="brand" { "celeriac" }
                    nav { (navigation(tab)) }
                }
                main {
                    h1 { (Text(title)) }
                    (body)
                }
            }
        }
    }
}

/// The navigation bar's links, `current` marked as the page.
fn navigation(current: Tab) -> Markup {
    html! {
        @for (tab, href, label) in TABS {
            a href=(href) aria-current=[(tab == current).then_some("page")] { (label) }
        }
    }
}

/// A container whose content the page's script replaces with the
/// fragment at `source` every `refresh_ms` milliseconds.
pub(crate) fn live(id: &str, source: &str, refresh_ms: u128, content: Markup) -> Markup {
    html! {
        div id=(id) data-fragment=(source) data-refresh-ms=(refresh_ms) { (content) }
    }
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
pub(crate) fn csrf_field(token: &str) -> Markup {
    hidden("csrf", token)
}

/// A hidden form field.
pub(crate) fn hidden(name: &str, value: &str) -> Markup {
    html! { input type="hidden" name=(Text(name)) value=(Text(value)); }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::super::dead_letter_form::{ActionForm, Filter, pairs};
    use super::super::dead_letter_pages::{ListPage, confirm_page, detail_page, list_page};
    use super::*;
    use crate::DeadLetterEntry;

    /// A task name and error a hostile producer could send.
    const HOSTILE: &str = "<script>alert(1)</script> \"double\" 'single'";
    /// [`HOSTILE`] as it must appear in a page.
    const ESCAPED: &str =
        "&lt;script&gt;alert(1)&lt;/script&gt; &quot;double&quot; &#39;single&#39;";

    /// A dead letter whose task id, task name, error and arguments are
    /// all [`HOSTILE`].
    fn hostile_dead_letter() -> DeadLetterEntry {
        let mut kwargs = Map::new();
        kwargs.insert("note".into(), json!(HOSTILE));
        DeadLetterEntry {
            queue: "reports".into(),
            position: 0,
            task_id: Some(HOSTILE.into()),
            task: Some(HOSTILE.into()),
            args: Some(vec![json!(HOSTILE)]),
            kwargs: Some(kwargs.clone()),
            decode_error: None,
            reason: Some("rejected".into()),
            error_type: None,
            error_message: Some(HOSTILE.into()),
            traceback: Some(HOSTILE.into()),
            retries: 0,
            failed_at: None,
            worker: Some(HOSTILE.into()),
            original_queue: None,
            original_exchange: None,
            original_routing_key: None,
            trace_id: Some(HOSTILE.into()),
            replay_count: 0,
            headers: kwargs,
            body_size: 0,
        }
    }

    /// Nothing of [`HOSTILE`] came out as markup or broke out of an
    /// attribute, and it is shown escaped.
    fn assert_inert(html: &str) {
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(!html.contains("\"double\""), "{html}");
        assert!(!html.contains("'single'"), "{html}");
        assert!(html.contains(ESCAPED), "{html}");
    }

    #[test]
    fn a_hostile_task_name_and_title_come_out_escaped() {
        let entry = hostile_dead_letter();
        let entries = [entry.clone()];
        let queues = ["reports".to_owned()];
        let filter = Filter::from_pairs(&pairs(b"task=%3Cscript%3Ealert(1)%3C%2Fscript%3E"));
        let list = list_page(&ListPage {
            filter: &filter,
            queues: &queues,
            entries: &entries,
            page_size: 10,
            csrf: "token",
        });
        assert_inert(&list.into_string());
        assert_inert(&detail_page(&entry, Some("http://jaeger"), "token").into_string());
        let form = ActionForm::from_pairs(&pairs(b"action=delete-matching&csrf=t")).unwrap();
        assert_inert(&confirm_page(&form, &entries, "token").into_string());
        let titled = page(Tab::DeadLetters, HOSTILE, html! {}).into_string();
        assert!(titled.contains(&format!("<title>{ESCAPED} · celeriac</title>")));
        assert!(titled.contains(&format!("<h1>{ESCAPED}</h1>")));
    }

    #[test]
    fn form_fields_are_escaped_and_url_parts_encoded() {
        assert_eq!(
            hidden("id", "\"><script>").into_string(),
            "<input type=\"hidden\" name=\"id\" value=\"&quot;&gt;&lt;script&gt;\">"
        );
        assert_eq!(url_part("a b/c?d&e"), "a%20b%2Fc%3Fd%26e");
    }
}
