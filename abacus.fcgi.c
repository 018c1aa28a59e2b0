/*
 * abacus.fcgi — the FastCGI worker: start-up, the accept loop and the route
 * table.  Everything else lives in lib/, one module per concern.
 *
 * Each worker serves one request at a time (libfcgi's FCGX API) and keeps one
 * Redis connection.  lighttpd's mod_fastcgi (bin-path, max-procs) or
 * spawn-fcgi + multiwatch start N of them on one socket.
 */

#include <fcgiapp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "body.h"
#include "config.h"
#include "decimal.h"
#include "http.h"
#include "idem.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "store.h"
#include "sumname.h"

#define ABACUS_VERSION "0.1.0"

/* The worker's long-lived state, set up once in main(). */
static struct {
	struct config cfg;
	struct auth *auth;
	struct store *store;
	bool metrics_auth;              /* ABACUS_METRICS_AUTH, kept after cfg is freed */
} worker;

typedef void (*handler_fn)(struct request *r);

/* ---- replies shared by the handlers ---- */

/* The sum a request names: NULL for the original routes (the default sum), else its valid name. */
static const char *sum_name(const struct request *r)
{
	return r->sum_name[0] != '\0' ? r->sum_name : NULL;
}

/*
 * A store failure: its response (lib/http), its counter and its log line;
 * STORE_OK and STORE_REPLAYED are no failure.  keyed: see http_store_outcome.
 */
static bool store_ok_or_problem(struct request *r, enum store_status status, bool keyed,
                                const struct store_result *res)
{
	struct log_line l;
	enum log_level level;

	if (status == STORE_OK || status == STORE_REPLAYED)
		return true;
	/* A refusal this worker answered from memory is logged at debug: a flood of them costs no disk either. */
	level = status == STORE_RATE_LIMITED && res->budget.remembered ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN;
	if (status == STORE_RATE_LIMITED)
		metrics_inc(METRICS_RATE_LIMITED);
	else if (status == STORE_KEY_CONFLICT)
		metrics_inc(METRICS_IDEMPOTENCY_CONFLICTS);
	http_store_outcome(r, status, keyed);
	if (status != STORE_UNAVAILABLE && log_begin(&l, level, store_strerror(status), r->request_id)) {
		log_str(&l, "key_id", r->caller.key_id);
		log_str(&l, "limit_id", r->caller.limit_id);
		if (sum_name(r) != NULL)
			log_str(&l, "name", r->sum_name);
		log_end(&l);
	}
	return false;
}

/*
 * The guard of every route under /abacus/: auth, the int64 form
 * (?int64=string), then the rate-limit identity.  params: the query
 * parameters the route takes (NULL-terminated, int64 among them), any other
 * is a 400; NULL: others are not looked at (the original routes ignore them,
 * and the ledger's and the listing's check their own).
 */
static bool caller_or_problem(struct request *r, enum auth_need need, const char *const *params)
{
	if (!auth_check_or_problem(worker.auth, r, need))
		return false;
	if (!http_int64_form_or_problem(r))
		return false;
	if (params != NULL && !http_query_only(r, params)) {
		http_problem(r, PROBLEM_INVALID_QUERY, "this route takes no query parameter but int64=string");
		return false;
	}
	ratelimit_identify(r, &worker.cfg);
	return true;
}

/* What a named sum's route takes in its query; the original routes: not looked at. */
static const char *const *plain_params(const struct request *r)
{
	static const char *const int64_only[] = { "int64", NULL };

	return sum_name(r) != NULL ? int64_only : NULL;
}

/*
 * One event per applied change, with the sum's name ("default" for the
 * original routes; never a Redis key).  values: the event has a delta and a
 * sum (a deletion has neither).  replicated is false for a change applied
 * on the master that WAIT did not see replicated in time (then the field is
 * there).
 */
static void log_change(struct request *r, const char *event, bool values, int64_t delta, int64_t sum,
                       bool replicated)
{
	struct log_line l;

	if (log_begin(&l, LOG_LEVEL_INFO, event, r->request_id)) {
		if (values) {
			log_int(&l, "delta", delta);
			log_int(&l, "sum", sum);
		}
		log_str(&l, "key_id", r->caller.key_id);
		log_str(&l, "name", sum_name(r) != NULL ? r->sum_name : SUMNAME_DEFAULT);
		if (!replicated)
			log_bool(&l, "replicated", false);
		log_end(&l);
	}
}

/*
 * {"message":<message>,"name":<name>,"<field>":<v>}: message may be NULL,
 * the name is there on the named routes only (the original routes' bodies
 * are as they always were), v is a string with ?int64=string.
 */
static void reply_sum(struct request *r, const char *message, const char *field, int64_t v)
{
	char head[64 + SUMNAME_MAX + 64];
	char *at = stpcpy(head, "{");

	if (message != NULL) {
		at = stpcpy(at, "\"message\":\"");
		at = stpcpy(at, message);
		at = stpcpy(at, "\",");
	}
	if (sum_name(r) != NULL) {
		at = stpcpy(at, "\"name\":\"");
		at = stpcpy(at, r->sum_name);       /* a valid name: nothing to escape */
		at = stpcpy(at, "\",");
	}
	at = stpcpy(at, "\"");
	at = stpcpy(at, field);
	stpcpy(at, "\":");
	http_reply_json_int(r, 200, head, v, "}");
}

/* ---- one store call per request ---- */

/*
 * A store call's answer with its RateLimit headers added: every handler's
 * store call goes through it.  (The store answers a caller it refused a
 * moment ago from this worker's memory, without a round trip: lib/store.c.)
 */
static enum store_status rate_limited(struct request *r, enum store_status status, const struct store_result *res)
{
	ratelimit_add_headers(r, &worker.cfg, status, &res->budget);
	return status;
}

/* ---- handlers: each serves an original route (the default sum) and its named twin ---- */

/* GET /abacus/sum, GET /abacus/sums/{name} (404 sum-not-found for a named sum that does not exist). */
static void handle_get_sum(struct request *r)
{
	struct store_result res;

	if (!caller_or_problem(r, AUTH_ANY, plain_params(r)))
		return;
	if (!store_ok_or_problem(r, rate_limited(r, store_sum_get(worker.store, sum_name(r), &r->caller, &res), &res),
	                         false, &res))
		return;
	reply_sum(r, NULL, "current_sum", res.sum);
}

/* POST /abacus/number, POST /abacus/sums/{name}/number (creates the sum; 409 too-many-sums). */
static void handle_post_number(struct request *r)
{
	struct idem_key key;
	struct store_result res;
	enum store_status status;
	int64_t number;

	if (!caller_or_problem(r, AUTH_ANY, plain_params(r)))
		return;
	if (!body_int64_or_problem(r, "number", &number))
		return;
	if (!idem_key_or_problem(r, worker.cfg.idempotency_required, &key))
		return;
	status = rate_limited(r, store_sum_add(worker.store, sum_name(r), &r->caller, &key, number, r->request_id, &res),
	                      &res);
	/* Applied, though not confirmed by replicas: still its one sum_added. */
	if (status == STORE_NOT_REPLICATED && !res.replayed)
		log_change(r, "sum_added", true, number, res.sum, false);
	if (!store_ok_or_problem(r, status, key.len > 0, &res))
		return;
	if (status == STORE_REPLAYED) {
		http_add_header(r, "Idempotent-Replayed", "true");
		metrics_inc(METRICS_IDEMPOTENT_REPLAYS);
	}
	log_change(r, status == STORE_REPLAYED ? "idempotent_replay" : "sum_added", true, number, res.sum, true);
	reply_sum(r, "Number added successfully.", "current_sum", res.sum);
}

/* PUT (STORE_SET_VALUE), DELETE (STORE_SET_RESET; STORE_SET_DELETE for a named sum). */
static void set_sum(struct request *r, int64_t value, enum store_set_op op)
{
	struct store_result res;
	enum store_status status = rate_limited(r, store_sum_set(worker.store, sum_name(r), &r->caller, value, op,
	                                                         r->request_id, &res), &res);
	bool deleted = op == STORE_SET_DELETE;
	const char *event = deleted ? "sum_deleted" : "sum_set";

	if (status == STORE_NOT_REPLICATED)
		log_change(r, event, !deleted, value, res.sum, false);
	if (!store_ok_or_problem(r, status, false, &res))
		return;
	log_change(r, event, !deleted, value, res.sum, true);
	if (deleted)
		http_reply_json(r, 200, "{\"message\":\"Sum deleted successfully.\",\"name\":\"%s\"}", r->sum_name);
	else
		reply_sum(r, op == STORE_SET_RESET ? "Sum reset successfully." : "Sum set successfully.", "new_sum",
		          res.sum);
}

static void handle_put_sum(struct request *r)
{
	int64_t number;

	if (!caller_or_problem(r, AUTH_ADMIN, plain_params(r)))
		return;
	if (!body_int64_or_problem(r, "number", &number))
		return;
	set_sum(r, number, STORE_SET_VALUE);
}

/* DELETE resets the default sum (it always exists) and removes a named one. */
static void handle_delete_sum(struct request *r)
{
	bool named = sum_name(r) != NULL && !sumname_is_default(r->sum_name, strlen(r->sum_name));

	if (!caller_or_problem(r, AUTH_ADMIN, plain_params(r)))
		return;
	set_sum(r, 0, named ? STORE_SET_DELETE : STORE_SET_RESET);
}

/* n decimal digits at s that fit an unsigned 64-bit integer (Redis's ids are two). */
static bool is_uint64_digits(const char *s, size_t n)
{
	static const char max[] = "18446744073709551615";

	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return n >= 1 && (n < sizeof(max) - 1 || (n == sizeof(max) - 1 && memcmp(s, max, n) <= 0));
}

/* "<ms>-<seq>": an entry id as Redis writes them. */
static bool is_entry_id(const char *s, size_t len)
{
	const char *dash = memchr(s, '-', len);

	return dash != NULL && is_uint64_digits(s, (size_t)(dash - s)) &&
	       is_uint64_digits(dash + 1, len - (size_t)(dash - s) - 1);
}

/* ?limit=<1..max> (default dflt) or a 400 problem with detail. */
static bool limit_or_problem(struct request *r, long dflt, long max, const char *detail, long *limit)
{
	const char *v;
	size_t len;
	int64_t n;
	enum http_query q = http_query_get(r, "limit", &v, &len);

	*limit = dflt;
	if (q == HTTP_QUERY_REPEATED ||
	    (q == HTTP_QUERY_ONE && (decimal_parse_int64(v, len, DECIMAL_REFUSE_MINUS_ZERO, &n) != DECIMAL_OK ||
	                             n < 1 || n > max))) {
		http_problem(r, PROBLEM_INVALID_QUERY, detail);
		return false;
	}
	if (q == HTTP_QUERY_ONE)
		*limit = (long)n;
	return true;
}

/*
 * The optional query parameter `name` into out (cap bytes, "" when absent)
 * when valid() accepts it, or a 400 problem with detail (also when repeated).
 */
static bool query_text_or_problem(struct request *r, const char *name, bool (*valid)(const char *, size_t),
                                  char *out, size_t cap, const char *detail)
{
	const char *v;
	size_t len;
	enum http_query q = http_query_get(r, name, &v, &len);

	out[0] = '\0';
	if (q == HTTP_QUERY_REPEATED || (q == HTTP_QUERY_ONE && (len >= cap || !valid(v, len)))) {
		http_problem(r, PROBLEM_INVALID_QUERY, detail);
		return false;
	}
	if (q == HTTP_QUERY_ONE) {
		memcpy(out, v, len);
		out[len] = '\0';
	}
	return true;
}

/* ?after=<entry id>&limit=<1..1000> (both optional; limit 100; int64=string too) or a 400 problem. */
static bool ledger_query_or_problem(struct request *r, char *after, size_t cap, long *limit)
{
	static const char *const names[] = { "after", "limit", "int64", NULL };

	if (!http_query_only(r, names)) {
		http_problem(r, PROBLEM_INVALID_QUERY,
		             "the ledger takes after=<entry id>, limit=<1-1000> and int64=string, once each");
		return false;
	}
	return query_text_or_problem(r, "after", is_entry_id, after, cap,
	                             "after must be an entry id as the ledger gives them (<ms>-<seq>)") &&
	       limit_or_problem(r, 100, STORE_LEDGER_LIMIT_MAX, "limit must be an integer from 1 to 1000", limit);
}

/* Room for n bytes in t (grown, never shrunk); false when out of memory. */
static bool text_reserve(struct store_text *t, size_t n)
{
	char *grown;

	if (n <= t->cap)
		return true;
	grown = realloc(t->text, n);
	if (grown == NULL)
		return false;
	t->text = grown;
	t->cap = n;
	return true;
}

/*
 * The ledger's page as the reply's body; with ?int64=string its number, sum
 * and was members as strings (the page is built by lib/lua/ledger.lua: the
 * conversion is here, on the worker's copy, in a second buffer it reuses).
 */
static void reply_page(struct request *r, const struct store_text *page)
{
	static const char *const int64_members[] = { "number", "sum", "was", NULL };
	static struct store_text quoted;
	const struct store_text *body = page;

	if (r->int64_as_string) {
		size_t need = json_quote_int_members(page->text, page->len, int64_members, NULL);

		if (!text_reserve(&quoted, need)) {
			/* A worker out of memory has no problem type of its own: a 503 says "retry shortly". */
			http_problem(r, PROBLEM_REDIS_UNAVAILABLE, "the worker is out of memory; retry shortly");
			http_add_header(r, "Retry-After", "1");
			return;
		}
		quoted.len = json_quote_int_members(page->text, page->len, int64_members, quoted.text);
		body = &quoted;
	}
	r->resp.status = 200;
	r->resp.content_type = "application/json";
	r->resp.body_ext = body->text;
	r->resp.body_len = body->len;
}

/*
 * GET /abacus/sum/ledger, /abacus/sums/{name}/ledger: the changes, oldest
 * first, a page at a time.  Admin keys only (entries show key ids and
 * Idempotency-Keys).  The page is the store's text, kept in a buffer this
 * worker reuses.
 */
static void handle_get_ledger(struct request *r)
{
	static struct store_text page;
	char after[48];
	struct store_result res;
	long limit;

	if (!caller_or_problem(r, AUTH_ADMIN, NULL))
		return;
	if (!ledger_query_or_problem(r, after, sizeof(after), &limit))
		return;
	if (worker.cfg.ledger_retention_seconds == 0) {
		http_problem(r, PROBLEM_LEDGER_OFF, "ABACUS_LEDGER_RETENTION_SECONDS is 0");
		return;
	}
	if (!store_ok_or_problem(r, rate_limited(r, store_sum_ledger(worker.store, sum_name(r), &r->caller, after, limit,
	                                                             &res, &page), &res), false, &res))
		return;
	reply_page(r, &page);
}

/* ?limit=<1..100>&cursor=<name> (both optional; limit 50; int64=string too) or a 400 problem. */
static bool list_query_or_problem(struct request *r, char cursor[SUMNAME_MAX + 1], long *limit)
{
	static const char *const names[] = { "limit", "cursor", "int64", NULL };

	if (!http_query_only(r, names)) {
		http_problem(r, PROBLEM_INVALID_QUERY,
		             "the listing takes limit=<1-100>, cursor=<a name> and int64=string, once each");
		return false;
	}
	return query_text_or_problem(r, "cursor", sumname_valid, cursor, SUMNAME_MAX + 1,
	                             "cursor must be a name, as the listing's next gives it") &&
	       limit_or_problem(r, 50, STORE_LIST_LIMIT_MAX, "limit must be an integer from 1 to 100", limit);
}

/*
 * {"sums":[{"name":..,"current_sum":..},...],"next":<name>|null}: a stored
 * value that is not an integer lists as "current_sum":null (reading that sum
 * answers 500 sum-not-integer); next, when more follow, is the last name the
 * page looked at, to pass as the cursor.
 */
static void reply_listing(struct request *r, const struct store_sum_entry *entries, size_t count, const char *next)
{
	static char body[STORE_LIST_LIMIT_MAX * (SUMNAME_MAX + 64) + SUMNAME_MAX + 64];
	const char *quote = r->int64_as_string ? "\"" : "";
	char *at = stpcpy(body, "{\"sums\":[");

	for (size_t i = 0; i < count; i++) {
		const struct store_sum_entry *e = &entries[i];

		at = stpcpy(at, i > 0 ? ",{\"name\":\"" : "{\"name\":\"");
		at = stpcpy(at, e->name);       /* the registry holds valid names only: nothing to escape */
		at = stpcpy(at, "\",\"current_sum\":");
		if (e->not_integer) {
			at = stpcpy(at, "null}");
			continue;
		}
		at = stpcpy(at, quote);
		at += decimal_format(at, e->sum);
		at = stpcpy(at, quote);
		at = stpcpy(at, "}");
	}
	/* A page can be short, even empty, while more follow (names being created or deleted: lib/store.h). */
	if (next[0] != '\0') {
		at = stpcpy(at, "],\"next\":\"");
		at = stpcpy(at, next);
		at = stpcpy(at, "\"}");
	} else {
		at = stpcpy(at, "],\"next\":null}");
	}
	r->resp.status = 200;
	r->resp.content_type = "application/json";
	r->resp.body_ext = body;
	r->resp.body_len = (size_t)(at - body);
}

/* GET /abacus/sums: the sums that exist, "default" among them, in byte order of their names, a page at a time. */
static void handle_get_sums(struct request *r)
{
	static struct store_sum_entry entries[STORE_LIST_LIMIT_MAX];
	char cursor[SUMNAME_MAX + 1], next[SUMNAME_MAX + 1];
	struct store_result res;
	size_t count;
	long limit;

	if (!caller_or_problem(r, AUTH_ANY, NULL))
		return;
	if (!list_query_or_problem(r, cursor, &limit))
		return;
	if (!store_ok_or_problem(r, rate_limited(r, store_list(worker.store, &r->caller, cursor, limit, entries, &count,
	                                                       next, &res), &res), false, &res))
		return;
	reply_listing(r, entries, count, next);
}


static void handle_healthz(struct request *r)
{
	http_reply_json(r, 200, "{\"status\":\"ok\"}");
}

/*
 * Ready while Redis answers.  A full Redis (noeviction) still serves reads:
 * the front end stays ready (a load balancer that pulled every front end
 * would turn a write outage into a full one) and says so in the body.
 */
static void handle_readyz(struct request *r)
{
	enum store_status status = store_ping(worker.store);

	if (status == STORE_UNAVAILABLE) {
		http_store_outcome(r, status, false);
		return;
	}
	if (status == STORE_FULL) {
		http_reply_json(r, 200, "{\"status\":\"ready\",\"writes\":\"refused\","
		                "\"detail\":\"Redis is out of memory: additions and sets are refused, reads are served\"}");
		return;
	}
	http_reply_json(r, 200, "{\"status\":\"ready\"}");
}

/*
 * The whole front end's counters, from the shared segment.  The scrape is
 * counted after its response is written, so it shows in the next scrape.
 */
static void handle_metrics(struct request *r)
{
	if (worker.metrics_auth && !auth_check_bearer_or_problem(worker.auth, r))
		return;
	r->resp.status = 200;
	r->resp.content_type = "text/plain; version=0.0.4; charset=utf-8";
	r->resp.body_ext = metrics_render(&r->resp.body_len);
}

/* ---- routing ---- */

struct route {
	const char *path;                       /* the path; for a named sum's route, what follows the name */
	enum metrics_endpoint endpoint;         /* its label in the metrics */
	const char *allow;                      /* the Allow header for a 405 */
	handler_fn handlers[HTTP_METHOD_COUNT]; /* NULL: method not allowed */
};

static const struct route routes[] = {
	{ "/abacus/sum", METRICS_EP_SUM, "GET, HEAD, PUT, DELETE",
	  { [HTTP_GET] = handle_get_sum, [HTTP_HEAD] = handle_get_sum,
	    [HTTP_PUT] = handle_put_sum, [HTTP_DELETE] = handle_delete_sum } },
	{ "/abacus/number", METRICS_EP_NUMBER, "POST", { [HTTP_POST] = handle_post_number } },
	{ "/abacus/sum/ledger", METRICS_EP_LEDGER, "GET, HEAD",
	  { [HTTP_GET] = handle_get_ledger, [HTTP_HEAD] = handle_get_ledger } },
	{ "/abacus/sums", METRICS_EP_SUMS, "GET, HEAD",
	  { [HTTP_GET] = handle_get_sums, [HTTP_HEAD] = handle_get_sums } },
	{ "/healthz", METRICS_EP_HEALTHZ, "GET, HEAD",
	  { [HTTP_GET] = handle_healthz, [HTTP_HEAD] = handle_healthz } },
	{ "/readyz", METRICS_EP_READYZ, "GET, HEAD",
	  { [HTTP_GET] = handle_readyz, [HTTP_HEAD] = handle_readyz } },
	{ "/metrics", METRICS_EP_METRICS, "GET, HEAD",
	  { [HTTP_GET] = handle_metrics, [HTTP_HEAD] = handle_metrics } },
};

/* /abacus/sums/{name}<path>: the same handlers, on the sum r->sum_name. */
#define NAMED_PREFIX "/abacus/sums/"
static const struct route named_routes[] = {
	{ "", METRICS_EP_NAMED_SUM, "GET, HEAD, PUT, DELETE",
	  { [HTTP_GET] = handle_get_sum, [HTTP_HEAD] = handle_get_sum,
	    [HTTP_PUT] = handle_put_sum, [HTTP_DELETE] = handle_delete_sum } },
	{ "/number", METRICS_EP_NAMED_NUMBER, "POST", { [HTTP_POST] = handle_post_number } },
	{ "/ledger", METRICS_EP_NAMED_LEDGER, "GET, HEAD",
	  { [HTTP_GET] = handle_get_ledger, [HTTP_HEAD] = handle_get_ledger } },
};

static const struct route *route_of(const struct route *table, size_t n, const char *path, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(table[i].path) == len && memcmp(table[i].path, path, len) == 0)
			return &table[i];
	return NULL;
}

/*
 * A path under /abacus/sums/: the name is the segment after it, as the
 * client sent it (REQUEST_URI, raw: lighttpd and nginx both pass it so; no
 * percent-decoding, no dot-segment removal), and it must follow the name
 * rules as it is.  So "%2F", "%41", ".", "..", a '/' (one segment too many),
 * non-ASCII and the route words are 400 invalid-sum-name (docs/API.md, "Named
 * sums"), never another sum.  Returns the route with r->sum_name set, or
 * NULL with the problem set.  The method is checked first: a route's 405
 * comes before its name's 400, as elsewhere it comes before everything.
 */
static const struct route *named_route_or_problem(struct request *r)
{
	const char *name = r->path + sizeof(NAMED_PREFIX) - 1, *end = r->path + r->path_len;
	const char *slash = memchr(name, '/', (size_t)(end - name));
	size_t len = (size_t)((slash != NULL ? slash : end) - name);
	const struct route *route = route_of(named_routes, sizeof(named_routes) / sizeof(named_routes[0]),
	                                     name + len, (size_t)(end - name - len));

	if (route == NULL) {
		http_problem(r, PROBLEM_INVALID_SUM_NAME, "a name is one path segment: /abacus/sums/{name}, "
		             "/abacus/sums/{name}/number or /abacus/sums/{name}/ledger");
		return NULL;
	}
	if (route->handlers[r->method] == NULL)
		return route;
	if (!sumname_valid(name, len)) {
		http_problem(r, PROBLEM_INVALID_SUM_NAME, "a name is 1-64 characters of A-Z a-z 0-9 _ . -, the first a "
		             "letter or digit, written as it is (no percent-encoding)");
		return NULL;
	}
	if (sumname_is_reserved(name, len)) {
		http_problem(r, PROBLEM_INVALID_SUM_NAME, "sum, sums, number and ledger are route words, not names");
		return NULL;
	}
	memcpy(r->sum_name, name, len);
	r->sum_name[len] = '\0';
	return route;
}

/* The request pipeline: route, then the handler.  Returns the endpoint label. */
static enum metrics_endpoint dispatch(struct request *r)
{
	const struct route *route = route_of(routes, sizeof(routes) / sizeof(routes[0]), r->path, r->path_len);

	if (route == NULL && r->path_len >= sizeof(NAMED_PREFIX) - 1 &&
	    memcmp(r->path, NAMED_PREFIX, sizeof(NAMED_PREFIX) - 1) == 0) {
		route = named_route_or_problem(r);
		if (route == NULL)
			return METRICS_EP_NAMED_SUM;    /* a bad name: the {name} route's */
	}
	if (route == NULL) {
		http_problem(r, PROBLEM_NOT_FOUND, "no such route");
		return METRICS_EP_OTHER;
	}
	if (route->handlers[r->method] == NULL) {
		http_problem(r, PROBLEM_METHOD_NOT_ALLOWED, "see the Allow header");
		http_add_header(r, "Allow", route->allow);
	} else {
		route->handlers[r->method](r);
	}
	return route->endpoint;
}

/* ---- FastCGI glue ---- */

static size_t fcgi_read(void *ctx, char *buf, size_t n)
{
	int got = FCGX_GetStr(buf, n > 65536 ? 65536 : (int)n, ((FCGX_Request *)ctx)->in);

	return got > 0 ? (size_t)got : 0;
}

static void write_response(FCGX_Request *fcgi, const struct request *r)
{
	char head[HTTP_HEADERS_MAX + 512];
	size_t head_len = http_format_head(r, head, sizeof(head));
	size_t body_len;
	const char *body = http_body(r, &body_len);

	FCGX_PutStr(head, (int)head_len, fcgi->out);
	if (r->method != HTTP_HEAD)
		FCGX_PutStr(body, (int)body_len, fcgi->out);
}

static void log_request(const struct request *r, long long duration_us)
{
	struct log_line l;

	if (log_begin(&l, LOG_LEVEL_DEBUG, "request", r->request_id)) {
		log_str(&l, "method", http_param(r, "REQUEST_METHOD"));
		log_strn(&l, "path", r->path, r->path_len > 200 ? 200 : r->path_len);
		log_int(&l, "status", r->resp.status);
		log_int(&l, "duration_us", duration_us);
		log_end(&l);
	}
}

static long long elapsed_us(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - start->tv_sec) * 1000000 + (now.tv_nsec - start->tv_nsec) / 1000;
}

/*
 * SIGTERM/SIGINT (lighttpd stopping, multiwatch, docker stop): finish the
 * request in hand, then leave the accept loop and clean up.  No SA_RESTART,
 * so a worker idle in accept() wakes up at once.
 */
static void on_stop_signal(int sig)
{
	(void)sig;
	FCGX_ShutdownPending();
}

static void install_stop_handlers(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

static const char *lookup_env(const char *name)
{
	return getenv(name);
}

/* Loads the configuration and the modules; exits with a clear message if it cannot. */
static void start(void)
{
	char err[256];

	if (!config_load(&worker.cfg, lookup_env, err, sizeof(err))) {
		log_message(LOG_LEVEL_ERROR, "config_error", NULL, err);
		exit(78); /* EX_CONFIG */
	}
	log_set_level(worker.cfg.log_level);
	config_log_effective(&worker.cfg);
	if (!worker.cfg.auth_enabled)
		log_message(LOG_LEVEL_WARN, "auth_disabled", NULL,
		            "no API key required: anyone who reaches this service can change the sum");
	else if (worker.cfg.admin_keys.count == 0)
		log_message(LOG_LEVEL_WARN, "admin_keys_unset", NULL,
		            "ABACUS_ADMIN_API_KEYS is not set: every API key may PUT and DELETE the sum");
	/* docs/OPERATIONS.md, Redis Cluster: the limiter's slot serves every named sum's request. */
	if (worker.cfg.redis.mode == REDIS_MODE_CLUSTER && worker.cfg.rate_limit_enabled && !worker.cfg.rate_limit_per_sum)
		log_message(LOG_LEVEL_WARN, "rate_limit_on_one_master", NULL,
		            "Redis Cluster with ABACUS_RATE_LIMIT_SCOPE=caller: every named sum's request also runs the "
		            "caller's limiter on the {prefix} slot's master (a second round trip); =sum spreads it");
	body_set_limit((size_t)worker.cfg.max_body_bytes);

	worker.auth = auth_new(&worker.cfg);
	if (worker.auth == NULL) {
		log_message(LOG_LEVEL_ERROR, "config_error", NULL, "cannot build the API key table");
		exit(78);
	}
	{
		struct store_options opt;

		store_options_from_config(&opt, &worker.cfg);
		worker.store = store_new(&opt);
	}
	if (worker.store == NULL) {
		log_message(LOG_LEVEL_ERROR, "startup_error", NULL, "out of memory");
		exit(1);
	}
	worker.metrics_auth = worker.cfg.metrics_auth;
	metrics_open(worker.cfg.metrics_shm, ABACUS_VERSION);
	metrics_set_workers_configured((unsigned)worker.cfg.workers_configured);

	/* The key lists are no longer needed: only digests stay in memory. */
	config_free(&worker.cfg);
	if (!store_connect(worker.store))
		log_message(LOG_LEVEL_WARN, "redis_unavailable", NULL,
		            "Redis is not reachable yet; answering 503 until it is");
}

#ifndef ABACUS_FUZZ     /* tests/fuzz/fuzz_request.c drives dispatch() itself */
int main(int argc, char **argv)
{
	FCGX_Request fcgi;

	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("abacus %s\n", ABACUS_VERSION);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1 && strcmp(argv[1], "--check-config") == 0) {
		char err[256];

		if (!config_load(&worker.cfg, lookup_env, err, sizeof(err))) {
			log_message(LOG_LEVEL_ERROR, "config_error", NULL, err);
			return 78;
		}
		config_log_effective(&worker.cfg);
		config_free(&worker.cfg);
		return 0;
	}
	start();
	install_stop_handlers();
	log_message(LOG_LEVEL_INFO, "worker_started", NULL, "abacus " ABACUS_VERSION);

	if (FCGX_Init() != 0 || FCGX_InitRequest(&fcgi, 0, 0) != 0) {
		log_message(LOG_LEVEL_ERROR, "startup_error", NULL, "FastCGI initialisation failed");
		return 1;
	}
	while (FCGX_Accept_r(&fcgi) >= 0) {
		struct request r;
		struct timespec started;
		enum metrics_endpoint endpoint;
		long long duration_us;

		clock_gettime(CLOCK_MONOTONIC, &started);
		http_request_init(&r, fcgi.envp, fcgi_read, &fcgi);
		endpoint = dispatch(&r);
		write_response(&fcgi, &r);
		duration_us = elapsed_us(&started);
		metrics_request(endpoint, r.method, r.resp.status, (uint64_t)duration_us);
		log_request(&r, duration_us);
		FCGX_Finish_r(&fcgi);
	}
	log_message(LOG_LEVEL_INFO, "worker_stopped", NULL, "abacus " ABACUS_VERSION);
	metrics_close();
	store_free(worker.store);
	auth_free(worker.auth);
	return 0;
}
#endif
