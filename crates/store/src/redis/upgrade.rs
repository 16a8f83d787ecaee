//! Upgrading what an older version stored: inboxes (`inbox:{user}`) and
//! conversation histories (`conv:{a}:{b}`) were streams before the message
//! lifecycle, and are sorted sets now (a stream entry cannot be rewritten
//! in place). A store that starts converts every one it finds, one key per
//! atomic script (`upgrade_stream.lua`), and rebuilds the `msgs:{a}:{b}`
//! records that let those older direct messages be edited, deleted and
//! reacted to. It answers readiness checks with `unavailable` until done,
//! so a load balancer sends nobody to it while a key is still a stream.
//!
//! Idempotent and safe to run from several processes at once: a key that
//! is no stream is left alone, and a record is only ever given the values
//! its copies say. Gateways of the older version must be stopped first:
//! they would write streams again.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::Keys;
use super::script::{Call, Loaded, Lua, lua};

/// `upgrade_stream.lua`: converts one stream to a sorted set.
pub(crate) struct UpgradeStream {
    stream: String,
    conv_seq: String,
    msgs: String,
    kind: &'static str,
}

impl Lua for UpgradeStream {
    const NAME: &'static str = "upgrade_stream";
    const SOURCE: &'static str = lua!("upgrade_stream");

    fn push(&self, call: &mut Call) {
        call.key("stream", &self.stream)
            .key("conv_seq", &self.conv_seq)
            .key("msgs", &self.msgs)
            .arg("kind", self.kind);
    }
}

/// `upgrade_record.lua`: sets one inbox seq of a message's record.
pub(crate) struct UpgradeRecord {
    msgs: String,
    id: String,
    slot: u8,
    seq: u64,
}

impl Lua for UpgradeRecord {
    const NAME: &'static str = "upgrade_record";
    const SOURCE: &'static str = lua!("upgrade_record");

    fn push(&self, call: &mut Call) {
        call.key("msgs", &self.msgs)
            .arg("id", &self.id)
            .arg("slot", self.slot)
            .arg("seq", self.seq);
    }
}

/// What an upgrade converted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Upgraded {
    /// Conversation histories converted.
    pub conversations: usize,
    /// Inboxes converted.
    pub inboxes: usize,
}

/// How long to wait before trying again while Redis is away.
const RETRY: Duration = Duration::from_secs(1);

/// The data layout this version writes, kept in the `schema` key once an
/// upgrade has run, so later starts skip the scan: 2 is sorted-set inboxes
/// and histories (the message lifecycle); no key means an older layout, or
/// a new Redis.
const SCHEMA: u32 = 2;

/// Runs [`upgrade_once`] on the keys under `keys`' prefix until it
/// succeeds (Redis may be away at start).
pub(crate) async fn upgrade(redis: &ConnectionManager, keys: &Keys) -> Upgraded {
    loop {
        match upgrade_once(keys, &mut redis.clone()).await {
            Ok(upgraded) => {
                if upgraded != Upgraded::default() {
                    tracing::info!(
                        conversations = upgraded.conversations,
                        inboxes = upgraded.inboxes,
                        "converted streams an older version stored"
                    );
                }
                return upgraded;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check for older stored data yet; trying again");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Skipped when the `schema` key says this layout already; otherwise the
/// conversion, then the mark. Histories first, so that every record an
/// inbox fills in exists.
async fn upgrade_once(keys: &Keys, conn: &mut ConnectionManager) -> redis::RedisResult<Upgraded> {
    let schema_key = keys.single("schema");
    let schema: Option<u32> = redis::cmd("GET").arg(&schema_key).query_async(conn).await?;
    if schema.is_some_and(|s| s >= SCHEMA) {
        return Ok(Upgraded::default());
    }
    let upgraded = convert(keys, conn).await?;
    redis::cmd("SET")
        .arg(&schema_key)
        .arg(SCHEMA)
        .query_async::<()>(conn)
        .await?;
    Ok(upgraded)
}

/// Converts every stream under the prefix, histories first.
async fn convert(keys: &Keys, conn: &mut ConnectionManager) -> redis::RedisResult<Upgraded> {
    let script = Loaded::<UpgradeStream>::new();
    let record = Loaded::<UpgradeRecord>::new();
    let mut upgraded = Upgraded::default();
    let conv_prefix = keys.prefix_of("conv");
    for key in streams(conv_prefix.as_str(), conn).await? {
        let pair = &key[conv_prefix.len()..];
        let call = UpgradeStream {
            conv_seq: format!("{}{pair}", keys.prefix_of("conv_seq")),
            msgs: format!("{}{pair}", keys.prefix_of("msgs")),
            stream: key,
            kind: "conv",
        };
        let answer: Vec<redis::Value> = script.invoke(&call, conn).await?;
        upgraded.conversations += usize::from(!answer.is_empty());
    }
    let inbox_prefix = keys.prefix_of("inbox");
    for key in streams(inbox_prefix.as_str(), conn).await? {
        let user = key[inbox_prefix.len()..].to_owned();
        let call = UpgradeStream {
            conv_seq: String::new(),
            msgs: String::new(),
            stream: key,
            kind: "inbox",
        };
        let answer: Vec<redis::Value> = script.invoke(&call, conn).await?;
        if answer.is_empty() {
            continue;
        }
        upgraded.inboxes += 1;
        for message in answer[1..].chunks_exact(4) {
            let text =
                |v: &redis::Value| redis::from_redis_value::<String>(v.clone()).unwrap_or_default();
            let (id, from, to) = (text(&message[0]), text(&message[1]), text(&message[2]));
            let seq: u64 = redis::from_redis_value(message[3].clone()).unwrap_or(0);
            // The receiver's copy is seq_r (a note to oneself has only that one).
            let slot = if user == to {
                2
            } else if user == from {
                3
            } else {
                continue;
            };
            let (a, b) = crate::conversation(&from, &to);
            let call = UpgradeRecord {
                msgs: keys.pair("msgs", &a, &b),
                id,
                slot,
                seq,
            };
            record.invoke::<()>(&call, conn).await?;
        }
    }
    Ok(upgraded)
}

/// Every key starting with `prefix` that is a stream.
async fn streams(prefix: &str, conn: &mut ConnectionManager) -> redis::RedisResult<Vec<String>> {
    let pattern = format!("{}*", glob_escape(prefix));
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .arg("TYPE")
            .arg("stream")
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// `text` with Redis's glob characters escaped, to match it literally.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::script::legend;
    use super::*;

    #[test]
    fn calls_match_their_legends() {
        legend::check(&UpgradeStream {
            stream: "s".into(),
            conv_seq: "c".into(),
            msgs: "m".into(),
            kind: "conv",
        });
        legend::check(&UpgradeRecord {
            msgs: "m".into(),
            id: "i".into(),
            slot: 2,
            seq: 1,
        });
    }

    #[test]
    fn a_prefix_matches_itself_only() {
        assert_eq!(glob_escape("app*1:[x]\\"), "app\\*1:\\[x\\]\\\\");
    }
}
