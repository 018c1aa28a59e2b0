#ifndef ABACUS_RATELIMIT_H
#define ABACUS_RATELIMIT_H

/*
 * Rate limiting (SPEC section 5).  The limiter itself (GCRA on Redis's clock)
 * runs inside the store's Lua script, in the same round trip as the operation
 * it guards; this module decides whose budget a request spends and renders the
 * IETF RateLimit headers.
 */

#include <stdbool.h>

#include "config.h"
#include "http.h"
#include "store.h"

/*
 * Sets r->caller.limit_id: the API key id when there is one, else the client
 * address.  X-Forwarded-For is believed only when the peer (REMOTE_ADDR) is in
 * ABACUS_TRUSTED_PROXIES: then the right-most entry that is not itself a
 * trusted proxy counts.
 */
void ratelimit_identify(struct request *r, const struct config *cfg);

/*
 * Adds RateLimit-Policy and RateLimit (and Retry-After on STORE_RATE_LIMITED)
 * when the limiter ran for this request.
 */
void ratelimit_add_headers(struct request *r, const struct config *cfg, enum store_status status,
                           const struct store_result *res);

#endif
