//! The shutdown future a binary hands to `Worker::run` or a server.

/// Completes on SIGTERM (what `docker stop` and Kubernetes send) or
/// ctrl-c, and logs that shutdown was requested. On non-Unix systems only
/// ctrl-c.
///
/// ```no_run
/// # async fn run() {
/// celeriac_telemetry::shutdown_signal().await;
/// // ... stop taking work, finish what is in flight ...
/// # }
/// ```
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
