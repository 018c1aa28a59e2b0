-- abacus:set
-- KEYS: sum, {prefix}:op:<tok>, rl.  ARGV: value, tok, resend.  A resend
-- whose token is recorded was applied: it sets nothing again, before the
-- limiter; with WAITS it rewrites the token so that WAIT has a write to confirm.
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  if WAITS then redis.call('SET', KEYS[2], '1', 'KEEPTTL') end
  return 'ok -1 ' .. ARGV[1]
end
--@include limiter_budget.lua RL=KEYS[3]
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'EX', OP_TTL)
local reply = 'ok ' .. left .. ' ' .. ARGV[1]
--@include limiter_admit.lua RL=KEYS[3]
