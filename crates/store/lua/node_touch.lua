-- node_touch: a gateway node's own step on a Redis Cluster, in its slot
-- (each user's step follows in the user's slot: user_in, user_close).
-- Renews the node's lease; takes back the users a sweep took while the
-- node was cut off from Redis (their counts return here, and the caller
-- gives each back to the user's presence); then counts one connection in
-- or out on this node. Counting the same connection in (or out) twice
-- changes nothing.
--
-- KEYS[1]  lease            string with TTL: this node's lease
-- KEYS[2]  node_counts      hash: user -> their connections on this node
-- KEYS[3]  node_swept       hash: user -> connections a sweep took from this node
-- KEYS[4]  node_conns       set: "{conn} {user}" for each connection counted here
-- ARGV[1]  lease_ms         how long the lease lasts (ms)
-- ARGV[2]  mode             'in' to count the connection in, 'out' to count it out, 'renew'
-- ARGV[3]  user             whose connection ('' to renew)
-- ARGV[4]  conn             the connection's id on this node ('' to renew)
--
-- Returns {1 if this call counted the connection in or out, else 0,
--          {user, connections, ...} taken back from a sweep}.
local lease_key = KEYS[1]
local node_counts_key = KEYS[2]
local node_swept_key = KEYS[3]
local node_conns_key = KEYS[4]
local lease_ms = ARGV[1]
local mode = ARGV[2]
local user = ARGV[3]
local conn = ARGV[4]

redis.call('SET', lease_key, 1, 'PX', lease_ms)
local swept = redis.call('HGETALL', node_swept_key)
if #swept > 0 then
  redis.call('DEL', node_swept_key)
  -- The sweep gave the node's connection list a lifetime; it lives again.
  redis.call('PERSIST', node_conns_key)
  for i = 1, #swept, 2 do
    redis.call('HINCRBY', node_counts_key, swept[i], swept[i + 1])
  end
end
local member = conn .. ' ' .. user
local changed = 0
if mode == 'in' and redis.call('SADD', node_conns_key, member) == 1 then
  redis.call('HINCRBY', node_counts_key, user, 1)
  changed = 1
elseif mode == 'out' and redis.call('SREM', node_conns_key, member) == 1 then
  if redis.call('HINCRBY', node_counts_key, user, -1) <= 0 then
    redis.call('HDEL', node_counts_key, user)
  end
  changed = 1
end
return {changed, swept}
