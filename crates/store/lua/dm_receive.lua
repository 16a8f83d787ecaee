-- dm_receive: the receiver's side of a direct message on a Redis Cluster,
-- in the receiver's slot: the first of two steps (dm_keep writes the
-- sender's side after it). In one atomic step: the receiver's inbox (with
-- their next sequence number), their copy of the conversation at the
-- position the caller reserved, the unread count (HINCRBY
-- unread:{receiver} {sender} 1, the seed's shape), the offline list when
-- they have no connection, then the publishes to their channel. A send the
-- receiver already took (same sender, same client id: retried after a
-- crash between the two steps) stores nothing and answers the first.
--
-- KEYS[1]  seq_r            string: the receiver's last inbox sequence number
-- KEYS[2]  inbox_r          zset: "{seq} {frame}" scored by seq: the receiver's inbox
-- KEYS[3]  offline_r        list: "{seq} {frame}" kept while the receiver had no connection
-- KEYS[4]  unread_r         hash: sender -> unread count (unread:{receiver})
-- KEYS[5]  conv             zset: the receiver's copy of the conversation, JSON scored by position
-- KEYS[6]  posts            zset: id -> position, of the sender's messages to the receiver
-- KEYS[7]  presence_r       hash: node id -> the receiver's connections there
-- KEYS[8]  msgs             hash: message id -> "{position} {seq_r} 0 0 0" (the receiver's copy)
-- KEYS[9]  replies          zset: reply id -> position of the message it answers
-- KEYS[10] received         hash: "{sender} {client id}" -> "{seq_r} {offline} {position} {id} {history}"
-- KEYS[11] received_order   zset: those fields by seq_r, to forget the oldest
-- ARGV[1]  sender           who sends
-- ARGV[2]  id               the message's server id (a ULID)
-- ARGV[3]  client_id        the sender's id for this send ('' for none: seed frames)
-- ARGV[4]  position         the message's place in the conversation (reserved by the caller)
-- ARGV[5]  max_len          entries an inbox, a history or a posts index keeps
-- ARGV[6]  offline_max      entries an offline list keeps
-- ARGV[7]  received_max     sends kept in `received`
-- ARGV[8]  received_ttl_s   how long `received` outlives the last send (s)
-- ARGV[9]  envelope         broker envelope header for published frames
-- ARGV[10] head             the delivered frame: the text before its sequence number
-- ARGV[11] tail             the text after it (unused for seed frames)
-- ARGV[12] typed            '1' when the frame takes a sequence number, '0' for seed frames
-- ARGV[13] history          the message as the history keeps it (JSON)
-- ARGV[14] to_self          '1' when the sender writes to themselves (nothing is unread)
-- ARGV[15] unread_head      the receiver's `unread` frame, cut where the count goes,
-- ARGV[16] unread_tail      with the sender's new count
-- ARGV[17] channel_r        the receiver's channel
-- ARGV[18] reply_pos        position of the message this one answers ('' for none)
--
-- Returns {receiver's seq, 1 if kept offline else 0, position, id, the
-- receiver's unread direct messages in all, the first send's history when
-- this one repeats it, else nil}.
local seq_r_key = KEYS[1]
local inbox_r_key = KEYS[2]
local offline_r_key = KEYS[3]
local unread_r_key = KEYS[4]
local conv_key = KEYS[5]
local posts_key = KEYS[6]
local presence_r_key = KEYS[7]
local msgs_key = KEYS[8]
local replies_key = KEYS[9]
local received_key = KEYS[10]
local received_order_key = KEYS[11]
local sender = ARGV[1]
local id = ARGV[2]
local client_id = ARGV[3]
local position = tonumber(ARGV[4])
local max_len = tonumber(ARGV[5])
local offline_max = tonumber(ARGV[6])
local received_max = tonumber(ARGV[7])
local received_ttl_s = ARGV[8]
local envelope = ARGV[9]
local head = ARGV[10]
local tail = ARGV[11]
local typed = ARGV[12]
local history = ARGV[13]
local to_self = ARGV[14]
local unread_head = ARGV[15]
local unread_tail = ARGV[16]
local channel_r = ARGV[17]
local reply_pos = ARGV[18]

-- Length-prefixed: user ids may hold spaces.
local send_key = #sender .. ':' .. sender .. ' ' .. client_id
if client_id ~= '' then
  local first = redis.call('HGET', received_key, send_key)
  if first then
    local seq_r, offline, pos, first_id, stored = string.match(first, '^(%d+) (%d) (%d+) (%S+) (.*)$')
    return {tonumber(seq_r), tonumber(offline), tonumber(pos), first_id, 0, stored}
  end
end

local seq_r = redis.call('INCR', seq_r_key)
local frame_r = head
if typed == '1' then frame_r = head .. seq_r .. tail end
add_entry(inbox_r_key, seq_r, frame_r, max_len)
local unread = -1
if to_self ~= '1' then unread = redis.call('HINCRBY', unread_r_key, sender, 1) end
add_to_copy(conv_key, posts_key, msgs_key, replies_key, position, id, history, reply_pos, max_len)
local online = live_total(presence_r_key, '') > 0
local offline = 0
if not online then
  offline = 1
  if redis.call('RPUSH', offline_r_key, seq_r .. ' ' .. frame_r) > offline_max then
    redis.call('LTRIM', offline_r_key, -offline_max, -1)
  end
end
redis.call('PUBLISH', channel_r, envelope .. frame_r)
if unread >= 0 then
  redis.call('PUBLISH', channel_r, envelope .. unread_head .. unread .. unread_tail)
end
redis.call('HSET', msgs_key, id, position .. ' ' .. seq_r .. ' 0 0 0')
if client_id ~= '' then
  redis.call('HSET', received_key, send_key,
    seq_r .. ' ' .. offline .. ' ' .. position .. ' ' .. id .. ' ' .. history)
  redis.call('ZADD', received_order_key, seq_r, send_key)
  if redis.call('ZCARD', received_order_key) > received_max then
    local oldest = redis.call('ZPOPMIN', received_order_key)
    redis.call('HDEL', received_key, oldest[1])
  end
  redis.call('EXPIRE', received_key, received_ttl_s)
  redis.call('EXPIRE', received_order_key, received_ttl_s)
end
local total = 0
for _, count in ipairs(redis.call('HVALS', unread_r_key)) do total = total + tonumber(count) end
return {seq_r, offline, position, id, total, false}
