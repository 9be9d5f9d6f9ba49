-- Take a hash's fields and delete it, in one step (no increment lands in between and is lost).
-- KEYS[1] the hash.  Returns its fields and values, flat.
local all = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
return all
