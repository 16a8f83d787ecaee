-- append: stores a direct message and tells its receiver, in one atomic
-- step, so Redis never holds a counted-but-unstored or a
-- published-but-unstored message: the receiver's inbox (with the next
-- sequence number), the conversation's history, the unread count
-- (HINCRBY unread:{receiver} {sender} 1, the seed's shape), the offline
-- list when the receiver has no connection on a live node, then the
-- publishes; and, for typed sends, the sender's own inbox copy. A send the
-- sender already made (same client id) stores nothing and answers what the
-- first one stored.
--
-- KEYS[1]  seq_r         string: the receiver's last inbox sequence number
-- KEYS[2]  inbox_r       zset: "{seq} {frame}" scored by seq: the receiver's inbox
-- KEYS[3]  offline_r     list: "{seq} {frame}" kept while the receiver had no connection
-- KEYS[4]  unread_r      hash: sender -> unread count (unread:{receiver})
-- KEYS[5]  conv          zset: the conversation's history, JSON scored by position
-- KEYS[6]  conv_seq      string: the conversation's last position
-- KEYS[7]  posts         zset: id -> conversation position, of the sender's messages to the receiver
-- KEYS[8]  presence_r    hash: node id -> the receiver's connections there
-- KEYS[9]  seq_s         string: the sender's last inbox sequence number
-- KEYS[10] inbox_s       zset: the sender's inbox, like inbox_r
-- KEYS[11] sent          hash: client id -> "{seq_r} {seq_s} {offline} {history}" of the sender's sends
-- KEYS[12] sent_order    list: the sender's client ids, oldest first
-- KEYS[13] msgs          hash: message id -> "{position} {seq_r} {seq_s} {update seq_r} {update seq_s}"
-- KEYS[14] replies       zset: reply id -> position of the message it answers
-- KEYS[15] webhooks      stream: what goes out: webhook events, pushes, jobs (field e)
-- ARGV[1]  sender        who sends
-- ARGV[2]  id            the message's server id (a ULID)
-- ARGV[3]  client_id     the sender's id for this send ('' for none: seed frames)
-- ARGV[4]  max_len       entries an inbox, a history or a posts index keeps
-- ARGV[5]  offline_max   entries an offline list keeps
-- ARGV[6]  sent_max      client ids kept per sender
-- ARGV[7]  sent_ttl_s    how long a sender's client ids outlive their last send (s)
-- ARGV[8]  envelope      broker envelope header for published frames
-- ARGV[9]  head          the delivered frame: the text before its sequence number
-- ARGV[10] tail          the text after it (unused for seed frames)
-- ARGV[11] typed         '1' when the frame takes a sequence number, '0' for seed frames
-- ARGV[12] history       the message as the history keeps it (JSON)
-- ARGV[13] node_prefix   key prefix of every node's lease ("node:")
-- ARGV[14] copy          '1' to keep a copy in the sender's inbox and publish it
-- ARGV[15] to_self       '1' when the sender writes to themselves (nothing is unread)
-- ARGV[16] unread_head   the receiver's `unread` frame, cut where the count goes,
-- ARGV[17] unread_tail   with the sender's new count
-- ARGV[18] channel_r     the receiver's channel
-- ARGV[19] channel_s     the sender's channel
-- ARGV[20] reply_pos     position of the message this one answers ('' for none)
-- ARGV[21] events        '1' to queue a direct.message job when the receiver is offline
-- ARGV[22] receiver      who receives (named in the event)
--
-- Returns {receiver's seq, sender's seq (0 without a copy), 1 if kept
-- offline else 0, the first send's history when this one repeats it, else nil}.
local seq_r_key = KEYS[1]
local inbox_r_key = KEYS[2]
local offline_r_key = KEYS[3]
local unread_r_key = KEYS[4]
local conv_key = KEYS[5]
local conv_seq_key = KEYS[6]
local posts_key = KEYS[7]
local presence_r_key = KEYS[8]
local seq_s_key = KEYS[9]
local inbox_s_key = KEYS[10]
local sent_key = KEYS[11]
local sent_order_key = KEYS[12]
local msgs_key = KEYS[13]
local replies_key = KEYS[14]
local webhooks_key = KEYS[15]
local sender = ARGV[1]
local id = ARGV[2]
local client_id = ARGV[3]
local max_len = tonumber(ARGV[4])
local offline_max = tonumber(ARGV[5])
local sent_max = tonumber(ARGV[6])
local sent_ttl_s = ARGV[7]
local envelope = ARGV[8]
local head = ARGV[9]
local tail = ARGV[10]
local typed = ARGV[11]
local history = ARGV[12]
local node_prefix = ARGV[13]
local copy = ARGV[14]
local to_self = ARGV[15]
local unread_head = ARGV[16]
local unread_tail = ARGV[17]
local channel_r = ARGV[18]
local channel_s = ARGV[19]
local reply_pos = ARGV[20]
local events = ARGV[21]
local receiver = ARGV[22]

if client_id ~= '' then
  local first = redis.call('HGET', sent_key, client_id)
  if first then
    local seq_r, seq_s, offline, stored = string.match(first, '^(%d+) (%d+) (%d) (.*)$')
    return {tonumber(seq_r), tonumber(seq_s), tonumber(offline), stored}
  end
end

local function render(seq)
  if typed == '1' then return head .. seq .. tail end
  return head
end

local seq_r = redis.call('INCR', seq_r_key)
local frame_r = render(seq_r)
add_entry(inbox_r_key, seq_r, frame_r, max_len)
local unread = -1
if to_self ~= '1' then unread = redis.call('HINCRBY', unread_r_key, sender, 1) end
local position = redis.call('INCR', conv_seq_key)
add_entry(conv_key, position, history, max_len)
redis.call('ZADD', posts_key, position, id)
if reply_pos ~= '' then redis.call('ZADD', replies_key, reply_pos, id) end
-- (A posts index holds at most `position` ids; a writer that never trims
-- passes a max_len past any position, which Lua could not negate exactly.)
if position > max_len then
  local dropped = redis.call('ZRANGE', posts_key, 0, -(max_len + 1))
  if #dropped > 0 then
    redis.call('HDEL', msgs_key, unpack(dropped))
    redis.call('ZREMRANGEBYRANK', posts_key, 0, -(max_len + 1))
  end
  redis.call('ZREMRANGEBYSCORE', replies_key, '-inf', '(' .. (position - max_len + 1))
end
local online = live_total(presence_r_key, node_prefix) > 0
if not online then
  if redis.call('RPUSH', offline_r_key, seq_r .. ' ' .. frame_r) > offline_max then
    redis.call('LTRIM', offline_r_key, -offline_max, -1)
  end
end
redis.call('PUBLISH', channel_r, envelope .. frame_r)
if unread >= 0 then
  redis.call('PUBLISH', channel_r, envelope .. unread_head .. unread .. unread_tail)
end
if events == '1' and not online then
  -- A job for the queue's sender: the message.offline webhook and the
  -- pushes of a message kept for a receiver with no connection, with
  -- their unread direct messages in all (webhooks.rs, direct_message).
  local total = 0
  for _, count in ipairs(redis.call('HVALS', unread_r_key)) do total = total + tonumber(count) end
  redis.call('XADD', webhooks_key, '*', 'e', '{"type":"direct.message","data":{"user":'
    .. json_string(receiver) .. ',"unread":' .. total .. ',"message":' .. frame_r .. '}}')
end
local seq_s = 0
if copy == '1' then
  seq_s = redis.call('INCR', seq_s_key)
  local frame_s = render(seq_s)
  add_entry(inbox_s_key, seq_s, frame_s, max_len)
  redis.call('PUBLISH', channel_s, envelope .. frame_s)
end
redis.call('HSET', msgs_key, id, position .. ' ' .. seq_r .. ' ' .. seq_s .. ' 0 0')
local offline = 0
if not online then offline = 1 end
if client_id ~= '' then
  redis.call('HSET', sent_key, client_id, seq_r .. ' ' .. seq_s .. ' ' .. offline .. ' ' .. history)
  redis.call('RPUSH', sent_order_key, client_id)
  if redis.call('LLEN', sent_order_key) > sent_max then
    redis.call('HDEL', sent_key, redis.call('LPOP', sent_order_key))
  end
  redis.call('EXPIRE', sent_key, sent_ttl_s)
  redis.call('EXPIRE', sent_order_key, sent_ttl_s)
end
return {seq_r, seq_s, offline, false}
