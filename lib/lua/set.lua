-- abacus:set
-- KEYS: sum, {prefix}:op:<tok>, rl, ledger.  ARGV: value, tok, resend,
-- op ('set' or 'reset': the ledger's), key id, request id.  A resend
-- whose token is recorded was applied: it sets nothing again, before the
-- limiter; with WAITS it rewrites the token so that WAIT has a write to confirm.
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  if WAITS then redis.call('SET', KEYS[2], '1', 'KEEPTTL') end
  return 'ok -1 ' .. ARGV[1]
end
--@include limiter_budget.lua RL=KEYS[3]
-- The value before: the entry's "was", and put back should the ledger refuse it.
local old = LEDGER_MS > 0 and redis.pcall('GET', KEYS[1])
local was = type(old) == 'string' and old or (old and '' or '0')
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'EX', OP_TTL)
--@include ledger_append.lua LEDGER=KEYS[4] OP=ARGV[4] N=ARGV[1] SUM=ARGV[1] KEY=ARGV[5] IDEM='' REQ=ARGV[6] EXTRA=,'was',was
if ledger_err then
  if type(old) == 'string' then redis.call('SET', KEYS[1], old) else redis.call('DEL', KEYS[1]) end
  redis.call('DEL', KEYS[2])
  return ledger_err
end
local reply = 'ok ' .. left .. ' ' .. ARGV[1]
--@include limiter_admit.lua RL=KEYS[3]
