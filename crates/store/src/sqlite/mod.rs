//! The embedded message store: SQLite through sea-orm, for `chatd`.
//!
//! One process holds every connection, so whether a receiver is online is
//! asked of the in-process presence ([`MemoryPresence`]), and publishing
//! goes through the in-process broker after the transaction commits, while
//! presence is held still: a connection closing meanwhile is seen before or
//! after the message, so the message is delivered or kept offline, never
//! neither. A crash between commit and publish loses no message (it is
//! stored; the receiver gets it by sync or from the offline list), it only
//! skips the live push. Writes are serialised by a lock: SQLite has one
//! writer anyway, and waiting here beats retrying on `SQLITE_BUSY`.
//!
//! Bounds, as on Redis: an inbox keeps its last `history_max` entries,
//! trimmed every [`TRIM_EVERY`] messages, a conversation's history its
//! last `history_max`, trimmed every 16th of that (Redis trims with every
//! message); an
//! offline list its last `offline_max`; a sender's client ids at least
//! their last [`SENT_IDS_KEPT`], pruned every [`SENT_TRIM_EVERY`] sends.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chat_broker::Broker;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
    TransactionTrait, Value,
};

use crate::memory::MemoryPresence;
use crate::messages::{
    Appended, Direct, HistoryEntry, InboxEntry, MessageStore, ReadMarker, Unread, conversation,
};
use crate::{Limits, StoreError};

/// Histories and client ids are trimmed once every this many writes.
pub const TRIM_EVERY: i64 = 32;
/// A sender's client ids are trimmed once every this many sends: finding
/// where their last [`SENT_IDS_KEPT`] begin sorts all of them (they are
/// indexed by id, not by age), which every 32 sends cost 7 µs a message,
/// a fifth of the writer's statements; a few hundred more ids kept only
/// recognise more retries.
pub const SENT_TRIM_EVERY: i64 = 256;

/// The schema, one step per version (`PRAGMA user_version` says how many
/// steps a database has had). Never edit a step: add one.
const MIGRATIONS: &[&[&str]] = &[
    // 1: inboxes, histories, counters, read markers.
    &[
        "CREATE TABLE IF NOT EXISTS inbox (
            user TEXT NOT NULL, seq INTEGER NOT NULL, frame TEXT NOT NULL,
            offline INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user, seq))",
        "CREATE TABLE IF NOT EXISTS history (
            pos INTEGER PRIMARY KEY AUTOINCREMENT, a TEXT NOT NULL, b TEXT NOT NULL,
            message TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS history_conversation ON history (a, b, pos)",
        "CREATE TABLE IF NOT EXISTS unread (
            receiver TEXT NOT NULL, sender TEXT NOT NULL, count INTEGER NOT NULL,
            PRIMARY KEY (receiver, sender))",
        "CREATE TABLE IF NOT EXISTS read_marker (
            reader TEXT NOT NULL, peer TEXT NOT NULL, up_to TEXT NOT NULL,
            PRIMARY KEY (reader, peer))",
    ],
    // 2: read markers point at a position ("up to", never back); sends are
    // kept by client id (retries); offline entries are found by index.
    &[
        "ALTER TABLE history ADD COLUMN id TEXT",
        "ALTER TABLE history ADD COLUMN sender TEXT",
        "CREATE INDEX history_id ON history (a, b, id)",
        "ALTER TABLE read_marker ADD COLUMN pos INTEGER NOT NULL DEFAULT 0",
        "CREATE TABLE sent (
            user TEXT NOT NULL, client_id TEXT NOT NULL, seq_r INTEGER NOT NULL,
            seq_s INTEGER NOT NULL, offline INTEGER NOT NULL, message TEXT NOT NULL,
            PRIMARY KEY (user, client_id))",
        "CREATE INDEX inbox_offline ON inbox (user, seq) WHERE offline = 1",
    ],
    // 3: writes counted per conversation and per sender, so each is trimmed
    // every TRIM_EVERY of its own writes (a global row id spreads one
    // conversation's rows over every multiple of TRIM_EVERY, or none).
    &["CREATE TABLE writes (
            kind TEXT NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL, n INTEGER NOT NULL,
            PRIMARY KEY (kind, a, b)) WITHOUT ROWID"],
    // 4: durable rooms (rooms.rs): one history per room, one read marker
    // per member.
    &[
        "CREATE TABLE rooms (
            name TEXT PRIMARY KEY, private INTEGER NOT NULL, owner TEXT NOT NULL DEFAULT '',
            seq INTEGER NOT NULL DEFAULT 0, members INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID",
        "CREATE TABLE room_members (
            room TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL,
            joined INTEGER NOT NULL, read INTEGER NOT NULL,
            PRIMARY KEY (room, user)) WITHOUT ROWID",
        "CREATE INDEX room_members_user ON room_members (user, room)",
        "CREATE TABLE room_log (
            room TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, frame TEXT NOT NULL,
            PRIMARY KEY (room, seq)) WITHOUT ROWID",
        "CREATE INDEX room_log_id ON room_log (room, id)",
        "CREATE TABLE room_sent (
            room TEXT NOT NULL, user TEXT NOT NULL, client_id TEXT NOT NULL,
            seq INTEGER NOT NULL, frame TEXT NOT NULL,
            PRIMARY KEY (room, user, client_id)) WITHOUT ROWID",
        "CREATE INDEX room_sent_seq ON room_sent (room, seq)",
    ],
    // 5: the message lifecycle (lifecycle.rs): inbox rows know their
    // message (or the message they update), replies the message they
    // answer; a room's quiet seqs (updates, deleted messages) are not unread.
    &[
        "ALTER TABLE inbox ADD COLUMN message_id TEXT",
        "ALTER TABLE inbox ADD COLUMN update_of TEXT",
        "UPDATE inbox SET message_id = json_extract(frame, '$.id')
           WHERE json_valid(frame) AND json_extract(frame, '$.type') = 'message'",
        "CREATE INDEX inbox_message ON inbox (message_id) WHERE message_id IS NOT NULL",
        "CREATE INDEX inbox_update ON inbox (update_of) WHERE update_of IS NOT NULL",
        "ALTER TABLE history ADD COLUMN reply_to INTEGER",
        "CREATE INDEX history_reply ON history (a, b, reply_to) WHERE reply_to IS NOT NULL",
        "ALTER TABLE room_log ADD COLUMN reply_to INTEGER",
        "ALTER TABLE room_log ADD COLUMN update_of TEXT",
        "CREATE INDEX room_log_reply ON room_log (room, reply_to) WHERE reply_to IS NOT NULL",
        "CREATE INDEX room_log_update ON room_log (room, update_of) WHERE update_of IS NOT NULL",
        "CREATE TABLE room_quiet (room TEXT NOT NULL, seq INTEGER NOT NULL,
           PRIMARY KEY (room, seq)) WITHOUT ROWID",
    ],
    // 6: which messages carry each file (media_refs.rs).
    &[
        "CREATE TABLE media_refs (media TEXT NOT NULL, message TEXT NOT NULL,
         PRIMARY KEY (media, message)) WITHOUT ROWID",
    ],
    // 7: the server API's keys (api_keys.rs), each row a JSON record.
    &["CREATE TABLE api_keys (id TEXT PRIMARY KEY, record TEXT NOT NULL)"],
    // 8: token revocations (api_keys.rs): tokens of `user` issued before
    // `before` (ms) are refused.
    &["CREATE TABLE revocations (user TEXT PRIMARY KEY, before INTEGER NOT NULL)"],
    // 9: the webhooks' queue (webhooks.rs) and its dead letters.
    &[
        "CREATE TABLE webhooks (id INTEGER PRIMARY KEY AUTOINCREMENT, payload TEXT NOT NULL,
           attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL DEFAULT 0,
           queued_at INTEGER NOT NULL)",
        "CREATE INDEX webhooks_due ON webhooks (next_at)",
        "CREATE TABLE webhooks_dead (id INTEGER NOT NULL, payload TEXT NOT NULL,
           dead_at INTEGER NOT NULL)",
    ],
    // 10: Web Push subscriptions and settings (push.rs).
    &[
        "CREATE TABLE push_subscriptions (user TEXT NOT NULL, endpoint TEXT NOT NULL,
           created_at INTEGER NOT NULL, record TEXT NOT NULL,
           PRIMARY KEY (user, endpoint)) WITHOUT ROWID",
        "CREATE TABLE push_flags (user TEXT NOT NULL, flag TEXT NOT NULL,
           PRIMARY KEY (user, flag)) WITHOUT ROWID",
        "CREATE INDEX push_subscriptions_endpoint ON push_subscriptions (endpoint)",
    ],
    // 11: the write counts of 3 live in the writer's memory (writer.rs):
    // two statements less per message.
    &["DROP TABLE writes"],
    // 12: a history row is found by its message id alone (ids are ULIDs:
    // a new one goes to the index's last page, which a batch's messages
    // share, where `(a, b, id)` put each conversation's on a page of its
    // own, one more page written per message).
    &[
        "DROP INDEX history_id",
        "CREATE INDEX history_message ON history (id)",
    ],
];

struct Inner {
    db: DatabaseConnection,
    broker: Arc<dyn Broker>,
    presence: MemoryPresence,
    limits: Limits,
    /// One writer at a time.
    write: tokio::sync::Mutex<()>,
    /// Held while a committed batch of direct messages is published (the
    /// writer lock is let go at its commit, so the next batch is written
    /// meanwhile); every other writer waits for it ([`Inner::writer`]), so
    /// nothing committed after a batch is published before it.
    publishing: Arc<tokio::sync::Mutex<()>>,
    /// Direct messages waiting for the group-commit writer ([`group_commit`]).
    appends: tokio::sync::mpsc::Sender<PendingAppend>,
    /// The connection direct messages are written with.
    direct: Arc<writer::DirectWriter>,
    /// Whether jobs of messages for someone offline are queued ([`crate::WebhookQueue`]).
    offline_events: std::sync::atomic::AtomicBool,
    /// Whether room membership events are queued.
    room_events: std::sync::atomic::AtomicBool,
}

mod api_keys;
mod lifecycle;
mod media_refs;
mod push;
mod rooms;
mod webhooks;
impl Inner {
    /// The writer lock, for a write that is not a direct-message batch: it
    /// also waits until the last batch is published, so what it publishes
    /// (or its caller does, after it) comes after that batch's frames.
    async fn writer(
        &self,
    ) -> (
        tokio::sync::MutexGuard<'_, ()>,
        tokio::sync::MutexGuard<'_, ()>,
    ) {
        let write = self.write.lock().await;
        let published = self.publishing.lock().await;
        (write, published)
    }
}

mod writer;

/// The embedded message store. Cloning shares it.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

fn int(n: u64) -> Value {
    (n.min(i64::MAX as u64) as i64).into()
}

impl SqliteStore {
    /// The store at `path` on its own, for tools and tests: what it
    /// publishes reaches nobody (an in-process bus no one listens to), and
    /// nobody counts as online.
    ///
    /// Errors: as [`Self::open`].
    pub async fn open_alone(path: &Path, limits: Limits) -> Result<Self, StoreError> {
        let bus = chat_broker::memory::MemoryBus::new();
        let broker: Arc<dyn Broker> = Arc::new(bus.node(Arc::new(|_: &str, _: Bytes| {})));
        let presence = MemoryPresence::new(Arc::clone(&broker));
        Self::open(path, broker, presence, limits).await
    }

    /// Opens (creating or upgrading when needed) the database file at
    /// `path`. Whether receivers are online is asked of `presence`;
    /// published frames go to `broker`.
    pub async fn open(
        path: &Path,
        broker: Arc<dyn Broker>,
        presence: MemoryPresence,
        limits: Limits,
    ) -> Result<Self, StoreError> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut options = ConnectOptions::new(url);
        options.sqlx_logging(false);
        // A deleted message's text is overwritten on disk, not only
        // unlinked (the lifecycle's promise: its body is gone).
        // Every connection checkpoints at the writer's WAL size: with
        // SQLite's default, any other write (a read marker, a room message)
        // would copy the whole 64 MiB back while holding the writer lock.
        options.map_sqlx_sqlite_opts(|o| {
            o.pragma("secure_delete", "ON")
                .pragma("wal_autocheckpoint", writer::WAL_PAGES.to_string())
        });
        let db = Database::connect(options)
            .await
            .map_err(|e| failed("opening SQLite", e))?;
        migrate(&db).await?;
        let direct = Arc::new(writer::DirectWriter::open(path)?);
        let (appends, pending) = tokio::sync::mpsc::channel(APPENDS_QUEUED);
        let inner = Arc::new(Inner {
            db,
            broker,
            presence,
            limits,
            write: tokio::sync::Mutex::new(()),
            publishing: Arc::default(),
            appends,
            direct,
            offline_events: std::sync::atomic::AtomicBool::new(false),
            room_events: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(group_commit(Arc::downgrade(&inner), pending));
        Ok(Self { inner })
    }
}

/// The most direct messages one transaction commits.
const BATCH_MAX: usize = 4096;
/// Direct messages that may wait for the writer; senders past it wait.
const APPENDS_QUEUED: usize = 2 * BATCH_MAX;

/// A direct message waiting to be stored, and who waits for its answer.
struct PendingAppend {
    message: Direct,
    reply: tokio::sync::oneshot::Sender<Result<Appended, StoreError>>,
}

/// The writer of direct messages, with group commit: the messages that
/// arrived while the last transaction was being written are stored
/// together, in one transaction, and each is answered (acked) and published
/// only once that transaction is committed: an acked message is on disk,
/// and one commit's `fsync` is shared by the batch. Ends when the store is
/// dropped.
async fn group_commit(
    store: std::sync::Weak<Inner>,
    mut pending: tokio::sync::mpsc::Receiver<PendingAppend>,
) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while pending.recv_many(&mut batch, BATCH_MAX).await > 0 {
        let Some(inner) = store.upgrade() else { return };
        SqliteStore { inner }
            .commit_batch(std::mem::take(&mut batch))
            .await;
    }
}

/// A committed batch on its way to its receivers and senders.
struct Committed {
    broker: Arc<dyn Broker>,
    /// Who waits for each message's answer, and its outcome: where it
    /// landed and what to publish (channel, payload).
    answers: Vec<(AppendReply, Result<Publishing, StoreError>)>,
}

type AppendReply = tokio::sync::oneshot::Sender<Result<Appended, StoreError>>;

/// Where a stored message landed, and what it publishes (channel, payload).
type Publishing = (Appended, Vec<(String, Bytes)>);

/// Publishes a committed batch's frames, then acks its senders.
async fn publish_batch(batch: Committed) {
    for (reply, outcome) in batch.answers {
        let answer = match outcome {
            Ok((appended, payloads)) => {
                for (channel, payload) in payloads {
                    // Stored already: a failed live push is recovered by sync.
                    let _ = batch.broker.publish(&channel, payload).await;
                }
                Ok(appended)
            }
            Err(e) => Err(e),
        };
        // A sender that stopped waiting (its connection closed) is no error.
        let _ = reply.send(answer);
    }
}

impl SqliteStore {
    /// Stores `batch` in one transaction (on the writer's own connection, in
    /// a blocking thread), then publishes and answers each in a task of its
    /// own, so the next batch is written meanwhile. That task holds
    /// `publishing`, taken before the writer lock is let go: batches are
    /// published in commit order, and a change made after (an edit, a
    /// delete, a read, which wait for `publishing`) publishes after the
    /// batch, so a user's frames arrive in `seq` order.
    async fn commit_batch(&self, batch: Vec<PendingAppend>) {
        let writer = self.inner.write.lock().await;
        // Presence holds still from deciding "online" to publishing (shared
        // with the next batch, which decides while this one publishes).
        let presence_held = self.inner.presence.hold().await;
        let (messages, replies): (Vec<Direct>, Vec<_>) =
            batch.into_iter().map(|a| (a.message, a.reply)).unzip();
        let (direct, presence, limits) = (
            Arc::clone(&self.inner.direct),
            self.inner.presence.clone(),
            self.inner.limits,
        );
        let offline_events = self
            .inner
            .offline_events
            .load(std::sync::atomic::Ordering::Relaxed);
        let written = tokio::task::spawn_blocking(move || {
            let context = writer::Context {
                limits,
                presence: &presence,
                offline_events,
            };
            let refs: Vec<&Direct> = messages.iter().collect();
            let outcomes = direct.store_batch(&context, &refs);
            (messages, outcomes)
        })
        .await;
        let outcomes = match written {
            Ok((messages, Ok(outcomes))) => messages
                .into_iter()
                .zip(outcomes)
                .map(|(message, outcome)| {
                    outcome
                        .map(|(appended, frames)| (appended, payloads(&message, frames)))
                        .map_err(|e| failed("storing a message", e))
                })
                .collect(),
            Ok((_, Err(e))) => vec![Err(failed("committing messages", e)); replies.len()],
            Err(e) => vec![Err(failed("the SQLite writer", e)); replies.len()],
        };
        let committed = Committed {
            broker: Arc::clone(&self.inner.broker),
            answers: replies.into_iter().zip(outcomes).collect(),
        };
        let published = Arc::clone(&self.inner.publishing).lock_owned().await;
        drop(writer);
        tokio::spawn(async move {
            publish_batch(committed).await;
            drop((published, presence_held));
        });
    }
}

/// What a stored message publishes: each frame on its user's channel,
/// behind the message's envelope header.
fn payloads(message: &Direct, frames: Vec<(String, String)>) -> Vec<(String, Bytes)> {
    frames
        .into_iter()
        .map(|(user, frame)| {
            let mut payload = message.envelope_header.clone();
            payload.extend_from_slice(frame.as_bytes());
            (chat_broker::channel::user(&user), Bytes::from(payload))
        })
        .collect()
}

/// Brings the schema to the last version, one transaction per step.
async fn migrate(db: &DatabaseConnection) -> Result<(), StoreError> {
    db.execute_unprepared("PRAGMA journal_mode = WAL")
        .await
        .map_err(|e| failed("setting WAL mode", e))?;
    let row = db
        .query_one_raw(stmt("PRAGMA user_version", vec![]))
        .await
        .map_err(|e| failed("reading the schema version", e))?;
    let version: i64 = row
        .map_or(Ok(0), |r| r.try_get_by_index(0))
        .map_err(|e| failed("reading the schema version", e))?;
    for (step, statements) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let run = async {
            let txn = db.begin().await?;
            for sql in *statements {
                txn.execute_unprepared(sql).await?;
            }
            txn.execute_unprepared(&format!("PRAGMA user_version = {}", step + 1))
                .await?;
            txn.commit().await
        };
        run.await
            .map_err(|e| failed(&format!("upgrading the schema to version {}", step + 1), e))?;
    }
    Ok(())
}

async fn next_seq(db: &impl ConnectionTrait, user: &str) -> Result<u64, sea_orm::DbErr> {
    let row = db
        .query_one_raw(stmt(
            "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM inbox WHERE user = ?",
            vec![user.into()],
        ))
        .await?;
    let next: i64 = row.map_or(Ok(1), |r| r.try_get("", "next"))?;
    Ok(next as u64)
}

async fn unread_of(db: &impl ConnectionTrait, user: &str) -> Result<Unread, sea_orm::DbErr> {
    let rows = db
        .query_all_raw(stmt(
            "SELECT sender, count FROM unread WHERE receiver = ? AND count > 0",
            vec![user.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String>("", "sender")?,
                r.try_get::<i64>("", "count")? as u64,
            ))
        })
        .collect()
}

/// Inserts, at `seq`, the inbox entry of an update of message
/// `update_of`, and keeps the inbox to `limits`. (Messages themselves are
/// written by `writer.rs`.)
async fn insert_update(
    txn: &impl ConnectionTrait,
    limits: Limits,
    user: &str,
    seq: u64,
    frame: &str,
    update_of: &str,
) -> Result<(), sea_orm::DbErr> {
    txn.execute_raw(stmt(
        "INSERT INTO inbox (user, seq, frame, offline, message_id, update_of)
           VALUES (?, ?, ?, 0, NULL, ?)",
        vec![user.into(), int(seq), frame.into(), update_of.into()],
    ))
    .await?;
    if seq > limits.history_max {
        txn.execute_raw(stmt(
            "DELETE FROM inbox WHERE user = ? AND seq <= ?",
            vec![user.into(), int(seq - limits.history_max)],
        ))
        .await?;
    }
    Ok(())
}

impl MessageStore for SqliteStore {
    fn append_direct(&self, message: Direct) -> BoxFuture<'static, Result<Appended, StoreError>> {
        let queued = self.queue_direct(message);
        async move { queued.await.await }.boxed()
    }

    /// Queued for the group-commit writer, whose queue is first in, first
    /// stored: resolves once the message is in that queue (waiting while
    /// it is full), to its answer after its batch's commit.
    #[allow(clippy::async_yields_async)] // queued now, its answer to come
    fn queue_direct(&self, message: Direct) -> BoxFuture<'static, crate::Appending> {
        let appends = self.inner.appends.clone();
        async move {
            let stopped = || StoreError::Unavailable("the SQLite writer has stopped".into());
            let (reply, answer) = tokio::sync::oneshot::channel();
            if appends
                .send(PendingAppend { message, reply })
                .await
                .is_err()
            {
                return std::future::ready(Err(stopped())).boxed();
            }
            async move { answer.await.map_err(|_| stopped())? }.boxed()
        }
        .boxed()
    }

    fn inbox_since(
        &self,
        user: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<InboxEntry>, StoreError>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            let rows = this
                .inner
                .db
                .query_all_raw(stmt(
                    "SELECT seq, frame FROM inbox WHERE user = ? AND seq > ? ORDER BY seq LIMIT ?",
                    vec![user.into(), int(after), int(limit as u64)],
                ))
                .await
                .map_err(|e| failed("reading an inbox", e))?;
            rows.iter()
                .map(|r| {
                    Ok(InboxEntry {
                        seq: r.try_get::<i64>("", "seq")? as u64,
                        frame: r.try_get("", "frame")?,
                    })
                })
                .collect::<Result<_, sea_orm::DbErr>>()
                .map_err(|e| failed("reading an inbox", e))
        }
        .boxed()
    }

    fn take_offline(&self, user: &str) -> BoxFuture<'static, Result<Vec<InboxEntry>, StoreError>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            let _writer = this.inner.writer().await;
            let run = async {
                let txn = this.inner.db.begin().await?;
                let rows = txn
                    .query_all_raw(stmt(
                        "SELECT seq, frame FROM inbox WHERE user = ? AND offline = 1 ORDER BY seq",
                        vec![user.clone().into()],
                    ))
                    .await?;
                txn.execute_raw(stmt(
                    "UPDATE inbox SET offline = 0 WHERE user = ? AND offline = 1",
                    vec![user.into()],
                ))
                .await?;
                txn.commit().await?;
                rows.iter()
                    .map(|r| {
                        Ok(InboxEntry {
                            seq: r.try_get::<i64>("", "seq")? as u64,
                            frame: r.try_get("", "frame")?,
                        })
                    })
                    .collect::<Result<Vec<_>, sea_orm::DbErr>>()
            };
            run.await.map_err(|e| failed("taking offline messages", e))
        }
        .boxed()
    }

    fn unread(&self, user: &str) -> BoxFuture<'static, Result<Unread, StoreError>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            unread_of(&this.inner.db, &user)
                .await
                .map_err(|e| failed("reading unread", e))
        }
        .boxed()
    }

    fn mark_read(
        &self,
        reader: &str,
        peer: &str,
        up_to: &str,
    ) -> BoxFuture<'static, Result<ReadMarker, StoreError>> {
        let this = self.clone();
        let (reader, peer, up_to) = (reader.to_owned(), peer.to_owned(), up_to.to_owned());
        async move {
            let _writer = this.inner.writer().await;
            let (a, b) = conversation(&reader, &peer);
            let run = async {
                let txn = this.inner.db.begin().await?;
                let row = txn
                    .query_one_raw(stmt(
                        "SELECT pos FROM history INDEXED BY history_message
                           WHERE id = ? AND a = ? AND b = ?",
                        vec![up_to.clone().into(), a.clone().into(), b.clone().into()],
                    ))
                    .await?;
                let Some(row) = row else {
                    return Ok(ReadMarker::NotFound);
                };
                let pos: i64 = row.try_get("", "pos")?;
                let current: i64 = txn
                    .query_one_raw(stmt(
                        "SELECT pos FROM read_marker WHERE reader = ? AND peer = ?",
                        vec![reader.clone().into(), peer.clone().into()],
                    ))
                    .await?
                    .map_or(Ok(0), |r| r.try_get("", "pos"))?;
                if pos <= current {
                    return Ok(ReadMarker::Stale(unread_of(&txn, &reader).await?));
                }
                txn.execute_raw(stmt(
                    "INSERT INTO read_marker (reader, peer, up_to, pos) VALUES (?, ?, ?, ?)
                     ON CONFLICT (reader, peer) DO UPDATE SET up_to = excluded.up_to,
                       pos = excluded.pos",
                    vec![
                        reader.clone().into(),
                        peer.clone().into(),
                        up_to.into(),
                        pos.into(),
                    ],
                ))
                .await?;
                // Notes to oneself are never unread (nothing counts them).
                let left: i64 = if reader == peer {
                    0
                } else {
                    txn.query_one_raw(stmt(
                        "SELECT COUNT(*) AS left FROM history
                         WHERE a = ? AND b = ? AND sender = ? AND pos > ?",
                        vec![a.into(), b.into(), peer.clone().into(), pos.into()],
                    ))
                    .await?
                    .map_or(Ok(0), |r| r.try_get("", "left"))?
                };
                if left > 0 {
                    txn.execute_raw(stmt(
                        "INSERT INTO unread (receiver, sender, count) VALUES (?, ?, ?)
                         ON CONFLICT (receiver, sender) DO UPDATE SET count = excluded.count",
                        vec![reader.clone().into(), peer.into(), left.into()],
                    ))
                    .await?;
                } else {
                    txn.execute_raw(stmt(
                        "DELETE FROM unread WHERE receiver = ? AND sender = ?",
                        vec![reader.clone().into(), peer.into()],
                    ))
                    .await?;
                }
                let unread = unread_of(&txn, &reader).await?;
                txn.commit().await?;
                Ok::<_, sea_orm::DbErr>(ReadMarker::Moved(unread))
            };
            run.await.map_err(|e| failed("marking read", e))
        }
        .boxed()
    }

    fn history(
        &self,
        a: &str,
        b: &str,
        before: Option<&str>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<HistoryEntry>, StoreError>> {
        let this = self.clone();
        let (a, b) = conversation(a, b);
        // Cursors are `0-{row}` (Redis's are `0-{position}`: one form, so
        // a cursor means something to either engine); rows start at 1.
        let before: i64 = match before {
            None => i64::MAX,
            Some(cursor) => match crate::messages::cursor_parts(cursor) {
                Some((_, row)) => i64::try_from(row).unwrap_or(i64::MAX),
                None => {
                    let error = StoreError::InvalidCursor(cursor.to_owned());
                    return Box::pin(async move { Err(error) });
                }
            },
        };
        async move {
            let rows = this
                .inner
                .db
                .query_all_raw(stmt(
                    "SELECT pos, message FROM history WHERE a = ? AND b = ? AND pos < ?
                     ORDER BY pos DESC LIMIT ?",
                    vec![a.into(), b.into(), before.into(), int(limit as u64)],
                ))
                .await
                .map_err(|e| failed("reading history", e))?;
            rows.iter()
                .map(|r| {
                    Ok(HistoryEntry {
                        cursor: format!("0-{}", r.try_get::<i64>("", "pos")?),
                        message: r.try_get("", "message")?,
                    })
                })
                .collect::<Result<_, sea_orm::DbErr>>()
                .map_err(|e| failed("reading history", e))
        }
        .boxed()
    }

    fn check(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        let this = self.clone();
        async move {
            this.inner
                .db
                .execute_unprepared("SELECT 1")
                .await
                .map(drop)
                .map_err(|e| failed("SQLite", e))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_connection_checkpoints_at_the_writers_wal_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_alone(&dir.path().join("m.db"), Limits::default())
            .await
            .unwrap();
        // Pool connections are made on demand: ask several at once.
        let asks = (0..4).map(|_| {
            store
                .inner
                .db
                .query_one_raw(stmt("PRAGMA wal_autocheckpoint", vec![]))
        });
        for row in futures_util::future::join_all(asks).await {
            let pages: i64 = row.unwrap().unwrap().try_get_by_index(0).unwrap();
            assert_eq!(pages, i64::from(writer::WAL_PAGES));
        }
    }
}
