-- user_close: counts one connection of a user out on a node, in the
-- user's slot (Redis Cluster, after node_touch in the node's). The user's
-- last connection sets their last-seen and is announced to their watchers
-- in the same step. A node the user has no count on (a sweep took it)
-- changes nothing.
--
-- KEYS[1]  presence         hash: node id -> the user's connections there
-- KEYS[2]  last_seen        string: when the user's last connection closed (ms)
-- ARGV[1]  node_id          the node counting it out
-- ARGV[2]  user             whose
-- ARGV[3]  watch_channel    the user's watch channel
-- ARGV[4]  envelope         broker envelope header for the announcement
--
-- Returns {connections left, when the last closed (ms) if this was it, else 0}.
local presence_key = KEYS[1]
local last_seen_key = KEYS[2]
local node_id = ARGV[1]
local user = ARGV[2]
local watch_channel = ARGV[3]
local envelope = ARGV[4]

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
