//! The embedded engine: SQLite through sea-orm, for `chatd`.
//!
//! One process holds every connection, so "online" is a local count, and
//! publishing goes through the in-process broker after the transaction
//! commits: a crash between the two loses no message (it is stored, and the
//! receiver gets it by sync or from the offline list), it only skips the
//! live push. Writes are serialised by a lock: SQLite has one writer anyway,
//! and waiting here beats retrying on `SQLITE_BUSY`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use chat_broker::Broker;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
    TransactionTrait, Value,
};

use crate::store::{
    Appended, Direct, HistoryEntry, InboxEntry, MessageStore, Presence, StoreError, Swept, Unread,
    conversation, now_millis,
};

const SCHEMA: &[&str] = &[
    "PRAGMA journal_mode = WAL",
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
];

struct Inner {
    db: DatabaseConnection,
    broker: Arc<dyn Broker>,
    /// Open connections per user, in this process.
    online: Mutex<HashMap<String, usize>>,
    /// When each user's last connection closed (ms); kept in memory: after a
    /// restart nobody is online and "last seen" starts over.
    last_seen: Mutex<HashMap<String, u64>>,
    /// One writer at a time.
    write: tokio::sync::Mutex<()>,
}

/// The embedded message store.
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

impl SqliteStore {
    /// Opens (creating when missing) the database file at `path`; published
    /// frames go to `broker`.
    pub async fn open(path: &Path, broker: Arc<dyn Broker>) -> Result<Self, StoreError> {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut options = ConnectOptions::new(url);
        options.sqlx_logging(false);
        let db = Database::connect(options)
            .await
            .map_err(|e| failed("opening SQLite", e))?;
        for sql in SCHEMA {
            db.execute_unprepared(sql)
                .await
                .map_err(|e| failed("creating the schema", e))?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                broker,
                online: Mutex::default(),
                last_seen: Mutex::default(),
                write: tokio::sync::Mutex::new(()),
            }),
        })
    }

    fn is_online(&self, user: &str) -> bool {
        self.inner
            .online
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .is_some_and(|n| *n > 0)
    }

    /// Tells `user`'s watchers they came online or went offline. Called
    /// under the writer lock, so announcements keep the order of the counts.
    async fn announce(&self, user: String, online: bool, last_seen: Option<u64>) {
        let frame = chat_protocol::ServerFrame::Presence {
            user: user.clone(),
            online,
            last_seen,
        };
        // Best effort: watchers also get the current state when they (re)watch.
        let _ = self
            .inner
            .broker
            .publish(
                &chat_broker::channel::watch(&user),
                chat_broker::envelope::text(&frame.to_json()),
            )
            .await;
    }
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

impl MessageStore for SqliteStore {
    fn append_direct(&self, message: Direct) -> BoxFuture<'static, Result<Appended, StoreError>> {
        let this = self.clone();
        async move {
            let to_self = message.from == message.to;
            let copy = message.copy_to_sender && !to_self;
            let (a, b) = conversation(&message.from, &message.to);
            let (appended, frames) = {
                let _writer = this.inner.write.lock().await;
                // Decided under the writer lock, like Redis decides inside its
                // script: a connection closing now is seen before or after.
                let offline = !this.is_online(&message.to);
                let run = async {
                    let txn = this.inner.db.begin().await?;
                    let seq_r = next_seq(&txn, &message.to).await?;
                    let frame_r = message.frame.render(seq_r);
                    txn.execute_raw(stmt(
                        "INSERT INTO inbox (user, seq, frame, offline) VALUES (?, ?, ?, ?)",
                        vec![
                            message.to.clone().into(),
                            (seq_r as i64).into(),
                            frame_r.clone().into(),
                            i32::from(offline).into(),
                        ],
                    ))
                    .await?;
                    let mut frames = vec![(message.to.clone(), frame_r)];
                    if !to_self {
                        let row = txn
                            .query_one_raw(stmt(
                                "INSERT INTO unread (receiver, sender, count) VALUES (?, ?, 1)
                                 ON CONFLICT (receiver, sender) DO UPDATE SET count = count + 1
                                 RETURNING count",
                                vec![message.to.clone().into(), message.from.clone().into()],
                            ))
                            .await?;
                        let count: i64 = row.map_or(Ok(1), |r| r.try_get("", "count"))?;
                        let counts = [(message.from.clone(), count as u64)].into_iter().collect();
                        let unread = chat_protocol::ServerFrame::Unread { counts }.to_json();
                        frames.push((message.to.clone(), unread));
                    }
                    txn.execute_raw(stmt(
                        "INSERT INTO history (a, b, message) VALUES (?, ?, ?)",
                        vec![a.into(), b.into(), message.history.clone().into()],
                    ))
                    .await?;
                    let mut seq_s = None;
                    if copy {
                        let seq = next_seq(&txn, &message.from).await?;
                        let frame_s = message.frame.render(seq);
                        txn.execute_raw(stmt(
                            "INSERT INTO inbox (user, seq, frame, offline) VALUES (?, ?, ?, 0)",
                            vec![
                                message.from.clone().into(),
                                (seq as i64).into(),
                                frame_s.clone().into(),
                            ],
                        ))
                        .await?;
                        frames.push((message.from.clone(), frame_s));
                        seq_s = Some(seq);
                    }
                    txn.commit().await?;
                    Ok::<_, sea_orm::DbErr>((
                        Appended {
                            receiver_seq: seq_r,
                            sender_seq: seq_s,
                            offline,
                        },
                        frames,
                    ))
                };
                run.await.map_err(|e| failed("storing a message", e))?
            };
            for (user, frame) in frames {
                let mut payload = message.envelope_header.clone();
                payload.extend_from_slice(frame.as_bytes());
                // Stored already: a failed live push is recovered by sync.
                let _ = this
                    .inner
                    .broker
                    .publish(&chat_broker::channel::user(&user), Bytes::from(payload))
                    .await;
            }
            Ok(appended)
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
                    vec![
                        user.into(),
                        (after.min(i64::MAX as u64) as i64).into(),
                        (limit as i64).into(),
                    ],
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
            let _writer = this.inner.write.lock().await;
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
    ) -> BoxFuture<'static, Result<Unread, StoreError>> {
        let this = self.clone();
        let (reader, peer, up_to) = (reader.to_owned(), peer.to_owned(), up_to.to_owned());
        async move {
            let _writer = this.inner.write.lock().await;
            let run = async {
                let txn = this.inner.db.begin().await?;
                txn.execute_raw(stmt(
                    "DELETE FROM unread WHERE receiver = ? AND sender = ?",
                    vec![reader.clone().into(), peer.clone().into()],
                ))
                .await?;
                txn.execute_raw(stmt(
                    "INSERT INTO read_marker (reader, peer, up_to) VALUES (?, ?, ?)
                     ON CONFLICT (reader, peer) DO UPDATE SET up_to = excluded.up_to",
                    vec![reader.clone().into(), peer.into(), up_to.into()],
                ))
                .await?;
                let unread = unread_of(&txn, &reader).await?;
                txn.commit().await?;
                Ok::<_, sea_orm::DbErr>(unread)
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
        let before: i64 = before.and_then(|c| c.parse().ok()).unwrap_or(i64::MAX);
        async move {
            let rows = this
                .inner
                .db
                .query_all_raw(stmt(
                    "SELECT pos, message FROM history WHERE a = ? AND b = ? AND pos < ?
                     ORDER BY pos DESC LIMIT ?",
                    vec![a.into(), b.into(), before.into(), (limit as i64).into()],
                ))
                .await
                .map_err(|e| failed("reading history", e))?;
            rows.iter()
                .map(|r| {
                    Ok(HistoryEntry {
                        cursor: r.try_get::<i64>("", "pos")?.to_string(),
                        message: r.try_get("", "message")?,
                    })
                })
                .collect::<Result<_, sea_orm::DbErr>>()
                .map_err(|e| failed("reading history", e))
        }
        .boxed()
    }

    fn connected(&self, user: &str) -> BoxFuture<'static, Result<bool, StoreError>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            // Under the writer lock: a message being stored sees the user
            // either before or after this connection, never half-way.
            let _writer = this.inner.write.lock().await;
            let came_online = {
                let mut online = this.inner.online.lock().unwrap_or_else(|e| e.into_inner());
                let count = online.entry(user.clone()).or_default();
                *count += 1;
                *count == 1
            };
            if came_online {
                this.announce(user, true, None).await;
            }
            Ok(came_online)
        }
        .boxed()
    }

    fn disconnected(&self, user: &str) -> BoxFuture<'static, Result<bool, StoreError>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            let _writer = this.inner.write.lock().await;
            let gone = {
                let mut online = this.inner.online.lock().unwrap_or_else(|e| e.into_inner());
                match online.get_mut(&user) {
                    Some(n) if *n > 1 => {
                        *n -= 1;
                        None
                    }
                    Some(_) => {
                        online.remove(&user);
                        let now = now_millis();
                        this.inner
                            .last_seen
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(user.clone(), now);
                        Some(now)
                    }
                    None => None,
                }
            };
            if let Some(now) = gone {
                this.announce(user, false, Some(now)).await;
            }
            Ok(gone.is_some())
        }
        .boxed()
    }

    fn presence(&self, user: &str) -> BoxFuture<'static, Result<Presence, StoreError>> {
        let presence = Presence {
            online: self.is_online(user),
            last_seen: self
                .inner
                .last_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(user)
                .copied(),
        };
        futures_util::future::ready(Ok(presence)).boxed()
    }

    fn sweep(&self) -> BoxFuture<'static, Result<Vec<Swept>, StoreError>> {
        // One process: when it dies, so do all its users' connections.
        futures_util::future::ready(Ok(Vec::new())).boxed()
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
