-- abacus:add
-- KEYS: sum, idem (or, without a key, <tag>:op:<tok>), ledger, reg, [rl].
-- ARGV: delta, use_idem ('1' or '0'), tok, resend ('1' or '0'), key id,
-- request id, Idempotency-Key ('' without one), registration ('' for the
-- default sum; for a named sum '-' when its name is not registered yet, or
-- the registration's token).
-- The record is "<delta> <sum after> <tok>"; a replay returns that sum, a
-- resend that finds its own token answers ok before the limiter (lib/store.h:
-- resends).  A named sum that does not exist is created only with a
-- registration: without one the answer is "unregistered" and nothing is
-- written (lib/store.c registers the name and calls again).  The sum never
-- passes through a Lua number (SPEC 3).
local use_idem = ARGV[2] == '1'
local rec = (use_idem or ARGV[4] == '1') and redis.call('GET', KEYS[2])
local sp = rec and string.find(rec, ' ', 1, true)
local same = sp and string.sub(rec, 1, sp - 1) == ARGV[1]
local sp2 = same and string.find(rec, ' ', sp + 1, true)
if sp2 and string.sub(rec, sp2 + 1) == ARGV[3] then
  if WAITS then redis.call('SET', KEYS[2], rec, 'KEEPTTL') end
  return 'ok -1 ' .. string.sub(rec, sp + 1, sp2 - 1)
end
--@include limiter_budget.lua RL=KEYS[5]
local reply
local created = false
if not rec and ARGV[8] ~= '' then
  if redis.call('EXISTS', KEYS[1]) == 0 then
    if ARGV[8] == '-' then return 'unregistered ' .. left end
    -- Created: with its registration's token, and its ledger kept again (a DELETE set it to expire).
    redis.call('SET', KEYS[4], ARGV[8])
    redis.call('PERSIST', KEYS[3])
    created = true
  elseif ARGV[8] ~= '-' then
    -- Another creator came first: the sum keeps the greatest token (lib/lua/registry.lua).
    local had = redis.call('GET', KEYS[4])
    if not had or tonumber(had) < tonumber(ARGV[8]) then redis.call('SET', KEYS[4], ARGV[8]) end
  end
end
if rec then
  if same then
    if WAITS then redis.call('SET', KEYS[2], rec, 'KEEPTTL') end
    reply = 'replay ' .. left .. ' ' .. string.sub(rec, sp + 1, sp2 and sp2 - 1 or -1)
  else
    reply = 'conflict ' .. left
  end
else
  local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])
  if type(r) == 'table' then
    if created then redis.call('DEL', KEYS[4]) end
    if string.find(r.err, 'overflow', 1, true) then
      reply = 'overflow ' .. left
    elseif string.find(r.err, 'not an integer', 1, true) or string.find(r.err, 'WRONGTYPE', 1, true) then
      reply = 'notint ' .. left
    else
      return r
    end
  else
    local s = redis.call('GET', KEYS[1])
    redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. s .. ' ' .. ARGV[3], 'EX', use_idem and TTL or OP_TTL)
--@include ledger_append.lua LEDGER=KEYS[3] OP='add' N=ARGV[1] SUM=s KEY=ARGV[5] IDEM=ARGV[7] REQ=ARGV[6] EXTRA=
    if ledger_err then
      if created then
        redis.call('DEL', KEYS[1], KEYS[4])
      -- Undone exactly (DECRBY cannot take -2^63: add 2^63 - 1, then 1).
      elseif type(redis.pcall('DECRBY', KEYS[1], ARGV[1])) == 'table' then
        redis.call('INCRBY', KEYS[1], '9223372036854775807')
        redis.call('INCRBY', KEYS[1], '1')
      end
      redis.call('DEL', KEYS[2])
      return ledger_err
    end
    reply = 'ok ' .. left .. ' ' .. s
  end
end
--@include limiter_admit.lua RL=KEYS[5]
