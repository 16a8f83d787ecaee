//! The Lua scripts of `crates/store/lua/`, one Rust type each.
//!
//! Every script starts with a legend naming each `KEYS[i]` and `ARGV[i]`
//! and binds those names at its top. Its Rust type has one named field per
//! value and pushes them, by name, in the legend's order
//! ([`Lua::push`]); a unit test compares the names pushed with the legend,
//! so the two cannot drift. `prelude.lua` (the shared helpers) is put in
//! front of each script at compile time.

use chat_broker::redis::Connection;
use redis::{FromRedisValue, RedisResult, Script, ToRedisArgs};

/// A script's text: the prelude, then the script itself.
macro_rules! lua {
    ($name:literal) => {
        concat!(
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/lua/prelude.lua")),
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/lua/", $name, ".lua"))
        )
    };
}
pub(crate) use lua;

/// A yes/no argument as the scripts read it: `'1'` or `'0'`.
pub(crate) fn flag(on: bool) -> &'static str {
    if on { "1" } else { "0" }
}

/// The keys and arguments of one call, in the order they were pushed.
#[derive(Default)]
pub(crate) struct Call {
    keys: Vec<Vec<u8>>,
    args: Vec<Vec<u8>>,
    /// The legend names pushed, for the arity test.
    #[cfg(test)]
    names: (Vec<&'static str>, Vec<&'static str>),
}

impl Call {
    /// Pushes `KEYS[next]`, named `name` in the legend.
    pub(crate) fn key(&mut self, name: &'static str, value: impl ToRedisArgs) -> &mut Self {
        #[cfg(test)]
        self.names.0.push(name);
        let _ = name;
        self.keys.extend(value.to_redis_args());
        self
    }

    /// Pushes `ARGV[next]`, named `name` in the legend.
    pub(crate) fn arg(&mut self, name: &'static str, value: impl ToRedisArgs) -> &mut Self {
        #[cfg(test)]
        self.names.1.push(name);
        let _ = name;
        self.args.extend(value.to_redis_args());
        self
    }
}

/// One script: its text and how a call's values are pushed.
pub(crate) trait Lua {
    /// The script's file name in `lua/`, without `.lua`.
    const NAME: &'static str;
    /// The prelude and the script (see [`lua!`]).
    const SOURCE: &'static str;

    /// Pushes every key, then every argument, in the legend's order.
    fn push(&self, call: &mut Call);
}

/// A loaded script of type `L`, run with `EVALSHA` (loaded again by
/// redis-rs when Redis answers `NOSCRIPT`, e.g. after a restart; on a
/// cluster, on every node).
pub(crate) struct Loaded<L> {
    script: Script,
    /// The same script publishing with `SPUBLISH`, for a cluster.
    sharded: Script,
    _kind: std::marker::PhantomData<fn(&L)>,
}

/// `source` publishing to shard channels: every `PUBLISH` call an
/// `SPUBLISH` (Redis Cluster; the scripts spell the call one way only).
fn sharded(source: &str) -> String {
    source.replace("redis.call('PUBLISH',", "redis.call('SPUBLISH',")
}

impl<L: Lua> Loaded<L> {
    pub(crate) fn new() -> Self {
        Self {
            script: Script::new(L::SOURCE),
            sharded: Script::new(&sharded(L::SOURCE)),
            _kind: std::marker::PhantomData,
        }
    }

    /// Runs the script with `call`'s values: as written on one Redis, with
    /// `SPUBLISH` on a cluster (where every key it touches must be in one
    /// slot, and every channel it publishes to served by that slot's node).
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        call: &L,
        conn: &mut Connection,
    ) -> RedisResult<T> {
        tracing::trace!(script = L::NAME, "running a Lua script");
        let mut values = Call::default();
        call.push(&mut values);
        let script = if conn.is_cluster() {
            &self.sharded
        } else {
            &self.script
        };
        let mut invocation = script.prepare_invoke();
        for key in values.keys {
            invocation.key(key);
        }
        for arg in values.args {
            invocation.arg(arg);
        }
        invocation.invoke_async(conn).await
    }
}

#[cfg(test)]
pub(crate) mod legend {
    //! Reads a script's legend and checks a call against it.

    use super::{Call, Lua};

    /// `(keys, args)` named by the legend lines `-- KEYS[i] name` and
    /// `-- ARGV[i] name` of `source`, in order; panics when an index is out
    /// of sequence.
    pub(crate) fn read(source: &str) -> (Vec<String>, Vec<String>) {
        let (mut keys, mut args) = (Vec::new(), Vec::new());
        for line in source.lines() {
            let Some(rest) = line.strip_prefix("-- ") else {
                continue;
            };
            for (table, names) in [("KEYS[", &mut keys), ("ARGV[", &mut args)] {
                let Some(rest) = rest.strip_prefix(table) else {
                    continue;
                };
                let (index, rest) = rest.split_once(']').expect("legend index");
                let index: usize = index.parse().expect("legend index is a number");
                assert_eq!(index, names.len() + 1, "legend out of order at {line:?}");
                let name = rest.split_whitespace().next().expect("legend name");
                names.push(name.to_owned());
            }
        }
        (keys, args)
    }

    /// Panics unless `call` pushes exactly the legend's names in order, and
    /// the script binds each name at its top (`local name = ARGV[i]`,
    /// `local name_key = KEYS[i]`) and
    /// never uses `KEYS`/`ARGV` elsewhere.
    pub(crate) fn check<L: Lua>(call: &L) {
        let script = L::SOURCE;
        let (keys, args) = read(script);
        let mut values = Call::default();
        call.push(&mut values);
        assert_eq!(values.names.0, keys, "{}: keys against the legend", L::NAME);
        assert_eq!(
            values.names.1,
            args,
            "{}: arguments against the legend",
            L::NAME
        );
        assert_eq!(
            values.keys.len(),
            keys.len(),
            "{}: one value per key",
            L::NAME
        );
        assert_eq!(
            values.args.len(),
            args.len(),
            "{}: one value per argument",
            L::NAME
        );
        let code = script
            .lines()
            .filter(|line| !line.trim_start().starts_with("--"));
        let mut bound = 0;
        for line in code {
            for (table, names) in [("KEYS[", &keys), ("ARGV[", &args)] {
                let Some(at) = line.find(table) else { continue };
                let index: usize = line[at + table.len()..]
                    .split(']')
                    .next()
                    .and_then(|i| i.parse().ok())
                    .expect("an index");
                let name = &names[index - 1];
                // Keys may be bound with a `_key` suffix (`local inbox_key = KEYS[2]`).
                let binding = format!("local {name} = ");
                let key_binding = format!("local {name}_key = ");
                assert!(
                    line.starts_with(&binding)
                        || (table == "KEYS[" && line.starts_with(&key_binding)),
                    "{}: {table}{index}] used outside its binding as '{name}': {line:?}",
                    L::NAME
                );
                bound += 1;
            }
        }
        assert_eq!(
            bound,
            keys.len() + args.len(),
            "{}: every name bound once",
            L::NAME
        );
    }
}

#[cfg(test)]
mod tests {
    /// Every publish in every script is spelled as [`super::sharded`]
    /// rewrites it, so no script sends a classic `PUBLISH` on a cluster
    /// (where it would go to every node, to channels nobody subscribes).
    #[test]
    fn every_publish_in_the_scripts_becomes_a_shard_publish() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lua");
        let mut publishes = 0;
        for entry in std::fs::read_dir(&dir).expect("the lua folder") {
            let path = entry.expect("an entry").path();
            let source = std::fs::read_to_string(&path).expect("a script");
            let code: String = source
                .lines()
                .filter(|line| !line.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            publishes += code.matches("redis.call('PUBLISH',").count();
            let sharded = super::sharded(&code);
            assert!(
                !sharded
                    .replace("redis.call('SPUBLISH',", "")
                    .contains("PUBLISH"),
                "{}: a publish not spelled redis.call('PUBLISH', …)",
                path.display()
            );
        }
        assert!(publishes > 5, "the scripts publish ({publishes} found)");
    }
}
