//! Changing a direct message on a Redis Cluster: each user's copy of the
//! conversation (and their inbox) is changed by a step of its own, in
//! their slot (`dm_change_copy.lua`): the receiver's first, then the
//! sender's, as a message is written. Each step compares the entries it
//! rewrites with those loaded from that same copy, so the two copies are
//! checked separately; the change itself is worked out once, from the
//! actor's copy. A crash between the steps leaves the other copy as it
//! was until the message is changed again.

use std::sync::LazyLock;

use chat_broker::redis::Connection;
use chat_protocol::{ChatMessage, ServerFrame};

use super::super::messages::Inner;
use super::super::script::{Call, Loaded, Lua, flag, lua};
use super::{DirectEntry, unchanged};
use crate::lifecycle::{self, Change, ChangeError, ChangeRequest, Changed};

static DM_CHANGE_COPY: LazyLock<Loaded<DmChangeCopy>> = LazyLock::new(Loaded::new);

/// `dm_change_copy.lua`: one user's side of a change.
struct DmChangeCopy {
    conv: String,
    msgs: String,
    replies: String,
    seq: String,
    inbox: String,
    offline: String,
    unread: String,
    read_pos: String,
    sent: String,
    received_sends: String,
    id: String,
    sender: String,
    rewrites: String,
    deleted: bool,
    owner_received: bool,
    role: &'static str,
    head: String,
    tail: String,
    max_len: u64,
    envelope: Vec<u8>,
    channel: String,
    unread_head: String,
    unread_tail: String,
}

impl Lua for DmChangeCopy {
    const NAME: &'static str = "dm_change_copy";
    const SOURCE: &'static str = lua!("dm_change_copy");

    fn push(&self, call: &mut Call) {
        call.key("conv", &self.conv)
            .key("msgs", &self.msgs)
            .key("replies", &self.replies)
            .key("seq", &self.seq)
            .key("inbox", &self.inbox)
            .key("offline", &self.offline)
            .key("unread", &self.unread)
            .key("read_pos", &self.read_pos)
            .key("sent", &self.sent)
            .key("received", &self.received_sends)
            .arg("id", &self.id)
            .arg("sender", &self.sender)
            .arg("rewrites", &self.rewrites)
            .arg("deleted", flag(self.deleted))
            .arg("owner_received", flag(self.owner_received))
            .arg("role", self.role)
            .arg("head", &self.head)
            .arg("tail", &self.tail)
            .arg("max_len", self.max_len)
            .arg("envelope", &self.envelope[..])
            .arg("channel", &self.channel)
            .arg("unread_head", &self.unread_head)
            .arg("unread_tail", &self.unread_tail);
    }
}

/// `[position, entry as loaded, new entry, seq in owner's inbox, frame
/// there]` of `entry` in `owner`'s copy, holding `message` from now on.
fn rewrite(owner: &str, entry: &DirectEntry, message: &ChatMessage) -> serde_json::Value {
    let seq = entry.seq_in(owner);
    let frame = ServerFrame::Message(ChatMessage {
        seq: Some(seq),
        ..message.clone()
    })
    .to_json();
    let mut history = message.clone();
    history.seq = None;
    serde_json::json!([
        entry.pos,
        entry.entry,
        format!("{} {}", entry.pos, lifecycle::to_json(&history)),
        seq,
        frame,
    ])
}

impl Inner {
    /// One attempt at a change of a direct message on a cluster: `Ok(None)`
    /// when a copy moved between its load and its write.
    pub(super) async fn direct_change_on_cluster(
        &self,
        conn: &mut Connection,
        peer: &str,
        request: &ChangeRequest,
    ) -> Result<Option<Changed>, ChangeError> {
        let deleting = request.change == Change::Delete;
        let actor = request.actor.as_str();
        let id = request.message.as_str();
        let (entry, replies) = self.direct_load(conn, actor, peer, id, deleting).await?;
        let Some(next) =
            lifecycle::apply(&entry.message, actor, false, &request.change, request.now)?
        else {
            return Ok(Some(unchanged(entry, actor)));
        };
        let removed_media = lifecycle::removed_media(&entry.message, &next);
        let sender = entry.message.from.clone();
        let receiver = entry.message.to.clone().unwrap_or_default();
        let to_self = sender == receiver;
        let actor_seq = entry.seq_in(actor);
        // The receiver's copy first, then the sender's; the actor's as
        // loaded, the other one loaded from itself.
        let mut owners = vec![receiver.clone()];
        if !to_self {
            owners.push(sender.clone());
        }
        let mut mine = Some((entry, replies));
        let mut update = None;
        for owner in owners {
            let (entry, replies) = if owner == actor {
                match mine.take() {
                    Some(loaded) => loaded,
                    None => continue,
                }
            } else {
                let other = if owner == sender { &receiver } else { &sender };
                match self.direct_load(conn, &owner, other, id, deleting).await {
                    Ok(loaded) => loaded,
                    // Not in that copy (cut before its sender's step, or
                    // trimmed there): nothing to change in it.
                    Err(ChangeError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                }
            };
            let mut rewrites = vec![rewrite(&owner, &entry, &next)];
            if deleting {
                rewrites.extend(
                    replies
                        .iter()
                        .map(|reply| rewrite(&owner, reply, &lifecycle::unquote(&reply.message))),
                );
            }
            let seq = entry.seq_in(&owner);
            let (head, tail) = lifecycle::update_template(&ChatMessage {
                seq: (seq > 0).then_some(seq),
                ..next.clone()
            });
            let (unread_head, unread_tail) = crate::frames::unread_template(&sender);
            let (a, b) = crate::conversation(&sender, &receiver);
            let keys = &self.keys;
            let call = DmChangeCopy {
                conv: keys.copy(&owner, "conv", &a, &b),
                msgs: keys.copy(&owner, "msgs", &a, &b),
                replies: keys.copy(&owner, "replies", &a, &b),
                seq: keys.user("seq", &owner),
                inbox: keys.user("inbox", &owner),
                offline: keys.user("offline", &owner),
                unread: keys.user("unread", &owner),
                read_pos: keys.user("read_pos", &owner),
                sent: keys.user("sent", &owner),
                received_sends: keys.user("received", &owner),
                id: id.to_owned(),
                sender: sender.clone(),
                rewrites: serde_json::Value::Array(rewrites).to_string(),
                deleted: deleting,
                owner_received: owner == receiver && !to_self,
                role: if owner == receiver { "r" } else { "s" },
                head,
                tail,
                max_len: self.limits.history_max,
                envelope: request.envelope_header.clone(),
                channel: keys.channel(&chat_broker::channel::user(&owner)),
                unread_head,
                unread_tail,
            };
            let answer: super::Answer = DM_CHANGE_COPY
                .invoke(&call, conn)
                .await
                .map_err(|e| super::super::unavailable("change", e))?;
            if answer.outcome() != "changed" {
                return Ok(None);
            }
            if owner == actor {
                update = Some(answer.number(1));
            }
        }
        Ok(Some(Changed {
            message: ChatMessage {
                seq: (actor_seq > 0).then_some(actor_seq),
                ..next
            },
            update_seq: update,
            removed_media,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::script::legend;

    #[test]
    fn the_cluster_change_script_is_called_as_its_legend_says() {
        let s = || String::from("k");
        legend::check(&DmChangeCopy {
            conv: s(),
            msgs: s(),
            replies: s(),
            seq: s(),
            inbox: s(),
            offline: s(),
            unread: s(),
            read_pos: s(),
            sent: s(),
            received_sends: s(),
            id: s(),
            sender: s(),
            rewrites: s(),
            deleted: false,
            owner_received: true,
            role: "r",
            head: s(),
            tail: s(),
            max_len: 1,
            envelope: Vec::new(),
            channel: s(),
            unread_head: s(),
            unread_tail: s(),
        });
    }
}
