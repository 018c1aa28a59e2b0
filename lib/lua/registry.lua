-- abacus:registry
-- KEYS: names (sorted set: every named sum that exists, for the listing and
-- the bound), tokens (hash: name -> the token of its registration).
-- ARGV: 'add' name max token | 'remove' name token.
-- A sum is created only after its name is registered: 'add' answers the
-- registration's token ("ok <token>": the one already there, or ARGV token)
-- or "full" when max names exist.  The sum keeps the token beside it; its
-- DELETE removes the name only when the token is still the one it kept, so
-- a DELETE racing a new creation of the same name never unregisters the new
-- sum (lib/store.c, named sums).
if ARGV[1] == 'add' then
  local token = redis.call('HGET', KEYS[2], ARGV[2])
  if token then return 'ok ' .. token end
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 'full' end
  redis.call('ZADD', KEYS[1], 0, ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
  return 'ok ' .. ARGV[4]
end
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[3] then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[1], ARGV[2])
end
return 'ok'
