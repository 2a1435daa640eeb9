//! The Dead letters pages: the filtered list, one dead letter, the
//! confirmation step and what an action did.

use super::dead_letter_form::{Action, ActionForm, Filter, Scope};
use super::html::{Tab, csrf_field, escape, hidden, page, url_part};
use crate::{DeadLetterEntry, PurgeSummary, ReplaySummary};

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
pub(crate) fn list_page(list: &ListPage<'_>) -> String {
    let filter = list.filter;
    let start = filter.page * list.page_size;
    let shown: Vec<&DeadLetterEntry> = list
        .entries
        .iter()
        .skip(start)
        .take(list.page_size)
        .collect();
    let mut rows = String::new();
    for entry in &shown {
        rows.push_str(&row(entry));
    }
    if shown.is_empty() {
        rows.push_str("<tr><td colspan=\"8\" class=\"empty\">No dead letters match.</td></tr>");
    }
    let total = list.entries.len();
    let body = format!(
        "{}<p class=\"summary\">{total} dead letter(s) match{}.</p>\
         <form method=\"post\" action=\"/dead-letters/confirm\" class=\"actions\">{}{}\
         <table class=\"dead-letters\"><thead><tr><th></th><th>Queue</th><th>Task id</th>\
         <th>Task</th><th>Error</th><th>Failed at</th><th>Retries</th><th>Args</th></tr></thead>\
         <tbody>{rows}</tbody></table>{}\
         <p class=\"buttons\"><button name=\"action\" value=\"replay-selected\">Replay selected</button>\
         <button name=\"action\" value=\"delete-selected\" class=\"danger\">Delete selected</button>\
         <button name=\"action\" value=\"replay-matching\">Replay all {total} matching</button>\
         <button name=\"action\" value=\"delete-matching\" class=\"danger\">Delete all {total} matching</button>\
         </p></form>",
        filter_form(filter, list.queues),
        match filter.is_empty() {
            true => String::new(),
            false => " the filter".to_owned(),
        },
        csrf_field(list.csrf),
        filter.hidden_fields(),
        pager(filter, start, shown.len(), total),
    );
    page(Tab::DeadLetters, "Dead letters", &body)
}

fn row(entry: &DeadLetterEntry) -> String {
    let id = entry.task_id.as_deref().unwrap_or_default();
    let (tick, link) = match id.is_empty() {
        true => (String::new(), "–".to_owned()),
        false => (
            format!(
                "<input type=\"checkbox\" name=\"id\" value=\"{}\" aria-label=\"select\">",
                escape(id)
            ),
            format!(
                "<a href=\"{}\">{}</a>",
                detail_href(&entry.queue, id),
                escape(id)
            ),
        ),
    };
    format!(
        "<tr data-task-id=\"{}\"><td>{tick}</td><td>{}</td><td class=\"task-id\">{link}</td>\
         <td class=\"task\">{}</td><td class=\"error\">{}</td><td>{}</td><td>{}</td>\
         <td class=\"args\">{}</td></tr>",
        escape(id),
        escape(&entry.queue),
        escape(entry.task.as_deref().unwrap_or("–")),
        escape(&entry.short_error()),
        entry.failed_at.map_or_else(
            || "–".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S").to_string()
        ),
        entry.retries,
        escape(&entry.short_args(80)),
    )
}

/// The link to a dead letter's page.
pub(crate) fn detail_href(queue: &str, task_id: &str) -> String {
    format!("/dead-letters/{}/{}", url_part(queue), url_part(task_id))
}

fn filter_form(filter: &Filter, queues: &[String]) -> String {
    let mut options = String::from("<option value=\"\">all queues</option>");
    for queue in queues {
        let selected = match filter.queue.as_deref() == Some(queue.as_str()) {
            true => " selected",
            false => "",
        };
        options.push_str(&format!(
            "<option value=\"{q}\"{selected}>{q}</option>",
            q = escape(queue)
        ));
    }
    let value = |v: &Option<String>| escape(v.as_deref().unwrap_or_default());
    format!(
        "<form method=\"get\" action=\"/dead-letters\" class=\"filter\">\
         <label>Queue <select name=\"queue\">{options}</select></label>\
         <label>Task <input name=\"task\" value=\"{}\" placeholder=\"reports.*\"></label>\
         <label>Error <input name=\"error\" value=\"{}\" placeholder=\"text in the error\"></label>\
         <button>Filter</button></form>",
        value(&filter.task),
        value(&filter.error),
    )
}

fn pager(filter: &Filter, start: usize, shown: usize, total: usize) -> String {
    let query = filter.query();
    let href = |page: usize| match query.is_empty() {
        true => format!("/dead-letters?page={page}"),
        false => format!("/dead-letters?{query}&page={page}"),
    };
    let mut links = Vec::new();
    if filter.page > 0 {
        links.push(format!(
            "<a href=\"{}\" rel=\"prev\">previous</a>",
            href(filter.page - 1)
        ));
    }
    if start + shown < total {
        links.push(format!(
            "<a href=\"{}\" rel=\"next\">next</a>",
            href(filter.page + 1)
        ));
    }
    let range = match shown {
        0 => String::new(),
        n => format!("{}–{} of {total}", start + 1, start + n),
    };
    format!("<p class=\"pager\">{range} {}</p>", links.join(" "))
}

/// One dead letter: everything it carried, the error chain, the trace
/// link, and replay and delete buttons.
pub(crate) fn detail_page(entry: &DeadLetterEntry, jaeger: Option<&str>, csrf: &str) -> String {
    let json = |v: serde_json::Value| escape(&serde_json::to_string_pretty(&v).unwrap_or_default());
    let args = entry.args.clone().map(serde_json::Value::from);
    let kwargs = entry.kwargs.clone().map(serde_json::Value::Object);
    let invalid = entry.decode_error.as_ref().map_or(String::new(), |e| {
        format!("<p class=\"problem\">Not a valid task: {}</p>", escape(e))
    });
    let body = format!(
        "<table class=\"detail\">{}</table>{}\
         <h2>Arguments</h2><pre class=\"args\">{}</pre><pre class=\"kwargs\">{}</pre>\
         <h2>Error chain</h2><pre class=\"traceback\">{}</pre>{invalid}\
         <h2>Headers</h2><pre class=\"headers\">{}</pre>\
         <p><a href=\"/dead-letters?queue={}\">back to the list</a></p>",
        detail_rows(entry, jaeger),
        detail_buttons(entry, csrf),
        args.map_or("–".into(), json),
        kwargs.map_or("–".into(), json),
        text(&entry.traceback),
        json(serde_json::Value::Object(entry.headers.clone())),
        url_part(&entry.queue),
    );
    page(Tab::DeadLetters, "Dead letter", &body)
}

/// An optional text, escaped, or `–`.
fn text(value: &Option<String>) -> String {
    escape(value.as_deref().unwrap_or("–"))
}

/// The table of what a dead letter is, why it died and where it was sent.
fn detail_rows(entry: &DeadLetterEntry, jaeger: Option<&str>) -> String {
    let trace = match (&entry.trace_id, jaeger) {
        (Some(id), Some(base)) => format!(
            "<a class=\"trace\" href=\"{}/trace/{}\">{} (Jaeger)</a>",
            escape(base.trim_end_matches('/')),
            url_part(id),
            escape(id)
        ),
        (Some(id), None) => escape(id),
        (None, _) => "–".to_owned(),
    };
    let published = format!(
        "{} / {}",
        text(&entry.original_exchange),
        text(&entry.original_routing_key)
    );
    let failed_at = entry.failed_at.map_or("–".into(), |t| t.to_rfc3339());
    let fields = [
        ("Queue", escape(&entry.queue)),
        ("Task id", text(&entry.task_id)),
        ("Task", text(&entry.task)),
        ("Reason", text(&entry.reason)),
        ("Error", escape(&entry.short_error())),
        ("Retries", entry.retries.to_string()),
        ("Replayed before", entry.replay_count.to_string()),
        ("Failed at", failed_at),
        ("Worker", text(&entry.worker)),
        ("Published to", published),
        ("Trace", trace),
        ("Body", format!("{} bytes", entry.body_size)),
    ];
    fields
        .iter()
        .map(|(k, v)| format!("<tr><th>{k}</th><td>{v}</td></tr>"))
        .collect()
}

/// Replay and Delete for this dead letter alone (none without a task id).
fn detail_buttons(entry: &DeadLetterEntry, csrf: &str) -> String {
    let Some(id) = entry.task_id.as_deref().filter(|id| !id.is_empty()) else {
        return String::new();
    };
    format!(
        "<form method=\"post\" action=\"/dead-letters/confirm\" class=\"actions\">{}{}{}\
         <button name=\"action\" value=\"replay-selected\">Replay</button>\
         <button name=\"action\" value=\"delete-selected\" class=\"danger\">Delete</button></form>",
        csrf_field(csrf),
        hidden("queue", &entry.queue),
        hidden("id", id),
    )
}

/// The confirmation step: what the action would take, and the button that
/// does it.
pub(crate) fn confirm_page(form: &ActionForm, matching: &[DeadLetterEntry], csrf: &str) -> String {
    let (verb, target, warning) = match form.action {
        Action::Replay => (
            "Replay",
            "/dead-letters/replay",
            "Each is published back to where it was sent, with retries reset, and leaves the dead-letter queue only once the broker confirmed its copy.",
        ),
        Action::Delete => (
            "Delete",
            "/dead-letters/delete",
            "Deleted dead letters are gone for good.",
        ),
    };
    let scope = match form.scope {
        Scope::Selected => "selected",
        Scope::Matching => "matching the filter",
    };
    let listed: String = matching
        .iter()
        .take(20)
        .map(|e| {
            format!(
                "<li>{} <code>{}</code> {}</li>",
                escape(&e.queue),
                escape(e.task_id.as_deref().unwrap_or("–")),
                escape(e.task.as_deref().unwrap_or("–"))
            )
        })
        .collect();
    let more = matching.len().saturating_sub(20);
    let ids: String = form.ids.iter().map(|id| hidden("id", id)).collect();
    let body = format!(
        "<p class=\"confirm\">{verb} {} dead letter(s) {scope}? {warning}</p><ul>{listed}</ul>{}\
         <form method=\"post\" action=\"{target}\">{}{}{ids}{}{}\
         <button name=\"confirm\" value=\"yes\" class=\"{}\">Yes, {} {}</button> \
         <a href=\"/dead-letters?{}\">Cancel</a></form>",
        matching.len(),
        match more {
            0 => String::new(),
            n => format!("<p>and {n} more</p>"),
        },
        csrf_field(csrf),
        form.filter.hidden_fields(),
        hidden("action", form.action_value()),
        hidden("limit", &matching.len().to_string()),
        match form.action {
            Action::Replay => "",
            Action::Delete => "danger",
        },
        verb.to_lowercase(),
        matching.len(),
        form.filter.query(),
    );
    page(Tab::DeadLetters, &format!("{verb} dead letters"), &body)
}

/// What a replay did.
pub(crate) fn replayed_page(summary: &ReplaySummary, filter: &Filter) -> String {
    let failures: String = summary
        .failed
        .iter()
        .map(|f| {
            format!(
                "<li><code>{}</code> ({}): {}</li>",
                escape(f.task_id.as_deref().unwrap_or("–")),
                escape(&f.queue),
                escape(&f.error)
            )
        })
        .collect();
    let body = format!(
        "<p class=\"result\">Replayed {}, failed {} (left in place), not found {}.</p><ul>{failures}</ul>\
         <p><a href=\"/dead-letters?{}\">back to the list</a></p>",
        summary.replayed,
        summary.failed.len(),
        summary.not_found.len(),
        filter.query(),
    );
    page(Tab::DeadLetters, "Replayed", &body)
}

/// What a delete did.
pub(crate) fn deleted_page(summary: &PurgeSummary, filter: &Filter) -> String {
    let body = format!(
        "<p class=\"result\">Deleted {}, kept {}.</p>\
         <p><a href=\"/dead-letters?{}\">back to the list</a></p>",
        summary.purged,
        summary.kept,
        filter.query(),
    );
    page(Tab::DeadLetters, "Deleted", &body)
}

/// An error page body.
pub(crate) fn error_page(title: &str, message: &str) -> String {
    let body = format!("<p class=\"problem\">{}</p>", escape(message));
    page(Tab::DeadLetters, title, &body)
}
