#ifndef ABACUS_JSON_H
#define ABACUS_JSON_H

/*
 * A strict RFC 8259 scanner that validates one JSON text and remembers one
 * member of the top-level object.  It builds no tree and copies nothing: the
 * member's value comes back as its token in the caller's buffer.
 *
 * Written for request bodies rather than taken from json-c: json-c 0.16
 * accepts NaN and single-quoted strings even in strict mode, silently clamps
 * integers below INT64_MIN and keeps the last of duplicate members; each of
 * those would let an ambiguous body change the sum (docs/API.md "Request
 * bodies").  Here strings must be valid UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF), numbers follow the grammar of RFC 8259
 * section 6 exactly, and nesting is bounded.
 */

#include <stddef.h>

#define JSON_MAX_DEPTH 32       /* nesting deeper than this is refused */

enum json_err {
	JSON_OK = 0,
	JSON_MALFORMED,         /* not one valid JSON text (syntax, UTF-8, trailing bytes) */
	JSON_TOO_DEEP,          /* nesting deeper than JSON_MAX_DEPTH */
	JSON_ERR_COUNT
};

/* The kind of a value.  A number token is an integer when it has no fraction and no exponent. */
enum json_type {
	JSON_TYPE_NULL,
	JSON_TYPE_BOOLEAN,
	JSON_TYPE_INTEGER,      /* -?(0|[1-9][0-9]*): "-0" included */
	JSON_TYPE_NUMBER,       /* a number with a fraction or an exponent */
	JSON_TYPE_STRING,
	JSON_TYPE_ARRAY,
	JSON_TYPE_OBJECT,
	JSON_TYPE_COUNT
};

/* What json_scan_member() found; all of it is valid only when it returned JSON_OK. */
struct json_member {
	enum json_type document;        /* the type of the whole text */
	unsigned count;                 /* how often the member appears in the top-level object */
	enum json_type type;            /* the type of its (last) value, when count > 0 */
	const char *value;              /* that value's token, borrowed from buf; NULL if count == 0 */
	size_t len;                     /* the token's length in bytes */
};

/*
 * Validates buf[0..len) (need not be NUL-terminated; a NUL byte anywhere is
 * malformed) as one JSON text, surrounded by optional whitespace, and finds
 * the member `name` of the top-level object.  Nested members of the same name
 * do not count.  The member name in the text matches after its escapes are
 * decoded ("\u006eumber" is "number"); `name` must be ASCII, without NUL.
 *
 * Returns JSON_OK and fills *out, or the error; *out is untouched on error.
 * A text that is not an object is JSON_OK with out->count == 0.
 */
enum json_err json_scan_member(const char *buf, size_t len, const char *name, struct json_member *out);

/*
 * The opt-in string form of int64 for JSON this worker relays but does not
 * build (the ledger's page, built by its Lua script): copies in[0..len) to
 * out, with every number that is the value of a member named one of names
 * (NULL-terminated; at any depth) wrapped in double quotes: "sum":-5 becomes
 * "sum":"-5".  Strings are copied as they are, so a member name or number
 * inside a string value is never touched.  in must be valid JSON (it is
 * trusted output, not input).  out NULL: nothing is written, the length is
 * only measured.  Returns the length of the result (len plus 2 per number).
 */
size_t json_quote_int_members(const char *in, size_t len, const char *const *names, char *out);

#endif
