-- wrk script: POST /abacus/sums/{name}/number over named sums, a fresh
-- Idempotency-Key per request, the names in turn.
-- Usage: wrk -s tests/bench/post-sums.lua http://127.0.0.1:8001 -- <api-key>[,<api-key>...] [N [PREFIX]]
-- (names PREFIX-0 .. PREFIX-(N-1); default 64 names "bench-sum-<i>")
--
-- The key is "<time>-<pid>-<thread>-<counter>", as in post.lua: unique across
-- the wrk processes and threads of one run, so no POST is a replay (a replay
-- writes nothing and is cheaper).  Keys are scoped per sum anyway.
local counter = 0
local keys = { "local-dev-key" }
local paths = {}
local prefix
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end

local function pid()
  local f = io.open("/proc/self/stat")
  if not f then return math.random(1, 1e9) end
  local n = f:read("*n")
  f:close()
  return n
end

function init(args)
  if args[1] then
    keys = {}
    for k in string.gmatch(args[1], "[^,]+") do keys[#keys + 1] = k end
  end
  local n, name = tonumber(args[2] or "64"), args[3] or "bench-sum"
  for i = 0, n - 1 do paths[#paths + 1] = "/abacus/sums/" .. name .. "-" .. i .. "/number" end
  prefix = string.format("%d-%d-%d-", os.time(), pid(), thread_number or 0)
end

function request()
  counter = counter + 1
  return wrk.format("POST", paths[counter % #paths + 1], {
    ["X-API-Key"] = keys[counter % #keys + 1],
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = prefix .. counter,
  }, '{"number": 1}')
end
