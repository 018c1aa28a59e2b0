-- wrk script: POST /abacus/number with a fresh Idempotency-Key per request.
-- Usage: wrk -s tests/bench/post.lua http://127.0.0.1:8001 -- <api-key>[,<api-key>...] [N [PREFIX]]
-- (several keys: used in turn, one per request; with N, POST /abacus/sums/{name}/number
-- over the named sums PREFIX-0 .. PREFIX-(N-1) in turn, PREFIX "bench-sum" by default)
--
-- The key is "<time>-<pid>-<thread>-<counter>": unique across the wrk processes
-- of one run (one per front end) and across the threads of one process.  A key
-- shared by two processes would turn half the POSTs into replays, which write
-- nothing and are cheaper.
local counter = 0
local paths = { "/abacus/number" }
local keys = { "local-dev-key" }
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
  if args[2] then
    paths = {}
    for i = 0, tonumber(args[2]) - 1 do paths[#paths + 1] = "/abacus/sums/" .. (args[3] or "bench-sum") .. "-" .. i .. "/number" end
  end
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
