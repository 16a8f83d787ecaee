//! JSON text as browsers write it: lone UTF-16 surrogates.
//!
//! A JavaScript string is a sequence of UTF-16 code units, and nothing stops
//! it from holding half of a surrogate pair — a message cut to a length in
//! the middle of an emoji, say. Since ECMAScript 2019 ("well-formed
//! `JSON.stringify`", ECMA-262 §25.5.2.3 `QuoteJSONString`) such a lone
//! surrogate is written as an escape, `"\ud83d"`. RFC 8259 §7 allows that
//! escape ("the ABNF allows … a single escaped code point that is not a
//! character") and §8.2 leaves what a parser makes of it open, but a Rust
//! `String` cannot hold it, and serde_json refuses it when it parses a string
//! (it keeps it only as WTF-8 bytes, which a tagged enum cannot ask for).
//!
//! [`replace_lone_surrogates`] gives such text the meaning browsers give it
//! everywhere else a string leaves JavaScript (WebIDL `USVString`, the
//! WHATWG Encoding Standard's UTF-8 encode): each lone surrogate becomes
//! U+FFFD REPLACEMENT CHARACTER.

/// The escape written in place of a lone surrogate's: U+FFFD, the same length
/// as any `\uXXXX`, so error positions in the rewritten text stay right.
const REPLACEMENT_ESCAPE: &str = "\\ufffd";

/// Rewrites every `\uXXXX` escape of `json` that encodes a lone UTF-16
/// surrogate — a leading one (`D800`–`DBFF`) not followed at once by an
/// escaped trailing one (`DC00`–`DFFF`), or a trailing one not preceded by a
/// leading one — to `\ufffd`. Everything else is left as it is, escaped
/// surrogate pairs included; a backslash that starts any other escape
/// (`\\`, `\"`, `\n`, …) is skipped with the character it escapes, so the
/// text `\\ud83d` (an escaped backslash, then `ud83d`) is not an escape.
///
/// Returns `None` when `json` holds no lone surrogate escape (nothing to
/// rewrite), otherwise the rewritten text, byte for byte as long as `json`.
/// Malformed escapes (`\u12`, `\uZZZZ`) are left for the JSON parser to refuse.
///
/// It does not parse JSON: a `\u` escape outside a string is a syntax error
/// before and after the rewrite.
pub fn replace_lone_surrogates(json: &str) -> Option<String> {
    let bytes = json.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut at = 0;
    while let Some(found) = bytes
        .get(at..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
    {
        let escape = at + found;
        if bytes.get(escape + 1) != Some(&b'u') {
            at = escape + 2;
            continue;
        }
        let lone = match hex_escape(bytes, escape) {
            Some(0xD800..=0xDBFF) => {
                if hex_escape(bytes, escape + 6).is_some_and(is_trailing) {
                    at = escape + 12;
                    continue;
                }
                true
            }
            Some(unit) => is_trailing(unit),
            None => false,
        };
        if lone {
            let text = out.get_or_insert_with(|| String::with_capacity(json.len()));
            // Both ends are ASCII (`\` and the last hex digit): char boundaries.
            text.push_str(&json[copied..escape]);
            text.push_str(REPLACEMENT_ESCAPE);
            copied = escape + 6;
        }
        at = escape + 6;
    }
    let mut text = out?;
    text.push_str(&json[copied..]);
    Some(text)
}

/// The code unit of the `\uXXXX` escape starting at `at`, if there is one.
fn hex_escape(bytes: &[u8], at: usize) -> Option<u16> {
    let escape = bytes.get(at..at + 6)?;
    if escape[0] != b'\\' || escape[1] != b'u' {
        return None;
    }
    escape[2..].iter().try_fold(0u16, |unit, &digit| {
        let value = (digit as char).to_digit(16)?;
        Some(unit << 4 | value as u16)
    })
}

fn is_trailing(unit: u16) -> bool {
    (0xDC00..=0xDFFF).contains(&unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_surrogate_escapes_become_the_replacement_character_and_nothing_else_changes() {
        // (JSON text, the text after the rewrite; None: nothing to rewrite)
        let table: &[(&str, Option<&str>)] = &[
            (r#""\ud83d""#, Some(r#""\ufffd""#)),
            (r#""\ude00""#, Some(r#""\ufffd""#)),
            (r#""\uD83D""#, Some(r#""\ufffd""#)),
            (r#""cut \ud83d""#, Some(r#""cut \ufffd""#)),
            (r#""\ud83dx""#, Some(r#""\ufffdx""#)),
            (r#""\ud83d\n""#, Some(r#""\ufffd\n""#)),
            (r#""\ud83d\u0041""#, Some(r#""\ufffd\u0041""#)),
            (r#""\ude00\ud83d""#, Some(r#""\ufffd\ufffd""#)),
            (r#""\ud83d\ud83d\ude00""#, Some(r#""\ufffd\ud83d\ude00""#)),
            (r#""\ud83d\ude00\ude00""#, Some(r#""\ud83d\ude00\ufffd""#)),
            (r#""\\\ud83d""#, Some(r#""\\\ufffd""#)),
            (
                r#"{"a":"\udbff","é":"\udc00😀"}"#,
                Some(r#"{"a":"\ufffd","é":"\ufffd😀"}"#),
            ),
            (r#""\ud83d\ude00""#, None),
            (r#""\uD83D\uDE00""#, None),
            (r#""\udbff\udfff""#, None),
            (r#""\\ud83d""#, None),
            (r#""\\\\ud83d""#, None),
            (r#""\u0000\uffff\ufffe\ufdd0\ufffd""#, None),
            (r#""\"\\\/\b\f\n\r\t""#, None),
            (r#""\u12""#, None),
            (r#""\uZZZZ""#, None),
            (r#""\ud83d\uZZZZ""#, Some(r#""\ufffd\uZZZZ""#)),
            ("\"\\", None),
            ("\"\\u", None),
            (r#""\ud8"#, None),
            ("", None),
            ("plain text, no escape", None),
        ];
        for (json, expected) in table {
            let rewritten = replace_lone_surrogates(json);
            assert_eq!(rewritten.as_deref(), *expected, "{json}");
            if let Some(rewritten) = rewritten {
                assert_eq!(rewritten.len(), json.len(), "same length: {json}");
            }
        }
    }

    #[test]
    fn a_long_text_of_lone_surrogates_is_rewritten_whole() {
        let json = format!("\"{}\"", "\\ud83d".repeat(20_000));
        let expected = format!("\"{}\"", "\\ufffd".repeat(20_000));
        assert_eq!(replace_lone_surrogates(&json), Some(expected));
    }
}
