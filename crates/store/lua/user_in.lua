-- user_in: counts connections of a user in on a node, in the user's slot
-- (Redis Cluster, after node_touch in the node's): a new connection, or
-- those a node takes back from a sweep. Each connection is counted once
-- (noted as "{node} {conn}" in presence_conns), so a retried call changes
-- nothing. When nobody counted the user before, they are announced online
-- to their watchers in the same step (the watch channel shares the user's
-- slot), so announcements keep the order of the counts whichever gateways
-- they come from.
--
-- KEYS[1]  presence         hash: node id -> the user's connections there
-- KEYS[2]  presence_conns   set: "{node} {conn}" of each connection counted
-- ARGV[1]  node_id          the node counting them
-- ARGV[2]  conn_ids         the connections' ids on that node, space-separated
-- ARGV[3]  user             whose
-- ARGV[4]  watch_channel    the user's watch channel
-- ARGV[5]  envelope         broker envelope header for the announcement
--
-- Returns {connections before, connections after}.
local presence_key = KEYS[1]
local presence_conns_key = KEYS[2]
local node_id = ARGV[1]
local conn_ids = ARGV[2]
local user = ARGV[3]
local watch_channel = ARGV[4]
local envelope = ARGV[5]

local before = live_total(presence_key, '')
local n = 0
for conn in string.gmatch(conn_ids, '%S+') do
  n = n + redis.call('SADD', presence_conns_key, node_id .. ' ' .. conn)
end
if n == 0 then return {before, before} end
redis.call('HINCRBY', presence_key, node_id, n)
if before == 0 then
  redis.call('PUBLISH', watch_channel, envelope .. online_frame(user))
end
return {before, before + n}
