-- room_leave: ends a user's membership of a room, by themselves (`by`
-- empty or the user) or removed by `by` (the owner removes anyone, an
-- admin removes members), in one step with the room's `member_left` entry
-- and the publishes. An owner leaving hands the room to the admin who
-- joined first, else to the member who joined first. Leaving when no
-- member changes nothing.
--
-- KEYS[1]  meta             hash: private, owner, seq (last entry), members (count)
-- KEYS[2]  members          hash: user -> "{role} {seq joined at}"
-- KEYS[3]  read             hash: user -> seq read up to
-- KEYS[4]  log              zset: seq -> entry frame (the room's history)
-- KEYS[5]  ids              zset: entry id -> seq
-- ARGV[1]  room             the room's name
-- ARGV[2]  user             who leaves
-- ARGV[3]  by               who removes them ('' when they leave themselves)
-- ARGV[4]  max_len          entries the history keeps
-- ARGV[5]  id               the entry's server id
-- ARGV[6]  head             the `member_left` frame before its seq,
-- ARGV[7]  tail             and after it
-- ARGV[8]  envelope         broker envelope header for the entry
-- ARGV[9]  control          broker envelope header for the user's control
-- ARGV[10] room_channel     the room's channel
-- ARGV[11] user_channel     the user's channel ('' on a cluster: the caller publishes
--                           the control after the script)
-- ARGV[12] server           '1' when the application removes them (no rights asked)
--
-- Returns {'left', seq}, {'absent'}, {'not_found'} or {'forbidden', why}.
local meta_key = KEYS[1]
local members_key = KEYS[2]
local read_key = KEYS[3]
local log_key = KEYS[4]
local ids_key = KEYS[5]
local room = ARGV[1]
local user = ARGV[2]
local by = ARGV[3]
local max_len = tonumber(ARGV[4])
local id = ARGV[5]
local head = ARGV[6]
local tail = ARGV[7]
local envelope = ARGV[8]
local control = ARGV[9]
local room_channel = ARGV[10]
local user_channel = ARGV[11]
local server = ARGV[12] == '1'

if redis.call('EXISTS', meta_key) == 0 then return {'not_found'} end
-- The caller's right first: an outsider learns nothing of who is in.
local by_role = nil
if not server and by ~= '' and by ~= user then
  by_role = member_of(members_key, by)
  if by_role ~= 'owner' and by_role ~= 'admin' then
    return {'forbidden', "only the owner and admins of room '" .. room .. "' remove members"}
  end
end
local role = member_of(members_key, user)
if not role then return {'absent'} end
if by_role == 'admin' and role ~= 'member' then
  return {'forbidden', "an admin of room '" .. room .. "' removes members only"}
end
local seq = redis.call('HINCRBY', meta_key, 'seq', 1)
local frame = head .. seq .. tail
room_append(log_key, ids_key, seq, id, frame, max_len)
redis.call('HDEL', members_key, user)
redis.call('HDEL', read_key, user)
redis.call('HINCRBY', meta_key, 'members', -1)
-- The remover has seen what they did.
if not server and by ~= '' and by ~= user then redis.call('HSET', read_key, by, seq) end
if role == 'owner' then
  local heir, heir_rank, heir_joined = '', 3, 0
  local all = redis.call('HGETALL', members_key)
  for i = 1, #all, 2 do
    local r, joined = string.match(all[i + 1], '^(%a+) (%d+)$')
    local rank = 2
    if r == 'admin' then rank = 1 end
    joined = tonumber(joined)
    if rank < heir_rank or (rank == heir_rank and joined < heir_joined) then
      heir, heir_rank, heir_joined = all[i], rank, joined
    end
  end
  redis.call('HSET', meta_key, 'owner', heir)
  if heir ~= '' then redis.call('HSET', members_key, heir, 'owner ' .. heir_joined) end
end
redis.call('PUBLISH', room_channel, envelope .. frame)
if user_channel ~= '' then
  redis.call('PUBLISH', user_channel, control .. '-' .. seq .. ' ' .. room)
end
return {'left', seq}
