-- webhook_replace: a job taken from the queue is replaced by what it made,
-- in one step: only while the job is still pending (a sender whose lease
-- ran out while it worked finds it taken and done by another, and queues
-- nothing), so what a job makes is queued once.
--
-- KEYS[1]  stream           the webhooks stream (field e: the item)
-- KEYS[2]  retry_at         zset: item id scored by the ms of its next attempt
-- ARGV[1]  group            the consumer group
-- ARGV[2]  id               the job
-- ARGV[3]  items            JSON array of the items (strings) to queue
--
-- Returns 1 when replaced, 0 when the job was no longer pending.
local stream_key = KEYS[1]
local retry_at_key = KEYS[2]
local group = ARGV[1]
local id = ARGV[2]
local items = cjson.decode(ARGV[3])

if redis.call('XACK', stream_key, group, id) == 0 then
  return 0
end
redis.call('XDEL', stream_key, id)
redis.call('ZREM', retry_at_key, id)
for _, item in ipairs(items) do
  redis.call('XADD', stream_key, '*', 'e', item)
end
return 1
