//! JSON text edge cases, as browsers and other clients write them, through
//! `decode`: each row is one kind of string a frame can carry, in a typed
//! `send` body, in the other typed fields, and in a seed frame.

use chat_protocol::{ClientFrame, ErrorCode, Inbound, decode};

/// How a JSON string literal must decode as a `send` body.
enum Expect {
    /// Accepted, the body being this text.
    Body(String),
    /// Refused with this code.
    Refused(ErrorCode),
}
use Expect::{Body, Refused};

fn body(s: &str) -> Expect {
    Body(s.to_owned())
}

/// (what the row is, the JSON string literal as the client wrote it, what must happen)
fn table() -> Vec<(&'static str, String, Expect)> {
    vec![
        // Lone surrogates, as JSON.stringify writes them since ES2019.
        (
            "an emoji cut after its leading half",
            r#""cut \ud83d""#.into(),
            body("cut \u{FFFD}"),
        ),
        (
            "a trailing half alone",
            r#""\ude00 rest""#.into(),
            body("\u{FFFD} rest"),
        ),
        ("upper-case hex", r#""\uD83D""#.into(), body("\u{FFFD}")),
        (
            "two halves in the wrong order",
            r#""\ude00\ud83d""#.into(),
            body("\u{FFFD}\u{FFFD}"),
        ),
        (
            "a leading half before a whole pair",
            r#""\ud83d\ud83d\ude00""#.into(),
            body("\u{FFFD}😀"),
        ),
        (
            "a leading half before another escape",
            r#""\ud83d\n""#.into(),
            body("\u{FFFD}\n"),
        ),
        (
            "an escaped backslash before a lone half",
            r#""\\\ud83d""#.into(),
            body("\\\u{FFFD}"),
        ),
        (
            "an escaped backslash, then text that looks like an escape",
            r#""\\ud83d""#.into(),
            body("\\ud83d"),
        ),
        // Whole characters stay as they are.
        (
            "an escaped surrogate pair",
            r#""\ud83d\ude00""#.into(),
            body("😀"),
        ),
        ("a raw emoji", r#""😀""#.into(), body("😀")),
        (
            "the highest code point, escaped",
            r#""\udbff\udfff""#.into(),
            body("\u{10FFFF}"),
        ),
        ("escaped NUL", r#""a\u0000b""#.into(), body("a\0b")),
        (
            "every short escape",
            r#""\"\\\/\b\f\n\r\t""#.into(),
            body("\"\\/\u{8}\u{C}\n\r\t"),
        ),
        (
            "escaped C0 controls",
            r#""\u0001\u001f""#.into(),
            body("\u{1}\u{1F}"),
        ),
        (
            "raw DEL and C1 controls",
            "\"\u{7F}\u{80}\u{9F}\"".into(),
            body("\u{7F}\u{80}\u{9F}"),
        ),
        (
            "escaped noncharacters",
            r#""\ufffe\uffff\ufdd0\ufdef""#.into(),
            body("\u{FFFE}\u{FFFF}\u{FDD0}\u{FDEF}"),
        ),
        (
            "raw noncharacters",
            "\"\u{FFFF}\u{1FFFE}\u{10FFFF}\"".into(),
            body("\u{FFFF}\u{1FFFE}\u{10FFFF}"),
        ),
        (
            "line and paragraph separators",
            "\"\u{2028}\u{2029}\"".into(),
            body("\u{2028}\u{2029}"),
        ),
        (
            "a byte order mark inside the string",
            r#""\ufeffhi""#.into(),
            body("\u{FEFF}hi"),
        ),
        (
            "the replacement character itself",
            r#""\ufffd""#.into(),
            body("\u{FFFD}"),
        ),
        // Very long strings (the gateway's frame limit, 64 KiB, is enforced before decoding).
        (
            "60 000 characters",
            format!("\"{}\"", "x".repeat(60_000)),
            body(&"x".repeat(60_000)),
        ),
        (
            "10 000 escaped characters",
            format!("\"{}\"", "\\u00e9".repeat(10_000)),
            body(&"é".repeat(10_000)),
        ),
        (
            "10 000 lone surrogates",
            format!("\"{}\"", "\\udc00".repeat(10_000)),
            body(&"\u{FFFD}".repeat(10_000)),
        ),
        (
            "a long text cut in an emoji at its end",
            format!("\"{}\\ud83d\"", "😀".repeat(10_000)),
            body(&format!("{}\u{FFFD}", "😀".repeat(10_000))),
        ),
        // What no JSON.stringify writes, refused as before (RFC 8259 §7).
        (
            "a raw control character",
            "\"a\u{1}b\"".into(),
            Refused(ErrorCode::BadJson),
        ),
        (
            "a raw newline",
            "\"a\nb\"".into(),
            Refused(ErrorCode::BadJson),
        ),
        (
            "an unknown escape",
            r#""\x41""#.into(),
            Refused(ErrorCode::BadJson),
        ),
        (
            "a short hex escape",
            r#""\u12""#.into(),
            Refused(ErrorCode::BadJson),
        ),
        (
            "a hex escape with a non-hex digit",
            r#""\uZZZZ""#.into(),
            Refused(ErrorCode::BadJson),
        ),
        (
            "a lone half before a malformed escape",
            r#""\ud83d\uZZZZ""#.into(),
            Refused(ErrorCode::BadJson),
        ),
        (
            "an unterminated string",
            r#""\ud83d"#.into(),
            Refused(ErrorCode::BadJson),
        ),
    ]
}

fn send(body_literal: &str) -> String {
    format!(r#"{{"type":"send","id":"c1","to":"bob","body":{body_literal}}}"#)
}

#[test]
fn every_kind_of_json_string_decodes_as_a_send_body_or_is_refused_as_json() {
    for (row, literal, expect) in table() {
        let decoded = decode(&send(&literal));
        match expect {
            Body(text) => match decoded {
                Ok(Inbound::Typed(ClientFrame::Send { body, .. })) => {
                    assert!(
                        body == text,
                        "{row}: body {:?}",
                        body.chars().take(40).collect::<String>()
                    )
                }
                other => panic!("{row}: {:?}", other.map_err(|e| e.message)),
            },
            Refused(code) => {
                let e = decoded.expect_err(row);
                assert_eq!(e.code, code, "{row}: {}", e.message);
                assert!(!e.message.contains("surrogate"), "{row}: {}", e.message);
            }
        }
    }
}

#[test]
fn every_kind_of_json_string_decodes_the_same_in_a_seed_message() {
    for (row, literal, expect) in table() {
        let text = format!(r#"{{"sender":"alice","receiver":"bob","message":{literal}}}"#);
        match (decode(&text), expect) {
            (Ok(Inbound::Seed(seed)), Body(body)) => {
                assert!(seed.message == serde_json::Value::String(body), "{row}")
            }
            (Err(e), Refused(code)) => assert_eq!(e.code, code, "{row}: {}", e.message),
            (other, _) => panic!(
                "{row}: {:?}",
                other.map(|_| "accepted").map_err(|e| e.message)
            ),
        }
    }
}

#[test]
fn a_lone_surrogate_in_any_text_field_of_a_typed_frame_becomes_the_replacement_character() {
    let frame = |text: &str| match decode(text) {
        Ok(Inbound::Typed(frame)) => frame,
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(
        frame(r#"{"type":"send","id":"\ud83d","room":"r","body":"x"}"#).id(),
        Some("\u{FFFD}")
    );
    assert_eq!(
        frame(r#"{"type":"join","room":"a\udc00"}"#),
        ClientFrame::Join {
            id: None,
            room: "a\u{FFFD}".into()
        }
    );
    assert_eq!(
        frame(r#"{"type":"watch","users":["\ud83d","ok"]}"#),
        ClientFrame::Watch {
            id: None,
            users: vec!["\u{FFFD}".into(), "ok".into()]
        }
    );
    // Escaped names of fields and types are text too.
    assert_eq!(
        frame(r#"{"\u0074ype":"t\u0079ping","to":"bob"}"#),
        ClientFrame::Typing {
            to: Some("bob".into()),
            room: None
        }
    );
}

#[test]
fn a_seed_frame_with_lone_surrogates_keeps_every_other_character() {
    let text =
        r#"{"sender":"alice","receiver":"bob","message":{"caption":"\ud83d","url":"/m\u00e9"}}"#;
    let Ok(Inbound::Seed(seed)) = decode(text) else {
        panic!("a seed frame: {:?}", decode(text))
    };
    assert_eq!(
        (seed.sender.as_str(), seed.receiver.as_str()),
        ("alice", "bob")
    );
    assert_eq!(
        seed.message,
        serde_json::json!({"caption": "\u{FFFD}", "url": "/mé"})
    );
}

#[test]
fn a_frame_refused_for_another_reason_is_explained_as_if_its_surrogates_were_whole() {
    let code = |text: &str| {
        decode(text)
            .map(|_| ())
            .map_err(|e| (e.code, e.id, e.message))
    };
    let (c, id, message) =
        code(r#"{"type":"send","id":"c9","to":"bob","body":"\ud83d","x":1}"#).unwrap_err();
    assert_eq!((c, id.as_deref()), (ErrorCode::InvalidFrame, Some("c9")));
    assert!(message.contains("unknown field `x`"), "{message}");
    let (c, _, message) = code(r#"{"type":"d\ud83dnce"}"#).unwrap_err();
    assert_eq!(c, ErrorCode::UnknownType);
    assert!(message.contains("'d\u{FFFD}nce'"), "{message}");
    let (c, _, _) = code(r#"{"hello":"\ud83d"}"#).unwrap_err();
    assert_eq!(c, ErrorCode::InvalidFrame);
    let (c, _, message) = code(r#"{"type":"send","body":"\ud83d" oops}"#).unwrap_err();
    assert_eq!(c, ErrorCode::BadJson);
    assert!(!message.contains("surrogate"), "{message}");
}

#[test]
fn a_byte_order_mark_before_the_frame_is_refused_as_json_no_browser_sends_one() {
    // RFC 8259 §8.1: senders must not add one; WebSocket.send never does.
    let e = decode("\u{FEFF}{\"type\":\"typing\",\"to\":\"bob\"}").expect_err("refused");
    assert_eq!(e.code, ErrorCode::BadJson);
}
