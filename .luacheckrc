-- luacheck for the composed Redis scripts (build/gen/*.lua; make lint).
std = "lua51"
read_globals = {
  "redis", "KEYS", "ARGV",
  -- the header's constants (lib/scripts.c)
  "MAX", "WINDOW_US", "WINDOW_MS", "TTL", "OP_TTL", "WAITS", "LEDGER_MS",
}
max_line_length = 160
