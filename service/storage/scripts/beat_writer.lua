-- An API worker's heartbeat: what it says is in Redis (its clock), and when it said it (Redis's clock).
-- KEYS[1] writers hash; ARGV[1] worker id; ARGV[2] clean-through time (seconds, the worker's clock)
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
return 1
