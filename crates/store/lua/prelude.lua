-- prelude: the helpers every script in this folder starts with. `lua!` in
-- src/redis/script.rs puts this file in front of each script at compile
-- time, so the helpers are written once and each script runs alone.
--
-- Nothing here reads KEYS or ARGV: each script binds its own names and
-- passes them in.

-- Scripts that call TIME or SPOP before writing need effects replication:
-- the default since Redis 5, asked for explicitly for older servers.
redis.replicate_commands()

local JSON_ESCAPES = {
  ['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
  ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t',
}

-- The value of field `name` in a stream entry's field list
-- ({name, value, name, value, ...}), or nil.
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

-- `s` as a JSON string literal, escaped exactly as serde_json escapes it
-- (quote, backslash, control characters; every other byte as it is), so a
-- frame written here has the bytes the protocol types would give it.
local function json_string(s)
  local escaped = string.gsub(s, '[%z\1-\31"\\]', function(c)
    return JSON_ESCAPES[c] or string.format('\\u%04x', string.byte(c))
  end)
  return '"' .. escaped .. '"'
end

-- The `presence` frame saying `user` came online.
local function online_frame(user)
  return '{"type":"presence","user":' .. json_string(user) .. ',"online":true}'
end

-- The `presence` frame saying `user` went offline, last seen at `last_seen` (ms).
local function offline_frame(user, last_seen)
  return '{"type":"presence","user":' .. json_string(user)
    .. ',"online":false,"last_seen":' .. last_seen .. '}'
end

-- Queues the webhook event `user.online` (or `user.offline`, last seen at
-- `last_seen` ms) on the stream `events_key`, when `events` is '1'.
local function presence_event(events_key, events, user, last_seen)
  if events ~= '1' then return end
  local kind, seen = 'online', ''
  if last_seen then kind, seen = 'offline', ',"last_seen":' .. last_seen end
  redis.call('XADD', events_key, '*', 'e',
    '{"type":"user.' .. kind .. '","data":{"user":' .. json_string(user) .. seen .. '}}')
end

-- Adds `text` at `seq` to a sorted set of "{seq} {text}" entries scored by
-- seq (an inbox, a conversation's history), keeping its last `max_len`.
local function add_entry(key, seq, text, max_len)
  redis.call('ZADD', key, seq, seq .. ' ' .. text)
  if seq > max_len then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (seq - max_len + 1))
  end
end

-- Adds message `id` (`history`, answering the message at `reply_pos`, or
-- '') at `position` to one user's copy of a conversation on a Redis
-- Cluster (dm_receive, dm_keep): its history, its posts index, its replies;
-- and forgets what fell out of the last `max_len` positions.
local function add_to_copy(conv_key, posts_key, msgs_key, replies_key, position, id, history,
                           reply_pos, max_len)
  add_entry(conv_key, position, history, max_len)
  redis.call('ZADD', posts_key, position, id)
  if reply_pos ~= '' then redis.call('ZADD', replies_key, reply_pos, id) end
  if position <= max_len then return end
  local oldest = '(' .. (position - max_len + 1)
  local dropped = redis.call('ZRANGEBYSCORE', posts_key, '-inf', oldest)
  if #dropped > 0 then
    redis.call('HDEL', msgs_key, unpack(dropped))
    redis.call('ZREM', posts_key, unpack(dropped))
  end
  redis.call('ZREMRANGEBYSCORE', replies_key, '-inf', oldest)
end

-- Redis's clock in milliseconds since the Unix epoch, as a string.
local function now_ms()
  local t = redis.call('TIME')
  return t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
end

-- A user's open connections on live nodes: the per-node counts in the
-- hash `presence_key` whose node still holds its lease (`node_prefix` .. id).
-- With `node_prefix` '' (Redis Cluster, where the leases are in other
-- slots) every count counts: a lapsed node's are taken out by the sweep.
local function live_total(presence_key, node_prefix)
  local total = 0
  local presence = redis.call('HGETALL', presence_key)
  for i = 1, #presence, 2 do
    local n = tonumber(presence[i + 1])
    if n > 0 and (node_prefix == '' or redis.call('EXISTS', node_prefix .. presence[i]) == 1) then
      total = total + n
    end
  end
  return total
end

-- What every presence script does first, as `node` (a table: id, lease_key,
-- lease_ms, nodes_key, users_key, swept_key, conns_key, node_prefix,
-- presence_prefix, watch_prefix, envelope): renew the node's lease and note when (Redis's
-- clock); and if a sweep took the node's users while it was cut off from
-- Redis, take them back (their counts on this node), announcing online
-- again those nobody else counted meanwhile. Answers how many it took back.
local function revive(node)
  redis.call('SET', node.lease_key, 1, 'PX', node.lease_ms)
  redis.call('HSET', node.nodes_key, node.id, now_ms())
  local swept = redis.call('HGETALL', node.swept_key)
  if #swept == 0 then return 0 end
  redis.call('DEL', node.swept_key)
  -- The sweep gave the node's connection list a lifetime; it lives again.
  redis.call('PERSIST', node.conns_key)
  for i = 1, #swept, 2 do
    local user, n = swept[i], tonumber(swept[i + 1])
    local presence_key = node.presence_prefix .. user
    local here = redis.call('HINCRBY', presence_key, node.id, n)
    redis.call('SADD', node.users_key, user)
    if live_total(presence_key, node.node_prefix) == here then
      redis.call('PUBLISH', node.watch_prefix .. user, node.envelope .. online_frame(user))
      presence_event(node.webhooks_key, node.events, user)
    end
  end
  return #swept / 2
end

-- Appends `frame` (a room entry, written at `seq`) with its server `id` to
-- a room's history (`log_key`: seq -> frame; `ids_key`: id -> seq), and
-- keeps the room's last `max_len` entries.
local function room_append(log_key, ids_key, seq, id, frame, max_len)
  redis.call('ZADD', log_key, seq, frame)
  redis.call('ZADD', ids_key, seq, id)
  if seq > max_len then
    local oldest = '(' .. (seq - max_len + 1)
    redis.call('ZREMRANGEBYSCORE', log_key, '-inf', oldest)
    redis.call('ZREMRANGEBYSCORE', ids_key, '-inf', oldest)
  end
end

-- A room member's role and the seq they joined at, from their
-- `members` hash entry ("{role} {seq}"); nil for no member.
local function member_of(members_key, user)
  local entry = redis.call('HGET', members_key, user)
  if not entry then return nil end
  local role, joined = string.match(entry, '^(%a+) (%d+)$')
  return role, tonumber(joined)
end

-- The end of every script's prelude: its own text follows.
