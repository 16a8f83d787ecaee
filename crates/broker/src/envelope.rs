//! What travels through the broker: a frame, its kind, and when it was
//! published (for the fan-out latency metric).
//!
//! Layout: one byte `T` (text) or `B` (binary), eight bytes of publish time
//! in microseconds since the Unix epoch (big-endian), then the frame as the
//! client receives it. Encoded once per message, however many receive it.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

const TEXT: u8 = b'T';
const BINARY: u8 = b'B';
const HEADER: usize = 9;

/// A frame ready to be written to a client. Cloning shares the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A text frame.
    Text(ByteString),
    /// A binary frame.
    Binary(Bytes),
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

/// Wraps a text frame for publishing.
pub fn text(frame: &str) -> Bytes {
    encode(TEXT, frame.as_bytes())
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
    fn foreign_payloads_are_dropped() {
        assert_eq!(decode(Bytes::from_static(b"short")), None);
        assert_eq!(decode(Bytes::from_static(b"X12345678frame")), None);
        let mut invalid_utf8 = BytesMut::from(&text("")[..]);
        invalid_utf8.put_slice(&[0xff, 0xfe]);
        assert_eq!(decode(invalid_utf8.freeze()), None);
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
