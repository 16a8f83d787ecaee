//! What a notification says: the JSON the page's service worker receives,
//! decrypted, in its `push` event.
//!
//! `{"id", "from", "from_name", "text"?, "peer" | "room", "unread", "quiet"?}`:
//! the message's id, its sender (id and display name), a short text (the
//! message's first 140 characters, or "sent a photo" for a file without
//! text; absent with the quiet preview, which sets `quiet`), the
//! conversation (`peer` for a direct message, `room`), and the user's
//! unread total (direct messages and room entries, for an app badge).

use serde_json::{Value, json};

/// The most characters of a message's text a notification carries.
const TEXT_CHARS: usize = 140;

/// Where a message was said, as the receiver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// A direct message from this peer.
    Peer(String),
    /// A room message.
    Room(String),
}

impl Conversation {
    /// Its key in push settings and topics: `user:{peer}`, `room:{room}`.
    pub fn key(&self) -> String {
        match self {
            Conversation::Peer(peer) => format!("user:{peer}"),
            Conversation::Room(room) => format!("room:{room}"),
        }
    }
}

/// The notification of `message` (a `message` frame) in `conversation`
/// for a user with `unread` unread in all; `quiet` leaves the text out.
pub fn notification(
    message: &Value,
    conversation: &Conversation,
    unread: u64,
    quiet: bool,
) -> Value {
    let from = message["from"].as_str().unwrap_or_default();
    let mut out = json!({
        "id": message["id"],
        "from": from,
        "from_name": message["from_name"].as_str().unwrap_or(from),
        "unread": unread,
    });
    match conversation {
        Conversation::Peer(peer) => out["peer"] = peer.as_str().into(),
        Conversation::Room(room) => out["room"] = room.as_str().into(),
    }
    if quiet {
        out["quiet"] = true.into();
    } else {
        out["text"] = text(message).into();
    }
    out
}

/// A message's text as a notification shows it.
fn text(message: &Value) -> String {
    let body = message["body"].as_str().unwrap_or_default();
    if !body.is_empty() {
        let mut chars = body.chars();
        let mut short: String = chars.by_ref().take(TEXT_CHARS).collect();
        if chars.next().is_some() {
            short.push('…');
        }
        return short;
    }
    match message["media"]["kind"].as_str() {
        Some("image") => "sent a photo",
        Some("audio") => "sent a voice message",
        Some("video") => "sent a video",
        _ => "sent a file",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_says_who_what_where_and_how_many() {
        let message = json!({"type": "message", "id": "01J", "from": "bob", "from_name": "Bob", "body": "hello"});
        let peer = Conversation::Peer("bob".into());
        assert_eq!(
            notification(&message, &peer, 3, false),
            json!({"id": "01J", "from": "bob", "from_name": "Bob", "text": "hello", "peer": "bob", "unread": 3})
        );
        let quiet = notification(&message, &Conversation::Room("ops".into()), 1, true);
        assert_eq!(quiet["room"], "ops");
        assert_eq!(quiet["quiet"], true);
        assert!(quiet.get("text").is_none(), "{quiet}");

        let photo = json!({"id": "2", "from": "李雷", "body": "", "media": {"kind": "image"}});
        let shown = notification(&photo, &Conversation::Peer("李雷".into()), 1, false);
        assert_eq!(
            (shown["text"].as_str(), shown["from_name"].as_str()),
            (Some("sent a photo"), Some("李雷"))
        );
        let long = json!({"id": "3", "from": "a", "body": "好".repeat(200)});
        let cut = notification(&long, &peer, 1, false)["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(cut.chars().count(), TEXT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
