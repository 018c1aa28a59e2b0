#include "json.h"

#include <stdbool.h>
#include <string.h>

struct scanner {
	const char *p;                  /* next byte */
	const char *end;                /* one past the last byte */
	const char *name;               /* the top-level member to find */
	struct json_member found;       /* what was found of it so far */
	bool too_deep;                  /* the failure was the depth limit */
};

/* Matching a member name while its string is decoded, with no copy and no length limit. */
struct name_match {
	const char *want;               /* the name sought */
	size_t at;                      /* how much of it has matched */
	bool ok;                        /* still matching */
};

static bool scan_value(struct scanner *sc, int depth, enum json_type *type);

/* RFC 8259 section 2: the four insignificant whitespace bytes, nothing else. */
static void skip_ws(struct scanner *sc)
{
	while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
		sc->p++;
}

/* Consumes c if it is the next byte. */
static bool consume(struct scanner *sc, char c)
{
	if (sc->p >= sc->end || *sc->p != c)
		return false;
	sc->p++;
	return true;
}

/* ---- strings ---- */

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

/* The four hex digits of a \u escape.  A lone surrogate is accepted, as RFC 8259 section 8.2 allows. */
static bool scan_hex4(struct scanner *sc, unsigned *cp)
{
	unsigned v = 0;

	if (sc->end - sc->p < 4)
		return false;
	for (int i = 0; i < 4; i++) {
		int d = hex_digit(sc->p[i]);

		if (d < 0)
			return false;
		v = v * 16 + (unsigned)d;
	}
	sc->p += 4;
	*cp = v;
	return true;
}

/* Decodes the escape at sc->p (a backslash) into *cp; RFC 8259 section 7. */
static bool scan_escape(struct scanner *sc, unsigned *cp)
{
	char c;

	if (sc->end - sc->p < 2)
		return false;
	c = sc->p[1];
	sc->p += 2;
	switch (c) {
	case '"': *cp = '"'; return true;
	case '\\': *cp = '\\'; return true;
	case '/': *cp = '/'; return true;
	case 'b': *cp = '\b'; return true;
	case 'f': *cp = '\f'; return true;
	case 'n': *cp = '\n'; return true;
	case 'r': *cp = '\r'; return true;
	case 't': *cp = '\t'; return true;
	case 'u': return scan_hex4(sc, cp);
	default: return false;
	}
}

/* Validates one UTF-8 sequence starting at sc->p (a byte >= 0x80); RFC 3629 section 4. */
static bool scan_utf8(struct scanner *sc)
{
	const unsigned char *s = (const unsigned char *)sc->p;
	size_t left = (size_t)(sc->end - sc->p);
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
	sc->p += n;
	return true;
}

/* One decoded code point of a member name; only ASCII other than NUL can match. */
static void match_code_point(struct name_match *m, unsigned cp)
{
	if (m->ok && cp != 0 && cp < 0x80 && m->want[m->at] == (char)cp)
		m->at++;
	else
		m->ok = false;
}

static bool name_matched(const struct name_match *m)
{
	return m->ok && m->want[m->at] == '\0';
}

/* Scans a string at sc->p (its opening quote), matching it against m unless m is NULL. */
static bool scan_string(struct scanner *sc, struct name_match *m)
{
	sc->p++;
	while (sc->p < sc->end) {
		unsigned char c = (unsigned char)*sc->p;
		unsigned cp = c;

		if (c == '"') {
			sc->p++;
			return true;
		}
		if (c < 0x20)
			return false; /* control characters must be escaped */
		if (c == '\\') {
			if (!scan_escape(sc, &cp))
				return false;
		} else if (c >= 0x80) {
			if (!scan_utf8(sc))
				return false;
			cp = 0x80; /* stands for any non-ASCII code point */
		} else {
			sc->p++;
		}
		if (m != NULL)
			match_code_point(m, cp);
	}
	return false;
}

/* ---- numbers and literals ---- */

static bool scan_digits(struct scanner *sc)
{
	const char *start = sc->p;

	while (sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9')
		sc->p++;
	return sc->p > start;
}

/* RFC 8259 section 6: -? (0 | [1-9][0-9]*) frac? exp?  No '+', no leading zero, no NaN. */
static bool scan_number(struct scanner *sc, enum json_type *type)
{
	*type = JSON_TYPE_INTEGER;
	consume(sc, '-');
	if (sc->p >= sc->end)
		return false;
	if (!consume(sc, '0') && !scan_digits(sc))
		return false;
	if (consume(sc, '.')) {
		*type = JSON_TYPE_NUMBER;
		if (!scan_digits(sc))
			return false;
	}
	if (consume(sc, 'e') || consume(sc, 'E')) {
		*type = JSON_TYPE_NUMBER;
		if (!consume(sc, '+'))
			consume(sc, '-');
		if (!scan_digits(sc))
			return false;
	}
	return true;
}

static bool scan_literal(struct scanner *sc, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0)
		return false;
	sc->p += n;
	return true;
}

/* ---- containers ---- */

/* One "name": value pair of an object at `depth`, and the whitespace after it. */
static bool scan_member(struct scanner *sc, int depth)
{
	struct name_match m = { .want = sc->name, .ok = depth == 1 };
	const char *value;
	enum json_type type;

	skip_ws(sc);
	if (sc->p >= sc->end || *sc->p != '"' || !scan_string(sc, &m))
		return false;
	skip_ws(sc);
	if (!consume(sc, ':'))
		return false;
	skip_ws(sc);
	value = sc->p;
	if (!scan_value(sc, depth, &type))
		return false;
	if (name_matched(&m)) {
		/* Counted rather than refused here: a duplicate is the caller's error to name. */
		sc->found.count++;
		sc->found.type = type;
		sc->found.value = value;
		sc->found.len = (size_t)(sc->p - value);
	}
	skip_ws(sc);
	return true;
}

static bool scan_object(struct scanner *sc, int depth)
{
	sc->p++; /* '{' */
	skip_ws(sc);
	if (consume(sc, '}'))
		return true;
	do {
		if (!scan_member(sc, depth))
			return false;
	} while (consume(sc, ','));
	return consume(sc, '}');
}

static bool scan_array(struct scanner *sc, int depth)
{
	enum json_type type;

	sc->p++; /* '[' */
	skip_ws(sc);
	if (consume(sc, ']'))
		return true;
	do {
		skip_ws(sc);
		if (!scan_value(sc, depth, &type))
			return false;
		skip_ws(sc);
	} while (consume(sc, ','));
	return consume(sc, ']');
}

/*
 * depth is the nesting level of the value's container (0 for the document).
 * The limit bounds the recursion, so that no body can exhaust the stack.
 */
static bool scan_value(struct scanner *sc, int depth, enum json_type *type)
{
	if (sc->p >= sc->end)
		return false;
	switch (*sc->p) {
	case '{':
	case '[':
		if (depth >= JSON_MAX_DEPTH) {
			sc->too_deep = true;
			return false;
		}
		*type = *sc->p == '{' ? JSON_TYPE_OBJECT : JSON_TYPE_ARRAY;
		return *sc->p == '{' ? scan_object(sc, depth + 1) : scan_array(sc, depth + 1);
	case '"':
		*type = JSON_TYPE_STRING;
		return scan_string(sc, NULL);
	case 't':
		*type = JSON_TYPE_BOOLEAN;
		return scan_literal(sc, "true");
	case 'f':
		*type = JSON_TYPE_BOOLEAN;
		return scan_literal(sc, "false");
	case 'n':
		*type = JSON_TYPE_NULL;
		return scan_literal(sc, "null");
	default:
		return scan_number(sc, type);
	}
}

enum json_err json_scan_member(const char *buf, size_t len, const char *name, struct json_member *out)
{
	struct scanner sc = { .p = buf, .end = buf + len, .name = name };
	enum json_type document;

	skip_ws(&sc);
	if (!scan_value(&sc, 0, &document))
		return sc.too_deep ? JSON_TOO_DEEP : JSON_MALFORMED;
	skip_ws(&sc);
	if (sc.p != sc.end)
		return JSON_MALFORMED;
	sc.found.document = document;
	*out = sc.found;
	return JSON_OK;
}

/* True if in[0..n) is one of names. */
static bool name_in(const char *in, size_t n, const char *const *names)
{
	for (const char *const *k = names; *k != NULL; k++)
		if (strlen(*k) == n && memcmp(*k, in, n) == 0)
			return true;
	return false;
}

static void emit(char *out, size_t *at, const char *from, size_t n)
{
	if (out != NULL)
		memcpy(out + *at, from, n);
	*at += n;
}

size_t json_quote_int_members(const char *in, size_t len, const char *const *names, char *out)
{
	size_t at = 0, i = 0;
	const char *last = NULL;        /* the last string's contents, a member's name if ':' follows */
	size_t last_len = 0;
	bool quote_next = false;        /* after "name": of a member to quote */

	while (i < len) {
		char c = in[i];

		if (c == '"') {
			size_t start = ++i;

			while (i < len && in[i] != '"')
				i += in[i] == '\\' ? 2 : 1;
			if (i > len)
				i = len;
			last = in + start;
			last_len = i - start;
			emit(out, &at, in + start - 1, i - start + (i < len ? 2 : 1));
			i += i < len;
			quote_next = false;
		} else if (c == ':') {
			quote_next = last != NULL && name_in(last, last_len, names);
			emit(out, &at, in + i++, 1);
		} else if (quote_next && (c == '-' || (c >= '0' && c <= '9'))) {
			size_t start = i;

			while (i < len && (in[i] == '-' || in[i] == '+' || in[i] == '.' || in[i] == 'e' || in[i] == 'E' ||
			                   (in[i] >= '0' && in[i] <= '9')))
				i++;
			emit(out, &at, "\"", 1);
			emit(out, &at, in + start, i - start);
			emit(out, &at, "\"", 1);
			quote_next = false;
		} else {
			if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
				quote_next = false;
			emit(out, &at, in + i++, 1);
		}
	}
	return at;
}
