-- room_change: writes a changed room message back (an edit, a delete, a
-- reaction) and appends its update, in one step. Every entry rewritten is
-- compared first with the frame room_load read: if any changed meanwhile,
-- nothing is written and the caller loads again (compare-and-set). The
-- message's previous update entry is removed, so a message keeps one. The
-- update entry, and a deleted message, stop counting unread: their seqs go
-- to `quiet` (a member's unread = last seq - marker - quiet seqs after
-- the marker).
--
-- KEYS[1]  meta             hash: private, owner, seq (last entry), members (count)
-- KEYS[2]  members          hash: user -> "{role} {seq joined at}"
-- KEYS[3]  log              zset: seq -> entry frame
-- KEYS[4]  ids              zset: entry id -> seq
-- KEYS[5]  updates          zset: message id -> seq of its update entry
-- KEYS[6]  quiet            zset: seqs that are not unread (updates, deleted messages)
-- KEYS[7]  replies          zset: reply id -> seq of the message it answers
-- KEYS[8]  sent             hash: "{user} {client id}" -> "{seq} {frame}" of the room's last sends
-- ARGV[1]  user             who changes it (still a member)
-- ARGV[2]  id               the message's id
-- ARGV[3]  seq              its seq
-- ARGV[4]  old              its frame as loaded
-- ARGV[5]  new              its new frame
-- ARGV[6]  deleted          '1' when this deletes it
-- ARGV[7]  head             the update frame before its seq,
-- ARGV[8]  tail             and after it
-- ARGV[9]  max_len          entries the history keeps
-- ARGV[10] envelope         broker envelope header for the update
-- ARGV[11] room_channel     the room's channel
-- ARGV[12] rewrites         JSON: [[seq, frame as loaded, new frame], ...] of the
--                           replies whose quotes a delete empties
--
-- Returns {'changed', update seq}, {'conflict'} (something moved: load
-- again), {'not_found'} (no room) or {'forbidden'} (no member).
local meta_key = KEYS[1]
local members_key = KEYS[2]
local log_key = KEYS[3]
local ids_key = KEYS[4]
local updates_key = KEYS[5]
local quiet_key = KEYS[6]
local replies_key = KEYS[7]
local sent_key = KEYS[8]
local user = ARGV[1]
local id = ARGV[2]
local seq = tonumber(ARGV[3])
local old = ARGV[4]
local new = ARGV[5]
local deleted = ARGV[6]
local head = ARGV[7]
local tail = ARGV[8]
local max_len = tonumber(ARGV[9])
local envelope = ARGV[10]
local room_channel = ARGV[11]
local rewrites = cjson.decode(ARGV[12])

if redis.call('EXISTS', meta_key) == 0 then return {'not_found'} end
if not member_of(members_key, user) then return {'forbidden'} end

local function current(at)
  return redis.call('ZRANGEBYSCORE', log_key, at, at)[1]
end

if current(seq) ~= old then return {'conflict'} end
for _, rewrite in ipairs(rewrites) do
  if current(rewrite[1]) ~= rewrite[2] then return {'conflict'} end
end

local function replace(at, frame)
  redis.call('ZREMRANGEBYSCORE', log_key, at, at)
  redis.call('ZADD', log_key, at, frame)
end

replace(seq, new)
for _, rewrite in ipairs(rewrites) do
  replace(rewrite[1], rewrite[3])
end
if deleted == '1' then
  -- The retry records of its send and of the replies' sends hold the
  -- text (or a quote of it) too.
  local rewritten = {[seq .. ' '] = new}
  for _, rewrite in ipairs(rewrites) do rewritten[rewrite[1] .. ' '] = rewrite[3] end
  local sends = redis.call('HGETALL', sent_key)
  for i = 1, #sends, 2 do
    local prefix = string.match(sends[i + 1], '^%d+ ')
    if prefix and rewritten[prefix] then
      redis.call('HSET', sent_key, sends[i], prefix .. rewritten[prefix])
    end
  end
  redis.call('ZADD', quiet_key, seq, seq)
  redis.call('ZREMRANGEBYSCORE', replies_key, seq, seq)
  redis.call('ZREM', replies_key, id)
end

local previous = redis.call('ZSCORE', updates_key, id)
if previous then redis.call('ZREMRANGEBYSCORE', log_key, previous, previous) end
local at = redis.call('HINCRBY', meta_key, 'seq', 1)
local frame = head .. at .. tail
redis.call('ZADD', log_key, at, frame)
redis.call('ZADD', updates_key, at, id)
redis.call('ZADD', quiet_key, at, at)
if at > max_len then
  local oldest = '(' .. (at - max_len + 1)
  for _, key in ipairs({log_key, ids_key, updates_key, quiet_key, replies_key}) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', oldest)
  end
end
redis.call('PUBLISH', room_channel, envelope .. frame)
return {'changed', at}
