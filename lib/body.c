#include "body.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "decimal.h"
#include "json.h"

static size_t body_limit = 4096;

_Static_assert(JSON_MAX_DEPTH == 32, "BODY_TOO_DEEP's message names the limit");

static const char *const messages[BODY_ERR_COUNT] = {
	[BODY_OK] = "ok",
	[BODY_MALFORMED] = "body is not valid JSON",
	[BODY_TOO_DEEP] = "body nests deeper than 32 levels",
	[BODY_NOT_OBJECT] = "body must be a JSON object",
	[BODY_FIELD_MISSING] = "is required",
	[BODY_FIELD_DUPLICATE] = "must appear only once",
	[BODY_FIELD_NOT_INTEGER] = "must be a JSON integer (no fraction, exponent, quotes)",
	[BODY_FIELD_OUT_OF_RANGE] = "must be within [-9223372036854775808, 9223372036854775807]",
	[BODY_FIELD_NOT_DECIMAL] = "must be a JSON integer or a string of its canonical decimal (no space, +, leading zero, fraction, escape)",
};

const char *body_strerror(enum body_err err)
{
	return err < BODY_ERR_COUNT ? messages[err] : "unknown error";
}

/*
 * A decimal int64 at token (len bytes): BODY_OK, BODY_FIELD_OUT_OF_RANGE, or
 * not_decimal.  A JSON integer token may be "-0" (RFC 8259: it is 0; the
 * scanner has already refused "+", "01" and "1.0"); the string form may not.
 */
static enum body_err int64_from(const char *token, size_t len, enum decimal_minus_zero minus_zero,
                                enum body_err not_decimal, int64_t *out)
{
	switch (decimal_parse_int64(token, len, minus_zero, out)) {
	case DECIMAL_OK:
		return BODY_OK;
	case DECIMAL_OUT_OF_RANGE:
		return BODY_FIELD_OUT_OF_RANGE;
	default:
		return not_decimal;
	}
}

enum body_err body_parse_int64_field(const char *buf, size_t len, const char *field, int64_t *out)
{
	return body_parse_int64_field_as(buf, len, field, BODY_INT64_NUMBER, out);
}

enum body_err body_parse_int64_field_as(const char *buf, size_t len, const char *field,
                                        enum body_int64_form form, int64_t *out)
{
	struct json_member m;

	switch (json_scan_member(buf, len, field, &m)) {
	case JSON_OK:
		break;
	case JSON_TOO_DEEP:
		return BODY_TOO_DEEP;
	default:
		return BODY_MALFORMED;
	}
	if (m.document != JSON_TYPE_OBJECT)
		return BODY_NOT_OBJECT;
	if (m.count == 0)
		return BODY_FIELD_MISSING;
	if (m.count > 1)
		return BODY_FIELD_DUPLICATE;
	/* The string form: the token with its quotes, holding a canonical decimal and nothing else. */
	if (form == BODY_INT64_NUMBER_OR_STRING && m.type == JSON_TYPE_STRING)
		return m.len < 2 ? BODY_FIELD_NOT_DECIMAL
		                 : int64_from(m.value + 1, m.len - 2, DECIMAL_REFUSE_MINUS_ZERO, BODY_FIELD_NOT_DECIMAL, out);
	if (m.type != JSON_TYPE_INTEGER)
		return form == BODY_INT64_NUMBER_OR_STRING ? BODY_FIELD_NOT_DECIMAL : BODY_FIELD_NOT_INTEGER;
	return int64_from(m.value, m.len, DECIMAL_ALLOW_MINUS_ZERO, BODY_FIELD_NOT_INTEGER, out);
}

bool body_media_type_is_json(const char *content_type)
{
	static const char json[] = "application/json";
	const char *p = content_type;

	if (p == NULL)
		return true;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '\0')
		return true;
	if (strncasecmp(p, json, sizeof(json) - 1) != 0)
		return false;
	p += sizeof(json) - 1;
	while (*p == ' ' || *p == '\t')
		p++;
	return *p == '\0' || *p == ';';
}

void body_set_limit(size_t max_bytes)
{
	body_limit = max_bytes;
}

/* Strict CONTENT_LENGTH: digits only.  Returns false if absent or malformed. */
static bool content_length(const struct request *r, size_t *out)
{
	const char *text = http_param(r, "CONTENT_LENGTH");
	size_t v = 0;

	if (text == NULL || *text == '\0')
		return false;
	for (const char *p = text; *p != '\0'; p++) {
		if (*p < '0' || *p > '9' || v > ((size_t)-1 - 9) / 10)
			return false;
		v = v * 10 + (size_t)(*p - '0');
	}
	*out = v;
	return true;
}

static size_t read_all(struct request *r, char *buf, size_t want)
{
	size_t got = 0;

	while (got < want) {
		size_t n = r->read_body(r->read_ctx, buf + got, want - got);

		if (n == 0)
			break;
		got += n;
	}
	return got;
}

static bool parse_or_problem(struct request *r, const char *buf, size_t len, const char *field,
                             int64_t *out)
{
	enum body_err err = body_parse_int64_field_as(buf, len, field,
	                                              r->int64_as_string ? BODY_INT64_NUMBER_OR_STRING : BODY_INT64_NUMBER,
	                                              out);

	switch (err) {
	case BODY_OK:
		return true;
	case BODY_MALFORMED:
	case BODY_TOO_DEEP:
		http_problem(r, PROBLEM_MALFORMED_JSON, body_strerror(err));
		return false;
	case BODY_NOT_OBJECT:
		http_problem(r, PROBLEM_BODY_NOT_OBJECT, body_strerror(err));
		return false;
	default:
		http_problem_field(r, PROBLEM_INVALID_NUMBER, "the request body failed validation",
		                   field, body_strerror(err));
		return false;
	}
}

bool body_int64_or_problem(struct request *r, const char *field, int64_t *out)
{
	size_t len = 0;
	char *buf;
	bool ok;

	if (!content_length(r, &len) || len == 0) {
		http_problem(r, PROBLEM_LENGTH_REQUIRED, "this request needs a JSON body");
		return false;
	}
	if (len > body_limit) {
		http_problem(r, PROBLEM_BODY_TOO_LARGE, "the body is larger than ABACUS_MAX_BODY_BYTES");
		return false;
	}
	if (!body_media_type_is_json(http_param(r, "CONTENT_TYPE"))) {
		http_problem(r, PROBLEM_UNSUPPORTED_MEDIA_TYPE, "send the body as application/json");
		return false;
	}
	buf = malloc(len);
	if (buf == NULL) {
		http_problem(r, PROBLEM_BODY_TOO_LARGE, "the body could not be buffered");
		return false;
	}
	if (read_all(r, buf, len) != len) {
		http_problem(r, PROBLEM_MALFORMED_JSON, "the body is shorter than its Content-Length");
		ok = false;
	} else {
		ok = parse_or_problem(r, buf, len, field, out);
	}
	free(buf);
	return ok;
}
