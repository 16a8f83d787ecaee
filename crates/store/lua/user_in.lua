-- user_in: counts `n` connections of a user in on a node, in the user's
-- slot (Redis Cluster, after node_touch in the node's): a new connection
-- (n = 1), or those a node takes back from a sweep. When nobody counted
-- the user before, they are announced online to their watchers in the
-- same step (the watch channel shares the user's slot), so announcements
-- keep the order of the counts whichever gateways they come from.
--
-- KEYS[1]  presence         hash: node id -> the user's connections there
-- ARGV[1]  node_id          the node counting them
-- ARGV[2]  n                how many connections
-- ARGV[3]  user             whose
-- ARGV[4]  watch_channel    the user's watch channel
-- ARGV[5]  envelope         broker envelope header for the announcement
--
-- Returns {connections before, connections after}.
local presence_key = KEYS[1]
local node_id = ARGV[1]
local n = tonumber(ARGV[2])
local user = ARGV[3]
local watch_channel = ARGV[4]
local envelope = ARGV[5]

local before = live_total(presence_key, '')
redis.call('HINCRBY', presence_key, node_id, n)
if before == 0 then
  redis.call('PUBLISH', watch_channel, envelope .. online_frame(user))
end
return {before, before + n}
