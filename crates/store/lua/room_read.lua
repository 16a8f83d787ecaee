-- room_read: moves a member's read marker forward to an entry of the room
-- (by its id). A marker never moves back: a read at or before it changes
-- nothing. The member's unread count is the room's last seq minus the
-- marker, less the quiet seqs after it (updates, deleted messages), so it
-- cannot drift.
--
-- KEYS[1]  meta             hash: private, owner, seq (last entry), members (count)
-- KEYS[2]  members          hash: user -> "{role} {seq joined at}"
-- KEYS[3]  read             hash: user -> seq read up to
-- KEYS[4]  ids              zset: entry id -> seq
-- KEYS[5]  quiet            zset: seqs that are not unread
-- ARGV[1]  user             the reader
-- ARGV[2]  up_to            the id of the entry read up to
--
-- Returns {'moved', unread, members}, {'stale', unread}, {'not_found'} (no
-- such entry), {'no_room'} or {'forbidden'} (no member).
local meta_key = KEYS[1]
local members_key = KEYS[2]
local read_key = KEYS[3]
local ids_key = KEYS[4]
local quiet_key = KEYS[5]
local user = ARGV[1]
local up_to = ARGV[2]

if redis.call('EXISTS', meta_key) == 0 then return {'no_room'} end
if not member_of(members_key, user) then return {'forbidden'} end
local seq = redis.call('ZSCORE', ids_key, up_to)
if not seq then return {'not_found'} end
seq = tonumber(seq)
local last = tonumber(redis.call('HGET', meta_key, 'seq'))
local current = tonumber(redis.call('HGET', read_key, user) or '0')
local function unread(marker)
  return last - marker - redis.call('ZCOUNT', quiet_key, '(' .. marker, '+inf')
end
if seq <= current then return {'stale', unread(current)} end
redis.call('HSET', read_key, user, seq)
return {'moved', unread(seq), tonumber(redis.call('HGET', meta_key, 'members'))}
