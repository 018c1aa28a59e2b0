#ifndef ABACUS_DECIMAL_H
#define ABACUS_DECIMAL_H

/*
 * Integers to decimal text without printf, for the per-request paths (the
 * response head and body, RateLimit values, log lines): printf was 15 % of
 * a request's instructions in the worker.  Header-only: http and log both
 * need it and neither should depend on the other for it.
 */

#include <stddef.h>
#include <stdint.h>

#define DECIMAL_MAX 20          /* "-9223372036854775808" */

/* Writes v in decimal to out (DECIMAL_MAX bytes of room, no NUL); returns the length. */
static inline size_t decimal_format(char *out, int64_t v)
{
	char tmp[DECIMAL_MAX];
	/* The magnitude as unsigned, so INT64_MIN has one too. */
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	size_t n = 0, len = 0;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		out[len++] = '-';
	while (n > 0)
		out[len++] = tmp[--n];
	return len;
}

#endif
