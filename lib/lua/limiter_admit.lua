-- The limiter's second half, pasted after the operation: records the admitted
-- request in @RL@ (never replicated: a GET costs no fsync) and returns `reply`.
-- Two admissions in one microsecond (a clock stepped back) get a suffix, so
-- every admission is counted; every ~16th trims entries older than the window.
if now then
  redis.set_repl(redis.REPL_NONE)
  if now % 16 == 0 then
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
