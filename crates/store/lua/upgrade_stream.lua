-- upgrade_stream: turns one inbox or conversation history that an older
-- version kept as a stream into the sorted set this version keeps, in one
-- step (nothing can read it half converted). A key that is no stream (new,
-- or converted already) is left alone, so running it twice is harmless.
--
--   inbox: stream ids 0-{seq}, field f (the frame)  -> "{seq} {frame}" by seq
--   conv:  stream of field m (the message as JSON), its entries the last
--          of conv_seq's positions, in order         -> "{position} {JSON}" by position,
--          and each message's record in msgs (its position; inbox seqs
--          unknown yet: 0)
--
-- KEYS[1]  stream           the key to convert
-- KEYS[2]  conv_seq         string: the conversation's last position (conv only)
-- KEYS[3]  msgs             hash: message id -> "{position} {seq_r} {seq_s} {update seq_r} {update seq_s}" (conv only)
-- ARGV[1]  kind             'inbox' or 'conv'
--
-- Returns {entries converted} (an empty table when the key was no stream;
-- the inboxes' records are filled in afterwards, from every inbox).
local stream_key = KEYS[1]
local conv_seq_key = KEYS[2]
local msgs_key = KEYS[3]
local kind = ARGV[1]

if redis.call('TYPE', stream_key)['ok'] ~= 'stream' then return {} end
local entries = redis.call('XRANGE', stream_key, '-', '+')
redis.call('DEL', stream_key)

local out = {#entries}
if kind == 'inbox' then
  for _, entry in ipairs(entries) do
    local seq = tonumber(string.match(entry[1], '^0%-(%d+)$'))
    local frame = field(entry[2], 'f')
    if seq and frame then
      redis.call('ZADD', stream_key, seq, seq .. ' ' .. frame)
    end
  end
else
  -- Positions were given one per message, so the entries kept are the
  -- last #entries positions, in order.
  local last = tonumber(redis.call('GET', conv_seq_key) or #entries)
  local first = last - #entries + 1
  for i, entry in ipairs(entries) do
    local position = first + i - 1
    local message = field(entry[2], 'm')
    if message then
      redis.call('ZADD', stream_key, position, position .. ' ' .. message)
      local ok, decoded = pcall(cjson.decode, message)
      if ok and type(decoded) == 'table' and type(decoded['id']) == 'string' then
        redis.call('HSETNX', msgs_key, decoded['id'], position .. ' 0 0 0 0')
      end
    end
  end
end
return out
