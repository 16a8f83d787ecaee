//! Durable rooms in SQLite: the same rules as the Redis scripts (see
//! [`crate::rooms`]), one transaction per change under the writer lock,
//! published through the in-process broker after it commits (a crash in
//! between loses no entry: members get it by `sync`).
//!
//! Bounds: a room's history keeps its last `history_max` entries exactly;
//! its client ids those of its last [`SENT_IDS_KEPT`] entries.

use bytes::Bytes;
use chat_broker::channel;
use chat_broker::envelope::{self, Control};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};

use super::{SqliteStore, failed, int, stmt};
use crate::messages::{InboxEntry, SENT_IDS_KEPT};
use crate::rooms::{
    Admission, Member, Role, RoomAppended, RoomError, RoomInfo, RoomRead, RoomSend, RoomStore,
    RoomSummary, RoomUnread,
};
use crate::{StoreError, frames};

/// What to publish once a change commits: (channel, envelope).
type Publishes = Vec<(String, Bytes)>;

/// A change's answer, or why it was refused (nothing written).
enum Refused {
    Room(RoomError),
    Db(DbErr),
}

impl From<DbErr> for Refused {
    fn from(e: DbErr) -> Self {
        Refused::Db(e)
    }
}

impl From<RoomError> for Refused {
    fn from(e: RoomError) -> Self {
        Refused::Room(e)
    }
}

impl Refused {
    fn into_room(self, what: &str) -> RoomError {
        match self {
            Refused::Room(e) => e,
            Refused::Db(e) => RoomError::Store(failed(what, e)),
        }
    }
}

/// A member's role and the seq they joined at.
async fn member(
    db: &impl ConnectionTrait,
    room: &str,
    user: &str,
) -> Result<Option<(Role, i64)>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            "SELECT role, joined FROM room_members WHERE room = ? AND user = ?",
            vec![room.into(), user.into()],
        ))
        .await?;
    row.map(|r| {
        let role: String = r.try_get("", "role")?;
        Ok((
            Role::parse(&role).unwrap_or(Role::Member),
            r.try_get("", "joined")?,
        ))
    })
    .transpose()
}

/// The room's `private`, `owner`, `members` and `seq`, if it exists.
async fn meta(
    db: &impl ConnectionTrait,
    room: &str,
) -> Result<Option<(bool, String, i64, i64)>, DbErr> {
    let row = db
        .query_one_raw(stmt(
            "SELECT private, owner, members, seq FROM rooms WHERE name = ?",
            vec![room.into()],
        ))
        .await?;
    row.map(|r| {
        Ok((
            r.try_get::<i64>("", "private")? == 1,
            r.try_get("", "owner")?,
            r.try_get("", "members")?,
            r.try_get("", "seq")?,
        ))
    })
    .transpose()
}

/// Appends an entry (its frame cut around the seq) at the room's next
/// seq, keeping the room's last `max_len`; answers the seq and the frame.
pub(super) async fn append_entry(
    txn: &impl ConnectionTrait,
    room: &str,
    id: &str,
    head: &str,
    tail: &str,
    max_len: u64,
) -> Result<(i64, String), DbErr> {
    let row = txn
        .query_one_raw(stmt(
            "UPDATE rooms SET seq = seq + 1 WHERE name = ? RETURNING seq",
            vec![room.into()],
        ))
        .await?;
    let seq: i64 = row.map_or(Ok(0), |r| r.try_get_by_index(0))?;
    let frame = format!("{head}{seq}{tail}");
    txn.execute_raw(stmt(
        "INSERT INTO room_log (room, seq, id, frame) VALUES (?, ?, ?, ?)",
        vec![room.into(), seq.into(), id.into(), frame.clone().into()],
    ))
    .await?;
    let oldest_kept = seq - max_len.min(i64::MAX as u64) as i64;
    if oldest_kept > 0 {
        for sql in [
            "DELETE FROM room_log WHERE room = ? AND seq <= ?",
            "DELETE FROM room_quiet WHERE room = ? AND seq <= ?",
        ] {
            txn.execute_raw(stmt(sql, vec![room.into(), oldest_kept.into()]))
                .await?;
        }
    }
    Ok((seq, frame))
}

/// Entries of `room` after a marker at `read` that count as unread: the
/// last seq less the marker, less the quiet seqs (updates, deleted
/// messages) after it.
async fn unread_after(
    db: &impl ConnectionTrait,
    room: &str,
    last: i64,
    read: i64,
) -> Result<u64, DbErr> {
    let quiet: i64 = db
        .query_one_raw(stmt(
            "SELECT COUNT(*) FROM room_quiet WHERE room = ? AND seq > ?",
            vec![room.into(), read.into()],
        ))
        .await?
        .map_or(Ok(0), |r| r.try_get_by_index(0))?;
    Ok((last - read - quiet).max(0) as u64)
}

/// Moves `user`'s marker in `room` to `seq` (what they just did).
async fn mark_seen(
    txn: &impl ConnectionTrait,
    room: &str,
    user: &str,
    seq: i64,
) -> Result<(), DbErr> {
    txn.execute_raw(stmt(
        "UPDATE room_members SET read = ? WHERE room = ? AND user = ?",
        vec![seq.into(), room.into(), user.into()],
    ))
    .await
    .map(drop)
}

fn entries(rows: Vec<sea_orm::QueryResult>) -> Result<Vec<InboxEntry>, DbErr> {
    rows.iter()
        .map(|r| {
            Ok(InboxEntry {
                seq: r.try_get::<i64>("", "seq")? as u64,
                frame: r.try_get("", "frame")?,
            })
        })
        .collect()
}

impl SqliteStore {
    /// Publishes what a committed change announced; the change is stored
    /// already, so a failed live push is recovered by `sync`.
    async fn announce(&self, publishes: Publishes) {
        for (channel, payload) in publishes {
            let _ = self.inner.broker.publish(&channel, payload).await;
        }
    }

    /// Queues a membership change's webhook event in its transaction, when
    /// asked to.
    async fn queue_room_event(
        &self,
        txn: &impl ConnectionTrait,
        joined: bool,
        room: &str,
        user: &str,
        by: Option<&str>,
        seq: i64,
    ) -> Result<(), sea_orm::DbErr> {
        if !self
            .inner
            .room_events
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        let event = crate::webhooks::room_event(joined, room, user, by, seq.max(0) as u64);
        txn.execute_raw(stmt(
            "INSERT INTO webhooks (payload, queued_at) VALUES (?, ?)",
            vec![event.into(), super::int(crate::now_millis())],
        ))
        .await?;
        Ok(())
    }

    /// `room` exists and `user` is a member, or why not.
    async fn member_check(
        &self,
        db: &impl ConnectionTrait,
        room: &str,
        user: &str,
    ) -> Result<(), Refused> {
        if meta(db, room).await?.is_none() {
            return Err(RoomError::NotFound(room.to_owned()).into());
        }
        if member(db, room, user).await?.is_none() {
            return Err(RoomError::Forbidden(format!("not a member of room '{room}'")).into());
        }
        Ok(())
    }

    /// One join, creation or addition: the rules of `room_join.lua`, in
    /// its order, after the per-user limit the Redis engine checks first.
    async fn join_txn(
        &self,
        room: &str,
        user: &str,
        how: &Admission,
        create: Option<bool>,
    ) -> Result<(Option<u64>, Publishes), Refused> {
        let limits = self.inner.limits;
        let txn = self.inner.db.begin().await?;
        if member(&txn, room, user).await?.is_none() {
            let rooms_of_user: i64 = txn
                .query_one_raw(stmt(
                    "SELECT COUNT(*) FROM room_members WHERE user = ?",
                    vec![user.into()],
                ))
                .await?
                .map_or(Ok(0), |r| r.try_get_by_index(0))?;
            if rooms_of_user as u64 >= limits.rooms.rooms_per_user {
                let limit = limits.rooms.rooms_per_user;
                return Err(RoomError::TooManyRooms(user.to_owned(), limit).into());
            }
        }
        let existing = meta(&txn, room).await?;
        match (create, &existing, how) {
            (Some(_), Some(_), _) => return Err(RoomError::Exists(room.to_owned()).into()),
            (None, None, Admission::Added { .. } | Admission::Server { .. }) => {
                return Err(RoomError::NotFound(room.to_owned()).into());
            }
            _ => {}
        }
        if existing.is_none() {
            let private = i32::from(create == Some(true));
            txn.execute_raw(stmt(
                "INSERT INTO rooms (name, private) VALUES (?, ?)",
                vec![room.into(), private.into()],
            ))
            .await?;
        }
        let (private, owner, members, _) = meta(&txn, room).await?.unwrap_or_default();
        let mut role = Role::Member;
        // The caller's right first: an outsider learns nothing of who is in.
        if let Admission::Added { by, role: asked } = how {
            let Some((by_role, _)) = member(&txn, room, by).await? else {
                return Err(RoomError::Forbidden(format!(
                    "only members of room '{room}' may add members"
                ))
                .into());
            };
            if *asked == Role::Admin && by_role != Role::Owner {
                return Err(RoomError::Forbidden(format!(
                    "only the owner of room '{room}' may add admins"
                ))
                .into());
            }
            role = *asked;
        }
        if let Admission::Server { role: asked } = how {
            role = *asked;
        }
        if member(&txn, room, user).await?.is_some() {
            return Ok((None, Vec::new()));
        }
        if matches!(how, Admission::Join) && private && create.is_none() {
            return Err(RoomError::Forbidden(format!(
                "room '{room}' is private: a member must add you"
            ))
            .into());
        }
        if members as u64 >= limits.rooms.max_members {
            return Err(RoomError::Full(room.to_owned(), limits.rooms.max_members).into());
        }
        if owner.is_empty() {
            role = Role::Owner;
            txn.execute_raw(stmt(
                "UPDATE rooms SET owner = ? WHERE name = ?",
                vec![user.into(), room.into()],
            ))
            .await?;
        }
        let by = match how {
            Admission::Added { by, .. } => Some(by.as_str()),
            Admission::Server { .. } => Some(crate::SYSTEM),
            Admission::Join => None,
        };
        let (id, head, tail) = frames::member_event(true, room, user, by);
        let (seq, frame) = append_entry(&txn, room, &id, &head, &tail, limits.history_max).await?;
        txn.execute_raw(stmt(
            "INSERT INTO room_members (room, user, role, joined, read) VALUES (?, ?, ?, ?, ?)",
            vec![
                room.into(),
                user.into(),
                role.as_str().into(),
                seq.into(),
                seq.into(),
            ],
        ))
        .await?;
        txn.execute_raw(stmt(
            "UPDATE rooms SET members = members + 1 WHERE name = ?",
            vec![room.into()],
        ))
        .await?;
        if let Admission::Added { by, .. } = how {
            // The adder has seen what they did (as a sender their message).
            mark_seen(&txn, room, by, seq).await?;
        }
        self.queue_room_event(&txn, true, room, user, by, seq)
            .await?;
        txn.commit().await?;
        let control = Control::Joined {
            room: room.into(),
            seq: seq as u64,
        };
        Ok((
            Some(seq as u64),
            vec![
                (channel::room(room), envelope::text(&frame)),
                (channel::user(user), envelope::control(&control)),
            ],
        ))
    }

    /// A room deleted with everything it keeps (the rules of
    /// `room_delete.lua`): its former members, and their `left` controls.
    async fn delete_txn(&self, room: &str) -> Result<(Vec<String>, Publishes), Refused> {
        let txn = self.inner.db.begin().await?;
        let Some((_, _, _, seq)) = meta(&txn, room).await? else {
            return Err(RoomError::NotFound(room.to_owned()).into());
        };
        let members: Vec<String> = txn
            .query_all_raw(stmt(
                "SELECT user FROM room_members WHERE room = ?",
                vec![room.into()],
            ))
            .await?
            .iter()
            .map(|r| r.try_get::<String>("", "user"))
            .collect::<Result<_, _>>()?;
        for table in ["room_members", "room_log", "room_sent", "room_quiet"] {
            txn.execute_raw(stmt(
                &format!("DELETE FROM {table} WHERE room = ?"),
                vec![room.into()],
            ))
            .await?;
        }
        txn.execute_raw(stmt("DELETE FROM rooms WHERE name = ?", vec![room.into()]))
            .await?;
        if self
            .inner
            .room_events
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            let event = crate::webhooks::room_deleted(room, members.len());
            txn.execute_raw(stmt(
                "INSERT INTO webhooks (payload, queued_at) VALUES (?, ?)",
                vec![event.into(), super::int(crate::now_millis())],
            ))
            .await?;
        }
        txn.commit().await?;
        let control = Control::Left {
            room: room.into(),
            seq: seq.max(0) as u64 + 1,
        };
        let publishes = members
            .iter()
            .map(|user| (channel::user(user), envelope::control(&control)))
            .collect();
        Ok((members, publishes))
    }

    /// One leave or removal (the rules of `room_leave.lua`); `server`: by
    /// the application, no rights asked.
    async fn leave_txn(
        &self,
        room: &str,
        user: &str,
        by: Option<&str>,
        server: bool,
    ) -> Result<(Option<u64>, Publishes), Refused> {
        let txn = self.inner.db.begin().await?;
        if meta(&txn, room).await?.is_none() {
            return Err(RoomError::NotFound(room.to_owned()).into());
        }
        // The caller's right first: an outsider learns nothing of who is in.
        let mut by_role = None;
        if let Some(by) = by.filter(|by| *by != user && !server) {
            by_role = member(&txn, room, by).await?.map(|(r, _)| r);
            if !matches!(by_role, Some(Role::Owner | Role::Admin)) {
                return Err(RoomError::Forbidden(format!(
                    "only the owner and admins of room '{room}' remove members"
                ))
                .into());
            }
        }
        let Some((role, _)) = member(&txn, room, user).await? else {
            return Ok((None, Vec::new()));
        };
        if by_role == Some(Role::Admin) && role != Role::Member {
            return Err(RoomError::Forbidden(format!(
                "an admin of room '{room}' removes members only"
            ))
            .into());
        }
        let (id, head, tail) = frames::member_event(false, room, user, by);
        let (seq, frame) =
            append_entry(&txn, room, &id, &head, &tail, self.inner.limits.history_max).await?;
        if let Some(by) = by.filter(|by| *by != user && !server) {
            mark_seen(&txn, room, by, seq).await?;
        }
        txn.execute_raw(stmt(
            "DELETE FROM room_members WHERE room = ? AND user = ?",
            vec![room.into(), user.into()],
        ))
        .await?;
        txn.execute_raw(stmt(
            "UPDATE rooms SET members = members - 1 WHERE name = ?",
            vec![room.into()],
        ))
        .await?;
        if role == Role::Owner {
            // The admin who joined first, else the member who joined first.
            let heir = txn
                .query_one_raw(stmt(
                    "SELECT user FROM room_members WHERE room = ?
                     ORDER BY role = 'admin' DESC, joined LIMIT 1",
                    vec![room.into()],
                ))
                .await?
                .map(|r| r.try_get::<String>("", "user"))
                .transpose()?
                .unwrap_or_default();
            txn.execute_raw(stmt(
                "UPDATE rooms SET owner = ? WHERE name = ?",
                vec![heir.clone().into(), room.into()],
            ))
            .await?;
            txn.execute_raw(stmt(
                "UPDATE room_members SET role = 'owner' WHERE room = ? AND user = ?",
                vec![room.into(), heir.into()],
            ))
            .await?;
        }
        self.queue_room_event(&txn, false, room, user, by, seq)
            .await?;
        txn.commit().await?;
        let control = Control::Left {
            room: room.into(),
            seq: seq as u64,
        };
        Ok((
            Some(seq as u64),
            vec![
                (channel::room(room), envelope::text(&frame)),
                (channel::user(user), envelope::control(&control)),
            ],
        ))
    }

    /// One room message (the rules of `room_append.lua`).
    async fn append_txn(&self, message: &RoomSend) -> Result<(RoomAppended, Publishes), Refused> {
        let room = message.room.as_str();
        let txn = self.inner.db.begin().await?;
        if message.as_server {
            if meta(&txn, room).await?.is_none() {
                return Err(RoomError::NotFound(room.to_owned()).into());
            }
        } else {
            self.member_check(&txn, room, &message.from).await?;
        }
        let first = txn
            .query_one_raw(stmt(
                "SELECT seq, frame FROM room_sent WHERE room = ? AND user = ? AND client_id = ?",
                vec![
                    room.into(),
                    message.from.clone().into(),
                    message.client_id.clone().into(),
                ],
            ))
            .await?;
        if let Some(first) = first {
            let appended = RoomAppended {
                seq: first.try_get::<i64>("", "seq")? as u64,
                repeated: Some(first.try_get("", "frame")?),
            };
            return Ok((appended, Vec::new()));
        }
        let (seq, frame) = append_entry(
            &txn,
            room,
            &message.id,
            &message.head,
            &message.tail,
            self.inner.limits.history_max,
        )
        .await?;
        if let Some(original) = message.reply_to {
            txn.execute_raw(stmt(
                "UPDATE room_log SET reply_to = ? WHERE room = ? AND seq = ?",
                vec![int(original), room.into(), seq.into()],
            ))
            .await?;
        }
        if !message.as_server {
            mark_seen(&txn, room, &message.from, seq).await?;
        }
        txn.execute_raw(stmt(
            "INSERT INTO room_sent (room, user, client_id, seq, frame) VALUES (?, ?, ?, ?, ?)",
            vec![
                room.into(),
                message.from.clone().into(),
                message.client_id.clone().into(),
                seq.into(),
                frame.clone().into(),
            ],
        ))
        .await?;
        txn.execute_raw(stmt(
            "DELETE FROM room_sent WHERE room = ? AND seq <= ?",
            vec![room.into(), (seq - SENT_IDS_KEPT as i64).into()],
        ))
        .await?;
        if self
            .inner
            .offline_events
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            let job = crate::webhooks::room_message(
                room,
                seq.max(0) as u64,
                &message.id,
                &message.from,
                &frame,
            );
            txn.execute_raw(stmt(
                "INSERT INTO webhooks (payload, queued_at) VALUES (?, ?)",
                vec![job.into(), int(crate::now_millis())],
            ))
            .await?;
        }
        txn.commit().await?;
        let mut payload = message.envelope_header.clone();
        payload.extend_from_slice(frame.as_bytes());
        Ok((
            RoomAppended {
                seq: seq as u64,
                repeated: None,
            },
            vec![(channel::room(room), Bytes::from(payload))],
        ))
    }

    async fn read_txn(&self, room: &str, user: &str, up_to: &str) -> Result<RoomRead, Refused> {
        let txn = self.inner.db.begin().await?;
        let Some((_, _, members, last)) = meta(&txn, room).await? else {
            return Err(RoomError::NotFound(room.to_owned()).into());
        };
        let current: i64 = txn
            .query_one_raw(stmt(
                "SELECT read FROM room_members WHERE room = ? AND user = ?",
                vec![room.into(), user.into()],
            ))
            .await?
            .map(|r| r.try_get("", "read"))
            .transpose()?
            .ok_or_else(|| RoomError::Forbidden(format!("not a member of room '{room}'")))?;
        let Some(seq) = txn
            .query_one_raw(stmt(
                "SELECT seq FROM room_log WHERE room = ? AND id = ?",
                vec![room.into(), up_to.into()],
            ))
            .await?
            .map(|r| r.try_get::<i64>("", "seq"))
            .transpose()?
        else {
            return Ok(RoomRead::NotFound);
        };
        if seq <= current {
            return Ok(RoomRead::Stale {
                unread: unread_after(&txn, room, last, current).await?,
            });
        }
        txn.execute_raw(stmt(
            "UPDATE room_members SET read = ? WHERE room = ? AND user = ?",
            vec![seq.into(), room.into(), user.into()],
        ))
        .await?;
        let unread = unread_after(&txn, room, last, seq).await?;
        txn.commit().await?;
        Ok(RoomRead::Moved {
            unread,
            members: members.max(0) as u64,
        })
    }

    /// A page of a room's history, as member `user`.
    async fn page(
        &self,
        room: &str,
        user: &str,
        sql: &str,
        bound: i64,
        limit: usize,
    ) -> Result<Vec<InboxEntry>, Refused> {
        let db = &self.inner.db;
        self.member_check(db, room, user).await?;
        let rows = db
            .query_all_raw(stmt(
                sql,
                vec![room.into(), bound.into(), int(limit as u64)],
            ))
            .await?;
        Ok(entries(rows)?)
    }
}

/// `this` cloned into a boxed future, the write lock held for `f`.
fn writing<T, F, Fut>(
    this: &SqliteStore,
    what: &'static str,
    f: F,
) -> BoxFuture<'static, Result<T, RoomError>>
where
    T: Send + 'static,
    F: FnOnce(SqliteStore) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(T, Publishes), Refused>> + Send,
{
    let this = this.clone();
    async move {
        let _writer = this.inner.writer().await;
        let (answer, publishes) = f(this.clone()).await.map_err(|e| e.into_room(what))?;
        this.announce(publishes).await;
        Ok(answer)
    }
    .boxed()
}

impl RoomStore for SqliteStore {
    fn create_room(
        &self,
        room: &str,
        owner: &str,
        private: bool,
    ) -> BoxFuture<'static, Result<(), RoomError>> {
        let (room, owner) = (room.to_owned(), owner.to_owned());
        writing(self, "creating a room", move |this| async move {
            let (_, publishes) = this
                .join_txn(&room, &owner, &Admission::Join, Some(private))
                .await?;
            Ok(((), publishes))
        })
    }

    fn join_room(
        &self,
        room: &str,
        user: &str,
        how: Admission,
    ) -> BoxFuture<'static, Result<Option<u64>, RoomError>> {
        let (room, user) = (room.to_owned(), user.to_owned());
        writing(self, "joining a room", move |this| async move {
            this.join_txn(&room, &user, &how, None).await
        })
    }

    fn leave_room(
        &self,
        room: &str,
        user: &str,
        by: Option<&str>,
    ) -> BoxFuture<'static, Result<Option<u64>, RoomError>> {
        let (room, user, by) = (room.to_owned(), user.to_owned(), by.map(str::to_owned));
        writing(self, "leaving a room", move |this| async move {
            this.leave_txn(&room, &user, by.as_deref(), false).await
        })
    }

    fn delete_room(&self, room: &str) -> BoxFuture<'static, Result<Vec<String>, RoomError>> {
        let room = room.to_owned();
        writing(self, "deleting a room", move |this| async move {
            this.delete_txn(&room).await
        })
    }

    fn remove_as_server(
        &self,
        room: &str,
        user: &str,
    ) -> BoxFuture<'static, Result<Option<u64>, RoomError>> {
        let (room, user) = (room.to_owned(), user.to_owned());
        writing(self, "removing a member", move |this| async move {
            this.leave_txn(&room, &user, Some(crate::SYSTEM), true)
                .await
        })
    }

    fn set_role(
        &self,
        room: &str,
        user: &str,
        role: Role,
    ) -> BoxFuture<'static, Result<crate::rooms::RoleChange, RoomError>> {
        use crate::rooms::RoleChange;
        let (room, user) = (room.to_owned(), user.to_owned());
        writing(self, "changing a member's role", move |this| async move {
            let txn = this.inner.db.begin().await?;
            if meta(&txn, &room).await?.is_none() {
                return Err(RoomError::NotFound(room.clone()).into());
            }
            let current = txn
                .query_one_raw(stmt(
                    "SELECT role FROM room_members WHERE room = ? AND user = ?",
                    vec![room.clone().into(), user.clone().into()],
                ))
                .await?
                .map(|r| r.try_get::<String>("", "role"))
                .transpose()?;
            let change = match current.as_deref().map(Role::parse) {
                None => RoleChange::NotMember,
                Some(Some(Role::Owner)) => RoleChange::Owner,
                Some(Some(now)) if now == role => RoleChange::Same,
                Some(_) => {
                    txn.execute_raw(stmt(
                        "UPDATE room_members SET role = ? WHERE room = ? AND user = ?",
                        vec![
                            role.as_str().into(),
                            room.clone().into(),
                            user.clone().into(),
                        ],
                    ))
                    .await?;
                    RoleChange::Changed
                }
            };
            txn.commit().await?;
            Ok((change, Vec::new()))
        })
    }

    fn room_files(
        &self,
        room: &str,
    ) -> BoxFuture<'static, Result<Vec<(String, String)>, RoomError>> {
        let (this, room) = (self.clone(), room.to_owned());
        async move {
            let run = async {
                let db = &this.inner.db;
                if meta(db, &room).await?.is_none() {
                    return Err(RoomError::NotFound(room.clone()).into());
                }
                let rows = db
                    .query_all_raw(stmt(
                        "SELECT frame FROM room_log WHERE room = ?
                           AND json_valid(frame) AND json_extract(frame, '$.media.id') IS NOT NULL",
                        vec![room.clone().into()],
                    ))
                    .await?;
                let frames = rows
                    .iter()
                    .map(|r| r.try_get::<String>("", "frame"))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok::<_, Refused>(crate::rooms::files_of(frames.iter().map(String::as_str)))
            };
            run.await.map_err(|e| e.into_room("reading a room's files"))
        }
        .boxed()
    }

    fn append_room(
        &self,
        message: RoomSend,
    ) -> BoxFuture<'static, Result<RoomAppended, RoomError>> {
        writing(self, "storing a room message", move |this| async move {
            this.append_txn(&message).await
        })
    }

    fn room_since(
        &self,
        room: &str,
        user: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<InboxEntry>, RoomError>> {
        let (this, room, user) = (self.clone(), room.to_owned(), user.to_owned());
        async move {
            let after = after.min(i64::MAX as u64) as i64;
            this.page(
                &room,
                &user,
                "SELECT seq, frame FROM room_log WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?",
                after,
                limit,
            )
            .await
            .map_err(|e| e.into_room("reading a room"))
        }
        .boxed()
    }

    fn room_history(
        &self,
        room: &str,
        user: &str,
        before: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<InboxEntry>, RoomError>> {
        let (this, room, user) = (self.clone(), room.to_owned(), user.to_owned());
        async move {
            let before = before.map_or(i64::MAX, |b| b.min(i64::MAX as u64) as i64);
            this.page(
                &room,
                &user,
                "SELECT seq, frame FROM room_log WHERE room = ? AND seq < ?
                 ORDER BY seq DESC LIMIT ?",
                before,
                limit,
            )
            .await
            .map_err(|e| e.into_room("reading a room"))
        }
        .boxed()
    }

    fn mark_room_read(
        &self,
        room: &str,
        user: &str,
        up_to: &str,
    ) -> BoxFuture<'static, Result<RoomRead, RoomError>> {
        let (room, user, up_to) = (room.to_owned(), user.to_owned(), up_to.to_owned());
        writing(self, "marking a room read", move |this| async move {
            Ok((this.read_txn(&room, &user, &up_to).await?, Vec::new()))
        })
    }

    fn room_names(&self, user: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            let rows = this
                .inner
                .db
                .query_all_raw(stmt(
                    "SELECT room FROM room_members WHERE user = ? ORDER BY room",
                    vec![user.into()],
                ))
                .await
                .map_err(|e| failed("reading rooms", e))?;
            rows.iter()
                .map(|r| r.try_get("", "room"))
                .collect::<Result<_, DbErr>>()
                .map_err(|e| failed("reading rooms", e))
        }
        .boxed()
    }

    fn room_unread(&self, user: &str) -> BoxFuture<'static, Result<RoomUnread, StoreError>> {
        let list = self.room_list(user);
        async move {
            Ok(list
                .await?
                .into_iter()
                .map(|summary| (summary.room, summary.unread))
                .collect())
        }
        .boxed()
    }

    fn room_list(&self, user: &str) -> BoxFuture<'static, Result<Vec<RoomSummary>, StoreError>> {
        let (this, user) = (self.clone(), user.to_owned());
        async move {
            let rows = this
                .inner
                .db
                .query_all_raw(stmt(
                    "SELECT m.room, m.role, r.private,
                       r.seq - m.read - (SELECT COUNT(*) FROM room_quiet q
                         WHERE q.room = m.room AND q.seq > m.read) AS unread,
                       (SELECT frame FROM room_log l WHERE l.room = m.room
                        ORDER BY l.seq DESC LIMIT 1) AS last
                     FROM room_members m JOIN rooms r ON r.name = m.room
                     WHERE m.user = ? ORDER BY m.room",
                    vec![user.into()],
                ))
                .await
                .map_err(|e| failed("reading rooms", e))?;
            rows.iter()
                .map(|r| {
                    let role: String = r.try_get("", "role")?;
                    Ok(RoomSummary {
                        room: r.try_get("", "room")?,
                        unread: r.try_get::<i64>("", "unread")?.max(0) as u64,
                        last: r.try_get("", "last")?,
                        private: r.try_get::<i64>("", "private")? == 1,
                        role: Role::parse(&role).unwrap_or(Role::Member),
                    })
                })
                .collect::<Result<_, DbErr>>()
                .map_err(|e| failed("reading rooms", e))
        }
        .boxed()
    }

    fn room_info(
        &self,
        room: &str,
        viewer: Option<&str>,
    ) -> BoxFuture<'static, Result<(RoomInfo, Vec<Member>), RoomError>> {
        let (this, room, viewer) = (self.clone(), room.to_owned(), viewer.map(str::to_owned));
        async move {
            let run = async {
                let db = &this.inner.db;
                let Some((private, owner, members, last)) = meta(db, &room).await? else {
                    return Err(RoomError::NotFound(room.clone()).into());
                };
                let outsider = match &viewer {
                    Some(user) => member(db, &room, user).await?.is_none(),
                    None => false,
                };
                if private && outsider {
                    return Err(RoomError::Forbidden(format!(
                        "room '{room}' is private: only its members see it"
                    ))
                    .into());
                }
                let rows = db
                    .query_all_raw(stmt(
                        "SELECT user, role FROM room_members WHERE room = ?",
                        vec![room.clone().into()],
                    ))
                    .await?;
                let mut list = rows
                    .iter()
                    .map(|r| {
                        let role: String = r.try_get("", "role")?;
                        Ok(Member {
                            user: r.try_get("", "user")?,
                            role: Role::parse(&role).unwrap_or(Role::Member),
                        })
                    })
                    .collect::<Result<Vec<_>, DbErr>>()?;
                list.sort_by(|a, b| b.role.cmp(&a.role).then_with(|| a.user.cmp(&b.user)));
                let info = RoomInfo {
                    name: room.clone(),
                    private,
                    owner: (!owner.is_empty()).then_some(owner),
                    members: members.max(0) as u64,
                    last_seq: last.max(0) as u64,
                };
                Ok::<_, Refused>((info, list))
            };
            run.await.map_err(|e| e.into_room("reading a room"))
        }
        .boxed()
    }
}
