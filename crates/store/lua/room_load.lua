-- room_load: a room message as stored, for a change (edit, delete,
-- reaction) or a reply's quote: checks the caller is a member, finds the
-- entry by its id; with `with_replies`, also the replies to it (their seq
-- and frame), whose quotes a delete empties. Read only: the change that
-- follows (room_change) checks nothing moved meanwhile.
--
-- KEYS[1]  meta             hash: private, owner, seq (last entry), members (count)
-- KEYS[2]  members          hash: user -> "{role} {seq joined at}"
-- KEYS[3]  log              zset: seq -> entry frame
-- KEYS[4]  ids              zset: entry id -> seq
-- KEYS[5]  replies          zset: reply id -> seq of the message it answers
-- ARGV[1]  user             who asks
-- ARGV[2]  id               the entry's id
-- ARGV[3]  with_replies     '1' to return the replies too
--
-- Returns {'found', role, seq, frame, reply seq, reply frame, ...},
-- {'no_entry'}, {'not_found'} (no room) or {'forbidden'} (no member).
local meta_key = KEYS[1]
local members_key = KEYS[2]
local log_key = KEYS[3]
local ids_key = KEYS[4]
local replies_key = KEYS[5]
local user = ARGV[1]
local id = ARGV[2]
local with_replies = ARGV[3]

if redis.call('EXISTS', meta_key) == 0 then return {'not_found'} end
local role = member_of(members_key, user)
if not role then return {'forbidden'} end
local seq = redis.call('ZSCORE', ids_key, id)
if not seq then return {'no_entry'} end
local frame = redis.call('ZRANGEBYSCORE', log_key, seq, seq)[1]
if not frame then return {'no_entry'} end
local found = {'found', role, seq, frame}
if with_replies == '1' then
  for _, reply in ipairs(redis.call('ZRANGEBYSCORE', replies_key, seq, seq)) do
    local at = redis.call('ZSCORE', ids_key, reply)
    local text = at and redis.call('ZRANGEBYSCORE', log_key, at, at)[1]
    if text then
      table.insert(found, at)
      table.insert(found, text)
    end
  end
end
return found
