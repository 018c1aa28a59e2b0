#include "body.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static size_t body_limit = 4096;

static const char *const messages[BODY_ERR_COUNT] = {
	[BODY_OK] = "ok",
	[BODY_MALFORMED] = "body is not valid JSON",
	[BODY_TOO_DEEP] = "body nests deeper than 32 levels",
	[BODY_NOT_OBJECT] = "body must be a JSON object",
	[BODY_FIELD_MISSING] = "is required",
	[BODY_FIELD_DUPLICATE] = "must appear only once",
	[BODY_FIELD_NOT_INTEGER] = "must be a JSON integer (no fraction, exponent, quotes)",
	[BODY_FIELD_OUT_OF_RANGE] = "must be within [-9223372036854775808, 9223372036854775807]",
};

const char *body_strerror(enum body_err err)
{
	return err < BODY_ERR_COUNT ? messages[err] : "unknown error";
}

/* ---- a strict JSON validator that remembers one top-level member ---- */

struct parser {
	const char *p;          /* next byte */
	const char *end;        /* one past the last byte */
	const char *field;      /* member name to capture at the top level */
	const char *value;      /* its value token, if seen */
	const char *value_end;
	int seen;               /* how many times it was seen */
	bool too_deep;
};

static void skip_ws(struct parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
		ps->p++;
}

static bool parse_value(struct parser *ps, int depth);

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool parse_hex4(struct parser *ps, unsigned *out)
{
	unsigned v = 0;

	if (ps->end - ps->p < 4)
		return false;
	for (int i = 0; i < 4; i++) {
		int d = hex_digit(ps->p[i]);

		if (d < 0)
			return false;
		v = v * 16 + (unsigned)d;
	}
	ps->p += 4;
	*out = v;
	return true;
}

/* Validates one UTF-8 sequence starting at ps->p (a byte >= 0x80). */
static bool skip_utf8(struct parser *ps)
{
	const unsigned char *s = (const unsigned char *)ps->p;
	size_t left = (size_t)(ps->end - ps->p);
	unsigned cp;
	size_t n;

	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return false;
	}
	if (left < n)
		return false;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return false;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* No overlong forms, no surrogates, nothing above U+10FFFF. */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return false;
	ps->p += n;
	return true;
}

/*
 * Parses a string.  If name is not NULL, the decoded text (up to cap-1 bytes)
 * is written there and *name_len set; longer names set *name_len to cap.
 */
static bool parse_string(struct parser *ps, char *name, size_t cap, size_t *name_len)
{
	size_t len = 0;

	ps->p++; /* opening quote */
	while (ps->p < ps->end) {
		unsigned char c = (unsigned char)*ps->p;
		unsigned cp = c;

		if (c == '"') {
			ps->p++;
			if (name_len != NULL)
				*name_len = len;
			return true;
		}
		if (c < 0x20)
			return false;
		if (c == '\\') {
			if (ps->end - ps->p < 2)
				return false;
			ps->p++;
			switch (*ps->p++) {
			case '"': cp = '"'; break;
			case '\\': cp = '\\'; break;
			case '/': cp = '/'; break;
			case 'b': cp = '\b'; break;
			case 'f': cp = '\f'; break;
			case 'n': cp = '\n'; break;
			case 'r': cp = '\r'; break;
			case 't': cp = '\t'; break;
			case 'u':
				if (!parse_hex4(ps, &cp))
					return false;
				break;
			default:
				return false;
			}
		} else if (c >= 0x80) {
			if (!skip_utf8(ps))
				return false;
			cp = 0x80; /* not ASCII: cannot match an ASCII member name */
		} else {
			ps->p++;
		}
		if (name != NULL) {
			if (cp < 0x80 && cp != 0 && len + 1 < cap)
				name[len++] = (char)cp;
			else
				len = cap; /* cannot match */
		}
	}
	return false;
}

static bool parse_digits(struct parser *ps)
{
	const char *start = ps->p;

	while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
		ps->p++;
	return ps->p > start;
}

/* RFC 8259 section 6: -? (0 | [1-9][0-9]*) frac? exp? */
static bool parse_number(struct parser *ps)
{
	if (ps->p < ps->end && *ps->p == '-')
		ps->p++;
	if (ps->p >= ps->end)
		return false;
	if (*ps->p == '0')
		ps->p++;
	else if (!parse_digits(ps))
		return false;
	if (ps->p < ps->end && *ps->p == '.') {
		ps->p++;
		if (!parse_digits(ps))
			return false;
	}
	if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
		ps->p++;
		if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
			ps->p++;
		if (!parse_digits(ps))
			return false;
	}
	return true;
}

static bool parse_literal(struct parser *ps, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return false;
	ps->p += n;
	return true;
}

static bool parse_object(struct parser *ps, int depth)
{
	ps->p++; /* '{' */
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		return true;
	}
	for (;;) {
		char name[16];
		size_t name_len = 0;
		bool capture;
		const char *value;

		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != '"' ||
		    !parse_string(ps, name, sizeof(name), &name_len))
			return false;
		capture = depth == 1 && name_len == strlen(ps->field) &&
		          memcmp(name, ps->field, name_len) == 0;
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != ':')
			return false;
		ps->p++;
		skip_ws(ps);
		value = ps->p;
		if (!parse_value(ps, depth))
			return false;
		if (capture) {
			ps->seen++;
			ps->value = value;
			ps->value_end = ps->p;
		}
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == '}') {
			ps->p++;
			return true;
		}
		return false;
	}
}

static bool parse_array(struct parser *ps, int depth)
{
	ps->p++; /* '[' */
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return true;
	}
	for (;;) {
		skip_ws(ps);
		if (!parse_value(ps, depth))
			return false;
		skip_ws(ps);
		if (ps->p < ps->end && *ps->p == ',') {
			ps->p++;
			continue;
		}
		if (ps->p < ps->end && *ps->p == ']') {
			ps->p++;
			return true;
		}
		return false;
	}
}

/* depth is the nesting level of the value's container (0 for the document). */
static bool parse_value(struct parser *ps, int depth)
{
	if (ps->p >= ps->end)
		return false;
	switch (*ps->p) {
	case '{':
	case '[':
		if (depth >= BODY_MAX_DEPTH) {
			ps->too_deep = true;
			return false;
		}
		return *ps->p == '{' ? parse_object(ps, depth + 1) : parse_array(ps, depth + 1);
	case '"':
		return parse_string(ps, NULL, 0, NULL);
	case 't':
		return parse_literal(ps, "true");
	case 'f':
		return parse_literal(ps, "false");
	case 'n':
		return parse_literal(ps, "null");
	default:
		return parse_number(ps);
	}
}

/* Converts an integer token (-?digits, already validated) to int64. */
static enum body_err token_to_int64(const char *s, const char *end, int64_t *out)
{
	bool negative = *s == '-';
	uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	uint64_t v = 0;

	if (negative)
		s++;
	for (; s < end; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (d > 9)
			return BODY_FIELD_NOT_INTEGER;
		if (v > (limit - d) / 10)
			return BODY_FIELD_OUT_OF_RANGE;
		v = v * 10 + d;
	}
	if (negative)
		*out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
	else
		*out = (int64_t)v;
	return BODY_OK;
}

enum body_err body_parse_int64_field(const char *buf, size_t len, const char *field, int64_t *out)
{
	struct parser ps = { .p = buf, .end = buf + len, .field = field };
	bool is_object;
	char first;

	skip_ws(&ps);
	is_object = ps.p < ps.end && *ps.p == '{';
	if (!parse_value(&ps, 0))
		return ps.too_deep ? BODY_TOO_DEEP : BODY_MALFORMED;
	skip_ws(&ps);
	if (ps.p != ps.end)
		return BODY_MALFORMED;
	if (!is_object)
		return BODY_NOT_OBJECT;
	if (ps.seen == 0)
		return BODY_FIELD_MISSING;
	if (ps.seen > 1)
		return BODY_FIELD_DUPLICATE;

	/* An integer is a number token without '.', 'e' or 'E'. */
	first = *ps.value;
	if (!(first == '-' || (first >= '0' && first <= '9')) ||
	    memchr(ps.value, '.', (size_t)(ps.value_end - ps.value)) != NULL ||
	    memchr(ps.value, 'e', (size_t)(ps.value_end - ps.value)) != NULL ||
	    memchr(ps.value, 'E', (size_t)(ps.value_end - ps.value)) != NULL)
		return BODY_FIELD_NOT_INTEGER;
	return token_to_int64(ps.value, ps.value_end, out);
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
	enum body_err err = body_parse_int64_field(buf, len, field, out);

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
