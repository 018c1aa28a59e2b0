-- abacus:set
-- KEYS: sum, <tag>:op:<tok>, ledger, reg, [rl].  ARGV: value, tok, resend,
-- op ('set', 'reset' or 'delete': the ledger's), key id, request id,
-- registration (as add.lua's).  'delete' removes a named sum and its
-- registration token, and answers "deleted <remaining> <token>" (the caller
-- unregisters the name with it) or "missing <remaining>".  A resend whose
-- token is recorded was applied: it sets nothing again, before the limiter;
-- with WAITS it rewrites the token so that WAIT has a write to confirm.
local deleting = ARGV[4] == 'delete'
if ARGV[3] == '1' then
  local done = redis.call('GET', KEYS[2])
  if done then
    if WAITS then redis.call('SET', KEYS[2], done, 'KEEPTTL') end
    return deleting and ('deleted -1 ' .. done) or ('ok -1 ' .. ARGV[1])
  end
end
--@include limiter_budget.lua RL=KEYS[5]
-- The value before: the entry's "was", and put back should the ledger refuse it.
local old = (LEDGER_MS > 0 or ARGV[7] ~= '') and redis.pcall('GET', KEYS[1])
local was = type(old) == 'string' and old or (old and '' or '0')
local token = ARGV[7] ~= '' and redis.call('GET', KEYS[4])
local reply
if deleting then
  if not old then
    reply = 'missing ' .. left
  else
    redis.call('DEL', KEYS[1], KEYS[4])
    redis.call('SET', KEYS[2], token or '-', 'EX', OP_TTL)
    reply = 'deleted ' .. left .. ' ' .. (token or '-')
  end
else
  if ARGV[7] == '-' and not old then return 'unregistered ' .. left end
  if ARGV[7] ~= '' and ARGV[7] ~= '-' then
    -- Created (or another creator came first: the greatest token stays; lib/lua/registry.lua).
    if not token or tonumber(token) < tonumber(ARGV[7]) then redis.call('SET', KEYS[4], ARGV[7]) end
    if not old then redis.call('PERSIST', KEYS[3]) end
  end
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('SET', KEYS[2], '1', 'EX', OP_TTL)
  reply = 'ok ' .. left .. ' ' .. ARGV[1]
end
if old or not deleting then
--@include ledger_append.lua LEDGER=KEYS[3] OP=ARGV[4] N=ARGV[1] SUM=ARGV[1] KEY=ARGV[5] IDEM='' REQ=ARGV[6] EXTRA=,'was',was
  if ledger_err then
    if type(old) == 'string' then redis.call('SET', KEYS[1], old) else redis.call('DEL', KEYS[1]) end
    if token then redis.call('SET', KEYS[4], token) elseif ARGV[7] ~= '' then redis.call('DEL', KEYS[4]) end
    redis.call('DEL', KEYS[2])
    return ledger_err
  end
end
-- A deleted sum's ledger outlives it by the retention, then goes (nothing appends to trim it).
if deleting and old and LEDGER_MS > 0 then redis.call('PEXPIRE', KEYS[3], string.format('%d', LEDGER_MS)) end
--@include limiter_admit.lua RL=KEYS[5]
