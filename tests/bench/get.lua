-- wrk script: GET /abacus/sum with the API key.
-- Usage: wrk -s tests/bench/get.lua http://127.0.0.1:8001 -- <api-key>
local key = "local-dev-key"

function init(args)
  if args[1] then key = args[1] end
  wrk.method = "GET"
  wrk.path = "/abacus/sum"
  wrk.headers["X-API-Key"] = key
end
