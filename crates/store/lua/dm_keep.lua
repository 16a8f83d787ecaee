-- dm_keep: the sender's side of a direct message on a Redis Cluster, in
-- the sender's slot, after dm_receive took the receiver's: the sender's
-- copy of the conversation at the same position, their inbox copy (with
-- their next sequence number) published to their channel, and last the
-- sent record that answers a repeated client id. Idempotent by message
-- id: a retry finds what was written and completes the rest. For a note
-- to oneself both steps name the same keys, and this one writes only the
-- sent record.
--
-- KEYS[1]  seq_s            string: the sender's last inbox sequence number
-- KEYS[2]  inbox_s          zset: "{seq} {frame}" scored by seq: the sender's inbox
-- KEYS[3]  conv             zset: the sender's copy of the conversation, JSON scored by position
-- KEYS[4]  posts            zset: id -> position, of the sender's messages to the receiver
-- KEYS[5]  msgs             hash: message id -> "{position} {seq_r} {seq_s} 0 0" (the sender's copy)
-- KEYS[6]  replies          zset: reply id -> position of the message it answers
-- KEYS[7]  sent             hash: client id -> "{seq_r} {seq_s} {offline} {history}" of the sender's sends
-- KEYS[8]  sent_order       list: the sender's client ids, oldest first
-- ARGV[1]  id               the message's server id
-- ARGV[2]  client_id        the sender's id for this send ('' for none)
-- ARGV[3]  position         the message's place in the conversation
-- ARGV[4]  seq_r            its seq in the receiver's inbox
-- ARGV[5]  offline          '1' when it was kept offline for the receiver
-- ARGV[6]  max_len          entries an inbox, a history or a posts index keeps
-- ARGV[7]  sent_max         client ids kept per sender
-- ARGV[8]  sent_ttl_s       how long a sender's client ids outlive their last send (s)
-- ARGV[9]  envelope         broker envelope header for the published frame
-- ARGV[10] head             the sender's frame: the text before its sequence number
-- ARGV[11] tail             and after it
-- ARGV[12] history          the message as the history keeps it (JSON)
-- ARGV[13] copy             '1' to keep a copy in the sender's inbox and publish it
-- ARGV[14] channel_s        the sender's channel
-- ARGV[15] reply_pos        position of the message this one answers ('' for none)
-- ARGV[16] typed            '1' when the frame takes a sequence number, '0' for seed frames
--
-- Returns the sender's seq (0 without a copy).
local seq_s_key = KEYS[1]
local inbox_s_key = KEYS[2]
local conv_key = KEYS[3]
local posts_key = KEYS[4]
local msgs_key = KEYS[5]
local replies_key = KEYS[6]
local sent_key = KEYS[7]
local sent_order_key = KEYS[8]
local id = ARGV[1]
local client_id = ARGV[2]
local position = tonumber(ARGV[3])
local seq_r = ARGV[4]
local offline = ARGV[5]
local max_len = tonumber(ARGV[6])
local sent_max = tonumber(ARGV[7])
local sent_ttl_s = ARGV[8]
local envelope = ARGV[9]
local head = ARGV[10]
local tail = ARGV[11]
local history = ARGV[12]
local copy = ARGV[13]
local channel_s = ARGV[14]
local reply_pos = ARGV[15]
local typed = ARGV[16]

local seq_s = 0
local kept = redis.call('HGET', msgs_key, id)
if kept then
  seq_s = tonumber(string.match(kept, '^%d+ %d+ (%d+)') or '0')
else
  add_to_copy(conv_key, posts_key, msgs_key, replies_key, position, id, history, reply_pos, max_len)
end
if copy == '1' and seq_s == 0 then
  seq_s = redis.call('INCR', seq_s_key)
  local frame_s = head
  if typed == '1' then frame_s = head .. seq_s .. tail end
  add_entry(inbox_s_key, seq_s, frame_s, max_len)
  redis.call('PUBLISH', channel_s, envelope .. frame_s)
end
redis.call('HSET', msgs_key, id, position .. ' ' .. seq_r .. ' ' .. seq_s .. ' 0 0')
if client_id ~= '' and redis.call('HEXISTS', sent_key, client_id) == 0 then
  redis.call('HSET', sent_key, client_id, seq_r .. ' ' .. seq_s .. ' ' .. offline .. ' ' .. history)
  redis.call('RPUSH', sent_order_key, client_id)
  if redis.call('LLEN', sent_order_key) > sent_max then
    redis.call('HDEL', sent_key, redis.call('LPOP', sent_order_key))
  end
  redis.call('EXPIRE', sent_key, sent_ttl_s)
  redis.call('EXPIRE', sent_order_key, sent_ttl_s)
end
return seq_s
