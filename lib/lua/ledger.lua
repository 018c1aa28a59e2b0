-- abacus:ledger
-- KEYS: ledger, sum, [rl].  ARGV: after (an entry id, exclusive; '-' from the
-- oldest), count, named ('1': a named sum, which may not exist: "missing
-- <remaining>" when neither it nor its ledger does).  Reply: "ok <remaining> <json>" with json
-- {"entries":[...],"next":<the page's last id or null>,"sum":<the sum now>,
--  "last":<the newest entry's id now, or null>}, or the limiter's refusal.
-- sum and last are read with the page, atomically: the entry `last` has the
-- sum `sum` (what tools/abacus-audit checks, while the service keeps writing).
-- The JSON is built here: one string reply, as the other scripts (a table of
-- tables would cost hiredis an allocation per field).  n, sum and was are
-- written as they are stored when they are Redis's integer rendering (null
-- otherwise: only a hand-made entry can hold anything else); the
-- Idempotency-Key is the only field a client chose (visible ASCII): its '"'
-- and '\' are escaped.
--@include limiter_budget.lua RL=KEYS[3]
local function int(v) return v and string.match(v, '^%-?%d+$') or 'null' end
local rows = {}
local reply
if ARGV[3] == '1' and redis.call('EXISTS', KEYS[1], KEYS[2]) == 0 then
  reply = 'missing ' .. left
else
  -- Nothing can follow the greatest id (and Redis refuses to start after it).
  if ARGV[1] ~= '18446744073709551615-18446744073709551615' then
    local from = ARGV[1] == '-' and '-' or '(' .. ARGV[1]
    rows = redis.call('XRANGE', KEYS[1], from, '+', 'COUNT', ARGV[2])
  end
  local out = {}
  for i, row in ipairs(rows) do
    local f = {}
    local kv = row[2]
    for j = 1, #kv, 2 do f[kv[j]] = kv[j + 1] end
    local idem = f.idem and f.idem ~= '' and ('"' .. string.gsub(f.idem, '[\\"]', '\\%0') .. '"') or 'null'
    out[i] = '{"id":"' .. row[1] .. '","op":"' .. string.gsub(f.op or '', '[^%a]', '') .. '","number":' .. int(f.n) ..
      ',"sum":' .. int(f.sum) .. (f.was and (',"was":' .. int(f.was)) or '') ..
      ',"key_id":"' .. string.gsub(f.key or '', '[^%w%-]', '') .. '","idempotency_key":' .. idem ..
      ',"request_id":"' .. string.gsub(f.req or '', '[^%w%.:_%-]', '') .. '"}'
  end
  local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', '1')
  local current = redis.pcall('GET', KEYS[2])
  reply = 'ok ' .. left .. ' {"entries":[' .. table.concat(out, ',') .. '],"next":' ..
    (#rows > 0 and ('"' .. rows[#rows][1] .. '"') or 'null') ..
    ',"sum":' .. (type(current) == 'string' and int(current) or (current and 'null' or '0')) ..
    ',"last":' .. (#newest > 0 and ('"' .. newest[1][1] .. '"') or 'null') .. '}'
end
--@include limiter_admit.lua RL=KEYS[3]
