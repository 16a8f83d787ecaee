-- media_hold: notes that a message carries a file, unless the file is
-- being deleted (its last message was deleted: the set holds the mark).
--
-- KEYS[1]  refs             set: ids of the messages that carry the file, or the mark
-- ARGV[1]  message          the message's id
-- ARGV[2]  deleting         the mark's member
--
-- Returns 1 when noted, 0 when the file is being deleted.
local refs_key = KEYS[1]
local message = ARGV[1]
local deleting = ARGV[2]

if redis.call('SISMEMBER', refs_key, deleting) == 1 then return 0 end
redis.call('SADD', refs_key, message)
return 1
