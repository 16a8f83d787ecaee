//! The message lifecycle in SQLite ([`crate::lifecycle`]): one transaction
//! per change under the writer lock (nothing can move between reading the
//! message and writing it back), published after it commits.

use bytes::Bytes;
use chat_broker::channel;
use chat_protocol::{ChatMessage, Quote, ServerFrame};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};

use super::rooms::append_entry;
use super::{SqliteStore, failed, insert_update, int, next_seq, stmt};
use crate::lifecycle::{
    self, Change, ChangeError, ChangeRequest, Changed, Conversation, Lifecycle,
};
use crate::rooms::Role;

/// What to publish once a change commits: (channel, envelope).
type Publishes = Vec<(String, Bytes)>;

impl From<DbErr> for ChangeError {
    fn from(e: DbErr) -> Self {
        ChangeError::Store(failed("changing a message", e))
    }
}

/// A room message as stored: its seq, frame and message.
async fn room_entry(
    db: &impl ConnectionTrait,
    room: &str,
    actor: &str,
    id: &str,
) -> Result<(Role, i64, ChatMessage), ChangeError> {
    let Some(role) = db
        .query_one_raw(stmt(
            "SELECT role FROM room_members WHERE room = ? AND user = ?",
            vec![room.into(), actor.into()],
        ))
        .await?
    else {
        let exists = db
            .query_one_raw(stmt(
                "SELECT 1 FROM rooms WHERE name = ?",
                vec![room.into()],
            ))
            .await?
            .is_some();
        return Err(if exists {
            ChangeError::Forbidden(format!("not a member of room '{room}'"))
        } else {
            ChangeError::NotFound(format!("no room '{room}'"))
        });
    };
    let role: String = role.try_get("", "role")?;
    let row = db
        .query_one_raw(stmt(
            "SELECT seq, frame FROM room_log WHERE room = ? AND id = ? AND update_of IS NULL",
            vec![room.into(), id.into()],
        ))
        .await?;
    let not_found = || ChangeError::NotFound(format!("no message '{id}' in room '{room}'"));
    let row = row.ok_or_else(not_found)?;
    let frame: String = row.try_get("", "frame")?;
    let message = lifecycle::parse_message(&frame).ok_or_else(not_found)?;
    Ok((
        Role::parse(&role).unwrap_or(Role::Member),
        row.try_get("", "seq")?,
        message,
    ))
}

/// A direct message as stored: its conversation position and message.
async fn direct_entry(
    db: &impl ConnectionTrait,
    actor: &str,
    peer: &str,
    id: &str,
) -> Result<(i64, ChatMessage), ChangeError> {
    let (a, b) = crate::conversation(actor, peer);
    let row = db
        .query_one_raw(stmt(
            "SELECT pos, message FROM history INDEXED BY history_message
               WHERE id = ? AND a = ? AND b = ?",
            vec![id.into(), a.into(), b.into()],
        ))
        .await?;
    let not_found = || {
        ChangeError::NotFound(format!(
            "no message '{id}' in the conversation with '{peer}'"
        ))
    };
    let row = row.ok_or_else(not_found)?;
    let text: String = row.try_get("", "message")?;
    let message = lifecycle::parse_message(&text).ok_or_else(not_found)?;
    Ok((row.try_get("", "pos")?, message))
}

/// `message` as each inbox holding it now delivers it: rewrites its rows
/// (the offline list is the same rows) and answers user → seq.
async fn rewrite_inboxes(
    txn: &impl ConnectionTrait,
    message: &ChatMessage,
) -> Result<Vec<(String, u64)>, DbErr> {
    let rows = txn
        .query_all_raw(stmt(
            "SELECT user, seq FROM inbox WHERE message_id = ?",
            vec![message.id.clone().into()],
        ))
        .await?;
    let mut places = Vec::new();
    for row in rows {
        let user: String = row.try_get("", "user")?;
        let seq = row.try_get::<i64>("", "seq")? as u64;
        let frame = ServerFrame::Message(ChatMessage {
            seq: Some(seq),
            ..message.clone()
        })
        .to_json();
        txn.execute_raw(stmt(
            "UPDATE inbox SET frame = ? WHERE user = ? AND seq = ?",
            vec![frame.into(), user.clone().into(), int(seq)],
        ))
        .await?;
        places.push((user, seq));
    }
    Ok(places)
}

/// Writes `message` back to its history row at `pos` and every inbox.
async fn rewrite_direct(
    txn: &impl ConnectionTrait,
    pos: i64,
    message: &ChatMessage,
) -> Result<Vec<(String, u64)>, DbErr> {
    let history = ChatMessage {
        seq: None,
        ..message.clone()
    };
    let json = lifecycle::to_json(&history);
    txn.execute_raw(stmt(
        "UPDATE history SET message = ? WHERE pos = ?",
        vec![json.clone().into(), pos.into()],
    ))
    .await?;
    if message.deleted || message.reply_to.as_ref().is_some_and(|q| q.deleted) {
        // The retry record of its send holds the text (or a quote) too.
        txn.execute_raw(stmt(
            "UPDATE sent SET message = ? WHERE user = ? AND json_extract(message, '$.id') = ?",
            vec![
                json.into(),
                message.from.clone().into(),
                message.id.clone().into(),
            ],
        ))
        .await?;
    }
    rewrite_inboxes(txn, message).await
}

/// Writes room message `message` back at `at`; for a delete (`scrub`),
/// the retry record of its send too, which holds the text as sent.
async fn rewrite_room(
    txn: &impl ConnectionTrait,
    room: &str,
    at: i64,
    message: &ChatMessage,
    scrub: bool,
) -> Result<(), DbErr> {
    let frame = ServerFrame::Message(message.clone()).to_json();
    let tables: &[&str] = if scrub {
        &["room_log", "room_sent"]
    } else {
        &["room_log"]
    };
    for table in tables {
        let sql = format!("UPDATE {table} SET frame = ? WHERE room = ? AND seq = ?");
        txn.execute_raw(stmt(
            &sql,
            vec![frame.clone().into(), room.into(), at.into()],
        ))
        .await?;
    }
    Ok(())
}

impl SqliteStore {
    async fn room_change(
        &self,
        room: &str,
        request: &ChangeRequest,
    ) -> Result<(Changed, Publishes), ChangeError> {
        let txn = self.inner.db.begin().await?;
        let (role, seq, message) = room_entry(&txn, room, &request.actor, &request.message).await?;
        let admin = role >= Role::Admin;
        let Some(next) = lifecycle::apply(
            &message,
            &request.actor,
            admin,
            &request.change,
            request.now,
        )?
        else {
            return Ok((unchanged(message), Vec::new()));
        };
        let removed_media = lifecycle::removed_media(&message, &next);
        let deleting = request.change == Change::Delete;
        rewrite_room(&txn, room, seq, &next, deleting).await?;
        if deleting {
            txn.execute_raw(stmt(
                "INSERT OR IGNORE INTO room_quiet (room, seq) VALUES (?, ?)",
                vec![room.into(), seq.into()],
            ))
            .await?;
            let replies = txn
                .query_all_raw(stmt(
                    "SELECT seq, frame FROM room_log WHERE room = ? AND reply_to = ?",
                    vec![room.into(), seq.into()],
                ))
                .await?;
            for reply in replies {
                let frame: String = reply.try_get("", "frame")?;
                if let Some(quoting) = lifecycle::parse_message(&frame) {
                    let at = reply.try_get("", "seq")?;
                    rewrite_room(&txn, room, at, &lifecycle::unquote(&quoting), true).await?;
                }
            }
            txn.execute_raw(stmt(
                "UPDATE room_log SET reply_to = NULL WHERE room = ? AND (reply_to = ? OR seq = ?)",
                vec![room.into(), seq.into(), seq.into()],
            ))
            .await?;
        }
        let (head, tail) = lifecycle::update_template(&next);
        let update_id = ulid::Ulid::new().to_string();
        let (at, frame) = append_entry(
            &txn,
            room,
            &update_id,
            &head,
            &tail,
            self.inner.limits.history_max,
        )
        .await?;
        for sql in [
            "DELETE FROM room_log WHERE room = ?1 AND update_of = ?2",
            "UPDATE room_log SET update_of = ?2 WHERE room = ?1 AND seq = ?3",
            "INSERT INTO room_quiet (room, seq) VALUES (?1, ?3)",
        ] {
            txn.execute_raw(stmt(
                sql,
                vec![room.into(), request.message.clone().into(), at.into()],
            ))
            .await?;
        }
        txn.commit().await?;
        let mut payload = request.envelope_header.clone();
        payload.extend_from_slice(frame.as_bytes());
        let changed = Changed {
            message: next,
            update_seq: Some(at as u64),
            removed_media,
        };
        Ok((changed, vec![(channel::room(room), Bytes::from(payload))]))
    }

    async fn direct_change(
        &self,
        peer: &str,
        request: &ChangeRequest,
    ) -> Result<(Changed, Publishes), ChangeError> {
        let actor = request.actor.as_str();
        let txn = self.inner.db.begin().await?;
        let (pos, message) = direct_entry(&txn, actor, peer, &request.message).await?;
        let seq_of = |places: &[(String, u64)]| {
            places
                .iter()
                .find(|(user, _)| user == actor)
                .map(|(_, seq)| *seq)
        };
        let Some(next) = lifecycle::apply(&message, actor, false, &request.change, request.now)?
        else {
            let places = txn
                .query_all_raw(stmt(
                    "SELECT user, seq FROM inbox WHERE message_id = ? AND user = ?",
                    vec![message.id.clone().into(), actor.into()],
                ))
                .await?
                .iter()
                .map(|r| Ok((r.try_get("", "user")?, r.try_get::<i64>("", "seq")? as u64)))
                .collect::<Result<Vec<_>, DbErr>>()?;
            let seq = seq_of(&places);
            return Ok((unchanged(ChatMessage { seq, ..message }), Vec::new()));
        };
        let removed_media = lifecycle::removed_media(&message, &next);
        let deleting = request.change == Change::Delete;
        let places = rewrite_direct(&txn, pos, &next).await?;
        let mut publishes = Publishes::new();
        let sender = message.from.clone();
        let receiver = message.to.clone().unwrap_or_default();
        if deleting {
            let (a, b) = crate::conversation(&sender, &receiver);
            let replies = txn
                .query_all_raw(stmt(
                    "SELECT pos, message FROM history WHERE a = ? AND b = ? AND reply_to = ?",
                    vec![a.into(), b.into(), pos.into()],
                ))
                .await?;
            for reply in replies {
                let text: String = reply.try_get("", "message")?;
                if let Some(quoting) = lifecycle::parse_message(&text) {
                    let at = reply.try_get("", "pos")?;
                    rewrite_direct(&txn, at, &lifecycle::unquote(&quoting)).await?;
                }
            }
            if sender != receiver
                && let Some(count) = self.uncount(&txn, &receiver, &sender, pos).await?
            {
                let counts = [(sender.clone(), count)].into_iter().collect();
                let unread = ServerFrame::Unread {
                    counts,
                    rooms: Default::default(),
                };
                publishes.push(publish(request, &receiver, &unread.to_json()));
            }
        }
        let mut users = vec![receiver.clone()];
        if sender != receiver {
            users.push(sender.clone());
        }
        let mut update_seq = None;
        for user in users {
            let seq = places.iter().find(|(u, _)| *u == user).map(|(_, s)| *s);
            let at = next_seq(&txn, &user).await?;
            let frame = ServerFrame::Update {
                seq: Some(at),
                message: ChatMessage {
                    seq,
                    ..next.clone()
                },
            }
            .to_json();
            let limits = self.inner.limits;
            insert_update(&txn, limits, &user, at, &frame, &next.id).await?;
            txn.execute_raw(stmt(
                "DELETE FROM inbox WHERE user = ? AND update_of = ? AND seq < ?",
                vec![user.clone().into(), next.id.clone().into(), int(at)],
            ))
            .await?;
            if user == actor {
                update_seq = Some(at);
            }
            publishes.push(publish(request, &user, &frame));
        }
        txn.commit().await?;
        let changed = Changed {
            message: ChatMessage {
                seq: seq_of(&places),
                ..next
            },
            update_seq,
            removed_media,
        };
        Ok((changed, publishes))
    }

    /// Takes a deleted message (at conversation position `pos`) off
    /// `receiver`'s count of `sender`'s unread messages when it was
    /// unread: the new count, or `None` when it was read already.
    async fn uncount(
        &self,
        txn: &impl ConnectionTrait,
        receiver: &str,
        sender: &str,
        pos: i64,
    ) -> Result<Option<u64>, DbErr> {
        let read: i64 = txn
            .query_one_raw(stmt(
                "SELECT pos FROM read_marker WHERE reader = ? AND peer = ?",
                vec![receiver.into(), sender.into()],
            ))
            .await?
            .map_or(Ok(0), |r| r.try_get("", "pos"))?;
        if pos <= read {
            return Ok(None);
        }
        let row = txn
            .query_one_raw(stmt(
                "UPDATE unread SET count = count - 1
                   WHERE receiver = ? AND sender = ? AND count > 0 RETURNING count",
                vec![receiver.into(), sender.into()],
            ))
            .await?;
        row.map(|r| r.try_get::<i64>("", "count").map(|n| n.max(0) as u64))
            .transpose()
    }
}

fn unchanged(message: ChatMessage) -> Changed {
    Changed {
        message,
        update_seq: None,
        removed_media: None,
    }
}

fn publish(request: &ChangeRequest, user: &str, frame: &str) -> (String, Bytes) {
    let mut payload = request.envelope_header.clone();
    payload.extend_from_slice(frame.as_bytes());
    (channel::user(user), Bytes::from(payload))
}

impl Lifecycle for SqliteStore {
    fn change(&self, request: ChangeRequest) -> BoxFuture<'static, Result<Changed, ChangeError>> {
        let this = self.clone();
        async move {
            let _writer = this.inner.writer().await;
            let (changed, publishes) = match &request.conversation {
                Conversation::Room(room) => this.room_change(room, &request).await?,
                Conversation::Direct(peer) => this.direct_change(peer, &request).await?,
            };
            if request.change == Change::Delete {
                // The write-ahead log still holds the pages as they were
                // before the delete: fold it into the database (whose
                // freed space secure_delete zeroed) and empty it.
                // Best effort: a reader holding the log defers it (the
                // next checkpoints overwrite it as the log is reused).
                match this.inner.direct.truncate_wal().await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(
                        "a deleted message stays in the WAL until it is reused: a reader held it"
                    ),
                    Err(e) => tracing::warn!(error = %e, "emptying the WAL after a delete"),
                }
            }
            for (channel, payload) in publishes {
                // Stored already: a failed live push is recovered by sync.
                let _ = this.inner.broker.publish(&channel, payload).await;
            }
            Ok(changed)
        }
        .boxed()
    }

    fn quote(
        &self,
        actor: &str,
        conversation: &Conversation,
        id: &str,
    ) -> BoxFuture<'static, Result<(Quote, u64), ChangeError>> {
        let (this, actor, conversation, id) = (
            self.clone(),
            actor.to_owned(),
            conversation.clone(),
            id.to_owned(),
        );
        async move {
            let db = &this.inner.db;
            let (at, message) = match &conversation {
                Conversation::Room(room) => {
                    let (_, seq, message) = room_entry(db, room, &actor, &id).await?;
                    (seq, message)
                }
                Conversation::Direct(peer) => direct_entry(db, &actor, peer, &id).await?,
            };
            Ok((lifecycle::quote(&message), at.max(0) as u64))
        }
        .boxed()
    }
}
