//! `chatd`: the whole chat backend in one process on one port — the gateway
//! with the in-process broker (or Redis when `REDIS_URL` is set), the
//! presence API, local storage under `CHAT_DATA_DIR`, and the health and
//! metrics endpoints of every service. The same service libraries, given `REDIS_URL`, are the
//! distributed deployment.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use chat_auth::settings::{AuthMode, AuthSettings};
use chat_gateway::media::{MediaDirectory, MediaLookupError};
use chat_gateway::{Access, Engine, Gateway, GatewaySettings};
use chat_media::{MediaService, MediaSettings};
use chat_presence::PresenceService;
use chat_protocol::MediaInfo;
use chat_runtime::observe::Observability;
use chat_runtime::settings::{self, ServerSettings, SettingsError};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use tracing::info;

/// Settings only `chatd` has.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ChatdSettings {
    /// `CHAT_DATA_DIR`: where the embedded services keep their files.
    pub data_dir: PathBuf,
}

impl Default for ChatdSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
        }
    }
}

/// The settings table for `--help`.
pub const HELP: &str = "\
chatd settings:
  CHAT_DATA_DIR           where embedded services keep their files  [default: ./data]";

/// Every setting `chatd` reads.
pub struct Settings {
    /// The HTTP server.
    pub server: ServerSettings,
    /// The gateway.
    pub gateway: GatewaySettings,
    /// chatd's own.
    pub chatd: ChatdSettings,
    /// Identity.
    pub auth: AuthSettings,
    /// The media service.
    pub media: MediaSettings,
}

impl Settings {
    /// Who may connect. chatd defaults to open mode (the seed's behaviour);
    /// call after telemetry is up, so open mode's warning is logged.
    pub fn access(&self) -> Result<Access, SettingsError> {
        let (auth, origins) = self.auth.build(AuthMode::Open, self.server.listen)?;
        Ok(Access {
            auth: Arc::new(auth),
            origins,
        })
    }

    /// Loads defaults → `config_file` → environment.
    pub fn load(config_file: Option<&std::path::Path>) -> Result<Self, SettingsError> {
        let layers = settings::layers(config_file)?;
        let this = Self {
            server: settings::extract(&layers)?,
            gateway: settings::extract(&layers)?,
            chatd: settings::extract(&layers)?,
            auth: settings::extract(&layers)?,
            media: settings::extract(&layers)?,
        };
        this.gateway.validate()?;
        this.media.validate()?;
        Ok(this)
    }
}

/// All services composed on one listener.
pub struct Application {
    server: actix_web::dev::Server,
    addr: SocketAddr,
    gateway: Gateway,
    grace: Duration,
}

impl Application {
    /// Prepares the data folder, builds every service and binds the listener.
    pub async fn build(settings: Settings, access: Access) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.chatd.data_dir).map_err(|e| {
            SettingsError::new(format!(
                "invalid setting CHAT_DATA_DIR: cannot create {}: {e}",
                settings.chatd.data_dir.display()
            ))
        })?;

        let mut obs = Observability::new();
        let engine = Engine::from_settings(&settings.gateway, &settings.chatd.data_dir);
        let auth = Arc::clone(&access.auth);
        let gateway = Gateway::build(settings.gateway, engine, access, &mut obs).await?;
        let presence = PresenceService::new(
            Arc::clone(gateway.store()),
            gateway.presence(),
            gateway.broker(),
            Arc::clone(&auth),
        );
        let media =
            MediaService::build(&settings.media, &settings.chatd.data_dir, auth, &mut obs).await?;
        gateway.set_media(Arc::new(InProcessMedia(media.clone())));
        let listener = TcpListener::bind(settings.server.listen)?;
        let addr = listener.local_addr()?;
        let routes = gateway.clone();
        let server = chat_runtime::server::http_server(
            listener,
            &settings.server,
            chat_runtime::server::HttpMetrics::register(&obs.registry)?,
            move |cfg| {
                routes.configure(cfg);
                presence.configure(cfg);
                media.configure(cfg);
                chat_web::configure(cfg);
                obs.configure(cfg);
            },
        )?;
        Ok(Self {
            server,
            addr,
            gateway,
            grace: settings.server.shutdown_grace,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` resolves, then closes every WebSocket with
    /// 1001 and stops.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        info!("listening on http://{}", self.addr);
        info!(
            "open http://{}/ in a browser; WebSocket lobby at ws://{}/ws/",
            self.addr, self.addr
        );
        let gateway = self.gateway;
        let grace = self.grace;
        chat_runtime::server::run_until_stopped(self.server, shutdown, || async move {
            gateway.drain(grace).await;
        })
        .await
    }
}

/// A token for `user`, valid for `ttl`, signed with `CHAT_JWT_SECRET`.
pub fn mint_token(settings: &Settings, user: &str, ttl: Duration) -> anyhow::Result<String> {
    let mut auth = settings.auth.clone();
    auth.auth = Some(AuthMode::Jwt);
    let (authenticator, _) = auth.build(AuthMode::Jwt, settings.server.listen)?;
    Ok(authenticator.mint(user, ttl)?)
}

/// The gateway's view of the in-process media service.
struct InProcessMedia(MediaService);

impl MediaDirectory for InProcessMedia {
    fn lookup(
        &self,
        owner: &str,
        id: &str,
    ) -> BoxFuture<'static, Result<MediaInfo, MediaLookupError>> {
        let (service, owner, id) = (self.0.clone(), owner.to_owned(), id.to_owned());
        async move {
            match service.describe(&id).await {
                Ok(Some((uploader, info))) if uploader == owner => Ok(info),
                Ok(Some(_)) => Err(MediaLookupError::NotOwner(id)),
                Ok(None) => Err(MediaLookupError::NotFound(id)),
                Err(e) => Err(MediaLookupError::Unavailable(e.to_string())),
            }
        }
        .boxed()
    }
}
