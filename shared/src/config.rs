//! Routing and topology loaded from a TOML file (`celeriac.toml`) shared by
//! producers and workers.

use std::path::Path;

use serde::Deserialize;

use crate::{
    DEFAULT_DELIVERY_LIMIT, DEFAULT_QUEUE, DeadLetterRetention, Error, QueueDef, QueueType,
    RateLimit, Route, Router, Topology,
};

/// The default maximum message body size: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// The shared configuration: default queue, message size limit, queues and
/// routing rules.
///
/// ```toml
/// default_queue = "celery"          # default: "celery"
/// max_message_size = 1048576        # bytes; default: 1 MiB
/// queue_type = "quorum"             # every queue's type; default: "classic"
/// delivery_limit = 5                # deliveries before dead-lettering; default: 5
///
/// [[queue]]
/// name = "reports"
/// exchange = { name = "reports", type = "direct" }   # default: as the queue
/// routing_key = "reports"                              # default: the name
/// durable = true                                       # default: true
/// queue_type = "classic"                               # default: the top-level one
/// max_priority = 10                                    # classic only; default: none
/// arguments = { "x-message-ttl" = 60000 }              # default: none
/// dead_letters = { max_age = "7days" }                 # default: [dead_letters]
///
/// [dead_letters]                    # retention of every <queue>.dead
/// max_age = "180days"               # default: none (kept until purged)
/// max_length = 10000                # default: none
///
/// [[route]]
/// task = "reports.*"
/// queue = "reports"
///
/// [[rate_limit]]
/// task = "api.fetch"                # a task name, or a glob: "api.*"
/// rate = "100/m"                    # N/s, N/m, N/h, or N per second
/// scope = "cluster"                 # default: "worker"
/// burst = 10                        # default: 1
/// ```
///
/// Unknown keys are errors, so a typo is reported with its line instead of
/// being ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The queue for tasks no rule matches. Defaults to `celery`.
    #[serde(default = "default_queue")]
    pub default_queue: String,
    /// The largest message body accepted, in bytes, on send and on receive.
    /// Defaults to [`DEFAULT_MAX_MESSAGE_SIZE`].
    #[serde(default = "default_max_message_size")]
    pub max_message_size: usize,
    /// The type of every queue celeriac declares whose `[[queue]]` entry
    /// sets none (or that has no entry): task queues and their `.dead`
    /// queues. `"quorum"` makes them all replicated quorum queues (see
    /// `docs/reliability.md`). Defaults to classic, as Celery.
    #[serde(default)]
    pub queue_type: QueueType,
    /// A message delivered this many times without being settled (it
    /// crashed or stalled every worker that took it) is dead-lettered with
    /// reason `delivery limit` instead of running again; also the
    /// `x-delivery-limit` of quorum task queues, so producers and workers
    /// must agree on it. Defaults to [`DEFAULT_DELIVERY_LIMIT`] (5).
    #[serde(default = "default_delivery_limit")]
    pub delivery_limit: u32,
    /// Queue definitions. Defaults to none (every queue gets Celery's
    /// default shape).
    #[serde(default, rename = "queue")]
    pub queues: Vec<QueueDef>,
    /// Routing rules, first match wins. Defaults to none.
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    /// The retention of dead-letter queues whose `[[queue]]` sets none.
    /// Defaults to unlimited.
    #[serde(default)]
    pub dead_letters: DeadLetterRetention,
    /// Rate limits by task name or glob (`[[rate_limit]]`), each task at
    /// most once. Defaults to none.
    #[serde(default, rename = "rate_limit")]
    pub rate_limits: Vec<RateLimit>,
}

fn default_queue() -> String {
    DEFAULT_QUEUE.into()
}

fn default_max_message_size() -> usize {
    DEFAULT_MAX_MESSAGE_SIZE
}

fn default_delivery_limit() -> u32 {
    DEFAULT_DELIVERY_LIMIT
}

impl Default for Config {
    fn default() -> Self {
        Self {
            default_queue: default_queue(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            queue_type: QueueType::Classic,
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            queues: Vec::new(),
            routes: Vec::new(),
            dead_letters: DeadLetterRetention::UNLIMITED,
            rate_limits: Vec::new(),
        }
    }
}

impl Config {
    /// Parses a TOML document; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, Error> {
        let config: Self = toml::from_str(text).map_err(|err| Error::Config {
            origin: origin.to_owned(),
            message: describe(text, &err),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads and parses a TOML file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The default queue, then every queue the file names (in `queues` or
    /// as a route's target), once each, in that order: the queues the CLI
    /// declares, counts and inspects.
    pub fn queue_names(&self) -> Vec<String> {
        let mut names = vec![self.default_queue.clone()];
        let declared = self.queues.iter().map(|q| &q.name);
        for name in declared.chain(self.routes.iter().map(|r| &r.queue)) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// The routing rules as a [`Router`].
    pub fn router(&self) -> Router {
        Router::new(self.routes.clone(), self.default_queue.clone())
    }

    /// The queue definitions as a [`Topology`], with the default queue
    /// type and the delivery limit.
    pub fn topology(&self) -> Topology {
        Topology::new(self.queues.clone())
            .dead_letter_retention_default(self.dead_letters)
            .default_queue_type(self.queue_type)
            .delivery_limit(self.delivery_limit)
    }

    fn validate(&self, origin: &str) -> Result<(), Error> {
        let invalid = |message: String| Error::Config {
            origin: origin.to_owned(),
            message,
        };
        let names = self
            .queues
            .iter()
            .map(|q| q.name.as_str())
            .chain(self.routes.iter().map(|r| r.queue.as_str()))
            .chain([self.default_queue.as_str()]);
        for name in names {
            if name.is_empty() || name.len() > 255 {
                return Err(invalid(format!(
                    "queue name `{name}` must be 1 to 255 bytes"
                )));
            }
        }
        for (i, q) in self.queues.iter().enumerate() {
            if self.queues[..i].iter().any(|other| other.name == q.name) {
                return Err(invalid(format!("queue `{}` is defined twice", q.name)));
            }
        }
        if self.max_message_size == 0 {
            return Err(invalid("max_message_size must be positive".into()));
        }
        if self.delivery_limit == 0 {
            return Err(invalid("delivery_limit must be at least 1".into()));
        }
        let topology = self.topology();
        for name in self.queue_names() {
            topology
                .queue_def(&name)
                .check()
                .map_err(|err| invalid(format!("queue `{name}`: {err}")))?;
        }
        let retentions = self.queues.iter().filter_map(|q| q.dead_letters.as_ref());
        for retention in retentions.chain([&self.dead_letters]) {
            retention
                .validate()
                .map_err(|err| invalid(err.to_string()))?;
        }
        RateLimit::check_unique(&self.rate_limits).map_err(|err| invalid(err.to_string()))?;
        Ok(())
    }
}

/// The parser's message with the line and column of the error.
fn describe(text: &str, err: &toml::de::Error) -> String {
    let message = err.message();
    match err.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExchangeType, QueueType};

    const EXAMPLE: &str = r#"
default_queue = "work"

[[queue]]
name = "reports"
exchange = { name = "jobs", type = "topic" }
routing_key = "reports.#"
queue_type = "quorum"

[[queue]]
name = "urgent"
max_priority = 10

[[route]]
task = "reports.*"
queue = "reports"
"#;

    #[test]
    fn a_full_file_parses_into_routing_and_topology() {
        let config = Config::from_toml(EXAMPLE, "example").unwrap();
        assert_eq!(config.router().queue_for("reports.build", None), "reports");
        assert_eq!(config.router().queue_for("other", None), "work");
        let reports = config.topology().queue_def("reports");
        assert_eq!(reports.exchange_def().kind, ExchangeType::Topic);
        assert_eq!(reports.queue_type, Some(QueueType::Quorum));
        assert_eq!(config.topology().queue_def("urgent").max_priority, Some(10));
        assert_eq!(config.max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
    }

    #[test]
    fn dead_letter_retention_is_read_globally_and_per_queue() {
        let text = "[dead_letters]\nmax_age = \"180days\"\nmax_length = 10000\n\
                    [[queue]]\nname = \"q\"\ndead_letters = { max_age = \"7d\" }\n";
        let config = Config::from_toml(text, "f").unwrap();
        let day = std::time::Duration::from_secs(86_400);
        let topology = config.topology();
        assert_eq!(
            topology.dead_letter_retention("other").max_age,
            Some(day * 180)
        );
        assert_eq!(
            topology.dead_letter_retention("other").max_length,
            Some(10_000)
        );
        assert_eq!(topology.dead_letter_retention("q").max_age, Some(day * 7));
        assert_eq!(topology.dead_letter_retention("q").max_length, None);
        let bad = Config::from_toml("[dead_letters]\nmax_age = \"soon\"\n", "f").unwrap_err();
        assert!(bad.to_string().contains("line 2"), "{bad}");
        let zero = Config::from_toml("[dead_letters]\nmax_length = 0\n", "f").unwrap_err();
        assert!(zero.to_string().contains("positive"), "{zero}");
    }

    #[test]
    fn rate_limits_are_read_with_their_defaults() {
        let text = "[[rate_limit]]\ntask = \"api.fetch\"\nrate = \"100/m\"\nscope = \"cluster\"\n\
                    burst = 10\n[[rate_limit]]\ntask = \"mail.*\"\nrate = 5\n";
        let config = Config::from_toml(text, "f").unwrap();
        let [fetch, mail] = &config.rate_limits[..] else {
            panic!("two limits expected: {:?}", config.rate_limits)
        };
        assert_eq!(fetch.scope, crate::RateLimitScope::Cluster);
        assert_eq!((fetch.rate.to_string(), fetch.burst), ("100/m".into(), 10));
        assert_eq!(mail.scope, crate::RateLimitScope::Worker);
        assert_eq!((mail.rate.to_string(), mail.burst), ("5/s".into(), 1));
        assert!(mail.matches("mail.send"));
    }

    /// The message of the error `text` gives.
    fn refusal(text: &str) -> String {
        Config::from_toml(text, "celeriac.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_rate_of_zero_is_refused_naming_the_task_and_field() {
        let err = refusal("[[rate_limit]]\ntask = \"api.fetch\"\nrate = \"0/m\"\n");
        assert!(
            err.contains("celeriac.toml")
                && err.contains("line 1")
                && err.contains("task `api.fetch`: `rate` `0/m` allows no task at all"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_unit_is_refused_naming_the_task_and_field() {
        let err = refusal("[[rate_limit]]\ntask = \"api.fetch\"\nrate = \"10/d\"\n");
        assert!(
            err.contains("task `api.fetch`: `rate` `10/d` has the unknown unit `d`: use s, m or h"),
            "{err}"
        );
        let err = refusal("[[rate_limit]]\ntask = \"api.fetch\"\nrate = 2.5\n");
        assert!(err.contains("`rate` `2.5` is not a rate"), "{err}");
    }

    #[test]
    fn a_burst_of_zero_is_refused_naming_the_task_and_field() {
        let err = refusal("[[rate_limit]]\ntask = \"api.fetch\"\nrate = \"1/s\"\nburst = 0\n");
        assert!(
            err.contains("task `api.fetch`: `burst` must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn a_task_limited_twice_is_refused_naming_both_entries() {
        let entry = "[[rate_limit]]\ntask = \"api.fetch\"\nrate = \"1/s\"\n";
        let other = "[[rate_limit]]\ntask = \"api.*\"\nrate = \"1/s\"\n";
        let err = refusal(&format!("{entry}{other}{entry}"));
        assert!(
            err.contains("number 3 repeats task `api.fetch` of number 1"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_scope_or_key_in_a_rate_limit_is_refused_with_its_line() {
        let err = refusal("[[rate_limit]]\ntask = \"a\"\nrate = \"1/s\"\nscope = \"global\"\n");
        assert!(
            err.contains("line 4") && err.contains("expected `worker` or `cluster`"),
            "{err}"
        );
        let err = refusal("[[rate_limit]]\ntask = \"a\"\nrate = \"1/s\"\nburts = 2\n");
        assert!(err.contains("burts"), "{err}");
        let err = refusal("[[rate_limit]]\ntask = \"\"\nrate = \"1/s\"\n");
        assert!(err.contains("empty `task`"), "{err}");
    }

    #[test]
    fn one_switch_makes_every_queue_quorum_unless_a_queue_says_otherwise() {
        let text = "queue_type = \"quorum\"\ndelivery_limit = 3\n\
                    [[queue]]\nname = \"urgent\"\nqueue_type = \"classic\"\nmax_priority = 9\n\
                    [[queue]]\nname = \"reports\"\n";
        let config = Config::from_toml(text, "f").unwrap();
        let topology = config.topology();
        for queue in ["celery", "reports", "unlisted"] {
            assert_eq!(topology.queue_type(queue), QueueType::Quorum, "{queue}");
            let args = crate::field_table_to_json(&topology.queue_def(queue).declare_arguments());
            assert_eq!(args["x-queue-type"], "quorum");
            assert_eq!(args["x-delivery-limit"], 3);
            assert_eq!(args["x-dead-letter-exchange"], "celeriac.dead");
            assert_eq!(args["x-dead-letter-routing-key"], queue);
        }
        assert_eq!(topology.queue_type("urgent"), QueueType::Classic);
        let urgent = crate::field_table_to_json(&topology.queue_def("urgent").declare_arguments());
        let priority_only = serde_json::json!({"x-max-priority": 9});
        assert_eq!(serde_json::Value::Object(urgent), priority_only);
        let classic = Config::default().topology();
        assert!(
            classic
                .queue_def("celery")
                .declare_arguments()
                .inner()
                .is_empty()
        );
        assert_eq!(Config::default().delivery_limit, 5);
    }

    #[test]
    fn a_quorum_queue_with_priorities_is_refused_naming_the_queue() {
        let err =
            refusal("queue_type = \"quorum\"\n[[queue]]\nname = \"urgent\"\nmax_priority = 9\n");
        assert!(
            err.contains("queue `urgent`") && err.contains("`max_priority` needs a classic queue"),
            "{err}"
        );
        let err = refusal("[[queue]]\nname = \"u\"\nqueue_type = \"quorum\"\nmax_priority = 9\n");
        assert!(
            err.contains("queue `u`") && err.contains("x-max-priority"),
            "{err}"
        );
        let err = refusal("queue_type = \"quorum\"\n[[queue]]\nname = \"t\"\ndurable = false\n");
        assert!(err.contains("always durable"), "{err}");
        let err = refusal("delivery_limit = 0\n");
        assert!(err.contains("delivery_limit must be at least 1"), "{err}");
        let err = refusal("queue_type = \"mirrored\"\n");
        assert!(err.contains("line 1") && err.contains("mirrored"), "{err}");
    }

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(Config::from_toml("", "empty").unwrap(), Config::default());
    }

    #[test]
    fn a_syntax_error_names_the_line() {
        let err = Config::from_toml("default_queue = \"a\"\n[[queue]\nname = 1\n", "bad.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn an_unknown_key_or_bad_value_names_the_line() {
        let err = Config::from_toml("[[queue]]\nname = \"a\"\nqueue_typo = \"x\"\n", "f")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("queue_typo"),
            "{err}"
        );
        let err = Config::from_toml("[[queue]]\nname = \"a\"\nqueue_type = \"stream\"\n", "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("stream"), "{err}");
    }

    #[test]
    fn semantic_errors_are_reported() {
        let twice = "[[queue]]\nname = \"a\"\n[[queue]]\nname = \"a\"\n";
        assert!(
            Config::from_toml(twice, "f")
                .unwrap_err()
                .to_string()
                .contains("defined twice")
        );
        let long = format!("default_queue = \"{}\"", "x".repeat(256));
        assert!(
            Config::from_toml(&long, "f")
                .unwrap_err()
                .to_string()
                .contains("255")
        );
    }
}
