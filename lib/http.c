#include "http.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "decimal.h"
#include "log.h"

static const struct problem_info problems[PROBLEM_COUNT] = {
	[PROBLEM_MALFORMED_JSON] = { 400, "malformed-json", "Malformed JSON body" },
	[PROBLEM_BODY_NOT_OBJECT] = { 400, "body-not-object", "Body is not a JSON object" },
	[PROBLEM_INVALID_NUMBER] = { 400, "invalid-number", "Invalid number" },
	[PROBLEM_IDEMPOTENCY_KEY_MISSING] = { 400, "idempotency-key-missing", "Idempotency-Key required" },
	[PROBLEM_IDEMPOTENCY_KEY_INVALID] = { 400, "idempotency-key-invalid", "Invalid Idempotency-Key" },
	[PROBLEM_INVALID_QUERY] = { 400, "invalid-query", "Invalid query parameter" },
	[PROBLEM_INVALID_SUM_NAME] = { 400, "invalid-sum-name", "Invalid sum name" },
	[PROBLEM_UNAUTHORIZED] = { 401, "unauthorized", "API key required" },
	[PROBLEM_FORBIDDEN] = { 403, "forbidden", "API key not accepted" },
	[PROBLEM_ADMIN_REQUIRED] = { 403, "admin-required", "Admin API key required" },
	[PROBLEM_NOT_FOUND] = { 404, "not-found", "Not found" },
	[PROBLEM_LEDGER_OFF] = { 404, "ledger-off", "The ledger is turned off" },
	[PROBLEM_SUM_NOT_FOUND] = { 404, "sum-not-found", "No such sum" },
	[PROBLEM_METHOD_NOT_ALLOWED] = { 405, "method-not-allowed", "Method not allowed" },
	[PROBLEM_OUT_OF_RANGE] = { 409, "sum-out-of-range", "Sum would leave the int64 range" },
	[PROBLEM_TOO_MANY_SUMS] = { 409, "too-many-sums", "Too many sums" },
	[PROBLEM_LENGTH_REQUIRED] = { 411, "length-required", "Request body required" },
	[PROBLEM_BODY_TOO_LARGE] = { 413, "body-too-large", "Request body too large" },
	[PROBLEM_UNSUPPORTED_MEDIA_TYPE] = { 415, "unsupported-media-type", "Content-Type must be application/json" },
	[PROBLEM_IDEMPOTENCY_CONFLICT] = { 422, "idempotency-key-conflict", "Idempotency-Key reused with another number" },
	[PROBLEM_RATE_LIMITED] = { 429, "rate-limited", "Too many requests" },
	[PROBLEM_SUM_NOT_INTEGER] = { 500, "sum-not-integer", "Stored sum is not an integer" },
	[PROBLEM_REDIS_UNAVAILABLE] = { 503, "redis-unavailable", "Storage unavailable" },
	[PROBLEM_REDIS_FULL] = { 503, "redis-full", "Storage full" },
	[PROBLEM_OUTCOME_UNKNOWN] = { 503, "outcome-unknown", "Outcome unknown" },
	[PROBLEM_NOT_REPLICATED] = { 503, "not-replicated", "Change not confirmed by replicas" },
};

const struct problem_info *http_problem_info(enum problem p)
{
	return &problems[p < PROBLEM_COUNT ? p : PROBLEM_REDIS_UNAVAILABLE];
}

const char *http_status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

const char *http_param(const struct request *r, const char *name)
{
	size_t n = strlen(name);

	/* The first byte rules out most of the ~30 variables without a call. */
	for (char *const *p = r->envp; p != NULL && *p != NULL; p++)
		if ((*p)[0] == name[0] && strncmp(*p, name, n) == 0 && (*p)[n] == '=')
			return *p + n + 1;
	return NULL;
}

bool http_request_id_is_sane(const char *id)
{
	size_t n = 0;

	for (; id[n] != '\0'; n++) {
		char c = id[n];

		if (n == HTTP_REQUEST_ID_MAX)
			return false;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '-'))
			return false;
	}
	return n > 0;
}

/*
 * Request ids need to be unique, not secret: a per-process xorshift generator
 * seeded once from getrandom(), so the hot path makes no system call.  A
 * worker never forks after its first request (a forked copy would repeat ids).
 */
void http_generate_request_id(char out[33])
{
	static uint64_t state[2];
	static bool seeded;
	static const char hex[] = "0123456789abcdef";

	if (!seeded) {
		if (getrandom(state, sizeof(state), 0) != sizeof(state)) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			state[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
			state[1] = (uint64_t)ts.tv_sec * 0x9e3779b97f4a7c15ULL;
		}
		state[0] |= 1;
		seeded = true;
	}
	for (int half = 0; half < 2; half++) {
		/* xorshift128+ */
		uint64_t s1 = state[0];
		const uint64_t s0 = state[1];
		uint64_t v;

		state[0] = s0;
		s1 ^= s1 << 23;
		state[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
		v = state[1] + s0;
		for (int i = 0; i < 16; i++)
			out[half * 16 + i] = hex[(v >> (60 - 4 * i)) & 15];
	}
	out[32] = '\0';
}

static enum http_method parse_method(const char *m)
{
	static const char *const names[HTTP_OTHER] = {
		[HTTP_GET] = "GET", [HTTP_HEAD] = "HEAD", [HTTP_POST] = "POST",
		[HTTP_PUT] = "PUT", [HTTP_DELETE] = "DELETE",
	};

	for (int i = 0; m != NULL && i < HTTP_OTHER; i++)
		if (strcmp(m, names[i]) == 0)
			return (enum http_method)i;
	return HTTP_OTHER;
}

void http_request_init(struct request *r, char *const *envp, http_read_fn read_body, void *ctx)
{
	const char *uri;
	const char *id;

	memset(r, 0, sizeof(*r));
	r->envp = envp;
	r->read_body = read_body;
	r->read_ctx = ctx;
	r->method = parse_method(http_param(r, "REQUEST_METHOD"));

	/*
	 * Route on the raw REQUEST_URI (no percent-decoding), so "/abacus/%73um"
	 * is not "/abacus/sum": one spelling per route, under lighttpd and nginx.
	 */
	uri = http_param(r, "REQUEST_URI");
	if (uri == NULL)
		uri = http_param(r, "SCRIPT_NAME");
	if (uri == NULL)
		uri = "";
	r->path = uri;
	r->path_len = strcspn(uri, "?");

	id = http_param(r, "HTTP_X_REQUEST_ID");
	if (id != NULL && http_request_id_is_sane(id))
		snprintf(r->request_id, sizeof(r->request_id), "%s", id);
	else
		http_generate_request_id(r->request_id);
}

bool http_path_is(const struct request *r, const char *route)
{
	size_t n = strlen(route);

	return r->path_len == n && memcmp(r->path, route, n) == 0;
}

/* The query's pairs, one at a time: *at walks "a=1&b=2"; false at its end. */
static bool next_pair(const char **at, const char *end, const char **name, size_t *name_len,
                      const char **value, size_t *value_len)
{
	const char *amp, *eq;

	while (*at < end && **at == '&')
		(*at)++;
	if (*at >= end)
		return false;
	amp = memchr(*at, '&', (size_t)(end - *at));
	if (amp == NULL)
		amp = end;
	eq = memchr(*at, '=', (size_t)(amp - *at));
	*name = *at;
	*name_len = (size_t)((eq != NULL ? eq : amp) - *at);
	*value = eq != NULL ? eq + 1 : NULL;
	*value_len = eq != NULL ? (size_t)(amp - eq - 1) : 0;
	*at = amp;
	return true;
}

static const char *query_end(const struct request *r, const char **start)
{
	const char *q = r->path + r->path_len;

	*start = *q == '?' ? q + 1 : q;
	return *start + strlen(*start);
}

enum http_query http_query_get(const struct request *r, const char *name, const char **value, size_t *len)
{
	const char *at, *end = query_end(r, &at), *n, *v;
	size_t nl, vl, want = strlen(name);
	enum http_query found = HTTP_QUERY_ABSENT;

	while (next_pair(&at, end, &n, &nl, &v, &vl)) {
		if (nl != want || memcmp(n, name, nl) != 0)
			continue;
		if (found == HTTP_QUERY_ONE)
			return HTTP_QUERY_REPEATED;
		found = HTTP_QUERY_ONE;
		*value = v != NULL ? v : "";
		*len = vl;
	}
	return found;
}

bool http_query_only(const struct request *r, const char *const *names)
{
	const char *at, *end = query_end(r, &at), *n, *v;
	size_t nl, vl;

	while (next_pair(&at, end, &n, &nl, &v, &vl)) {
		bool known = false;

		for (const char *const *k = names; *k != NULL && !known; k++)
			known = strlen(*k) == nl && memcmp(*k, n, nl) == 0;
		if (!known || v == NULL)
			return false;
	}
	return true;
}

bool http_int64_form_or_problem(struct request *r)
{
	const char *v;
	size_t len;

	switch (http_query_get(r, "int64", &v, &len)) {
	case HTTP_QUERY_ABSENT:
		return true;
	case HTTP_QUERY_ONE:
		if (len == 6 && memcmp(v, "string", 6) == 0) {
			r->int64_as_string = true;
			return true;
		}
		break;
	case HTTP_QUERY_REPEATED:
		break;
	}
	http_problem(r, PROBLEM_INVALID_QUERY, "int64 takes one value, string (int64 fields as JSON strings), once");
	return false;
}

void http_add_header(struct request *r, const char *name, const char *value)
{
	struct response *resp = &r->resp;
	size_t name_len = strlen(name), value_len = strlen(value);
	char *at = resp->headers + resp->headers_len;

	if (strpbrk(value, "\r\n") != NULL)
		return;
	/* "Name: value\r\n" and the NUL, or nothing at all. */
	if (name_len + value_len + 5 > sizeof(resp->headers) - resp->headers_len)
		return;
	at = stpcpy(at, name);
	at = stpcpy(at, ": ");
	at = stpcpy(at, value);
	at = stpcpy(at, "\r\n");
	resp->headers_len = (size_t)(at - resp->headers);
}

void http_reply_json(struct request *r, int status, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(r->resp.body, sizeof(r->resp.body), fmt, ap);
	va_end(ap);
	r->resp.status = status;
	r->resp.content_type = "application/json";
	r->resp.body_ext = NULL;
	r->resp.body_len = n < 0 ? 0 : (size_t)n < sizeof(r->resp.body) ? (size_t)n : sizeof(r->resp.body) - 1;
}

/* The problem body up to (not including) its closing brace; returns the length. */
static size_t problem_start(struct request *r, enum problem p, const char *detail)
{
	const struct problem_info *info = http_problem_info(p);
	char escaped[512];
	size_t elen = 0;
	int n;

	if (!log_json_escape(escaped, sizeof(escaped), &elen, detail, strlen(detail)))
		escaped[0] = '\0';
	n = snprintf(r->resp.body, sizeof(r->resp.body),
	             "{\"type\":\"urn:abacus:problem:%s\",\"title\":\"%s\",\"status\":%d,\"detail\":\"%s\"",
	             info->slug, info->title, info->status, escaped);
	r->resp.status = info->status;
	r->resp.content_type = "application/problem+json";
	r->resp.body_ext = NULL;
	return n < 0 ? 0 : (size_t)n < sizeof(r->resp.body) - 2 ? (size_t)n : sizeof(r->resp.body) - 2;
}

void http_problem(struct request *r, enum problem p, const char *detail)
{
	size_t len = problem_start(r, p, detail);

	r->resp.body[len++] = '}';
	r->resp.body[len] = '\0';
	r->resp.body_len = len;
}

void http_problem_field(struct request *r, enum problem p, const char *detail,
                        const char *field, const char *message)
{
	size_t len = problem_start(r, p, detail);
	int n = snprintf(r->resp.body + len, sizeof(r->resp.body) - len,
	                 ",\"errors\":[{\"field\":\"%s\",\"message\":\"%s\"}]}", field, message);

	if (n > 0 && (size_t)n < sizeof(r->resp.body) - len) {
		r->resp.body_len = len + (size_t)n;
	} else {
		r->resp.body[len++] = '}';
		r->resp.body[len] = '\0';
		r->resp.body_len = len;
	}
}

const char *http_body(const struct request *r, size_t *len)
{
	*len = r->resp.body_len;
	return r->resp.body_ext != NULL ? r->resp.body_ext : r->resp.body;
}

/* Appends while there is room; once something did not fit, nothing more is added. */
struct sink {
	char *at, *end;
	bool full;
};

static void put(struct sink *s, const char *text, size_t n)
{
	if (s->full || (size_t)(s->end - s->at) < n) {
		s->full = true;
		return;
	}
	memcpy(s->at, text, n);
	s->at += n;
}

static void put_str(struct sink *s, const char *text)
{
	put(s, text, strlen(text));
}

static void put_int(struct sink *s, int64_t v)
{
	char digits[DECIMAL_MAX];

	put(s, digits, decimal_format(digits, v));
}

void http_reply_json_int(struct request *r, int status, const char *before, int64_t v,
                         const char *after)
{
	struct sink s = { r->resp.body, r->resp.body + sizeof(r->resp.body) - 1, false };

	put_str(&s, before);
	if (r->int64_as_string)
		put_str(&s, "\"");
	put_int(&s, v);
	if (r->int64_as_string)
		put_str(&s, "\"");
	put_str(&s, after);
	if (s.full)
		s.at = r->resp.body;    /* cannot happen with the bodies we send; never half a body */
	*s.at = '\0';
	r->resp.status = status;
	r->resp.content_type = "application/json";
	r->resp.body_ext = NULL;
	r->resp.body_len = (size_t)(s.at - r->resp.body);
}

size_t http_format_head(const struct request *r, char *out, size_t cap)
{
	const struct response *resp = &r->resp;
	int status = resp->status != 0 ? resp->status : 500;
	struct sink s = { out, out + cap, false };

	put_str(&s, "Status: ");
	put_int(&s, status);
	put_str(&s, " ");
	put_str(&s, http_status_text(status));
	put_str(&s, "\r\nContent-Type: ");
	put_str(&s, resp->content_type != NULL ? resp->content_type : "application/json");
	put_str(&s, "\r\nContent-Length: ");
	put_int(&s, (int64_t)resp->body_len);
	put_str(&s, "\r\nX-Request-ID: ");
	put_str(&s, r->request_id);
	put_str(&s, "\r\nCache-Control: no-store\r\n");
	put(&s, resp->headers, resp->headers_len);
	put_str(&s, "\r\n");
	/* Room for a NUL too, as snprintf needed: callers may treat it as a string. */
	if (s.full || s.at == s.end)
		return 0;
	*s.at = '\0';
	return (size_t)(s.at - out);
}

bool http_store_outcome(struct request *r, enum store_status status, bool keyed)
{
	static const struct { enum problem problem; const char *detail; } failures[STORE_STATUS_COUNT] = {
		[STORE_KEY_CONFLICT] = { PROBLEM_IDEMPOTENCY_CONFLICT,
		                         "this Idempotency-Key was already used with another number" },
		[STORE_OVERFLOW] = { PROBLEM_OUT_OF_RANGE, "the result would leave the int64 range; the sum is unchanged" },
		[STORE_NOT_INTEGER] = { PROBLEM_SUM_NOT_INTEGER, "the stored sum is not an integer; an operator must repair it" },
		[STORE_RATE_LIMITED] = { PROBLEM_RATE_LIMITED, "rate limit exceeded; retry after Retry-After seconds" },
		[STORE_UNAVAILABLE] = { PROBLEM_REDIS_UNAVAILABLE,
		                        "Redis is unreachable or refusing; nothing was changed; retry shortly" },
		[STORE_FULL] = { PROBLEM_REDIS_FULL,
		                 "Redis is out of memory and refuses changes; nothing was changed; reads still work" },
		[STORE_OUTCOME_UNKNOWN] = { PROBLEM_OUTCOME_UNKNOWN,
		                            "the change was sent to Redis and no answer came in time: it may have been "
		                            "applied; read the sum before repeating it" },
		[STORE_NOT_FOUND] = { PROBLEM_SUM_NOT_FOUND,
		                      "no sum of this name: it was never written or was deleted" },
		[STORE_TOO_MANY_SUMS] = { PROBLEM_TOO_MANY_SUMS,
		                          "this would create a sum past ABACUS_MAX_SUMS; nothing was changed; "
		                          "delete unused sums or raise the limit" },
		[STORE_NOT_REPLICATED] = { PROBLEM_NOT_REPLICATED,
		                           "the change was applied on the Redis master but not enough replicas confirmed "
		                           "it in time; read the sum before repeating it" },
	};
	/* A keyed addition, unlike a set, may simply be retried (docs/API.md, "Retrying"). */
	static const char *const keyed_detail[STORE_STATUS_COUNT] = {
		[STORE_OUTCOME_UNKNOWN] = "the addition was sent to Redis and no answer came in time: it may have been "
		                          "applied; retry with the same Idempotency-Key and number (it applies once or "
		                          "replays)",
		[STORE_NOT_REPLICATED] = "the addition was applied on the Redis master but not enough replicas confirmed "
		                         "it in time; retry with the same Idempotency-Key and number (it replays)",
	};
	const char *detail;

	if (status >= STORE_STATUS_COUNT || failures[status].detail == NULL)
		return true;            /* STORE_OK, STORE_REPLAYED: no failure */
	detail = failures[status].detail;
	if (keyed && keyed_detail[status] != NULL)
		detail = keyed_detail[status];
	http_problem(r, failures[status].problem, detail);
	if (http_problem_info(failures[status].problem)->status == 503)
		http_add_header(r, "Retry-After", "1");
	return false;
}
