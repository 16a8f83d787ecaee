-- dm_change_copy: writes a changed direct message back (an edit, a delete,
-- a reaction) into one user's copy of the conversation on a Redis Cluster,
-- in that user's slot, and appends its update to their inbox: the step of
-- one side (the caller runs the receiver's, then the sender's). Every
-- history entry rewritten is compared first with what dm_load read from
-- this copy: if any changed meanwhile, nothing is written and the caller
-- loads again (compare-and-set). The message's previous update entry in
-- this inbox is removed, so the inbox keeps one per message. A delete also
-- scrubs the owner's offline copy and records of sends and, on the receiver's
-- side when the message was unread, takes it off their count (and tells
-- them).
--
-- KEYS[1]  conv             zset: the owner's copy of the conversation, "{position} {JSON}"
-- KEYS[2]  msgs             hash: message id -> "{position} {seq_r} {seq_s} {update seq_r} {update seq_s}"
-- KEYS[3]  replies          zset: reply id -> position of the message it answers
-- KEYS[4]  seq              string: the owner's last inbox seq
-- KEYS[5]  inbox            zset: the owner's inbox, "{seq} {frame}" by seq
-- KEYS[6]  offline          list: the owner's "{seq} {frame}" kept while offline
-- KEYS[7]  unread           hash: sender -> unread count (unread:{owner})
-- KEYS[8]  read_pos         hash: peer -> position the owner read up to
-- KEYS[9]  sent             hash: client id -> "{seq_r} {seq_s} {offline} {history}" of the owner's sends
-- KEYS[10] received         hash: "{sender} {client id}" -> "{seq_r} {offline} {position} {id} {history}" of the owner's received sends
-- ARGV[1]  id               the message's id
-- ARGV[2]  sender           its sender
-- ARGV[3]  rewrites         JSON: [[position, entry as loaded, new entry, seq in the owner's
--                           inbox (0: none), frame there], ...]: the message first, then
--                           replies whose quotes a delete empties
-- ARGV[4]  deleted          '1' when this deletes it
-- ARGV[5]  owner_received   '1' when the owner received the message (its unread count may drop)
-- ARGV[6]  role             'r' when the owner's update is the record's receiver field, 's' the sender's
-- ARGV[7]  head             the owner's update frame before its seq,
-- ARGV[8]  tail             and after it
-- ARGV[9]  max_len          entries an inbox keeps
-- ARGV[10] envelope         broker envelope header
-- ARGV[11] channel          the owner's channel
-- ARGV[12] unread_head      the owner's `unread` frame, cut where the count goes,
-- ARGV[13] unread_tail      with the sender's new count
--
-- Returns {'changed', the update's seq in the owner's inbox} or {'conflict'}.
local conv_key = KEYS[1]
local msgs_key = KEYS[2]
local replies_key = KEYS[3]
local seq_key = KEYS[4]
local inbox_key = KEYS[5]
local offline_key = KEYS[6]
local unread_key = KEYS[7]
local read_pos_key = KEYS[8]
local sent_key = KEYS[9]
local received_key = KEYS[10]
local id = ARGV[1]
local sender = ARGV[2]
local rewrites = cjson.decode(ARGV[3])
local deleted = ARGV[4]
local owner_received = ARGV[5]
local role = ARGV[6]
local head = ARGV[7]
local tail = ARGV[8]
local max_len = tonumber(ARGV[9])
local envelope = ARGV[10]
local channel = ARGV[11]
local unread_head = ARGV[12]
local unread_tail = ARGV[13]

local record = redis.call('HGET', msgs_key, id)
if not record then return {'conflict'} end
for _, rewrite in ipairs(rewrites) do
  local position = rewrite[1]
  if redis.call('ZRANGEBYSCORE', conv_key, position, position)[1] ~= rewrite[2] then
    return {'conflict'}
  end
end

local position, seq_r, seq_s, update_r, update_s =
  string.match(record, '^(%d+) (%d+) (%d+) (%d+) (%d+)$')
local update = update_r
if role == 's' then update = update_s end

-- This copy holds the change already (a retry after the other copy's step
-- failed): nothing to write, count or announce again.
local changed = false
for _, rewrite in ipairs(rewrites) do
  if rewrite[2] ~= rewrite[3] then changed = true end
end
if not changed then return {'changed', tonumber(update)} end

local function replace(key, at, member)
  redis.call('ZREMRANGEBYSCORE', key, at, at)
  redis.call('ZADD', key, at, member)
end

for _, rewrite in ipairs(rewrites) do
  replace(conv_key, rewrite[1], rewrite[3])
  if rewrite[4] > 0 then replace(inbox_key, rewrite[4], rewrite[4] .. ' ' .. rewrite[5]) end
end

if deleted == '1' then
  -- The offline copies (of the message, of the replies) too.
  local by_prefix = {}
  for _, rewrite in ipairs(rewrites) do
    if rewrite[4] > 0 then by_prefix[rewrite[4] .. ' '] = rewrite[5] end
  end
  for i, item in ipairs(redis.call('LRANGE', offline_key, 0, -1)) do
    local prefix = string.match(item, '^%d+ ')
    if prefix and by_prefix[prefix] then
      redis.call('LSET', offline_key, i - 1, prefix .. by_prefix[prefix])
    end
  end
  -- The retry records of its send and of the replies' sends hold the
  -- text (or a quote of it) too: found by the message id in them.
  local rewritten = {}
  for _, rewrite in ipairs(rewrites) do
    local history = string.match(rewrite[3], '^%d+ (.*)$')
    local message = cjson.decode(history)
    rewritten['"id":"' .. message.id .. '"'] = history
  end
  local function scrub_records(key, shape)
    local records = redis.call('HGETALL', key)
    for i = 1, #records, 2 do
      local kept, stored = string.match(records[i + 1], shape)
      local id_field = stored and string.match(stored, '"id":"[^"]*"')
      if id_field and rewritten[id_field] then
        redis.call('HSET', key, records[i], kept .. ' ' .. rewritten[id_field])
      end
    end
  end
  scrub_records(sent_key, '^(%d+ %d+ %d) (.*)$')
  scrub_records(received_key, '^(%d+ %d %d+ %S+) (.*)$')
  redis.call('ZREMRANGEBYSCORE', replies_key, position, position)
  redis.call('ZREM', replies_key, id)
  local read = tonumber(redis.call('HGET', read_pos_key, sender) or '0')
  if owner_received == '1' and tonumber(position) > read then
    local left = tonumber(redis.call('HGET', unread_key, sender) or '0')
    if left > 0 then
      left = redis.call('HINCRBY', unread_key, sender, -1)
      redis.call('PUBLISH', channel, envelope .. unread_head .. left .. unread_tail)
    end
  end
end

-- The message's update moves to the inbox's next seq.
local previous = update
if previous ~= '0' then redis.call('ZREMRANGEBYSCORE', inbox_key, previous, previous) end
local at = redis.call('INCR', seq_key)
local frame = head .. at .. tail
add_entry(inbox_key, at, frame, max_len)
redis.call('PUBLISH', channel, envelope .. frame)
if role == 's' then update_s = at else update_r = at end
redis.call('HSET', msgs_key, id,
  position .. ' ' .. seq_r .. ' ' .. seq_s .. ' ' .. update_r .. ' ' .. update_s)
return {'changed', at}
