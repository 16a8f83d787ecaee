//! The media service: files go up over HTTP, apart from messaging; a message
//! then carries the upload's reference.
//!
//! - `upload.rs`: `POST /api/v1/media` — the body is streamed to a temporary
//!   file while its SHA-256 is computed (never held in memory), refused past
//!   the size limit, sniffed from its content, then renamed into place.
//! - `sniff.rs`: the type from the bytes (`infer`), never from the client.
//! - `thumbnail.rs`: image dimensions as displayed (EXIF orientation
//!   applied) and upright, metadata-free 320-pixel thumbnails, within a
//!   pixel limit.
//! - `serve.rs`: `GET`/`HEAD /media/{id}?exp=&sig=` — signed, expiring links
//!   that `<img>`/`<audio>`/`<video>` can use, with ranges and ETags as RFC
//!   9110 has them; anything that is not image/audio/video is a sandboxed
//!   attachment.
//! - `link.rs`: the HMAC that signs links.
//! - `api.rs`: metadata (`GET /api/v1/media/{id}`) and `DELETE` by the owner.
//! - `db.rs`: metadata through sea-orm (SQLite by default, PostgreSQL when
//!   `DATABASE_URL` says so), migrated at start.

mod api;
pub mod db;
mod error;
pub mod link;
mod metrics;
mod serve;
pub mod settings;
pub mod sniff;
pub mod thumbnail;
mod upload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::web;
use chat_auth::Authenticator;
use chat_auth::settings::{AuthMode, AuthSettings};
use chat_protocol::MediaInfo;
use chat_runtime::app::{Application, BinarySettings};
use chat_runtime::observe::Observability;
use chat_runtime::per_ip::TrustedProxies;
use chat_runtime::settings::{
    self as layered, Described, ServerSettings, SettingsError, SharedSettings,
};
use sea_orm::DatabaseConnection;

pub use error::MediaError;
pub use settings::MediaSettings;

/// Everything a request handler needs.
pub(crate) struct Inner {
    pub(crate) db: DatabaseConnection,
    /// Where files live: `{dir}/{id}`, and uploads in progress in `{dir}/tmp`.
    pub(crate) dir: PathBuf,
    pub(crate) max_bytes: u64,
    pub(crate) idle_timeout: std::time::Duration,
    pub(crate) upload_limit: chat_runtime::per_ip::PerIpLimit,
    pub(crate) proxies: chat_runtime::per_ip::TrustedProxies,
    pub(crate) links: link::Signer,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) metrics: metrics::MediaMetrics,
}

/// The media service, ready to be mounted.
#[derive(Clone)]
pub struct MediaService {
    inner: Arc<Inner>,
}

impl MediaService {
    /// Opens the database (migrating it) and the storage folder under
    /// `data_dir`; registers metrics and readiness checks in `obs`. Client
    /// addresses come from `X-Forwarded-For` only behind `proxies`.
    pub async fn build(
        settings: &MediaSettings,
        data_dir: &Path,
        auth: Arc<Authenticator>,
        proxies: TrustedProxies,
        obs: &mut Observability,
    ) -> anyhow::Result<Self> {
        let dir = data_dir.join("media");
        std::fs::create_dir_all(dir.join("tmp"))?;
        let url = settings.database_url.clone().unwrap_or_else(|| {
            format!("sqlite://{}?mode=rwc", data_dir.join("media.db").display())
        });
        let db = db::connect(&url).await?;
        let secret = settings.signing_secret(data_dir)?;
        let metrics = metrics::MediaMetrics::register(&obs.registry)?;
        let inner = Arc::new(Inner {
            db,
            dir,
            max_bytes: settings.media_max_bytes,
            idle_timeout: settings.media_idle_timeout,
            upload_limit: chat_runtime::per_ip::PerIpLimit::per_minute(
                settings.uploads_per_ip_per_min,
            ),
            proxies,
            links: link::Signer::new(secret, settings.media_link_ttl),
            auth,
            metrics,
        });
        let checked = Arc::clone(&inner);
        obs.check("media", move || {
            let inner = Arc::clone(&checked);
            async move { inner.ready().await }
        });
        Ok(Self { inner })
    }

    /// Mounts the upload, file and metadata routes. Every `GET` also
    /// answers `HEAD` (RFC 9110 §9.3.2: the same headers, no content).
    pub fn configure(&self, cfg: &mut web::ServiceConfig) {
        use chat_runtime::api::resource;
        cfg.app_data(web::Data::new(Arc::clone(&self.inner)))
            .service(resource("/api/v1/media", "POST").route(web::post().to(upload::upload)))
            .service(
                resource("/api/v1/media/openapi.json", "GET, HEAD")
                    .route(web::get().to(openapi))
                    .route(web::head().to(openapi)),
            )
            .service(
                resource("/api/v1/media/{id}", "GET, HEAD, DELETE")
                    .route(web::get().to(api::metadata))
                    .route(web::head().to(api::metadata_head))
                    .route(web::delete().to(api::delete)),
            )
            .service(
                resource("/media/{id}", "GET, HEAD")
                    .route(web::get().to(serve::file))
                    .route(web::head().to(serve::file_head)),
            )
            .service(
                resource("/media/{id}/thumbnail", "GET, HEAD")
                    .route(web::get().to(serve::thumbnail))
                    .route(web::head().to(serve::thumbnail_head)),
            );
    }
}

/// The OpenAPI document of this service.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "chat media service",
        description = "Uploads, signed file links, metadata"
    ),
    paths(
        upload::upload,
        api::metadata,
        api::metadata_head,
        api::delete,
        serve::file,
        serve::file_head,
        serve::thumbnail,
        serve::thumbnail_head
    ),
    components(schemas(api::MediaView, upload::UploadForm, chat_runtime::error::ErrorBody))
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON.
pub fn openapi_json() -> String {
    use utoipa::OpenApi;
    // unwrap: the document is built from static types and always serialises.
    #[allow(clippy::unwrap_used)]
    ApiDoc::openapi().to_pretty_json().unwrap()
}

async fn openapi() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi_json())
}

impl MediaService {
    /// The file `id` with a fresh link, and who uploaded it; `None` if unknown.
    pub async fn describe(&self, id: &str) -> Result<Option<(String, MediaInfo)>, MediaError> {
        if !api::valid_id(id) {
            return Ok(None);
        }
        let Some(r) = db::find(&self.inner.db, id).await? else {
            return Ok(None);
        };
        let thumbnail_url = r
            .thumbnail
            .then(|| self.inner.links.url(&format!("{}/thumbnail", r.id)));
        let info = MediaInfo {
            url: self.inner.links.url(&r.id),
            id: r.id,
            kind: r.kind,
            mime: r.mime,
            size: r.size,
            width: r.width,
            height: r.height,
            thumbnail_url,
        };
        Ok(Some((r.owner, info)))
    }

    /// Deletes file `id`: its record, its bytes and its thumbnail. `false`
    /// when there was no such file. Who may is the caller's business (the
    /// owner over HTTP; the gateway when the last message carrying it is
    /// deleted).
    ///
    /// Errors: [`MediaError`] when the database cannot be reached.
    pub async fn remove(&self, id: &str) -> Result<bool, MediaError> {
        if !api::valid_id(id) || db::find(&self.inner.db, id).await?.is_none() {
            return Ok(false);
        }
        self.inner.remove(id).await?;
        Ok(true)
    }
}

impl Inner {
    /// Deletes the record of file `id`, then its bytes and thumbnail (a
    /// file left on disk without a record is never served).
    async fn remove(&self, id: &str) -> Result<(), MediaError> {
        db::delete(&self.db, id).await?;
        let _ = tokio::fs::remove_file(self.dir.join(id)).await;
        let _ = tokio::fs::remove_file(self.dir.join(format!("{id}.thumb"))).await;
        Ok(())
    }

    /// The database answers and the storage folder is writable.
    async fn ready(&self) -> Result<(), String> {
        db::ping(&self.db)
            .await
            .map_err(|e| format!("database: {e}"))?;
        let probe = self
            .dir
            .join("tmp")
            .join(format!(".probe-{}", ulid::Ulid::new()));
        tokio::fs::write(&probe, b"ok")
            .await
            .map_err(|e| format!("storage not writable: {e}"))?;
        let _ = tokio::fs::remove_file(&probe).await;
        Ok(())
    }
}

/// Everything the `media` binary reads.
pub struct Settings {
    /// The HTTP server.
    pub server: ServerSettings,
    /// The data folder, the trusted proxies.
    pub shared: SharedSettings,
    /// Identity (jwt unless `CHAT_AUTH` says otherwise).
    pub auth: AuthSettings,
    /// The media service's own.
    pub media: MediaSettings,
}

impl Settings {
    /// The settings table of `media --help`.
    pub fn help() -> String {
        layered::help(&[
            (ServerSettings::TITLE, ServerSettings::describe()),
            (SharedSettings::TITLE, SharedSettings::describe()),
            (AuthSettings::TITLE, AuthSettings::describe()),
            (MediaSettings::TITLE, MediaSettings::describe()),
        ])
    }
}

impl BinarySettings for Settings {
    fn load(layers: &layered::Figment) -> Result<Self, SettingsError> {
        let this = Self {
            server: layered::extract(layers)?,
            shared: layered::extract(layers)?,
            auth: layered::extract(layers)?,
            media: layered::extract(layers)?,
        };
        this.shared.validate()?;
        this.media.validate()?;
        Ok(this)
    }

    fn server(&self) -> &ServerSettings {
        &self.server
    }
}

/// The `media` binary: the media service alone on its listener.
pub async fn serve(settings: Settings) -> anyhow::Result<Application> {
    let (auth, _origins) = settings.auth.build(AuthMode::Jwt, settings.server.listen)?;
    let proxies = trusted_proxies(&settings.shared)?;
    let data_dir = &settings.shared.data_dir;
    std::fs::create_dir_all(data_dir).map_err(|e| {
        SettingsError::new(format!(
            "invalid setting CHAT_DATA_DIR: cannot create {}: {e}",
            data_dir.display()
        ))
    })?;
    let mut obs = Observability::new();
    let service =
        MediaService::build(&settings.media, data_dir, Arc::new(auth), proxies, &mut obs).await?;
    Application::build(&settings.server, obs, move |cfg| service.configure(cfg))
}

/// `CHAT_TRUSTED_PROXIES`, parsed; the error names it.
pub fn trusted_proxies(shared: &SharedSettings) -> Result<TrustedProxies, SettingsError> {
    TrustedProxies::parse(&shared.trusted_proxies)
        .map_err(|e| SettingsError::new(format!("invalid setting CHAT_TRUSTED_PROXIES: {e}")))
}
