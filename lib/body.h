#ifndef ABACUS_BODY_H
#define ABACUS_BODY_H

/*
 * Request bodies: {"number": N} and nothing looser (SPEC section 2).  This
 * module is the HTTP side: Content-Length, the media type, the size limit,
 * reading the body and naming what is wrong with it.  The JSON itself is
 * checked by the strict scanner in json.h, which says why it is not json-c.
 * See docs/API.md "Request bodies".
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

enum body_err {
	BODY_OK = 0,
	BODY_MALFORMED,         /* not one valid JSON text (syntax, UTF-8, trailing bytes) */
	BODY_TOO_DEEP,          /* nesting deeper than JSON_MAX_DEPTH (json.h) */
	BODY_NOT_OBJECT,        /* valid JSON, but not an object */
	BODY_FIELD_MISSING,     /* the object has no such member */
	BODY_FIELD_DUPLICATE,   /* the member appears more than once */
	BODY_FIELD_NOT_INTEGER, /* string, boolean, null, fraction, exponent, ... */
	BODY_FIELD_OUT_OF_RANGE,/* an integer outside int64 */
	BODY_FIELD_NOT_DECIMAL, /* (string form) neither an integer nor a string of a canonical decimal */
	BODY_ERR_COUNT
};

/* A constant sentence describing err, for problem details and logs. */
const char *body_strerror(enum body_err err);

/*
 * Parses buf[0..len) (need not be NUL-terminated) as one JSON object and
 * stores its member `field` in *out.  Returns BODY_OK, or the first error;
 * *out is untouched on error.
 */
enum body_err body_parse_int64_field(const char *buf, size_t len, const char *field, int64_t *out);

/*
 * How an int64 may be written: a JSON integer only (SPEC 2), or, with the
 * opt-in ?int64=string (docs/API.md, "Numbers above 2^53"), also a JSON
 * string holding its canonical decimal: "-"? digits, no leading zero, no
 * "-0", no sign "+", no space, no escape.  Out of int64 either way is
 * BODY_FIELD_OUT_OF_RANGE.
 */
enum body_int64_form { BODY_INT64_NUMBER, BODY_INT64_NUMBER_OR_STRING };

/* body_parse_int64_field, in the given form. */
enum body_err body_parse_int64_field_as(const char *buf, size_t len, const char *field,
                                        enum body_int64_form form, int64_t *out);

/*
 * True if a Content-Type names application/json (case-insensitive, parameters
 * such as charset allowed).  NULL or empty (no header) counts as JSON.
 */
bool body_media_type_is_json(const char *content_type);

/* Sets the body size limit (ABACUS_MAX_BODY_BYTES).  Default 4096. */
void body_set_limit(size_t max_bytes);

/*
 * Reads the request body and parses `field` from it, in the string form too
 * when r->int64_as_string.  On failure it has already set the problem
 * response (411, 413, 415 or 400) and returns false.
 */
bool body_int64_or_problem(struct request *r, const char *field, int64_t *out);

#endif
