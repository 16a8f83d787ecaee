//! Names, for any string: a nickname is mapped to an id or refused with the
//! rule it broke, never a panic; mapping an id again gives the same id
//! (PRECIS enforcement is idempotent, RFC 8264 §7); ids hold no control,
//! space or zero-width characters and fit in 255 characters; provider ids are
//! taken exactly as they are.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

use chat_auth::names::{MAX_NAME_CHARS, NameError, nickname, provider_id};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_nickname_maps_to_a_stable_id_or_says_why_not(
        name in "\\PC{0,40}|[A-Za-zА-я0-9_.\u{200b}\u{ff21}-\u{ff3a} -]{0,70}|.{0,300}"
    ) {
        match nickname(&name) {
            Ok(id) => {
                prop_assert_eq!(nickname(&id), Ok(id.clone()), "idempotent");
                prop_assert!(!id.is_empty() && id.chars().count() <= MAX_NAME_CHARS);
                prop_assert!(!id.chars().any(|c| c.is_control() || c.is_whitespace()
                    || c == '\u{200b}'), "{:?}", id);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }

    #[test]
    fn any_provider_id_is_taken_exactly_or_refused(id in ".{0,300}|[a-z|@%/ ]{1,20}") {
        let expected = !id.is_empty()
            && id.chars().count() <= MAX_NAME_CHARS
            && !id.chars().any(char::is_control);
        match provider_id(&id) {
            Ok(taken) => { prop_assert!(expected); prop_assert_eq!(taken, id.as_str()); }
            Err(e) => { prop_assert!(!expected, "{:?}: {}", id, e); }
        }
    }
}

#[test]
fn one_user_however_the_name_is_typed() {
    let ids: Vec<String> = ["Bob", "bob", "BOB", "ｂｏｂ", "Ｂｏｂ"]
        .iter()
        .map(|n| nickname(n).unwrap())
        .collect();
    assert!(ids.iter().all(|id| id == "bob"), "{ids:?}");
    assert_ne!(nickname("bob"), nickname("b0b"));
    assert_eq!(
        nickname("\u{200b}bob").unwrap_err(),
        NameError::Disallowed {
            character: '\u{200b}',
            position: 0
        }
    );
}
