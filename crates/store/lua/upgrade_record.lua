-- upgrade_record: fills in one inbox seq of an older direct message's
-- record (written by upgrade_stream with the position only), when the
-- record exists and that seq is still unknown (0): a message whose history
-- entry is gone stays unchangeable, and a record that knows its copies
-- (every message of this version) is left as it is.
--
-- KEYS[1]  msgs             hash: message id -> "{position} {seq_r} {seq_s} {update seq_r} {update seq_s}"
-- ARGV[1]  id               the message's id
-- ARGV[2]  slot             2 for seq_r (the receiver's copy), 3 for seq_s (the sender's)
-- ARGV[3]  seq              its seq in that inbox
local msgs_key = KEYS[1]
local id = ARGV[1]
local slot = tonumber(ARGV[2])
local seq = ARGV[3]

local record = redis.call('HGET', msgs_key, id)
if not record then return nil end
local parts = {}
for part in string.gmatch(record, '%S+') do table.insert(parts, part) end
if parts[slot] ~= '0' then return nil end
parts[slot] = seq
redis.call('HSET', msgs_key, id, table.concat(parts, ' '))
return nil
