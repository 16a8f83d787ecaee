-- dm_load: a direct message as stored, for a change (edit, delete,
-- reaction) or a reply's quote: its record and its history entry; with
-- `with_replies`, also those of the replies to it (a delete empties their
-- quotes). Read only: dm_change checks nothing moved meanwhile.
--
-- KEYS[1]  conv             zset: the conversation's history, "{position} {JSON}" by position
-- KEYS[2]  msgs             hash: message id -> "{position} {seq_r} {seq_s} {update seq_r} {update seq_s}"
-- KEYS[3]  replies          zset: reply id -> position of the message it answers
-- ARGV[1]  id               the message's id
-- ARGV[2]  with_replies     '1' to return the replies too
--
-- Returns {'found', record, history entry, reply record, reply entry, ...}
-- or {'no_entry'}.
local conv_key = KEYS[1]
local msgs_key = KEYS[2]
local replies_key = KEYS[3]
local id = ARGV[1]
local with_replies = ARGV[2]

-- A message's record and history entry, or nil.
local function load(message)
  local record = redis.call('HGET', msgs_key, message)
  if not record then return nil end
  local position = string.match(record, '^(%d+)')
  local entry = redis.call('ZRANGEBYSCORE', conv_key, position, position)[1]
  if not entry then return nil end
  return record, entry
end

local record, entry = load(id)
if not record then return {'no_entry'} end
local found = {'found', record, entry}
if with_replies == '1' then
  local position = string.match(record, '^(%d+)')
  for _, reply in ipairs(redis.call('ZRANGEBYSCORE', replies_key, position, position)) do
    local r, e = load(reply)
    if r then
      table.insert(found, r)
      table.insert(found, e)
    end
  end
end
return found
