//! Celery-style routing: task name or glob to queue.

use serde::{Deserialize, Serialize};
use wildmatch::WildMatch;

use crate::DEFAULT_QUEUE;

/// One routing rule: tasks whose name matches `task` go to `queue`.
///
/// `task` is an exact name or a glob (`*` any run of characters, `?` one
/// character), as in Celery's `task_routes`: `reports.*` matches
/// `reports.build` and `reports.daily.pdf`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The task name or glob pattern.
    pub task: String,
    /// The queue that matching tasks are sent to.
    pub queue: String,
}

impl Route {
    /// A rule sending tasks that match `task` to `queue`.
    pub fn new(task: impl Into<String>, queue: impl Into<String>) -> Self {
        Self {
            task: task.into(),
            queue: queue.into(),
        }
    }

    /// Whether this rule applies to `task_name`.
    pub fn matches(&self, task_name: &str) -> bool {
        WildMatch::new(&self.task).matches(task_name)
    }
}

/// Ordered routing rules with a default queue: the first matching rule
/// wins, an explicit per-call queue beats every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Router {
    routes: Vec<Route>,
    default_queue: String,
}

impl Router {
    /// A router with the given rules, falling back to `default_queue`.
    pub fn new(routes: Vec<Route>, default_queue: impl Into<String>) -> Self {
        Self {
            routes,
            default_queue: default_queue.into(),
        }
    }

    /// Adds a rule after the existing ones.
    pub fn route(mut self, task: impl Into<String>, queue: impl Into<String>) -> Self {
        self.routes.push(Route::new(task, queue));
        self
    }

    /// The queue for `task_name`: `explicit` if given, else the first
    /// matching rule's queue, else the default queue.
    pub fn queue_for<'a>(&'a self, task_name: &str, explicit: Option<&'a str>) -> &'a str {
        explicit
            .or_else(|| {
                self.routes
                    .iter()
                    .find(|r| r.matches(task_name))
                    .map(|r| r.queue.as_str())
            })
            .unwrap_or(&self.default_queue)
    }

    /// The queue used when no rule matches.
    pub fn default_queue(&self) -> &str {
        &self.default_queue
    }
}

impl Default for Router {
    /// No rules; everything goes to the `celery` queue.
    fn default() -> Self {
        Self::new(Vec::new(), DEFAULT_QUEUE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::default()
            .route("reports.daily", "daily")
            .route("reports.*", "reports")
            .route("img.?", "images")
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let r = router();
        assert_eq!(r.queue_for("reports.daily", None), "daily");
        assert_eq!(r.queue_for("reports.weekly.pdf", None), "reports");
        assert_eq!(r.queue_for("img.a", None), "images");
        assert_eq!(r.queue_for("img.ab", None), "celery");
    }

    #[test]
    fn unmatched_tasks_go_to_the_default_queue() {
        assert_eq!(router().queue_for("demo.add", None), "celery");
        assert_eq!(Router::new(vec![], "work").queue_for("x", None), "work");
    }

    #[test]
    fn an_explicit_queue_beats_the_rules() {
        assert_eq!(
            router().queue_for("reports.daily", Some("urgent")),
            "urgent"
        );
    }
}
