//! How `celeriac inspect`, `celeriac revoke` and `celeriac control` print
//! the workers' replies.

use std::fmt::Write;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::{Replies, Revoked};

/// The replies as pretty JSON `{hostname: reply}` (what `--json` prints).
pub fn json(replies: &Replies) -> Result<String, serde_json::Error> {
    let doc: Map<String, Value> = replies.iter().cloned().collect();
    serde_json::to_string_pretty(&doc)
}

/// The replies to `method` as text: one block per worker, `-> hostname:
/// summary` and the details indented below, then how many replied.
pub fn text(method: &str, replies: &Replies) -> String {
    let mut out = String::new();
    for (hostname, reply) in replies {
        let (summary, lines) = describe(method, reply);
        let _ = writeln!(out, "-> {hostname}: {summary}");
        for line in lines {
            let _ = writeln!(out, "    {line}");
        }
    }
    let _ = writeln!(out, "{}", replied(replies.len()));
    out
}

/// What to say when no worker replied within `timeout` (the CLI then exits
/// with 1).
pub fn no_reply(destination: Option<&[String]>, timeout: Duration) -> String {
    let timeout = humantime::format_duration(timeout);
    match destination {
        Some(names) => format!("no reply from {} within {timeout}", names.join(", ")),
        None => format!("no worker replied within {timeout}"),
    }
}

/// The workers of `destination` that did not reply, as a line to print,
/// or `None` when all did (or no destination was given).
pub fn missing(destination: Option<&[String]>, replies: &Replies) -> Option<String> {
    let silent: Vec<&str> = destination?
        .iter()
        .filter(|name| !replies.iter().any(|(hostname, _)| hostname == *name))
        .map(String::as_str)
        .collect();
    (!silent.is_empty()).then(|| format!("no reply from {}", silent.join(", ")))
}

/// What `celeriac revoke` prints: what was revoked, where it was recorded
/// and which workers acknowledged Celery's `revoke` command.
pub fn revoked(revoked: &Revoked, timeout: Duration) -> String {
    let mut out = String::new();
    let how = if revoked.terminate {
        " (running ones terminated)"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "revoked {} task(s){how}: {}",
        revoked.task_ids.len(),
        revoked.task_ids.join(", ")
    );
    let _ = writeln!(
        out,
        "recorded on the stream `{}`: every celeriac worker skips them, including ones started later",
        revoked.stream
    );
    if revoked.replies.is_empty() {
        let _ = writeln!(
            out,
            "no worker acknowledged the revoke command within {}",
            humantime::format_duration(timeout)
        );
        return out;
    }
    let _ = writeln!(out, "acknowledged by:");
    for (hostname, reply) in &revoked.replies {
        let (summary, _) = describe("revoke", reply);
        let _ = writeln!(out, "-> {hostname}: {summary}");
    }
    let _ = writeln!(out, "{}", replied(revoked.replies.len()));
    out
}

/// What `celeriac control shutdown` prints once the command is sent.
pub fn shutdown_sent(destination: Option<&[String]>) -> String {
    match destination {
        Some(names) => format!("shutdown sent to {}", names.join(", ")),
        None => "shutdown sent to every worker".to_owned(),
    }
}

fn replied(count: usize) -> String {
    match count {
        1 => "1 worker replied.".to_owned(),
        n => format!("{n} workers replied."),
    }
}

/// A reply's one-line summary (`OK` when the details say it all) and the
/// lines of detail below it.
fn describe(method: &str, reply: &Value) -> (String, Vec<String>) {
    if let Some(fields) = reply.as_object()
        && fields.len() == 1
    {
        if let Some(ok) = fields.get("ok") {
            return (plain(ok), Vec::new());
        }
        if let Some(error) = fields.get("error") {
            return (format!("error: {}", plain(error)), Vec::new());
        }
    }
    match (method, reply) {
        ("registered", Value::Array(names)) => counted(names, "registered task", plain),
        ("revoked", Value::Array(ids)) => counted(ids, "revoked task id", plain),
        ("active" | "reserved" | "scheduled", Value::Array(tasks)) => {
            counted(tasks, &format!("{method} task"), task_line)
        }
        ("active_queues", Value::Array(queues)) => counted(queues, "queue", queue_line),
        (_, Value::Array(items)) => counted(items, "item", plain),
        (_, Value::Object(fields)) => {
            let mut lines = Vec::new();
            flatten("", fields, &mut lines);
            ("OK".to_owned(), lines)
        }
        (_, other) => (plain(other), Vec::new()),
    }
}

/// `N <noun>(s)` and a `* item` line each; `none` for an empty list.
fn counted(items: &[Value], noun: &str, line: fn(&Value) -> String) -> (String, Vec<String>) {
    if items.is_empty() {
        return (format!("no {noun}s"), Vec::new());
    }
    let plural = if items.len() == 1 { "" } else { "s" };
    let mut lines: Vec<String> = items
        .iter()
        .map(|item| format!("* {}", line(item)))
        .collect();
    lines.sort();
    (format!("{} {noun}{plural}", items.len()), lines)
}

/// A task of `active`, `reserved` or `scheduled` (whose entries wrap the
/// request with its `eta`): `name[id] args=... kwargs=...`.
fn task_line(task: &Value) -> String {
    let request = task.get("request").unwrap_or(task);
    let field = |name: &str| request.get(name).map(plain).unwrap_or_default();
    let mut line = format!(
        "{}[{}] args={} kwargs={}",
        field("name"),
        field("id"),
        field("args"),
        field("kwargs")
    );
    if let Some(eta) = task.get("eta").filter(|eta| !eta.is_null()) {
        let _ = write!(line, " eta={}", plain(eta));
    }
    line
}

/// A queue of `active_queues`: `name exchange=name(type) routing_key=key`.
fn queue_line(queue: &Value) -> String {
    let field = |value: Option<&Value>| value.map(plain).unwrap_or_default();
    let exchange = queue.get("exchange");
    format!(
        "{} exchange={}({}) routing_key={}",
        field(queue.get("name")),
        field(exchange.and_then(|e| e.get("name"))),
        field(exchange.and_then(|e| e.get("type"))),
        field(queue.get("routing_key"))
    )
}

/// `key: value` lines, nested objects' keys joined with dots, sorted.
fn flatten(prefix: &str, fields: &Map<String, Value>, lines: &mut Vec<String>) {
    let mut keys: Vec<&String> = fields.keys().collect();
    keys.sort();
    for key in keys {
        let name = match prefix {
            "" => key.clone(),
            _ => format!("{prefix}.{key}"),
        };
        match &fields[key] {
            Value::Object(inner) if !inner.is_empty() => flatten(&name, inner, lines),
            value => lines.push(format!("{name}: {}", plain(value))),
        }
    }
}

/// A string without its quotes; anything else as compact JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn replies(entries: &[(&str, Value)]) -> Replies {
        entries
            .iter()
            .map(|(host, reply)| ((*host).to_owned(), reply.clone()))
            .collect()
    }

    #[test]
    fn ping_prints_one_line_per_worker() {
        let replies = replies(&[
            ("a@h", json!({"ok": "pong"})),
            ("b@h", json!({"ok": "pong"})),
        ]);
        assert_eq!(
            text("ping", &replies),
            "-> a@h: pong\n-> b@h: pong\n2 workers replied.\n"
        );
        let doc: Value = serde_json::from_str(&json(&replies).unwrap()).unwrap();
        assert_eq!(doc, json!({"a@h": {"ok": "pong"}, "b@h": {"ok": "pong"}}));
    }

    #[test]
    fn lists_and_objects_are_readable() {
        let replies = replies(&[("a@h", json!(["demo.mul", "demo.add"])), ("b@h", json!([]))]);
        assert_eq!(
            text("registered", &replies),
            "-> a@h: 2 registered tasks\n    * demo.add\n    * demo.mul\n\
             -> b@h: no registered tasks\n2 workers replied.\n"
        );
        let stats = replies_of("a@h", json!({"pid": 7, "pool": {"max-concurrency": 4}}));
        assert_eq!(
            text("stats", &stats),
            "-> a@h: OK\n    pid: 7\n    pool.max-concurrency: 4\n1 worker replied.\n"
        );
        let active = replies_of(
            "a@h",
            json!([{"id": "t1", "name": "demo.add", "args": "(2, 3)", "kwargs": "{}"}]),
        );
        assert!(text("active", &active).contains("* demo.add[t1] args=(2, 3) kwargs={}"));
        let unknown = replies_of("a@h", json!({"error": "KeyError('nope')"}));
        assert!(text("nope", &unknown).starts_with("-> a@h: error: KeyError('nope')\n"));
    }

    #[test]
    fn silent_workers_are_named() {
        let destination = ["a@h".to_owned(), "b@h".to_owned()];
        let replies = replies_of("a@h", json!({"ok": "pong"}));
        assert_eq!(
            missing(Some(&destination), &replies).as_deref(),
            Some("no reply from b@h")
        );
        assert_eq!(missing(None, &replies), None);
        assert_eq!(
            no_reply(None, Duration::from_secs(1)),
            "no worker replied within 1s"
        );
    }

    #[test]
    fn revoke_names_the_ids_and_the_acknowledgements() {
        let revoked = Revoked {
            task_ids: vec!["t1".into(), "t2".into()],
            terminate: true,
            stream: "celeriac.revocations",
            replies: replies_of("py@h", json!({"ok": "tasks t1, t2 flagged as revoked"})),
        };
        let out = super::revoked(&revoked, Duration::from_secs(1));
        assert!(out.starts_with("revoked 2 task(s) (running ones terminated): t1, t2\n"));
        assert!(out.contains("-> py@h: tasks t1, t2 flagged as revoked\n"));
    }

    fn replies_of(host: &str, reply: Value) -> Replies {
        vec![(host.to_owned(), reply)]
    }
}
