//! The dashboard's dead letters over HTTP, called on the app without a
//! server: the list with its filters and pages, a dead letter's page, the
//! confirmation step, replay and delete, the CSRF and origin checks, and
//! everything from a message escaped.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use celeriac_admin::{Dashboard, DashboardConfig};
use celeriac_tests::dashboard::{
    TRACE_ID, csrf_of, fast_config, get, markup_dead_letter, post_form, producer_on, send,
};
use celeriac_tests::{
    Vhost, channel_on, declare_with_dead_letters, drain_task_ids, init_logging,
    publish_dead_letters, unique,
};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_listed_escaped_replayed_and_deleted_after_confirmation() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let queue = unique("dash-dlq");
    let producer = producer_on(vhost.url()).await.unwrap();
    let (_connection, channel) = channel_on(&vhost.url()).await.unwrap();
    declare_with_dead_letters(&channel, &queue).await.unwrap();
    let letters: Vec<_> = (0..3).map(|_| markup_dead_letter(&queue)).collect();
    let ids = publish_dead_letters(&channel, &letters).await.unwrap();
    let dashboard = Dashboard::new(&producer, fast_config(&[&queue]));
    let app = dashboard.router();

    let list = get(&app, &format!("/dead-letters?queue={queue}"))
        .await
        .unwrap();
    assert_eq!(list.status, StatusCode::OK);
    assert!(ids.iter().all(|id| list.body.contains(id.as_str())));
    assert!(list.body.contains("3 dead letter(s) match"));
    assert_escaped(&list.body);
    assert!(
        list.body
            .contains("&lt;script&gt;alert(&#39;error&#39;)&lt;/script&gt;")
    );
    let none = get(&app, &format!("/dead-letters?queue={queue}&task=mail.*"))
        .await
        .unwrap();
    assert!(none.body.contains("0 dead letter(s) match"));
    let by_error = format!("/dead-letters?queue={queue}&error=ALERT%28%27ERROR");
    assert!(
        get(&app, &by_error)
            .await
            .unwrap()
            .body
            .contains("3 dead letter(s) match")
    );
    let json = get(&app, &format!("/api/dead-letters?queue={queue}"))
        .await
        .unwrap();
    let json: Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(json["count"], 3);

    let detail = get(&app, &format!("/dead-letters/{queue}/{}", ids[0]))
        .await
        .unwrap();
    assert_eq!(detail.status, StatusCode::OK);
    assert_escaped(&detail.body);
    assert!(
        detail.body.contains("&lt;b&gt;bold&lt;/b&gt; failure"),
        "error chain shown"
    );
    assert!(
        detail
            .body
            .contains(&format!("http://127.0.0.1:16686/trace/{TRACE_ID}"))
    );
    assert!(
        detail.body.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "kwargs shown"
    );
    let missing = get(&app, &format!("/dead-letters/{queue}/no-such-id"))
        .await
        .unwrap();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let unknown = get(&app, "/dead-letters?queue=no-such-queue")
        .await
        .unwrap();
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let paged = DashboardConfig {
        page_size: 2,
        ..fast_config(&[&queue])
    };
    let paged = Dashboard::new(&producer, paged).router();
    let first = get(&paged, &format!("/dead-letters?queue={queue}"))
        .await
        .unwrap();
    assert!(first.body.contains("1–2 of 3") && first.body.contains("rel=\"next\""));
    assert!(first.body.contains(ids[1].as_str()) && !first.body.contains(ids[2].as_str()));
    let second = format!("/dead-letters?queue={queue}&page=1");
    let second = get(&paged, &second).await.unwrap();
    assert!(second.body.contains("3–3 of 3") && second.body.contains("rel=\"prev\""));
    assert!(second.body.contains(ids[2].as_str()) && !second.body.contains(ids[0].as_str()));

    let csrf = csrf_of(&list.body).unwrap();
    let one = format!("queue={queue}&action=replay-selected&id={}", ids[0]);
    let forged = post_form(&app, "/dead-letters/confirm", &one)
        .await
        .unwrap();
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "no CSRF token");
    let nothing = format!("queue={queue}&action=delete-selected&csrf={csrf}");
    let nothing = post_form(&app, "/dead-letters/confirm", &nothing)
        .await
        .unwrap();
    assert_eq!(
        nothing.status,
        StatusCode::BAD_REQUEST,
        "nothing ticked is not all"
    );
    let confirm = post_form(&app, "/dead-letters/confirm", &format!("{one}&csrf={csrf}"))
        .await
        .unwrap();
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Replay 1 dead letter(s) selected?"));
    assert!(confirm.body.contains("action=\"/dead-letters/replay\""));
    let unconfirmed = format!("{one}&csrf={csrf}&limit=1");
    let unconfirmed = post_form(&app, "/dead-letters/replay", &unconfirmed)
        .await
        .unwrap();
    assert_eq!(
        unconfirmed.status,
        StatusCode::BAD_REQUEST,
        "needs the confirm button"
    );
    let replay = format!("{one}&csrf={csrf}&limit=1&confirm=yes");
    let cross_site = Request::post("/dead-letters/replay")
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(replay.clone()))
        .unwrap();
    let refused = send(&app, cross_site).await.unwrap();
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "another origin");
    assert!(drain_task_ids(&channel, &queue).await.unwrap().is_empty());

    let replayed = post_form(&app, "/dead-letters/replay", &replay)
        .await
        .unwrap();
    assert_eq!(replayed.status, StatusCode::OK, "{}", replayed.body);
    assert!(
        replayed.body.contains("Replayed 1, failed 0"),
        "{}",
        replayed.body
    );
    assert_eq!(
        drain_task_ids(&channel, &queue).await.unwrap(),
        vec![ids[0].clone()]
    );
    let left = get(&app, &format!("/dead-letters?queue={queue}"))
        .await
        .unwrap();
    assert!(left.body.contains("2 dead letter(s) match") && !left.body.contains(&ids[0]));

    let all = format!("queue={queue}&task=reports.*&action=delete-matching&csrf={csrf}");
    let confirm = post_form(&app, "/dead-letters/confirm", &all)
        .await
        .unwrap();
    assert!(
        confirm
            .body
            .contains("Delete 2 dead letter(s) matching the filter?")
    );
    let delete = format!("{all}&limit=2&confirm=yes");
    let deleted = post_form(&app, "/dead-letters/delete", &delete)
        .await
        .unwrap();
    assert!(
        deleted.body.contains("Deleted 2, kept 0"),
        "{}",
        deleted.body
    );
    let empty = get(&app, &format!("/api/dead-letters?queue={queue}"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&empty.body).unwrap()["count"],
        0
    );
}

/// No markup from a message made it into the page as markup.
fn assert_escaped(html: &str) {
    for raw in ["<script>alert", "<script>x", "<b>bold", "<img src=x"] {
        assert!(!html.contains(raw), "`{raw}` unescaped in the page");
    }
    assert!(
        html.contains("&lt;script&gt;alert(&#39;args&#39;)"),
        "args shown escaped"
    );
}
