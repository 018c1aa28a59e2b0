#ifndef ABACUS_AUTH_H
#define ABACUS_AUTH_H

/*
 * X-API-Key checks (SPEC section 4).  The configured keys are kept only as
 * SHA-256 digests; a presented key is hashed and compared against every
 * digest in constant time (no early exit, no length leak).  Keys are never
 * logged or echoed: logs carry the key id, the first 8 hex digits of the
 * digest.
 */

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "http.h"

struct auth;

enum auth_need {
	AUTH_ANY,               /* any configured key */
	AUTH_ADMIN,             /* an admin key (or any key when no admin key is set) */
};

enum auth_result {
	AUTH_OK = 0,
	AUTH_MISSING,           /* no X-API-Key: 401 */
	AUTH_UNKNOWN,           /* not a configured key: 403 */
	AUTH_NOT_ADMIN,         /* a key, but not an admin key: 403 */
	AUTH_RESULT_COUNT
};

/*
 * Builds the key table from cfg (which may be freed afterwards).  Returns
 * NULL when out of memory, or when two keys share a key id (log it; the
 * worker must not start since their idempotency scopes would merge).
 * Free with auth_free().
 */
struct auth *auth_new(const struct config *cfg);
void auth_free(struct auth *auth);

/* "missing", "unknown", "not_admin": the reason label for logs and metrics. */
const char *auth_result_name(enum auth_result result);

/*
 * Checks a presented key (NULL = header absent).  On AUTH_OK fills
 * caller->key_id and caller->admin.  With auth disabled always AUTH_OK
 * with an empty key id.
 */
enum auth_result auth_check(const struct auth *auth, const char *presented, enum auth_need need,
                            struct caller *caller);

/*
 * Reads X-API-Key from r and checks it.  On failure logs an auth_failure
 * event (with the key id, never the key), sets the 401/403 problem and
 * returns false.
 */
bool auth_check_or_problem(const struct auth *auth, struct request *r, enum auth_need need);

/*
 * As auth_check_or_problem, but also takes the key from
 * "Authorization: Bearer <key>" when X-API-Key is absent: Prometheus can send
 * a bearer token but (before 2.55) no custom header.  Used for /metrics.
 */
bool auth_check_bearer_or_problem(const struct auth *auth, struct request *r);

/* True when a and b (n bytes each) are equal; time depends only on n. */
bool auth_equal_ct(const void *a, const void *b, size_t n);

#endif
