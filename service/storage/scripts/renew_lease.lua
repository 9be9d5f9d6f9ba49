-- Take the lease, or renew it for its holder.  KEYS: lease.  ARGV: holder, TTL ms.  Returns 1 held, 0 another's.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if holder then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
