-- node_release: a lapsed node's side of sweeping one user (Redis Cluster,
-- in the node's slot, after user_swept in the user's): the user leaves the
-- node's counts, and the connections taken from their presence are kept
-- in node_swept (for `swept_ttl_s`) for the node to take back if it was
-- only cut off from Redis (node_touch). Also gives the node's connection
-- list that lifetime.
--
-- KEYS[1]  node_counts      hash: user -> their connections on the node
-- KEYS[2]  node_swept       hash: user -> connections a sweep took from the node
-- KEYS[3]  node_conns       set: "{conn} {user}" for each connection counted there
-- ARGV[1]  user             the user swept
-- ARGV[2]  taken            connections user_swept took from their presence (0: none)
-- ARGV[3]  swept_ttl_s      how long swept counts are kept (s)
--
-- Returns how many users the node still counts.
local node_counts_key = KEYS[1]
local node_swept_key = KEYS[2]
local node_conns_key = KEYS[3]
local user = ARGV[1]
local taken = tonumber(ARGV[2])
local swept_ttl_s = ARGV[3]

redis.call('HDEL', node_counts_key, user)
if taken > 0 then
  redis.call('HINCRBY', node_swept_key, user, taken)
  redis.call('EXPIRE', node_swept_key, swept_ttl_s)
end
redis.call('EXPIRE', node_conns_key, swept_ttl_s)
return redis.call('HLEN', node_counts_key)
