#ifndef ABACUS_SUMNAME_H
#define ABACUS_SUMNAME_H

/*
 * The names of sums (docs/API.md, "Named sums").  A name is 1 to 64
 * characters of A-Z a-z 0-9 _ . -, the first a letter or a digit, compared
 * byte for byte (case matters).  So a name is never empty, never "." or "..",
 * never holds '/', '%', ':', braces or anything outside ASCII: it can stand
 * in a path segment and inside a Redis hash tag as it is.  The name "default"
 * is the sum of the original routes (/abacus/sum, /abacus/number), on the
 * keys it always had.
 */

#include <stdbool.h>
#include <stddef.h>

#define SUMNAME_MAX 64
#define SUMNAME_DEFAULT "default"

/* True when s[0..len) follows the name rules. */
bool sumname_valid(const char *s, size_t len);

/* True when s[0..len) is "default": the original sum. */
bool sumname_is_default(const char *s, size_t len);

/*
 * True when s[0..len) is one of the API's route words ("sum", "sums",
 * "number", "ledger"; exactly, lower case).  Such a name follows the rules
 * above and routing would not mistake it, but /abacus/sums/ledger reads as
 * a typo of /abacus/sum/ledger and /abacus/sums/number/number as a mistake:
 * the routes refuse these names (400 invalid-sum-name, docs/API.md "Named
 * sums").  A name that merely contains one ("ledger-2024") is fine.
 */
bool sumname_is_reserved(const char *s, size_t len);

#endif
