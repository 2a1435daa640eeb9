//! The Tasks pages: the filtered list with its live fragment, and one
//! task's page.

use chrono::{DateTime, Utc};
use maud::{Markup, Render, html};

use super::html::{Tab, page, url_part};
use super::task_list::{MAX_TASKS, TaskFilter, TaskRow, TaskState};
use super::text::Text;

/// How many tasks the list shows at most (the newest matching).
pub(crate) const SHOWN: usize = 200;

/// How much of the arguments and of a result the list shows.
const SHORT: usize = 80;

/// The list's column headings.
const COLUMNS: [&str; 9] = [
    "Task id", "Name", "State", "Worker", "Received", "Started", "Runtime", "Args", "Result",
];

impl TaskFilter {
    /// The filter in a query string's `pairs` (`name`, `state`); empty
    /// values and unknown states are no filter.
    pub(crate) fn from_pairs(pairs: &[(String, String)]) -> Self {
        let value = |key: &str| {
            pairs
                .iter()
                .find(|(k, v)| k == key && !v.trim().is_empty())
                .map(|(_, v)| v.trim().to_owned())
        };
        Self {
            name: value("name"),
            state: value("state").as_deref().and_then(TaskState::parse),
        }
    }

    /// The filter as a query string, for links.
    pub(crate) fn query(&self) -> String {
        let mut parts = Vec::new();
        if let Some(name) = &self.name {
            parts.push(format!("name={}", url_part(name)));
        }
        if let Some(state) = self.state {
            parts.push(format!("state={}", state.name()));
        }
        parts.join("&")
    }

    fn is_empty(&self) -> bool {
        self.name.is_none() && self.state.is_none()
    }
}

/// The link to a task's page.
pub(crate) fn task_href(task_id: &str) -> String {
    format!("/tasks/{}", url_part(task_id))
}

/// The Tasks page: the filter form around the live list, which the
/// page's script fetches again (`/tasks?fragment=1&<filter>`) whenever
/// `/tasks/events` says the tasks changed.
pub(crate) fn tasks_page(filter: &TaskFilter, rows: &[TaskRow], total: usize) -> Markup {
    let query = filter.query();
    let source = match query.is_empty() {
        true => "/tasks?fragment=1".to_owned(),
        false => format!("/tasks?fragment=1&{query}"),
    };
    let body = html! {
        (filter_form(filter))
        div id="tasks" data-events="/tasks/events" data-source=(source) {
            (tasks_fragment(filter, rows, total))
        }
    };
    page(Tab::Tasks, "Tasks", body)
}

/// The filter form: a task-name glob and a state.
fn filter_form(filter: &TaskFilter) -> Markup {
    html! {
        form method="get" action="/tasks" class="filter" {
            label {
                "Name "
                input name="name" value=(Text(filter.name.as_deref().unwrap_or_default()))
                    placeholder="reports.*";
            }
            label {
                "State "
                select name="state" {
                    option value="" { "any state" }
                    @for state in TaskState::ALL {
                        option value=(state.name()) selected[filter.state == Some(state)] {
                            (state.name())
                        }
                    }
                }
            }
            button { "Filter" }
        }
    }
}

/// The count and the table of the newest matching tasks.
pub(crate) fn tasks_fragment(filter: &TaskFilter, rows: &[TaskRow], total: usize) -> Markup {
    html! {
        p class="summary" {
            (total) " task(s) match" @if !filter.is_empty() { " the filter" }
            @if total > rows.len() { "; the newest " (rows.len()) " are shown" }
            ". The last " (MAX_TASKS) " tasks heard of are kept."
        }
        table class="tasks" {
            thead { tr { @for column in COLUMNS { th { (column) } } } }
            tbody {
                @for row in rows { (task_row(row)) }
                @if rows.is_empty() {
                    tr { td colspan=(COLUMNS.len()) class="empty" { (no_tasks(filter)) } }
                }
            }
        }
    }
}

/// Why the list is empty.
fn no_tasks(filter: &TaskFilter) -> Markup {
    html! {
        @if filter.is_empty() {
            "No task events yet. celeriac workers send them with task events on \
             (WorkerConfig::task_events, or the enable_events control command); \
             Celery workers need " code { "-E" } "."
        } @else {
            "No tasks match."
        }
    }
}

/// One task's row.
fn task_row(row: &TaskRow) -> Markup {
    let state = row.state.name();
    html! {
        tr data-task-id=(Text(&row.uuid)) data-state=(state) {
            td class="task-id" { a href=(task_href(&row.uuid)) { (Text(&row.uuid)) } }
            td class="name" { (optional(&row.name)) }
            td class={ "state " (state.to_lowercase()) } { (state) }
            td class="worker" { (Text(&row.hostname)) }
            td class="received" { (time(row.received)) }
            td class="started" { (time(row.started)) }
            td class="runtime" { (runtime(row.runtime)) }
            td class="args" { (Text(&short(&args(row), SHORT))) }
            td class="result" { (Text(&short(row.outcome().unwrap_or("–"), SHORT))) }
        }
    }
}

/// One task: everything its events said, the traceback included.
pub(crate) fn task_page(row: &TaskRow) -> Markup {
    let fields = [
        ("Task id", Text(&row.uuid).render()),
        ("Name", optional(&row.name).render()),
        (
            "State",
            html! { span class={ "state " (row.state.name().to_lowercase()) } { (row.state.name()) } },
        ),
        ("Worker", Text(&row.hostname).render()),
        ("Received", time(row.received).render()),
        ("Started", time(row.started).render()),
        ("Finished", time(row.finished).render()),
        ("Runtime", runtime(row.runtime).render()),
        (
            "Retries",
            row.retries.map_or("–".into(), |r| r.to_string()).render(),
        ),
    ];
    let body = html! {
        table class="detail" {
            @for (name, value) in fields { tr { th { (name) } td { (value) } } }
        }
        h2 { "Arguments" }
        pre class="args" { (optional(&row.args)) }
        pre class="kwargs" { (optional(&row.kwargs)) }
        @if row.result.is_some() {
            h2 { "Result" }
            pre class="result" { (optional(&row.result)) }
        }
        @if row.exception.is_some() || row.traceback.is_some() {
            h2 { "Exception" }
            pre class="exception" { (optional(&row.exception)) }
            h2 { "Traceback" }
            pre class="traceback" { (optional(&row.traceback)) }
        }
        h2 { "Events" }
        table class="events" {
            thead { tr { th { "Event" } th { "At" } th { "Worker" } } }
            tbody {
                @for event in &row.events {
                    tr {
                        td { (event.state.name()) }
                        td { (time(Some(event.at))) }
                        td { (Text(&event.hostname)) }
                    }
                }
            }
        }
        p { a href="/tasks" { "back to the list" } }
    };
    page(Tab::Tasks, "Task", body)
}

/// The page of a task not (or no longer) kept.
pub(crate) fn unknown_task_page(task_id: &str) -> Markup {
    let body = html! {
        p class="problem" {
            "No task events seen for task id " code { (Text(task_id)) }
            ": its worker does not send them, or the task is older than the last "
            (MAX_TASKS) " tasks."
        }
        p { a href="/tasks" { "back to the list" } }
    };
    page(Tab::Tasks, "Task not found", body)
}

/// The arguments and keyword arguments on one line.
fn args(row: &TaskRow) -> String {
    match (&row.args, &row.kwargs) {
        (None, None) => "–".to_owned(),
        (args, kwargs) => {
            let kwargs = kwargs.as_deref().filter(|k| *k != "{}");
            let args = args.as_deref().unwrap_or("");
            match kwargs {
                Some(kwargs) => format!("{args} {kwargs}"),
                None => args.to_owned(),
            }
        }
    }
}

/// `text` cut to `max` characters, with `…` when cut.
fn short(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// An optional text, or `–`.
fn optional(value: &Option<String>) -> Text<'_> {
    Text(value.as_deref().unwrap_or("–"))
}

/// A time with milliseconds, or `–`.
fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "–".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
    )
}

/// A runtime in seconds, or `–`.
fn runtime(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "–".to_owned(), |s| format!("{s:.3} s"))
}

#[cfg(test)]
mod tests {
    use celeriac_shared::{TaskEvent, TaskEventKind};
    use serde_json::json;

    use super::super::dead_letter_form::pairs;
    use super::super::task_list::TaskList;
    use super::*;

    const HOSTILE: &str = "<script>alert(1)</script> \"double\" 'single'";
    const ESCAPED: &str =
        "&lt;script&gt;alert(1)&lt;/script&gt; &quot;double&quot; &#39;single&#39;";

    fn hostile_task() -> TaskRow {
        let mut list = TaskList::new(10);
        let fields = json!({"name": HOSTILE, "args": HOSTILE, "kwargs": HOSTILE});
        let failed = json!({"exception": HOSTILE, "traceback": HOSTILE});
        for (kind, fields) in [
            (TaskEventKind::Received, fields),
            (TaskEventKind::Failed, failed),
        ] {
            list.record(&TaskEvent {
                kind,
                uuid: HOSTILE.into(),
                hostname: HOSTILE.into(),
                timestamp: 1.0,
                utcoffset: 0,
                pid: 1,
                clock: 1,
                fields: fields.as_object().cloned().unwrap_or_default(),
            });
        }
        list.get(HOSTILE).unwrap()
    }

    fn assert_inert(html: &str) {
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(!html.contains("\"double\""), "{html}");
        assert!(!html.contains("'single'"), "{html}");
        assert!(html.contains(ESCAPED), "{html}");
    }

    #[test]
    fn hostile_task_fields_and_filters_come_out_escaped() {
        let row = hostile_task();
        let filter = TaskFilter::from_pairs(&pairs(
            b"name=%3Cscript%3Ealert(1)%3C%2Fscript%3E+%22double%22+%27single%27&state=failure",
        ));
        assert_eq!(filter.state, Some(TaskState::Failure));
        let list = tasks_page(&filter, std::slice::from_ref(&row), 1).into_string();
        assert_inert(&list);
        assert!(list.contains("data-source=\"/tasks?fragment=1&amp;name=%3Cscript%3E"));
        assert!(list.contains("href=\"/tasks/%3Cscript%3Ealert%281%29"));
        assert_inert(&task_page(&row).into_string());
        assert_inert(&unknown_task_page(HOSTILE).into_string());
    }

    #[test]
    fn long_values_are_cut_on_characters() {
        assert_eq!(short("ééé", 2), "éé…");
        assert_eq!(short("ab", 2), "ab");
    }
}
