-- node_seen: notes in the registry of nodes that a gateway node is alive
-- now (Redis Cluster: the registry is a key of its own slot, which the
-- node's other scripts cannot write; single Redis: `revive` does it).
--
-- KEYS[1]  nodes            hash: node id -> its last renewal (ms, Redis's clock)
-- ARGV[1]  node_id          this node's id
--
-- Returns 1.
local nodes_key = KEYS[1]
local node_id = ARGV[1]

redis.call('HSET', nodes_key, node_id, now_ms())
return 1
