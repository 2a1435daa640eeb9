//! What a dead-letter page or action was asked for: the filter, the
//! selected task ids, replay or delete.

use maud::{Markup, html};

use super::html::{hidden, url_part};
use crate::Selection;

/// The list's filter, from the query string or a form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    /// Only this work queue's dead letters; all shown queues when `None`.
    pub(crate) queue: Option<String>,
    /// Only task names matching this glob.
    pub(crate) task: Option<String>,
    /// Only errors containing this text.
    pub(crate) error: Option<String>,
    /// The page, from 0.
    pub(crate) page: usize,
}

/// Replay or delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Replay,
    Delete,
}

/// Which dead letters an action takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The task ids ticked (or the one shown).
    Selected,
    /// Every dead letter matching the filter.
    Matching,
}

/// A submitted action form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ActionForm {
    pub(crate) filter: Filter,
    pub(crate) action: Action,
    pub(crate) scope: Scope,
    /// The ticked task ids (scope `Selected`).
    pub(crate) ids: Vec<String>,
    /// At most this many: the count the confirmation step showed, so
    /// that dead letters arriving after it are not taken too.
    pub(crate) limit: Option<usize>,
    /// The CSRF token sent.
    pub(crate) csrf: String,
}

/// `key=value` pairs of a query string or form body.
pub(crate) fn pairs(encoded: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(encoded).into_owned().collect()
}

impl Filter {
    /// The filter in `pairs`; empty values are no filter.
    pub(crate) fn from_pairs(pairs: &[(String, String)]) -> Self {
        let value = |key: &str| {
            pairs
                .iter()
                .find(|(k, v)| k == key && !v.trim().is_empty())
                .map(|(_, v)| v.trim().to_owned())
        };
        Self {
            queue: value("queue"),
            task: value("task"),
            error: value("error"),
            page: value("page").and_then(|p| p.parse().ok()).unwrap_or(0),
        }
    }

    /// The library's selection for this filter (queues aside).
    pub(crate) fn selection(&self) -> Selection {
        Selection {
            task: self.task.clone(),
            error: self.error.clone(),
            ..Selection::default()
        }
    }

    /// The filter as a query string (without the page), for links.
    pub(crate) fn query(&self) -> String {
        let fields = [
            ("queue", &self.queue),
            ("task", &self.task),
            ("error", &self.error),
        ];
        let parts: Vec<String> = fields
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", url_part(v))))
            .collect();
        parts.join("&")
    }

    /// The filter as hidden form fields.
    pub(crate) fn hidden_fields(&self) -> Markup {
        let fields = [
            ("queue", &self.queue),
            ("task", &self.task),
            ("error", &self.error),
        ];
        html! {
            @for (name, value) in fields {
                @if let Some(value) = value { (hidden(name, value)) }
            }
        }
    }

    /// Whether any filter is set.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_none() && self.task.is_none() && self.error.is_none()
    }
}

/// Why an action form was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FormError {
    /// No known action was submitted.
    #[error("no action: replay or delete, selected or matching")]
    NoAction,
    /// "Selected" with nothing ticked, which must never mean "all".
    #[error("no dead letter selected: tick at least one")]
    NothingSelected,
}

impl ActionForm {
    /// The action form in `pairs`, or why it is not one.
    pub(crate) fn from_pairs(pairs: &[(String, String)]) -> Result<Self, FormError> {
        let value = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let (action, scope) = match value("action") {
            Some("replay-selected") => (Action::Replay, Scope::Selected),
            Some("delete-selected") => (Action::Delete, Scope::Selected),
            Some("replay-matching") => (Action::Replay, Scope::Matching),
            Some("delete-matching") => (Action::Delete, Scope::Matching),
            _ => return Err(FormError::NoAction),
        };
        let ids: Vec<String> = pairs
            .iter()
            .filter(|(k, v)| k == "id" && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect();
        // An empty id list selects every dead letter in the library:
        // "selected" with nothing ticked must never mean "all".
        if scope == Scope::Selected && ids.is_empty() {
            return Err(FormError::NothingSelected);
        }
        Ok(Self {
            filter: Filter::from_pairs(pairs),
            action,
            scope,
            ids,
            limit: value("limit").and_then(|l| l.parse().ok()),
            csrf: value("csrf").unwrap_or_default().to_owned(),
        })
    }

    /// The library's selection: the filter, narrowed to the ticked ids.
    pub(crate) fn selection(&self) -> Selection {
        let mut selection = self.filter.selection();
        if self.scope == Scope::Selected {
            selection.task_ids = self.ids.clone();
        }
        selection.limit = self.limit;
        selection
    }

    /// The `action` value that submits this form again.
    pub(crate) fn action_value(&self) -> &'static str {
        match (self.action, self.scope) {
            (Action::Replay, Scope::Selected) => "replay-selected",
            (Action::Delete, Scope::Selected) => "delete-selected",
            (Action::Replay, Scope::Matching) => "replay-matching",
            (Action::Delete, Scope::Matching) => "delete-matching",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Result<ActionForm, FormError> {
        ActionForm::from_pairs(&pairs(body.as_bytes()))
    }

    #[test]
    fn selected_dead_letters_are_named_by_id_and_the_filter_is_kept() {
        let form = form("action=replay-selected&id=a&id=b&queue=q&task=&csrf=t").unwrap();
        assert_eq!((form.action, form.scope), (Action::Replay, Scope::Selected));
        assert_eq!(form.selection().task_ids, vec!["a", "b"]);
        assert_eq!(form.filter.queue.as_deref(), Some("q"));
        assert_eq!(form.filter.task, None, "an empty field is no filter");
        assert_eq!(form.filter.query(), "queue=q");
    }

    #[test]
    fn selected_with_nothing_ticked_is_refused_rather_than_taken_as_all() {
        assert!(form("action=delete-selected&csrf=t").is_err());
        let all = form("action=delete-matching&task=r.*&csrf=t").unwrap();
        assert!(all.selection().task_ids.is_empty());
        assert_eq!(all.selection().task.as_deref(), Some("r.*"));
        assert!(form("action=drop-table").is_err());
    }
}
