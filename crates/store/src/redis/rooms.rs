//! The Redis room store (keys in [`crate::redis`]): every write to a room
//! is one script on the room's keys (one hash slot); the user's room index
//! (`rooms:{user}`, another slot) is written right after it, and a join or
//! leave repeated after a failure repairs it.

use std::collections::HashMap;
use std::sync::LazyLock;

use chat_broker::redis::Connection;
use chat_broker::{channel, envelope};
use futures_util::future::BoxFuture;

use super::messages::{Inner, RedisStore};
use super::script::{Call, Loaded, Lua, flag, lua};
use super::{Keys, with_conn};
use crate::messages::{InboxEntry, SENT_IDS_KEPT, SENT_IDS_TTL};
use crate::rooms::{
    Admission, Member, Role, RoomError, RoomInfo, RoomRead, RoomSend, RoomStore, RoomSummary,
    RoomUnread,
};
use crate::{StoreError, frames};

// The room scripts, loaded once per process (the message store's own
// scripts live in its state; these are kept here so that module needs
// nothing of this one).
static ROOM_JOIN: LazyLock<Loaded<Join>> = LazyLock::new(Loaded::new);
static ROOM_LEAVE: LazyLock<Loaded<Leave>> = LazyLock::new(Loaded::new);
static ROOM_APPEND: LazyLock<Loaded<Append>> = LazyLock::new(Loaded::new);
static ROOM_READ: LazyLock<Loaded<Read>> = LazyLock::new(Loaded::new);
static ROOM_DELETE: LazyLock<Loaded<Delete>> = LazyLock::new(Loaded::new);
static ROOM_ROLE: LazyLock<Loaded<SetRole>> = LazyLock::new(Loaded::new);

/// `room_role.lua`: gives a member another role.
struct SetRole {
    meta: String,
    members: String,
    user: String,
    role: &'static str,
}

impl Lua for SetRole {
    const NAME: &'static str = "room_role";
    const SOURCE: &'static str = lua!("room_role");

    fn push(&self, call: &mut Call) {
        call.key("meta", &self.meta)
            .key("members", &self.members)
            .arg("user", &self.user)
            .arg("role", self.role);
    }
}

/// The keys every room script starts with.
struct RoomKeys {
    meta: String,
    members: String,
    read: String,
    log: String,
    ids: String,
}

impl RoomKeys {
    fn of(keys: &Keys, room: &str) -> Self {
        Self {
            meta: keys.room("meta", room),
            members: keys.room("members", room),
            read: keys.room("read", room),
            log: keys.room("log", room),
            ids: keys.room("ids", room),
        }
    }

    fn push(&self, call: &mut Call) {
        call.key("meta", &self.meta)
            .key("members", &self.members)
            .key("read", &self.read)
            .key("log", &self.log)
            .key("ids", &self.ids);
    }
}

/// `room_join.lua`: makes a user a member.
struct Join {
    keys: RoomKeys,
    room: String,
    user: String,
    mode: &'static str,
    by: String,
    role: &'static str,
    private: bool,
    max_members: u64,
    max_len: u64,
    id: String,
    head: String,
    tail: String,
    envelope: Vec<u8>,
    control: Vec<u8>,
    room_channel: String,
    user_channel: String,
}

impl Lua for Join {
    const NAME: &'static str = "room_join";
    const SOURCE: &'static str = lua!("room_join");

    fn push(&self, call: &mut Call) {
        self.keys.push(call);
        call.arg("room", &self.room)
            .arg("user", &self.user)
            .arg("mode", self.mode)
            .arg("by", &self.by)
            .arg("role", self.role)
            .arg("private", flag(self.private))
            .arg("max_members", self.max_members)
            .arg("max_len", self.max_len)
            .arg("id", &self.id)
            .arg("head", &self.head)
            .arg("tail", &self.tail)
            .arg("envelope", &self.envelope[..])
            .arg("control", &self.control[..])
            .arg("room_channel", &self.room_channel)
            .arg("user_channel", &self.user_channel);
    }
}

/// `room_leave.lua`: ends a membership.
struct Leave {
    keys: RoomKeys,
    room: String,
    user: String,
    by: String,
    max_len: u64,
    id: String,
    head: String,
    tail: String,
    envelope: Vec<u8>,
    control: Vec<u8>,
    room_channel: String,
    user_channel: String,
    server: bool,
}

/// `room_delete.lua`: deletes a room.
struct Delete {
    keys: RoomKeys,
    updates: String,
    quiet: String,
    replies: String,
    sent: String,
    sent_order: String,
    room: String,
    control: Vec<u8>,
    user_prefix: String,
}

impl Lua for Delete {
    const NAME: &'static str = "room_delete";
    const SOURCE: &'static str = lua!("room_delete");

    fn push(&self, call: &mut Call) {
        self.keys.push(call);
        call.key("updates", &self.updates)
            .key("quiet", &self.quiet)
            .key("replies", &self.replies)
            .key("sent", &self.sent)
            .key("sent_order", &self.sent_order)
            .arg("room", &self.room)
            .arg("control", &self.control[..])
            .arg("user_prefix", &self.user_prefix);
    }
}

impl Lua for Leave {
    const NAME: &'static str = "room_leave";
    const SOURCE: &'static str = lua!("room_leave");

    fn push(&self, call: &mut Call) {
        self.keys.push(call);
        call.arg("room", &self.room)
            .arg("user", &self.user)
            .arg("by", &self.by)
            .arg("max_len", self.max_len)
            .arg("id", &self.id)
            .arg("head", &self.head)
            .arg("tail", &self.tail)
            .arg("envelope", &self.envelope[..])
            .arg("control", &self.control[..])
            .arg("room_channel", &self.room_channel)
            .arg("user_channel", &self.user_channel)
            .arg("server", flag(self.server));
    }
}

/// `room_append.lua`: stores and publishes a room message.
struct Append {
    keys: RoomKeys,
    sent: String,
    sent_order: String,
    sender: String,
    id: String,
    client_key: String,
    head: String,
    tail: String,
    max_len: u64,
    sent_max: usize,
    sent_ttl_s: u64,
    envelope: Vec<u8>,
    room_channel: String,
    replies: String,
    reply_seq: String,
    as_server: bool,
}

impl Lua for Append {
    const NAME: &'static str = "room_append";
    const SOURCE: &'static str = lua!("room_append");

    fn push(&self, call: &mut Call) {
        self.keys.push(call);
        call.key("sent", &self.sent)
            .key("sent_order", &self.sent_order)
            .key("replies", &self.replies)
            .arg("sender", &self.sender)
            .arg("id", &self.id)
            .arg("client_key", &self.client_key)
            .arg("head", &self.head)
            .arg("tail", &self.tail)
            .arg("max_len", self.max_len)
            .arg("sent_max", self.sent_max)
            .arg("sent_ttl_s", self.sent_ttl_s)
            .arg("envelope", &self.envelope[..])
            .arg("room_channel", &self.room_channel)
            .arg("reply_seq", &self.reply_seq)
            .arg("as_server", flag(self.as_server));
    }
}

/// `room_read.lua`: moves a member's read marker.
struct Read {
    meta: String,
    members: String,
    read: String,
    ids: String,
    quiet: String,
    user: String,
    up_to: String,
}

impl Lua for Read {
    const NAME: &'static str = "room_read";
    const SOURCE: &'static str = lua!("room_read");

    fn push(&self, call: &mut Call) {
        call.key("meta", &self.meta)
            .key("members", &self.members)
            .key("read", &self.read)
            .key("ids", &self.ids)
            .key("quiet", &self.quiet)
            .arg("user", &self.user)
            .arg("up_to", &self.up_to);
    }
}

/// A script's answer: its outcome word, then values (as many as the
/// outcome has).
pub(super) struct Answer(Vec<redis::Value>);

impl redis::FromRedisValue for Answer {
    fn from_redis_value(value: redis::Value) -> Result<Self, redis::ParsingError> {
        Ok(Answer(Vec::from_redis_value(value)?))
    }
}

impl Answer {
    pub(super) fn outcome(&self) -> String {
        self.text(0)
    }

    /// How many values, the outcome word included.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn number(&self, at: usize) -> u64 {
        self.0
            .get(at)
            .and_then(|v| redis::from_redis_value_ref::<u64>(v).ok())
            .unwrap_or(0)
    }

    pub(super) fn text(&self, at: usize) -> String {
        self.0
            .get(at)
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .unwrap_or_default()
    }
}

fn forbidden(answer: &Answer, fallback: &str) -> RoomError {
    let why = answer.text(1);
    RoomError::Forbidden(if why.is_empty() {
        fallback.to_owned()
    } else {
        why
    })
}

impl Inner {
    fn room_join_call(&self, room: &str, user: &str, mode: &'static str, how: &Admission) -> Join {
        let keys = &self.keys;
        let (by, role) = match how {
            Admission::Added { by, role } => (by.clone(), role.as_str()),
            Admission::Server { role } => (crate::SYSTEM.to_owned(), role.as_str()),
            Admission::Join => (String::new(), Role::Member.as_str()),
        };
        let (id, head, tail) =
            frames::member_event(true, room, user, (!by.is_empty()).then_some(by.as_str()));
        Join {
            keys: RoomKeys::of(keys, room),
            room: room.to_owned(),
            user: user.to_owned(),
            mode,
            by,
            role,
            private: false,
            max_members: self.limits.rooms.max_members,
            max_len: self.limits.history_max,
            id,
            head,
            tail,
            envelope: envelope::text_header(),
            control: envelope::control_header(),
            room_channel: keys.channel(&channel::room(room)),
            user_channel: keys.user_channel_in_script(user),
        }
    }

    fn room_delete_call(&self, room: &str) -> Delete {
        let keys = &self.keys;
        Delete {
            keys: RoomKeys::of(keys, room),
            updates: keys.room("updates", room),
            quiet: keys.room("quiet", room),
            replies: keys.room("replies", room),
            sent: keys.room("sent", room),
            sent_order: keys.room("sent_order", room),
            room: room.to_owned(),
            control: envelope::control_header(),
            user_prefix: if keys.cluster() {
                String::new()
            } else {
                keys.channel(&channel::user(""))
            },
        }
    }

    fn room_leave_call(&self, room: &str, user: &str, by: Option<&str>, server: bool) -> Leave {
        let keys = &self.keys;
        let (id, head, tail) = frames::member_event(false, room, user, by);
        Leave {
            keys: RoomKeys::of(keys, room),
            room: room.to_owned(),
            user: user.to_owned(),
            by: by.unwrap_or_default().to_owned(),
            server,
            max_len: self.limits.history_max,
            id,
            head,
            tail,
            envelope: envelope::text_header(),
            control: envelope::control_header(),
            room_channel: keys.channel(&channel::room(room)),
            user_channel: keys.user_channel_in_script(user),
        }
    }

    fn room_append_call(&self, message: RoomSend) -> Append {
        let keys = &self.keys;
        Append {
            keys: RoomKeys::of(keys, &message.room),
            sent: keys.room("sent", &message.room),
            sent_order: keys.room("sent_order", &message.room),
            // Length-prefixed: user ids may hold spaces, and `a` sending
            // `b c` must not be `a b` sending `c`.
            client_key: format!(
                "{}:{} {}",
                message.from.len(),
                message.from,
                message.client_id
            ),
            sender: message.from,
            id: message.id,
            head: message.head,
            tail: message.tail,
            max_len: self.limits.history_max,
            sent_max: SENT_IDS_KEPT,
            sent_ttl_s: SENT_IDS_TTL.as_secs(),
            envelope: message.envelope_header,
            room_channel: keys.channel(&channel::room(&message.room)),
            replies: keys.room("replies", &message.room),
            reply_seq: message.reply_to.map(|s| s.to_string()).unwrap_or_default(),
            as_server: message.as_server,
        }
    }

    /// Notes `room` in `user`'s index before the join runs, refusing a
    /// user at their limit of rooms (unless it is there already); answers
    /// whether it was added (to take it out again if the join is refused).
    /// Written first so that a crash after the join leaves no member the
    /// index misses (their connections would not follow the room); an entry
    /// left by a crash before it is dropped when the index is next read.
    async fn note_room(
        &self,
        conn: &mut Connection,
        room: &str,
        user: &str,
    ) -> Result<bool, RoomError> {
        let index = self.keys.of("rooms", user);
        let (noted, count): (bool, u64) = redis::pipe()
            .sismember(&index, room)
            .scard(&index)
            .query_async(conn)
            .await
            .map_err(|e| super::unavailable("rooms", e))?;
        if noted {
            return Ok(false);
        }
        let limit = self.limits.rooms.rooms_per_user;
        if count >= limit {
            return Err(RoomError::TooManyRooms(user.to_owned(), limit));
        }
        redis::cmd("SADD")
            .arg(&index)
            .arg(room)
            .query_async::<i64>(conn)
            .await
            .map_err(|e| super::unavailable("SADD", e))?;
        Ok(true)
    }

    /// Runs a join (of mode `mode`), keeping the user's room index.
    async fn run_join(
        &self,
        conn: &mut Connection,
        call: Join,
        private: bool,
    ) -> Result<Option<u64>, RoomError> {
        let (room, user) = (call.room.clone(), call.user.clone());
        let by = (!call.by.is_empty()).then(|| call.by.clone());
        let noted = self.note_room(conn, &room, &user).await?;
        let call = Join { private, ..call };
        let answer = ROOM_JOIN.invoke::<Answer>(&call, conn).await;
        let refused = match &answer {
            Ok(answer) => match answer.outcome().as_str() {
                "joined" => {
                    let seq = answer.number(1);
                    self.control_after_script(conn, &user, '+', seq, &room)
                        .await;
                    self.room_event(conn, true, &room, &user, by.as_deref(), seq)
                        .await;
                    return Ok(Some(seq));
                }
                "already" => return Ok(None),
                "exists" => RoomError::Exists(room.clone()),
                "not_found" => RoomError::NotFound(room.clone()),
                "full" => RoomError::Full(room.clone(), self.limits.rooms.max_members),
                _ => forbidden(answer, "not allowed"),
            },
            Err(e) => RoomError::Store(super::unavailable("join", e)),
        };
        if noted && !matches!(refused, RoomError::Store(_)) {
            // Best effort: an entry left here is dropped when next read.
            let _ = redis::cmd("SREM")
                .arg(self.keys.of("rooms", &user))
                .arg(&room)
                .query_async::<i64>(conn)
                .await;
        }
        Err(refused)
    }

    /// Queues a membership change's webhook event, when asked to: after the
    /// room's script (which touches the room's keys only, one hash slot),
    /// so a crash in between loses it. Best effort: logged when it fails.
    async fn room_event(
        &self,
        conn: &mut Connection,
        joined: bool,
        room: &str,
        user: &str,
        by: Option<&str>,
        seq: u64,
    ) {
        if !self.room_events.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let event = crate::webhooks::room_event(joined, room, user, by, seq);
        self.queue_after_script(conn, room, event).await;
    }

    /// On a cluster, tells `user`'s connections to follow (`sign` `+`) or
    /// stop following (`-`) `room` from `seq` on: the control a room's
    /// script publishes itself on one Redis, published here right after it,
    /// because the user's channel lives in another slot. A crash in between
    /// loses it, as Redis loses a publish to a node that is away: the user's
    /// connections then follow the change when they next connect. Nothing
    /// on one Redis. Best effort: logged when it fails.
    async fn control_after_script(
        &self,
        conn: &mut Connection,
        user: &str,
        sign: char,
        seq: u64,
        room: &str,
    ) {
        if !self.keys.cluster() {
            return;
        }
        let mut payload = envelope::control_header();
        payload.extend_from_slice(format!("{sign}{seq} {room}").as_bytes());
        let published = redis::cmd("SPUBLISH")
            .arg(self.keys.channel(&channel::user(user)))
            .arg(payload)
            .query_async::<i64>(conn)
            .await;
        if let Err(e) = published {
            tracing::warn!(room, user, error = %e, "a room control was not published");
        }
    }

    /// On a cluster, tells every one of `members` to stop following the
    /// deleted `room` from `seq` on ([`Inner::control_after_script`]), one
    /// pipeline per member's slot, all at once: a room may have 100 000
    /// members. Best effort: logged when it fails.
    async fn controls_after_delete(
        &self,
        conn: &Connection,
        members: &[String],
        seq: u64,
        room: &str,
    ) {
        if !self.keys.cluster() || members.is_empty() {
            return;
        }
        let mut payload = envelope::control_header();
        payload.extend_from_slice(format!("-{seq} {room}").as_bytes());
        let groups = members.iter().map(|user| {
            let mut pipe = redis::pipe();
            pipe.cmd("SPUBLISH")
                .arg(self.keys.channel(&channel::user(user)))
                .arg(&payload);
            pipe
        });
        if let Err(e) = super::grouped::<(i64,)>(conn, groups.collect()).await {
            tracing::warn!(room, error = %e, "a deleted room's controls were not all published");
        }
    }

    /// Queues `event` of `room` for the webhook receiver after the room's
    /// script (which stays in the room's hash slot), so a crash in between
    /// loses it. Best effort: logged when it fails.
    async fn queue_after_script(&self, conn: &mut Connection, room: &str, event: String) {
        let queued = redis::cmd("XADD")
            .arg(self.keys.queue("webhooks"))
            .arg("*")
            .arg("e")
            .arg(event)
            .query_async::<()>(conn)
            .await;
        if let Err(e) = queued {
            tracing::warn!(room, error = %e, "a room's webhook event was not queued");
        }
    }

    /// For each `(room, last seq, marker)`, how many of the room's quiet
    /// seqs (updates, deleted messages: never unread) come after the
    /// marker; asked only of rooms with entries after it.
    async fn quiet_after(&self, marks: &[(String, u64, u64)]) -> Result<Vec<u64>, StoreError> {
        let mut counts = vec![0; marks.len()];
        let behind: Vec<usize> = (0..marks.len())
            .filter(|&i| marks[i].1 > marks[i].2)
            .collect();
        if behind.is_empty() {
            return Ok(counts);
        }
        let groups = behind.iter().map(|&i| {
            let (room, _, read) = &marks[i];
            let mut pipe = redis::pipe();
            pipe.zcount(self.keys.room("quiet", room), format!("({read}"), "+inf");
            pipe
        });
        let query = super::grouped::<(u64,)>(&self.redis, groups.collect());
        let quiet = tokio::time::timeout(super::COMMAND_TIMEOUT, query)
            .await
            .map_err(|e| super::unavailable("unread", e))?
            .map_err(|e| super::unavailable("unread", e))?;
        for (i, (n,)) in behind.into_iter().zip(quiet) {
            counts[i] = n;
        }
        Ok(counts)
    }

    /// Whether `room` exists and `user` is a member: `Err` unless both.
    async fn member_check(
        &self,
        conn: &mut Connection,
        room: &str,
        user: &str,
    ) -> Result<(), RoomError> {
        let (exists, member): (bool, bool) = redis::pipe()
            .exists(self.keys.room("meta", room))
            .hexists(self.keys.room("members", room), user)
            .query_async(conn)
            .await
            .map_err(|e| super::unavailable("room", e))?;
        if !exists {
            return Err(RoomError::NotFound(room.to_owned()));
        }
        if !member {
            return Err(RoomError::Forbidden(format!(
                "not a member of room '{room}'"
            )));
        }
        Ok(())
    }
}

/// Entries from `ZRANGEBYSCORE … WITHSCORES`.
fn entries(raw: Vec<(String, f64)>) -> Vec<InboxEntry> {
    raw.into_iter()
        .map(|(frame, seq)| InboxEntry {
            seq: seq as u64,
            frame,
        })
        .collect()
}

fn role_of(entry: &str) -> Role {
    entry
        .split(' ')
        .next()
        .and_then(Role::parse)
        .unwrap_or(Role::Member)
}

/// Runs `f` on the store's connection, bounded like every call (a call
/// that takes too long is `E`'s store error, unavailable).
pub(super) fn call<T, E, F, Fut>(
    store: &RedisStore,
    what: &'static str,
    f: F,
) -> BoxFuture<'static, Result<T, E>>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce(std::sync::Arc<Inner>, Connection) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, E>> + Send + 'static,
{
    let inner = std::sync::Arc::clone(store.inner());
    let conn = inner.redis.clone();
    Box::pin(async move {
        match tokio::time::timeout(super::COMMAND_TIMEOUT, f(inner, conn)).await {
            Ok(result) => result,
            Err(e) => Err(E::from(super::unavailable(what, e))),
        }
    })
}

impl RedisStore {
    /// A leave or a removal (`server`: by the application, no rights asked).
    fn leave(
        &self,
        room: &str,
        user: &str,
        by: Option<&str>,
        server: bool,
    ) -> BoxFuture<'static, Result<Option<u64>, RoomError>> {
        let (room, user, by) = (room.to_owned(), user.to_owned(), by.map(str::to_owned));
        call(self, "leave", move |inner, mut conn| async move {
            let leave = inner.room_leave_call(&room, &user, by.as_deref(), server);
            let answer: Answer = ROOM_LEAVE
                .invoke(&leave, &mut conn)
                .await
                .map_err(|e| super::unavailable("leave", e))?;
            let left = match answer.outcome().as_str() {
                "left" => Some(answer.number(1)),
                "absent" => None,
                "not_found" => return Err(RoomError::NotFound(room)),
                _ => return Err(forbidden(&answer, "not allowed")),
            };
            // Queued before anything else can fail: the membership changed.
            if let Some(seq) = left {
                inner
                    .control_after_script(&mut conn, &user, '-', seq, &room)
                    .await;
                inner
                    .room_event(&mut conn, false, &room, &user, by.as_deref(), seq)
                    .await;
            }
            redis::cmd("SREM")
                .arg(inner.keys.of("rooms", &user))
                .arg(&room)
                .query_async::<i64>(&mut conn)
                .await
                .map_err(|e| super::unavailable("SREM", e))?;
            Ok(left)
        })
    }
}

impl RoomStore for RedisStore {
    fn create_room(
        &self,
        room: &str,
        owner: &str,
        private: bool,
    ) -> BoxFuture<'static, Result<(), RoomError>> {
        let (room, owner) = (room.to_owned(), owner.to_owned());
        call(self, "create", move |inner, mut conn| async move {
            let join = inner.room_join_call(&room, &owner, "create", &Admission::Join);
            inner.run_join(&mut conn, join, private).await.map(drop)
        })
    }

    fn join_room(
        &self,
        room: &str,
        user: &str,
        how: Admission,
    ) -> BoxFuture<'static, Result<Option<u64>, RoomError>> {
        let (room, user) = (room.to_owned(), user.to_owned());
        call(self, "join", move |inner, mut conn| async move {
            let mode = match how {
                Admission::Join => "join",
                Admission::Added { .. } => "add",
                Admission::Server { .. } => "server",
            };
            let join = inner.room_join_call(&room, &user, mode, &how);
            inner.run_join(&mut conn, join, false).await
        })
    }

    fn leave_room(
        &self,
        room: &str,
        user: &str,
        by: Option<&str>,
    ) -> BoxFuture<'static, Result<Option<u64>, RoomError>> {
        self.leave(room, user, by, false)
    }

    fn remove_as_server(
        &self,
        room: &str,
        user: &str,
    ) -> BoxFuture<'static, Result<Option<u64>, RoomError>> {
        self.leave(room, user, Some(crate::SYSTEM), true)
    }

    fn delete_room(&self, room: &str) -> BoxFuture<'static, Result<Vec<String>, RoomError>> {
        let room = room.to_owned();
        call(self, "delete", move |inner, mut conn| async move {
            let delete = inner.room_delete_call(&room);
            let answer: Vec<String> = ROOM_DELETE
                .invoke(&delete, &mut conn)
                .await
                .map_err(|e| super::unavailable("delete", e))?;
            if answer.first().map(String::as_str) != Some("deleted") {
                return Err(RoomError::NotFound(room));
            }
            let seq: u64 = answer.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            let members = answer.get(2..).unwrap_or_default().to_vec();
            if inner.room_events.load(std::sync::atomic::Ordering::Relaxed) {
                let event = crate::webhooks::room_deleted(&room, members.len());
                inner.queue_after_script(&mut conn, &room, event).await;
            }
            inner
                .controls_after_delete(&conn, &members, seq, &room)
                .await;
            // Each member's index of rooms, outside the room's hash slot
            // (an entry left by a failure here is dropped when next read).
            let groups = members.iter().map(|user| {
                let mut pipe = redis::pipe();
                pipe.cmd("SREM")
                    .arg(inner.keys.of("rooms", user))
                    .arg(&room);
                pipe
            });
            super::grouped::<(i64,)>(&conn, groups.collect())
                .await
                .map_err(|e| super::unavailable("SREM", e))?;
            Ok(members)
        })
    }

    fn set_role(
        &self,
        room: &str,
        user: &str,
        role: Role,
    ) -> BoxFuture<'static, Result<crate::rooms::RoleChange, RoomError>> {
        let (room, user) = (room.to_owned(), user.to_owned());
        call(self, "room role", move |inner, mut conn| async move {
            let set = SetRole {
                meta: inner.keys.room("meta", &room),
                members: inner.keys.room("members", &room),
                user,
                role: role.as_str(),
            };
            let answer: String = ROOM_ROLE
                .invoke(&set, &mut conn)
                .await
                .map_err(|e| super::unavailable("room role", e))?;
            use crate::rooms::RoleChange;
            match answer.as_str() {
                "changed" => Ok(RoleChange::Changed),
                "same" => Ok(RoleChange::Same),
                "not_member" => Ok(RoleChange::NotMember),
                "owner" => Ok(RoleChange::Owner),
                _ => Err(RoomError::NotFound(room)),
            }
        })
    }

    fn room_files(
        &self,
        room: &str,
    ) -> BoxFuture<'static, Result<Vec<(String, String)>, RoomError>> {
        let room = room.to_owned();
        call(self, "room files", move |inner, mut conn| async move {
            let (exists, log): (bool, Vec<String>) = redis::pipe()
                .exists(inner.keys.room("meta", &room))
                .zrange(inner.keys.room("log", &room), 0, -1)
                .query_async(&mut conn)
                .await
                .map_err(|e| super::unavailable("room files", e))?;
            if !exists {
                return Err(RoomError::NotFound(room));
            }
            Ok(crate::rooms::files_of(log.iter().map(String::as_str)))
        })
    }

    fn append_room(
        &self,
        message: RoomSend,
    ) -> BoxFuture<'static, Result<crate::rooms::RoomAppended, RoomError>> {
        call(self, "room send", move |inner, mut conn| async move {
            let room = message.room.clone();
            let from = message.from.clone();
            let offline = inner
                .offline_events
                .load(std::sync::atomic::Ordering::Relaxed)
                .then(|| {
                    (
                        message.id.clone(),
                        message.head.clone(),
                        message.tail.clone(),
                    )
                });
            let append = inner.room_append_call(message);
            let answer: Answer = ROOM_APPEND
                .invoke(&append, &mut conn)
                .await
                .map_err(|e| super::unavailable("room send", e))?;
            match answer.outcome().as_str() {
                "stored" => {
                    let seq = answer.number(1);
                    super::replicated(&conn, &[&inner.keys.room("meta", &room)])
                        .await
                        .map_err(|e| super::unavailable("room send", e))?;
                    if let Some((id, head, tail)) = offline {
                        let frame = format!("{head}{seq}{tail}");
                        let job = crate::webhooks::room_message(&room, seq, &id, &from, &frame);
                        inner.queue_after_script(&mut conn, &room, job).await;
                    }
                    Ok(crate::rooms::RoomAppended {
                        seq,
                        repeated: None,
                    })
                }
                "repeated" => Ok(crate::rooms::RoomAppended {
                    seq: answer.number(1),
                    repeated: Some(answer.text(2)),
                }),
                "not_found" => Err(RoomError::NotFound(room)),
                _ => Err(RoomError::Forbidden(format!(
                    "'{from}' is not a member of room '{room}'"
                ))),
            }
        })
    }

    fn room_since(
        &self,
        room: &str,
        user: &str,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<InboxEntry>, RoomError>> {
        let (room, user) = (room.to_owned(), user.to_owned());
        call(self, "room sync", move |inner, mut conn| async move {
            inner.member_check(&mut conn, &room, &user).await?;
            let raw: Vec<(String, f64)> = redis::cmd("ZRANGEBYSCORE")
                .arg(inner.keys.room("log", &room))
                .arg(format!("({after}"))
                .arg("+inf")
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(limit)
                .query_async(&mut conn)
                .await
                .map_err(|e| super::unavailable("room sync", e))?;
            Ok(entries(raw))
        })
    }

    fn room_history(
        &self,
        room: &str,
        user: &str,
        before: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<InboxEntry>, RoomError>> {
        let (room, user) = (room.to_owned(), user.to_owned());
        call(self, "room history", move |inner, mut conn| async move {
            inner.member_check(&mut conn, &room, &user).await?;
            let top = before.map_or_else(|| "+inf".to_owned(), |b| format!("({b}"));
            let raw: Vec<(String, f64)> = redis::cmd("ZREVRANGEBYSCORE")
                .arg(inner.keys.room("log", &room))
                .arg(top)
                .arg("-inf")
                .arg("WITHSCORES")
                .arg("LIMIT")
                .arg(0)
                .arg(limit)
                .query_async(&mut conn)
                .await
                .map_err(|e| super::unavailable("room history", e))?;
            Ok(entries(raw))
        })
    }

    fn mark_room_read(
        &self,
        room: &str,
        user: &str,
        up_to: &str,
    ) -> BoxFuture<'static, Result<RoomRead, RoomError>> {
        let (room, user, up_to) = (room.to_owned(), user.to_owned(), up_to.to_owned());
        call(self, "room read", move |inner, mut conn| async move {
            let read = Read {
                meta: inner.keys.room("meta", &room),
                members: inner.keys.room("members", &room),
                read: inner.keys.room("read", &room),
                ids: inner.keys.room("ids", &room),
                quiet: inner.keys.room("quiet", &room),
                user: user.clone(),
                up_to,
            };
            let answer: Answer = ROOM_READ
                .invoke(&read, &mut conn)
                .await
                .map_err(|e| super::unavailable("room read", e))?;
            match answer.outcome().as_str() {
                "moved" => Ok(RoomRead::Moved {
                    unread: answer.number(1),
                    members: answer.number(2),
                }),
                "stale" => Ok(RoomRead::Stale {
                    unread: answer.number(1),
                }),
                "not_found" => Ok(RoomRead::NotFound),
                "no_room" => Err(RoomError::NotFound(room)),
                _ => Err(RoomError::Forbidden(format!(
                    "'{user}' is not a member of room '{room}'"
                ))),
            }
        })
    }

    fn room_names(&self, user: &str) -> BoxFuture<'static, Result<Vec<String>, StoreError>> {
        let (key, user) = (self.inner().keys.of("rooms", user), user.to_owned());
        with_conn(
            self.inner(),
            &self.inner().redis,
            "rooms",
            move |inner, mut conn| async move {
                let mut rooms: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await?;
                rooms.sort();
                if rooms.is_empty() {
                    return Ok(rooms);
                }
                // The room's member hash is the truth; the index can hold
                // a room a crash or a failed SREM left behind.
                let groups = rooms.iter().map(|room| {
                    let mut pipe = redis::pipe();
                    pipe.hexists(inner.keys.room("members", room), &user);
                    pipe
                });
                let member = super::grouped::<(bool,)>(&conn, groups.collect()).await?;
                let (kept, stale): (Vec<_>, Vec<_>) =
                    rooms.into_iter().zip(member).partition(|(_, (m,))| *m);
                if !stale.is_empty() {
                    let stale: Vec<String> = stale.into_iter().map(|(r, _)| r).collect();
                    redis::cmd("SREM")
                        .arg(&key)
                        .arg(&stale)
                        .query_async::<i64>(&mut conn)
                        .await?;
                }
                Ok(kept.into_iter().map(|(r, _)| r).collect())
            },
        )
    }

    fn room_unread(&self, user: &str) -> BoxFuture<'static, Result<RoomUnread, StoreError>> {
        let user = user.to_owned();
        let names = self.room_names(&user);
        let inner = std::sync::Arc::clone(self.inner());
        Box::pin(async move {
            let rooms = names.await?;
            if rooms.is_empty() {
                return Ok(RoomUnread::new());
            }
            // Two numbers per room: nothing else is read on every connect.
            let groups = rooms.iter().map(|room| {
                let mut pipe = redis::pipe();
                pipe.hget(inner.keys.room("meta", room), "seq")
                    .hget(inner.keys.room("read", room), &user);
                pipe
            });
            let query =
                super::grouped::<(Option<u64>, Option<u64>)>(&inner.redis, groups.collect());
            let counts = tokio::time::timeout(super::COMMAND_TIMEOUT, query)
                .await
                .map_err(|e| super::unavailable("unread", e))?
                .map_err(|e| super::unavailable("unread", e))?;
            let counts: Vec<(String, u64, u64)> = rooms
                .into_iter()
                .zip(counts)
                .filter_map(|(room, (seq, read))| Some((room, seq?, read?)))
                .collect();
            let quiet = inner.quiet_after(&counts).await?;
            Ok(counts
                .into_iter()
                .zip(quiet)
                .map(|((room, seq, read), quiet)| (room, seq.saturating_sub(read + quiet)))
                .collect())
        })
    }

    fn room_list(&self, user: &str) -> BoxFuture<'static, Result<Vec<RoomSummary>, StoreError>> {
        let user = user.to_owned();
        let names = self.room_names(&user);
        let inner = std::sync::Arc::clone(self.inner());
        Box::pin(async move {
            let rooms = names.await?;
            if rooms.is_empty() {
                return Ok(Vec::new());
            }
            let groups = rooms.iter().map(|room| {
                let mut pipe = redis::pipe();
                pipe.cmd("HMGET")
                    .arg(inner.keys.room("meta", room))
                    .arg("seq")
                    .arg("private")
                    .hget(inner.keys.room("read", room), &user)
                    .hget(inner.keys.room("members", room), &user)
                    .cmd("ZRANGE")
                    .arg(inner.keys.room("log", room))
                    .arg(-1)
                    .arg(-1);
                pipe
            });
            type Row = (
                (Option<u64>, Option<String>),
                Option<u64>,
                Option<String>,
                Vec<String>,
            );
            let query = super::grouped::<Row>(&inner.redis, groups.collect());
            let rows = tokio::time::timeout(super::COMMAND_TIMEOUT, query)
                .await
                .map_err(|e| super::unavailable("rooms", e))?
                .map_err(|e| super::unavailable("rooms", e))?;
            let marks: Vec<(String, u64, u64)> = rooms
                .iter()
                .zip(&rows)
                .map(|(room, ((seq, _), read, _, _))| {
                    (room.clone(), seq.unwrap_or(0), read.unwrap_or(0))
                })
                .collect();
            let quiet = inner.quiet_after(&marks).await?;
            Ok(rooms
                .into_iter()
                .zip(rows)
                .zip(quiet)
                .filter_map(
                    |((room, ((seq, private), read, member, mut last)), quiet)| {
                        // The index may name a room the user just left.
                        let member = member?;
                        Some(RoomSummary {
                            unread: seq.unwrap_or(0).saturating_sub(read.unwrap_or(0) + quiet),
                            last: last.pop(),
                            private: private.as_deref() == Some("1"),
                            role: role_of(&member),
                            room,
                        })
                    },
                )
                .collect())
        })
    }

    fn room_info(
        &self,
        room: &str,
        viewer: Option<&str>,
    ) -> BoxFuture<'static, Result<(RoomInfo, Vec<Member>), RoomError>> {
        let (room, viewer) = (room.to_owned(), viewer.map(str::to_owned));
        call(self, "room", move |inner, mut conn| async move {
            let (meta, members): (HashMap<String, String>, HashMap<String, String>) = redis::pipe()
                .hgetall(inner.keys.room("meta", &room))
                .hgetall(inner.keys.room("members", &room))
                .query_async(&mut conn)
                .await
                .map_err(|e| super::unavailable("room", e))?;
            if meta.is_empty() {
                return Err(RoomError::NotFound(room));
            }
            let private = meta.get("private").map(String::as_str) == Some("1");
            if private && viewer.is_some_and(|user| !members.contains_key(&user)) {
                return Err(RoomError::Forbidden(format!(
                    "room '{room}' is private: only its members see it"
                )));
            }
            let owner = meta.get("owner").filter(|o| !o.is_empty()).cloned();
            let number = |field: &str| meta.get(field).and_then(|v| v.parse().ok()).unwrap_or(0);
            let info = RoomInfo {
                private,
                owner,
                members: number("members"),
                last_seq: number("seq"),
                name: room,
            };
            let mut list: Vec<Member> = members
                .into_iter()
                .map(|(user, entry)| Member {
                    role: role_of(&entry),
                    user,
                })
                .collect();
            list.sort_by(|a, b| b.role.cmp(&a.role).then_with(|| a.user.cmp(&b.user)));
            Ok((info, list))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;
    use crate::redis::script::legend;

    #[tokio::test]
    async fn every_room_script_is_called_as_its_legend_says() {
        let store = RedisStore::on(
            chat_broker::redis::command_connection("redis://127.0.0.1:1/").expect("lazy"),
            "p:",
            Limits::default(),
        );
        let inner = store.inner();
        legend::check(&inner.room_join_call("r", "bob", "join", &Admission::Join));
        legend::check(&inner.room_leave_call("r", "bob", Some("alice"), false));
        legend::check(&inner.room_delete_call("r"));
        legend::check(&SetRole {
            meta: "m".into(),
            members: "b".into(),
            user: "bob".into(),
            role: "admin",
        });
        legend::check(&inner.room_append_call(RoomSend {
            room: "r".into(),
            id: "01J".into(),
            from: "bob".into(),
            client_id: "c1".into(),
            head: "{".into(),
            tail: "}".into(),
            envelope_header: vec![b'T'],
            reply_to: Some(2),
            as_server: false,
        }));
        legend::check(&Read {
            meta: "m".into(),
            members: "ms".into(),
            read: "r".into(),
            ids: "i".into(),
            quiet: "q".into(),
            user: "bob".into(),
            up_to: "01J".into(),
        });
    }

    #[test]
    fn on_a_cluster_every_key_of_a_room_is_in_the_slot_of_its_channel() {
        use chat_broker::redis::partitions::slot;
        let keys = Keys::new("t1:", true);
        let kinds = [
            "meta",
            "members",
            "read",
            "log",
            "ids",
            "updates",
            "quiet",
            "replies",
            "sent",
            "sent_order",
        ];
        let mut slots = std::collections::HashSet::new();
        for room in ["général", "a}b", "x{y", "lobby", "b"] {
            let channel = keys.channel(&channel::room(room));
            let want = slot(channel.as_bytes());
            slots.insert(want);
            for kind in kinds {
                let key = keys.room(kind, room);
                assert_eq!(slot(key.as_bytes()), want, "{key} and {channel}");
            }
        }
        assert!(slots.len() > 1, "rooms spread over partitions: {slots:?}");
    }

    #[test]
    fn every_key_of_a_room_shares_its_hash_tag() {
        let keys = Keys::new("t1:", false);
        for room in ["général", "a}b", "x{y"] {
            let calls = [
                keys.room("meta", room),
                keys.room("log", room),
                keys.room("sent_order", room),
            ];
            let tag = |key: &str| {
                let open = key.find('{').expect("a tag");
                let close = key[open + 1..].find('}').expect("closed") + open + 1;
                key[open + 1..close].to_owned()
            };
            assert!(calls.iter().all(|k| tag(k) == tag(&calls[0])), "{calls:?}");
        }
    }
}
