-- Take fields of a hash and delete them, in one step (no increment lands in between and is lost).
-- KEYS[1] the hash; ARGV the fields (none: every field).  Returns the fields taken and their values, flat.
if #ARGV == 0 then
  local all = redis.call('HGETALL', KEYS[1])
  redis.call('DEL', KEYS[1])
  return all
end
local out = {}
local values = redis.call('HMGET', KEYS[1], unpack(ARGV))
for i, field in ipairs(ARGV) do
  if values[i] then
    table.insert(out, field)
    table.insert(out, values[i])
  end
end
redis.call('HDEL', KEYS[1], unpack(ARGV))
return out
