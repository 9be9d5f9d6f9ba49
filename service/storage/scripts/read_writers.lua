-- The writers' heartbeats with the time now by the clock that stamped them (this node's, as beat_writer's).
-- KEYS[1] writers hash.  Returns {seconds, microseconds, field, value, ...}.
local t = redis.call('TIME')
local out = {t[1], t[2]}
for _, v in ipairs(redis.call('HGETALL', KEYS[1])) do table.insert(out, v) end
return out
