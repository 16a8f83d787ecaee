-- dm_change: writes a changed direct message back (an edit, a delete, a
-- reaction) and appends its update to both inboxes, in one step. Every
-- history entry rewritten is compared first with what dm_load read: if
-- any changed meanwhile, nothing is written and the caller loads again
-- (compare-and-set). The message's previous update entries are removed,
-- so each inbox keeps one per message. A delete also scrubs the
-- receiver's offline copy and, when the message was unread, takes it off
-- the receiver's count (and tells them).
--
-- "r" is the message's receiver, "s" its sender; for a note to oneself
-- both name the same keys and only r's are written.
--
-- KEYS[1]  conv             zset: the conversation's history, "{position} {JSON}" by position
-- KEYS[2]  msgs             hash: message id -> "{position} {seq_r} {seq_s} {update seq_r} {update seq_s}"
-- KEYS[3]  replies          zset: reply id -> position of the message it answers
-- KEYS[4]  seq_r            string: r's last inbox seq
-- KEYS[5]  inbox_r          zset: r's inbox, "{seq} {frame}" by seq
-- KEYS[6]  seq_s            string: s's last inbox seq
-- KEYS[7]  inbox_s          zset: s's inbox
-- KEYS[8]  offline_r        list: r's "{seq} {frame}" kept while offline
-- KEYS[9]  unread_r         hash: sender -> unread count (unread:{r})
-- KEYS[10] read_pos_r       hash: peer -> position r read up to
-- KEYS[11] sent_s           hash: client id -> "{seq_r} {seq_s} {offline} {history}" of s's sends
-- KEYS[12] sent_r           hash: the same of r's sends
-- KEYS[13] offline_s        list: s's "{seq} {frame}" kept while offline
-- ARGV[1]  id               the message's id
-- ARGV[2]  sender           its sender
-- ARGV[3]  rewrites         JSON: [[position, entry as loaded, new entry, seq in r's
--                           inbox (0: none), frame there, seq in s's inbox, frame there], ...]:
--                           the message first, then replies whose quotes a delete empties
-- ARGV[4]  deleted          '1' when this deletes it
-- ARGV[5]  to_self          '1' for a note to oneself
-- ARGV[6]  head_r           r's update frame before its seq,
-- ARGV[7]  tail_r           and after it
-- ARGV[8]  head_s           s's update frame before its seq,
-- ARGV[9]  tail_s           and after it
-- ARGV[10] max_len          entries an inbox keeps
-- ARGV[11] envelope         broker envelope header
-- ARGV[12] channel_r        r's channel
-- ARGV[13] channel_s        s's channel
-- ARGV[14] unread_head      r's `unread` frame, cut where the count goes,
-- ARGV[15] unread_tail      with the sender's new count
--
-- Returns {'changed', r's update seq, s's update seq (0 for a note to
-- oneself)} or {'conflict'} (something moved: load again).
local conv_key = KEYS[1]
local msgs_key = KEYS[2]
local replies_key = KEYS[3]
local seq_r_key = KEYS[4]
local inbox_r_key = KEYS[5]
local seq_s_key = KEYS[6]
local inbox_s_key = KEYS[7]
local offline_r_key = KEYS[8]
local unread_r_key = KEYS[9]
local read_pos_r_key = KEYS[10]
local sent_s_key = KEYS[11]
local sent_r_key = KEYS[12]
local offline_s_key = KEYS[13]
local id = ARGV[1]
local sender = ARGV[2]
local rewrites = cjson.decode(ARGV[3])
local deleted = ARGV[4]
local to_self = ARGV[5]
local head_r = ARGV[6]
local tail_r = ARGV[7]
local head_s = ARGV[8]
local tail_s = ARGV[9]
local max_len = tonumber(ARGV[10])
local envelope = ARGV[11]
local channel_r = ARGV[12]
local channel_s = ARGV[13]
local unread_head = ARGV[14]
local unread_tail = ARGV[15]

local record = redis.call('HGET', msgs_key, id)
if not record then return {'conflict'} end
for _, rewrite in ipairs(rewrites) do
  local position = rewrite[1]
  if redis.call('ZRANGEBYSCORE', conv_key, position, position)[1] ~= rewrite[2] then
    return {'conflict'}
  end
end

local function replace(key, at, member)
  redis.call('ZREMRANGEBYSCORE', key, at, at)
  redis.call('ZADD', key, at, member)
end

for _, rewrite in ipairs(rewrites) do
  replace(conv_key, rewrite[1], rewrite[3])
  if rewrite[4] > 0 then replace(inbox_r_key, rewrite[4], rewrite[4] .. ' ' .. rewrite[5]) end
  if to_self ~= '1' and rewrite[6] > 0 then
    replace(inbox_s_key, rewrite[6], rewrite[6] .. ' ' .. rewrite[7])
  end
end

local position, seq_r, seq_s, update_r, update_s =
  string.match(record, '^(%d+) (%d+) (%d+) (%d+) (%d+)$')

if deleted == '1' then
  -- The offline copies (of the message, of the replies) too.
  local function scrub(offline_key, seq_at, frame_at)
    local by_prefix = {}
    for _, rewrite in ipairs(rewrites) do
      if rewrite[seq_at] > 0 then by_prefix[rewrite[seq_at] .. ' '] = rewrite[frame_at] end
    end
    for i, item in ipairs(redis.call('LRANGE', offline_key, 0, -1)) do
      local prefix = string.match(item, '^%d+ ')
      if prefix and by_prefix[prefix] then
        redis.call('LSET', offline_key, i - 1, prefix .. by_prefix[prefix])
      end
    end
  end
  scrub(offline_r_key, 4, 5)
  if to_self ~= '1' then scrub(offline_s_key, 6, 7) end
  -- The retry records of its send and of the replies' sends hold the
  -- text (or a quote of it) too: found by the message id in them.
  local rewritten = {}
  for _, rewrite in ipairs(rewrites) do
    local history = string.match(rewrite[3], '^%d+ (.*)$')
    local message = cjson.decode(history)
    rewritten['"id":"' .. message.id .. '"'] = history
  end
  for _, sent_key in ipairs({sent_s_key, sent_r_key}) do
    local sends = redis.call('HGETALL', sent_key)
    for i = 1, #sends, 2 do
      local head, stored = string.match(sends[i + 1], '^(%d+ %d+ %d) (.*)$')
      local id_field = stored and string.match(stored, '"id":"[^"]*"')
      if id_field and rewritten[id_field] then
        redis.call('HSET', sent_key, sends[i], head .. ' ' .. rewritten[id_field])
      end
    end
  end
  redis.call('ZREMRANGEBYSCORE', replies_key, position, position)
  redis.call('ZREM', replies_key, id)
  local read = tonumber(redis.call('HGET', read_pos_r_key, sender) or '0')
  if to_self ~= '1' and tonumber(position) > read then
    local left = tonumber(redis.call('HGET', unread_r_key, sender) or '0')
    if left > 0 then
      left = redis.call('HINCRBY', unread_r_key, sender, -1)
      redis.call('PUBLISH', channel_r, envelope .. unread_head .. left .. unread_tail)
    end
  end
end

-- Moves the message's update in one inbox to the inbox's next seq.
local function update(seq_key, inbox_key, previous, head, tail, channel)
  if previous ~= '0' then redis.call('ZREMRANGEBYSCORE', inbox_key, previous, previous) end
  local at = redis.call('INCR', seq_key)
  local frame = head .. at .. tail
  add_entry(inbox_key, at, frame, max_len)
  redis.call('PUBLISH', channel, envelope .. frame)
  return at
end

local at_r = update(seq_r_key, inbox_r_key, update_r, head_r, tail_r, channel_r)
local at_s = 0
if to_self ~= '1' then
  at_s = update(seq_s_key, inbox_s_key, update_s, head_s, tail_s, channel_s)
end
redis.call('HSET', msgs_key, id,
  position .. ' ' .. seq_r .. ' ' .. seq_s .. ' ' .. at_r .. ' ' .. at_s)
return {'changed', at_r, at_s}
