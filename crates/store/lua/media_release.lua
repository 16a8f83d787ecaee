-- media_release: a message no longer carries a file. When it was noted and
-- was the last, the file is marked as being deleted in the same step, so
-- no send can take it up between this answer and the deletion.
--
-- KEYS[1]  refs             set: ids of the messages that carry the file, or the mark
-- ARGV[1]  message          the message's id
-- ARGV[2]  deleting         the mark's member
--
-- Returns 1 when the caller deletes the file, else 0.
local refs_key = KEYS[1]
local message = ARGV[1]
local deleting = ARGV[2]

if redis.call('SREM', refs_key, message) == 0 then return 0 end
if redis.call('SCARD', refs_key) > 0 then return 0 end
redis.call('SADD', refs_key, deleting)
return 1
