//! The seed's point-to-point frame.

use serde::{Deserialize, Serialize};

/// `{"sender": "...", "receiver": "...", "message": ...}` — the frame of the
/// design we re-implement. `message` is usually a string, but the seed also
/// forwards an upload's JSON response in it, so any JSON value is accepted
/// and delivered to the receiver byte for byte as the sender wrote it. The
/// decoded fields read an escaped lone surrogate as U+FFFD (see
/// [`crate::text`]); the forwarded text keeps the escape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SeedFrame {
    /// Must equal the user of the connection the frame arrives on.
    pub sender: String,
    /// The user whose every connection receives the frame.
    pub receiver: String,
    /// The payload: text, or the JSON an upload answered with.
    pub message: serde_json::Value,
}
