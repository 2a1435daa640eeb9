//! Which dead letters an inspection lists, replays or purges.

use chrono::{DateTime, Utc};
use wildmatch::WildMatch;

use crate::DeadLetterEntry;

/// Filters on dead letters; every filter that is set must match. The
/// default selects everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// Only tasks whose name matches this glob (`*` any run of characters,
    /// `?` one character, as routing rules). Defaults to any task.
    pub task: Option<String>,
    /// Only these task ids. Defaults to empty: any id.
    pub task_ids: Vec<String>,
    /// Only dead letters that failed before this time (by their
    /// `x-celeriac-failed-at` header; one without it never matches).
    /// Defaults to any time.
    pub failed_before: Option<DateTime<Utc>>,
    /// Only dead letters whose error (type, message or traceback)
    /// contains this text, ignoring case. Defaults to any error.
    pub error: Option<String>,
    /// Stop after this many matches. Defaults to no limit.
    pub limit: Option<usize>,
}

impl Selection {
    /// Selects the dead letters of these task ids.
    pub fn task_ids(ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            task_ids: ids.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Selects tasks whose name matches `pattern`.
    pub fn task(pattern: impl Into<String>) -> Self {
        Self {
            task: Some(pattern.into()),
            ..Self::default()
        }
    }

    /// Whether `entry` is selected (the limit aside).
    pub fn matches(&self, entry: &DeadLetterEntry) -> bool {
        let task = match (&self.task, &entry.task) {
            (None, _) => true,
            (Some(pattern), Some(name)) => WildMatch::new(pattern).matches(name),
            (Some(_), None) => false,
        };
        let id = self.task_ids.is_empty()
            || entry
                .task_id
                .as_ref()
                .is_some_and(|id| self.task_ids.contains(id));
        let age = match (self.failed_before, entry.failed_at) {
            (None, _) => true,
            (Some(cutoff), Some(failed_at)) => failed_at < cutoff,
            (Some(_), None) => false,
        };
        let error = self.error.as_deref().is_none_or(|needle| {
            let needle = needle.to_lowercase();
            let fields = [&entry.error_type, &entry.error_message, &entry.traceback];
            fields
                .into_iter()
                .flatten()
                .any(|text| text.to_lowercase().contains(&needle))
        });
        task && id && age && error
    }

    /// Whether `matched` matches reach the limit.
    pub fn is_full(&self, matched: usize) -> bool {
        self.limit.is_some_and(|limit| matched >= limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::BasicProperties;
    use lapin::types::{AMQPValue, FieldTable};

    fn entry(task: &str, id: &str, failed_at: &str) -> DeadLetterEntry {
        let mut headers = FieldTable::default();
        let text = |s: &str| AMQPValue::LongString(s.into());
        headers.insert("task".into(), text(task));
        headers.insert("id".into(), text(id));
        headers.insert("x-celeriac-failed-at".into(), text(failed_at));
        let properties = BasicProperties::default().with_headers(headers);
        DeadLetterEntry::decode("q", 0, &properties, b"[[], {}, {}]")
    }

    #[test]
    fn every_set_filter_must_match() {
        let old = entry("reports.daily", "1", "2020-01-01T00:00:00Z");
        let new = entry("mail.send", "2", "2030-01-01T00:00:00Z");
        assert!(Selection::default().matches(&old));
        assert!(Selection::task("reports.*").matches(&old));
        assert!(!Selection::task("reports.*").matches(&new));
        assert!(Selection::task_ids(["2"]).matches(&new));
        assert!(!Selection::task_ids(["2"]).matches(&old));
        let cutoff = Selection {
            failed_before: Some(Utc::now()),
            ..Selection::default()
        };
        assert!(cutoff.matches(&old) && !cutoff.matches(&new));
    }

    #[test]
    fn the_error_filter_looks_for_text_in_type_message_and_traceback() {
        let mut failed = entry("mail.send", "3", "2030-01-01T00:00:00Z");
        failed.error_type = Some("SmtpError".into());
        failed.traceback = Some("at line 3: Connection REFUSED".into());
        let error = |text: &str| Selection {
            error: Some(text.into()),
            ..Selection::default()
        };
        assert!(error("smtp").matches(&failed));
        assert!(error("connection refused").matches(&failed));
        assert!(!error("timeout").matches(&failed));
        failed.traceback = None;
        failed.error_type = None;
        assert!(!error("smtp").matches(&failed), "no error text at all");
    }

    #[test]
    fn a_limit_is_reached_at_its_count() {
        let limited = Selection {
            limit: Some(2),
            ..Selection::default()
        };
        assert!(!limited.is_full(1) && limited.is_full(2));
        assert!(!Selection::default().is_full(usize::MAX));
    }
}
