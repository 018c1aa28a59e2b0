#ifndef ABACUS_HTTP_H
#define ABACUS_HTTP_H

/*
 * One request and its response, independent of FastCGI: the accept loop fills
 * a struct request from the FastCGI parameters and a body reader, handlers
 * build the response in it, and the loop writes http_format_head() plus the
 * body.  Every error status comes from the problem table here (SPEC section 2):
 * handlers name a problem, never a number.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sha256.h"
#include "store_status.h"
#include "sumname.h"

enum http_method {
	HTTP_GET,
	HTTP_HEAD,
	HTTP_POST,
	HTTP_PUT,
	HTTP_DELETE,
	HTTP_OTHER,             /* anything else: 405 on a known path */
	HTTP_METHOD_COUNT
};

/* Every error the API answers; http_problem_info() gives status, slug, title. */
enum problem {
	PROBLEM_MALFORMED_JSON,         /* 400 body is not valid JSON */
	PROBLEM_BODY_NOT_OBJECT,        /* 400 body is JSON but not one object */
	PROBLEM_INVALID_NUMBER,         /* 400 "number" missing, wrong type or out of int64 */
	PROBLEM_IDEMPOTENCY_KEY_MISSING,/* 400 POST without Idempotency-Key */
	PROBLEM_IDEMPOTENCY_KEY_INVALID,/* 400 Idempotency-Key not 1-255 visible ASCII */
	PROBLEM_INVALID_QUERY,          /* 400 a query parameter unknown, repeated or out of range */
	PROBLEM_INVALID_SUM_NAME,       /* 400 a sum's name outside the name rules (lib/sumname.h) */
	PROBLEM_UNAUTHORIZED,           /* 401 X-API-Key missing */
	PROBLEM_FORBIDDEN,              /* 403 X-API-Key unknown */
	PROBLEM_ADMIN_REQUIRED,         /* 403 valid key, but not an admin key */
	PROBLEM_NOT_FOUND,              /* 404 unknown path */
	PROBLEM_LEDGER_OFF,             /* 404 the ledger is turned off (ABACUS_LEDGER_RETENTION_SECONDS=0) */
	PROBLEM_SUM_NOT_FOUND,          /* 404 no sum of that name (never written, or deleted) */
	PROBLEM_METHOD_NOT_ALLOWED,     /* 405 known path, other method */
	PROBLEM_OUT_OF_RANGE,           /* 409 the sum would leave int64 */
	PROBLEM_TOO_MANY_SUMS,          /* 409 a new sum past ABACUS_MAX_SUMS */
	PROBLEM_LENGTH_REQUIRED,        /* 411 body required but absent */
	PROBLEM_BODY_TOO_LARGE,         /* 413 body above ABACUS_MAX_BODY_BYTES */
	PROBLEM_UNSUPPORTED_MEDIA_TYPE, /* 415 body not application/json */
	PROBLEM_IDEMPOTENCY_CONFLICT,   /* 422 key reused with another number */
	PROBLEM_RATE_LIMITED,           /* 429 over the rate limit */
	PROBLEM_SUM_NOT_INTEGER,        /* 500 the stored sum is corrupt */
	PROBLEM_REDIS_UNAVAILABLE,      /* 503 Redis down, slow or refusing; nothing changed */
	PROBLEM_REDIS_FULL,             /* 503 Redis out of memory: a change refused, nothing changed */
	PROBLEM_OUTCOME_UNKNOWN,        /* 503 a change was sent, no answer came: maybe applied */
	PROBLEM_NOT_REPLICATED,         /* 503 applied on the master, too few replicas confirmed it */
	PROBLEM_COUNT
};

struct problem_info {
	int status;             /* HTTP status */
	const char *slug;       /* urn:abacus:problem:<slug> */
	const char *title;      /* short, constant, human-readable */
};

#define HTTP_REQUEST_ID_MAX 128
#define HTTP_HEADERS_MAX 1024
#define HTTP_BODY_MAX 1024

/* Who is calling, as auth decided it. */
struct caller {
	bool admin;                             /* may PUT/DELETE the sum */
	char key_id[SHA256_KEY_ID_LEN + 1];     /* "" when auth is off */
	char limit_id[72];                      /* rate-limit identity: key id or address */
};

struct response {
	int status;                             /* 0 until a reply is set */
	char headers[HTTP_HEADERS_MAX];         /* extra "Name: value\r\n" lines */
	size_t headers_len;
	const char *content_type;               /* static string */
	char body[HTTP_BODY_MAX];               /* inline body (JSON replies) */
	const char *body_ext;                   /* or a borrowed external body */
	size_t body_len;
};

/* Reads up to n body bytes into buf; returns how many (0 at the end). */
typedef size_t (*http_read_fn)(void *ctx, char *buf, size_t n);

struct request {
	char *const *envp;                      /* FastCGI params, borrowed for the request */
	http_read_fn read_body;                 /* the request body stream */
	void *read_ctx;
	enum http_method method;
	const char *path;                       /* REQUEST_URI up to '?', not NUL-terminated */
	size_t path_len;
	char request_id[HTTP_REQUEST_ID_MAX + 1]; /* the client's if sane, else generated */
	char sum_name[SUMNAME_MAX + 1];         /* /abacus/sums/{name}...: the name, valid; else "" */
	bool int64_as_string;                   /* ?int64=string: int64 fields as JSON strings */
	struct caller caller;                   /* set by auth */
	struct response resp;
};

/* The status, slug and title of a problem. */
const struct problem_info *http_problem_info(enum problem p);

/* "OK", "Not Found", ... for the Status: line; "Unknown" otherwise. */
const char *http_status_text(int status);

/*
 * Resets r for a new request: parses the method, the path and X-Request-ID
 * (SPEC 2: kept if 1-128 of A-Z a-z 0-9 . _ : -, otherwise generated).
 */
void http_request_init(struct request *r, char *const *envp, http_read_fn read_body, void *ctx);

/* A FastCGI parameter ("HTTP_X_API_KEY", "CONTENT_LENGTH"); NULL if absent. Borrowed. */
const char *http_param(const struct request *r, const char *name);

/* True if path equals the NUL-terminated route. */
bool http_path_is(const struct request *r, const char *route);

/*
 * The request's query (REQUEST_URI after '?', raw: no percent-decoding; the
 * API's parameters need none).  http_query_get finds parameter name:
 * HTTP_QUERY_ONE with *value and *len set, HTTP_QUERY_ABSENT, or
 * HTTP_QUERY_REPEATED.  http_query_only is false when a parameter is not
 * one of names (NULL-terminated), or a pair has no '='.
 */
enum http_query { HTTP_QUERY_ABSENT, HTTP_QUERY_ONE, HTTP_QUERY_REPEATED };
enum http_query http_query_get(const struct request *r, const char *name, const char **value, size_t *len);
bool http_query_only(const struct request *r, const char *const *names);

/*
 * The opt-in string form of int64 (docs/API.md, "Numbers above 2^53"):
 * ?int64=string sets r->int64_as_string; absent leaves it false; any other
 * value, or the parameter twice, sets the 400 invalid-query problem and
 * returns false.  Other parameters are not looked at.
 */
bool http_int64_form_or_problem(struct request *r);

/* Adds a response header.  Values with CR/LF are dropped (never reflected). */
void http_add_header(struct request *r, const char *name, const char *value);

/* Sets status and a JSON body from a printf format. */
void http_reply_json(struct request *r, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Sets status and a JSON body of before, v in decimal, after: the replies on
 * the hot path, without printf (printf was 15 % of a GET's instructions in the
 * worker).  With r->int64_as_string the decimal is a JSON string ("42").
 */
void http_reply_json_int(struct request *r, int status, const char *before, int64_t v,
                         const char *after);

/* Sets an RFC 9457 problem: {"type","title","status","detail"}. */
void http_problem(struct request *r, enum problem p, const char *detail);

/* As http_problem, plus "errors": [{"field": field, "message": message}]. */
void http_problem_field(struct request *r, enum problem p, const char *detail,
                        const char *field, const char *message);

/*
 * Writes the CGI response head (Status, Content-Type, Content-Length,
 * X-Request-ID, extra headers, blank line) to out.  Returns its length, or 0
 * if cap is too small.
 */
size_t http_format_head(const struct request *r, char *out, size_t cap);

/* The response body and its length (inline or external). */
const char *http_body(const struct request *r, size_t *len);

/* True if id is 1-128 characters of A-Z a-z 0-9 . _ : - */
bool http_request_id_is_sane(const char *id);

/* Writes a fresh 32-hex-digit request id. */
void http_generate_request_id(char out[33]);

/*
 * The response for an operation's outcome: nothing for STORE_OK and
 * STORE_REPLAYED (returns true), else its problem and detail (and
 * Retry-After for a 503) and false.  keyed: a POST with an Idempotency-Key,
 * whose retry rule differs (docs/API.md, "Retrying").
 */
bool http_store_outcome(struct request *r, enum store_status status, bool keyed);

#endif
