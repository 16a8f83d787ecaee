-- mark_read: moves a reader's marker in the conversation with a peer up to
-- one of its messages. Messages from the peer after that one stay unread
-- (the count says how many); a marker never moves back: a read at or
-- before the current marker changes nothing.
--
-- KEYS[1]  unread     hash: sender -> unread count (unread:{reader})
-- KEYS[2]  read       hash: peer -> id of the message read up to
-- KEYS[3]  read_pos   hash: peer -> conversation position of that message
-- KEYS[4]  posts_in   zset: id -> position, of the peer's messages to the reader
-- KEYS[5]  posts_out  zset: id -> position, of the reader's messages to the peer
-- ARGV[1]  peer       the other side of the conversation
-- ARGV[2]  up_to      the id of the message read up to
--
-- Returns {outcome, the reader's counters as a flat hash}: outcome is
-- 'moved', 'stale' (not after the marker: nothing changed) or 'not_found'
-- (no message of this conversation has that id; counters empty).
local unread_key = KEYS[1]
local read_key = KEYS[2]
local read_pos_key = KEYS[3]
local posts_in_key = KEYS[4]
local posts_out_key = KEYS[5]
local peer = ARGV[1]
local up_to = ARGV[2]

local position = redis.call('ZSCORE', posts_in_key, up_to)
  or redis.call('ZSCORE', posts_out_key, up_to)
if not position then return {'not_found', {}} end
position = tonumber(position)
local current = tonumber(redis.call('HGET', read_pos_key, peer) or '0')
if position <= current then
  return {'stale', redis.call('HGETALL', unread_key)}
end
redis.call('HSET', read_pos_key, peer, position)
redis.call('HSET', read_key, peer, up_to)
-- Notes to oneself are never unread (append counts nothing for them).
local left = 0
if posts_in_key ~= posts_out_key then
  left = redis.call('ZCOUNT', posts_in_key, '(' .. position, '+inf')
end
if left > 0 then
  redis.call('HSET', unread_key, peer, left)
else
  redis.call('HDEL', unread_key, peer)
end
return {'moved', redis.call('HGETALL', unread_key)}
