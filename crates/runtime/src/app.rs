//! One start-up for every binary: the [`Application`] each service builds,
//! and the [`main`] each `main.rs` calls.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::ExitCode;

use actix_web::web;
use figment::Figment;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tracing::info;

use crate::observe::Observability;
use crate::server::{HttpMetrics, http_server, run_until_stopped, shutdown_signal};
use crate::settings::{self, ServerSettings, SettingsError};

type Drain = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A bound HTTP server with its routes, observability and request metrics,
/// ready to serve until told to stop.
pub struct Application {
    server: actix_web::dev::Server,
    addr: SocketAddr,
    drain: Option<Drain>,
}

impl Application {
    /// Binds `settings.listen` (port 0 picks a free port) and mounts
    /// `routes`, the JSON answers for malformed requests, and `obs`'s
    /// `/healthz`, `/readyz` and `/metrics`; every request is counted.
    ///
    /// Errors: the address cannot be bound, or the metrics cannot be
    /// registered (twice in one registry).
    pub fn build<F>(
        settings: &ServerSettings,
        obs: Observability,
        routes: F,
    ) -> anyhow::Result<Self>
    where
        F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
    {
        let listener = TcpListener::bind(settings.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        let addr = listener.local_addr()?;
        let metrics = HttpMetrics::register(&obs.registry)?;
        let server = http_server(listener, settings, metrics, move |cfg| {
            routes(cfg);
            obs.configure(cfg);
        })?;
        Ok(Self {
            server,
            addr,
            drain: None,
        })
    }

    /// What to do when a stop is asked, while the listener still exists
    /// (close WebSockets with 1001 so clients reconnect elsewhere).
    pub fn on_stop<F, Fut>(mut self, drain: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.drain = Some(Box::new(move || drain().boxed()));
        self
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves, then drains and stops.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        info!("listening on http://{}", self.addr);
        let drain = self.drain;
        run_until_stopped(self.server, shutdown, || async move {
            if let Some(drain) = drain {
                drain().await;
            }
        })
        .await
    }
}

/// The settings of one binary, read from the layers.
pub trait BinarySettings: Sized {
    /// Reads and checks every group the binary uses; the error names the
    /// setting in one line.
    fn load(layers: &Figment) -> Result<Self, SettingsError>;

    /// How the binary serves.
    fn server(&self) -> &ServerSettings;
}

/// The `main` of every binary: loads the settings (`--config` file, then
/// the environment) and exits with 2 and one line naming a bad one; sets
/// up the logs; builds the application with `serve` and runs it until
/// SIGTERM or SIGINT. A settings error found while building (an identity
/// mode without its secret, say) also exits with 2; any other failure with
/// 1.
pub fn main<S, F, Fut>(binary: &str, config: Option<&Path>, serve: F) -> ExitCode
where
    S: BinarySettings,
    F: FnOnce(S) -> Fut,
    Fut: Future<Output = anyhow::Result<Application>>,
{
    let settings = match settings::layers(config).and_then(|layers| S::load(&layers)) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{binary}: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(settings.server().log_format);
    let result = actix_web::rt::System::new().block_on(async move {
        let app = serve(settings).await?;
        app.run_until_stopped(shutdown_signal()).await?;
        anyhow::Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<SettingsError>().is_some() => {
            eprintln!("{binary}: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!("{binary} failed: {e:#}");
            eprintln!("{binary}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
