-- room_delete: deletes a room and everything it keeps (its history, its
-- members, their read markers, its retry records, its lifecycle indexes),
-- in one step, and tells each member's connections to stop following it:
-- a `left` control at the room's next seq (after every entry they know).
--
-- KEYS[1]  meta             hash: private, owner, seq (last entry), members (count)
-- KEYS[2]  members          hash: user -> "{role} {seq joined at}"
-- KEYS[3]  read             hash: user -> seq read up to
-- KEYS[4]  log              zset: seq -> entry frame (the room's history)
-- KEYS[5]  ids              zset: entry id -> seq
-- KEYS[6]  updates          zset: message id -> seq of its update entry
-- KEYS[7]  quiet            zset: seqs that are never unread
-- KEYS[8]  replies          zset: reply id -> seq of the message it answers
-- KEYS[9]  sent             hash: "{user} {client id}" -> "{seq} {frame}"
-- KEYS[10] sent_order       zset: those fields -> seq
-- ARGV[1]  room             the room's name
-- ARGV[2]  control          broker envelope header for the members' controls
-- ARGV[3]  user_prefix      channel prefix of users' channels ('' on a cluster: the
--                           caller publishes the controls after the script)
--
-- Returns {'deleted', seq of the controls, member, ...} (who were members) or
-- {'not_found'}.
local meta_key = KEYS[1]
local members_key = KEYS[2]
local read_key = KEYS[3]
local log_key = KEYS[4]
local ids_key = KEYS[5]
local updates_key = KEYS[6]
local quiet_key = KEYS[7]
local replies_key = KEYS[8]
local sent_key = KEYS[9]
local sent_order_key = KEYS[10]
local room = ARGV[1]
local control = ARGV[2]
local user_prefix = ARGV[3]

if redis.call('EXISTS', meta_key) == 0 then return {'not_found'} end
local seq = tonumber(redis.call('HGET', meta_key, 'seq') or '0') + 1
local members = redis.call('HKEYS', members_key)
redis.call('DEL', meta_key, members_key, read_key, log_key, ids_key, updates_key,
  quiet_key, replies_key, sent_key, sent_order_key)
if user_prefix ~= '' then
  for _, user in ipairs(members) do
    redis.call('PUBLISH', user_prefix .. user, control .. '-' .. seq .. ' ' .. room)
  end
end
local out = {'deleted', seq}
for _, user in ipairs(members) do table.insert(out, user) end
return out
