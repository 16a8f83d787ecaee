-- renew: renews this node's presence lease (every third of it), taking back
-- the users a sweep took while the node was cut off from Redis (see
-- `revive` in the prelude).
--
-- KEYS[1]  lease            string with TTL: this node's lease (node:{id})
-- KEYS[2]  nodes            hash: node id -> its last renewal (ms, Redis's clock)
-- KEYS[3]  node_users       set: users counted on this node
-- KEYS[4]  node_swept       hash: user -> connections a sweep took from this node
-- KEYS[5]  node_conns       set: "{conn} {user}" for each connection counted here
-- KEYS[6]  webhooks         stream: events for the webhook receiver
-- ARGV[1]  node_id          this node's id
-- ARGV[2]  lease_ms         how long the lease lasts unrenewed (ms)
-- ARGV[3]  node_prefix      key prefix of every node's lease ("node:")
-- ARGV[4]  presence_prefix  key prefix of users' presence hashes
-- ARGV[5]  watch_prefix     channel prefix of users' watchers
-- ARGV[6]  envelope         broker envelope header for published frames
-- ARGV[7]  events           '1' to queue user.online / user.offline events
--
-- Returns how many users it took back.
local lease_key = KEYS[1]
local nodes_key = KEYS[2]
local node_users_key = KEYS[3]
local node_swept_key = KEYS[4]
local node_conns_key = KEYS[5]
local webhooks_key = KEYS[6]
local node_id = ARGV[1]
local lease_ms = ARGV[2]
local node_prefix = ARGV[3]
local presence_prefix = ARGV[4]
local watch_prefix = ARGV[5]
local envelope = ARGV[6]
local events = ARGV[7]

return revive({
  id = node_id, lease_key = lease_key, lease_ms = lease_ms, nodes_key = nodes_key,
  users_key = node_users_key, swept_key = node_swept_key, conns_key = node_conns_key,
  node_prefix = node_prefix,
  presence_prefix = presence_prefix, watch_prefix = watch_prefix, envelope = envelope,
  webhooks_key = webhooks_key, events = events,
})
