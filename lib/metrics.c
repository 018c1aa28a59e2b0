#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "decimal.h"
#include "metrics_shm.h"

#define BUCKET_COUNT 15                 /* finite bounds; slot BUCKET_COUNT is +Inf */

/* ---- what a scrape shows ---- */

static const uint64_t bucket_us[BUCKET_COUNT] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000,
};
static const char *const bucket_le[BUCKET_COUNT + 1] = {
	"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
	"0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
};

/* The statuses the API answers; anything else counts as "other". */
static const int statuses[] = { 200, 400, 401, 403, 404, 405, 409, 411, 413, 415, 422, 429, 500, 503 };
#define STATUS_COUNT (sizeof(statuses) / sizeof(statuses[0]) + 1)

static const char *const endpoint_names[METRICS_EP_COUNT] = {
	"/abacus/sum", "/abacus/number", "/abacus/sum/ledger", "/abacus/sums", "/abacus/sums/{name}",
	"/abacus/sums/{name}/number", "/abacus/sums/{name}/ledger", "/healthz", "/readyz", "/metrics", "other",
};
static const char *const method_names[HTTP_METHOD_COUNT] = {
	"GET", "HEAD", "POST", "PUT", "DELETE", "OTHER",
};
static const char *const op_names[METRICS_OP_COUNT] = {
	"get", "add", "set", "ledger", "list", "peek", "register", "admit", "ping", "connect", "script_load",
};
static const char *const result_names[METRICS_RESULT_COUNT] = { "ok", "error", "unavailable" };
static const char *const auth_names[METRICS_AUTH_COUNT] = { "missing", "unknown", "not_admin" };

/* ---- the counters: the payload of the shared segment (metrics_shm.h) ---- */

struct histogram {
	_Atomic uint64_t bucket[BUCKET_COUNT + 1]; /* per bucket, not cumulative */
	_Atomic uint64_t sum_us;
};

/* Shared by the workers of every build of this layout: change it only with METRICS_LAYOUT_VERSION. */
struct counters {
	_Atomic uint64_t requests[METRICS_EP_COUNT][HTTP_METHOD_COUNT][STATUS_COUNT];
	struct histogram request_duration[METRICS_EP_COUNT][HTTP_METHOD_COUNT];
	_Atomic uint64_t redis_ops[METRICS_OP_COUNT][METRICS_RESULT_COUNT];
	struct histogram redis_duration[METRICS_OP_COUNT];
	_Atomic uint64_t auth_failures[METRICS_AUTH_COUNT];
	_Atomic uint64_t counters[METRICS_COUNTER_COUNT];
};

static struct metrics_shm *shm;        /* the segment, or private memory */
static struct counters *ctr;            /* its payload; NULL before metrics_open */
static char build_version[32] = "unknown";
static unsigned workers_configured;     /* ABACUS_WORKERS; 0: unknown, not rendered */
static char *render_buf;
static size_t render_cap;

bool metrics_open(const char *name, const char *version)
{
	snprintf(build_version, sizeof(build_version), "%s", version);
	shm = metrics_shm_open(name, METRICS_LAYOUT_VERSION, sizeof(struct counters));
	ctr = metrics_shm_payload(shm);
	return metrics_shm_is_shared(shm);
}

void metrics_close(void)
{
	metrics_shm_close(shm);
	shm = NULL;
	ctr = NULL;
}

size_t metrics_segment_size(void)
{
	return metrics_shm_size(sizeof(struct counters));
}

const char *metrics_segment_name(void)
{
	return shm != NULL ? metrics_shm_name(shm) : "";
}

unsigned metrics_workers_alive(void)
{
	return shm != NULL ? metrics_shm_workers_alive(shm) : 0;
}

void metrics_set_workers_configured(unsigned count)
{
	workers_configured = count;
}

/* ---- the hot path: relaxed atomic adds, nothing else ---- */

#ifdef ABACUS_NO_METRICS
#define ADD(counter, n) ((void)(counter), (void)(n))
#else
#define ADD(counter, n) atomic_fetch_add_explicit(&(counter), (n), memory_order_relaxed)
#endif

static size_t status_slot(int status)
{
	for (size_t i = 0; i < STATUS_COUNT - 1; i++)
		if (statuses[i] == status)
			return i;
	return STATUS_COUNT - 1;
}

static void observe(struct histogram *h, uint64_t us)
{
	size_t b = 0;

	while (b < BUCKET_COUNT && us > bucket_us[b])
		b++;
	ADD(h->bucket[b], 1);
	ADD(h->sum_us, us);
}

void metrics_request(enum metrics_endpoint ep, enum http_method method, int status,
                     uint64_t duration_us)
{
	if (ctr == NULL || ep >= METRICS_EP_COUNT || method >= HTTP_METHOD_COUNT)
		return;
	ADD(ctr->requests[ep][method][status_slot(status)], 1);
	observe(&ctr->request_duration[ep][method], duration_us);
}

void metrics_redis(enum metrics_redis_op op, enum metrics_redis_result result, uint64_t duration_us)
{
	if (ctr == NULL || op >= METRICS_OP_COUNT || result >= METRICS_RESULT_COUNT)
		return;
	ADD(ctr->redis_ops[op][result], 1);
	observe(&ctr->redis_duration[op], duration_us);
}

void metrics_auth_failure(enum metrics_auth_reason reason)
{
	if (ctr != NULL && reason < METRICS_AUTH_COUNT)
		ADD(ctr->auth_failures[reason], 1);
}

void metrics_inc(enum metrics_counter counter)
{
	if (ctr != NULL && counter < METRICS_COUNTER_COUNT)
		ADD(ctr->counters[counter], 1);
}

/* ---- rendering (the /metrics request only) ---- */

static size_t render_len;

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void emit(const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(render_buf + render_len, render_cap - render_len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < render_cap - render_len) {
			render_len += (size_t)n;
			return;
		}
		{
			size_t cap = render_cap * 2 + (size_t)n;
			char *grown = realloc(render_buf, cap);

			if (grown == NULL)
				return;
			render_buf = grown;
			render_cap = cap;
		}
	}
}

static uint64_t load(_Atomic uint64_t *v)
{
	return atomic_load_explicit(v, memory_order_relaxed);
}

static void family(const char *name, const char *type, const char *help)
{
	emit("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A counter family of one unlabelled series. */
static void emit_counter(const char *name, const char *help, enum metrics_counter c)
{
	family(name, "counter", help);
	emit("%s %llu\n", name, (unsigned long long)load(&ctr->counters[c]));
}

/* One histogram series; labels is `a="x",b="y"`.  Skipped when empty. */
static void emit_histogram(const char *name, const char *labels, struct histogram *h)
{
	uint64_t counts[BUCKET_COUNT + 1];
	uint64_t total = 0;

	for (int b = 0; b <= BUCKET_COUNT; b++) {
		counts[b] = load(&h->bucket[b]);
		total += counts[b];
	}
	if (total == 0)
		return;
	total = 0;
	for (int b = 0; b <= BUCKET_COUNT; b++) {
		total += counts[b];
		emit("%s_bucket{%s,le=\"%s\"} %llu\n", name, labels, bucket_le[b], (unsigned long long)total);
	}
	emit("%s_sum{%s} %.6f\n", name, labels, (double)load(&h->sum_us) / 1e6);
	/* _count is the +Inf bucket by construction: they never disagree mid-scrape. */
	emit("%s_count{%s} %llu\n", name, labels, (unsigned long long)total);
}

static void render_requests(void)
{
	char labels[128];

	family("abacus_request_total", "counter", "Requests answered by the workers of this front end.");
	for (int e = 0; e < METRICS_EP_COUNT; e++)
		for (int m = 0; m < HTTP_METHOD_COUNT; m++)
			for (size_t s = 0; s < STATUS_COUNT; s++) {
				uint64_t v = load(&ctr->requests[e][m][s]);
				char status[DECIMAL_MAX + 1];

				if (v == 0)
					continue;
				if (s < STATUS_COUNT - 1)
					status[decimal_format(status, statuses[s])] = '\0';
				else
					snprintf(status, sizeof(status), "other");
				emit("abacus_request_total{endpoint=\"%s\",method=\"%s\",status=\"%s\"} %llu\n",
				     endpoint_names[e], method_names[m], status, (unsigned long long)v);
			}
	family("abacus_request_duration_seconds", "histogram",
	       "Time from accepting a request to writing its response.");
	for (int e = 0; e < METRICS_EP_COUNT; e++)
		for (int m = 0; m < HTTP_METHOD_COUNT; m++) {
			snprintf(labels, sizeof(labels), "endpoint=\"%s\",method=\"%s\"", endpoint_names[e],
			         method_names[m]);
			emit_histogram("abacus_request_duration_seconds", labels, &ctr->request_duration[e][m]);
		}
}

static void render_redis(void)
{
	char labels[64];

	family("abacus_redis_operations_total", "counter",
	       "Redis commands sent by the workers, by operation and result.");
	for (int o = 0; o < METRICS_OP_COUNT; o++)
		for (int r = 0; r < METRICS_RESULT_COUNT; r++) {
			uint64_t v = load(&ctr->redis_ops[o][r]);

			if (v > 0)
				emit("abacus_redis_operations_total{operation=\"%s\",result=\"%s\"} %llu\n",
				     op_names[o], result_names[r], (unsigned long long)v);
		}
	family("abacus_redis_operation_duration_seconds", "histogram",
	       "Round-trip time of Redis commands.");
	for (int o = 0; o < METRICS_OP_COUNT; o++) {
		snprintf(labels, sizeof(labels), "operation=\"%s\"", op_names[o]);
		emit_histogram("abacus_redis_operation_duration_seconds", labels, &ctr->redis_duration[o]);
	}
	emit_counter("abacus_redis_reconnects_total", "Reconnections to Redis after a lost connection.",
	             METRICS_REDIS_RECONNECTS);
	emit_counter("abacus_redis_redirects_total",
	             "Commands redirected to another Redis: Cluster MOVED/ASK, or a master that is no longer one.",
	             METRICS_REDIS_REDIRECTS);
	emit_counter("abacus_redis_replication_shortfalls_total",
	             "Writes answered 503 because WAIT saw fewer than ABACUS_REDIS_MIN_REPLICAS replicas.",
	             METRICS_REPLICATION_SHORTFALLS);
}

static void render_counters(void)
{
	family("abacus_auth_failures_total", "counter", "Requests refused by API key checks, by reason.");
	for (int a = 0; a < METRICS_AUTH_COUNT; a++)
		emit("abacus_auth_failures_total{reason=\"%s\"} %llu\n", auth_names[a],
		     (unsigned long long)load(&ctr->auth_failures[a]));
	emit_counter("abacus_rate_limited_total", "Requests refused by the rate limiter (429).",
	             METRICS_RATE_LIMITED);
	emit_counter("abacus_idempotent_replays_total", "Additions answered from an earlier identical request.",
	             METRICS_IDEMPOTENT_REPLAYS);
	emit_counter("abacus_idempotency_conflicts_total", "Idempotency keys reused with another number (422).",
	             METRICS_IDEMPOTENCY_CONFLICTS);
	family("abacus_workers", "gauge", "Workers of this front end alive now.");
	emit("abacus_workers %u\n", metrics_workers_alive());
	if (workers_configured > 0) {
		family("abacus_workers_configured", "gauge",
		       "Workers this front end is configured to keep alive (ABACUS_WORKERS).");
		emit("abacus_workers_configured %u\n", workers_configured);
	}
	family("abacus_build_info", "gauge", "Always 1; the version label says which build answers.");
	emit("abacus_build_info{version=\"%s\"} 1\n", build_version);
}

const char *metrics_render(size_t *len)
{
	if (render_buf == NULL) {
		render_cap = (size_t)64 * 1024;
		render_buf = malloc(render_cap);
		if (render_buf == NULL) {
			*len = 0;
			return "";
		}
	}
	render_len = 0;
	render_buf[0] = '\0';
	if (ctr != NULL) {
		render_requests();
		render_redis();
		render_counters();
	}
	*len = render_len;
	return render_buf;
}
