//! `/healthz`, `/readyz` and `/metrics` for any composition of services.
//!
//! Each service registers its Prometheus metrics in the shared [`Registry`]
//! and adds its readiness checks; the binary mounts [`Observability`] once,
//! so `chatd` answers for all its services on one port.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::{HttpResponse, web};
use futures_util::future::{BoxFuture, join_all};
use prometheus::{Encoder, Registry, TextEncoder};
use serde_json::json;

/// A readiness check: `Ok` when the dependency it names works.
pub type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// The metrics registry and readiness checks of one process.
#[derive(Clone, Default)]
pub struct Observability {
    /// Every service's metrics.
    pub registry: Registry,
    checks: Vec<(&'static str, Check)>,
}

impl Observability {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a named readiness check (e.g. `"broker"`): `check` answers
    /// `Ok` when that dependency works, or why not.
    pub fn check<F, Fut, E>(&mut self, name: &'static str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let check: Check = Arc::new(move || {
            let pending = check();
            Box::pin(async move { pending.await.map_err(|e| e.to_string()) })
        });
        self.checks.push((name, check));
    }

    /// Mounts `/healthz`, `/readyz` and `/metrics`.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::new(self.clone()))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics));
    }

    /// Runs every check; `Err` carries the per-check results when any failed.
    pub async fn readiness(
        &self,
    ) -> Result<BTreeMap<&'static str, String>, BTreeMap<&'static str, String>> {
        let results = join_all(self.checks.iter().map(|(_, check)| check())).await;
        let mut report = BTreeMap::new();
        let mut ready = true;
        for ((name, _), result) in self.checks.iter().zip(results) {
            let line = match result {
                Ok(()) => "ok".to_owned(),
                Err(e) => {
                    ready = false;
                    e
                }
            };
            report.insert(*name, line);
        }
        if ready { Ok(report) } else { Err(report) }
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(obs: web::Data<Observability>) -> HttpResponse {
    match obs.readiness().await {
        Ok(checks) => HttpResponse::Ok().json(json!({"status": "ready", "checks": checks})),
        Err(checks) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "not_ready", "checks": checks})),
    }
}

async fn metrics(obs: web::Data<Observability>) -> HttpResponse {
    let mut body = Vec::new();
    let encoder = TextEncoder::new();
    match encoder.encode(&obs.registry.gather(), &mut body) {
        Ok(()) => HttpResponse::Ok()
            .content_type(encoder.format_type())
            .body(body),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}
