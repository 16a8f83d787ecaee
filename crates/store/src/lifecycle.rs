//! The message lifecycle: edits, deletes, reactions and replies, the same
//! rules on every engine.
//!
//! A change rewrites the stored message **in place** (it keeps its id and
//! `seq`, in every inbox, history and room log holding it) and appends an
//! `update` entry carrying the whole new message at the conversation's
//! next `seq`, published like a message. A message keeps **one** update
//! entry: a new change removes the previous one, so a client syncing from
//! any cursor receives every message it lacks in its current state and one
//! update for each message changed after the cursor, and the log does not
//! grow with every reaction. Update entries are never unread; a deleted
//! message stops being unread (DECISIONS.md, "The message lifecycle").
//!
//! The rules ([`apply`]) are plain functions of the stored message; the
//! engines load the message, apply them and write the result back
//! atomically (Redis: a compare-and-set script, retried when the message
//! changed meanwhile; SQLite: one transaction).

use chat_protocol::{ChatMessage, Quote, Reaction};
use futures_util::future::BoxFuture;

use crate::StoreError;

/// Distinct emoji one message may carry.
pub const MAX_REACTIONS: usize = 20;

/// Characters of the original a reply quotes.
pub const EXCERPT_CHARS: usize = 100;

/// The conversation a message belongs to, seen from the user acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conversation {
    /// The direct conversation with `peer` (either may have sent it).
    Direct(String),
    /// A room; the user acting must be a member.
    Room(String),
}

/// What to do to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Replace its text (its author only).
    Edit {
        /// The new text.
        body: String,
        /// Edits later than this after sending are refused (ms); `None`: any time.
        window_ms: Option<u64>,
    },
    /// Delete it for everyone (its author, or a room's admins and owner).
    Delete,
    /// Add the acting user's reaction (an emoji as [`emoji`] gives it).
    React(String),
    /// Take the acting user's reaction back.
    Unreact(String),
}

/// A change asked for by `actor`.
#[derive(Debug, Clone)]
pub struct ChangeRequest {
    /// Who acts.
    pub actor: String,
    /// Where the message is.
    pub conversation: Conversation,
    /// The message's server id.
    pub message: String,
    /// What to do.
    pub change: Change,
    /// Now, ms since the Unix epoch (`edited_at`, the edit window).
    pub now: u64,
    /// The broker envelope header published updates carry.
    pub envelope_header: Vec<u8>,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq)]
pub struct Changed {
    /// The message as it now is, with its `seq` where the actor sees it
    /// (their inbox, or the room).
    pub message: ChatMessage,
    /// The `seq` of the update entry the actor's inbox or the room got;
    /// `None` when nothing changed (a repeated reaction, a repeated delete).
    pub update_seq: Option<u64>,
    /// The media id of the file a delete took off the message (its
    /// author's upload), for the caller to let go of ([`crate::MediaRefs`]).
    pub removed_media: Option<String>,
}

/// The file `after` no longer carries that `before` did (a delete's), by media id.
pub(crate) fn removed_media(before: &ChatMessage, after: &ChatMessage) -> Option<String> {
    match (&before.media, &after.media) {
        (Some(media), None) => Some(media.id.clone()),
        _ => None,
    }
}

/// Why a change was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No message with that id in that conversation (or it is no longer
    /// kept, or the room does not exist).
    #[error("{0}")]
    NotFound(String),
    /// The user may not do that (the reason says why).
    #[error("{0}")]
    Forbidden(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ChangeError {
    /// The protocol's code: `not_found`, `forbidden`, `unavailable`.
    pub fn code(&self) -> chat_protocol::ErrorCode {
        use chat_protocol::ErrorCode;
        match self {
            ChangeError::NotFound(_) => ErrorCode::NotFound,
            ChangeError::Forbidden(_) => ErrorCode::Forbidden,
            ChangeError::Store(_) => ErrorCode::Unavailable,
        }
    }
}

/// Edits, deletes and reactions, and the quotes replies carry.
pub trait Lifecycle: Send + Sync + 'static {
    /// Applies `request` ([`apply`]'s rules), rewrites the message where it
    /// is stored, appends and publishes its update.
    ///
    /// Errors: [`ChangeError::NotFound`] (no such message in the
    /// conversation; the actor no member of the room), [`ChangeError::Forbidden`].
    fn change(&self, request: ChangeRequest) -> BoxFuture<'static, Result<Changed, ChangeError>>;

    /// Message `id` of the conversation as a reply quotes it, and its
    /// position (the room `seq`, or the conversation's position) for the
    /// reply's index.
    ///
    /// Errors: [`ChangeError::NotFound`].
    fn quote(
        &self,
        actor: &str,
        conversation: &Conversation,
        id: &str,
    ) -> BoxFuture<'static, Result<(Quote, u64), ChangeError>>;
}

/// `text` as a reaction: the fully-qualified form of one emoji (`❤` and
/// `❤️` are one reaction), or `None` when it is not exactly one emoji
/// (Unicode's emoji list, skin tones and sequences included).
pub fn emoji(text: &str) -> Option<&'static str> {
    emojis::get(text).map(|e| e.as_str())
}

/// What `change` by `actor` makes of `message`: `Ok(None)` when it stays
/// as it is (a reaction already there, a repeated delete, the same text).
/// `admin`: the actor is a room's admin or owner.
///
/// Errors: [`ChangeError::Forbidden`]: someone else's message edited, or
/// deleted by a non-admin; a deleted message edited or reacted to; an edit
/// after the window; a reaction past [`MAX_REACTIONS`].
pub(crate) fn apply(
    message: &ChatMessage,
    actor: &str,
    admin: bool,
    change: &Change,
    now: u64,
) -> Result<Option<ChatMessage>, ChangeError> {
    let mut next = message.clone();
    match change {
        Change::Edit { body, window_ms } => {
            if message.from != actor {
                return Err(forbidden("only its author may edit a message"));
            }
            if message.deleted {
                return Err(forbidden("a deleted message cannot be edited"));
            }
            if let Some(window) = window_ms
                && now.saturating_sub(message.ts) > *window
            {
                return Err(ChangeError::Forbidden(format!(
                    "messages may be edited for {window} ms after sending"
                )));
            }
            if *body == message.body {
                return Ok(None);
            }
            next.body = body.clone();
            next.edited_at = Some(now);
        }
        Change::Delete => {
            if message.from != actor && !admin {
                return Err(forbidden(
                    "only its author (or a room's admins) may delete a message",
                ));
            }
            if message.deleted {
                return Ok(None);
            }
            next = tombstone(message);
        }
        Change::React(emoji) => {
            if message.deleted {
                return Err(forbidden("a deleted message takes no reactions"));
            }
            let full = next.reactions.len() >= MAX_REACTIONS;
            match next.reactions.get_mut(emoji) {
                Some(reaction) if reaction.users.iter().any(|u| u == actor) => return Ok(None),
                Some(reaction) => {
                    reaction.users.push(actor.to_owned());
                    reaction.count = reaction.users.len() as u64;
                }
                None if full => {
                    return Err(ChangeError::Forbidden(format!(
                        "a message takes at most {MAX_REACTIONS} different reactions"
                    )));
                }
                None => {
                    next.reactions.insert(
                        emoji.clone(),
                        Reaction {
                            count: 1,
                            users: vec![actor.to_owned()],
                        },
                    );
                }
            }
        }
        Change::Unreact(emoji) => {
            let Some(reaction) = next.reactions.get_mut(emoji) else {
                return Ok(None);
            };
            let before = reaction.users.len();
            reaction.users.retain(|u| u != actor);
            if reaction.users.len() == before {
                return Ok(None);
            }
            reaction.count = reaction.users.len() as u64;
            if reaction.users.is_empty() {
                next.reactions.remove(emoji);
            }
        }
    }
    Ok(Some(next))
}

/// `message` deleted: its place, author and time, nothing of its content.
fn tombstone(message: &ChatMessage) -> ChatMessage {
    ChatMessage {
        seq: message.seq,
        id: message.id.clone(),
        from: message.from.clone(),
        from_name: message.from_name.clone(),
        to: message.to.clone(),
        room: message.room.clone(),
        ts: message.ts,
        deleted: true,
        ..ChatMessage::default()
    }
}

/// How a reply quotes `original`.
pub(crate) fn quote(original: &ChatMessage) -> Quote {
    let mut excerpt: String = original.body.chars().take(EXCERPT_CHARS).collect();
    if excerpt.len() < original.body.len() {
        excerpt.push('…');
    }
    Quote {
        id: original.id.clone(),
        from: original.from.clone(),
        excerpt,
        media_kind: original.media.as_ref().map(|m| m.kind.clone()),
        deleted: original.deleted,
    }
}

/// `reply` with its quote of a deleted original: nothing of it is kept.
pub(crate) fn unquote(reply: &ChatMessage) -> ChatMessage {
    let mut next = reply.clone();
    if let Some(quoted) = &reply.reply_to {
        next.reply_to = Some(Quote {
            id: quoted.id.clone(),
            from: quoted.from.clone(),
            excerpt: String::new(),
            media_kind: None,
            deleted: true,
        });
    }
    next
}

/// The `update` frame for `message` (with its `seq` where the frame goes),
/// cut where that inbox or room writes the update's own `seq`.
pub(crate) fn update_template(message: &ChatMessage) -> (String, String) {
    chat_protocol::ServerFrame::Update {
        seq: None,
        message: message.clone(),
    }
    .room_template()
}

/// A stored frame (`message` or `update`) or history JSON, as a message.
pub(crate) fn parse_message(text: &str) -> Option<ChatMessage> {
    match serde_json::from_str::<chat_protocol::ServerFrame>(text) {
        Ok(chat_protocol::ServerFrame::Message(message)) => Some(message),
        Ok(_) => None,
        Err(_) => serde_json::from_str::<ChatMessage>(text).ok(),
    }
}

/// `message` as JSON (as a history keeps it).
pub(crate) fn to_json(message: &ChatMessage) -> String {
    // unwrap: a message holds only strings, integers and maps of them.
    #[allow(clippy::unwrap_used)]
    serde_json::to_string(message).unwrap()
}

fn forbidden(reason: &str) -> ChangeError {
    ChangeError::Forbidden(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from: &str, body: &str) -> ChatMessage {
        ChatMessage {
            id: "01J".into(),
            from: from.into(),
            body: body.into(),
            ts: 1_000,
            ..ChatMessage::default()
        }
    }

    #[test]
    fn only_the_author_edits_and_only_within_the_window() {
        let m = message("alice", "helo");
        let edit = |window_ms| Change::Edit {
            body: "hello".into(),
            window_ms,
        };
        let edited = apply(&m, "alice", false, &edit(None), 5_000)
            .unwrap()
            .unwrap();
        assert_eq!(
            (edited.body.as_str(), edited.edited_at),
            ("hello", Some(5_000))
        );
        assert!(matches!(
            apply(&m, "bob", true, &edit(None), 5_000),
            Err(ChangeError::Forbidden(_))
        ));
        assert!(matches!(
            apply(&m, "alice", false, &edit(Some(3_999)), 5_000),
            Err(ChangeError::Forbidden(_))
        ));
        assert!(apply(&m, "alice", false, &edit(Some(4_000)), 5_000).is_ok());
    }

    #[test]
    fn a_delete_keeps_nothing_of_the_content_and_repeats_harmlessly() {
        let mut m = message("alice", "secret");
        m.reactions.insert(
            "👍".into(),
            Reaction {
                count: 1,
                users: vec!["bob".into()],
            },
        );
        assert!(matches!(
            apply(&m, "bob", false, &Change::Delete, 1),
            Err(ChangeError::Forbidden(_))
        ));
        let gone = apply(&m, "carol", true, &Change::Delete, 1)
            .unwrap()
            .unwrap();
        assert!(gone.deleted && gone.body.is_empty() && gone.reactions.is_empty());
        assert!(!to_json(&gone).contains("secret"));
        assert_eq!(
            apply(&gone, "alice", false, &Change::Delete, 2).unwrap(),
            None
        );
        assert!(apply(&gone, "alice", false, &Change::React("👍".into()), 2).is_err());
    }

    #[test]
    fn reactions_are_one_per_user_per_emoji_and_bounded() {
        let m = message("alice", "hi");
        let react = |e: &str| Change::React(e.into());
        let one = apply(&m, "bob", false, &react("👍"), 1).unwrap().unwrap();
        assert_eq!(apply(&one, "bob", false, &react("👍"), 1).unwrap(), None);
        let two = apply(&one, "carol", false, &react("👍"), 1)
            .unwrap()
            .unwrap();
        assert_eq!(two.reactions["👍"].count, 2);
        let back = apply(&two, "bob", false, &Change::Unreact("👍".into()), 1)
            .unwrap()
            .unwrap();
        assert_eq!(back.reactions["👍"].users, vec!["carol".to_owned()]);
        let mut full = m.clone();
        for i in 0..MAX_REACTIONS {
            full.reactions.insert(
                format!("e{i}"),
                Reaction {
                    count: 1,
                    users: vec!["x".into()],
                },
            );
        }
        assert!(apply(&full, "bob", false, &react("👍"), 1).is_err());
        assert!(apply(&full, "bob", false, &react("e1"), 1).is_ok());
    }

    #[test]
    fn only_one_emoji_is_a_reaction() {
        assert_eq!(emoji("👍"), Some("👍"));
        assert_eq!(emoji("👍🏽"), Some("👍🏽"));
        assert_eq!(emoji("❤"), emoji("❤️"));
        for bad in ["", "a", "👍👍", "👍 ", ":+1:", "\u{200d}"] {
            assert_eq!(emoji(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_quote_is_cut_at_a_hundred_characters() {
        let long = "é".repeat(150);
        let q = quote(&message("alice", &long));
        assert_eq!(q.excerpt.chars().count(), EXCERPT_CHARS + 1);
        assert!(q.excerpt.ends_with('…'));
        assert_eq!(quote(&message("alice", "short")).excerpt, "short");
        let gone = unquote(&ChatMessage {
            reply_to: Some(q),
            ..message("bob", "re")
        });
        assert_eq!(gone.reply_to.unwrap().excerpt, "");
    }
}
