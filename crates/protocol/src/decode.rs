//! Decoding one inbound text frame on a user connection.

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::frames::{ClientFrame, ErrorCode};
use crate::seed::SeedFrame;
use crate::text::replace_lone_surrogates;

/// A decoded frame from a user connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A frame of the typed protocol.
    Typed(ClientFrame),
    /// A seed frame, `{"sender", "receiver", "message"}`.
    Seed(SeedFrame),
}

/// Why a frame could not be decoded, with the error code it answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The stable code for the `error` frame.
    pub code: ErrorCode,
    /// What was wrong, for a person.
    pub message: String,
    /// The frame's `id`, when it had a readable string one.
    pub id: Option<String>,
}

/// Just enough of a frame to classify it when it did not decode.
#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "type")]
    kind: Option<String>,
    id: Option<serde_json::Value>,
    sender: Option<IgnoredAny>,
    receiver: Option<IgnoredAny>,
}

/// Decodes a text frame: a typed frame (an object with `"type"`) or a seed
/// frame (an object with `"sender"` and `"receiver"`). Typed frames, the hot
/// path, cost one parse; only refused frames are parsed again to explain why.
///
/// Text is taken as browsers write it (ECMA-262 `JSON.stringify`, RFC 8259
/// §7): an escaped lone UTF-16 surrogate (`"\ud83d"`, half an emoji) is
/// decoded as U+FFFD, in typed frames and in a seed frame's fields alike
/// (see [`crate::text`]). A seed frame is still forwarded as the text that
/// arrived, so its receiver gets the sender's bytes unchanged. Escaped NUL
/// and noncharacters (U+FFFF, U+FDD0, …) are Unicode scalar values and are
/// kept as they are.
///
/// Errors: [`ErrorCode::BadJson`] (not JSON, or not an object),
/// [`ErrorCode::UnknownType`], [`ErrorCode::InvalidFrame`] (a known shape
/// with a missing, extra or wrong field), each with a message for a person
/// and the frame's string `id` when it has one.
pub fn decode(text: &str) -> Result<Inbound, DecodeError> {
    let typed_error = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => return Ok(Inbound::Typed(frame)),
        Err(e) => e,
    };
    // serde_json refuses a lone surrogate escape as a syntax error; only then
    // is the text scanned, and decoded again with U+FFFD in its place.
    if typed_error.is_syntax()
        && let Some(well_formed) = replace_lone_surrogates(text)
    {
        return match serde_json::from_str::<ClientFrame>(&well_formed) {
            Ok(frame) => Ok(Inbound::Typed(frame)),
            Err(e) => explain(&well_formed, e),
        };
    }
    explain(text, typed_error)
}

/// Why `text`, refused as a typed frame with `typed_error`, is a seed frame
/// or which error it answers with.
fn explain(text: &str, typed_error: serde_json::Error) -> Result<Inbound, DecodeError> {
    let probe: Probe = serde_json::from_str(text).map_err(|e| DecodeError {
        code: ErrorCode::BadJson,
        message: format!("frame is not a JSON object: {e}"),
        id: None,
    })?;
    let id = match probe.id {
        Some(serde_json::Value::String(s)) => Some(s),
        _ => None,
    };
    match probe.kind {
        Some(kind) if ClientFrame::TYPES.contains(&kind.as_str()) => Err(DecodeError {
            code: ErrorCode::InvalidFrame,
            message: format!("invalid '{kind}' frame: {typed_error}"),
            id,
        }),
        Some(kind) => Err(DecodeError {
            code: ErrorCode::UnknownType,
            message: format!(
                "unknown frame type '{}'; expected one of {}",
                kind.chars().take(64).collect::<String>(),
                ClientFrame::TYPES.join(", ")
            ),
            id,
        }),
        None if probe.sender.is_some() || probe.receiver.is_some() => {
            serde_json::from_str::<SeedFrame>(text)
                .map(Inbound::Seed)
                .map_err(|e| DecodeError {
                    code: ErrorCode::InvalidFrame,
                    message: format!("invalid seed frame: {e}"),
                    id: None,
                })
        }
        None => Err(DecodeError {
            code: ErrorCode::InvalidFrame,
            message: "frame has neither a \"type\" nor the seed's \"sender\"/\"receiver\""
                .to_owned(),
            id,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_frame_decodes() {
        let frame = decode(r#"{"type":"join","room":"general"}"#).expect("decodes");
        assert_eq!(
            frame,
            Inbound::Typed(ClientFrame::Join {
                id: None,
                room: "general".into()
            })
        );
    }

    #[test]
    fn a_seed_frame_decodes_with_any_json_message() {
        let frame =
            decode(r#"{"sender":"a","receiver":"b","message":{"url":"/x"}}"#).expect("decodes");
        let Inbound::Seed(seed) = frame else {
            panic!("not a seed frame: {frame:?}")
        };
        assert_eq!(seed.message["url"], "/x");
    }

    #[test]
    fn each_kind_of_bad_frame_gets_its_own_code() {
        let code = |text: &str| decode(text).expect_err(text).code;
        assert_eq!(code("{not json"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadJson);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"send","to":"bob"}"#),
            ErrorCode::InvalidFrame
        );
        assert_eq!(code(r#"{"sender":"a"}"#), ErrorCode::InvalidFrame);
        assert_eq!(code(r#"{"hello":1}"#), ErrorCode::InvalidFrame);
    }

    #[test]
    fn a_refused_frame_keeps_its_id_for_the_reply() {
        let err =
            decode(r#"{"type":"send","id":"c7","to":"bob","body":1}"#).expect_err("body not text");
        assert_eq!(err.id.as_deref(), Some("c7"));
    }
}
