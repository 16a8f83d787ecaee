//! Running a server until it is told to stop.

use std::future::Future;
use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::dev::Service;
use actix_web::{App, HttpServer, web};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};

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

/// Counts every HTTP request a server answers, for `/metrics`.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: Histogram,
}

impl HttpMetrics {
    /// Creates the series in `registry` (once per registry).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "chat_http_requests_total",
                "HTTP requests answered, by status class",
            ),
            &["status"],
        )?;
        let duration = Histogram::with_opts(HistogramOpts::new(
            "chat_http_request_duration_seconds",
            "Time to answer an HTTP request (a WebSocket upgrade counts until its 101)",
        ))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }
}

/// Builds an actix-web server from a route configuration, with the worker
/// count and stop timeout of `server`, counting requests in `metrics`.
pub fn http_server<F>(
    listener: TcpListener,
    server: &ServerSettings,
    metrics: HttpMetrics,
    configure: F,
) -> std::io::Result<actix_web::dev::Server>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let mut http = HttpServer::new(move || {
        let metrics = metrics.clone();
        App::new()
            .configure(crate::api::configure)
            .configure(configure.clone())
            .wrap_fn(move |req, srv| {
                let started = std::time::Instant::now();
                let metrics = metrics.clone();
                let response = srv.call(req);
                async move {
                    let response = response.await?;
                    let class = match response.status().as_u16() {
                        100..=199 => "1xx",
                        200..=299 => "2xx",
                        300..=399 => "3xx",
                        400..=499 => "4xx",
                        _ => "5xx",
                    };
                    metrics.requests.with_label_values(&[class]).inc();
                    metrics.duration.observe(started.elapsed().as_secs_f64());
                    Ok(response)
                }
            })
    })
    .disable_signals()
    // Chat frames are small and latency matters: no Nagle delay on top of
    // the peer's delayed ACK (20–60 ms per frame when both apply).
    .tcp_nodelay(true)
    .shutdown_timeout(server.shutdown_grace.as_secs().max(1));
    if server.workers > 0 {
        http = http.workers(server.workers);
    }
    Ok(http.listen(listener)?.run())
}
