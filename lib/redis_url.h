#ifndef ABACUS_REDIS_URL_H
#define ABACUS_REDIS_URL_H

/*
 * Where Redis is and how to log in: REDIS_URL (SPEC 6), with the Cluster form
 * redis+cluster://, and the REDIS_SENTINELS list (docs/CONFIGURATION.md).
 * Parsed once at start-up; a bad value is refused with a message naming the
 * setting, never guessed around.
 */

#include <stdbool.h>
#include <stddef.h>

#define REDIS_URL_NODES_MAX 8   /* sentinels, or cluster seed nodes */

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
 * and the sentinel settings (filled in by config).
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
	struct redis_node nodes[REDIS_URL_NODES_MAX];
	size_t node_count;
	char master_name[128];          /* ABACUS_REDIS_MASTER_NAME */
	char sentinel_user[128];        /* ABACUS_REDIS_SENTINEL_USERNAME */
	char sentinel_password[256];    /* ABACUS_REDIS_SENTINEL_PASSWORD; never log it */
	bool sentinel_has_password;
};

/*
 * Parses a REDIS_URL: redis://[[user]:password@]host[:port][/db],
 * unix:///path/to/socket[?db=N] or
 * redis+cluster://[[user]:password@]host:port[,host:port...].  User and
 * password may be percent-encoded.  Zeroes out first.  Returns false with a
 * reason naming REDIS_URL in err (errlen bytes) on anything else, rediss://
 * included (hiredis 0.14 as built by Debian has no TLS).
 */
bool redis_url_parse(const char *url, struct redis_target *out, char *err, size_t errlen);

/*
 * Parses REDIS_SENTINELS, "host:port,host:port,..." (port default 26379,
 * IPv6 in brackets), into target->nodes.  False with a reason in err.
 */
bool redis_url_parse_sentinels(const char *text, struct redis_target *target, char *err,
                               size_t errlen);

/*
 * Writes the target back as a URL for the start-up log, the password as
 * "***" (and only the first cluster seed node, then ",...").
 */
void redis_url_format_masked(const struct redis_target *t, char *out, size_t cap);

#endif
