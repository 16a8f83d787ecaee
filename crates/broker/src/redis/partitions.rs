//! Channels grouped into hash-tagged partitions, for sharded pub/sub.
//!
//! In a Redis Cluster a shard channel lives in the hash slot of its name,
//! like a key (`SSUBSCRIBE`/`SPUBLISH`, Redis ≥ 7), and one `SSUBSCRIBE`
//! may only name channels of one slot. Each channel is put in one of
//! [`PARTITIONS`] partitions by its own slot (a user's watch channel by
//! the slot of the user's channel: [`of`]), and its shard channel name
//! starts with its partition's hash tag: `{p17-2041}chat:user:alice`. So
//!
//! - the channels of a partition share one slot: a batch of subscriptions
//!   is one `SSUBSCRIBE` per partition, not one per channel;
//! - the tags are chosen so their slots sit at the middle of 64 equal slot
//!   ranges: a cluster whose masters own equal ranges (what
//!   `redis-cli --cluster create` makes) gets an equal share of partitions
//!   on each master (21, 22 and 21 of 64 on three masters), so each shard
//!   carries about the same part of the traffic.
//!
//! Slots follow the Redis Cluster specification: CRC16 (XMODEM) of the
//! key's hash tag, modulo 16 384.

use std::sync::OnceLock;

/// How many partitions the channels are spread over. Fixed: every node of
/// a deployment must agree on it (it is part of the channel names).
pub const PARTITIONS: usize = 64;

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// The hash slot of `key`: CRC16 of its hash tag (the part between the
/// first `{` and the next `}`, when that is not empty) or of the whole key.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(hashed) % SLOTS
}

/// The partition of a channel (its name as the application gives it,
/// without prefix): the slot of its [`placed_by`] name, scaled to
/// [`PARTITIONS`].
pub fn of(channel: &str) -> usize {
    usize::from(slot(placed_by(channel).as_bytes())) * PARTITIONS / usize::from(SLOTS)
}

/// The name a channel is placed by: its own, except that a user's watch
/// channel (`watch:{name}`) goes where the user's channel (`user:{name}`)
/// goes. A user's keys carry that partition's tag, so one script in the
/// user's slot can publish to both (the message store to the user, presence
/// to their watchers).
fn placed_by(channel: &str) -> std::borrow::Cow<'_, str> {
    match crate::channel::watched(channel) {
        Some(name) => std::borrow::Cow::Owned(crate::channel::user(name)),
        None => std::borrow::Cow::Borrowed(channel),
    }
}

/// The hash tag of each partition, without braces (`p17-2041`).
pub fn tags() -> &'static [String; PARTITIONS] {
    static TAGS: OnceLock<[String; PARTITIONS]> = OnceLock::new();
    TAGS.get_or_init(|| std::array::from_fn(find_tag))
}

/// The slot a partition's channels live in.
pub fn slot_of(partition: usize) -> u16 {
    target(partition)
}

/// The middle slot of partition `p`'s equal share of the slots.
fn target(p: usize) -> u16 {
    let width = usize::from(SLOTS) / PARTITIONS;
    u16::try_from(p * width + width / 2).unwrap_or(0)
}

/// The first `p{p}-{k}` whose slot is the partition's target (about 16 000
/// tries on average: microseconds, once per process).
fn find_tag(p: usize) -> String {
    let want = target(p);
    (0u32..)
        .map(|k| format!("p{p}-{k}"))
        .find(|tag| slot(tag.as_bytes()) == want)
        .unwrap_or_default()
}

/// The shard channel of `channel` under `prefix`: `{tag}{prefix}{channel}`.
/// The tag comes first so that no prefix can hold the first `{`.
pub fn shard_channel(prefix: &str, channel: &str) -> String {
    format!("{{{}}}{prefix}{channel}", tags()[of(channel)])
}

/// A shard channel of partition `p` whatever the channel's own slot (the
/// node's health channels, one per partition).
pub fn in_partition(p: usize, name: &str) -> String {
    format!("{{{}}}{name}", tags()[p])
}

/// `name` without its leading `{tag}`, or `None` when it has none.
pub fn untagged(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('{')?;
    let close = rest.find('}')?;
    Some(&rest[close + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_watch_channel_shares_the_users_partition() {
        use crate::channel;
        let mut partitions = std::collections::HashSet::new();
        for name in ["alice", "李雷", "a}b", "watch:x", ""] {
            let user = of(&channel::user(name));
            assert_eq!(of(&channel::watch(name)), user, "{name}");
            partitions.insert(user);
        }
        assert!(partitions.len() > 1, "users spread: {partitions:?}");
        // Other channels keep their own slot.
        let room = channel::room("alice");
        assert_eq!(
            of(&room),
            usize::from(slot(room.as_bytes())) * PARTITIONS / 16_384
        );
    }

    #[test]
    fn slots_match_the_cluster_specification() {
        // The examples of the Redis Cluster specification and of `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"123456789"), 0x31C3 % SLOTS);
        assert_eq!(slot(b"somekey"), 11_058);
        assert_eq!(slot(b"foo"), 12_182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        // An empty tag is no tag: the whole key is hashed.
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(
            slot(b"{}"),
            crc16::State::<crc16::XMODEM>::calculate(b"{}") % SLOTS
        );
    }

    #[test]
    fn each_partition_has_a_tag_in_its_own_slot() {
        for (p, tag) in tags().iter().enumerate() {
            assert_eq!(slot(tag.as_bytes()), slot_of(p), "partition {p}: {tag}");
            assert_eq!(usize::from(slot_of(p)) * PARTITIONS / usize::from(SLOTS), p);
        }
    }

    #[test]
    fn three_equal_masters_get_an_equal_share_of_partitions() {
        // `redis-cli --cluster create` with three masters: 0-5460, 5461-10922, 10923-16383.
        let mut share = [0; 3];
        for p in 0..PARTITIONS {
            let s = slot_of(p);
            share[usize::from(s > 5460) + usize::from(s > 10922)] += 1;
        }
        assert_eq!(share, [21, 22, 21]);
    }

    #[test]
    fn channels_spread_over_every_partition() {
        let mut seen = [0u32; PARTITIONS];
        for i in 0..64_000 {
            seen[of(&format!("user:{i}"))] += 1;
        }
        // 1 000 each on average; none starved nor crowded.
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn a_shard_channel_reads_back_without_its_tag() {
        let full = shard_channel("chat:", "user:{odd}");
        assert!(full.starts_with('{'));
        assert_eq!(untagged(&full), Some("chat:user:{odd}"));
        assert_eq!(slot(full.as_bytes()), slot_of(of("user:{odd}")));
        assert_eq!(untagged("plain"), None);
    }
}
