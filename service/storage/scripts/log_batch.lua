-- Log a batch of ranked pages in one call.
-- KEYS: due set, counts, then d deflate dictionaries (zdict:<id>), then one event hash per page.
-- ARGV: d, then for each dictionary its bytes and TTL seconds, then for each page, in KEYS order: the packed
-- event, '|slot=tier|...|', TTL seconds, join time (due score), event id, the number of counters c, then c
-- counter names.  A dictionary travels with the first batch that needs it, so it is stored (and persisted)
-- before any page packed against it.  A page already stored (a spool replayed twice) is left as it is:
-- logged once, joined once.  Returns the number of pages stored.
local d = tonumber(ARGV[1])
local at = 2
for k = 3, 2 + d do
  redis.call('SET', KEYS[k], ARGV[at], 'EX', ARGV[at + 1])
  at = at + 2
end
local stored = 0
for k = 3 + d, #KEYS do
  local c = tonumber(ARGV[at + 5])
  if redis.call('EXISTS', KEYS[k]) == 0 then
    redis.call('HSET', KEYS[k], 'd', ARGV[at], 's', ARGV[at + 1])
    redis.call('EXPIRE', KEYS[k], ARGV[at + 2])
    redis.call('ZADD', KEYS[1], ARGV[at + 3], ARGV[at + 4])
    for i = at + 6, at + 5 + c do redis.call('HINCRBY', KEYS[2], ARGV[i], 1) end
    stored = stored + 1
  end
  at = at + 6 + c
end
return stored
