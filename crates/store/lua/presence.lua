-- presence: whether a user has a connection on a live node, and when their
-- last connection closed.
--
-- KEYS[1]  presence     hash: node id -> the user's connections there
-- KEYS[2]  last_seen    string: when the user's last connection closed (ms)
-- ARGV[1]  node_prefix  key prefix of every node's lease ("node:")
--
-- Returns {1 if online else 0, last seen or nil}.
local presence_key = KEYS[1]
local last_seen_key = KEYS[2]
local node_prefix = ARGV[1]

local online = 0
if live_total(presence_key, node_prefix) > 0 then online = 1 end
return {online, redis.call('GET', last_seen_key)}
