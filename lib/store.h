#ifndef ABACUS_STORE_H
#define ABACUS_STORE_H

/*
 * The sum in Redis (SPEC sections 3, 5, 6).  Every operation is ONE EVALSHA:
 * the rate limiter, the idempotency check, the arithmetic and the recording
 * of the result run atomically inside one Lua script, so a crash, a timeout
 * or a second front end can never apply a key twice or record it without its
 * addition.  The sum never passes through a Lua number: Redis does INCRBY and
 * the script returns the sum as a string.
 *
 * A store owns one hiredis connection (in a Redis Cluster one per master:
 * lib/router.c).  A broken connection is dropped and re-established on a
 * later call, with capped exponential backoff; while Redis is away calls
 * answer STORE_UNAVAILABLE at once.  No round trip blocks longer than
 * connect timeout + command timeout.
 *
 * The connection goes to the server REDIS_URL names, or to the master the
 * sentinels name (checked with ROLE; asked again after a failover), or to
 * the Redis Cluster master of the slot of the sum's hash tag (CLUSTER SLOTS,
 * MOVED, ASK).
 * With min_replicas > 0 every write is followed, in the same round trip, by
 * WAIT; too few replicas answers STORE_NOT_REPLICATED.
 *
 * A change whose reply is lost on a connection that was open is resent once
 * on a new one; the script recognises its own first attempt by a token it
 * recorded, so a resend never applies twice, never undoes a change made in
 * between and is never reported as a client's replay.  When no answer comes
 * at all (a timeout, or the resend failing too) the outcome is
 * STORE_OUTCOME_UNKNOWN.
 */

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "http.h"
#include "idem.h"
#include "ratelimit.h"
#include "store_status.h"
#include "sumname.h"

struct store;

struct store_text;

/* What an operation returns besides its status. */
struct store_result {
	int64_t sum;            /* the sum after (or, for a replay, at) the operation */
	bool replayed;          /* a replay (also when the status is STORE_NOT_REPLICATED) */
	struct ratelimit_budget budget; /* the limiter's verdict (budget.limited: it ran) */
	struct store_text *page;        /* store_ledger's: where the page goes */
};

/* Options copied at store_new(). */
struct store_options {
	struct redis_target target;
	int connect_timeout_ms;
	int command_timeout_ms;
	const char *prefix;             /* key prefix, wrapped in {} as the hash tag */
	long idempotency_ttl_seconds;
	long rate_limit_requests;       /* 0 disables the limiter */
	long rate_limit_window_seconds;
	int min_replicas;               /* > 0: WAIT for that many replicas after each write */
	int wait_timeout_ms;            /* WAIT's timeout */
	long ledger_retention_seconds;  /* how long ledger entries are kept; 0: no ledger */
	long max_sums;                  /* named sums that may exist (the registry's bound) */
	bool rate_limit_per_sum;        /* one budget per caller and sum, not per caller */
};

/* A text the store hands back (the ledger's page): grown as needed, freed by its owner. */
struct store_text {
	char *text;
	size_t len;
	size_t cap;
};

/* Fills options from a loaded config. */
void store_options_from_config(struct store_options *opt, const struct config *cfg);

/*
 * Creates a store.  Does not connect: the first call does.  Returns NULL when
 * out of memory.  Free with store_free().
 */
struct store *store_new(const struct store_options *opt);
void store_free(struct store *store);

/* Connects now (at worker start) so configuration problems show early. */
bool store_connect(struct store *store);

/* A constant name: "ok", "replayed", "conflict", ... */
const char *store_strerror(enum store_status status);

/* Reads the sum (a missing key reads as 0). */
enum store_status store_get(struct store *store, const struct caller *caller,
                            struct store_result *res);

/*
 * Adds delta exactly once per idempotency key (key->len == 0: no key, always
 * applied).  Keys are scoped by caller->key_id.  An applied addition appends
 * its ledger entry in the same script (request_id: the entry's "req").
 */
enum store_status store_add(struct store *store, const struct caller *caller,
                            const struct idem_key *key, int64_t delta, const char *request_id,
                            struct store_result *res);

/* Sets the sum to value (PUT; DELETE sets 0: reset, as the ledger says). */
enum store_status store_set(struct store *store, const struct caller *caller, int64_t value, bool reset,
                            const char *request_id, struct store_result *res);

/*
 * Up to limit ledger entries after the entry id `after` ("" from the oldest),
 * oldest first, as the JSON object {"entries":[...],"next":...,"sum":...,
 * "last":...} into page (docs/API.md, the ledger): sum and last are the sum
 * and the newest entry's id read with the page.  Goes through the rate
 * limiter like every read.
 */
#define STORE_LEDGER_LIMIT_MAX 1000
enum store_status store_ledger(struct store *store, const struct caller *caller, const char *after,
                               long limit, struct store_result *res, struct store_text *page);

/*
 * Named sums (docs/API.md, "Named sums").  name is a valid name
 * (lib/sumname.h); NULL or "default" is the original sum, on its original
 * keys ({prefix}:sum ...), and the functions above are these with NULL.
 * Every other name keeps its keys under its own hash tag, {prefix/name}:
 * the sum, its idempotency records, attempt tokens and ledger, so one script
 * in one round trip still does all of a request, and in a Redis Cluster the
 * names spread over the masters.  Idempotency-Keys are scoped by API key
 * and sum.
 *
 * A named sum exists from its first change (an addition, a PUT) until a
 * DELETE; reading, deleting or reading the ledger of one that does not
 * exist answers STORE_NOT_FOUND.  The names that exist are kept in a
 * registry ({prefix}:sums), bounded by max_sums: a change that would create
 * one more answers STORE_TOO_MANY_SUMS and changes nothing.  "default"
 * always exists and is not counted.
 */
enum store_set_op {
	STORE_SET_VALUE,        /* PUT: the sum becomes the value */
	STORE_SET_RESET,        /* DELETE of the default sum: 0 (the ledger says reset) */
	STORE_SET_DELETE,       /* DELETE of a named sum: gone (reads answer STORE_NOT_FOUND) */
};

enum store_status store_sum_get(struct store *store, const char *name, const struct caller *caller,
                                struct store_result *res);
enum store_status store_sum_add(struct store *store, const char *name, const struct caller *caller,
                                const struct idem_key *key, int64_t delta, const char *request_id,
                                struct store_result *res);
/* STORE_SET_DELETE on "default" resets it (the default sum always exists). */
enum store_status store_sum_set(struct store *store, const char *name, const struct caller *caller,
                                int64_t value, enum store_set_op op, const char *request_id,
                                struct store_result *res);
enum store_status store_sum_ledger(struct store *store, const char *name, const struct caller *caller,
                                   const char *after, long limit, struct store_result *res,
                                   struct store_text *page);

/* One line of the listing. */
struct store_sum_entry {
	char name[SUMNAME_MAX + 1];
	int64_t sum;
	bool not_integer;       /* the stored value is not an integer (then sum is 0) */
};

/*
 * The listing: up to limit (1..STORE_LIST_LIMIT_MAX) sums whose names sort
 * after `after` ("" from the first), in byte order, "default" among them,
 * into entries; *count of them.  next: "" when no name follows this page,
 * else the last name the page looked at (continue after it).  A name
 * registered whose sum does not exist (being created or deleted at that
 * moment) is left out, so a page may hold fewer than limit, even none,
 * while next is set.  Counts once against the caller's rate limit.
 */
#define STORE_LIST_LIMIT_MAX 100
enum store_status store_list(struct store *store, const struct caller *caller, const char *after, long limit,
                             struct store_sum_entry *entries, size_t *count, char next[SUMNAME_MAX + 1],
                             struct store_result *res);

/*
 * PING within the timeouts (readiness), with INFO memory in the same round
 * trip: STORE_OK, STORE_FULL (answers, but out of memory: changes are
 * refused, reads are served) or STORE_UNAVAILABLE.
 */
enum store_status store_ping(struct store *store);

/* Reconnections since start (for metrics). */
unsigned long store_reconnects(const struct store *store);

/* Parses a canonical decimal int64 (Redis's own rendering).  False otherwise. */
bool store_parse_int64(const char *s, size_t len, int64_t *out);

#endif
