//! What every chat service binary shares, so each `main.rs` stays a few lines.
//!
//! - [`error`]: every service's errors as one JSON body, through one path.
//! - [`settings`]: layered settings — defaults, then an optional TOML file,
//!   then the environment — with one-line errors that name the setting.
//! - [`telemetry`]: `tracing` logs, pretty or JSON.
//! - [`observe`]: `/healthz`, `/readyz` and `/metrics`, assembled from the
//!   readiness checks and Prometheus registry the services contribute.
//! - [`server`]: running an actix-web server until a shutdown signal, with a
//!   drain step (closing WebSockets) before the listener stops.
//! - [`app`]: what every binary shares on top: the [`app::Application`]
//!   each service builds, and the [`app::main`] each `main.rs` calls.

pub mod api;
pub mod app;
pub mod error;
pub mod observe;
pub mod per_ip;
pub mod server;
pub mod settings;
pub mod telemetry;
