-- Take the lease, or renew it for its holder.  KEYS: lease.  ARGV: holder, TTL ms, '1' to renew only (never take a
-- free lease).  Returns 1 renewed (the caller held it), 2 taken (it was free), 0 held by another (or free, when
-- renewing only).
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if holder or ARGV[3] == '1' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
