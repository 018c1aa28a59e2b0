#ifndef ABACUS_CONFIG_H
#define ABACUS_CONFIG_H

/*
 * The worker's configuration, read once at start-up from the environment
 * (docs/CONFIGURATION.md lists every setting).  A bad value is never guessed
 * around: config_load fails with a message naming the setting, and the worker
 * refuses to start.
 */

#include <stdbool.h>
#include <stddef.h>

#include "cidr.h"
#include "log.h"
#include "redis_url.h"

#define CONFIG_KEY_MAX 256      /* longest API key accepted, in bytes */
#define CONFIG_PREFIX_MAX 64    /* longest ABACUS_REDIS_PREFIX */
#define CONFIG_PROXIES_MAX 16   /* entries in ABACUS_TRUSTED_PROXIES */
#define CONFIG_WORKERS_MAX 256  /* largest ABACUS_WORKERS (docker/entrypoint.sh's limit too) */

/* A list of API keys (owned strings). */
struct key_list {
	char **keys;           /* count entries, each NUL-terminated */
	size_t count;
};

/* How long ledger entries are kept by default: as long as idempotency records (docs/OPERATIONS.md, the ledger). */
#define CONFIG_LEDGER_RETENTION_DEFAULT 86400

struct config {
	struct redis_target redis;          /* REDIS_URL */
	int redis_connect_timeout_ms;       /* ABACUS_REDIS_CONNECT_TIMEOUT_MS */
	int redis_timeout_ms;               /* ABACUS_REDIS_TIMEOUT_MS */
	char redis_prefix[CONFIG_PREFIX_MAX + 1]; /* ABACUS_REDIS_PREFIX */
	int redis_min_replicas;             /* ABACUS_REDIS_MIN_REPLICAS: WAIT after writes */
	int redis_wait_timeout_ms;          /* ABACUS_REDIS_WAIT_TIMEOUT_MS */

	bool auth_enabled;                  /* effective: keys configured and not disabled */
	struct key_list api_keys;           /* ABACUS_API_KEYS + _FILE */
	struct key_list admin_keys;         /* ABACUS_ADMIN_API_KEYS + _FILE */

	bool idempotency_required;          /* ABACUS_IDEMPOTENCY_REQUIRED */
	long idempotency_ttl_seconds;       /* ABACUS_IDEMPOTENCY_TTL_SECONDS */
	long max_body_bytes;                /* ABACUS_MAX_BODY_BYTES */

	bool rate_limit_enabled;            /* ABACUS_RATE_LIMIT_ENABLED */
	long rate_limit_requests;           /* ABACUS_RATE_LIMIT_REQUESTS */
	long rate_limit_window_seconds;     /* ABACUS_RATE_LIMIT_WINDOW_SECONDS */
	long ledger_retention_seconds;      /* ABACUS_LEDGER_RETENTION_SECONDS: 0 turns the ledger off */
	bool rate_limit_per_sum;            /* ABACUS_RATE_LIMIT_SCOPE=sum (default caller) */
	long max_sums;                      /* ABACUS_MAX_SUMS: named sums that may exist */
	long rate_limit_ipv6_prefix;        /* ABACUS_RATE_LIMIT_IPV6_PREFIX: an IPv6 caller's network */
	struct cidr trusted_proxies[CONFIG_PROXIES_MAX]; /* ABACUS_TRUSTED_PROXIES */
	size_t trusted_proxy_count;

	char metrics_shm[128];              /* ABACUS_METRICS_SHM: POSIX shm name */
	long workers_configured;            /* ABACUS_WORKERS (the front end's): 0 when unset */
	bool metrics_auth;                  /* ABACUS_METRICS_AUTH: /metrics needs a key */

	enum log_level log_level;           /* ABACUS_LOG_LEVEL */
};

/* Looks a variable up; getenv() in the worker, a table in the unit tests. */
typedef const char *(*config_lookup_fn)(const char *name);

/*
 * Fills cfg from the variables lookup returns.  Returns true on success; on
 * failure writes a one-line reason naming the setting to err (errlen bytes)
 * and leaves nothing allocated.  Free a loaded config with config_free().
 */
bool config_load(struct config *cfg, config_lookup_fn lookup, char *err, size_t errlen);

/* Releases the key lists.  Safe on a zeroed or already freed config. */
void config_free(struct config *cfg);

/*
 * Strict decimal integer in [min, max] (lib/decimal's parser): no sign on
 * positives, no spaces, no leading zeros, no "-0", not empty.
 */
bool config_parse_long(const char *text, long min, long max, long *out);

/* "true"/"false", "1"/"0", "yes"/"no", "on"/"off", case-insensitive. */
bool config_parse_bool(const char *text, bool *out);

/*
 * Appends the keys of a comma- (or, with by_line, newline-) separated list.
 * Blank entries are skipped; with by_line, lines starting with '#' too.
 * Returns false with a reason (which never quotes a key) on an invalid key.
 */
bool config_add_keys(struct key_list *list, const char *text, bool by_line, char *err, size_t errlen);

/* Logs the effective configuration at info level, secrets masked. */
void config_log_effective(const struct config *cfg);

#endif
