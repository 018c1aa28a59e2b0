-- abacus:ledger
-- KEYS: ledger, rl.  ARGV: after (an entry id, exclusive; '-' from the
-- oldest), count.  Reply: "ok <remaining> <json>" with json
-- {"entries":[...],"next":<the last id or null>}, or the limiter's refusal.
-- The JSON is built here: one string reply, as the other scripts (a table of
-- tables would cost hiredis an allocation per field).  n and sum are written
-- as they are stored (Redis's own integer rendering); the Idempotency-Key is
-- the only field a client chose (visible ASCII): its '"' and '\' are escaped.
--@include limiter_budget.lua RL=KEYS[2]
local from = ARGV[1] == '-' and '-' or '(' .. ARGV[1]
local rows = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', ARGV[2])
local out = {}
for i, row in ipairs(rows) do
  local f = {}
  local kv = row[2]
  for j = 1, #kv, 2 do f[kv[j]] = kv[j + 1] end
  local idem = f.idem and f.idem ~= '' and ('"' .. string.gsub(f.idem, '[\\"]', '\\%0') .. '"') or 'null'
  out[i] = '{"id":"' .. row[1] .. '","op":"' .. (f.op or '') .. '","number":' .. (f.n or 'null') ..
    ',"sum":' .. (f.sum or 'null') .. ',"key_id":"' .. (f.key or '') .. '","idempotency_key":' .. idem ..
    ',"request_id":"' .. (f.req or '') .. '"}'
end
local next_id = #rows > 0 and ('"' .. rows[#rows][1] .. '"') or 'null'
local reply = 'ok ' .. left .. ' {"entries":[' .. table.concat(out, ',') .. '],"next":' .. next_id .. '}'
--@include limiter_admit.lua RL=KEYS[2]
