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
#include "log.h"
#include "metrics.h"
#include "ratelimit.h"
#include "store.h"

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
		log_end(&l);
	}
	return false;
}

/* Auth, then the rate-limit identity: the guard of every route under /abacus/. */
static bool caller_or_problem(struct request *r, enum auth_need need)
{
	if (!auth_check_or_problem(worker.auth, r, need))
		return false;
	ratelimit_identify(r, &worker.cfg);
	return true;
}

/*
 * One event per applied change.  replicated is false for a change applied on
 * the master that WAIT did not see replicated in time (then the field is there).
 */
static void log_change(struct request *r, const char *event, int64_t delta, int64_t sum, bool replicated)
{
	struct log_line l;

	if (log_begin(&l, LOG_LEVEL_INFO, event, r->request_id)) {
		log_int(&l, "delta", delta);
		log_int(&l, "sum", sum);
		log_str(&l, "key_id", r->caller.key_id);
		if (!replicated)
			log_bool(&l, "replicated", false);
		log_end(&l);
	}
}

static void log_sum_event(struct request *r, const char *event, int64_t delta, int64_t sum)
{
	log_change(r, event, delta, sum, true);
}

static void log_unconfirmed(struct request *r, const char *event, int64_t delta, int64_t sum)
{
	log_change(r, event, delta, sum, false);
}

/*
 * The limiter's refusals this worker remembers (lib/ratelimit.h): a caller
 * refused a moment ago, whose budget cannot have freed yet, is answered 429
 * here without a round trip to Redis.
 */
static bool refused_here(struct request *r, struct store_result *res, int64_t *asked_at_us)
{
	static unsigned long reconnects;

	/* A new connection may be a restarted or failed-over Redis: every budget free again. */
	if (store_reconnects(worker.store) != reconnects) {
		reconnects = store_reconnects(worker.store);
		ratelimit_forget_refusals();
	}
	*asked_at_us = ratelimit_clock_us();
	return ratelimit_refused_here(&r->caller, *asked_at_us, &res->budget);
}

static enum store_status remember_refusal(struct request *r, enum store_status status,
                                          int64_t asked_at_us, const struct store_result *res)
{
	if (status == STORE_RATE_LIMITED)
		ratelimit_remember_refusal(&r->caller, asked_at_us, &res->budget);
	return status;
}

/* ---- handlers ---- */

static void handle_get_sum(struct request *r)
{
	struct store_result res;
	enum store_status status;

	int64_t asked_at;

	if (!caller_or_problem(r, AUTH_ANY))
		return;
	status = refused_here(r, &res, &asked_at) ? STORE_RATE_LIMITED :
	         remember_refusal(r, store_get(worker.store, &r->caller, &res), asked_at, &res);
	ratelimit_add_headers(r, &worker.cfg, status, &res.budget);
	if (!store_ok_or_problem(r, status, false, &res))
		return;
	http_reply_json_int(r, 200, "{\"current_sum\":", res.sum, "}");
}

static void handle_post_number(struct request *r)
{
	struct store_result res;
	struct idem_key key;
	enum store_status status;
	int64_t number, asked_at;

	if (!caller_or_problem(r, AUTH_ANY))
		return;
	if (!body_int64_or_problem(r, "number", &number))
		return;
	if (!idem_key_or_problem(r, worker.cfg.idempotency_required, &key))
		return;
	status = refused_here(r, &res, &asked_at) ? STORE_RATE_LIMITED :
	         remember_refusal(r, store_add(worker.store, &r->caller, &key, number, r->request_id, &res),
	                          asked_at, &res);
	ratelimit_add_headers(r, &worker.cfg, status, &res.budget);
	/* Applied, though not confirmed by replicas: still its one sum_added. */
	if (status == STORE_NOT_REPLICATED && !res.replayed)
		log_unconfirmed(r, "sum_added", number, res.sum);
	if (!store_ok_or_problem(r, status, key.len > 0, &res))
		return;
	if (status == STORE_REPLAYED) {
		http_add_header(r, "Idempotent-Replayed", "true");
		metrics_inc(METRICS_IDEMPOTENT_REPLAYS);
	}
	log_sum_event(r, status == STORE_REPLAYED ? "idempotent_replay" : "sum_added", number, res.sum);
	http_reply_json_int(r, 200, "{\"message\":\"Number added successfully.\",\"current_sum\":",
	                    res.sum, "}");
}

/* PUT and DELETE (reset: the ledger's word for it); head: the reply up to the new sum. */
static void set_sum(struct request *r, int64_t value, bool reset, const char *head)
{
	struct store_result res;
	int64_t asked_at;
	enum store_status status = refused_here(r, &res, &asked_at) ? STORE_RATE_LIMITED :
	         remember_refusal(r, store_set(worker.store, &r->caller, value, reset, r->request_id, &res),
	                          asked_at, &res);

	ratelimit_add_headers(r, &worker.cfg, status, &res.budget);
	if (status == STORE_NOT_REPLICATED)
		log_unconfirmed(r, "sum_set", value, res.sum);
	if (!store_ok_or_problem(r, status, false, &res))
		return;
	log_sum_event(r, "sum_set", value, res.sum);
	http_reply_json_int(r, 200, head, res.sum, "}");
}

static void handle_put_sum(struct request *r)
{
	int64_t number;

	if (!caller_or_problem(r, AUTH_ADMIN))
		return;
	if (!body_int64_or_problem(r, "number", &number))
		return;
	set_sum(r, number, false, "{\"message\":\"Sum set successfully.\",\"new_sum\":");
}

static void handle_delete_sum(struct request *r)
{
	if (!caller_or_problem(r, AUTH_ADMIN))
		return;
	set_sum(r, 0, true, "{\"message\":\"Sum reset successfully.\",\"new_sum\":");
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

/* ?after=<entry id>&limit=<1..1000> (both optional; limit 100) or a 400 problem. */
static bool ledger_query_or_problem(struct request *r, char *after, size_t cap, long *limit)
{
	static const char *const names[] = { "after", "limit", NULL };
	const char *v;
	size_t len;
	int64_t n;
	enum http_query q;

	if (!http_query_only(r, names)) {
		http_problem(r, PROBLEM_INVALID_QUERY, "the ledger takes after=<entry id> and limit=<1-1000>, once each");
		return false;
	}
	after[0] = '\0';
	q = http_query_get(r, "after", &v, &len);
	if (q == HTTP_QUERY_REPEATED || (q == HTTP_QUERY_ONE && (len >= cap || !is_entry_id(v, len)))) {
		http_problem(r, PROBLEM_INVALID_QUERY, "after must be an entry id as the ledger gives them (<ms>-<seq>)");
		return false;
	}
	if (q == HTTP_QUERY_ONE) {
		memcpy(after, v, len);
		after[len] = '\0';
	}
	*limit = 100;
	q = http_query_get(r, "limit", &v, &len);
	if (q == HTTP_QUERY_REPEATED ||
	    (q == HTTP_QUERY_ONE && (decimal_parse_int64(v, len, DECIMAL_REFUSE_MINUS_ZERO, &n) != DECIMAL_OK ||
	                             n < 1 || n > STORE_LEDGER_LIMIT_MAX))) {
		http_problem(r, PROBLEM_INVALID_QUERY, "limit must be an integer from 1 to 1000");
		return false;
	}
	if (q == HTTP_QUERY_ONE)
		*limit = (long)n;
	return true;
}

/*
 * GET /abacus/sum/ledger: the changes, oldest first, a page at a time.  Admin
 * keys only (entries show key ids and Idempotency-Keys).  The page is the
 * store's text, kept in a buffer this worker reuses.
 */
static void handle_get_ledger(struct request *r)
{
	static struct store_text page;
	struct store_result res;
	enum store_status status;
	char after[48];
	long limit;
	int64_t asked_at;

	if (!caller_or_problem(r, AUTH_ADMIN))
		return;
	if (!ledger_query_or_problem(r, after, sizeof(after), &limit))
		return;
	if (worker.cfg.ledger_retention_seconds == 0) {
		http_problem(r, PROBLEM_LEDGER_OFF, "ABACUS_LEDGER_RETENTION_SECONDS is 0");
		return;
	}
	status = refused_here(r, &res, &asked_at) ? STORE_RATE_LIMITED :
	         remember_refusal(r, store_ledger(worker.store, &r->caller, after, limit, &res, &page), asked_at, &res);
	ratelimit_add_headers(r, &worker.cfg, status, &res.budget);
	if (!store_ok_or_problem(r, status, false, &res))
		return;
	r->resp.status = 200;
	r->resp.content_type = "application/json";
	r->resp.body_ext = page.text;
	r->resp.body_len = page.len;
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
	const char *path;
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
	{ "/healthz", METRICS_EP_HEALTHZ, "GET, HEAD",
	  { [HTTP_GET] = handle_healthz, [HTTP_HEAD] = handle_healthz } },
	{ "/readyz", METRICS_EP_READYZ, "GET, HEAD",
	  { [HTTP_GET] = handle_readyz, [HTTP_HEAD] = handle_readyz } },
	{ "/metrics", METRICS_EP_METRICS, "GET, HEAD",
	  { [HTTP_GET] = handle_metrics, [HTTP_HEAD] = handle_metrics } },
};

/* The request pipeline: route, then the handler.  Returns the endpoint label. */
static enum metrics_endpoint dispatch(struct request *r)
{
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *route = &routes[i];

		if (!http_path_is(r, route->path))
			continue;
		if (route->handlers[r->method] == NULL) {
			http_problem(r, PROBLEM_METHOD_NOT_ALLOWED, "see the Allow header");
			http_add_header(r, "Allow", route->allow);
		} else {
			route->handlers[r->method](r);
		}
		return route->endpoint;
	}
	http_problem(r, PROBLEM_NOT_FOUND, "no such route");
	return METRICS_EP_OTHER;
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
