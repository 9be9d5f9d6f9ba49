-- Save ladder states compare-and-set on each slot's rev, with the learner's cursor and checkpoints, fenced by its
-- lease.  KEYS = version, cursor, lease, then per slot its state key, history key and checkpoint key;
-- ARGV = lease holder ('' = no lease check), cursor ('' = leave it), history cap, slot count, then per slot:
-- expected rev, state JSON ('' = leave the state, and its rev unchecked), checkpoint JSON ('' = leave it),
-- number of history entries, the entries.  The version is bumped when a state was written.
-- Returns {1, version} when saved, {0, i...} with the (1-based) slots whose rev moved on, or {-1} when the
-- lease is not the caller's.
if ARGV[1] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[1] then return {-1} end
local n = tonumber(ARGV[4])
local conflicts = {0}
local at = 5
local plan = {}
local states = 0
for i = 1, n do
  if ARGV[at + 1] ~= '' then
    states = states + 1
    local rev = redis.call('HGET', KEYS[3 * i + 1], 'rev') or '0'
    if rev ~= ARGV[at] then table.insert(conflicts, i) end
  end
  local count = tonumber(ARGV[at + 3])
  plan[i] = {at, count}
  at = at + 4 + count
end
if #conflicts > 1 then return conflicts end
for i = 1, n do
  local base, count = plan[i][1], plan[i][2]
  local key, hkey, ckey = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  if ARGV[base + 1] ~= '' then redis.call('HSET', key, 'state', ARGV[base + 1], 'rev', tonumber(ARGV[base]) + 1) end
  if ARGV[2] ~= '' then redis.call('HSET', key, 'cursor', ARGV[2]) end
  if ARGV[base + 2] ~= '' then redis.call('SET', ckey, ARGV[base + 2]) end
  for j = 1, count do redis.call('LPUSH', hkey, ARGV[base + 3 + j]) end
  if count > 0 then redis.call('LTRIM', hkey, 0, tonumber(ARGV[3]) - 1) end
end
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end
if states == 0 then return {1, tonumber(redis.call('GET', KEYS[1]) or '0')} end
return {1, redis.call('INCR', KEYS[1])}
