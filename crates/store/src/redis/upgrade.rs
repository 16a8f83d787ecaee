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

use chat_broker::redis::Connection;

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

/// What an upgrade converted (for the log).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Upgraded {
    /// Conversation histories converted.
    conversations: usize,
    /// Inboxes converted.
    inboxes: usize,
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
pub(crate) async fn upgrade(redis: &Connection, keys: &Keys) {
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
                return;
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
async fn upgrade_once(keys: &Keys, conn: &mut Connection) -> redis::RedisResult<Upgraded> {
    let schema_key = keys.single("schema");
    if keys.cluster() {
        // The cluster layout is newer than any layout to convert from.
        redis::cmd("SET")
            .arg(&schema_key)
            .arg(SCHEMA)
            .query_async::<()>(conn)
            .await?;
        return Ok(Upgraded::default());
    }
    // Anything but a number counts as no mark (the conversion is safe to run again).
    let schema: Option<String> = redis::cmd("GET").arg(&schema_key).query_async(conn).await?;
    if schema
        .and_then(|s| s.parse::<u32>().ok())
        .is_some_and(|s| s >= SCHEMA)
    {
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
async fn convert(keys: &Keys, conn: &mut Connection) -> redis::RedisResult<Upgraded> {
    let script = Loaded::<UpgradeStream>::new();
    let record = Loaded::<UpgradeRecord>::new();
    let mut upgraded = Upgraded::default();
    let conv_prefix = keys.prefix_of("conv");
    for key in keys_of_type(conv_prefix.as_str(), "stream", conn).await? {
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
    for key in keys_of_type(inbox_prefix.as_str(), "stream", conn).await? {
        let call = UpgradeStream {
            conv_seq: String::new(),
            msgs: String::new(),
            stream: key,
            kind: "inbox",
        };
        let answer: Vec<redis::Value> = script.invoke(&call, conn).await?;
        upgraded.inboxes += usize::from(!answer.is_empty());
    }
    // Every inbox, converted now or by an earlier, interrupted run: the
    // records learn where each copy is (a slot already filled is kept), so
    // a conversion cut short between an inbox and its records is finished
    // by the next start.
    for key in keys_of_type(inbox_prefix.as_str(), "zset", conn).await? {
        let user = key[inbox_prefix.len()..].to_owned();
        let entries: Vec<String> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query_async(conn)
            .await?;
        for (seq, message) in entries.iter().filter_map(|e| direct_message(e)) {
            // The receiver's copy is seq_r (a note to oneself has only that one).
            let slot = if user == message.to {
                2
            } else if user == message.from {
                3
            } else {
                continue;
            };
            let (a, b) = crate::conversation(&message.from, &message.to);
            let call = UpgradeRecord {
                msgs: keys.pair("msgs", &a, &b),
                id: message.id,
                slot,
                seq,
            };
            record.invoke::<()>(&call, conn).await?;
        }
    }
    Ok(upgraded)
}

/// A direct message's copy in an inbox entry `"{seq} {frame}"`: its seq,
/// id and both users; `None` for anything else (updates, room entries,
/// seed frames).
fn direct_message(entry: &str) -> Option<(u64, DirectCopy)> {
    let (seq, frame) = entry.split_once(' ')?;
    let frame: serde_json::Value = serde_json::from_str(frame).ok()?;
    if frame["type"] != "message" || !frame["room"].is_null() {
        return None;
    }
    let text = |field: &str| frame[field].as_str().map(str::to_owned);
    let copy = DirectCopy {
        id: text("id")?,
        from: text("from")?,
        to: text("to")?,
    };
    Some((seq.parse().ok()?, copy))
}

/// Who a direct message is from and to.
struct DirectCopy {
    id: String,
    from: String,
    to: String,
}

/// Every key starting with `prefix` of Redis type `kind` (`SCAN … TYPE`:
/// Redis 6 or later).
async fn keys_of_type(
    prefix: &str,
    kind: &str,
    conn: &mut Connection,
) -> redis::RedisResult<Vec<String>> {
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
            .arg(kind)
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
