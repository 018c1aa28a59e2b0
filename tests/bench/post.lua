-- wrk script: POST /abacus/number with a fresh Idempotency-Key per request.
-- Usage: wrk -s tests/bench/post.lua http://127.0.0.1:8001 -- <api-key>
local counter = 0
local key = "local-dev-key"
local prefix

function init(args)
  if args[1] then key = args[1] end
  prefix = string.format("%d-%d-", os.time(), math.random(1, 1e9))
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/abacus/number", {
    ["X-API-Key"] = key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = prefix .. counter,
  }, '{"number": 1}')
end
