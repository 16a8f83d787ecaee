//! The WebSocket gateway: terminates client connections and fans messages
//! out through the broker, so any number of replicas serve one chat.
//!
//! - [`settings`]: limits and intervals ([`GatewaySettings`]).
//! - `ws/`: the endpoints — `upgrade.rs` (handshake, checks), `session.rs`
//!   (one task per connection), `frames.rs` (the typed and seed protocol).
//! - [`hub`]: which local connections want which channel; delivery.
//! - [`metrics`]: Prometheus series.
//! - [`media`]: checking the files messages refer to.
//!
//! [`Gateway`] is the composable piece (`configure` mounts its routes);
//! [`Gateway::alone`] runs it on its own listener, as the `gateway` binary
//! ([`serve`]) and tests do.

pub mod hub;
pub use chat_media_client as media;

pub mod metrics;
pub mod settings;
mod ws;

#[cfg(feature = "embedded")]
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use actix_web::web;
use chat_auth::settings::{AuthMode, AuthSettings};
use chat_auth::{Authenticator, OriginPolicy};
use chat_broker::Broker;
#[cfg(feature = "embedded")]
use chat_broker::memory::MemoryBus;
use chat_broker::redis::{RedisBroker, RedisOptions};
use chat_runtime::app::{Application, BinarySettings};
use chat_runtime::observe::Observability;
use chat_runtime::per_ip::{PerIpLimit, TrustedProxies};
use chat_runtime::settings::{
    self as layered, Described, RoomSettings, ServerSettings, SettingsError, SharedSettings,
};
#[cfg(feature = "embedded")]
use chat_store::memory::MemoryPresence;
use chat_store::redis::messages::{RedisStore, RedisStoreOptions};
use chat_store::redis::presence::RedisNode;
#[cfg(feature = "embedded")]
use chat_store::sqlite::SqliteStore;
use chat_store::{
    Lifecycle, Limits, MediaRefs, MessageStore, Presence, PresenceNode, RoomLimits, RoomStore,
    StoreEngine,
};
use chat_webhooks::WebhookSettings;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

pub use hub::Hub;
pub use metrics::GatewayMetrics;
pub use settings::GatewaySettings;

/// Which engines (broker and message store) the gateway uses.
#[derive(Clone)]
pub enum Engine {
    /// Embedded (feature `embedded`): the in-process broker (nodes on this
    /// bus reach each other, nothing else) and a SQLite message store in
    /// `data_dir`.
    #[cfg(feature = "embedded")]
    Embedded {
        /// The in-process bus.
        bus: Arc<MemoryBus>,
        /// Where `messages.db` lives.
        data_dir: PathBuf,
    },
    /// Redis pub/sub and the Redis message store: every replica on the same
    /// Redis and prefix.
    Redis(RedisOptions),
}

#[cfg(feature = "embedded")]
impl Engine {
    /// The engines the settings ask for: Redis when `REDIS_URL` is set,
    /// otherwise a fresh in-process bus and a store under `CHAT_DATA_DIR`.
    pub fn from_settings(shared: &SharedSettings) -> Self {
        match &shared.redis_url {
            Some(url) => Engine::Redis(RedisOptions {
                url: url.clone(),
                prefix: shared.redis_prefix.clone(),
                errors: None,
            }),
            None => Engine::Embedded {
                bus: MemoryBus::new(),
                data_dir: shared.data_dir.clone(),
            },
        }
    }

    /// This engine's store, opened without a gateway, for the command
    /// line (`chatd api-key`): on Redis it does not convert older data (a
    /// gateway's start does). Must be called inside a tokio runtime.
    ///
    /// Errors: the store cannot be opened (the SQLite file, Redis's URL).
    pub async fn open_store(&self) -> anyhow::Result<Arc<dyn StoreEngine>> {
        match self {
            Engine::Embedded { data_dir, .. } => {
                let path = data_dir.join("messages.db");
                Ok(Arc::new(
                    SqliteStore::open_alone(&path, Limits::default()).await?,
                ))
            }
            Engine::Redis(options) => {
                let redis = chat_broker::redis::command_connection(&options.url)
                    .map_err(anyhow::Error::msg)?;
                Ok(Arc::new(RedisStore::on(
                    redis,
                    &options.prefix,
                    Limits::default(),
                )))
            }
        }
    }
}

/// State shared by every connection of one gateway.
pub(crate) struct Inner {
    pub(crate) settings: GatewaySettings,
    pub(crate) hub: Arc<Hub>,
    pub(crate) metrics: GatewayMetrics,
    /// Cancelled when the process stops: sessions close with 1001.
    pub(crate) shutdown: CancellationToken,
    /// Every session task, to wait for them while draining.
    pub(crate) sessions: TaskTracker,
    /// Connections currently admitted, against `max_connections`.
    pub(crate) open: AtomicUsize,
    /// Who may open which connection.
    pub(crate) auth: Arc<Authenticator>,
    /// Which browser pages may open connections.
    pub(crate) origins: OriginPolicy,
    /// Direct messages, unread counters, offline delivery.
    pub(crate) store: Arc<dyn MessageStore>,
    /// Durable rooms: membership, history, read markers.
    pub(crate) rooms: Arc<dyn RoomStore>,
    /// Edits, deletes, reactions and reply quotes.
    pub(crate) lifecycle: Arc<dyn Lifecycle>,
    /// Which messages carry which file (a delete of the last one deletes it).
    pub(crate) media_refs: Arc<dyn MediaRefs>,
    /// The store engine itself, for services composed in one process
    /// (the server API's keys and revocations).
    pub(crate) engine: Arc<dyn StoreEngine>,
    /// Limits of rooms (receipts in small rooms).
    pub(crate) room_settings: RoomSettings,
    /// Who is online: this node's connections are counted here.
    pub(crate) presence: Arc<dyn PresenceNode>,
    /// Counts connections out in the background (refused, abandoned).
    pub(crate) leaver: ws::Leaver,
    /// Resolves media references; unset means messages cannot carry files.
    pub(crate) media: OnceLock<Arc<dyn media::MediaDirectory>>,
    /// Upgrades each client address may start per minute.
    pub(crate) connect_limit: PerIpLimit,
    /// Whose `X-Forwarded-For` names the client.
    pub(crate) proxies: TrustedProxies,
}

/// Who may connect, and from where: the identity mode, the allowed browser
/// origins, the proxies whose `X-Forwarded-For` names the client.
#[derive(Clone)]
pub struct Access {
    /// Checks tokens or names.
    pub auth: Arc<Authenticator>,
    /// Checks the `Origin` of WebSocket handshakes.
    pub origins: OriginPolicy,
    /// Whose `X-Forwarded-For` names the client.
    pub proxies: TrustedProxies,
}

impl Access {
    /// Open mode, same-origin pages only, no proxies: the seed's behaviour,
    /// for tests and demos.
    pub fn open() -> Self {
        Self {
            auth: Arc::new(Authenticator::open()),
            origins: OriginPolicy::default(),
            proxies: TrustedProxies::default(),
        }
    }

    /// What the settings say, with `default` as the identity mode when
    /// `CHAT_AUTH` is unset. Call after telemetry is up, so open mode's
    /// warning is logged. Errors name the setting.
    pub fn from_settings(
        auth: &AuthSettings,
        default: AuthMode,
        server: &ServerSettings,
        shared: &SharedSettings,
    ) -> Result<Self, SettingsError> {
        let (authenticator, origins) = auth.build(default, server.listen)?;
        let proxies = TrustedProxies::parse(&shared.trusted_proxies).map_err(|e| {
            SettingsError::new(format!("invalid setting CHAT_TRUSTED_PROXIES: {e}"))
        })?;
        Ok(Self {
            auth: Arc::new(authenticator),
            origins,
            proxies,
        })
    }
}

/// The gateway service, ready to be mounted in an actix-web app.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    /// Builds the gateway and its broker, registering its metrics and its
    /// readiness check in `obs`. Must be called inside a tokio runtime.
    pub async fn build(
        settings: GatewaySettings,
        room_settings: RoomSettings,
        engine: Engine,
        access: Access,
        obs: &mut Observability,
    ) -> anyhow::Result<Self> {
        settings.validate()?;
        room_settings.validate()?;
        let metrics = GatewayMetrics::register(&obs.registry)?;
        let hub = Hub::new(metrics.clone());
        let limits = Limits {
            history_max: settings.history_max,
            offline_max: settings.offline_max,
            rooms: RoomLimits {
                max_members: room_settings.room_max_members,
                rooms_per_user: room_settings.rooms_per_user,
            },
        };
        type Engines = (Arc<dyn Broker>, Arc<dyn StoreEngine>, Arc<dyn PresenceNode>);
        let (broker, engine, presence): Engines = match engine {
            #[cfg(feature = "embedded")]
            Engine::Embedded { bus, data_dir } => {
                let broker: Arc<dyn Broker> = Arc::new(bus.node(hub.handler()));
                let presence = MemoryPresence::new(Arc::clone(&broker));
                let path = data_dir.join("messages.db");
                let store =
                    SqliteStore::open(&path, Arc::clone(&broker), presence.clone(), limits).await?;
                (broker, Arc::new(store), Arc::new(presence))
            }
            Engine::Redis(mut options) => {
                let store = RedisStore::start(RedisStoreOptions {
                    url: options.url.clone(),
                    prefix: options.prefix.clone(),
                    limits,
                })?;
                // One multiplexed command connection for messages and presence.
                let presence = RedisNode::on(
                    store.connection().clone(),
                    &options.prefix,
                    settings.presence_lease,
                );
                options.errors = Some(metrics.redis_errors.clone());
                (
                    Arc::new(RedisBroker::start(options, hub.handler())?),
                    Arc::new(store),
                    Arc::new(presence),
                )
            }
        };
        // Tokens revoked through the server API are refused from now on.
        access
            .auth
            .set_revocations(Arc::clone(&engine) as Arc<dyn chat_auth::Revocations>);
        let store: Arc<dyn MessageStore> = Arc::clone(&engine) as _;
        hub.attach(broker);
        let checked = Arc::clone(&store);
        obs.check("store", move || checked.check());
        let checked = Arc::clone(&presence);
        obs.check("presence", move || checked.check());
        let checked = Arc::clone(&hub);
        obs.check("broker", move || {
            let hub = Arc::clone(&checked);
            async move { hub.check().await }
        });
        let media = OnceLock::new();
        if let Some(url) = &settings.media_url {
            let directory = media::HttpMediaDirectory::new(url, Arc::clone(&access.auth))
                .map_err(anyhow::Error::msg)?;
            let _ = media.set(Arc::new(directory) as Arc<dyn media::MediaDirectory>);
        }
        let connect_limit = PerIpLimit::per_minute(settings.connects_per_ip_per_min);
        let gateway = Self {
            inner: Arc::new(Inner {
                settings,
                hub,
                metrics,
                shutdown: CancellationToken::new(),
                sessions: TaskTracker::new(),
                open: AtomicUsize::new(0),
                auth: access.auth,
                origins: access.origins,
                store,
                rooms: Arc::clone(&engine) as _,
                lifecycle: Arc::clone(&engine) as _,
                media_refs: Arc::clone(&engine) as _,
                engine,
                room_settings,
                leaver: ws::Leaver::start(Arc::clone(&presence)),
                presence,
                media,
                connect_limit,
                proxies: access.proxies,
            }),
        };
        Ok(gateway)
    }

    /// Mounts `/ws/` and `/ws/{user}/`.
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        cfg.app_data(web::Data::new(Arc::clone(&self.inner)))
            .route("/ws/", web::get().to(ws::upgrade::lobby))
            .route("/ws/{user}/", web::get().to(ws::upgrade::user))
            .route("/ws/{user}", web::get().to(ws::upgrade::user));
    }

    /// Webhooks, when `settings` name a receiver: the events asked for are
    /// queued from now on, and a
    /// sender posts due events until the gateway drains (registering its
    /// counters in `obs`).
    ///
    /// Errors: the sender cannot be set up, or its counters registered.
    pub fn start_webhooks(
        &self,
        settings: &WebhookSettings,
        pusher: Option<chat_push::Pusher>,
        obs: &Observability,
    ) -> anyhow::Result<()> {
        settings.enable_queues(&*self.inner.engine, pusher.is_some());
        if settings.wants_presence() {
            let queue = Arc::clone(&self.inner.engine) as Arc<dyn chat_store::WebhookQueue>;
            self.inner.presence.queue_presence_events(queue);
        }
        let metrics = chat_webhooks::SenderMetrics::register(&obs.registry)?;
        // A process's own consumer name in the queue's group.
        let consumer = format!("gateway-{}", ulid::Ulid::new());
        let store = Arc::clone(&self.inner.engine);
        let presence = Arc::clone(&self.inner.presence) as Arc<dyn chat_store::Presence>;
        if let Some(sender) =
            chat_webhooks::Sender::new(store, presence, settings, pusher, &consumer, metrics)?
        {
            let stop = self.inner.shutdown.clone();
            // Tracked: a draining gateway lets the batch in flight finish.
            self.inner.sessions.spawn(sender.run(stop));
        }
        Ok(())
    }

    /// The store engine (every store interface), to share with services
    /// composed in one process.
    pub fn engine(&self) -> &Arc<dyn StoreEngine> {
        &self.inner.engine
    }

    /// The message store, to share with services composed in one process.
    pub fn store(&self) -> &Arc<dyn MessageStore> {
        &self.inner.store
    }

    /// The room store, to share with services composed in one process.
    pub fn rooms(&self) -> &Arc<dyn RoomStore> {
        &self.inner.rooms
    }

    /// Who is online, to share with services composed in one process.
    pub fn presence(&self) -> Arc<dyn Presence> {
        Arc::clone(&self.inner.presence) as Arc<dyn Presence>
    }

    /// The broker node, to share with services composed in one process.
    pub fn broker(&self) -> Arc<dyn Broker> {
        // unwrap: `build` attaches the broker before returning the gateway.
        #[allow(clippy::unwrap_used)]
        Arc::clone(self.inner.hub.broker().unwrap())
    }

    /// Lets messages carry files, resolved by `directory`. Only the first call counts.
    pub fn set_media(&self, directory: Arc<dyn media::MediaDirectory>) {
        let _ = self.inner.media.set(directory);
    }

    /// The local registry (tests check it is cleaned).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.inner.open.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Closes every connection with 1001 (going away) and waits up to
    /// `grace` for the sessions to finish; refuses new upgrades from now on.
    pub async fn drain(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        self.inner.sessions.close();
        if tokio::time::timeout(grace, self.inner.sessions.wait())
            .await
            .is_err()
        {
            warn!(
                left = self.inner.sessions.len(),
                "sessions still open after the grace period"
            );
        }
    }
}

impl Gateway {
    /// The gateway alone on `server.listen` (port 0 picks a free port),
    /// with the page and the observability endpoints: what the `gateway`
    /// binary and the tests run. A stop closes every WebSocket with 1001
    /// first, waiting up to `CHAT_SHUTDOWN_GRACE`.
    pub async fn alone(
        server: &ServerSettings,
        settings: GatewaySettings,
        rooms: RoomSettings,
        engine: Engine,
        access: Access,
        webhooks: &WebhookSettings,
        pusher: Option<chat_push::Pusher>,
    ) -> anyhow::Result<(Application, Gateway)> {
        let mut obs = Observability::new();
        let gateway = Gateway::build(settings, rooms, engine, access, &mut obs).await?;
        gateway.start_webhooks(webhooks, pusher, &obs)?;
        let routes = gateway.clone();
        let app = Application::build(server, obs, move |cfg| {
            routes.configure(cfg);
            chat_web::configure(cfg);
        })?;
        let draining = gateway.clone();
        let grace = server.shutdown_grace;
        let app = app.on_stop(move || async move { draining.drain(grace).await });
        Ok((app, gateway))
    }
}

/// Everything the `gateway` binary reads.
pub struct Settings {
    /// The HTTP server.
    pub server: ServerSettings,
    /// Redis (required), its prefix, the trusted proxies.
    pub shared: SharedSettings,
    /// Identity (jwt unless `CHAT_AUTH` says otherwise).
    pub auth: AuthSettings,
    /// The gateway's own.
    pub gateway: GatewaySettings,
    /// Limits of rooms.
    pub rooms: RoomSettings,
    /// Webhooks (this gateway sends them, with the other gateways).
    pub webhooks: WebhookSettings,
    /// Web Push (this gateway sends pushes, with the other gateways).
    pub push: chat_push::PushSettings,
}

impl Settings {
    /// The settings table of `gateway --help`.
    pub fn help() -> String {
        layered::help(&[
            (ServerSettings::TITLE, ServerSettings::describe()),
            (SharedSettings::TITLE, SharedSettings::describe()),
            (AuthSettings::TITLE, AuthSettings::describe()),
            (GatewaySettings::TITLE, GatewaySettings::describe()),
            (RoomSettings::TITLE, RoomSettings::describe()),
            (WebhookSettings::TITLE, WebhookSettings::describe()),
            (
                chat_push::PushSettings::TITLE,
                chat_push::PushSettings::describe(),
            ),
        ])
    }
}

impl BinarySettings for Settings {
    fn load(layers: &layered::Figment) -> Result<Self, SettingsError> {
        let this = Self {
            server: layered::extract(layers)?,
            shared: layered::extract(layers)?,
            auth: layered::extract(layers)?,
            gateway: layered::extract(layers)?,
            rooms: layered::extract(layers)?,
            webhooks: layered::extract(layers)?,
            push: layered::extract(layers)?,
        };
        this.shared.validate()?;
        this.shared.require_redis("the gateway")?;
        this.gateway.validate()?;
        this.webhooks.validate()?;
        this.push.validate()?;
        Ok(this)
    }

    fn server(&self) -> &ServerSettings {
        &self.server
    }
}

/// The `gateway` binary: one replica of many, sharing a Redis.
pub async fn serve(settings: Settings) -> anyhow::Result<Application> {
    let access = Access::from_settings(
        &settings.auth,
        AuthMode::Jwt,
        &settings.server,
        &settings.shared,
    )?;
    let engine = Engine::Redis(RedisOptions {
        url: settings.shared.require_redis("the gateway")?.to_owned(),
        prefix: settings.shared.redis_prefix.clone(),
        errors: None,
    });
    let pusher = settings.push.pusher(None)?;
    let (app, _gateway) = Gateway::alone(
        &settings.server,
        settings.gateway,
        settings.rooms,
        engine,
        access,
        &settings.webhooks,
        pusher,
    )
    .await?;
    Ok(app)
}
