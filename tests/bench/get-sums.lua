-- wrk script: GET /abacus/sums/{name} over named sums, the names in turn.
-- Usage: wrk -s tests/bench/get-sums.lua http://127.0.0.1:8001 -- <api-key> [N [PREFIX]]
-- (names PREFIX-0 .. PREFIX-(N-1); default 64 names "bench-sum-<i>": they
-- must exist, or the GETs are 404 sum-not-found)
--
-- The requests are built once in init(), as get.lua's single one is: a
-- request() that formatted each would cost wrk CPU its ceiling row does not pay.
local requests = {}
local counter = 0

function init(args)
  local key, n, name = args[1] or "local-dev-key", tonumber(args[2] or "64"), args[3] or "bench-sum"
  for i = 0, n - 1 do
    requests[#requests + 1] = wrk.format("GET", "/abacus/sums/" .. name .. "-" .. i, { ["X-API-Key"] = key })
  end
end

function request()
  counter = counter + 1
  return requests[counter % #requests + 1]
end
