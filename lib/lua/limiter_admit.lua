-- The limiter's second half, pasted after the operation: records the admitted
-- request in @RL@ (never replicated: a GET costs no fsync) and returns `reply`.
-- Two admissions in one microsecond (a clock stepped back) get a suffix, so
-- every admission is counted.  Entries older than the window are trimmed
-- when the set is full, so a caller never holds more than MAX entries
-- (the budget half admitted this request: fewer than MAX are in the window).
if now then
  redis.set_repl(redis.REPL_NONE)
  if redis.call('ZCARD', @RL@) >= MAX then
    redis.call('ZREMRANGEBYSCORE', @RL@, '-inf', string.format('%d', now - WINDOW_US))
  end
  local at = string.format('%d', now)
  local member, n = at, 0
  while redis.call('ZADD', @RL@, at, member) == 0 do
    n = n + 1
    member = at .. ':' .. n
  end
  redis.call('PEXPIRE', @RL@, WINDOW_MS)
end
return reply
