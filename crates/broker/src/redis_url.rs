//! Which Redis a URL names: one server, or a Redis Cluster. Plain string
//! reading, with no Redis client: the settings check a URL with it before
//! anything connects.

/// The scheme of a cluster URL: `redis+cluster://h1:p1,h2:p2,…`.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// What a Redis URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One server (or a Sentinel-less primary): `redis://host:port/db`.
    Single(String),
    /// A Redis Cluster, by some of its nodes (any will do: the rest is
    /// discovered), each as a `redis://[user:password@]host:port` URL.
    Cluster(Vec<String>),
}

/// The schemes of one server's URL, as redis-rs reads them.
pub const SINGLE_SCHEMES: [&str; 7] = [
    "redis://",
    "rediss://",
    "unix://",
    "redis+unix://",
    "valkey://",
    "valkeys://",
    "valkey+unix://",
];

impl Target {
    /// [`Target::parse`], which also refuses a scheme that names no Redis
    /// (not one of [`SINGLE_SCHEMES`] nor [`CLUSTER_SCHEME`]): what a
    /// setting checks before anything connects.
    ///
    /// Errors: an unknown scheme, or a cluster URL [`Target::parse`] refuses.
    pub fn checked(url: &str) -> Result<Self, String> {
        let scheme_is = |scheme: &str| {
            url.get(..scheme.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
        };
        if !scheme_is(CLUSTER_SCHEME) && !SINGLE_SCHEMES.iter().any(|s| scheme_is(s)) {
            return Err(format!(
                "not a Redis URL: it starts with {} (one Redis), or {CLUSTER_SCHEME} (a cluster)",
                SINGLE_SCHEMES.join(", ")
            ));
        }
        Self::parse(url)
    }

    /// Reads `url`: `redis://…` (or `rediss://`, `unix://`, as redis-rs
    /// takes them) is one server; `redis+cluster://[user:password@]h1:p1,h2:p2,…`
    /// is a cluster known by those seed nodes (the credentials are used
    /// for every node; a cluster has one database, so no `/db`).
    ///
    /// Errors: a cluster URL with no node, an empty node, a node without a
    /// port, or a path or query after the nodes.
    pub fn parse(url: &str) -> Result<Self, String> {
        let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) else {
            return Ok(Self::Single(url.to_owned()));
        };
        let (auth, nodes) = match rest.rsplit_once('@') {
            Some((auth, nodes)) => (format!("{auth}@"), nodes),
            None => (String::new(), rest),
        };
        let nodes = nodes.strip_suffix('/').unwrap_or(nodes);
        if nodes.contains(['/', '?', '#']) {
            return Err(format!(
                "a cluster URL names nodes only ({CLUSTER_SCHEME}h1:p1,h2:p2): \
                 no database, path or query after them"
            ));
        }
        let mut seeds = Vec::new();
        for node in nodes.split(',') {
            let port = node
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            match port {
                Some((host, Ok(port))) if !host.is_empty() && port > 0 => {
                    seeds.push(format!("redis://{auth}{host}:{port}"));
                }
                _ => {
                    return Err(format!(
                        "invalid cluster node {node:?}: each node is host:port \
                         ({CLUSTER_SCHEME}10.0.0.1:6379,10.0.0.2:6379)"
                    ));
                }
            }
        }
        Ok(Self::Cluster(seeds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_names_a_redis_by_its_scheme() {
        for url in [
            "redis://127.0.0.1:6379/0",
            "REDIS://127.0.0.1:6379/",
            "rediss://cache.internal:6380",
            "unix:///run/redis.sock",
            "valkey://127.0.0.1:6379",
            "redis+cluster://127.0.0.1:7000",
        ] {
            assert!(Target::checked(url).is_ok(), "{url}");
        }
        for url in [
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "",
            "redis+cluster://h",
        ] {
            assert!(Target::checked(url).is_err(), "{url}");
        }
    }

    #[test]
    fn a_plain_url_names_one_server() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379/2"),
            Ok(Target::Single("redis://127.0.0.1:6379/2".into()))
        );
    }

    #[test]
    fn a_cluster_url_names_its_seed_nodes_with_their_credentials() {
        assert_eq!(
            Target::parse("redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001/"),
            Ok(Target::Cluster(vec![
                "redis://app:s3cret@10.0.0.1:7000".into(),
                "redis://app:s3cret@10.0.0.2:7001".into(),
            ]))
        );
        assert_eq!(
            Target::parse("redis+cluster://[::1]:7000"),
            Ok(Target::Cluster(vec!["redis://[::1]:7000".into()]))
        );
    }

    #[test]
    fn a_bad_cluster_url_says_what_is_wrong() {
        for bad in [
            "redis+cluster://",
            "redis+cluster://h1:7000,",
            "redis+cluster://h1",
            "redis+cluster://h1:0",
            "redis+cluster://:7000",
            "redis+cluster://h1:7000/2",
            "redis+cluster://h1:7000?protocol=3",
        ] {
            let error = Target::parse(bad).expect_err(bad);
            assert!(error.contains("cluster"), "{bad}: {error}");
        }
    }
}
