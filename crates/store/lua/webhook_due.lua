-- webhook_due: takes up to `max` events for a consumer, in one step (no
-- other consumer takes them meanwhile): first the pending ones whose next
-- attempt has come (by the time each is scored with in `retry_at`: a
-- retry's, or the end of the lease of a sender that went quiet), then new
-- ones. Each taken event is scored `lease_ms` ahead: if its sender goes
-- quiet, another takes it then.
--
-- KEYS[1]  stream           the webhooks stream (field e: the event)
-- KEYS[2]  retry_at         zset: event id scored by the ms of its next attempt
-- ARGV[1]  group            the consumer group
-- ARGV[2]  consumer         this consumer
-- ARGV[3]  max              events at most
-- ARGV[4]  now              ms
-- ARGV[5]  lease_ms         how long a taken event is this consumer's
--
-- Returns {id, event, deliveries, ...}.
local stream_key = KEYS[1]
local retry_at_key = KEYS[2]
local group = ARGV[1]
local consumer = ARGV[2]
local max = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local lease_ms = tonumber(ARGV[5])

-- The group, made with the stream the first time.
local made = redis.pcall('XGROUP', 'CREATE', stream_key, group, '0', 'MKSTREAM')
if type(made) == 'table' and made.err and not string.find(made.err, 'BUSYGROUP') then
  return redis.error_reply(made.err)
end

local out = {}
local function take(id, fields, deliveries)
  table.insert(out, id)
  table.insert(out, field(fields, 'e') or '')
  table.insert(out, deliveries)
  redis.call('ZADD', retry_at_key, now + lease_ms, id)
end

-- Retries whose time has come, soonest first (however many others wait).
for _, id in ipairs(redis.call('ZRANGEBYSCORE', retry_at_key, '-inf', now, 'LIMIT', 0, max)) do
  local claimed = redis.call('XCLAIM', stream_key, group, consumer, 0, id)
  if claimed[1] and claimed[1][2] then
    local pending = redis.call('XPENDING', stream_key, group, id, id, 1)
    local deliveries = 1
    if pending[1] then deliveries = pending[1][4] end
    take(id, claimed[1][2], deliveries)
  else
    -- Gone from the stream meanwhile: nothing left to send.
    redis.call('XACK', stream_key, group, id)
    redis.call('ZREM', retry_at_key, id)
  end
end
if #out < max * 3 then
  local fresh = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', max - #out / 3,
    'STREAMS', stream_key, '>')
  if fresh and fresh[1] then
    for _, entry in ipairs(fresh[1][2]) do take(entry[1], entry[2], 1) end
  end
end
return out
