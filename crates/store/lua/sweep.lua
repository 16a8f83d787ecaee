-- sweep: finds other nodes whose lease lapsed and hands out their users, at
-- most `batch` per call (SPOP: each user to one sweeper only). A user
-- counted on no live node any more is announced offline, last seen when
-- their node last renewed. Their counts on that node move to its
-- node_swept hash (kept `swept_ttl_s`), so a node that was only cut off
-- from Redis takes them back the next time it touches Redis (`revive`), and
-- a dead node leaves nothing behind in the presence hashes. Publishing in
-- the same atomic step keeps the announcement in order with a reconnect.
--
-- KEYS[1]  nodes            hash: node id -> its last renewal (ms, Redis's clock)
-- KEYS[2]  webhooks         stream: events for the webhook receiver
-- ARGV[1]  node_prefix      key prefix of every node's lease ("node:")
-- ARGV[2]  users_prefix     key prefix of every node's node_users set
-- ARGV[3]  swept_prefix     key prefix of every node's node_swept hash
-- ARGV[4]  conns_prefix     key prefix of every node's node_conns set
-- ARGV[5]  presence_prefix  key prefix of users' presence hashes
-- ARGV[6]  last_seen_prefix key prefix of users' last-seen strings
-- ARGV[7]  watch_prefix     channel prefix of users' watchers
-- ARGV[8]  envelope         broker envelope header for published frames
-- ARGV[9]  batch            most users handed out by this call
-- ARGV[10] self_id          the sweeping node's id (never swept by itself)
-- ARGV[11] swept_ttl_s      how long a lapsed node's swept users are kept (s)
-- ARGV[12] events           '1' to queue user.offline events
--
-- Returns {1 if users are left for another call else 0,
--          {user, last seen, user, last seen, ...} announced offline}.
local nodes_key = KEYS[1]
local webhooks_key = KEYS[2]
local node_prefix = ARGV[1]
local users_prefix = ARGV[2]
local swept_prefix = ARGV[3]
local conns_prefix = ARGV[4]
local presence_prefix = ARGV[5]
local last_seen_prefix = ARGV[6]
local watch_prefix = ARGV[7]
local envelope = ARGV[8]
local batch = ARGV[9]
local self_id = ARGV[10]
local swept_ttl_s = ARGV[11]
local events = ARGV[12]

local swept, more, budget = {}, 0, tonumber(batch)
local nodes = redis.call('HGETALL', nodes_key)
for i = 1, #nodes, 2 do
  local node, renewed = nodes[i], nodes[i + 1]
  if budget <= 0 then
    more = 1
    break
  end
  if node ~= self_id and redis.call('EXISTS', node_prefix .. node) == 0 then
    local users_key = users_prefix .. node
    local swept_key = swept_prefix .. node
    -- Kept as long as the swept counts: a node that comes back still
    -- knows which connections it counted.
    redis.call('EXPIRE', conns_prefix .. node, swept_ttl_s)
    local users = redis.call('SPOP', users_key, budget)
    budget = budget - #users
    for _, user in ipairs(users) do
      local presence_key = presence_prefix .. user
      local n = tonumber(redis.call('HGET', presence_key, node) or '0')
      if n > 0 then
        redis.call('HDEL', presence_key, node)
        redis.call('HSET', swept_key, user, n)
        redis.call('EXPIRE', swept_key, swept_ttl_s)
      end
      if live_total(presence_key, node_prefix) == 0 then
        local seen = tonumber(redis.call('GET', last_seen_prefix .. user) or '0')
        -- A clean goodbye elsewhere may already have said offline, later.
        if seen <= tonumber(renewed) then
          redis.call('SET', last_seen_prefix .. user, renewed)
          redis.call('PUBLISH', watch_prefix .. user, envelope .. offline_frame(user, renewed))
          presence_event(webhooks_key, events, user, renewed)
          table.insert(swept, user)
          table.insert(swept, renewed)
        end
      end
    end
    if redis.call('SCARD', users_key) == 0 then
      redis.call('HDEL', nodes_key, node)
    else
      more = 1
    end
  end
end
return {more, swept}
