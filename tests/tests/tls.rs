//! `amqps://` URLs work against a broker with a TLS listener whose
//! certificate the test made; a client that does not trust its CA fails
//! with a clear error, and never prints the password.
//!
//! The clients trust the CA named by `SSL_CERT_FILE` (rustls loads the
//! trust store from it instead of the system's), so each runs as a child
//! process with its own environment.
#![allow(clippy::unwrap_used)]

use std::process::Output;

use celeriac_tests::certificates::{TestCertificates, generate};
use celeriac_tests::{DemoWorker, GUARD, ScratchBroker, unique, workspace_binary};

/// Runs `celeriac` with `args`, trusting `ca`.
async fn celeriac(args: &[&str], ca: &std::path::Path) -> Output {
    tokio::process::Command::new(workspace_binary("celeriac").unwrap())
        .args(args)
        .env("SSL_CERT_FILE", ca)
        .output()
        .await
        .unwrap()
}

async fn tls_broker() -> (ScratchBroker, TestCertificates) {
    let dir = std::env::temp_dir().join(unique("celeriac-certs"));
    let certificates = generate(&dir).unwrap();
    let broker = ScratchBroker::start_with(Some(&certificates.tls))
        .await
        .unwrap();
    (broker, certificates)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_and_a_worker_talk_over_tls_when_they_trust_its_ca() {
    let (broker, certificates) = tls_broker().await;
    let url = broker.tls_url().unwrap();
    let ca = certificates.tls.ca_cert.to_str().unwrap();
    let queue = unique("tls");
    let mut worker = DemoWorker::spawn(
        &["--queues", &queue, "--broker", url.expose()],
        &[("SSL_CERT_FILE", ca)],
    )
    .unwrap();
    worker.wait_for_line("worker ready").await.unwrap();

    let output = celeriac(
        &[
            "call",
            "demo.add",
            "--args",
            "[2, 3]",
            "--queue",
            &queue,
            "--broker",
            url.expose(),
            "--timeout",
            "20s",
        ],
        &certificates.tls.ca_cert,
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "5");
    worker.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_does_not_trust_the_ca_fails_clearly() {
    let (broker, certificates) = tls_broker().await;
    let url = broker.tls_url().unwrap();
    let output = celeriac(
        &[
            "send",
            "demo.add",
            "--args",
            "[1, 1]",
            "--broker",
            url.expose(),
        ],
        &certificates.other_ca,
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(stderr.contains("amqps://guest:***@"), "{stderr}");
    assert!(!stderr.contains("guest:guest"), "{stderr}");

    // A worker gives up at once too: no reconnecting forever to a broker
    // it will never trust.
    let worker = tokio::process::Command::new(workspace_binary("celeriac-demo-worker").unwrap())
        .args([
            "--queues",
            &unique("tls-untrusted"),
            "--broker",
            url.expose(),
        ])
        .env("SSL_CERT_FILE", &certificates.other_ca)
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(GUARD, worker).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(!stderr.contains("guest:guest"), "{stderr}");
}
