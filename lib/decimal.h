#ifndef ABACUS_DECIMAL_H
#define ABACUS_DECIMAL_H

/*
 * Integers to and from decimal text, for the whole worker: the one strict
 * int64 parser (request bodies, Redis's replies, settings) and the one
 * formatter.  No printf and no strtoll on the request path: printf was 15 %
 * of a request's instructions in the worker, and strtoll accepts what a
 * strict reader must refuse (spaces, "+", leading zeros).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DECIMAL_MAX 20          /* "-9223372036854775808" */

enum decimal_err {
	DECIMAL_OK = 0,
	DECIMAL_NOT_INTEGER,    /* not "-"? digits in canonical form */
	DECIMAL_OUT_OF_RANGE,   /* digits, but outside int64 */
};

/* How "-0" reads: JSON allows it (it is 0); Redis never writes it, nor should a setting. */
enum decimal_minus_zero { DECIMAL_REFUSE_MINUS_ZERO, DECIMAL_ALLOW_MINUS_ZERO };

/*
 * Parses s[0..len): an optional '-', then digits without a leading zero
 * ("0" itself is fine).  Nothing else: no sign "+", no space, no fraction.
 */
enum decimal_err decimal_parse_int64(const char *s, size_t len, enum decimal_minus_zero minus_zero,
                                     int64_t *out);

/* Writes v in decimal to out (DECIMAL_MAX bytes of room, no NUL); returns the length. */
size_t decimal_format(char *out, int64_t v);

/* The same for an unsigned size (RESP lengths); returns the end of what it wrote. */
char *decimal_put_size(char *out, size_t v);

#endif
