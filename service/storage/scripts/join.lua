-- Append an event's joined records and retire it, only if no reward landed since it was read.
-- KEYS: event hash, reward hash, due set, joined stream, counts.  ARGV: event id, reward version seen, stream
-- max length, record count n, the n records, then counter names.  Returns 1 joined, 0 already joined, -1 changed.
if redis.call('ZSCORE', KEYS[3], ARGV[1]) == false then return 0 end
local v = redis.call('HGET', KEYS[2], '_v') or '0'
if v ~= ARGV[2] then return -1 end
redis.call('ZREM', KEYS[3], ARGV[1])
local n = tonumber(ARGV[4])
for i = 5, 4 + n do
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'r', ARGV[i])
end
for i = 5 + n, #ARGV do redis.call('HINCRBY', KEYS[5], ARGV[i], 1) end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
