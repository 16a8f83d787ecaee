-- room_role: gives a member another role (member or admin), by the
-- application. The owner's role does not change here: the owner is who
-- created the room, or who it passed to when the owner left.
--
-- KEYS[1]  meta             hash: private, owner, seq (last entry), members (count)
-- KEYS[2]  members          hash: user -> "{role} {seq joined at}"
-- ARGV[1]  user             the member
-- ARGV[2]  role             member | admin
--
-- Returns 'changed', 'same', 'not_member', 'owner' or 'not_found'.
local meta_key = KEYS[1]
local members_key = KEYS[2]
local user = ARGV[1]
local role = ARGV[2]

if redis.call('EXISTS', meta_key) == 0 then
  return 'not_found'
end
local entry = redis.call('HGET', members_key, user)
if not entry then
  return 'not_member'
end
local current, joined = string.match(entry, '^(%S+) (%S+)$')
if current == 'owner' then
  return 'owner'
end
if current == role then
  return 'same'
end
redis.call('HSET', members_key, user, role .. ' ' .. joined)
return 'changed'
