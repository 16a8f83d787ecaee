-- room_join: makes a user a member of a room, in one step with the room's
-- `member_joined` entry and the publishes. `mode` says how: 'create' (a
-- new room, the user its owner; refused when the name is taken), 'join'
-- (by themselves: public rooms only; a room that does not exist is created
-- public, with them as owner; so is an ownerless room's next member) or
-- 'add' (by `by`, who must be a member; only the owner adds admins; their
-- read marker moves to the new entry, as a sender's to their message). A
-- member joining again changes nothing.
--
-- KEYS[1]  meta             hash: private, owner, seq (last entry), members (count)
-- KEYS[2]  members          hash: user -> "{role} {seq joined at}"
-- KEYS[3]  read             hash: user -> seq read up to
-- KEYS[4]  log              zset: seq -> entry frame (the room's history)
-- KEYS[5]  ids              zset: entry id -> seq
-- ARGV[1]  room             the room's name
-- ARGV[2]  user             who becomes a member
-- ARGV[3]  mode             'create', 'join', 'add' or 'server' (the application adds them)
-- ARGV[4]  by               who adds them ('add' only)
-- ARGV[5]  role             'member' or 'admin' ('add' only)
-- ARGV[6]  private          '1' for a private room ('create' only)
-- ARGV[7]  max_members      members a room may have
-- ARGV[8]  max_len          entries the history keeps
-- ARGV[9]  id               the entry's server id
-- ARGV[10] head             the `member_joined` frame before its seq,
-- ARGV[11] tail             and after it
-- ARGV[12] envelope         broker envelope header for the entry
-- ARGV[13] control          broker envelope header for the user's control
-- ARGV[14] room_channel     the room's channel
-- ARGV[15] user_channel     the user's channel ('' on a cluster: the caller publishes
--                           the control after the script, the channel being in
--                           another slot)
--
-- Returns {'joined', seq}, {'already'}, {'exists'}, {'not_found'},
-- {'forbidden', why} or {'full'}.
local meta_key = KEYS[1]
local members_key = KEYS[2]
local read_key = KEYS[3]
local log_key = KEYS[4]
local ids_key = KEYS[5]
local room = ARGV[1]
local user = ARGV[2]
local mode = ARGV[3]
local by = ARGV[4]
local role = ARGV[5]
local private = ARGV[6]
local max_members = tonumber(ARGV[7])
local max_len = tonumber(ARGV[8])
local id = ARGV[9]
local head = ARGV[10]
local tail = ARGV[11]
local envelope = ARGV[12]
local control = ARGV[13]
local room_channel = ARGV[14]
local user_channel = ARGV[15]

local exists = redis.call('EXISTS', meta_key) == 1
if mode == 'create' then
  if exists then return {'exists'} end
  redis.call('HSET', meta_key, 'private', private, 'owner', '', 'seq', 0, 'members', 0)
elseif not exists then
  if mode == 'add' or mode == 'server' then return {'not_found'} end
  redis.call('HSET', meta_key, 'private', '0', 'owner', '', 'seq', 0, 'members', 0)
end
-- The caller's right first: an outsider learns nothing of who is in.
if mode == 'add' then
  local by_role = member_of(members_key, by)
  if not by_role then
    return {'forbidden', "only members of room '" .. room .. "' may add members"}
  end
  if role == 'admin' and by_role ~= 'owner' then
    return {'forbidden', "only the owner of room '" .. room .. "' may add admins"}
  end
elseif mode ~= 'server' then
  role = 'member'
end
if member_of(members_key, user) then return {'already'} end
if mode == 'join' and redis.call('HGET', meta_key, 'private') == '1' then
  return {'forbidden', "room '" .. room .. "' is private: a member must add you"}
end
if tonumber(redis.call('HGET', meta_key, 'members')) >= max_members then return {'full'} end
if redis.call('HGET', meta_key, 'owner') == '' then
  role = 'owner'
  redis.call('HSET', meta_key, 'owner', user)
end
local seq = redis.call('HINCRBY', meta_key, 'seq', 1)
local frame = head .. seq .. tail
room_append(log_key, ids_key, seq, id, frame, max_len)
redis.call('HSET', members_key, user, role .. ' ' .. seq)
redis.call('HINCRBY', meta_key, 'members', 1)
redis.call('HSET', read_key, user, seq)
-- The adder has seen what they did (as a sender has their own message).
if mode == 'add' then redis.call('HSET', read_key, by, seq) end
redis.call('PUBLISH', room_channel, envelope .. frame)
if user_channel ~= '' then
  redis.call('PUBLISH', user_channel, control .. '+' .. seq .. ' ' .. room)
end
return {'joined', seq}
