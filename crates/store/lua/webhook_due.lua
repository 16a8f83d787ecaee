-- webhook_due: takes up to `max` events for a consumer, in one step (no
-- other consumer takes them meanwhile): first the ones whose next attempt
-- has come (pending in the group, their time in the retry hash passed, or
-- none kept: a consumer that took them went away), then new ones. Each
-- taken event's next attempt is set `lease_ms` ahead: if its sender goes
-- quiet, another takes it then.
--
-- KEYS[1]  stream           the webhooks stream (field e: the event)
-- KEYS[2]  retry_at         hash: event id -> ms of its next attempt
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
  redis.call('HSET', retry_at_key, id, now + lease_ms)
end

-- Retries: looked for among the oldest pending, a few times `max` of them.
local pending = redis.call('XPENDING', stream_key, group, '-', '+', max * 4)
for _, p in ipairs(pending) do
  if #out >= max * 3 then break end
  local id, deliveries = p[1], p[4]
  local at = redis.call('HGET', retry_at_key, id)
  if not at or tonumber(at) <= now then
    local claimed = redis.call('XCLAIM', stream_key, group, consumer, 0, id)
    if claimed[1] and claimed[1][2] then
      take(id, claimed[1][2], deliveries + 1)
    else
      -- Deleted meanwhile: nothing left to send.
      redis.call('XACK', stream_key, group, id)
      redis.call('HDEL', retry_at_key, id)
    end
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
