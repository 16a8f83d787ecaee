-- take_offline: hands over, once, the entries kept while the user had no
-- connection.
--
-- KEYS[1]  offline   list: "{seq} {frame}", oldest first
--
-- Returns the entries.
local offline_key = KEYS[1]

local items = redis.call('LRANGE', offline_key, 0, -1)
redis.call('DEL', offline_key)
return items
