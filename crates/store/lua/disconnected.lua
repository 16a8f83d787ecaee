-- disconnected: counts one connection of a user out, on this node. The
-- user's last connection on any live node sets their last-seen and is
-- announced to their watchers in the same step. Counting out a connection
-- that is not counted (a retried call that had landed) changes nothing.
--
-- KEYS[1]  lease            string with TTL: this node's lease (node:{id})
-- KEYS[2]  nodes            hash: node id -> its last renewal (ms, Redis's clock)
-- KEYS[3]  node_users       set: users counted on this node
-- KEYS[4]  node_swept       hash: user -> connections a sweep took from this node
-- KEYS[5]  node_conns       set: "{conn} {user}" for each connection counted here
-- KEYS[6]  presence         hash: node id -> the user's connections there
-- KEYS[7]  last_seen        string: when the user's last connection closed (ms)
-- KEYS[8]  webhooks         stream: events for the webhook receiver
-- ARGV[1]  node_id          this node's id
-- ARGV[2]  lease_ms         how long the lease lasts unrenewed (ms)
-- ARGV[3]  node_prefix      key prefix of every node's lease ("node:")
-- ARGV[4]  presence_prefix  key prefix of users' presence hashes
-- ARGV[5]  watch_prefix     channel prefix of users' watchers
-- ARGV[6]  envelope         broker envelope header for published frames
-- ARGV[7]  user             who disconnected
-- ARGV[8]  conn             the connection's id on this node
-- ARGV[9]  events           '1' to queue user.online / user.offline events
--
-- Returns {connections left on live nodes, 1 if this call counted one out}.
local lease_key = KEYS[1]
local nodes_key = KEYS[2]
local node_users_key = KEYS[3]
local node_swept_key = KEYS[4]
local node_conns_key = KEYS[5]
local presence_key = KEYS[6]
local last_seen_key = KEYS[7]
local webhooks_key = KEYS[8]
local node_id = ARGV[1]
local lease_ms = ARGV[2]
local node_prefix = ARGV[3]
local presence_prefix = ARGV[4]
local watch_prefix = ARGV[5]
local envelope = ARGV[6]
local user = ARGV[7]
local conn = ARGV[8]
local events = ARGV[9]

revive({
  id = node_id, lease_key = lease_key, lease_ms = lease_ms, nodes_key = nodes_key,
  users_key = node_users_key, swept_key = node_swept_key, conns_key = node_conns_key,
  node_prefix = node_prefix,
  presence_prefix = presence_prefix, watch_prefix = watch_prefix, envelope = envelope,
  webhooks_key = webhooks_key, events = events,
})
if redis.call('SREM', node_conns_key, conn .. ' ' .. user) == 0 then
  return {live_total(presence_key, node_prefix), 0}
end
local left = redis.call('HINCRBY', presence_key, node_id, -1)
if left <= 0 then
  redis.call('HDEL', presence_key, node_id)
  redis.call('SREM', node_users_key, user)
end
local total = live_total(presence_key, node_prefix)
if total == 0 then
  local now = now_ms()
  redis.call('SET', last_seen_key, now)
  redis.call('PUBLISH', watch_prefix .. user, envelope .. offline_frame(user, now))
  presence_event(webhooks_key, events, user, now)
end
return {total, 1}
