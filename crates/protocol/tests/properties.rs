//! Property tests of everything that reads client input in this crate:
//! whatever arrives, decoding answers (a frame or a coded error), never
//! panics, and never echoes unbounded input back.

use chat_protocol::{ClientFrame, ErrorCode, Inbound, decode};
use proptest::prelude::*;

/// Error messages quote at most a bounded part of the frame.
const MAX_MESSAGE: usize = 512;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "send", "join", "leave", "sync", "read", "typing", "watch", "unwatch", "type", "id",
            "to", "room", "body"
        ])
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "type", "id", "to", "room", "body", "media", "since", "limit", "peer", "up_to",
                    "users", "sender", "receiver", "message", "x"
                ])
                .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Any JavaScript string: UTF-16 code units, lone surrogates included, with
/// whole characters (astral ones as pairs) and ASCII mixed in.
fn js_string() -> impl Strategy<Value = Vec<u16>> {
    let piece = prop_oneof![
        any::<u16>().prop_map(|unit| vec![unit]),
        (0xD800u16..=0xDFFF).prop_map(|unit| vec![unit]),
        (0u16..0x80).prop_map(|unit| vec![unit]),
        any::<char>().prop_map(|c| c.encode_utf16(&mut [0; 2]).to_vec()),
    ];
    prop::collection::vec(piece, 0..60).prop_map(|pieces| pieces.concat())
}

/// `JSON.stringify` of a string, as ECMA-262 (2019 and later) writes it
/// (§25.5.2.3 QuoteJSONString): the short escapes, `\u00XX` for the other
/// controls, `\uXXXX` (lower-case hex) for lone surrogates, everything else raw.
fn json_stringify(units: &[u16]) -> String {
    let mut out = String::from("\"");
    for unit in char::decode_utf16(units.iter().copied()) {
        match unit {
            Ok('\u{8}') => out.push_str("\\b"),
            Ok('\t') => out.push_str("\\t"),
            Ok('\n') => out.push_str("\\n"),
            Ok('\u{c}') => out.push_str("\\f"),
            Ok('\r') => out.push_str("\\r"),
            Ok('"') => out.push_str("\\\""),
            Ok('\\') => out.push_str("\\\\"),
            Ok(c) if c < ' ' => out.push_str(&format!("\\u{:04x}", c as u32)),
            Ok(c) => out.push(c),
            Err(lone) => out.push_str(&format!("\\u{:04x}", lone.unpaired_surrogate())),
        }
    }
    out.push('"');
    out
}

fn check_answer(text: &str) {
    match decode(text) {
        Ok(_) => {}
        Err(e) => {
            assert!(!e.message.is_empty(), "an error explains itself: {text:?}");
            assert!(
                e.message.len() <= MAX_MESSAGE + text.len().min(MAX_MESSAGE),
                "bounded message for {text:?}: {}",
                e.message
            );
            assert!(
                matches!(
                    e.code,
                    ErrorCode::BadJson | ErrorCode::InvalidFrame | ErrorCode::UnknownType
                ),
                "a decoding error code, got {:?}",
                e.code
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_text_is_answered_without_panicking(text in ".{0,300}") {
        check_answer(&text);
    }

    #[test]
    fn any_json_is_answered_without_panicking(value in json_value()) {
        check_answer(&value.to_string());
    }

    #[test]
    fn a_frame_with_a_known_type_and_a_string_id_keeps_its_id_in_the_error(
        kind in prop::sample::select(ClientFrame::TYPES.to_vec()),
        id in "[a-z0-9]{1,20}",
        junk in json_value(),
    ) {
        let text = serde_json::json!({"type": kind, "id": id, "to": junk, "room": 7}).to_string();
        if let Err(e) = decode(&text) {
            prop_assert_eq!(e.id.as_deref(), Some(id.as_str()));
        }
    }

    #[test]
    fn send_frames_survive_encoding_and_decoding(
        id in "[^\u{0}]{1,64}",
        to in "[A-Za-z0-9][A-Za-z0-9_.-]{0,31}",
        body in ".{0,200}",
    ) {
        let frame = ClientFrame::Send { id, to: Some(to), room: None, body, media: None, reply_to: None };
        let text = serde_json::to_string(&frame).expect("serialises");
        prop_assert_eq!(decode(&text), Ok(Inbound::Typed(frame)));
    }

    #[test]
    fn any_string_json_stringify_writes_is_a_send_body_with_lone_surrogates_replaced(
        units in js_string(),
    ) {
        let text = format!(
            r#"{{"type":"send","id":"c1","to":"bob","body":{}}}"#,
            json_stringify(&units)
        );
        let expected = ClientFrame::Send {
            id: "c1".into(),
            to: Some("bob".into()),
            room: None,
            body: String::from_utf16_lossy(&units),
            media: None,
            reply_to: None,
        };
        prop_assert_eq!(decode(&text), Ok(Inbound::Typed(expected)));
    }

    #[test]
    fn any_string_json_stringify_writes_is_accepted_in_a_seed_frame(units in js_string()) {
        let text = format!(
            r#"{{"sender":"alice","receiver":"bob","message":{}}}"#,
            json_stringify(&units)
        );
        let Ok(Inbound::Seed(seed)) = decode(&text) else {
            return Err(TestCaseError::fail(format!("not a seed frame: {text}")));
        };
        prop_assert_eq!(seed.message, serde_json::Value::String(String::from_utf16_lossy(&units)));
    }
}

#[test]
fn deeply_nested_json_is_refused_not_a_stack_overflow() {
    for depth in [200, 10_000, 100_000] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(decode(&arrays).map_err(|e| e.code), Err(ErrorCode::BadJson));
        let objects = format!(
            "{}1{}",
            r#"{"type":"send","id":"x","body":"#.repeat(depth),
            "}".repeat(depth)
        );
        let e = decode(&objects).expect_err("refused");
        assert!(
            matches!(e.code, ErrorCode::BadJson | ErrorCode::InvalidFrame),
            "{e:?}"
        );
    }
}
