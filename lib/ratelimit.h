#ifndef ABACUS_RATELIMIT_H
#define ABACUS_RATELIMIT_H

/*
 * Rate limiting (SPEC section 5).  The limiter is this module's: its
 * algorithm (a sliding-window log on Redis's clock, lib/lua/limiter_budget.lua
 * and limiter_admit.lua, pasted into each of the store's scripts so that it
 * runs in the same round trip as the operation it guards; lib/lua/README.md),
 * its key, the decoding of its verdict, whose budget a request spends, and
 * the IETF RateLimit headers.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "http.h"
#include "store_status.h"

/* The limiter's verdict on one request. */
struct ratelimit_budget {
	bool limited;           /* the limiter ran: the fields below are valid */
	long remaining;         /* requests left in the budget after this one */
	long reset_seconds;     /* until the budget is full again */
	long retry_after_seconds; /* for a refusal: until one request passes */
	int64_t reset_us;       /* a refusal's two delays, exact (Redis's microseconds) */
	int64_t retry_us;
	bool remembered;        /* answered from this worker's memory, without Redis */
};

/* The longest hash tag: "{prefix/name}" (a named sum's, lib/store.c). */
#define RATELIMIT_TAG_MAX (CONFIG_PREFIX_MAX + SUMNAME_MAX + 3)
#define RATELIMIT_KEY_MAX (RATELIMIT_TAG_MAX + 4 + sizeof(((struct caller *)0)->limit_id))

/*
 * "<tag>:rl:<identity>" into out (RATELIMIT_KEY_MAX bytes); returns its
 * length.  tag is the hash tag of the budget: "{prefix}" (one per caller), or
 * a named sum's "{prefix/name}" (one per caller and sum).
 */
size_t ratelimit_key(const char *tag, const struct caller *caller, char *out);

/*
 * The verdict from the script's reply: a refusal ("limited <reset_us>
 * <retry_us>": refused true) or the budget left after an admitted request
 * (-1: the limiter is off).  False when the numbers make no sense.
 */
bool ratelimit_refusal(int64_t reset_us, int64_t retry_us, struct ratelimit_budget *b);
bool ratelimit_admitted(int64_t remaining, long window_seconds, struct ratelimit_budget *b);

/*
 * Sets r->caller.limit_id: the API key id when there is one, else the client
 * address.  X-Forwarded-For is believed only when the peer (REMOTE_ADDR) is in
 * ABACUS_TRUSTED_PROXIES: then the right-most entry that is not itself a
 * trusted proxy counts.  An IPv6 address counts as its
 * ABACUS_RATE_LIMIT_IPV6_PREFIX network ("ip:2001:db8:1:2::/64"): one host
 * holds a whole /64, and must not be 2^64 callers.
 */
void ratelimit_identify(struct request *r, const struct config *cfg);

/*
 * Refusals this worker remembers (the local refusal, docs/API.md).  A refused
 * caller's budget cannot free before the oldest admission in its window
 * leaves it, retry_us after the script looked; until then this worker
 * answers that caller itself, with the same 429 and headers, without asking
 * Redis.  Nothing is ever admitted here, so "never more than the limit in any
 * window-long interval" stays exact.  Per worker, RATELIMIT_MEMO_SLOTS
 * callers by hash: a caller pushed out costs one round trip, nothing else.
 * A refusal is trusted RATELIMIT_MEMO_TRUST_US at most (the limiter's records
 * are not persisted: a Redis restart or failover frees every budget, and the
 * worker's clock is not Redis's), and all are forgotten when the worker
 * reconnects (ratelimit_forget_refusals).  The answer's Retry-After is still
 * the full one Redis gave.  Times are CLOCK_MONOTONIC microseconds.
 */
#define RATELIMIT_MEMO_SLOTS 256
#define RATELIMIT_MEMO_TRUST_US 1000000

int64_t ratelimit_clock_us(void);

/* True (and b filled as for a refusal) if c was refused and cannot pass yet at now_us. */
bool ratelimit_refused_here(const struct caller *c, int64_t now_us, struct ratelimit_budget *b);

/*
 * Remembers the refusal b (from the script) of c; asked_at_us: when the
 * request was sent, so that the remembered deadline is never later than
 * Redis's own.
 */
void ratelimit_remember_refusal(const struct caller *c, int64_t asked_at_us,
                                const struct ratelimit_budget *b);

/* Forgets every remembered refusal (a reconnection to Redis; tests). */
void ratelimit_forget_refusals(void);

/*
 * Adds RateLimit-Policy and RateLimit (and Retry-After on STORE_RATE_LIMITED)
 * when the limiter ran for this request.
 */
void ratelimit_add_headers(struct request *r, const struct config *cfg, enum store_status status,
                           const struct ratelimit_budget *budget);

#endif
