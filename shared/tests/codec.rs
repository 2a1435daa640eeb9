//! Broker-free tests of the task and result codec: real Celery captures
//! (`fixtures/`) must decode exactly, celeriac's own messages must survive
//! encode then decode, and every bad message must fail with an error that
//! says what is wrong.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use celeriac_shared::{
    Embed, Error, ResultMessage, TaskFailure, TaskHeaders, TaskMessage, TimeLimit,
    decode_arguments, field_table_to_json, json_to_field_table,
};
use chrono::{DateTime, FixedOffset, Utc};
use lapin::BasicProperties;
use lapin::protocol::basic::{gen_properties, parse_properties};
use serde_json::{Map, Value, json};

const TASK_FIXTURES: &str = include_str!("fixtures/celery-task-messages.json");
const RESULT_FIXTURES: &str = include_str!("fixtures/celery-rpc-results.json");
const MAX_SIZE: usize = 1 << 20;
const EMPTY_EMBED: &str = r#"{"callbacks": null, "errbacks": null, "chain": null, "chord": null}"#;

/// The captures of one scenario, e.g. `group_messages`.
fn fixtures(file: &str, scenario: &str) -> Vec<Value> {
    let all: Value = serde_json::from_str(file).unwrap();
    all[scenario].as_array().cloned().unwrap()
}

/// The single capture of a scenario.
fn fixture(scenario: &str) -> Value {
    let mut list = fixtures(TASK_FIXTURES, scenario);
    assert_eq!(list.len(), 1, "{scenario} has one capture");
    list.remove(0)
}

/// Every task capture, named by scenario.
fn every_task_fixture() -> Vec<(String, Value)> {
    let all: Map<String, Value> = serde_json::from_str(TASK_FIXTURES).unwrap();
    all.into_iter()
        .flat_map(|(scenario, list)| {
            let list = list.as_array().cloned().unwrap();
            list.into_iter().map(move |entry| (scenario.clone(), entry))
        })
        .collect()
}

/// The AMQP properties a consumer receives for a capture.
fn properties(fixture: &Value) -> BasicProperties {
    let p = &fixture["properties"];
    let text = |key: &str| p[key].as_str().map(Into::into);
    let byte = |key: &str| p[key].as_u64().map(|n| u8::try_from(n).unwrap());
    let mut props = BasicProperties::default()
        .with_headers(json_to_field_table(fixture["headers"].as_object().unwrap()));
    if let Some(v) = text("content_type") {
        props = props.with_content_type(v);
    }
    if let Some(v) = text("content_encoding") {
        props = props.with_content_encoding(v);
    }
    if let Some(v) = byte("delivery_mode") {
        props = props.with_delivery_mode(v);
    }
    if let Some(v) = byte("priority") {
        props = props.with_priority(v);
    }
    if let Some(v) = text("correlation_id") {
        props = props.with_correlation_id(v);
    }
    if let Some(v) = text("reply_to") {
        props = props.with_reply_to(v);
    }
    if let Some(v) = text("expiration") {
        props = props.with_expiration(v);
    }
    props
}

fn decode_fixture(fixture: &Value) -> TaskMessage {
    let body = fixture["body"].as_str().unwrap();
    TaskMessage::decode(&properties(fixture), body.as_bytes(), MAX_SIZE).unwrap()
}

/// JSON properties with the given headers, as a Python producer sends them.
fn json_properties(headers: Value) -> BasicProperties {
    BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_headers(json_to_field_table(&object(headers)))
}

fn decode(headers: Value, body: &str) -> Result<TaskMessage, Error> {
    TaskMessage::decode(&json_properties(headers), body.as_bytes(), MAX_SIZE)
}

fn minimal_headers() -> Value {
    json!({"task": "demo.add", "id": "task-1"})
}

fn at(text: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(text).unwrap()
}

fn object(value: Value) -> Map<String, Value> {
    let Value::Object(map) = value else {
        panic!("{value} is not an object")
    };
    map
}

#[test]
fn the_apply_async_capture_decodes_to_exactly_what_celery_sent() {
    let id = "3da56df6-9bd0-4c6d-9f9a-c2f0db039e5a";
    let expected = TaskMessage {
        headers: TaskHeaders {
            lang: "py".into(),
            task: "proj.tasks.add".into(),
            id: id.into(),
            shadow: None,
            eta: Some(at("2026-11-23T06:01:34.617982+00:00")),
            expires: Some(at("2026-11-23T06:02:24.617982+00:00")),
            group: None,
            group_index: None,
            retries: 0,
            timelimit: TimeLimit {
                hard: Some(Duration::from_secs(30)),
                soft: Some(Duration::from_secs(20)),
            },
            root_id: Some(id.into()),
            parent_id: None,
            argsrepr: Some("(2, 2)".into()),
            kwargsrepr: Some("{}".into()),
            origin: Some("gen22501@vm".into()),
            ignore_result: false,
            replaced_task_nesting: 0,
            stamped_headers: None,
            stamps: Map::new(),
            extra: Map::new(),
        },
        reply_to: Some("a1f03ed3-c86b-3589-aa81-e00d394eea46".into()),
        priority: Some(5),
        args: vec![json!(2), json!(2)],
        kwargs: Map::new(),
        embed: Embed::default(),
    };
    let message = decode_fixture(&fixture("apply_async_options"));
    assert_eq!(message, expected);
    let eta = message.headers.eta.unwrap();
    assert_eq!(eta.timestamp_micros(), 1_795_413_694_617_982);
    assert_eq!(eta.offset().local_minus_utc(), 0);
    assert_eq!(
        message.headers.expires.unwrap() - eta,
        chrono::Duration::seconds(50)
    );
    assert_eq!((message.id(), message.task()), (id, "proj.tasks.add"));
}

#[test]
fn every_celery_task_fixture_decodes() {
    let all = every_task_fixture();
    assert_eq!(all.len(), 8, "the fixture file holds eight captures");
    for (scenario, fixture) in all {
        let message = decode_fixture(&fixture);
        let headers = &fixture["headers"];
        let body: Value = serde_json::from_str(fixture["body"].as_str().unwrap()).unwrap();
        assert_eq!(message.task(), headers["task"], "{scenario}");
        assert_eq!(
            message.id(),
            fixture["properties"]["correlation_id"],
            "{scenario}"
        );
        assert_eq!(Value::Array(message.args.clone()), body[0], "{scenario}");
        assert_eq!(Value::Object(message.kwargs.clone()), body[1], "{scenario}");
        assert_eq!(message.headers.lang, "py", "{scenario}");
        assert_eq!(
            message.headers.root_id.as_deref(),
            Some(message.id()),
            "{scenario}"
        );
        assert_eq!(
            message.headers.origin.as_deref(),
            Some("gen22501@vm"),
            "{scenario}"
        );
        assert_eq!(
            message.reply_to.as_deref(),
            Some("a1f03ed3-c86b-3589-aa81-e00d394eea46")
        );
    }
}

#[test]
fn send_task_with_kwargs_decodes_and_a_null_ignore_result_means_false() {
    let message = decode_fixture(&fixture("send_task_kwargs"));
    assert!(message.args.is_empty());
    assert_eq!(Value::Object(message.kwargs), json!({"x": 1, "y": 2}));
    assert!(!message.headers.ignore_result);
    assert_eq!(message.headers.timelimit, TimeLimit::default());
    assert_eq!((message.headers.eta, message.headers.expires), (None, None));
    assert_eq!(
        message.headers.kwargsrepr.as_deref(),
        Some("{'x': 1, 'y': 2}")
    );
    assert_eq!(message.priority, Some(0));
}

#[test]
fn ignore_result_true_is_kept() {
    let message = decode_fixture(&fixture("ignore_result"));
    assert!(message.headers.ignore_result);
    assert_eq!(message.args, vec![json!(3), json!(4)]);
    assert_eq!(message.priority, None);
}

#[test]
fn the_first_chain_message_carries_the_rest_of_the_chain_in_reverse() {
    let message = decode_fixture(&fixture("chain_first_message"));
    assert_eq!(message.args, vec![json!(1), json!(1)]);
    let chain = message.embed.chain.unwrap();
    let chain = chain.as_array().unwrap();
    assert_eq!(chain.len(), 2);
    // Reversed: the last signature runs next (add(10)), then add(100).
    assert_eq!(chain[1]["args"], json!([10]));
    assert_eq!(
        chain[1]["options"]["task_id"],
        "00ac344d-5872-40ce-94d0-faf7c9fcffd5"
    );
    assert_eq!(chain[0]["args"], json!([100]));
    for signature in chain {
        assert_eq!(signature["task"], "proj.tasks.add");
        assert_eq!(signature["immutable"], false);
    }
    let rest = (
        message.embed.callbacks,
        message.embed.errbacks,
        message.embed.chord,
    );
    assert_eq!(rest, (None, None, None));
}

#[test]
fn group_messages_carry_the_group_id_and_their_index() {
    let messages: Vec<TaskMessage> = fixtures(TASK_FIXTURES, "group_messages")
        .iter()
        .map(decode_fixture)
        .collect();
    assert_eq!(messages.len(), 3);
    for (index, message) in (0u64..).zip(&messages) {
        let group = message.headers.group.as_deref();
        assert_eq!(group, Some("1532651d-5627-40e9-8afa-2f680d6264e7"));
        assert_eq!(message.headers.group_index, Some(index));
        assert_eq!(message.args, vec![json!(index), json!(index)]);
    }
}

#[test]
fn an_opentelemetry_traceparent_header_is_kept_in_extra() {
    let message = decode_fixture(&fixture("otel_traceparent"));
    let extra = Value::Object(message.headers.extra);
    let traceparent = "00-5c11b293a3631a9006ee20c5b4d9a195-66c1e8a93a8651d9-03";
    assert_eq!(extra, json!({"traceparent": traceparent}));
}

#[test]
fn celery_kwargs_and_positional_args_both_decode_into_add_args() {
    let arguments = |scenario: &str| -> AddArgs {
        let message = decode_fixture(&fixture(scenario));
        decode_arguments(&message.headers.task, message.args, message.kwargs).unwrap()
    };
    assert_eq!(arguments("send_task_kwargs"), AddArgs { x: 1, y: 2 });
    assert_eq!(arguments("apply_async_options"), AddArgs { x: 2, y: 2 });
}

/// A fixed "now" and a message with every option set.
fn full_message() -> (DateTime<Utc>, TaskMessage) {
    let now = at("2026-03-04T05:06:07.123456+00:00").with_timezone(&Utc);
    let mut message = TaskMessage::new("demo.add", vec![json!(2)], object(json!({"y": 3})));
    let headers = &mut message.headers;
    headers.eta = Some((now + Duration::from_secs(10)).fixed_offset());
    headers.expires = Some((now + Duration::from_secs(60)).fixed_offset());
    headers.timelimit = TimeLimit {
        hard: Some(Duration::from_secs(30)),
        soft: Some(Duration::from_millis(1500)),
    };
    headers.group = Some("group-1".into());
    headers.group_index = Some(2);
    headers.origin = Some("celeriac@test".into());
    let traceparent = json!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    headers.extra.insert("traceparent".into(), traceparent);
    message.priority = Some(9);
    message.reply_to = Some("replies-1".into());
    (now, message)
}

#[test]
fn a_message_with_every_option_survives_encode_then_decode() {
    let (now, message) = full_message();
    let (body, properties) = message.encode(now).unwrap();
    let decoded = TaskMessage::decode(&properties, &body, MAX_SIZE).unwrap();
    assert_eq!(decoded, message);
}

#[test]
fn encoded_properties_survive_the_amqp_wire_format() {
    let (now, message) = full_message();
    let (body, properties) = message.encode(now).unwrap();
    let written = gen_properties(&properties)(Vec::new().into())
        .unwrap()
        .write;
    let (rest, received) = parse_properties(written.as_slice()).unwrap();
    assert!(rest.is_empty());
    assert_eq!(received, properties);
    assert_eq!(
        TaskMessage::decode(&received, &body, MAX_SIZE).unwrap(),
        message
    );
}

#[test]
fn encode_sets_the_properties_celery_sets() {
    let (now, message) = full_message();
    let (_, properties) = message.encode(now).unwrap();
    let text = |v: &Option<lapin::types::ShortString>| v.as_ref().map(|s| s.as_str().to_owned());
    assert_eq!(
        text(properties.content_type()).as_deref(),
        Some("application/json")
    );
    assert_eq!(
        text(properties.content_encoding()).as_deref(),
        Some("utf-8")
    );
    assert_eq!(*properties.delivery_mode(), Some(2));
    assert_eq!(
        text(properties.correlation_id()).as_deref(),
        Some(message.id())
    );
    assert_eq!(text(properties.reply_to()).as_deref(), Some("replies-1"));
    assert_eq!(*properties.priority(), Some(9));
    assert_eq!(text(properties.expiration()).as_deref(), Some("60000"));
}

#[test]
fn expiration_counts_from_now_and_is_never_negative() {
    let (now, mut message) = full_message();
    let expiration = |m: &TaskMessage, now| {
        let (_, properties) = m.encode(now).unwrap();
        properties
            .expiration()
            .as_ref()
            .map(|s| s.as_str().to_owned())
    };
    let later = now + Duration::from_millis(59_750);
    assert_eq!(expiration(&message, later).as_deref(), Some("250"));
    assert_eq!(
        expiration(&message, now + Duration::from_secs(600)).as_deref(),
        Some("0")
    );
    message.headers.expires = None;
    assert_eq!(expiration(&message, now), None);
}

#[test]
fn a_message_without_options_sends_no_reply_to_priority_or_expiration() {
    let message = TaskMessage::new("demo.add", vec![], Map::new());
    let (_, properties) = message.encode(Utc::now()).unwrap();
    assert_eq!(properties.reply_to(), &None);
    assert_eq!(properties.priority(), &None);
    assert_eq!(properties.expiration(), &None);
}

#[test]
fn encoded_headers_have_every_celery_header_with_its_json_type() {
    let (now, message) = full_message();
    let (_, properties) = message.encode(now).unwrap();
    let headers = field_table_to_json(properties.headers().as_ref().unwrap());
    let id = message.id();
    assert_eq!(headers["lang"], "rs");
    assert_eq!(headers["task"], "demo.add");
    assert_eq!(headers["id"], id);
    assert_eq!(headers["shadow"], Value::Null);
    assert_eq!(headers["eta"], "2026-03-04T05:06:17.123456+00:00");
    assert_eq!(headers["expires"], "2026-03-04T05:07:07.123456+00:00");
    assert_eq!(headers["group"], "group-1");
    assert!(headers["group_index"].is_u64());
    assert!(headers["retries"].is_u64());
    assert_eq!(headers["timelimit"], json!([30, 1.5]));
    assert_eq!(headers["root_id"], id);
    assert_eq!(headers["parent_id"], Value::Null);
    assert!(headers["argsrepr"].is_string() && headers["kwargsrepr"].is_string());
    assert_eq!(headers["origin"], "celeriac@test");
    assert!(headers["ignore_result"].is_boolean());
    assert!(headers["replaced_task_nesting"].is_u64());
    assert_eq!(headers["stamped_headers"], Value::Null);
    assert_eq!(headers["stamps"], json!({}));
    assert!(headers["traceparent"].is_string());
}

#[test]
fn encoded_headers_have_the_same_names_as_celerys() {
    let message = TaskMessage::new("demo.add", vec![json!(1), json!(2)], Map::new());
    let (_, properties) = message.encode(Utc::now()).unwrap();
    let ours = field_table_to_json(properties.headers().as_ref().unwrap());
    let celerys = object(fixture("apply_async_options")["headers"].take());
    let names = |map: &Map<String, Value>| map.keys().cloned().collect::<BTreeSet<_>>();
    assert_eq!(names(&ours), names(&celerys));
    assert_eq!(ours["timelimit"], json!([null, null]));
    assert_eq!(
        (&ours["retries"], &ours["ignore_result"]),
        (&json!(0), &json!(false))
    );
}

#[test]
fn the_encoded_body_is_args_kwargs_and_an_empty_embed() {
    let message = TaskMessage::new("demo.add", vec![json!(2)], object(json!({"y": 3})));
    let body: Value = serde_json::from_slice(&message.encode_body().unwrap()).unwrap();
    let embed: Value = serde_json::from_str(EMPTY_EMBED).unwrap();
    assert_eq!(body, json!([[2], {"y": 3}, embed]));
}

/// Decodes a message expected to fail and returns the error and its text.
fn decode_error(properties: &BasicProperties, body: &str, max_size: usize) -> (Error, String) {
    let err = TaskMessage::decode(properties, body.as_bytes(), max_size).unwrap_err();
    assert!(err.is_bad_message(), "{err}");
    let text = err.to_string();
    (err, text)
}

#[test]
fn a_body_that_is_not_json_is_refused_as_not_json() {
    let (err, text) = decode_error(&json_properties(minimal_headers()), "[[2, 2], {}", MAX_SIZE);
    assert!(matches!(err, Error::NotJson(_)), "{err:?}");
    assert!(text.contains("not JSON"), "{text}");
}

#[test]
fn a_body_that_is_not_args_kwargs_embed_has_the_wrong_shape() {
    let props = json_properties(minimal_headers());
    let cases = [
        (r#"{"a": 1}"#, "found an object"),
        ("[1, 2, 3]", "found a number"),
        ("[1, {}]", "args must be a list"),
        ("[[], []]", "kwargs must be an object"),
        ("[[], {}, 3]", "embed must be an object"),
        ("[[]]", "array of 1 elements"),
        ("[[], {}, null, null]", "array of 4 elements"),
    ];
    for (body, reason) in cases {
        let (err, text) = decode_error(&props, body, MAX_SIZE);
        assert!(matches!(err, Error::BodyShape(_)), "{body}: {err:?}");
        assert!(
            text.contains("wrong shape") && text.contains(reason),
            "{body}: {text}"
        );
    }
}

#[test]
fn a_message_without_a_task_header_is_missing_the_task_header() {
    let props = json_properties(json!({"id": "task-1", "lang": "py"}));
    let (err, text) = decode_error(&props, "[[], {}, null]", MAX_SIZE);
    assert!(matches!(err, Error::MissingHeader("task")), "{err:?}");
    assert!(text.contains("`task`"), "{text}");
    let null_task = json_properties(json!({"id": "task-1", "task": null}));
    let (err, _) = decode_error(&null_task, "[[], {}, null]", MAX_SIZE);
    assert!(matches!(err, Error::MissingHeader("task")), "{err:?}");
}

#[test]
fn pickle_and_yaml_are_refused_before_the_body_is_read() {
    for content_type in ["application/x-python-serialize", "application/x-yaml"] {
        let props = json_properties(minimal_headers()).with_content_type(content_type.into());
        let (err, text) = decode_error(&props, "\u{80}\u{4}\u{95} not json", MAX_SIZE);
        assert!(
            matches!(&err, Error::UnsupportedContentType(t) if t == content_type),
            "{err:?}"
        );
        assert!(
            text.contains(content_type) && text.contains("application/json"),
            "{text}"
        );
    }
}

#[test]
fn a_content_encoding_other_than_utf8_is_refused() {
    let props = json_properties(minimal_headers()).with_content_encoding("binary".into());
    let (err, text) = decode_error(&props, "[[], {}, null]", MAX_SIZE);
    assert!(
        matches!(err, Error::UnsupportedContentEncoding(_)),
        "{err:?}"
    );
    assert!(text.contains("binary"), "{text}");
}

#[test]
fn a_body_over_the_limit_is_oversize_and_one_at_the_limit_is_not() {
    let body = format!("[[2, 2], {{}}, {EMPTY_EMBED}]");
    let props = json_properties(minimal_headers());
    let (err, text) = decode_error(&props, &body, body.len() - 1);
    let (size, limit) = (body.len(), body.len() - 1);
    assert!(matches!(err, Error::Oversize { size: s, limit: l } if (s, l) == (size, limit)));
    assert!(text.contains(&format!("{size} bytes")) && text.contains(&format!("{limit} bytes")));
    TaskMessage::decode(&props, body.as_bytes(), body.len()).unwrap();
}

#[test]
fn a_header_of_the_wrong_type_is_an_invalid_header_naming_it() {
    let cases = [
        (json!({"retries": "three"}), "retries"),
        (json!({"eta": "not a date"}), "eta"),
        (json!({"expires": 17}), "expires"),
        (json!({"timelimit": [-1, null]}), "timelimit"),
        (json!({"ignore_result": "yes"}), "ignore_result"),
        (json!({"group_index": -1}), "group_index"),
    ];
    for (header, name) in cases {
        let mut headers = minimal_headers();
        headers.as_object_mut().unwrap().extend(object(header));
        let (err, text) = decode_error(&json_properties(headers), "[[], {}, null]", MAX_SIZE);
        assert!(
            matches!(&err, Error::InvalidHeader { name: n, .. } if n == name),
            "{err:?}"
        );
        assert!(
            text.contains(&format!("header `{name}` is invalid")),
            "{text}"
        );
    }
}

#[test]
fn an_eta_that_is_not_a_date_says_so() {
    let headers = json!({"task": "demo.add", "id": "task-1", "eta": "not a date"});
    let (_, text) = decode_error(&json_properties(headers), "[[], {}, null]", MAX_SIZE);
    assert!(
        text.contains("`not a date` is not an ISO-8601 timestamp"),
        "{text}"
    );
}

#[test]
fn a_null_or_missing_embed_decodes_as_an_empty_embed() {
    for body in ["[[1], {}, null]", "[[1], {}]", "[[1], {}, {}]"] {
        let message = decode(minimal_headers(), body).unwrap();
        assert_eq!(message.embed, Embed::default(), "{body}");
        assert_eq!(message.args, vec![json!(1)], "{body}");
    }
}

#[test]
fn unknown_headers_are_kept_in_extra() {
    let mut headers = minimal_headers();
    let custom = json!({"x-tenant": "acme", "tracestate": "k=v", "nested": {"a": [1, 2.5]}});
    headers
        .as_object_mut()
        .unwrap()
        .extend(object(custom.clone()));
    let message = decode(headers, "[[], {}]").unwrap();
    assert_eq!(Value::Object(message.headers.extra), custom);
}

#[test]
fn null_for_every_optional_header_decodes_to_defaults() {
    let headers = json!({
        "task": "demo.add", "id": "task-1", "shadow": null, "eta": null,
        "expires": null, "group": null, "group_index": null, "retries": null,
        "timelimit": null, "root_id": null, "parent_id": null, "argsrepr": null,
        "kwargsrepr": null, "origin": null, "ignore_result": null,
        "replaced_task_nesting": null, "stamped_headers": null, "stamps": null,
    });
    let h = decode(headers, "[null, null, null]").unwrap().headers;
    assert_eq!(
        (h.retries, h.replaced_task_nesting, h.ignore_result),
        (0, 0, false)
    );
    assert_eq!(
        (h.eta, h.expires, h.timelimit),
        (None, None, TimeLimit::default())
    );
    assert_eq!((h.group, h.group_index, h.root_id), (None, None, None));
    assert!(h.stamps.is_empty() && h.extra.is_empty());
}

#[test]
fn a_timestamp_without_an_offset_is_taken_as_utc() {
    let mut headers = minimal_headers();
    headers["eta"] = json!("2026-11-23T06:01:34.617982");
    headers["expires"] = json!("2026-11-23T08:01:34+02:00");
    let h = decode(headers, "[[], {}]").unwrap().headers;
    assert_eq!(h.eta, Some(at("2026-11-23T06:01:34.617982+00:00")));
    assert_eq!(h.expires, Some(at("2026-11-23T06:01:34+00:00")));
}

#[test]
fn an_empty_reply_to_means_nobody_waits_for_the_result() {
    let props = json_properties(minimal_headers()).with_reply_to("".into());
    let message = TaskMessage::decode(&props, b"[[], {}]", MAX_SIZE).unwrap();
    assert_eq!(message.reply_to, None);
}

#[test]
fn only_task_and_id_are_required_and_id_falls_back_to_the_correlation_id() {
    let props = json_properties(json!({"task": "demo.add"})).with_correlation_id("corr-1".into());
    let message = TaskMessage::decode(&props, b"[[], {}]", MAX_SIZE).unwrap();
    assert_eq!((message.task(), message.id()), ("demo.add", "corr-1"));
    assert_eq!(message.headers.lang, "py");
    let (err, _) = decode_error(
        &json_properties(json!({"task": "demo.add"})),
        "[[], {}]",
        64,
    );
    assert!(matches!(err, Error::MissingHeader("id")), "{err:?}");
}

#[test]
fn json_with_a_charset_or_no_content_type_at_all_is_accepted() {
    let with_charset = json_properties(minimal_headers())
        .with_content_type("application/json; charset=utf-8".into());
    let bare =
        BasicProperties::default().with_headers(json_to_field_table(&object(minimal_headers())));
    for props in [with_charset, bare] {
        TaskMessage::decode(&props, b"[[], {}]", MAX_SIZE).unwrap();
    }
}

#[test]
fn a_celery_success_result_decodes_to_its_value() {
    let fixture = &fixtures(RESULT_FIXTURES, "rpc_results_from_celery_worker")[0];
    let result = ResultMessage::decode(fixture["body"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(result.task_id, fixture["properties"]["correlation_id"]);
    assert!(result.is_ready());
    let value: i64 = serde_json::from_str(result.outcome().unwrap().unwrap().get()).unwrap();
    assert_eq!(value, 5);
    assert_eq!(
        result.date_done.as_deref(),
        Some("2026-11-23T06:01:36.502143+00:00")
    );
}

#[test]
fn a_celery_failure_result_decodes_to_a_task_failure() {
    let fixture = &fixtures(RESULT_FIXTURES, "rpc_results_from_celery_worker")[1];
    let result = ResultMessage::decode(fixture["body"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(result.task_id, fixture["properties"]["correlation_id"]);
    let failure: TaskFailure = result.outcome().unwrap().unwrap_err();
    assert_eq!(failure.exc_type, "RuntimeError");
    assert_eq!(failure.message, "boom");
    assert_eq!(failure.exc_module.as_deref(), Some("builtins"));
    let traceback = failure.traceback.as_deref().unwrap();
    assert!(traceback.contains("RuntimeError: boom"), "{traceback}");
    assert_eq!(failure.to_string(), "RuntimeError: boom");
}

#[test]
fn a_result_that_is_not_in_celerys_format_is_an_invalid_result() {
    let err = ResultMessage::decode(br#"{"status": "SUCCESS"}"#).unwrap_err();
    assert!(matches!(err, Error::InvalidResult(_)), "{err:?}");
    assert!(err.to_string().contains("task_id"), "{err}");
}

/// The keyword arguments of `demo.add`, as the fixtures send them.
#[derive(Debug, PartialEq, serde::Deserialize)]
struct AddArgs {
    x: i64,
    y: i64,
}
