//! The frames stores publish, built from the protocol's types so their
//! bytes are exactly what [`ServerFrame`] would give, cut where a value
//! known only inside the store (a count, a time) goes.

use chat_protocol::{RoomEvent, ServerFrame};

/// A number no real count or time reaches, marking where to cut.
const MARK: u64 = u64::MAX;

/// `frame` (holding [`MARK`] once, as its last number) cut around that number.
fn cut(frame: &ServerFrame) -> (String, String) {
    let json = frame.to_json();
    let mark = MARK.to_string();
    // The last occurrence: the marked number closes these frames, after
    // every string that could spell the same digits.
    match json.rsplit_once(&mark) {
        Some((head, tail)) => (head.to_owned(), tail.to_owned()),
        None => (json, String::new()),
    }
}

/// The `unread` frame telling a receiver `sender`'s new count: `head` +
/// count + `tail`.
#[cfg(feature = "redis")]
pub fn unread_template(sender: &str) -> (String, String) {
    cut(&ServerFrame::Unread {
        counts: [(sender.to_owned(), MARK)].into_iter().collect(),
        rooms: Default::default(),
    })
}

/// A membership entry of room `room` about `user` (`joined`, or left),
/// changed `by` someone else when given: its new server id and its frame
/// cut where the room writes the entry's seq.
pub fn member_event(
    joined: bool,
    room: &str,
    user: &str,
    by: Option<&str>,
) -> (String, String, String) {
    let event = RoomEvent {
        seq: 0,
        id: ulid::Ulid::new().to_string(),
        room: room.to_owned(),
        user: user.to_owned(),
        by: by.filter(|by| *by != user).map(str::to_owned),
        ts: crate::now_millis(),
    };
    let id = event.id.clone();
    let frame = if joined {
        ServerFrame::MemberJoined(event)
    } else {
        ServerFrame::MemberLeft(event)
    };
    let (head, tail) = frame.room_template();
    (id, head, tail)
}

/// The `presence` frame announcing `user` online.
pub fn online_frame(user: &str) -> String {
    ServerFrame::Presence {
        user: user.to_owned(),
        online: true,
        last_seen: None,
    }
    .to_json()
}

/// The `presence` frame announcing `user` offline: `head` + last seen (ms)
/// + `tail`.
pub fn offline_template(user: &str) -> (String, String) {
    cut(&ServerFrame::Presence {
        user: user.to_owned(),
        online: false,
        last_seen: Some(MARK),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_the_protocol_frames_for_any_name() {
        for name in ["bob", "a\"b\\c", "18446744073709551615", "张三", "x\u{1}y"] {
            let (head, tail) = unread_template(name);
            let counts = [(name.to_owned(), 7)].into_iter().collect();
            assert_eq!(
                format!("{head}7{tail}"),
                ServerFrame::Unread {
                    counts,
                    rooms: Default::default()
                }
                .to_json()
            );
            let (head, tail) = offline_template(name);
            let offline = ServerFrame::Presence {
                user: name.to_owned(),
                online: false,
                last_seen: Some(1_764_000_000_000),
            };
            assert_eq!(format!("{head}1764000000000{tail}"), offline.to_json());
        }
    }
}
