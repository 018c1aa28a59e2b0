#ifndef ABACUS_SCRIPTS_H
#define ABACUS_SCRIPTS_H

/*
 * The Redis scripts (the files of lib/lua, embedded at build time by tools/lua2c)
 * and their header.  Each script is "#!lua [flags]", a line of constants of
 * this configuration (limit, window, TTLs, WAIT or not, the ledger's retention: parsed once when
 * Redis compiles the script, not per call), then the body.  Another
 * configuration is another text, hence another SHA: both run side by side.
 */

#include <stdbool.h>
#include <stddef.h>

enum script_id {
	SCRIPT_GET, SCRIPT_ADD, SCRIPT_SET, SCRIPT_LEDGER,
	SCRIPT_LIST, SCRIPT_PEEK, SCRIPT_REGISTRY, SCRIPT_ADMIT,     /* named sums */
	SCRIPT_COUNT
};

/* The settings that become the header's constants. */
struct script_settings {
	long rate_limit_requests;       /* 0: limiter off */
	long rate_limit_window_seconds;
	long idempotency_ttl_seconds;
	int request_deadline_ms;        /* connect + command timeout */
	bool wait_for_replicas;
	long ledger_retention_seconds;  /* 0: no ledger */
};

#define SCRIPT_MAX 8192         /* a script's whole text (the longest is ~3,000 bytes) */
#define SCRIPT_HEADER_LINES 2   /* "#!lua ..." and the constants */

/* The script's whole text for these settings into out (SCRIPT_MAX bytes).  False if it does not fit. */
bool scripts_format(enum script_id id, const struct script_settings *settings, char *out, size_t cap);

/*
 * Where line `line` of the script as Redis numbers it ("user_script:12")
 * comes from: "lib/lua/add.lua:7".  Writes it to out; false when the line is
 * not one of the body's.
 */
bool scripts_source_of(enum script_id id, long line, char *out, size_t cap);

/* Finds "user_script:<n>" in a Redis error and names its source; false if there is none. */
bool scripts_source_in_error(enum script_id id, const char *error, char *out, size_t cap);

#endif
