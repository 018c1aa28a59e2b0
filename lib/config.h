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

#include "log.h"

#define CONFIG_KEY_MAX 256      /* longest API key accepted, in bytes */
#define CONFIG_PREFIX_MAX 64    /* longest ABACUS_REDIS_PREFIX */
#define CONFIG_PROXIES_MAX 16   /* entries in ABACUS_TRUSTED_PROXIES */
#define CONFIG_NODES_MAX 8      /* sentinels, or cluster seed nodes */

enum redis_transport {
	REDIS_TRANSPORT_TCP,
	REDIS_TRANSPORT_UNIX,
};

/* How the worker finds the Redis that holds the sum (docs/OPERATIONS.md). */
enum redis_mode {
	REDIS_MODE_SINGLE,      /* REDIS_URL names the server */
	REDIS_MODE_SENTINEL,    /* REDIS_SENTINELS name who to ask for the master */
	REDIS_MODE_CLUSTER,     /* redis+cluster:// names seed nodes of a Redis Cluster */
};

/* One TCP endpoint. */
struct redis_node {
	char host[256];        /* name or address, brackets removed */
	int port;
};

/*
 * Where Redis is and how to log in: the parsed REDIS_URL, plus REDIS_SENTINELS
 * and the sentinel settings.
 */
struct redis_target {
	enum redis_mode mode;
	enum redis_transport transport;
	char host[256];        /* TCP: host name or address, brackets removed */
	int port;              /* TCP: 1..65535, default 6379 */
	char path[108];        /* unix: socket path */
	char user[128];        /* ACL user, "" for none */
	char password[256];    /* "" for none; never log it */
	bool has_password;     /* AUTH is sent on every (re)connect */
	int db;                /* SELECTed on every (re)connect, 0..65535 */

	/* Cluster: the seed nodes.  Sentinel: the sentinels. */
	struct redis_node nodes[CONFIG_NODES_MAX];
	size_t node_count;
	char master_name[128];          /* ABACUS_REDIS_MASTER_NAME */
	char sentinel_user[128];        /* ABACUS_REDIS_SENTINEL_USERNAME */
	char sentinel_password[256];    /* ABACUS_REDIS_SENTINEL_PASSWORD; never log it */
	bool sentinel_has_password;
};

/* A list of API keys (owned strings). */
struct key_list {
	char **keys;           /* count entries, each NUL-terminated */
	size_t count;
};

/* An IPv4/IPv6 network, for ABACUS_TRUSTED_PROXIES. */
struct config_cidr {
	int family;            /* AF_INET or AF_INET6 */
	unsigned char addr[16];/* network address, in network byte order */
	int prefix_len;        /* bits that must match */
};

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
	struct config_cidr trusted_proxies[CONFIG_PROXIES_MAX]; /* ABACUS_TRUSTED_PROXIES */
	size_t trusted_proxy_count;

	char metrics_shm[128];              /* ABACUS_METRICS_SHM: POSIX shm name */
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
 * Parses a REDIS_URL: redis://[[user]:password@]host[:port][/db],
 * unix:///path/to/socket[?db=N] or
 * redis+cluster://[[user]:password@]host:port[,host:port...].  User and
 * password may be percent-encoded.  Returns false with a reason in err on
 * anything else.
 */
bool config_parse_redis_url(const char *url, struct redis_target *out, char *err, size_t errlen);

/*
 * Parses REDIS_SENTINELS, "host:port,host:port,..." (port default 26379,
 * IPv6 in brackets), into target->nodes.  False with a reason in err.
 */
bool config_parse_sentinels(const char *text, struct redis_target *target, char *err, size_t errlen);

/* Strict decimal integer in [min, max]: no sign on positives, spaces, or leading zeros. */
bool config_parse_long(const char *text, long min, long max, long *out);

/* "true"/"false", "1"/"0", "yes"/"no", "on"/"off", case-insensitive. */
bool config_parse_bool(const char *text, bool *out);

/*
 * Appends the keys of a comma- (or, with by_line, newline-) separated list.
 * Blank entries are skipped; with by_line, lines starting with '#' too.
 * Returns false with a reason (which never quotes a key) on an invalid key.
 */
bool config_add_keys(struct key_list *list, const char *text, bool by_line, char *err, size_t errlen);

/* Parses "10.0.0.0/8" or "::1" (a plain address is a /32 or /128). */
bool config_parse_cidr(const char *text, struct config_cidr *out);

/* Logs the effective configuration at info level, secrets masked. */
void config_log_effective(const struct config *cfg);

#endif
