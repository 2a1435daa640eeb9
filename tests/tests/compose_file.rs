//! Checks that `compose.yaml` and the `Dockerfile` describe the stack the
//! README promises: RabbitMQ with its management UI, Jaeger receiving
//! OTLP, one worker per queue (metrics and health on), and the stocks
//! example's web service, all sending traces to Jaeger.
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
    let mut compose: Value = serde_yaml::from_str(COMPOSE).unwrap();
    // `<<: *otel` merges the shared OTLP settings, as Compose does.
    compose.apply_merge().unwrap();
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

/// A service's published ports, as `host:container` strings.
fn ports(service: &Value) -> Vec<String> {
    service["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|port| port.as_str().unwrap().to_owned())
        .collect()
}

/// Every worker service with the binary it runs and the queue it consumes.
const WORKERS: [(&str, &str, &str); 3] = [
    ("worker-celery", "celeriac-demo-worker", "celery"),
    ("worker-reports", "celeriac-demo-worker", "reports"),
    ("worker-stocks", "stocks-worker", "stocks"),
];

#[test]
fn compose_defines_broker_tracing_workers_and_the_stocks_service() {
    for name in ["rabbitmq", "jaeger", "stocks"] {
        service(name);
    }
    for (name, _, _) in WORKERS {
        service(name);
    }
}

#[test]
fn jaeger_receives_otlp_and_publishes_its_ui() {
    let jaeger = service("jaeger");
    assert!(
        jaeger["image"]
            .as_str()
            .unwrap()
            .starts_with("jaegertracing/all-in-one"),
        "{jaeger:?}"
    );
    let ports = ports(&jaeger);
    for port in ["16686:16686", "4318:4318"] {
        assert!(ports.iter().any(|p| p == port), "{port} not in {ports:?}");
    }
    assert_eq!(
        env_var(&jaeger, "COLLECTOR_OTLP_ENABLED").as_deref(),
        Some("true")
    );
}

#[test]
fn every_celeriac_service_sends_traces_to_jaeger_over_otlp_http() {
    for name in ["worker-celery", "worker-reports", "worker-stocks", "stocks"] {
        let service = service(name);
        let endpoint = env_var(&service, "OTEL_EXPORTER_OTLP_ENDPOINT").unwrap();
        assert_eq!(
            endpoint, "http://jaeger:4318",
            "{name}: OTLP/HTTP to Jaeger"
        );
        let service_name = env_var(&service, "OTEL_SERVICE_NAME").unwrap();
        assert!(!service_name.is_empty(), "{name} names itself");
    }
}

#[test]
fn each_worker_serves_metrics_and_health_on_a_published_port() {
    let mut host_ports = Vec::new();
    for (name, _, _) in WORKERS {
        let worker = service(name);
        let addr = env_var(&worker, "CELERIAC_METRICS_ADDR").unwrap();
        assert_eq!(addr, "0.0.0.0:9090", "{name} metrics address");
        let published = ports(&worker);
        let port = published.iter().find(|p| p.ends_with(":9090")).unwrap();
        host_ports.push(port.split(':').next().unwrap().to_owned());
    }
    host_ports.sort();
    host_ports.dedup();
    assert_eq!(host_ports.len(), WORKERS.len(), "one host port per worker");
}

#[test]
fn the_stocks_service_listens_on_8080_and_sends_to_the_stocks_queue() {
    let stocks = service("stocks");
    assert_eq!(stocks["build"].as_str(), Some("."));
    assert!(ports(&stocks).iter().any(|p| p == "8080:8080"));
    let words = command_words(&stocks);
    assert_eq!(words.first().map(String::as_str), Some("stocks-service"));
    let listen = words.iter().position(|word| word == "--listen").unwrap();
    assert_eq!(words[listen + 1], "0.0.0.0:8080");
    let queue = words.iter().position(|word| word == "--queue").unwrap();
    assert_eq!(
        words[queue + 1],
        "stocks",
        "the queue worker-stocks consumes"
    );
    let broker = env_var(&stocks, "CELERIAC_BROKER_URL").unwrap();
    assert_eq!(url_host(&broker), "rabbitmq");
}

#[test]
fn the_dashboard_listens_beyond_localhost_only_with_a_token() {
    let dashboard = service("dashboard");
    let words = command_words(&dashboard);
    assert_eq!(&words[..2], ["celeriac", "dashboard"]);
    let listen = words.iter().position(|word| word == "--listen").unwrap();
    assert_eq!(words[listen + 1], "0.0.0.0:8080");
    assert!(ports(&dashboard).iter().any(|p| p == "8081:8080"));
    let token = env_var(&dashboard, "CELERIAC_DASHBOARD_TOKEN").unwrap();
    assert!(!token.is_empty(), "a non-loopback dashboard needs a token");
    let management = env_var(&dashboard, "CELERIAC_MANAGEMENT_URL").unwrap();
    assert_eq!(management, "http://rabbitmq:15672");
    let broker = env_var(&dashboard, "CELERIAC_BROKER_URL").unwrap();
    assert_eq!(url_host(&broker), "rabbitmq");
}

#[test]
fn rabbitmq_publishes_amqp_and_management_ports() {
    let rabbitmq = service("rabbitmq");
    assert!(rabbitmq["image"].as_str().unwrap().contains("management"));
    let ports = ports(&rabbitmq);
    for port in ["5672:5672", "15672:15672"] {
        assert!(ports.iter().any(|p| p == port), "{port} not in {ports:?}");
    }
}

#[test]
fn each_worker_builds_from_the_dockerfile_for_its_own_queue() {
    for (name, binary, queue) in WORKERS {
        let worker = service(name);
        assert_eq!(worker["build"].as_str(), Some("."), "{name} build");
        let words = command_words(&worker);
        assert_eq!(words.first().map(String::as_str), Some(binary));
        let queues = words.iter().position(|word| word == "--queues").unwrap();
        assert_eq!(words[queues + 1], queue, "{name} consumes the wrong queue");
    }
}

#[test]
fn each_worker_reaches_the_broker() {
    for (name, _, _) in WORKERS {
        let worker = service(name);
        let broker = env_var(&worker, "CELERIAC_BROKER_URL").unwrap();
        assert_eq!(url_host(&broker), "rabbitmq", "{name} broker URL {broker}");
    }
}

#[test]
fn dockerfile_builds_the_workers_the_cli_and_the_stocks_service() {
    let build = DOCKERFILE
        .lines()
        .find(|line| line.contains("cargo build"))
        .unwrap();
    for package in ["celeriac-demo", "celeriac-admin", "celeriac-example-stocks"] {
        assert!(build.contains(&format!("-p {package}")), "{build}");
    }
    for binary in [
        "celeriac-demo-worker",
        "celeriac",
        "stocks-service",
        "stocks-worker",
    ] {
        let copied = format!("/src/target/release/{binary} /usr/local/bin/");
        assert!(
            DOCKERFILE.contains(&copied),
            "Dockerfile does not install {binary}"
        );
    }
    assert!(
        DOCKERFILE.contains("ENV RUST_MIN_STACK=67108864"),
        "workers survive deeply nested headers (docs/operations.md)"
    );
}

#[test]
fn url_host_ignores_credentials_port_and_vhost() {
    assert_eq!(url_host("amqp://guest:guest@rabbitmq:5672/%2f"), "rabbitmq");
    assert_eq!(url_host("amqp://rabbitmq"), "rabbitmq");
}

#[test]
fn two_beat_replicas_run_the_demo_schedule() {
    let beat = service("beat");
    assert_eq!(beat["build"].as_str(), Some("."));
    assert_eq!(
        beat["deploy"]["replicas"].as_u64(),
        Some(2),
        "one leads, one stands by"
    );
    let words = command_words(&beat);
    assert_eq!(&words[..2], ["celeriac", "beat"]);
    let schedule = words.iter().position(|word| word == "--schedule").unwrap();
    let mounted = beat["volumes"][0].as_str().unwrap();
    assert_eq!(
        mounted,
        format!("./demo/schedule.toml:{}:ro", words[schedule + 1])
    );
    let text = include_str!("../../demo/schedule.toml");
    let parsed = celeriac_admin::schedule::Schedule::from_toml(text, "demo/schedule.toml");
    assert!(parsed.is_ok(), "{parsed:?}");
    let broker = env_var(&beat, "CELERIAC_BROKER_URL").unwrap();
    assert_eq!(url_host(&broker), "rabbitmq");
}

const CLUSTER_RABBITMQ_CONF: &str = include_str!("../../compose/cluster/rabbitmq.conf");
const CLUSTER_CELERIAC_TOML: &str = include_str!("../../compose/cluster/celeriac.toml");

/// The nodes of the `cluster` profile.
const CLUSTER_NODES: [&str; 3] = ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"];

/// The services that run on `docker compose up`, without a profile.
const DEFAULT_SERVICES: [&str; 8] = [
    "rabbitmq",
    "jaeger",
    "worker-celery",
    "worker-reports",
    "worker-stocks",
    "stocks",
    "beat",
    "dashboard",
];

/// A service's profiles; empty when it has none (it always runs).
fn profiles(service: &Value) -> Vec<String> {
    match &service["profiles"] {
        Value::Null => Vec::new(),
        Value::Sequence(names) => names
            .iter()
            .map(|name| name.as_str().unwrap().to_owned())
            .collect(),
        other => panic!("profiles is not a list: {other:?}"),
    }
}

/// The services a service depends on, from the list or the map form.
fn depends_on(service: &Value) -> Vec<String> {
    match &service["depends_on"] {
        Value::Null => Vec::new(),
        Value::Sequence(names) => names
            .iter()
            .map(|name| name.as_str().unwrap().to_owned())
            .collect(),
        Value::Mapping(map) => map
            .keys()
            .map(|name| name.as_str().unwrap().to_owned())
            .collect(),
        other => panic!("depends_on is neither a list nor a map: {other:?}"),
    }
}

/// The `key = value` settings of a rabbitmq.conf (sysctl format).
fn rabbitmq_conf(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=').unwrap();
            (key.trim(), value.trim())
        })
        .collect()
}

/// The hosts of a comma-separated broker URL list, in order.
fn broker_hosts(urls: &str) -> Vec<&str> {
    urls.split(',').map(|url| url_host(url.trim())).collect()
}

#[test]
fn the_cluster_profile_runs_three_rabbitmq_nodes_with_one_cookie() {
    let mut cookies = Vec::new();
    for name in CLUSTER_NODES {
        let node = service(name);
        assert_eq!(profiles(&node), ["cluster"], "{name} profiles");
        assert!(
            node["image"]
                .as_str()
                .unwrap()
                .starts_with("rabbitmq:3.13-management"),
            "{name}: the default broker's image"
        );
        // The node name is rabbit@<hostname>, as the peer list says.
        assert_eq!(node["hostname"].as_str(), Some(name), "{name} hostname");
        let cookie = env_var(&node, "RABBITMQ_ERLANG_COOKIE").unwrap();
        assert!(!cookie.is_empty(), "{name} has an Erlang cookie");
        cookies.push(cookie);
        let mounts: Vec<&str> = node["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|mount| mount.as_str().unwrap())
            .collect();
        assert!(
            mounts.iter().any(|mount| {
                mount.starts_with("./compose/cluster/rabbitmq.conf:/etc/rabbitmq/")
                    && mount.ends_with(".conf:ro")
            }),
            "{name} mounts the cluster's rabbitmq.conf read-only: {mounts:?}"
        );
        let test = node["healthcheck"]["test"].as_sequence().unwrap();
        assert!(
            test.iter()
                .any(|word| word.as_str() == Some("rabbitmq-diagnostics")),
            "{name} healthcheck {test:?}"
        );
        let published = ports(&node);
        for container in ["5672", "15672"] {
            let port = published
                .iter()
                .find(|p| p.ends_with(&format!(":{container}")))
                .unwrap();
            assert!(
                !["5672", "15672"].contains(&port.split(':').next().unwrap()),
                "{name} publishes {port}, a port of the default rabbitmq"
            );
        }
    }
    cookies.dedup();
    assert_eq!(cookies.len(), 1, "the three nodes share one cookie");
}

#[test]
fn the_cluster_rabbitmq_conf_lists_all_three_nodes_for_peer_discovery() {
    let settings = rabbitmq_conf(CLUSTER_RABBITMQ_CONF);
    let setting = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, value)| *value)
    };
    assert_eq!(
        setting("cluster_formation.peer_discovery_backend"),
        Some("classic_config")
    );
    let mut peers: Vec<&str> = settings
        .iter()
        .filter(|(key, _)| key.starts_with("cluster_formation.classic_config.nodes."))
        .map(|(_, value)| *value)
        .collect();
    peers.sort_unstable();
    let expected: Vec<String> = CLUSTER_NODES
        .iter()
        .map(|name| format!("rabbit@{}", service(name)["hostname"].as_str().unwrap()))
        .collect();
    assert_eq!(peers, expected);
    // guest connects from the other containers, not from localhost.
    assert!(
        setting("loopback_users.guest") == Some("false")
            || setting("loopback_users") == Some("none"),
        "guest may connect over the network: {settings:?}"
    );
}

#[test]
fn the_cluster_worker_and_beat_use_all_three_nodes_and_quorum_queues() {
    let config =
        celeriac_shared::Config::from_toml(CLUSTER_CELERIAC_TOML, "compose/cluster/celeriac.toml")
            .unwrap();
    assert_eq!(config.queue_type, celeriac_shared::QueueType::Quorum);
    for name in ["worker-cluster", "beat-cluster"] {
        let service = service(name);
        assert_eq!(profiles(&service), ["cluster"], "{name} profiles");
        let broker = env_var(&service, "CELERIAC_BROKER_URL").unwrap();
        assert_eq!(broker_hosts(&broker), CLUSTER_NODES, "{name} broker URL");
        let config_path = env_var(&service, "CELERIAC_CONFIG").unwrap();
        let mount = format!("./compose/cluster/celeriac.toml:{config_path}:ro");
        let mounts = service["volumes"].as_sequence().unwrap();
        assert!(
            mounts.iter().any(|m| m.as_str() == Some(mount.as_str())),
            "{name} mounts the cluster's celeriac.toml at {config_path}"
        );
        for node in CLUSTER_NODES {
            assert!(
                depends_on(&service).iter().any(|d| d == node),
                "{name} waits for {node}"
            );
        }
    }
    let worker = service("worker-cluster");
    assert_eq!(
        env_var(&worker, "CELERIAC_QUEUE_TYPE").as_deref(),
        Some("quorum")
    );
    let words = command_words(&worker);
    assert_eq!(
        words.first().map(String::as_str),
        Some("celeriac-demo-worker")
    );
    let beat = service("beat-cluster");
    assert_eq!(&command_words(&beat)[..2], ["celeriac", "beat"]);
}

#[test]
fn docker_compose_up_without_the_profile_runs_the_default_stack_only() {
    let services = services();
    let services = services.as_mapping().unwrap();
    let mut unprofiled: Vec<&str> = services
        .iter()
        .filter(|(_, service)| profiles(service).is_empty())
        .map(|(name, _)| name.as_str().unwrap())
        .collect();
    unprofiled.sort_unstable();
    let mut expected = DEFAULT_SERVICES.to_vec();
    expected.sort_unstable();
    assert_eq!(
        unprofiled, expected,
        "the services `docker compose up` runs"
    );
    for name in DEFAULT_SERVICES {
        for dependency in depends_on(&service(name)) {
            assert!(
                DEFAULT_SERVICES.contains(&dependency.as_str()),
                "{name} depends on {dependency}, outside the default stack"
            );
        }
    }
    // Both run together: no host port is published twice.
    let mut host_ports: Vec<String> = services
        .values()
        .filter(|service| !service["ports"].is_null())
        .flat_map(ports)
        .map(|port| port.split(':').next().unwrap().to_owned())
        .collect();
    let published = host_ports.len();
    host_ports.sort();
    host_ports.dedup();
    assert_eq!(
        host_ports.len(),
        published,
        "a host port is published twice"
    );
}

#[test]
fn broker_hosts_splits_a_comma_separated_list() {
    assert_eq!(
        broker_hosts("amqp://guest:guest@a:5672/%2f, amqp://b/%2f,amqp://u:p@c"),
        ["a", "b", "c"]
    );
}
