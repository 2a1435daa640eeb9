//! Who may use the dashboard: the token on every page, the refusal of a
//! public address without one, and the CLI serving on the address it
//! prints.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use celeriac_admin::{Dashboard, DashboardConfig, Error};
use celeriac_tests::dashboard::{fast_config, get, producer_on, send};
use celeriac_tests::{DemoWorker, Vhost, celeriac, http_get, init_logging};

#[tokio::test(flavor = "multi_thread")]
async fn a_token_guards_every_page_and_a_public_address_needs_one() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let producer = producer_on(vhost.url()).await.unwrap();
    let config = DashboardConfig {
        token: Some("s3cret".into()),
        ..fast_config(&["celery"])
    };
    let guarded = Dashboard::new(&producer, config);
    let app = guarded.router();
    let denied = get(&app, "/").await.unwrap();
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert!(
        denied.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(
        get(&app, "/api/overview").await.unwrap().status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get(&app, "/healthz").await.unwrap().status, StatusCode::OK);
    let with = |value: &str| {
        Request::get("/")
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        send(&app, with("Bearer s3cret")).await.unwrap().status,
        StatusCode::OK
    );
    // `any:s3cret`, as a browser sends it after the basic-auth prompt.
    let basic = with("Basic YW55OnMzY3JldA==");
    assert_eq!(send(&app, basic).await.unwrap().status, StatusCode::OK);
    let wrong = send(&app, with("Bearer guess")).await.unwrap();
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    let public = "0.0.0.0:0".parse().unwrap();
    let open = Dashboard::new(&producer, fast_config(&["celery"]));
    assert!(matches!(
        open.bind(public).await,
        Err(Error::Unprotected { .. })
    ));
    assert!(open.bind("127.0.0.1:0".parse().unwrap()).await.is_ok());
    assert!(guarded.bind(public).await.is_ok());

    let cli = celeriac(&["dashboard", "--listen", "0.0.0.0:0"])
        .await
        .unwrap();
    assert!(!cli.status.success());
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(stderr.contains("without a token"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_serves_the_dashboard_on_the_address_it_prints() {
    init_logging();
    let mut cli = DemoWorker::spawn_program(
        "celeriac",
        &[
            "dashboard",
            "--listen",
            "127.0.0.1:0",
            "--management-url",
            "off",
        ],
        &[],
    )
    .unwrap();
    let line = cli.wait_for_line("listening on http://").await.unwrap();
    let base = line.rsplit(' ').next().unwrap().trim().to_owned();
    let (status, body) = http_get(&format!("{base}/healthz")).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = http_get(&format!("{base}/")).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("data-queue=\"celery\""),
        "the default queue is shown"
    );
    cli.kill().await.unwrap();
}
