-- user_close: counts one connection of a user out on a node, in the
-- user's slot (Redis Cluster, after node_touch in the node's). The user's
-- last connection sets their last-seen and is announced to their watchers
-- in the same step. A connection not counted (counted out already, or
-- taken by a sweep) changes nothing, so a retried call is safe.
--
-- KEYS[1]  presence         hash: node id -> the user's connections there
-- KEYS[2]  last_seen        string: when the user's last connection closed (ms)
-- KEYS[3]  presence_conns   set: "{node} {conn}" of each connection counted
-- ARGV[1]  node_id          the node counting it out
-- ARGV[2]  conn             the connection's id on that node
-- ARGV[3]  user             whose
-- ARGV[4]  watch_channel    the user's watch channel
-- ARGV[5]  envelope         broker envelope header for the announcement
--
-- Returns {connections left, when the last closed (ms) if this was it, else 0}.
local presence_key = KEYS[1]
local last_seen_key = KEYS[2]
local presence_conns_key = KEYS[3]
local node_id = ARGV[1]
local conn = ARGV[2]
local user = ARGV[3]
local watch_channel = ARGV[4]
local envelope = ARGV[5]

if redis.call('SREM', presence_conns_key, node_id .. ' ' .. conn) == 0 then
  return {live_total(presence_key, ''), 0}
end
local here = tonumber(redis.call('HGET', presence_key, node_id) or '0')
if here <= 0 then return {live_total(presence_key, ''), 0} end
if here == 1 then
  redis.call('HDEL', presence_key, node_id)
else
  redis.call('HINCRBY', presence_key, node_id, -1)
end
local total = live_total(presence_key, '')
if total > 0 then return {total, 0} end
local now = now_ms()
redis.call('SET', last_seen_key, now)
redis.call('PUBLISH', watch_channel, envelope .. offline_frame(user, now))
return {0, now}
