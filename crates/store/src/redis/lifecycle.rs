//! The message lifecycle on Redis ([`crate::lifecycle`]): load the message,
//! apply the rules in Rust, write it back with a compare-and-set script
//! (loaded again when the message moved meanwhile).

use std::sync::LazyLock;

use chat_broker::channel;
use chat_broker::redis::Connection;
use chat_protocol::{ChatMessage, Quote, ServerFrame};
use futures_util::future::BoxFuture;

use super::messages::{Inner, RedisStore};
use super::rooms::{Answer, call};
use super::script::{Call, Loaded, Lua, flag, lua};

mod cluster;
use crate::StoreError;
use crate::lifecycle::{
    self, Change, ChangeError, ChangeRequest, Changed, Conversation, Lifecycle,
};

static ROOM_LOAD: LazyLock<Loaded<RoomLoad>> = LazyLock::new(Loaded::new);
static ROOM_CHANGE: LazyLock<Loaded<RoomChange>> = LazyLock::new(Loaded::new);
static DM_LOAD: LazyLock<Loaded<DmLoad>> = LazyLock::new(Loaded::new);
static DM_CHANGE: LazyLock<Loaded<DmChange>> = LazyLock::new(Loaded::new);

/// Loads before giving up when the message keeps changing under us.
const ATTEMPTS: usize = 8;

/// `room_load.lua`: a room message (and its replies) as stored.
struct RoomLoad {
    meta: String,
    members: String,
    log: String,
    ids: String,
    replies: String,
    user: String,
    id: String,
    with_replies: bool,
}

impl Lua for RoomLoad {
    const NAME: &'static str = "room_load";
    const SOURCE: &'static str = lua!("room_load");

    fn push(&self, call: &mut Call) {
        call.key("meta", &self.meta)
            .key("members", &self.members)
            .key("log", &self.log)
            .key("ids", &self.ids)
            .key("replies", &self.replies)
            .arg("user", &self.user)
            .arg("id", &self.id)
            .arg("with_replies", flag(self.with_replies));
    }
}

/// `room_change.lua`: writes a changed message back, appends its update.
struct RoomChange {
    meta: String,
    members: String,
    log: String,
    ids: String,
    updates: String,
    quiet: String,
    replies: String,
    sent: String,
    user: String,
    id: String,
    seq: u64,
    old: String,
    new: String,
    deleted: bool,
    head: String,
    tail: String,
    max_len: u64,
    envelope: Vec<u8>,
    room_channel: String,
    rewrites: String,
}

impl Lua for RoomChange {
    const NAME: &'static str = "room_change";
    const SOURCE: &'static str = lua!("room_change");

    fn push(&self, call: &mut Call) {
        call.key("meta", &self.meta)
            .key("members", &self.members)
            .key("log", &self.log)
            .key("ids", &self.ids)
            .key("updates", &self.updates)
            .key("quiet", &self.quiet)
            .key("replies", &self.replies)
            .key("sent", &self.sent)
            .arg("user", &self.user)
            .arg("id", &self.id)
            .arg("seq", self.seq)
            .arg("old", &self.old)
            .arg("new", &self.new)
            .arg("deleted", flag(self.deleted))
            .arg("head", &self.head)
            .arg("tail", &self.tail)
            .arg("max_len", self.max_len)
            .arg("envelope", &self.envelope[..])
            .arg("room_channel", &self.room_channel)
            .arg("rewrites", &self.rewrites);
    }
}

/// `dm_load.lua`: a direct message (and its replies) as stored.
struct DmLoad {
    conv: String,
    msgs: String,
    replies: String,
    id: String,
    with_replies: bool,
}

impl Lua for DmLoad {
    const NAME: &'static str = "dm_load";
    const SOURCE: &'static str = lua!("dm_load");

    fn push(&self, call: &mut Call) {
        call.key("conv", &self.conv)
            .key("msgs", &self.msgs)
            .key("replies", &self.replies)
            .arg("id", &self.id)
            .arg("with_replies", flag(self.with_replies));
    }
}

/// `dm_change.lua`: writes a changed direct message back, appends its updates.
struct DmChange {
    conv: String,
    msgs: String,
    replies: String,
    seq_r: String,
    inbox_r: String,
    seq_s: String,
    inbox_s: String,
    offline_r: String,
    unread_r: String,
    read_pos_r: String,
    sent_s: String,
    sent_r: String,
    offline_s: String,
    id: String,
    sender: String,
    rewrites: String,
    deleted: bool,
    to_self: bool,
    head_r: String,
    tail_r: String,
    head_s: String,
    tail_s: String,
    max_len: u64,
    envelope: Vec<u8>,
    channel_r: String,
    channel_s: String,
    unread_head: String,
    unread_tail: String,
}

impl Lua for DmChange {
    const NAME: &'static str = "dm_change";
    const SOURCE: &'static str = lua!("dm_change");

    fn push(&self, call: &mut Call) {
        call.key("conv", &self.conv)
            .key("msgs", &self.msgs)
            .key("replies", &self.replies)
            .key("seq_r", &self.seq_r)
            .key("inbox_r", &self.inbox_r)
            .key("seq_s", &self.seq_s)
            .key("inbox_s", &self.inbox_s)
            .key("offline_r", &self.offline_r)
            .key("unread_r", &self.unread_r)
            .key("read_pos_r", &self.read_pos_r)
            .key("sent_s", &self.sent_s)
            .key("sent_r", &self.sent_r)
            .key("offline_s", &self.offline_s)
            .arg("id", &self.id)
            .arg("sender", &self.sender)
            .arg("rewrites", &self.rewrites)
            .arg("deleted", flag(self.deleted))
            .arg("to_self", flag(self.to_self))
            .arg("head_r", &self.head_r)
            .arg("tail_r", &self.tail_r)
            .arg("head_s", &self.head_s)
            .arg("tail_s", &self.tail_s)
            .arg("max_len", self.max_len)
            .arg("envelope", &self.envelope[..])
            .arg("channel_r", &self.channel_r)
            .arg("channel_s", &self.channel_s)
            .arg("unread_head", &self.unread_head)
            .arg("unread_tail", &self.unread_tail);
    }
}

/// A direct message as loaded: its history entry (`"{position} {JSON}"`),
/// where it is in the conversation and in each inbox.
struct DirectEntry {
    entry: String,
    message: ChatMessage,
    pos: u64,
    seq_r: u64,
    seq_s: u64,
}

impl DirectEntry {
    /// Its seq in `user`'s inbox (0 for none): the receiver's, or the
    /// sender's copy.
    fn seq_in(&self, user: &str) -> u64 {
        if self.message.from == user && self.message.to.as_deref() != Some(user) {
            self.seq_s
        } else {
            self.seq_r
        }
    }

    /// From a `msgs` record and history entry.
    fn parse(record: &str, entry: String) -> Option<Self> {
        let mut numbers = record.split(' ').map(|n| n.parse::<u64>().ok());
        let (pos, seq_r, seq_s) = (numbers.next()??, numbers.next()??, numbers.next()??);
        let (_, json) = entry.split_once(' ')?;
        let message = lifecycle::parse_message(json)?;
        Some(Self {
            entry,
            message,
            pos,
            seq_r,
            seq_s,
        })
    }
}

/// What a change that changes nothing answers: `entry` as `actor` sees it
/// (at its seq in their inbox).
fn unchanged(entry: DirectEntry, actor: &str) -> Changed {
    let seq = entry.seq_in(actor);
    Changed {
        message: ChatMessage {
            seq: (seq > 0).then_some(seq),
            ..entry.message
        },
        update_seq: None,
        removed_media: None,
    }
}

/// A room message as loaded: the actor's role, where it is, its frame, and
/// the replies to it (`seq`, frame) when asked for.
struct RoomEntry {
    admin: bool,
    seq: u64,
    frame: String,
    message: ChatMessage,
    replies: Vec<(u64, String)>,
}

impl Inner {
    fn room_load_call(&self, room: &str, user: &str, id: &str, with_replies: bool) -> RoomLoad {
        let keys = &self.keys;
        RoomLoad {
            meta: keys.room("meta", room),
            members: keys.room("members", room),
            log: keys.room("log", room),
            ids: keys.room("ids", room),
            replies: keys.room("replies", room),
            user: user.to_owned(),
            id: id.to_owned(),
            with_replies,
        }
    }

    async fn room_entry(
        &self,
        conn: &mut Connection,
        room: &str,
        user: &str,
        id: &str,
        with_replies: bool,
    ) -> Result<RoomEntry, ChangeError> {
        let call = self.room_load_call(room, user, id, with_replies);
        let answer: Answer = ROOM_LOAD
            .invoke(&call, conn)
            .await
            .map_err(|e| super::unavailable("room message", e))?;
        match answer.outcome().as_str() {
            "found" => {}
            "not_found" => return Err(ChangeError::NotFound(format!("no room '{room}'"))),
            "forbidden" => {
                return Err(ChangeError::Forbidden(format!(
                    "not a member of room '{room}'"
                )));
            }
            _ => return Err(no_message(id, room)),
        }
        let frame = answer.text(3);
        let message = lifecycle::parse_message(&frame).ok_or_else(|| no_message(id, room))?;
        let role = answer.text(1);
        let replies = (4..answer.len())
            .step_by(2)
            .map(|at| (answer.number(at), answer.text(at + 1)))
            .collect();
        Ok(RoomEntry {
            admin: role == "admin" || role == "owner",
            seq: answer.number(2),
            frame,
            message,
            replies,
        })
    }

    /// One attempt at a room change: `Ok(None)` when the message moved
    /// between the load and the write.
    async fn room_change_once(
        &self,
        conn: &mut Connection,
        room: &str,
        request: &ChangeRequest,
    ) -> Result<Option<Changed>, ChangeError> {
        let deleting = request.change == Change::Delete;
        let entry = self
            .room_entry(conn, room, &request.actor, &request.message, deleting)
            .await?;
        let Some(next) = lifecycle::apply(
            &entry.message,
            &request.actor,
            entry.admin,
            &request.change,
            request.now,
        )?
        else {
            return Ok(Some(Changed {
                message: entry.message,
                update_seq: None,
                removed_media: None,
            }));
        };
        let removed_media = lifecycle::removed_media(&entry.message, &next);
        let rewrites: Vec<(u64, String, String)> = if deleting {
            entry
                .replies
                .into_iter()
                .filter_map(|(seq, frame)| {
                    let reply = lifecycle::unquote(&lifecycle::parse_message(&frame)?);
                    Some((seq, frame, ServerFrame::Message(reply).to_json()))
                })
                .collect()
        } else {
            Vec::new()
        };
        let (head, tail) = lifecycle::update_template(&next);
        let keys = &self.keys;
        let call = RoomChange {
            meta: keys.room("meta", room),
            members: keys.room("members", room),
            log: keys.room("log", room),
            ids: keys.room("ids", room),
            updates: keys.room("updates", room),
            quiet: keys.room("quiet", room),
            replies: keys.room("replies", room),
            sent: keys.room("sent", room),
            user: request.actor.clone(),
            id: request.message.clone(),
            seq: entry.seq,
            old: entry.frame,
            new: ServerFrame::Message(next.clone()).to_json(),
            deleted: deleting,
            head,
            tail,
            max_len: self.limits.history_max,
            envelope: request.envelope_header.clone(),
            room_channel: keys.channel(&channel::room(room)),
            rewrites: rewrites_json(&rewrites),
        };
        let answer: Answer = ROOM_CHANGE
            .invoke(&call, conn)
            .await
            .map_err(|e| super::unavailable("room change", e))?;
        match answer.outcome().as_str() {
            "changed" => Ok(Some(Changed {
                message: next,
                update_seq: Some(answer.number(1)),
                removed_media,
            })),
            "conflict" => Ok(None),
            "not_found" => Err(ChangeError::NotFound(format!("no room '{room}'"))),
            _ => Err(ChangeError::Forbidden(format!(
                "not a member of room '{room}'"
            ))),
        }
    }
}

impl Inner {
    /// Direct message `id` between `actor` and `peer`, with the replies
    /// to it when asked for.
    async fn direct_load(
        &self,
        conn: &mut Connection,
        actor: &str,
        peer: &str,
        id: &str,
        with_replies: bool,
    ) -> Result<(DirectEntry, Vec<DirectEntry>), ChangeError> {
        let (a, b) = crate::conversation(actor, peer);
        // The actor's copy (on one Redis, the only one).
        let call = DmLoad {
            conv: self.keys.copy(actor, "conv", &a, &b),
            msgs: self.keys.copy(actor, "msgs", &a, &b),
            replies: self.keys.copy(actor, "replies", &a, &b),
            id: id.to_owned(),
            with_replies,
        };
        let answer: Answer = DM_LOAD
            .invoke(&call, conn)
            .await
            .map_err(|e| super::unavailable("message", e))?;
        let not_found = || {
            ChangeError::NotFound(format!(
                "no message '{id}' in the conversation with '{peer}'"
            ))
        };
        if answer.outcome() != "found" {
            return Err(not_found());
        }
        let entry = DirectEntry::parse(&answer.text(1), answer.text(2)).ok_or_else(not_found)?;
        let replies = (3..answer.len())
            .step_by(2)
            .filter_map(|at| DirectEntry::parse(&answer.text(at), answer.text(at + 1)))
            .collect();
        Ok((entry, replies))
    }

    async fn direct_entry(
        &self,
        conn: &mut Connection,
        actor: &str,
        peer: &str,
        id: &str,
    ) -> Result<DirectEntry, ChangeError> {
        Ok(self.direct_load(conn, actor, peer, id, false).await?.0)
    }

    /// One attempt at a change of a direct message: `Ok(None)` when it
    /// moved between the load and the write.
    async fn direct_change_once(
        &self,
        conn: &mut Connection,
        peer: &str,
        request: &ChangeRequest,
    ) -> Result<Option<Changed>, ChangeError> {
        if self.keys.cluster() {
            return self.direct_change_on_cluster(conn, peer, request).await;
        }
        let deleting = request.change == Change::Delete;
        let actor = &request.actor;
        let (entry, replies) = self
            .direct_load(conn, actor, peer, &request.message, deleting)
            .await?;
        let original = &entry.message;
        let Some(next) = lifecycle::apply(original, actor, false, &request.change, request.now)?
        else {
            return Ok(Some(unchanged(entry, actor)));
        };
        let removed_media = lifecycle::removed_media(original, &next);
        let sender = original.from.clone();
        let receiver = original.to.clone().unwrap_or_default();
        let to_self = sender == receiver;
        // Each inbox holds the message (and its replies) at its own seq.
        let rewrite = |entry: &DirectEntry, message: &ChatMessage| {
            let (seq_r, seq_s) = if entry.message.from == sender {
                (entry.seq_r, entry.seq_s)
            } else {
                (entry.seq_s, entry.seq_r)
            };
            let at = |seq: u64| {
                ServerFrame::Message(ChatMessage {
                    seq: Some(seq),
                    ..message.clone()
                })
                .to_json()
            };
            let mut history = message.clone();
            history.seq = None;
            serde_json::json!([
                entry.pos,
                entry.entry,
                format!("{} {}", entry.pos, lifecycle::to_json(&history)),
                seq_r,
                at(seq_r),
                seq_s,
                at(seq_s),
            ])
        };
        let mut rewrites = vec![rewrite(&entry, &next)];
        if deleting {
            rewrites.extend(
                replies
                    .iter()
                    .map(|reply| rewrite(reply, &lifecycle::unquote(&reply.message))),
            );
        }
        let template = |seq: u64| {
            lifecycle::update_template(&ChatMessage {
                seq: (seq > 0).then_some(seq),
                ..next.clone()
            })
        };
        let (head_r, tail_r) = template(entry.seq_r);
        let (head_s, tail_s) = template(entry.seq_s);
        let (unread_head, unread_tail) = crate::frames::unread_template(&sender);
        let (a, b) = crate::conversation(&sender, &receiver);
        let keys = &self.keys;
        let call = DmChange {
            conv: keys.pair("conv", &a, &b),
            msgs: keys.pair("msgs", &a, &b),
            replies: keys.pair("replies", &a, &b),
            seq_r: keys.user("seq", &receiver),
            inbox_r: keys.user("inbox", &receiver),
            seq_s: keys.user("seq", &sender),
            inbox_s: keys.user("inbox", &sender),
            offline_r: keys.user("offline", &receiver),
            unread_r: keys.user("unread", &receiver),
            read_pos_r: keys.user("read_pos", &receiver),
            sent_s: keys.user("sent", &sender),
            sent_r: keys.user("sent", &receiver),
            offline_s: keys.user("offline", &sender),
            id: request.message.clone(),
            sender: sender.clone(),
            rewrites: serde_json::Value::Array(rewrites).to_string(),
            deleted: deleting,
            to_self,
            head_r,
            tail_r,
            head_s,
            tail_s,
            max_len: self.limits.history_max,
            envelope: request.envelope_header.clone(),
            channel_r: keys.channel(&channel::user(&receiver)),
            channel_s: keys.channel(&channel::user(&sender)),
            unread_head,
            unread_tail,
        };
        let answer: Answer = DM_CHANGE
            .invoke(&call, conn)
            .await
            .map_err(|e| super::unavailable("change", e))?;
        if answer.outcome() != "changed" {
            return Ok(None);
        }
        // The actor sees the message, and its update, in their own inbox.
        let mine_is_s = *actor == sender && !to_self;
        let (seq, update) = if mine_is_s {
            (entry.seq_s, answer.number(2))
        } else {
            (entry.seq_r, answer.number(1))
        };
        Ok(Some(Changed {
            message: ChatMessage {
                seq: (seq > 0).then_some(seq),
                ..next
            },
            update_seq: Some(update),
            removed_media,
        }))
    }
}

/// `[[seq, old, new], ...]` as the change script decodes it.
fn rewrites_json(rewrites: &[(u64, String, String)]) -> String {
    // unwrap: numbers and strings only.
    #[allow(clippy::unwrap_used)]
    serde_json::to_string(rewrites).unwrap()
}

fn no_message(id: &str, room: &str) -> ChangeError {
    ChangeError::NotFound(format!("no message '{id}' in room '{room}'"))
}

impl Lifecycle for RedisStore {
    fn change(&self, request: ChangeRequest) -> BoxFuture<'static, Result<Changed, ChangeError>> {
        call(self, "change", move |inner, mut conn| async move {
            for _ in 0..ATTEMPTS {
                let once = match &request.conversation {
                    Conversation::Room(room) => {
                        inner.room_change_once(&mut conn, room, &request).await?
                    }
                    Conversation::Direct(peer) => {
                        inner.direct_change_once(&mut conn, peer, &request).await?
                    }
                };
                if let Some(changed) = once {
                    return Ok(changed);
                }
            }
            Err(ChangeError::Store(StoreError::Unavailable(format!(
                "message '{}' kept changing; try again",
                request.message
            ))))
        })
    }

    fn quote(
        &self,
        actor: &str,
        conversation: &Conversation,
        id: &str,
    ) -> BoxFuture<'static, Result<(Quote, u64), ChangeError>> {
        let (actor, conversation, id) = (actor.to_owned(), conversation.clone(), id.to_owned());
        call(self, "quote", move |inner, mut conn| async move {
            match &conversation {
                Conversation::Room(room) => {
                    let entry = inner
                        .room_entry(&mut conn, room, &actor, &id, false)
                        .await?;
                    Ok((lifecycle::quote(&entry.message), entry.seq))
                }
                Conversation::Direct(peer) => {
                    let entry = inner.direct_entry(&mut conn, &actor, peer, &id).await?;
                    Ok((lifecycle::quote(&entry.message), entry.pos))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::script::legend;

    #[test]
    fn every_lifecycle_script_is_called_as_its_legend_says() {
        legend::check(&DmLoad {
            conv: "c".into(),
            msgs: "m".into(),
            replies: "r".into(),
            id: "01J".into(),
            with_replies: false,
        });
        legend::check(&DmChange {
            conv: "c".into(),
            msgs: "m".into(),
            replies: "r".into(),
            seq_r: "sr".into(),
            inbox_r: "ir".into(),
            seq_s: "ss".into(),
            inbox_s: "is".into(),
            offline_r: "o".into(),
            unread_r: "u".into(),
            read_pos_r: "rp".into(),
            sent_s: "s".into(),
            sent_r: "sr".into(),
            offline_s: "os".into(),
            id: "01J".into(),
            sender: "alice".into(),
            rewrites: "[]".into(),
            deleted: true,
            to_self: false,
            head_r: "h".into(),
            tail_r: "t".into(),
            head_s: "h".into(),
            tail_s: "t".into(),
            max_len: 10,
            envelope: vec![b'T'],
            channel_r: "user:bob".into(),
            channel_s: "user:alice".into(),
            unread_head: "h".into(),
            unread_tail: "t".into(),
        });
        legend::check(&RoomLoad {
            meta: "m".into(),
            members: "mb".into(),
            log: "l".into(),
            ids: "i".into(),
            replies: "r".into(),
            user: "alice".into(),
            id: "01J".into(),
            with_replies: true,
        });
        legend::check(&RoomChange {
            meta: "m".into(),
            members: "mb".into(),
            log: "l".into(),
            ids: "i".into(),
            updates: "u".into(),
            quiet: "q".into(),
            replies: "r".into(),
            sent: "s".into(),
            user: "alice".into(),
            id: "01J".into(),
            seq: 3,
            old: "{}".into(),
            new: "{}".into(),
            deleted: false,
            head: "h".into(),
            tail: "t".into(),
            max_len: 10,
            envelope: vec![b'T'],
            room_channel: "room:r".into(),
            rewrites: "[]".into(),
        });
    }
}
