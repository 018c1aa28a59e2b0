-- abacus:list
-- KEYS: names (the registry's sorted set), [rl].  ARGV: after ('' from the
-- first), limit, default_name.  Reply: "ok <remaining> <more> <name> ..."
-- (more: '1' when names follow the last one), or the limiter's refusal.
-- The names sort byte by byte; the default sum, never registered, is placed
-- among them.  The values are read by the caller, sum by sum (peek.lua):
-- in a Redis Cluster they live on other masters.
--@include limiter_budget.lua RL=KEYS[2]
local limit = tonumber(ARGV[2])
local from = ARGV[1] == '' and '-' or '(' .. ARGV[1]
local names = redis.call('ZRANGEBYLEX', KEYS[1], from, '+', 'LIMIT', '0', limit + 1)
if ARGV[3] > ARGV[1] then
  local at = #names + 1
  for i, name in ipairs(names) do
    if name > ARGV[3] then at = i break end
  end
  table.insert(names, at, ARGV[3])
end
local more = '0'
if #names > limit then
  more = '1'
  for i = #names, limit + 1, -1 do names[i] = nil end
end
local reply = 'ok ' .. left .. ' ' .. more .. (#names > 0 and (' ' .. table.concat(names, ' ')) or '')
--@include limiter_admit.lua RL=KEYS[2]
