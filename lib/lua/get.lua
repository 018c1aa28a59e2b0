-- abacus:get
-- KEYS: sum, rl.  Reply: "ok <remaining> <sum>" or "notint <remaining>".
--@include limiter_budget.lua RL=KEYS[2]
local v = redis.pcall('GET', KEYS[1])
local reply
if type(v) == 'table' then reply = 'notint ' .. left else reply = 'ok ' .. left .. ' ' .. (v or '0') end
--@include limiter_admit.lua RL=KEYS[2]
