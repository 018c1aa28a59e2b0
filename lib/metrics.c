#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define MAGIC 0x31534349524d4241ULL     /* "ABMRICS1", little-endian */
#define MAX_WORKERS 128
#define BUCKET_COUNT 15                 /* finite bounds; slot BUCKET_COUNT is +Inf */
#define OPEN_WAIT_MS 2000

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
	"/abacus/sum", "/abacus/number", "/healthz", "/readyz", "/metrics", "other",
};
static const char *const method_names[HTTP_METHOD_COUNT] = {
	"GET", "HEAD", "POST", "PUT", "DELETE", "OTHER",
};
static const char *const op_names[METRICS_OP_COUNT] = {
	"get", "add", "set", "ping", "connect", "script_load",
};
static const char *const result_names[METRICS_RESULT_COUNT] = { "ok", "error", "unavailable" };
static const char *const auth_names[METRICS_AUTH_COUNT] = { "missing", "unknown", "not_admin" };

/* ---- the segment ---- */

struct histogram {
	_Atomic uint64_t bucket[BUCKET_COUNT + 1]; /* per bucket, not cumulative */
	_Atomic uint64_t sum_us;
};

struct worker_slot {
	_Atomic int32_t pid;            /* 0: free */
	_Atomic uint64_t start_ticks;   /* /proc/<pid>/stat starttime, against pid reuse */
};

struct segment {
	uint64_t magic;                 /* MAGIC once initialised */
	uint32_t version;               /* METRICS_LAYOUT_VERSION */
	uint32_t size;                  /* sizeof(struct segment) */
	_Atomic uint32_t ready;         /* set last, with release order */
	uint32_t reserved;
	struct worker_slot workers[MAX_WORKERS];
	_Atomic uint64_t requests[METRICS_EP_COUNT][HTTP_METHOD_COUNT][STATUS_COUNT];
	struct histogram request_duration[METRICS_EP_COUNT][HTTP_METHOD_COUNT];
	_Atomic uint64_t redis_ops[METRICS_OP_COUNT][METRICS_RESULT_COUNT];
	struct histogram redis_duration[METRICS_OP_COUNT];
	_Atomic uint64_t auth_failures[METRICS_AUTH_COUNT];
	_Atomic uint64_t counters[METRICS_COUNTER_COUNT];
};

static struct segment *seg;             /* shared, or private on failure */
static bool seg_shared;
static char seg_name[256];
static char build_version[32] = "unknown";
static char *render_buf;
static size_t render_cap;

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Field 22 of /proc/<pid>/stat (start time in clock ticks); 0 if unreadable. */
static uint64_t process_start_ticks(pid_t pid)
{
	char path[64], buf[1024];
	FILE *f;
	size_t n;
	const char *p;
	unsigned long long ticks = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');         /* the command name may contain spaces */
	if (p == NULL)
		return 0;
	/* After ")": field 3 is the state; starttime is field 22. */
	for (int field = 2; field < 22 && p != NULL; field++)
		p = strchr(p + 1, ' ');
	if (p == NULL || sscanf(p + 1, "%llu", &ticks) != 1)
		return 0;
	return ticks;
}

static bool slot_alive(struct worker_slot *slot)
{
	int32_t pid = atomic_load_explicit(&slot->pid, memory_order_acquire);
	uint64_t ticks;

	if (pid <= 0)
		return false;
	if (kill(pid, 0) != 0 && errno != EPERM)
		return false;
	ticks = atomic_load_explicit(&slot->start_ticks, memory_order_acquire);
	/* 0 while the owner is still registering, or /proc unreadable: trust kill(). */
	return ticks == 0 || process_start_ticks(pid) == 0 || process_start_ticks(pid) == ticks;
}

/* A slot another worker holds (or is registering, pid < 0) whose owner has died. */
static bool slot_reclaimable(struct worker_slot *slot, int32_t pid)
{
	if (pid < 0)
		return kill(-pid, 0) != 0 && errno != EPERM;
	return !slot_alive(slot);
}

static void register_worker(void)
{
	int32_t me = (int32_t)getpid();
	uint64_t ticks = process_start_ticks(me);

	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < MAX_WORKERS; i++) {
			struct worker_slot *slot = &seg->workers[i];
			int32_t expected = atomic_load(&slot->pid);

			/* First pass: free slots only; second: reclaim dead ones. */
			if (expected != 0 && (pass == 0 || !slot_reclaimable(slot, expected)))
				continue;
			/*
			 * Claimed as -me ("registering": never counted, never freed while
			 * we live), the start time written, then the pid published: a
			 * scrape in between can neither free the slot nor compare our pid
			 * with the start time of the slot's dead previous owner.
			 */
			if (atomic_compare_exchange_strong(&slot->pid, &expected, -me)) {
				atomic_store_explicit(&slot->start_ticks, ticks, memory_order_release);
				atomic_store_explicit(&slot->pid, me, memory_order_release);
				return;
			}
		}
	}
	log_message(LOG_LEVEL_WARN, "metrics_workers_full", NULL,
	            "more than 128 workers on one segment: abacus_workers undercounts");
}

static bool header_matches(const struct segment *s, size_t file_size)
{
	return s->magic == MAGIC && s->version == METRICS_LAYOUT_VERSION &&
	       s->size == sizeof(struct segment) && file_size == sizeof(struct segment);
}

static void log_segment(enum log_level level, const char *event, const char *name, const char *why)
{
	struct log_line l;

	if (log_begin(&l, level, event, NULL)) {
		log_str(&l, "segment", name);
		log_str(&l, "message", why);
		log_end(&l);
	}
}

/* Creates the segment; false with errno EEXIST if someone else did first. */
static struct segment *create_segment(const char *name)
{
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	struct segment *s;

	if (fd < 0)
		return NULL;
	if (ftruncate(fd, (off_t)sizeof(struct segment)) != 0) {
		close(fd);
		shm_unlink(name);
		return NULL;
	}
	s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (s == MAP_FAILED) {
		shm_unlink(name);
		return NULL;
	}
	s->magic = MAGIC;
	s->version = METRICS_LAYOUT_VERSION;
	s->size = sizeof(struct segment);
	atomic_store_explicit(&s->ready, 1, memory_order_release);
	return s;
}

/*
 * Attaches to a segment another worker created: waits (bounded) until it has
 * our size and is marked ready, and keeps it only if the header is ours.  A
 * file of another size is another layout: it is never mapped past its end
 * (that would SIGBUS) and never read.
 */
static struct segment *attach_segment(const char *name)
{
	int fd = shm_open(name, O_RDWR, 0);
	struct segment *s = NULL;
	struct stat st;

	if (fd < 0)
		return NULL;
	for (int waited = 0; waited < OPEN_WAIT_MS; waited++, sleep_ms(1)) {
		if (fstat(fd, &st) != 0)
			break;
		if (st.st_size == 0)
			continue;               /* the creator has not sized it yet */
		if ((size_t)st.st_size != sizeof(*s))
			break;                  /* another layout */
		s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (s == MAP_FAILED) {
			s = NULL;
			break;
		}
		if (atomic_load_explicit(&s->ready, memory_order_acquire) == 1) {
			if (header_matches(s, (size_t)st.st_size))
				break;
			munmap(s, sizeof(*s));
			s = NULL;
			break;                  /* ready, but not ours */
		}
		if ((s->magic != 0 && s->magic != MAGIC) || s->ready > 1) {
			munmap(s, sizeof(*s));
			s = NULL;
			break;                  /* not being initialised by one of us */
		}
		munmap(s, sizeof(*s));
		s = NULL;
	}
	close(fd);
	return s;
}

static struct segment *open_named(const char *name)
{
	struct segment *s = create_segment(name);

	if (s == NULL && errno == EEXIST)
		s = attach_segment(name);
	return s;
}

bool metrics_open(const char *name, const char *version)
{
	char fallback[sizeof(seg_name)];

	snprintf(build_version, sizeof(build_version), "%s", version);
	seg = open_named(name);
	snprintf(seg_name, sizeof(seg_name), "%s", name);
	if (seg == NULL) {
		log_segment(LOG_LEVEL_ERROR, "metrics_segment_mismatch", name,
		            "segment missing, unreadable or of another layout; not reading it");
		snprintf(fallback, sizeof(fallback), "%s-v%d", name, METRICS_LAYOUT_VERSION);
		seg = open_named(fallback);
		snprintf(seg_name, sizeof(seg_name), "%s", fallback);
		if (seg != NULL)
			log_segment(LOG_LEVEL_WARN, "metrics_segment_fallback", fallback,
			            "using this segment instead");
	}
	if (seg == NULL) {
		log_segment(LOG_LEVEL_ERROR, "metrics_private", fallback,
		            "no usable shared segment: /metrics shows this worker only");
		seg = calloc(1, sizeof(*seg));
		if (seg == NULL)
			abort(); /* start-up only: nothing sensible left to do */
		seg->magic = MAGIC;
		seg_shared = false;
		seg_name[0] = '\0';
		register_worker();
		return false;
	}
	seg_shared = true;
	register_worker();
	return true;
}

void metrics_close(void)
{
	if (seg == NULL)
		return;
	if (seg_shared) {
		int32_t me = (int32_t)getpid();

		for (int i = 0; i < MAX_WORKERS; i++) {
			int32_t expected = me;

			atomic_compare_exchange_strong(&seg->workers[i].pid, &expected, 0);
		}
		munmap(seg, sizeof(*seg));
	} else {
		free(seg);
	}
	seg = NULL;
}

size_t metrics_segment_size(void)
{
	return sizeof(struct segment);
}

const char *metrics_segment_name(void)
{
	return seg_name;
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
	if (seg == NULL || ep >= METRICS_EP_COUNT || method >= HTTP_METHOD_COUNT)
		return;
	ADD(seg->requests[ep][method][status_slot(status)], 1);
	observe(&seg->request_duration[ep][method], duration_us);
}

void metrics_redis(enum metrics_redis_op op, enum metrics_redis_result result, uint64_t duration_us)
{
	if (seg == NULL || op >= METRICS_OP_COUNT || result >= METRICS_RESULT_COUNT)
		return;
	ADD(seg->redis_ops[op][result], 1);
	observe(&seg->redis_duration[op], duration_us);
}

void metrics_auth_failure(enum metrics_auth_reason reason)
{
	if (seg != NULL && reason < METRICS_AUTH_COUNT)
		ADD(seg->auth_failures[reason], 1);
}

void metrics_inc(enum metrics_counter counter)
{
	if (seg != NULL && counter < METRICS_COUNTER_COUNT)
		ADD(seg->counters[counter], 1);
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
	emit("%s %llu\n", name, (unsigned long long)load(&seg->counters[c]));
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
				uint64_t v = load(&seg->requests[e][m][s]);
				char status[8];

				if (v == 0)
					continue;
				if (s < STATUS_COUNT - 1)
					snprintf(status, sizeof(status), "%d", statuses[s]);
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
			emit_histogram("abacus_request_duration_seconds", labels, &seg->request_duration[e][m]);
		}
}

static void render_redis(void)
{
	char labels[64];

	family("abacus_redis_operations_total", "counter",
	       "Redis commands sent by the workers, by operation and result.");
	for (int o = 0; o < METRICS_OP_COUNT; o++)
		for (int r = 0; r < METRICS_RESULT_COUNT; r++) {
			uint64_t v = load(&seg->redis_ops[o][r]);

			if (v > 0)
				emit("abacus_redis_operations_total{operation=\"%s\",result=\"%s\"} %llu\n",
				     op_names[o], result_names[r], (unsigned long long)v);
		}
	family("abacus_redis_operation_duration_seconds", "histogram",
	       "Round-trip time of Redis commands.");
	for (int o = 0; o < METRICS_OP_COUNT; o++) {
		snprintf(labels, sizeof(labels), "operation=\"%s\"", op_names[o]);
		emit_histogram("abacus_redis_operation_duration_seconds", labels, &seg->redis_duration[o]);
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
		     (unsigned long long)load(&seg->auth_failures[a]));
	emit_counter("abacus_rate_limited_total", "Requests refused by the rate limiter (429).",
	             METRICS_RATE_LIMITED);
	emit_counter("abacus_idempotent_replays_total", "Additions answered from an earlier identical request.",
	             METRICS_IDEMPOTENT_REPLAYS);
	emit_counter("abacus_idempotency_conflicts_total", "Idempotency keys reused with another number (422).",
	             METRICS_IDEMPOTENCY_CONFLICTS);
	family("abacus_workers", "gauge", "Workers of this front end alive now.");
	emit("abacus_workers %u\n", metrics_workers_alive());
	family("abacus_build_info", "gauge", "Always 1; the version label says which build answers.");
	emit("abacus_build_info{version=\"%s\"} 1\n", build_version);
}

unsigned metrics_workers_alive(void)
{
	unsigned alive = 0;

	if (seg == NULL)
		return 0;
	if (!seg_shared)
		return 1;
	for (int i = 0; i < MAX_WORKERS; i++) {
		struct worker_slot *slot = &seg->workers[i];
		int32_t pid = atomic_load(&slot->pid);

		if (pid == 0)
			continue;
		if (pid < 0) {
			/* Registering; freed only if its owner died on the way. */
			if (kill(-pid, 0) != 0 && errno != EPERM)
				atomic_compare_exchange_strong(&slot->pid, &pid, 0);
			continue;
		}
		if (slot_alive(slot)) {
			alive++;
		} else {
			/* Free the slot of a dead worker for the next one. */
			atomic_compare_exchange_strong(&slot->pid, &pid, 0);
		}
	}
	return alive;
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
	if (seg != NULL) {
		render_requests();
		render_redis();
		render_counters();
	}
	*len = render_len;
	return render_buf;
}
