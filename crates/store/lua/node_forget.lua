-- node_forget: takes a swept node out of the registry of nodes, unless it
-- renewed since the sweeper read it (Redis Cluster: a node cut off from
-- Redis may come back while it is swept, and must stay known).
--
-- KEYS[1]  nodes            hash: node id -> its last renewal (ms, Redis's clock)
-- ARGV[1]  node_id          the swept node's id
-- ARGV[2]  renewed          its last renewal as the sweeper read it (ms)
--
-- Returns 1 if it was taken out, else 0.
local nodes_key = KEYS[1]
local node_id = ARGV[1]
local renewed = ARGV[2]

if redis.call('HGET', nodes_key, node_id) ~= renewed then return 0 end
return redis.call('HDEL', nodes_key, node_id)
