-- Accept a reward while the event is pending and its window open.  KEYS: event hash, reward hash, due set, counts.
-- ARGV: event id, slot, kind, payload JSON, now, TTL seconds.  Returns 'accepted:<tier>', 'duplicate', 'late',
-- 'unknown_slot' or 'missing'.
local close = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not close then return 'missing' end
if tonumber(ARGV[5]) > tonumber(close) then return 'late' end
local slots = redis.call('HGET', KEYS[1], 's')
if not slots then return 'missing' end
local at = string.find(slots, '|' .. ARGV[2] .. '=', 1, true)
if not at then return 'unknown_slot' end
local tier_start = at + string.len(ARGV[2]) + 2
local tier = string.sub(slots, tier_start, string.find(slots, '|', tier_start, true) - 1)
local field = ARGV[2] .. '|' .. ARGV[3]
if ARGV[3] == 'reward' then
  redis.call('HSET', KEYS[2], field, ARGV[4])
elseif redis.call('HSETNX', KEYS[2], field, ARGV[4]) == 0 then
  return 'duplicate'
end
redis.call('HINCRBY', KEYS[2], '_v', 1)
redis.call('EXPIRE', KEYS[2], ARGV[6])
if ARGV[3] ~= 'activate' then redis.call('HINCRBY', KEYS[4], 'rewards:' .. ARGV[2], 1) end
return 'accepted:' .. tier
