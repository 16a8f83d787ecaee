//! Fences: a connection that starts following a room writes the room's
//! entries from the user's own `member_joined` on, read from the store,
//! while the same entries may also be on their way live (published before
//! the subscription took, delivered after it). A fence drops those live
//! copies: an entry of that room whose `seq` the replay already wrote.
//!
//! Entries of one room arrive in `seq` order (one channel, in publish
//! order), so the first live entry past the fence lifts it; a fence left
//! standing by a quiet room lifts itself after [`FENCE_TTL`], far longer
//! than any delivery takes. Only while a fence stands are the connection's
//! text frames looked into, and then only their `room` and `seq`.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use chat_broker::envelope::Outbound;
use serde::Deserialize;

/// How long a fence stands at most.
pub(crate) const FENCE_TTL: Duration = Duration::from_secs(60);

/// The fences of one connection.
#[derive(Debug, Default)]
pub(crate) struct Fences {
    fences: Vec<Fence>,
}

#[derive(Debug)]
struct Fence {
    room: String,
    /// The last `seq` the replay wrote.
    until: u64,
    lifted_at: Instant,
}

/// What a fence needs to know of a frame.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    room: Option<Cow<'a, str>>,
    seq: Option<u64>,
}

impl Fences {
    /// Drops live entries of `room` up to `until` (its replay's last `seq`).
    pub(crate) fn add(&mut self, room: String, until: u64) {
        self.fences.retain(|f| f.room != room);
        self.fences.push(Fence {
            room,
            until,
            lifted_at: Instant::now() + FENCE_TTL,
        });
    }

    /// Whether `frame` is a live copy of an entry already written (to be
    /// dropped); lifts the fences it passes or that expired.
    pub(crate) fn drops(&mut self, frame: &Outbound) -> bool {
        if self.fences.is_empty() {
            return false;
        }
        let now = Instant::now();
        self.fences.retain(|f| f.lifted_at > now);
        let Outbound::Text(text) = frame else {
            return false;
        };
        let Ok(Peek {
            room: Some(room),
            seq: Some(seq),
        }) = serde_json::from_str::<Peek>(text)
        else {
            return false;
        };
        let Some(at) = self.fences.iter().position(|f| f.room == room) else {
            return false;
        };
        if seq <= self.fences[at].until {
            return true;
        }
        self.fences.swap_remove(at);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(room: &str, seq: u64) -> Outbound {
        Outbound::Text(
            serde_json::json!({"type": "message", "room": room, "seq": seq, "body": "b"})
                .to_string()
                .into(),
        )
    }

    #[test]
    fn live_copies_up_to_the_fence_are_dropped_and_the_first_newer_lifts_it() {
        let mut fences = Fences::default();
        assert!(
            !fences.drops(&entry("team", 1)),
            "no fence, nothing dropped"
        );
        fences.add("team".into(), 3);
        assert!(fences.drops(&entry("team", 2)));
        assert!(fences.drops(&entry("team", 3)));
        assert!(!fences.drops(&entry("plaza", 1)), "other rooms pass");
        let typing = Outbound::Text(r#"{"type":"typing","from":"a","room":"team"}"#.into());
        assert!(!fences.drops(&typing), "frames without seq pass");
        assert!(!fences.drops(&entry("team", 4)));
        assert!(
            !fences.drops(&entry("team", 2)),
            "lifted by the first newer"
        );
    }

    #[test]
    fn a_new_fence_for_a_room_replaces_the_old_one() {
        let mut fences = Fences::default();
        fences.add("team".into(), 9);
        fences.add("team".into(), 2);
        assert!(!fences.drops(&entry("team", 5)));
    }
}
