//! How much the stores keep, and how large rooms may grow.

/// How many entries each kind of list keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Entries an inbox, a conversation's history (and its read index) keep;
    /// older ones are trimmed (`CHAT_HISTORY_MAX`).
    pub history_max: u64,
    /// Entries an offline list keeps (`CHAT_OFFLINE_MAX`).
    pub offline_max: u64,
    /// How large rooms and memberships may grow (a room's history keeps
    /// `history_max` entries).
    pub rooms: RoomLimits,
}

impl Limits {
    /// The defaults, in a `const` context.
    pub const DEFAULT: Self = Self {
        history_max: 10_000,
        offline_max: 1_000,
        rooms: RoomLimits::DEFAULT,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How large rooms and memberships may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLimits {
    /// Members one room may have (`CHAT_ROOM_MAX_MEMBERS`).
    pub max_members: u64,
    /// Rooms one user may be a member of (`CHAT_ROOMS_PER_USER`).
    pub rooms_per_user: u64,
}

impl RoomLimits {
    /// The defaults, in a `const` context.
    pub const DEFAULT: Self = Self {
        max_members: 100_000,
        rooms_per_user: 1_000,
    };
}

impl Default for RoomLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
