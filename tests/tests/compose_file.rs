//! Checks that `compose.yaml` and the `Dockerfile` describe the stack the
//! README promises: RabbitMQ, Jaeger, and one demo worker per queue.
//!
//! No Docker engine is needed: the files are parsed, not run.
//!
//! Run with `cargo test -p celeriac-tests --test compose_file`.
#![allow(clippy::unwrap_used)]

use serde_yaml::Value;

const COMPOSE: &str = include_str!("../../compose.yaml");
const DOCKERFILE: &str = include_str!("../../Dockerfile");

/// The parsed `services:` map of `compose.yaml`.
fn services() -> Value {
    let compose: Value = serde_yaml::from_str(COMPOSE).unwrap();
    compose["services"].clone()
}

/// The service `name`, failing the test if it is missing.
fn service(name: &str) -> Value {
    let service = services()[name].clone();
    assert!(service.is_mapping(), "compose.yaml has no service {name}");
    service
}

/// A service's command as words, whether written as a list or a string.
fn command_words(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Sequence(words) => words
            .iter()
            .map(|word| word.as_str().unwrap().to_owned())
            .collect(),
        Value::String(line) => line.split_whitespace().map(str::to_owned).collect(),
        other => panic!("command is neither a list nor a string: {other:?}"),
    }
}

/// A service's environment variable `key`, from either the map or the
/// `KEY=value` list form.
fn env_var(service: &Value, key: &str) -> Option<String> {
    match &service["environment"] {
        Value::Mapping(vars) => vars.get(key).map(|value| match value {
            Value::String(text) => text.clone(),
            other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
        }),
        Value::Sequence(vars) => vars.iter().find_map(|var| {
            let (name, value) = var.as_str()?.split_once('=')?;
            (name == key).then(|| value.to_owned())
        }),
        _ => None,
    }
}

/// The host of an `amqp://user:password@host:port/vhost` URL.
fn url_host(url: &str) -> &str {
    let authority = url.split_once("://").unwrap().1;
    let authority = authority.split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    host_port.split(':').next().unwrap()
}

#[test]
fn compose_defines_broker_tracing_and_both_workers() {
    for name in ["rabbitmq", "jaeger", "worker-celery", "worker-reports"] {
        service(name);
    }
}

#[test]
fn rabbitmq_publishes_amqp_and_management_ports() {
    let ports: Vec<String> = service("rabbitmq")["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|port| port.as_str().unwrap().to_owned())
        .collect();
    for port in ["5672:5672", "15672:15672"] {
        assert!(ports.iter().any(|p| p == port), "{port} not in {ports:?}");
    }
}

#[test]
fn each_worker_builds_the_demo_worker_for_its_own_queue() {
    for (name, queue) in [("worker-celery", "celery"), ("worker-reports", "reports")] {
        let worker = service(name);
        assert_eq!(worker["build"].as_str(), Some("."), "{name} build");
        let words = command_words(&worker);
        assert_eq!(
            words.first().map(String::as_str),
            Some("celeriac-demo-worker")
        );
        let queues = words.iter().position(|word| word == "--queues").unwrap();
        assert_eq!(words[queues + 1], queue, "{name} consumes the wrong queue");
    }
}

#[test]
fn each_worker_reaches_the_broker_and_the_trace_collector() {
    for name in ["worker-celery", "worker-reports"] {
        let worker = service(name);
        let broker = env_var(&worker, "CELERIAC_BROKER_URL").unwrap();
        assert_eq!(url_host(&broker), "rabbitmq", "{name} broker URL {broker}");
        let collector = env_var(&worker, "OTEL_EXPORTER_OTLP_ENDPOINT").unwrap();
        assert!(
            collector.contains("jaeger"),
            "{name} OTLP endpoint {collector}"
        );
    }
}

#[test]
fn dockerfile_builds_the_worker_and_the_cli() {
    let build = DOCKERFILE
        .lines()
        .find(|line| line.contains("cargo build"))
        .unwrap();
    for package in ["celeriac-worker", "celeriac-producer"] {
        assert!(build.contains(&format!("-p {package}")), "{build}");
    }
    for binary in ["celeriac-demo-worker", "celeriac"] {
        let copied = format!("/src/target/release/{binary} /usr/local/bin/");
        assert!(
            DOCKERFILE.contains(&copied),
            "Dockerfile does not install {binary}"
        );
    }
}

#[test]
fn url_host_ignores_credentials_port_and_vhost() {
    assert_eq!(url_host("amqp://guest:guest@rabbitmq:5672/%2f"), "rabbitmq");
    assert_eq!(url_host("amqp://rabbitmq"), "rabbitmq");
}
