//! Direct messages on a Redis Cluster: two single-slot steps per message.
//!
//! On one Redis a direct message is one script over the receiver's keys,
//! the sender's and their shared conversation (`append.lua`). On a cluster
//! each user keeps their own copy of the conversation in their own slot
//! ([`super::super::Keys::copy`]), and a message is written in order:
//!
//! 0. a send the sender already made (same client id) answers the first;
//! 1. the message's position in the conversation is reserved (`INCR` of the
//!    conversation's counter, kept in the slot of the first of the two
//!    names), so both copies hold it at the same position and a history
//!    cursor means the same place for both users;
//! 2. the receiver's side (`dm_receive.lua`): inbox, unread count, offline
//!    list, their copy, the publishes; a retry after a crash finds the
//!    first send there (by sender and client id) and goes on with it;
//! 3. the sender's side (`dm_keep.lua`): their copy, their inbox copy, and
//!    last the sent record of step 0. Idempotent by message id.
//!
//! A crash between 2 and 3 leaves the message delivered and counted but not
//! yet in the sender's copy until the send is retried (a client retries an
//! unacknowledged send with the same client id). A crash between 1 and 2
//! leaves an unused position: history cursors skip it.

use chat_broker::redis::Connection;

use super::super::script::{Call, Lua, flag, lua};
use super::Inner;
use crate::messages::{Appended, Direct, FrameText, SENT_IDS_KEPT, SENT_IDS_TTL, conversation};

/// `dm_receive.lua`: the receiver's side.
pub(super) struct DmReceive {
    seq_r: String,
    inbox_r: String,
    offline_r: String,
    unread_r: String,
    conv: String,
    posts: String,
    presence_r: String,
    msgs: String,
    replies: String,
    received: String,
    received_order: String,
    sender: String,
    id: String,
    client_id: String,
    position: u64,
    max_len: u64,
    offline_max: u64,
    received_max: usize,
    received_ttl_s: u64,
    envelope: Vec<u8>,
    head: String,
    tail: String,
    typed: bool,
    history: String,
    to_self: bool,
    unread_head: String,
    unread_tail: String,
    channel_r: String,
    reply_pos: String,
}

impl Lua for DmReceive {
    const NAME: &'static str = "dm_receive";
    const SOURCE: &'static str = lua!("dm_receive");

    fn push(&self, call: &mut Call) {
        call.key("seq_r", &self.seq_r)
            .key("inbox_r", &self.inbox_r)
            .key("offline_r", &self.offline_r)
            .key("unread_r", &self.unread_r)
            .key("conv", &self.conv)
            .key("posts", &self.posts)
            .key("presence_r", &self.presence_r)
            .key("msgs", &self.msgs)
            .key("replies", &self.replies)
            .key("received", &self.received)
            .key("received_order", &self.received_order)
            .arg("sender", &self.sender)
            .arg("id", &self.id)
            .arg("client_id", &self.client_id)
            .arg("position", self.position)
            .arg("max_len", self.max_len)
            .arg("offline_max", self.offline_max)
            .arg("received_max", self.received_max)
            .arg("received_ttl_s", self.received_ttl_s)
            .arg("envelope", &self.envelope[..])
            .arg("head", &self.head)
            .arg("tail", &self.tail)
            .arg("typed", flag(self.typed))
            .arg("history", &self.history)
            .arg("to_self", flag(self.to_self))
            .arg("unread_head", &self.unread_head)
            .arg("unread_tail", &self.unread_tail)
            .arg("channel_r", &self.channel_r)
            .arg("reply_pos", &self.reply_pos);
    }
}

/// `dm_keep.lua`: the sender's side.
pub(super) struct DmKeep {
    seq_s: String,
    inbox_s: String,
    conv: String,
    posts: String,
    msgs: String,
    replies: String,
    sent: String,
    sent_order: String,
    id: String,
    client_id: String,
    position: u64,
    seq_r: u64,
    offline: bool,
    max_len: u64,
    sent_max: usize,
    sent_ttl_s: u64,
    envelope: Vec<u8>,
    head: String,
    tail: String,
    history: String,
    copy: bool,
    channel_s: String,
    reply_pos: String,
    typed: bool,
}

impl Lua for DmKeep {
    const NAME: &'static str = "dm_keep";
    const SOURCE: &'static str = lua!("dm_keep");

    fn push(&self, call: &mut Call) {
        call.key("seq_s", &self.seq_s)
            .key("inbox_s", &self.inbox_s)
            .key("conv", &self.conv)
            .key("posts", &self.posts)
            .key("msgs", &self.msgs)
            .key("replies", &self.replies)
            .key("sent", &self.sent)
            .key("sent_order", &self.sent_order)
            .arg("id", &self.id)
            .arg("client_id", &self.client_id)
            .arg("position", self.position)
            .arg("seq_r", self.seq_r)
            .arg("offline", flag(self.offline))
            .arg("max_len", self.max_len)
            .arg("sent_max", self.sent_max)
            .arg("sent_ttl_s", self.sent_ttl_s)
            .arg("envelope", &self.envelope[..])
            .arg("head", &self.head)
            .arg("tail", &self.tail)
            .arg("history", &self.history)
            .arg("copy", flag(self.copy))
            .arg("channel_s", &self.channel_s)
            .arg("reply_pos", &self.reply_pos)
            .arg("typed", flag(self.typed));
    }
}

/// What `dm_receive.lua` answers: the receiver's seq, whether it was kept
/// offline, the position, the message id, the receiver's unread direct
/// messages in all, and the first send's history when this one repeats it.
type Received = (u64, u8, u64, String, u64, Option<String>);

impl Inner {
    /// [`crate::MessageStore::append_direct`] on a cluster (see the module
    /// docs for the steps).
    pub(super) async fn append_on_cluster(
        &self,
        conn: &mut Connection,
        message: Direct,
    ) -> redis::RedisResult<Appended> {
        let keys = &self.keys;
        let (from, to) = (message.from.clone(), message.to.clone());
        if let Some(client_id) = &message.client_id {
            let first: Option<String> = redis::cmd("HGET")
                .arg(keys.user("sent", &from))
                .arg(client_id)
                .query_async(conn)
                .await?;
            if let Some(appended) = first.as_deref().and_then(repeated) {
                return Ok(appended);
            }
        }
        let (a, b) = conversation(&from, &to);
        let position: u64 = redis::cmd("INCR")
            .arg(keys.copy(&a, "conv_seq", &a, &b))
            .query_async(conn)
            .await?;
        let (head, tail, typed) = match message.frame {
            FrameText::Seed(text) => (text, String::new(), false),
            FrameText::Typed { head, tail } => (head, tail, true),
        };
        let to_self = from == to;
        let (unread_head, unread_tail) = crate::frames::unread_template(&from);
        let reply_pos = message.reply_to.map(|p| p.to_string()).unwrap_or_default();
        let client_id = message.client_id.unwrap_or_default();
        let receive = DmReceive {
            seq_r: keys.user("seq", &to),
            inbox_r: keys.user("inbox", &to),
            offline_r: keys.user("offline", &to),
            unread_r: keys.user("unread", &to),
            conv: keys.copy(&to, "conv", &a, &b),
            posts: keys.copy(&to, "posts", &from, &to),
            presence_r: keys.user("presence", &to),
            msgs: keys.copy(&to, "msgs", &a, &b),
            replies: keys.copy(&to, "replies", &a, &b),
            received: keys.user("received", &to),
            received_order: keys.user("received_order", &to),
            sender: from.clone(),
            id: message.id,
            client_id: client_id.clone(),
            position,
            max_len: self.limits.history_max,
            offline_max: self.limits.offline_max,
            received_max: SENT_IDS_KEPT,
            received_ttl_s: SENT_IDS_TTL.as_secs(),
            envelope: message.envelope_header.clone(),
            head: head.clone(),
            tail: tail.clone(),
            typed,
            history: message.history.clone(),
            to_self,
            unread_head,
            unread_tail,
            channel_r: keys.channel(&chat_broker::channel::user(&to)),
            reply_pos: reply_pos.clone(),
        };
        let (seq_r, offline, position, id, unread, first): Received =
            DM_RECEIVE.invoke(&receive, conn).await?;
        let offline = offline == 1;
        // A retry of a send whose receiver's side is done: the sender's
        // side is written for the first send, from its history.
        let (head, tail, history) = match &first {
            Some(history) => {
                let Ok(first) = serde_json::from_str::<chat_protocol::ChatMessage>(history) else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Parse,
                        "a stored direct message is not a message",
                    )));
                };
                let (head, tail) = chat_protocol::message_template(&first);
                (head, tail, history.clone())
            }
            None => (head, tail, message.history),
        };
        if first.is_none() && offline && typed && !to_self {
            let frame = format!("{head}{seq_r}{tail}");
            self.direct_job(conn, &to, unread, &frame).await;
        }
        let keep = DmKeep {
            seq_s: keys.user("seq", &from),
            inbox_s: keys.user("inbox", &from),
            conv: keys.copy(&from, "conv", &a, &b),
            posts: keys.copy(&from, "posts", &from, &to),
            msgs: keys.copy(&from, "msgs", &a, &b),
            replies: keys.copy(&from, "replies", &a, &b),
            sent: keys.user("sent", &from),
            sent_order: keys.user("sent_order", &from),
            id,
            client_id,
            position,
            seq_r,
            offline,
            max_len: self.limits.history_max,
            sent_max: SENT_IDS_KEPT,
            sent_ttl_s: SENT_IDS_TTL.as_secs(),
            envelope: message.envelope_header,
            head,
            tail,
            history,
            copy: message.copy_to_sender && !to_self,
            channel_s: keys.channel(&chat_broker::channel::user(&from)),
            reply_pos,
            typed,
        };
        let seq_s: u64 = DM_KEEP.invoke(&keep, conn).await?;
        super::super::replicated(conn, &[&keep.seq_s, &receive.seq_r]).await?;
        Ok(Appended {
            receiver_seq: seq_r,
            sender_seq: (seq_s > 0).then_some(seq_s),
            offline,
            repeated: first,
        })
    }

    /// Queues the `direct.message` job of a message kept for `user` with
    /// no connection, when asked to: after the receiver's step (the
    /// `webhooks` stream is in another slot), so a crash in between loses
    /// it. Best effort: logged when it fails.
    async fn direct_job(&self, conn: &mut Connection, user: &str, unread: u64, frame: &str) {
        if !self
            .offline_events
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let queued = redis::cmd("XADD")
            .arg(self.keys.queue("webhooks"))
            .arg("*")
            .arg("e")
            .arg(crate::webhooks::direct_message(user, unread, frame))
            .query_async::<()>(conn)
            .await;
        if let Err(e) = queued {
            tracing::warn!(user, error = %e, "a direct message's job was not queued");
        }
    }
}

/// The answer to a send the sender already made, from its sent record
/// `"{seq_r} {seq_s} {offline} {history}"`.
fn repeated(record: &str) -> Option<Appended> {
    let mut parts = record.splitn(4, ' ');
    let seq_r = parts.next()?.parse().ok()?;
    let seq_s: u64 = parts.next()?.parse().ok()?;
    let offline = parts.next()? == "1";
    Some(Appended {
        receiver_seq: seq_r,
        sender_seq: (seq_s > 0).then_some(seq_s),
        offline,
        repeated: Some(parts.next()?.to_owned()),
    })
}

static DM_RECEIVE: std::sync::LazyLock<super::super::script::Loaded<DmReceive>> =
    std::sync::LazyLock::new(super::super::script::Loaded::new);
static DM_KEEP: std::sync::LazyLock<super::super::script::Loaded<DmKeep>> =
    std::sync::LazyLock::new(super::super::script::Loaded::new);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::script::legend;

    #[test]
    fn every_cluster_message_script_is_called_as_its_legend_says() {
        let s = || String::from("k");
        legend::check(&DmReceive {
            seq_r: s(),
            inbox_r: s(),
            offline_r: s(),
            unread_r: s(),
            conv: s(),
            posts: s(),
            presence_r: s(),
            msgs: s(),
            replies: s(),
            received: s(),
            received_order: s(),
            sender: s(),
            id: s(),
            client_id: s(),
            position: 1,
            max_len: 1,
            offline_max: 1,
            received_max: 1,
            received_ttl_s: 1,
            envelope: Vec::new(),
            head: s(),
            tail: s(),
            typed: true,
            history: s(),
            to_self: false,
            unread_head: s(),
            unread_tail: s(),
            channel_r: s(),
            reply_pos: s(),
        });
        legend::check(&DmKeep {
            seq_s: s(),
            inbox_s: s(),
            conv: s(),
            posts: s(),
            msgs: s(),
            replies: s(),
            sent: s(),
            sent_order: s(),
            id: s(),
            client_id: s(),
            position: 1,
            seq_r: 1,
            offline: false,
            max_len: 1,
            sent_max: 1,
            sent_ttl_s: 1,
            envelope: Vec::new(),
            head: s(),
            tail: s(),
            history: s(),
            copy: true,
            channel_s: s(),
            reply_pos: s(),
            typed: true,
        });
    }

    #[test]
    fn a_sent_record_answers_as_the_first_send() {
        let first = repeated(r#"7 3 1 {"id":"01J","body":"a b"}"#).expect("a record");
        assert_eq!(first.receiver_seq, 7);
        assert_eq!(first.sender_seq, Some(3));
        assert!(first.offline);
        assert_eq!(
            first.repeated.as_deref(),
            Some(r#"{"id":"01J","body":"a b"}"#)
        );
        assert!(repeated("7 x").is_none());
    }
}
