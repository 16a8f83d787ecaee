-- user_swept: takes a lapsed node's connections out of a user's presence,
-- in the user's slot (Redis Cluster, before node_release in the node's).
-- A user counted nowhere else is announced offline, last seen when the
-- node last renewed, unless a clean goodbye elsewhere said so later. A
-- user swept already (by another sweeper) changes nothing: each is
-- announced once.
--
-- KEYS[1]  presence         hash: node id -> the user's connections there
-- KEYS[2]  last_seen        string: when the user's last connection closed (ms)
-- KEYS[3]  presence_conns   set: "{node} {conn}" of each connection counted
-- ARGV[1]  node_id          the lapsed node
-- ARGV[2]  renewed          when it last renewed (ms)
-- ARGV[3]  user             whose
-- ARGV[4]  watch_channel    the user's watch channel
-- ARGV[5]  envelope         broker envelope header for the announcement
--
-- Returns {connections taken out, 1 if announced offline else 0}.
local presence_key = KEYS[1]
local last_seen_key = KEYS[2]
local presence_conns_key = KEYS[3]
local node_id = ARGV[1]
local renewed = ARGV[2]
local user = ARGV[3]
local watch_channel = ARGV[4]
local envelope = ARGV[5]

local taken = tonumber(redis.call('HGET', presence_key, node_id) or '0')
-- The node's connections stop counting (taking them back counts them again).
local on_node = node_id .. ' '
for _, member in ipairs(redis.call('SMEMBERS', presence_conns_key)) do
  if string.sub(member, 1, #on_node) == on_node then
    redis.call('SREM', presence_conns_key, member)
  end
end
if taken <= 0 then return {0, 0} end
redis.call('HDEL', presence_key, node_id)
if live_total(presence_key, '') > 0 then return {taken, 0} end
local seen = tonumber(redis.call('GET', last_seen_key) or '0')
if seen > tonumber(renewed) then return {taken, 0} end
redis.call('SET', last_seen_key, renewed)
redis.call('PUBLISH', watch_channel, envelope .. offline_frame(user, renewed))
return {taken, 1}
