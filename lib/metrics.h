#ifndef ABACUS_METRICS_H
#define ABACUS_METRICS_H

/*
 * Prometheus metrics in one POSIX shared-memory segment per front end
 * (SPEC section 7).  Every worker maps the segment named by
 * ABACUS_METRICS_SHM and updates it with relaxed atomic adds: no lock and no
 * system call on the request path.  GET /metrics renders the whole segment,
 * so one scrape shows every worker of the front end.
 *
 * This module holds the counters and renders them; finding, creating and
 * attaching the segment, its layout checks and the registry of live workers
 * are metrics_shm.h's.  A segment of another layout is never read: the worker
 * logs it and uses "<name>-v<version>" instead (see docs/METRICS.md).
 *
 * Label values come from the fixed enums below; nothing from a request ever
 * becomes a label value.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

/* The segment's layout (metrics_shm.h header, then the counters); bump it with any change. */
#define METRICS_LAYOUT_VERSION 4

/* The endpoint label: a route, or "other". */
enum metrics_endpoint {
	METRICS_EP_SUM,
	METRICS_EP_NUMBER,
	METRICS_EP_LEDGER,
	METRICS_EP_SUMS,                /* /abacus/sums: the listing */
	METRICS_EP_NAMED_SUM,           /* /abacus/sums/{name} */
	METRICS_EP_NAMED_NUMBER,        /* /abacus/sums/{name}/number */
	METRICS_EP_NAMED_LEDGER,        /* /abacus/sums/{name}/ledger */
	METRICS_EP_HEALTHZ,
	METRICS_EP_READYZ,
	METRICS_EP_METRICS,
	METRICS_EP_OTHER,
	METRICS_EP_COUNT
};

/* The operation label of the Redis families: one per top-level command kind. */
enum metrics_redis_op {
	METRICS_OP_GET,         /* EVALSHA of the get script */
	METRICS_OP_ADD,         /* EVALSHA of the add script */
	METRICS_OP_SET,         /* EVALSHA of the set script */
	METRICS_OP_LEDGER,      /* EVALSHA of the ledger (read) script */
	METRICS_OP_LIST,        /* EVALSHA of the listing's script (names, in the registry) */
	METRICS_OP_PEEK,        /* EVALSHA of the listing's read of one named sum */
	METRICS_OP_REGISTER,    /* EVALSHA of the registry's script (a new name, a deleted one) */
	METRICS_OP_ADMIT,       /* EVALSHA of the limiter alone (Cluster: named sums, per-caller scope) */
	METRICS_OP_PING,        /* PING (readiness) */
	METRICS_OP_CONNECT,     /* connect + AUTH/SELECT/SCRIPT LOAD pipeline */
	METRICS_OP_SCRIPT_LOAD, /* SCRIPT LOAD after NOSCRIPT */
	METRICS_OP_COUNT
};

enum metrics_redis_result {
	METRICS_RESULT_OK,          /* Redis answered (any script outcome) */
	METRICS_RESULT_ERROR,       /* Redis answered with an error (OOM, READONLY, ...) */
	METRICS_RESULT_UNAVAILABLE, /* no answer: connection refused, broken, timed out */
	METRICS_RESULT_COUNT
};

enum metrics_auth_reason {
	METRICS_AUTH_MISSING,
	METRICS_AUTH_UNKNOWN,
	METRICS_AUTH_NOT_ADMIN,
	METRICS_AUTH_COUNT
};

/* Plain counters without labels. */
enum metrics_counter {
	METRICS_REDIS_RECONNECTS,       /* abacus_redis_reconnects_total */
	METRICS_RATE_LIMITED,           /* abacus_rate_limited_total */
	METRICS_IDEMPOTENT_REPLAYS,     /* abacus_idempotent_replays_total */
	METRICS_IDEMPOTENCY_CONFLICTS,  /* abacus_idempotency_conflicts_total */
	METRICS_REDIS_REDIRECTS,        /* abacus_redis_redirects_total: MOVED, ASK, new master */
	METRICS_REPLICATION_SHORTFALLS, /* abacus_redis_replication_shortfalls_total */
	METRICS_COUNTER_COUNT
};

/*
 * Maps (creating if needed) the segment `name` ("/abacus-metrics") and
 * registers this process as a live worker.  Returns false, after logging why,
 * when no shared segment could be used; metrics then count into private
 * memory so that callers never need to check.
 */
bool metrics_open(const char *name, const char *version);

/* Unmaps the segment (the segment itself stays for the other workers). */
void metrics_close(void);

/* Bytes of a segment of this layout (the size of /dev/shm/<name>). */
size_t metrics_segment_size(void);

/* Name of the segment in use ("" before metrics_open). */
const char *metrics_segment_name(void);

/* One request answered: its endpoint, method, status and duration. */
void metrics_request(enum metrics_endpoint ep, enum http_method method, int status,
                     uint64_t duration_us);

/* One Redis command (or connection attempt) and how it went. */
void metrics_redis(enum metrics_redis_op op, enum metrics_redis_result result, uint64_t duration_us);

void metrics_auth_failure(enum metrics_auth_reason reason);
void metrics_inc(enum metrics_counter counter);

/*
 * Renders the Prometheus text format 0.0.4.  Returns a buffer owned by this
 * module, valid until the next call, and its length in *len.
 */
const char *metrics_render(size_t *len);

/* Live workers registered in the segment (dead pids are not counted). */
unsigned metrics_workers_alive(void);

/*
 * The workers the front end is configured to keep (ABACUS_WORKERS, read by
 * config), rendered as abacus_workers_configured beside abacus_workers.
 * 0, the initial value, means unknown: the gauge is then not rendered.  Not
 * in the segment: every worker of a front end inherits the same value.
 */
void metrics_set_workers_configured(unsigned count);

#endif
