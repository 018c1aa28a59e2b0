#ifndef ABACUS_IDEM_H
#define ABACUS_IDEM_H

/*
 * The Idempotency-Key header (SPEC section 3): 1-255 visible ASCII characters
 * (0x21-0x7E); one pair of surrounding double quotes (the IETF draft's
 * sf-string form) is stripped first.  The check-add-record itself happens in
 * the store's Lua script; this module only validates.
 */

#include <stdbool.h>
#include <stddef.h>

#include "http.h"

#define IDEM_KEY_MAX 255

enum idem_err {
	IDEM_OK = 0,
	IDEM_MISSING,           /* no header (or an empty one) */
	IDEM_MALFORMED,         /* too long, or a byte outside 0x21-0x7E */
	IDEM_ERR_COUNT
};

struct idem_key {
	const char *text;       /* borrowed from the request params; not NUL-terminated */
	size_t len;             /* 0 when absent */
};

/* Validates a header value (NULL = absent).  On IDEM_OK fills key. */
enum idem_err idem_key_parse(const char *header, struct idem_key *key);

/* A constant sentence for err. */
const char *idem_strerror(enum idem_err err);

/*
 * Reads Idempotency-Key from r.  Absent is fine when required is false (then
 * key->len is 0).  On failure sets the 400 problem and returns false.
 */
bool idem_key_or_problem(struct request *r, bool required, struct idem_key *key);

#endif
