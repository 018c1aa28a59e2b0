#include "scripts.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "decimal.h"

/* Where each line of a composed script came from (tools/lua2c writes the tables). */
struct lua_origin {
	const char *file;
	int line;
};

#include "lua_scripts.h"

/*
 * OP_TTL: how long a change remembers the attempt token that made it (see
 * lib/store.h, resends).  A resend comes within the request's deadline: the
 * token outlives that by a minute, and so does an idempotency record (TTL is
 * never below OP_TTL).
 */
#define OP_TTL_MARGIN_S 60

/*
 * The reads (GET, the ledger, the listing) are `allow-oom`: a full Redis (noeviction) still answers reads,
 * and lets a read record its one small limiter entry (at most the limit per
 * caller, gone a window later); additions and sets are refused before they run.
 */
static const struct {
	const char *flags;
	const char *body;
	const struct lua_origin *origins;
	size_t lines;
} scripts[SCRIPT_COUNT] = {
	[SCRIPT_GET] = { " flags=allow-oom", lua_script_get, lua_origins_get,
	                 sizeof(lua_origins_get) / sizeof(lua_origins_get[0]) },
	[SCRIPT_ADD] = { "", lua_script_add, lua_origins_add,
	                 sizeof(lua_origins_add) / sizeof(lua_origins_add[0]) },
	[SCRIPT_SET] = { "", lua_script_set, lua_origins_set,
	                 sizeof(lua_origins_set) / sizeof(lua_origins_set[0]) },
	[SCRIPT_LEDGER] = { " flags=allow-oom", lua_script_ledger, lua_origins_ledger,
	                    sizeof(lua_origins_ledger) / sizeof(lua_origins_ledger[0]) },
	[SCRIPT_LIST] = { " flags=allow-oom", lua_script_list, lua_origins_list,
	                  sizeof(lua_origins_list) / sizeof(lua_origins_list[0]) },
	[SCRIPT_PEEK] = { " flags=allow-oom", lua_script_peek, lua_origins_peek,
	                  sizeof(lua_origins_peek) / sizeof(lua_origins_peek[0]) },
	/* A new name is refused when Redis is full, as the change that follows would be. */
	[SCRIPT_REGISTRY] = { "", lua_script_registry, lua_origins_registry,
	                      sizeof(lua_origins_registry) / sizeof(lua_origins_registry[0]) },
	/* Only the limiter's entry, as a read's: the change after it is refused when Redis is full. */
	[SCRIPT_ADMIT] = { " flags=allow-oom", lua_script_admit, lua_origins_admit,
	                   sizeof(lua_origins_admit) / sizeof(lua_origins_admit[0]) },
};

bool scripts_format(enum script_id id, const struct script_settings *settings, char *out, size_t cap)
{
	long long window_us = (long long)settings->rate_limit_window_seconds * 1000000LL;
	long op_ttl = (settings->request_deadline_ms + 999) / 1000 + OP_TTL_MARGIN_S;
	long ttl = settings->idempotency_ttl_seconds > op_ttl ? settings->idempotency_ttl_seconds : op_ttl;
	size_t body_len = strlen(scripts[id].body);
	/* Only the header goes through printf: the bodies hold '%d' of their own. */
	int n = snprintf(out, cap,
	                 "#!lua%s\n"
	                 "local MAX, WINDOW_US, WINDOW_MS, TTL, OP_TTL, WAITS, LEDGER_MS = "
	                 "%ld, %lld, '%lld', '%ld', '%ld', %s, %lld\n",
	                 scripts[id].flags, settings->rate_limit_requests, window_us, window_us / 1000, ttl,
	                 op_ttl, settings->wait_for_replicas ? "true" : "false",
	                 (long long)settings->ledger_retention_seconds * 1000LL);

	if (n < 0 || (size_t)n + body_len >= cap)
		return false;
	memcpy(out + n, scripts[id].body, body_len + 1);
	return true;
}

bool scripts_source_of(enum script_id id, long line, char *out, size_t cap)
{
	long index = line - SCRIPT_HEADER_LINES - 1;

	if (id >= SCRIPT_COUNT || index < 0 || (size_t)index >= scripts[id].lines)
		return false;
	snprintf(out, cap, "%s:%d", scripts[id].origins[index].file, scripts[id].origins[index].line);
	return true;
}

bool scripts_source_in_error(enum script_id id, const char *error, char *out, size_t cap)
{
	const char *at = error != NULL ? strstr(error, "user_script:") : NULL;
	int64_t line;

	if (at == NULL)
		return false;
	at += strlen("user_script:");
	if (decimal_parse_int64(at, strspn(at, "0123456789"), DECIMAL_REFUSE_MINUS_ZERO, &line) != DECIMAL_OK)
		return false;
	return scripts_source_of(id, (long)line, out, cap);
}
