-- The ledger's append, pasted into each changing script right after its
-- change: one entry per applied change in the stream @LEDGER@, written by the
-- script that applies the change (no change without its entry, no entry
-- without its change, one round trip).  Replays and refusals return before.
-- The entry's id is Redis's clock (ms-seq); entries older than the retention
-- (LEDGER_MS) are trimmed by the same XADD (MINID ~: whole stream nodes, so
-- cheaply).  Fields: op, n (the number), sum (after), key (API key id, '-'
-- without auth), idem (the Idempotency-Key, '' without one), req (request id);
-- a set's or reset's also was (the sum before it: the audit checks the chain
-- across it).
-- A script's writes are not undone when a later command fails, so the XADD is
-- a pcall: should it fail (only someone writing another type at the stream's
-- key can make it), `ledger_err` holds the error and the script undoes its
-- change and returns it: nothing applied, nothing recorded.
local ledger_err
if LEDGER_MS > 0 then
  local ms
  if now then
    ms = math.floor(now / 1000)
  else
    local t = redis.call('TIME')
    ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  local added = redis.pcall('XADD', @LEDGER@, 'MINID', '~', string.format('%d', ms - LEDGER_MS), '*',
    'op', @OP@, 'n', @N@, 'sum', @SUM@, 'key', @KEY@, 'idem', @IDEM@, 'req', @REQ@@EXTRA@)
  if type(added) == 'table' then ledger_err = added end
end
