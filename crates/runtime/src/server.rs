//! Running a server until it is told to stop.

use std::future::Future;
use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use crate::settings::ServerSettings;
use tracing::info;

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => info!("SIGINT received"),
            _ = term.recv() => info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs `server` until `shutdown` resolves, then runs `drain` (e.g. closing
/// WebSockets with 1001 so clients reconnect elsewhere) while the listener
/// still exists, then stops the server gracefully.
pub async fn run_until_stopped<D>(
    server: Server,
    shutdown: impl Future<Output = ()>,
    drain: impl FnOnce() -> D,
) -> std::io::Result<()>
where
    D: Future<Output = ()>,
{
    let handle = server.handle();
    let mut server = std::pin::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        () = shutdown => {}
    }
    info!("shutting down: draining connections");
    drain().await;
    // The server future processes the stop command, so poll both together.
    let ((), result) = tokio::join!(handle.stop(true), server);
    info!("stopped");
    result
}

/// Builds an actix-web server from a route configuration, with the worker
/// count and stop timeout of `server`.
pub fn http_server<F>(
    listener: TcpListener,
    server: &ServerSettings,
    configure: F,
) -> std::io::Result<actix_web::dev::Server>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let mut http = HttpServer::new(move || App::new().configure(configure.clone()))
        .disable_signals()
        .shutdown_timeout(server.shutdown_grace.as_secs().max(1));
    if server.workers > 0 {
        http = http.workers(server.workers);
    }
    Ok(http.listen(listener)?.run())
}
