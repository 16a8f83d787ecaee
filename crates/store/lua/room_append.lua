-- room_append: stores a message in a room and publishes it to the members,
-- in one step: the next seq, the history, the sender's read marker (what
-- one writes, one has read), the publish. Storage does not depend on the
-- number of members. A send repeating one the sender already made in this
-- room (same client id, among the room's last `sent_max` entries) stores
-- nothing and answers the first.
--
-- KEYS[1]  meta             hash: private, owner, seq (last entry), members (count)
-- KEYS[2]  members          hash: user -> "{role} {seq joined at}"
-- KEYS[3]  read             hash: user -> seq read up to
-- KEYS[4]  log              zset: seq -> entry frame (the room's history)
-- KEYS[5]  ids              zset: entry id -> seq
-- KEYS[6]  sent             hash: "{user} {client id}" -> "{seq} {frame}"
-- KEYS[7]  sent_order       zset: those fields -> seq
-- KEYS[8]  replies          zset: reply id -> seq of the message it answers
-- ARGV[1]  sender           who sends
-- ARGV[2]  id               the message's server id
-- ARGV[3]  client_key       "{user} {client id}" of this send
-- ARGV[4]  head             the `message` frame before its seq,
-- ARGV[5]  tail             and after it
-- ARGV[6]  max_len          entries the history keeps
-- ARGV[7]  sent_max         the room's last entries whose client ids are kept
-- ARGV[8]  sent_ttl_s       how long client ids outlive the room's last send (s)
-- ARGV[9]  envelope         broker envelope header for the message
-- ARGV[10] room_channel     the room's channel
-- ARGV[11] reply_seq        seq of the message this one answers ('' for none)
-- ARGV[12] as_server        '1': the application sends it (no membership asked, no read marker)
--
-- Returns {'stored', seq}, {'repeated', seq, frame}, {'not_found'} or
-- {'forbidden'}.
local meta_key = KEYS[1]
local members_key = KEYS[2]
local read_key = KEYS[3]
local log_key = KEYS[4]
local ids_key = KEYS[5]
local sent_key = KEYS[6]
local sent_order_key = KEYS[7]
local replies_key = KEYS[8]
local sender = ARGV[1]
local id = ARGV[2]
local client_key = ARGV[3]
local head = ARGV[4]
local tail = ARGV[5]
local max_len = tonumber(ARGV[6])
local sent_max = tonumber(ARGV[7])
local sent_ttl_s = ARGV[8]
local envelope = ARGV[9]
local room_channel = ARGV[10]
local reply_seq = ARGV[11]
local as_server = ARGV[12] == '1'

if redis.call('EXISTS', meta_key) == 0 then return {'not_found'} end
if not as_server and not member_of(members_key, sender) then return {'forbidden'} end
local first = redis.call('HGET', sent_key, client_key)
if first then
  local seq, frame = string.match(first, '^(%d+) (.*)$')
  return {'repeated', tonumber(seq), frame}
end
local seq = redis.call('HINCRBY', meta_key, 'seq', 1)
local frame = head .. seq .. tail
room_append(log_key, ids_key, seq, id, frame, max_len)
if not as_server then redis.call('HSET', read_key, sender, seq) end
if reply_seq ~= '' then redis.call('ZADD', replies_key, reply_seq, id) end
if seq > max_len then
  -- Replies to entries the history no longer keeps.
  redis.call('ZREMRANGEBYSCORE', replies_key, '-inf', '(' .. (seq - max_len + 1))
end
redis.call('HSET', sent_key, client_key, seq .. ' ' .. frame)
redis.call('ZADD', sent_order_key, seq, client_key)
if seq > sent_max then
  local old = redis.call('ZRANGEBYSCORE', sent_order_key, '-inf', seq - sent_max)
  if #old > 0 then
    redis.call('HDEL', sent_key, unpack(old))
    redis.call('ZREMRANGEBYSCORE', sent_order_key, '-inf', seq - sent_max)
  end
end
redis.call('EXPIRE', sent_key, sent_ttl_s)
redis.call('EXPIRE', sent_order_key, sent_ttl_s)
redis.call('PUBLISH', room_channel, envelope .. frame)
return {'stored', seq}
