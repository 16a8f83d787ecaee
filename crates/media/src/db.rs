//! Media metadata through sea-orm: SQLite or PostgreSQL, migrated at start.

use sea_orm::sea_query::{Alias, ColumnDef, Expr, ExprTrait, Query, Table};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};
use sea_orm_migration::prelude::{
    MigrationName, MigrationTrait, MigratorTrait, SchemaManager, async_trait,
};

/// One stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRecord {
    /// ULID; also the file's name on disk.
    pub id: String,
    /// The user who uploaded it.
    pub owner: String,
    /// `image`, `audio`, `video` or `file`.
    pub kind: String,
    /// Sniffed MIME type.
    pub mime: String,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// Pixels, for images: the displayed width (EXIF orientation applied).
    pub width: Option<u32>,
    /// Pixels, for images: the displayed height (EXIF orientation applied).
    pub height: Option<u32>,
    /// Upload time, ms since the Unix epoch.
    pub created_at: u64,
    /// A thumbnail is stored beside the file (`{id}.thumb`).
    pub thumbnail: bool,
    /// An image past the decoding limit (`thumbnail::MAX_PIXELS`): measured
    /// from its header, never decoded, no thumbnail.
    pub over_pixel_limit: bool,
}

fn t() -> Alias {
    Alias::new("media")
}

fn c(name: &str) -> Alias {
    Alias::new(name)
}

const COLUMNS: [&str; 11] = [
    "id",
    "owner",
    "kind",
    "mime",
    "size",
    "sha256",
    "width",
    "height",
    "created_at",
    "thumbnail",
    "over_pixel_limit",
];

struct CreateMedia;

impl MigrationName for CreateMedia {
    fn name(&self) -> &str {
        "m20261128_000001_create_media"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateMedia {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(t())
                    .if_not_exists()
                    .col(ColumnDef::new(c("id")).string().not_null().primary_key())
                    .col(ColumnDef::new(c("owner")).string().not_null())
                    .col(ColumnDef::new(c("kind")).string().not_null())
                    .col(ColumnDef::new(c("mime")).string().not_null())
                    .col(ColumnDef::new(c("size")).big_integer().not_null())
                    .col(ColumnDef::new(c("sha256")).string().not_null())
                    .col(ColumnDef::new(c("width")).integer().null())
                    .col(ColumnDef::new(c("height")).integer().null())
                    .col(ColumnDef::new(c("created_at")).big_integer().not_null())
                    .to_owned(),
            )
            .await
    }
}

struct AddThumbnail;

impl MigrationName for AddThumbnail {
    fn name(&self) -> &str {
        "m20261128_000002_add_thumbnail"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddThumbnail {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(t())
                    .add_column(
                        ColumnDef::new(c("thumbnail"))
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await
    }
}

struct AddOverPixelLimit;

impl MigrationName for AddOverPixelLimit {
    fn name(&self) -> &str {
        "m20261130_000003_add_over_pixel_limit"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddOverPixelLimit {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(t())
                    .add_column(
                        ColumnDef::new(c("over_pixel_limit"))
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await
    }
}

/// The schema's history, applied in order at start.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateMedia),
            Box::new(AddThumbnail),
            Box::new(AddOverPixelLimit),
        ]
    }
}

/// How long a request waits for the database before answering 503.
const DB_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Connects and brings the schema up to date.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    // While the database is away an upload waits this long for a connection,
    // then answers 503 (and removes its file), rather than sqlx's 30 s.
    options
        .sqlx_logging(false)
        .acquire_timeout(DB_WAIT)
        .connect_timeout(DB_WAIT);
    let db = Database::connect(options).await?;
    if db.get_database_backend() == sea_orm::DbBackend::Sqlite {
        // One fsync per commit (of the log) instead of a rollback journal's
        // several; readers no longer wait for writers.
        db.execute_unprepared("PRAGMA journal_mode = WAL").await?;
    }
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// The database answers.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.ping().await
}

/// Stores a record.
pub async fn insert(db: &DatabaseConnection, r: &MediaRecord) -> Result<(), DbErr> {
    let insert = Query::insert()
        .into_table(t())
        .columns(COLUMNS.map(c))
        .values_panic([
            r.id.clone().into(),
            r.owner.clone().into(),
            r.kind.clone().into(),
            r.mime.clone().into(),
            (r.size as i64).into(),
            r.sha256.clone().into(),
            r.width.map(|w| w as i32).into(),
            r.height.map(|h| h as i32).into(),
            (r.created_at as i64).into(),
            r.thumbnail.into(),
            r.over_pixel_limit.into(),
        ])
        .to_owned();
    db.execute(&insert).await.map(drop)
}

/// The record of `id`, if any.
pub async fn find(db: &DatabaseConnection, id: &str) -> Result<Option<MediaRecord>, DbErr> {
    let select = Query::select()
        .columns(COLUMNS.map(c))
        .from(t())
        .and_where(Expr::col(c("id")).eq(id))
        .to_owned();
    let Some(row) = db.query_one(&select).await? else {
        return Ok(None);
    };
    Ok(Some(MediaRecord {
        id: row.try_get("", "id")?,
        owner: row.try_get("", "owner")?,
        kind: row.try_get("", "kind")?,
        mime: row.try_get("", "mime")?,
        size: row.try_get::<i64>("", "size")? as u64,
        sha256: row.try_get("", "sha256")?,
        width: row.try_get::<Option<i32>>("", "width")?.map(|w| w as u32),
        height: row.try_get::<Option<i32>>("", "height")?.map(|h| h as u32),
        created_at: row.try_get::<i64>("", "created_at")? as u64,
        thumbnail: row.try_get("", "thumbnail")?,
        over_pixel_limit: row.try_get("", "over_pixel_limit")?,
    }))
}

/// Removes the record of `id`.
pub async fn delete(db: &DatabaseConnection, id: &str) -> Result<(), DbErr> {
    let delete = Query::delete()
        .from_table(t())
        .and_where(Expr::col(c("id")).eq(id))
        .to_owned();
    db.execute(&delete).await.map(drop)
}
