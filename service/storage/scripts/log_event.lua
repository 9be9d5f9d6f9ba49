-- Log one ranked page.  KEYS: event hash, due set, counts.  ARGV: event JSON, '|slot=tier|...|', TTL seconds,
-- window close time, event id, then one counter name per decision.
redis.call('HSET', KEYS[1], 'd', ARGV[1], 's', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
for i = 6, #ARGV do redis.call('HINCRBY', KEYS[3], ARGV[i], 1) end
return 1
