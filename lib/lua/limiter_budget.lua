-- The limiter's first half, pasted (at build time) into each script before its
-- operation: a sliding-window log of admissions in the sorted set @RL@ (lib/ratelimit.h).
-- Leaves `now` (nil with the limiter off) and `left` (the budget after this
-- request, as text; '-1' with the limiter off), or returns the refusal.
-- @RL@ is the script's last key: a call without it (a named sum in a Redis
-- Cluster, whose limiter ran on the caller's own slot first: lib/store.c)
-- runs without the limiter.
local now, left = nil, '-1'
if MAX > 0 and @RL@ then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local since = string.format('(%d', now - WINDOW_US)
  local count = redis.call('ZCOUNT', @RL@, since, '+inf')
  if count >= MAX then
    local oldest = redis.call('ZRANGEBYSCORE', @RL@, since, '+inf', 'WITHSCORES', 'LIMIT', '0', '1')
    local newest = redis.call('ZRANGE', @RL@, '-1', '-1', 'WITHSCORES')
    return string.format('limited %d %d', tonumber(newest[2]) + WINDOW_US - now, tonumber(oldest[2]) + WINDOW_US - now)
  end
  left = string.format('%d', MAX - count - 1)
end
