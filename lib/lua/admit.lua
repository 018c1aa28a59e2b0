-- abacus:admit
-- KEYS: rl.  The limiter alone: in a Redis Cluster a named sum's keys and
-- the caller's limiter live in different slots, so with one budget per
-- caller (ABACUS_RATE_LIMIT_SCOPE=caller) the limiter runs first, here, and
-- the sum's script without it (docs/OPERATIONS.md, Cluster).
-- Reply: "ok <remaining>" or the limiter's refusal.
--@include limiter_budget.lua RL=KEYS[1]
local reply = 'ok ' .. left
--@include limiter_admit.lua RL=KEYS[1]
