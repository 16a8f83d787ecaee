//! `chatd`: the whole chat backend in one process on one port — the gateway
//! with the in-process broker (or Redis when `REDIS_URL` is set), the
//! presence API, local storage under `CHAT_DATA_DIR`, and the health and
//! metrics endpoints of every service. The same service libraries, given
//! `REDIS_URL`, are the distributed deployment.

mod api_keys;
pub mod cli;

use std::sync::Arc;
use std::time::Duration;

use chat_auth::settings::{AuthMode, AuthSettings};
use chat_gateway::media::{MediaDirectory, MediaLookupError};
use chat_gateway::{Access, Engine, Gateway, GatewaySettings};
use chat_media::{MediaService, MediaSettings};
use chat_presence::PresenceService;
use chat_protocol::MediaInfo;
use chat_push::{PushApi, PushSettings};
use chat_runtime::app::{Application, BinarySettings};
use chat_runtime::observe::Observability;
use chat_runtime::settings::{
    self as layered, Described, Figment, RoomSettings, ServerSettings, SettingsError,
    SharedSettings,
};
use chat_server_api::{ServerApi, ServerApiSettings};
use chat_webhooks::WebhookSettings;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tracing::info;

/// Every setting `chatd` reads.
pub struct Settings {
    /// The HTTP server.
    pub server: ServerSettings,
    /// Redis (optional here), the data folder, the trusted proxies.
    pub shared: SharedSettings,
    /// Identity (open unless `CHAT_AUTH` says otherwise).
    pub auth: AuthSettings,
    /// The gateway.
    pub gateway: GatewaySettings,
    /// Limits of rooms.
    pub rooms: RoomSettings,
    /// The media service.
    pub media: MediaSettings,
    /// The server API (its bootstrap key).
    pub server_api: ServerApiSettings,
    /// Webhooks.
    pub webhooks: WebhookSettings,
    /// Web Push.
    pub push: PushSettings,
}

impl Settings {
    /// Every group, for `--help` and the README's settings table.
    pub fn groups() -> Vec<(&'static str, Vec<layered::Setting>)> {
        vec![
            (ServerSettings::TITLE, ServerSettings::describe()),
            (SharedSettings::TITLE, SharedSettings::describe()),
            (AuthSettings::TITLE, AuthSettings::describe()),
            (GatewaySettings::TITLE, GatewaySettings::describe()),
            (RoomSettings::TITLE, RoomSettings::describe()),
            (MediaSettings::TITLE, MediaSettings::describe()),
            (ServerApiSettings::TITLE, ServerApiSettings::describe()),
            (WebhookSettings::TITLE, WebhookSettings::describe()),
            (PushSettings::TITLE, PushSettings::describe()),
        ]
    }

    /// The settings table of `chatd --help`.
    pub fn help() -> String {
        layered::help(&Self::groups())
    }

    /// Loads defaults → `config_file` → environment.
    pub fn load_from(config_file: Option<&std::path::Path>) -> Result<Self, SettingsError> {
        Self::load(&layered::layers(config_file)?)
    }
}

impl BinarySettings for Settings {
    fn load(layers: &Figment) -> Result<Self, SettingsError> {
        let this = Self {
            server: layered::extract(layers)?,
            shared: layered::extract(layers)?,
            auth: layered::extract(layers)?,
            gateway: layered::extract(layers)?,
            rooms: layered::extract(layers)?,
            media: layered::extract(layers)?,
            server_api: layered::extract(layers)?,
            webhooks: layered::extract(layers)?,
            push: layered::extract(layers)?,
        };
        this.shared.validate()?;
        this.gateway.validate()?;
        this.rooms.validate()?;
        this.media.validate()?;
        this.server_api.validate()?;
        this.webhooks.validate()?;
        this.push.validate()?;
        Ok(this)
    }

    fn server(&self) -> &ServerSettings {
        &self.server
    }
}

/// Every service composed on one listener: what `chatd` runs.
pub async fn serve(settings: Settings) -> anyhow::Result<Application> {
    let data_dir = &settings.shared.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|e| {
        SettingsError::new(format!(
            "invalid setting CHAT_DATA_DIR: cannot create {}: {e}",
            data_dir.display()
        ))
    })?;
    // chatd keeps the seed's behaviour: open mode unless told otherwise.
    let access = Access::from_settings(
        &settings.auth,
        AuthMode::Open,
        &settings.server,
        &settings.shared,
    )?;
    let mut obs = Observability::new();
    let engine = Engine::from_settings(&settings.shared);
    let auth = Arc::clone(&access.auth);
    let proxies = access.proxies.clone();
    let receipts_max = settings.rooms.room_receipts_max;
    let gateway =
        Gateway::build(settings.gateway, settings.rooms, engine, access, &mut obs).await?;
    let pusher = settings.push.pusher(Some(data_dir))?;
    let push_api = PushApi::new(
        Arc::clone(gateway.engine()) as _,
        Arc::clone(&auth),
        pusher.as_ref().map(|p| p.public_key().to_owned()),
        settings.push.services(),
    );
    gateway.start_webhooks(&settings.webhooks, pusher, &obs)?;
    let presence = PresenceService::new(
        Arc::clone(gateway.store()),
        Arc::clone(gateway.rooms()),
        gateway.presence(),
        gateway.broker(),
        Arc::clone(&auth),
        receipts_max,
    );
    let media = MediaService::build(
        &settings.media,
        data_dir,
        Arc::clone(&auth),
        proxies,
        &mut obs,
    )
    .await?;
    let directory = Arc::new(InProcessMedia(media.clone()));
    let server_api = ServerApi::new(
        Arc::clone(gateway.engine()),
        gateway.presence(),
        gateway.broker(),
        auth.user_names(),
        &settings.server_api,
    )
    .with_media(Arc::clone(&directory) as _);
    gateway.set_media(directory);
    let routes = gateway.clone();
    let app = Application::build(&settings.server, obs, move |cfg| {
        routes.configure(cfg);
        presence.configure(cfg);
        server_api.configure(cfg);
        push_api.configure(cfg);
        media.configure(cfg);
        chat_web::configure(cfg);
    })?;
    let addr = app.addr();
    info!("open http://{addr}/ in a browser; WebSocket lobby at ws://{addr}/ws/");
    let grace = settings.server.shutdown_grace;
    Ok(app.on_stop(move || async move { gateway.drain(grace).await }))
}

/// `chatd token USER`: prints a token for `user`, valid for `ttl`; a
/// settings error exits with 2 and one line.
pub fn token_command(
    config: Option<&std::path::Path>,
    user: &str,
    ttl: Duration,
) -> std::process::ExitCode {
    let token = Settings::load_from(config)
        .map_err(anyhow::Error::from)
        .and_then(|settings| mint_token(&settings, user, ttl));
    match token {
        Ok(token) => {
            // The one thing this command prints.
            #[allow(clippy::print_stdout)]
            {
                println!("{token}");
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chatd token: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// A token for `user`, valid for `ttl`, signed with `CHAT_JWT_SECRET`.
pub fn mint_token(settings: &Settings, user: &str, ttl: Duration) -> anyhow::Result<String> {
    let mut auth = settings.auth.clone();
    auth.auth = Some(AuthMode::Jwt);
    let (authenticator, _) = auth.build(AuthMode::Jwt, settings.server.listen)?;
    Ok(authenticator.mint(user, None, ttl)?)
}

/// The gateway's view of the in-process media service.
struct InProcessMedia(MediaService);

impl MediaDirectory for InProcessMedia {
    fn lookup(
        &self,
        owner: Option<&str>,
        id: &str,
    ) -> BoxFuture<'static, Result<MediaInfo, MediaLookupError>> {
        let (service, owner, id) = (self.0.clone(), owner.map(str::to_owned), id.to_owned());
        async move {
            match service.describe(&id).await {
                Ok(Some((uploader, info))) if owner.is_none_or(|owner| uploader == owner) => {
                    Ok(info)
                }
                Ok(Some(_)) => Err(MediaLookupError::NotOwner(id)),
                Ok(None) => Err(MediaLookupError::NotFound(id)),
                Err(e) => Err(MediaLookupError::Unavailable(e.to_string())),
            }
        }
        .boxed()
    }

    fn delete(&self, id: &str) -> BoxFuture<'static, Result<(), MediaLookupError>> {
        let (service, id) = (self.0.clone(), id.to_owned());
        async move {
            service
                .remove(&id)
                .await
                .map(drop)
                .map_err(|e| MediaLookupError::Unavailable(e.to_string()))
        }
        .boxed()
    }
}
