//! The Dead letters pages: the filtered list, one dead letter, the
//! confirmation step and what an action did.

use maud::{Markup, Render, html};
use serde_json::Value;

use super::dead_letter_form::{Action, ActionForm, Filter, Scope};
use super::html::{Tab, csrf_field, hidden, page, url_part};
use super::task_pages::task_href;
use super::text::Text;
use crate::{DeadLetterEntry, PurgeSummary, ReplaySummary};

/// The list's column headings (the first is the tick boxes').
const LIST_COLUMNS: [&str; 8] = [
    "",
    "Queue",
    "Task id",
    "Task",
    "Error",
    "Failed at",
    "Retries",
    "Args",
];

/// How many dead letters the confirmation step names one by one.
const CONFIRM_LISTED: usize = 20;

/// A page of the list.
pub(crate) struct ListPage<'a> {
    pub(crate) filter: &'a Filter,
    /// The queues that have a dead-letter queue, for the queue filter.
    pub(crate) queues: &'a [String],
    /// Every match (the page is cut from it).
    pub(crate) entries: &'a [DeadLetterEntry],
    pub(crate) page_size: usize,
    pub(crate) csrf: &'a str,
}

/// The list: filter form, one page of matches with tick boxes, and the
/// replay and delete buttons.
pub(crate) fn list_page(list: &ListPage<'_>) -> Markup {
    let filter = list.filter;
    let start = filter.page * list.page_size;
    let shown: Vec<&DeadLetterEntry> = list
        .entries
        .iter()
        .skip(start)
        .take(list.page_size)
        .collect();
    let total = list.entries.len();
    let body = html! {
        (filter_form(filter, list.queues))
        p class="summary" {
            (total) " dead letter(s) match" @if !filter.is_empty() { " the filter" } "."
        }
        form method="post" action="/dead-letters/confirm" class="actions" {
            (csrf_field(list.csrf))
            (filter.hidden_fields())
            table class="dead-letters" {
                thead { tr { @for column in LIST_COLUMNS { th { (column) } } } }
                tbody {
                    @for entry in &shown { (row(entry)) }
                    @if shown.is_empty() {
                        tr { td colspan="8" class="empty" { "No dead letters match." } }
                    }
                }
            }
            (pager(filter, start, shown.len(), total))
            (list_buttons(total))
        }
    };
    page(Tab::DeadLetters, "Dead letters", body)
}

/// One dead letter's row, with its tick box and link when it has an id.
fn row(entry: &DeadLetterEntry) -> Markup {
    let id = entry.task_id.as_deref().unwrap_or_default();
    let failed_at = entry.failed_at.map_or_else(
        || "–".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
    );
    html! {
        tr data-task-id=(Text(id)) {
            td {
                @if !id.is_empty() {
                    input type="checkbox" name="id" value=(Text(id)) aria-label="select";
                }
            }
            td { (Text(&entry.queue)) }
            td class="task-id" {
                @if id.is_empty() {
                    "–"
                } @else {
                    a href=(detail_href(&entry.queue, id)) { (Text(id)) }
                }
            }
            td class="task" { (text(&entry.task)) }
            td class="error" { (Text(&entry.short_error())) }
            td { (failed_at) }
            td { (entry.retries) }
            td class="args" { (Text(&entry.short_args(80))) }
        }
    }
}

/// The list's replay and delete buttons, for the ticked dead letters or
/// all `total` matching.
fn list_buttons(total: usize) -> Markup {
    html! {
        p class="buttons" {
            button name="action" value="replay-selected" { "Replay selected" }
            button name="action" value="delete-selected" class="danger" { "Delete selected" }
            button name="action" value="replay-matching" { "Replay all " (total) " matching" }
            button name="action" value="delete-matching" class="danger" {
                "Delete all " (total) " matching"
            }
        }
    }
}

/// The link to a dead letter's page.
pub(crate) fn detail_href(queue: &str, task_id: &str) -> String {
    format!("/dead-letters/{}/{}", url_part(queue), url_part(task_id))
}

/// The filter form: the queue, a task-name glob, text in the error.
fn filter_form(filter: &Filter, queues: &[String]) -> Markup {
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    html! {
        form method="get" action="/dead-letters" class="filter" {
            label {
                "Queue "
                select name="queue" {
                    option value="" { "all queues" }
                    @for queue in queues {
                        option value=(Text(queue))
                            selected[filter.queue.as_deref() == Some(queue.as_str())] {
                            (Text(queue))
                        }
                    }
                }
            }
            label {
                "Task "
                input name="task" value=(Text(&value(&filter.task))) placeholder="reports.*";
            }
            label {
                "Error "
                input name="error" value=(Text(&value(&filter.error)))
                    placeholder="text in the error";
            }
            button { "Filter" }
        }
    }
}

/// Which matches the page shows, and links to the pages around it.
fn pager(filter: &Filter, start: usize, shown: usize, total: usize) -> Markup {
    let query = filter.query();
    let href = |page: usize| match query.is_empty() {
        true => format!("/dead-letters?page={page}"),
        false => format!("/dead-letters?{query}&page={page}"),
    };
    let previous = filter.page > 0;
    let next = start + shown < total;
    html! {
        p class="pager" {
            @if shown > 0 { (start + 1) "–" (start + shown) " of " (total) }
            " "
            @if previous { a href=(href(filter.page - 1)) rel="prev" { "previous" } }
            @if previous && next { " " }
            @if next { a href=(href(filter.page + 1)) rel="next" { "next" } }
        }
    }
}

/// One dead letter: everything it carried, the error chain, the trace
/// link, and replay and delete buttons.
pub(crate) fn detail_page(entry: &DeadLetterEntry, jaeger: Option<&str>, csrf: &str) -> Markup {
    let args = entry.args.clone().map(Value::from);
    let kwargs = entry.kwargs.clone().map(Value::Object);
    let headers = Some(Value::Object(entry.headers.clone()));
    let body = html! {
        table class="detail" { (detail_rows(entry, jaeger)) }
        (detail_buttons(entry, csrf))
        h2 { "Arguments" }
        pre class="args" { (Text(&json(args))) }
        pre class="kwargs" { (Text(&json(kwargs))) }
        h2 { "Error chain" }
        pre class="traceback" { (text(&entry.traceback)) }
        @if let Some(error) = &entry.decode_error {
            p class="problem" { "Not a valid task: " (Text(error)) }
        }
        h2 { "Headers" }
        pre class="headers" { (Text(&json(headers))) }
        p { a href={ "/dead-letters?queue=" (url_part(&entry.queue)) } { "back to the list" } }
    };
    page(Tab::DeadLetters, "Dead letter", body)
}

/// An optional JSON value, pretty-printed, or `–`.
fn json(value: Option<Value>) -> String {
    value.map_or_else(
        || "–".to_owned(),
        |v| serde_json::to_string_pretty(&v).unwrap_or_default(),
    )
}

/// An optional text, or `–`.
fn text(value: &Option<String>) -> Text<'_> {
    Text(value.as_deref().unwrap_or("–"))
}

/// The table of what a dead letter is, why it died and where it was sent.
fn detail_rows(entry: &DeadLetterEntry, jaeger: Option<&str>) -> Markup {
    let published = html! {
        (text(&entry.original_exchange)) " / " (text(&entry.original_routing_key))
    };
    let failed_at = entry.failed_at.map_or("–".into(), |t| t.to_rfc3339());
    let fields = [
        ("Queue", Text(&entry.queue).render()),
        ("Task id", task_id(entry)),
        ("Task", text(&entry.task).render()),
        ("Reason", text(&entry.reason).render()),
        ("Error", Text(&entry.short_error()).render()),
        ("Retries", entry.retries.render()),
        ("Replayed before", entry.replay_count.render()),
        ("Failed at", failed_at.render()),
        ("Worker", text(&entry.worker).render()),
        ("Published to", published),
        ("Trace", trace(entry, jaeger)),
        ("Body", html! { (entry.body_size) " bytes" }),
    ];
    html! {
        @for (name, value) in fields {
            tr { th { (name) } td { (value) } }
        }
    }
}

/// The task id, linked to the task's page (its task events), when known.
fn task_id(entry: &DeadLetterEntry) -> Markup {
    html! {
        @match entry.task_id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) => {
                (Text(id)) " "
                a class="task-events" href=(task_href(id)) { "(task events)" }
            }
            None => "–",
        }
    }
}

/// The trace id, linked to Jaeger when its address is configured.
fn trace(entry: &DeadLetterEntry, jaeger: Option<&str>) -> Markup {
    html! {
        @match (&entry.trace_id, jaeger) {
            (Some(id), Some(base)) => {
                a class="trace" href={ (Text(base.trim_end_matches('/'))) "/trace/" (url_part(id)) } {
                    (Text(id)) " (Jaeger)"
                }
            }
            (Some(id), None) => (Text(id)),
            (None, _) => "–",
        }
    }
}

/// Replay and Delete for this dead letter alone (none without a task id).
fn detail_buttons(entry: &DeadLetterEntry, csrf: &str) -> Markup {
    let Some(id) = entry.task_id.as_deref().filter(|id| !id.is_empty()) else {
        return html! {};
    };
    html! {
        form method="post" action="/dead-letters/confirm" class="actions" {
            (csrf_field(csrf))
            (hidden("queue", &entry.queue))
            (hidden("id", id))
            button name="action" value="replay-selected" { "Replay" }
            button name="action" value="delete-selected" class="danger" { "Delete" }
        }
    }
}

/// What the confirmation step says of `action`: the verb, where the form
/// goes, and the warning.
fn wording(action: Action) -> (&'static str, &'static str, &'static str) {
    match action {
        Action::Replay => (
            "Replay",
            "/dead-letters/replay",
            "Each is published back to where it was sent, with retries reset, and leaves the \
             dead-letter queue only once the broker confirmed its copy.",
        ),
        Action::Delete => (
            "Delete",
            "/dead-letters/delete",
            "Deleted dead letters are gone for good.",
        ),
    }
}

/// The confirmation step: what the action would take, and the button that
/// does it.
pub(crate) fn confirm_page(form: &ActionForm, matching: &[DeadLetterEntry], csrf: &str) -> Markup {
    let (verb, target, warning) = wording(form.action);
    let scope = match form.scope {
        Scope::Selected => "selected",
        Scope::Matching => "matching the filter",
    };
    let more = matching.len().saturating_sub(CONFIRM_LISTED);
    let body = html! {
        p class="confirm" {
            (verb) " " (matching.len()) " dead letter(s) " (scope) "? " (warning)
        }
        ul {
            @for e in matching.iter().take(CONFIRM_LISTED) {
                li { (Text(&e.queue)) " " code { (text(&e.task_id)) } " " (text(&e.task)) }
            }
        }
        @if more > 0 { p { "and " (more) " more" } }
        form method="post" action=(target) { (confirm_fields(form, matching.len(), csrf)) }
    };
    page(Tab::DeadLetters, &format!("{verb} dead letters"), body)
}

/// The confirmation form's fields: the action again, limited to the
/// `count` listed, with its button and a way back.
fn confirm_fields(form: &ActionForm, count: usize, csrf: &str) -> Markup {
    let (verb, _, _) = wording(form.action);
    let class = match form.action {
        Action::Replay => "",
        Action::Delete => "danger",
    };
    html! {
        (csrf_field(csrf))
        (form.filter.hidden_fields())
        @for id in &form.ids { (hidden("id", id)) }
        (hidden("action", form.action_value()))
        (hidden("limit", &count.to_string()))
        button name="confirm" value="yes" class=(class) {
            "Yes, " (verb.to_lowercase()) " " (count)
        }
        " "
        a href={ "/dead-letters?" (form.filter.query()) } { "Cancel" }
    }
}

/// What a replay did.
pub(crate) fn replayed_page(summary: &ReplaySummary, filter: &Filter) -> Markup {
    let body = html! {
        p class="result" {
            "Replayed " (summary.replayed) ", failed " (summary.failed.len())
            " (left in place), not found " (summary.not_found.len()) "."
        }
        ul {
            @for f in &summary.failed {
                li { code { (text(&f.task_id)) } " (" (Text(&f.queue)) "): " (Text(&f.error)) }
            }
        }
        (back_to_the_list(filter))
    };
    page(Tab::DeadLetters, "Replayed", body)
}

/// What a delete did.
pub(crate) fn deleted_page(summary: &PurgeSummary, filter: &Filter) -> Markup {
    let body = html! {
        p class="result" { "Deleted " (summary.purged) ", kept " (summary.kept) "." }
        (back_to_the_list(filter))
    };
    page(Tab::DeadLetters, "Deleted", body)
}

/// The link back to the list, with `filter`.
fn back_to_the_list(filter: &Filter) -> Markup {
    html! {
        p { a href={ "/dead-letters?" (filter.query()) } { "back to the list" } }
    }
}

/// An error page.
pub(crate) fn error_page(title: &str, message: &str) -> Markup {
    let body = html! { p class="problem" { (Text(message)) } };
    page(Tab::DeadLetters, title, body)
}
