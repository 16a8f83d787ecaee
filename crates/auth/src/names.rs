//! Names: who a user is, and what a room is called.
//!
//! Two kinds of user name, one per identity mode:
//!
//! - **Provider ids** (jwt mode): whatever the identity provider puts in the
//!   user claim — `auth0|5f3c…`, `alice@example.com`, a UUID, digits — taken
//!   as they are: any non-empty string of at most [`MAX_NAME_CHARS`]
//!   characters without control characters. Compared byte for byte.
//! - **Nicknames** (open mode), and **room names** in both modes: Unicode
//!   as people type it, prepared and compared per the PRECIS framework
//!   (RFC 8264) with RFC 8265's `UsernameCaseMapped` profile: width-mapped,
//!   case-folded, NFC — so `Bob`, `bob` and `ｂｏｂ` are one user, and `张三`,
//!   `Алиса` and `Zoë` are names. Zero-width characters, controls and
//!   spaces are refused by the profile; letters mixing scripts that look
//!   alike (Latin with Cyrillic or Greek, say) are refused too (UTS #39's
//!   moderately restrictive level), so a name shown is the name meant.
//!
//! The mapped form is the id everything routes by (channels, store keys,
//! URLs); the form as typed is what the page shows.

use std::borrow::Cow;
use std::fmt;

use precis_core::profile::PrecisFastInvocation;
use precis_profiles::UsernameCaseMapped;
use unicode_security::{RestrictionLevel, RestrictionLevelDetection};

/// Longest user id or room name, in characters (Unicode scalar values,
/// after mapping): what JSON Schema's `maxLength` counts, so the OpenAPI
/// documents state the rule exactly.
pub const MAX_NAME_CHARS: usize = 255;

/// Why a name was refused; its `Display` says which rule failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_CHARS`] (after mapping).
    TooLong,
    /// A control character (in a provider id).
    Control {
        /// Its position, in characters.
        position: usize,
    },
    /// A character the PRECIS profile does not allow in a name (spaces,
    /// zero-width characters, symbols, unassigned code points).
    Disallowed {
        /// The character.
        character: char,
        /// Its position, in characters.
        position: usize,
    },
    /// Letters of scripts that look alike, mixed.
    MixedScripts,
    /// The PRECIS profile refused the name as a whole (e.g. a right-to-left
    /// name breaking the bidi rule).
    Invalid,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("name is empty"),
            NameError::TooLong => write!(f, "name is longer than {MAX_NAME_CHARS} characters"),
            NameError::Control { position } => {
                write!(f, "name holds a control character at position {position}")
            }
            NameError::Disallowed {
                character,
                position,
            } => write!(
                f,
                "name holds U+{:04X} at position {position}, which names may not contain \
                 (no spaces, zero-width or control characters, or symbols)",
                u32::from(*character)
            ),
            NameError::MixedScripts => f.write_str(
                "name mixes letters of scripts that look alike (such as Latin with Cyrillic or Greek)",
            ),
            NameError::Invalid => f.write_str("name is not a valid name (RFC 8265)"),
        }
    }
}

impl std::error::Error for NameError {}

/// A provider's user id, checked: non-empty, at most [`MAX_NAME_CHARS`]
/// characters, no control characters. Returned as given.
pub fn provider_id(id: &str) -> Result<&str, NameError> {
    if id.is_empty() {
        return Err(NameError::Empty);
    }
    if id.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if let Some(position) = id.chars().position(char::is_control) {
        return Err(NameError::Control { position });
    }
    Ok(id)
}

/// A nickname or room name as typed, mapped to the id it is known by
/// (RFC 8265 `UsernameCaseMapped`, then the mixed-script check).
pub fn nickname(name: &str) -> Result<String, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let mapped: Cow<'_, str> = UsernameCaseMapped::enforce(name).map_err(|e| match e {
        precis_core::Error::BadCodepoint(info) => {
            let character = char::from_u32(info.cp).unwrap_or(char::REPLACEMENT_CHARACTER);
            NameError::Disallowed {
                character,
                position: info.position,
            }
        }
        _ => NameError::Invalid,
    })?;
    if mapped.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    let letters: String = mapped.chars().filter(|c| c.is_alphabetic()).collect();
    if !letters.is_empty()
        && !letters
            .as_str()
            .check_restriction_level(RestrictionLevel::ModeratelyRestrictive)
    {
        return Err(NameError::MixedScripts);
    }
    Ok(mapped.into_owned())
}

/// How user names are read in this deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserNames {
    /// Open mode: nicknames, mapped per PRECIS.
    Nicknames,
    /// Jwt mode: the identity provider's ids, as they are.
    ProviderIds,
}

impl UserNames {
    /// `name` as the user id it stands for.
    pub fn id(self, name: &str) -> Result<String, NameError> {
        match self {
            UserNames::Nicknames => nickname(name),
            UserNames::ProviderIds => provider_id(name).map(str::to_owned),
        }
    }
}

/// A room name as typed, mapped to the room's id (PRECIS, as nicknames).
pub fn room(name: &str) -> Result<String, NameError> {
    nickname(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_in_any_script_map_to_one_id() {
        for (typed, id) in [
            ("Bob", "bob"),
            ("bob", "bob"),
            ("ＢＯＢ", "bob"),
            ("ｂｏｂ", "bob"),
            ("张三", "张三"),
            ("Алиса", "алиса"),
            ("Zoë", "zoë"),
            ("Zoe\u{308}", "zoë"),
            ("alice.m_42", "alice.m_42"),
            ("Straße", "straße"),
        ] {
            assert_eq!(nickname(typed).as_deref(), Ok(id), "{typed}");
        }
    }

    #[test]
    fn each_kind_of_bad_nickname_says_which_rule_failed() {
        assert_eq!(nickname(""), Err(NameError::Empty));
        assert_eq!(nickname(&"a".repeat(256)), Err(NameError::TooLong));
        for (bad, character, position) in [
            ("ali\u{200B}ce", '\u{200B}', 3),
            ("Alice Smith", ' ', 5),
            ("bob\u{7}", '\u{7}', 3),
        ] {
            assert_eq!(
                nickname(bad),
                Err(NameError::Disallowed {
                    character,
                    position
                }),
                "{bad:?}"
            );
        }
        // "раypal": Cyrillic р and а with Latin letters.
        assert_eq!(nickname("\u{440}\u{430}ypal"), Err(NameError::MixedScripts));
        assert_eq!(
            nickname("p\u{3b1}ypal"),
            Err(NameError::MixedScripts),
            "Greek alpha"
        );
        let message = nickname("ali\u{200B}ce").unwrap_err().to_string();
        assert!(
            message.contains("U+200B") && message.contains("position 3"),
            "{message}"
        );
    }

    #[test]
    fn latin_beside_a_script_without_look_alikes_is_a_name() {
        for name in ["Jay周", "mika-ミカ", "kim김"] {
            assert!(nickname(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn provider_ids_are_taken_as_they_are() {
        for id in [
            "auth0|5f3c9a",
            "alice@example.com",
            "8f14e45f-ceea-467f-a0e6-0b3c1c2a2f1e",
            "12345",
            "a/b%20c d",
            "Bob",
        ] {
            assert_eq!(provider_id(id), Ok(id));
        }
        assert_eq!(provider_id(""), Err(NameError::Empty));
        assert_eq!(provider_id(&"x".repeat(256)), Err(NameError::TooLong));
        assert_eq!(provider_id(&"x".repeat(255)).map(str::len), Ok(255));
        assert_eq!(provider_id("a\nb"), Err(NameError::Control { position: 1 }));
        assert_eq!(UserNames::ProviderIds.id("Bob").as_deref(), Ok("Bob"));
        assert_eq!(UserNames::Nicknames.id("Bob").as_deref(), Ok("bob"));
    }
}
