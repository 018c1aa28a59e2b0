-- abacus:get
-- KEYS: sum, [rl].  ARGV: named ('1': a named sum, which may not exist).
-- Reply: "ok <remaining> <sum>", "notint <remaining>", or for a named sum
-- that does not exist "missing <remaining>" (the default sum reads 0).
--@include limiter_budget.lua RL=KEYS[2]
local v = redis.pcall('GET', KEYS[1])
local reply
if type(v) == 'table' then
  reply = 'notint ' .. left
elseif v then
  reply = 'ok ' .. left .. ' ' .. v
else
  reply = ARGV[1] == '1' and ('missing ' .. left) or ('ok ' .. left .. ' 0')
end
--@include limiter_admit.lua RL=KEYS[2]
