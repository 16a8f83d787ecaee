//! The chat backend's wire protocol, shared by every service and client.
//!
//! - [`seed`]: the frame of the Django Channels design we re-implement,
//!   `{"sender", "receiver", "message"}`, accepted and delivered unchanged.
//! - [`frames`]: the typed protocol — JSON text frames tagged by `"type"`,
//!   client → server ([`ClientFrame`]) and server → client ([`ServerFrame`]).
//! - [`decode`]: turns one text frame into an [`Inbound`] frame or a precise
//!   [`DecodeError`] that maps onto a stable [`ErrorCode`].
//! - [`text`]: JSON text as browsers write it (lone surrogates become U+FFFD).
//!
//! The JSON Schema of every frame lives in `proto/schema/`, generated from
//! these types (feature `schema`) and checked by a test so it cannot drift.

pub mod decode;
pub mod frames;
pub mod seed;
pub mod text;

pub use decode::{DecodeError, Inbound, decode};
pub use frames::{
    ChatMessage, ClientFrame, ErrorCode, MediaInfo, MediaRef, Quote, Reaction, RoomEvent,
    ServerFrame, Target, message_template,
};
pub use seed::SeedFrame;
