-- abacus:registry
-- KEYS: names (sorted set: every named sum that exists, for the listing and
-- the bound), tokens (hash: name -> the token of its latest registration),
-- seq (the last token given).
-- ARGV: 'add' name max | 'remove' name token | 'ghost' name grace_ms.
-- A sum is created only after its name is registered: 'add' gives the name
-- a new token, greater than every token before it (Redis's clock in ms, made
-- strictly increasing), and answers "ok <token>", or "full" when max names
-- exist (a name already registered is not counted again).  The sum keeps the
-- greatest token any of its creators brought (add.lua, set.lua), so it ends
-- up with the registry's own; its DELETE removes the name only when the
-- registry still holds the token the sum had.  So a creation racing a DELETE
-- of the same name, which registered anew, is never unregistered by it.
-- 'ghost' removes a name registered without a sum (a creation that failed
-- after registering) once its registration is older than grace_ms, longer
-- than any creation can take: nothing can still create the sum with it.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
if ARGV[1] == 'add' then
  local known = redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1
  if not known and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 'full' end
  local token = now_ms()
  local last = tonumber(redis.call('GET', KEYS[3]) or '0')
  if token <= last then token = last + 1 end
  token = string.format('%d', token)
  redis.call('SET', KEYS[3], token)
  if not known then redis.call('ZADD', KEYS[1], 0, ARGV[2]) end
  redis.call('HSET', KEYS[2], ARGV[2], token)
  return 'ok ' .. token
end
local token = redis.call('HGET', KEYS[2], ARGV[2])
if token and (ARGV[1] == 'remove' and token == ARGV[3] or
              ARGV[1] == 'ghost' and now_ms() - tonumber(token) > tonumber(ARGV[3])) then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[1], ARGV[2])
end
return 'ok'
