//! What travels through the broker: a frame, its kind, and when it was
//! published (for the fan-out latency metric).
//!
//! Layout: one byte of kind, eight bytes of publish time in microseconds
//! since the Unix epoch (big-endian), then by kind:
//! - `T` (text) or `B` (binary): the frame as the client receives it;
//! - `E` (text except one user): two bytes of length (big-endian), that
//!   user's id, then the text frame, for every connection but that user's
//!   (a `typing` in a room goes to the other members);
//! - `C` (control): a [`Control`] for the connections, never written to a
//!   client (`+{seq} {room}` / `-{seq} {room}`: the user joined or left a
//!   room, at that entry of its history).
//!
//! Encoded once per message, however many receive it.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

const TEXT: u8 = b'T';
const BINARY: u8 = b'B';
const EXCEPT: u8 = b'E';
const CONTROL: u8 = b'C';
const HEADER: usize = 9;

/// A frame ready to be written to a client, or a change for the connection
/// itself. Cloning shares the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A text frame.
    Text(ByteString),
    /// A binary frame.
    Binary(Bytes),
    /// A text frame for every connection but those of user `except`.
    TextExcept {
        /// The frame.
        text: ByteString,
        /// The user whose connections skip it.
        except: ByteString,
    },
    /// A change of what the connection follows; never written.
    Control(Control),
}

/// A change of what every connection of a user follows, with the `seq` of
/// the room's entry that records it (so a connection can tell a change
/// from an older one that arrives late, and catch up from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// The user became a member of `room` at entry `seq`: follow it.
    Joined {
        /// The room.
        room: ByteString,
        /// Its `member_joined` entry.
        seq: u64,
    },
    /// The user stopped being a member of `room` at entry `seq`.
    Left {
        /// The room.
        room: ByteString,
        /// Its `member_left` entry.
        seq: u64,
    },
    /// The application's server removed the user: every connection of
    /// theirs closes (close code 4403).
    Disconnect,
}

impl Control {
    /// The control's text: `+{seq} {room}` or `-{seq} {room}` (room names
    /// hold no spaces; the seq comes first anyway), or `!` to disconnect.
    fn encode(&self) -> String {
        match self {
            Control::Joined { room, seq } => format!("+{seq} {room}"),
            Control::Left { room, seq } => format!("-{seq} {room}"),
            Control::Disconnect => "!".to_owned(),
        }
    }

    fn decode(text: &str) -> Option<Self> {
        if text == "!" {
            return Some(Control::Disconnect);
        }
        let (sign, rest) = text.split_at_checked(1)?;
        let (seq, room) = rest.split_once(' ')?;
        let (room, seq) = (room.into(), seq.parse().ok()?);
        match sign {
            "+" => Some(Control::Joined { room, seq }),
            "-" => Some(Control::Left { room, seq }),
            _ => None,
        }
    }
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The header of a text envelope published now: what a store puts in front
/// of a frame it publishes itself.
pub fn text_header() -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER);
    header.push(TEXT);
    header.extend_from_slice(&now_micros().to_be_bytes());
    header
}

/// The header of a control envelope published now (what a store puts in
/// front of `+{seq} {room}` / `-{seq} {room}`).
pub fn control_header() -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER);
    header.push(CONTROL);
    header.extend_from_slice(&now_micros().to_be_bytes());
    header
}

/// Wraps a text frame for publishing.
pub fn text(frame: &str) -> Bytes {
    encode(TEXT, frame.as_bytes())
}

/// Wraps a text frame for every connection but those of user `except`.
/// A user id longer than 65 535 bytes (none is: ids stop at 255) would
/// make it a plain text envelope.
pub fn text_except(frame: &str, except: &str) -> Bytes {
    let Ok(length) = u16::try_from(except.len()) else {
        return text(frame);
    };
    let mut body = Vec::with_capacity(2 + except.len() + frame.len());
    body.extend_from_slice(&length.to_be_bytes());
    body.extend_from_slice(except.as_bytes());
    body.extend_from_slice(frame.as_bytes());
    encode(EXCEPT, &body)
}

/// Wraps a control for publishing (on a user's channel).
pub fn control(control: &Control) -> Bytes {
    encode(CONTROL, control.encode().as_bytes())
}

/// Wraps a binary frame for publishing.
pub fn binary(frame: &[u8]) -> Bytes {
    encode(BINARY, frame)
}

fn encode(kind: u8, frame: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(HEADER + frame.len());
    buf.put_u8(kind);
    buf.put_u64(now_micros());
    buf.put_slice(frame);
    buf.freeze()
}

/// Unwraps a published envelope: the frame and its publish time. `None` for
/// anything this version did not write (it is dropped, not delivered).
pub fn decode(mut envelope: Bytes) -> Option<(Outbound, u64)> {
    if envelope.len() < HEADER {
        return None;
    }
    let kind = envelope[0];
    let published = u64::from_be_bytes(envelope[1..HEADER].try_into().ok()?);
    let frame = envelope.split_off(HEADER);
    let outbound = match kind {
        TEXT => Outbound::Text(ByteString::try_from(frame).ok()?),
        BINARY => Outbound::Binary(frame),
        EXCEPT => {
            let mut frame = frame;
            if frame.len() < 2 {
                return None;
            }
            let length = usize::from(u16::from_be_bytes([frame[0], frame[1]]));
            let mut rest = frame.split_off(2);
            if rest.len() < length {
                return None;
            }
            let text = rest.split_off(length);
            Outbound::TextExcept {
                text: ByteString::try_from(text).ok()?,
                except: ByteString::try_from(rest).ok()?,
            }
        }
        CONTROL => {
            let text = ByteString::try_from(frame).ok()?;
            Outbound::Control(Control::decode(&text)?)
        }
        _ => return None,
    };
    Some((outbound, published))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_survive_the_round_trip() {
        let (out, at) = decode(text("héllo")).expect("decodes");
        assert_eq!(out, Outbound::Text("héllo".into()));
        assert!(at > 0);
        let (out, _) = decode(binary(&[0, 159, 146, 150])).expect("decodes");
        assert_eq!(
            out,
            Outbound::Binary(Bytes::from_static(&[0, 159, 146, 150]))
        );
    }

    #[test]
    fn exceptions_and_controls_survive_the_round_trip() {
        let (out, _) = decode(text_except("{\"type\":\"typing\"}", "张三")).expect("decodes");
        assert_eq!(
            out,
            Outbound::TextExcept {
                text: "{\"type\":\"typing\"}".into(),
                except: "张三".into()
            }
        );
        for change in [
            Control::Joined {
                room: "général".into(),
                seq: 7,
            },
            Control::Left {
                room: "x".into(),
                seq: 12,
            },
        ] {
            let (out, _) = decode(control(&change)).expect("decodes");
            assert_eq!(out, Outbound::Control(change));
        }
        let mut written = control_header();
        written.extend_from_slice(b"+3 room");
        let (out, _) = decode(Bytes::from(written)).expect("a store's control decodes");
        assert_eq!(
            out,
            Outbound::Control(Control::Joined {
                room: "room".into(),
                seq: 3
            })
        );
    }

    #[test]
    fn foreign_payloads_are_dropped() {
        assert_eq!(decode(Bytes::from_static(b"short")), None);
        assert_eq!(decode(Bytes::from_static(b"X12345678frame")), None);
        let mut invalid_utf8 = BytesMut::from(&text("")[..]);
        invalid_utf8.put_slice(&[0xff, 0xfe]);
        assert_eq!(decode(invalid_utf8.freeze()), None);
        let mut short_except = BytesMut::from(&text("")[..]);
        short_except[0] = EXCEPT;
        short_except.put_slice(&[0, 9, b'a']);
        assert_eq!(decode(short_except.freeze()), None);
        let mut unknown_control = BytesMut::from(&text("")[..]);
        unknown_control[0] = CONTROL;
        unknown_control.put_slice(b"*3 room");
        assert_eq!(decode(unknown_control.freeze()), None);
    }

    proptest::proptest! {
        /// Whatever arrives on a channel (another program may publish there)
        /// decodes or is dropped, never panics; what was encoded comes back.
        #[test]
        fn any_payload_decodes_or_is_dropped(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64), body in ".{0,64}") {
            let _ = decode(Bytes::from(bytes));
            let (out, _) = decode(text(&body)).expect("own envelopes decode");
            proptest::prop_assert_eq!(out, Outbound::Text(body.as_str().into()));
        }
    }
}
