//! Rules for user and room names.
//!
//! Names are ASCII letters, digits, `_`, `-` and `.`, starting with a letter
//! or digit. ASCII only on purpose: it rules out zero-width characters and
//! look-alike letters from other scripts, so a name shown is the name meant.

use std::fmt;

/// Longest accepted user name, in bytes.
pub const MAX_USER_LEN: usize = 32;
/// Longest accepted room name, in bytes.
pub const MAX_ROOM_LEN: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than the limit it carries.
    TooLong(usize),
    /// The name starts with something other than a letter or digit.
    BadStart,
    /// The name holds a character outside `[A-Za-z0-9_.-]`.
    BadChar,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("name is empty"),
            NameError::TooLong(max) => write!(f, "name is longer than {max} characters"),
            NameError::BadStart => f.write_str("name must start with a letter or a digit"),
            NameError::BadChar => {
                f.write_str("name may only contain ASCII letters, digits, '_', '-' and '.'")
            }
        }
    }
}

impl std::error::Error for NameError {}

fn validate(name: &str, max: usize) -> Result<(), NameError> {
    let bytes = name.as_bytes();
    let Some(first) = bytes.first() else {
        return Err(NameError::Empty);
    };
    if bytes.len() > max {
        return Err(NameError::TooLong(max));
    }
    if !first.is_ascii_alphanumeric() {
        return Err(NameError::BadStart);
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(NameError::BadChar);
    }
    Ok(())
}

/// Checks a user name: 1–32 characters of `[A-Za-z0-9_.-]`, starting with a
/// letter or digit.
pub fn validate_user(name: &str) -> Result<(), NameError> {
    validate(name, MAX_USER_LEN)
}

/// Checks a room name: 1–64 characters of `[A-Za-z0-9_.-]`, starting with a
/// letter or digit.
pub fn validate_room(name: &str) -> Result<(), NameError> {
    validate(name, MAX_ROOM_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_accepted() {
        for name in ["alice", "Bob_2", "a", "x.y-z", &"a".repeat(32)] {
            assert_eq!(validate_user(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn names_outside_the_rules_are_refused_with_the_reason() {
        assert_eq!(validate_user(""), Err(NameError::Empty));
        assert_eq!(validate_user(&"a".repeat(33)), Err(NameError::TooLong(32)));
        assert_eq!(validate_user(".hidden"), Err(NameError::BadStart));
        assert_eq!(validate_user("al ice"), Err(NameError::BadChar));
        assert_eq!(validate_user("al\u{200b}ice"), Err(NameError::BadChar));
        assert_eq!(
            validate_user("аlice"),
            Err(NameError::BadStart),
            "Cyrillic a"
        );
        assert_eq!(validate_user("../etc"), Err(NameError::BadStart));
        assert_eq!(validate_room(&"r".repeat(64)), Ok(()));
        assert_eq!(validate_room(&"r".repeat(65)), Err(NameError::TooLong(64)));
    }
}
