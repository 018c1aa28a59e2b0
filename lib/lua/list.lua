-- abacus:list
-- KEYS: names (the registry's sorted set), [rl].  ARGV: after ('' from the
-- first), count.  Reply: "ok <remaining> <name> ..." (up to count names
-- after `after`, in byte order: ZRANGEBYLEX's), or the limiter's refusal.
-- The default sum, never registered, is placed among them by lib/store.c
-- (a byte comparison: Lua's string comparison follows Redis's locale), and
-- the values are read there sum by sum (peek.lua): in a Redis Cluster they
-- live on other masters.
--@include limiter_budget.lua RL=KEYS[2]
local from = ARGV[1] == '' and '-' or '(' .. ARGV[1]
local names = redis.call('ZRANGEBYLEX', KEYS[1], from, '+', 'LIMIT', '0', ARGV[2])
local reply = 'ok ' .. left .. (#names > 0 and (' ' .. table.concat(names, ' ')) or '')
--@include limiter_admit.lua RL=KEYS[2]
