/*
 * abacus-load — a load generator for abacus that checks what it measures.
 *
 * Concurrent POST /abacus/number (and, with --get-ratio, GET /abacus/sum)
 * over one or more front ends, on libcurl's multi interface.  With
 * --idempotency every addition carries its own Idempotency-Key and a failed
 * one is retried with the same key, so --verify can check that the sum moved
 * by exactly the deltas that were acknowledged.  See docs/LOAD.md.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 16
#define DEFAULT_MAX_RETRIES 20
#define STATUS_SLOTS 600

struct options {
	const char *targets[MAX_TARGETS];
	int target_count;
	long requests;
	int concurrency;
	double rate;                    /* requests/s, 0 = as fast as possible */
	bool idempotency;
	const char *api_key;
	const char *metrics_url;
	const char *csv_path;
	bool verify;
	int64_t delta_min, delta_max;
	double get_ratio;
	double timeout_s;
	int max_retries;                /* attempts after the first, per request */
};

/* One logical request (an addition or a read) and its retries. */
struct job {
	long index;                     /* 0..requests-1 */
	bool is_get;
	int64_t delta;
	int target;
	int attempts;
	double first_start;             /* for the latency of the whole job */
};

/* One connection slot: an easy handle and the job it is doing. */
struct slot {
	int id;
	CURL *easy;
	struct curl_slist *headers;
	struct job job;
	bool busy;
	double attempt_start;
	double not_before;              /* retry backoff */
	char url[512];
	char body[64];
	char key_header[128];
	char errbuf[CURL_ERROR_SIZE];
};

static struct options opt = {
	.requests = 1000, .concurrency = 16, .delta_min = 1, .delta_max = 1, .timeout_s = 10,
	.max_retries = DEFAULT_MAX_RETRIES,
};
static char run_id[32];
static uint64_t rng_state;

/* ---- results ---- */
static double *latencies;               /* ms, one per finished job */
static long finished, succeeded, failed, retries, issued;
static long status_count[STATUS_SLOTS + 1]; /* index 0: transport error */
static __int128 acknowledged_delta;     /* sum of deltas of 200 additions */
static FILE *csv;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_next(void)
{
	/* splitmix64 */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int64_t random_delta(void)
{
	/* In unsigned arithmetic: max - min overflows int64 for the full range. */
	uint64_t span = (uint64_t)opt.delta_max - (uint64_t)opt.delta_min;

	if (span == UINT64_MAX)
		return (int64_t)rng_next();
	return (int64_t)((uint64_t)opt.delta_min + rng_next() % (span + 1));
}

static void usage(FILE *out)
{
	fputs("usage: abacus-load --target URL [--target URL ...] [options]\n"
	      "  --target1 URL, --target2 URL   the old tool's spelling of --target\n"
	      "  --requests N          logical requests in all (default 1000)\n"
	      "  --concurrency N       requests in flight (default 16)\n"
	      "  --rate R              requests per second, 0 = as fast as possible (default 0)\n"
	      "  --idempotency         send an Idempotency-Key; retry failures with the same key\n"
	      "  --api-key K           X-API-Key\n"
	      "  --delta-range A:B     random signed deltas in [A, B] (default 1:1)\n"
	      "  --get-ratio F         share of GET /abacus/sum among the requests (default 0)\n"
	      "  --verify              read the sum before and after; exit 1 unless it moved by\n"
	      "                        exactly the acknowledged deltas\n"
	      "  --metrics-url URL     poll this /metrics every second into metrics_snapshots.txt\n"
	      "  --out-csv FILE        one line per attempt: timestamp,worker_id,target,status,latency_ms,error\n"
	      "  --timeout S           per-attempt timeout in seconds (default 10)\n"
	      "  --max-retries N       retries per request with --idempotency (default 20; back-off\n"
	      "                        0.05 s x attempt, at most 1 s)\n", out);
}

static bool parse_int64(const char *s, int64_t *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0')
		return false;
	*out = v;
	return true;
}

static bool parse_args(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "target", required_argument, NULL, 't' }, { "target1", required_argument, NULL, 't' },
		{ "target2", required_argument, NULL, 't' }, { "requests", required_argument, NULL, 'n' },
		{ "concurrency", required_argument, NULL, 'c' }, { "rate", required_argument, NULL, 'r' },
		{ "idempotency", no_argument, NULL, 'i' }, { "api-key", required_argument, NULL, 'k' },
		{ "metrics-url", required_argument, NULL, 'm' }, { "out-csv", required_argument, NULL, 'o' },
		{ "verify", no_argument, NULL, 'v' }, { "delta-range", required_argument, NULL, 'd' },
		{ "get-ratio", required_argument, NULL, 'g' }, { "timeout", required_argument, NULL, 'T' },
		{ "max-retries", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	int c;

	while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		char *end = NULL;

		switch (c) {
		case 't':
			if (opt.target_count == MAX_TARGETS)
				return false;
			opt.targets[opt.target_count++] = optarg;
			break;
		case 'n': opt.requests = strtol(optarg, &end, 10); if (*end || opt.requests < 1) return false; break;
		case 'c': opt.concurrency = (int)strtol(optarg, &end, 10); if (*end || opt.concurrency < 1 || opt.concurrency > 4096) return false; break;
		case 'r': opt.rate = strtod(optarg, &end); if (*end || opt.rate < 0) return false; break;
		case 'i': opt.idempotency = true; break;
		case 'k': opt.api_key = optarg; break;
		case 'm': opt.metrics_url = optarg; break;
		case 'o': opt.csv_path = optarg; break;
		case 'v': opt.verify = true; break;
		case 'g': opt.get_ratio = strtod(optarg, &end); if (*end || opt.get_ratio < 0 || opt.get_ratio > 1) return false; break;
		case 'R': opt.max_retries = (int)strtol(optarg, &end, 10); if (*end || opt.max_retries < 0 || opt.max_retries > 100000) return false; break;
		case 'T': opt.timeout_s = strtod(optarg, &end); if (*end || opt.timeout_s <= 0) return false; break;
		case 'd': {
			char *colon = strchr(optarg, ':');

			if (colon == NULL)
				return false;
			*colon = '\0';
			if (!parse_int64(optarg, &opt.delta_min) || !parse_int64(colon + 1, &opt.delta_max) ||
			    opt.delta_min > opt.delta_max)
				return false;
			break;
		}
		case 'h': usage(stdout); exit(0);
		default: return false;
		}
	}
	return opt.target_count > 0 && optind == argc;
}

/* ---- a blocking GET for --verify ---- */

struct buffer {
	char data[65536];
	size_t len;
};

static size_t collect(char *p, size_t size, size_t n, void *ctx)
{
	struct buffer *b = ctx;
	size_t k = size * n;

	if (b == NULL)
		return k;
	if (k > sizeof(b->data) - 1 - b->len)
		k = sizeof(b->data) - 1 - b->len;
	memcpy(b->data + b->len, p, k);
	b->len += k;
	b->data[b->len] = '\0';
	return size * n;
}

static bool read_sum(const char *base, int64_t *out)
{
	CURL *e = curl_easy_init();
	struct curl_slist *h = NULL;
	struct buffer *b = calloc(1, sizeof(*b));
	char url[512], hdr[300];
	long code = 0;
	bool ok = false;
	const char *p;

	snprintf(url, sizeof(url), "%s/abacus/sum", base);
	if (opt.api_key != NULL) {
		snprintf(hdr, sizeof(hdr), "X-API-Key: %s", opt.api_key);
		h = curl_slist_append(h, hdr);
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(opt.timeout_s * 1000));
	for (int attempt = 0; attempt < 50 && !ok; attempt++) {
		b->len = 0;
		if (curl_easy_perform(e) == CURLE_OK && curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK &&
		    code == 200 && (p = strstr(b->data, "\"current_sum\":")) != NULL) {
			*out = strtoll(p + 14, NULL, 10);
			ok = true;
		} else {
			usleep(200000);
		}
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	free(b);
	return ok;
}

/* ---- the load ---- */

static bool next_job(struct job *job)
{
	if (issued >= opt.requests)
		return false;
	memset(job, 0, sizeof(*job));
	job->index = issued;
	job->target = (int)(issued % opt.target_count);
	job->is_get = opt.get_ratio > 0 && (double)(rng_next() >> 11) / 9007199254740992.0 < opt.get_ratio;
	job->delta = job->is_get ? 0 : random_delta();
	job->first_start = now_s();
	issued++;
	return true;
}

static void start_attempt(CURLM *multi, struct slot *s)
{
	struct job *j = &s->job;

	curl_slist_free_all(s->headers);
	s->headers = NULL;
	if (opt.api_key != NULL) {
		char h[300];

		snprintf(h, sizeof(h), "X-API-Key: %s", opt.api_key);
		s->headers = curl_slist_append(s->headers, h);
	}
	curl_easy_reset(s->easy);
	if (j->is_get) {
		snprintf(s->url, sizeof(s->url), "%s/abacus/sum", opt.targets[j->target]);
	} else {
		snprintf(s->url, sizeof(s->url), "%s/abacus/number", opt.targets[j->target]);
		snprintf(s->body, sizeof(s->body), "{\"number\": %" PRId64 "}", j->delta);
		s->headers = curl_slist_append(s->headers, "Content-Type: application/json");
		if (opt.idempotency) {
			snprintf(s->key_header, sizeof(s->key_header), "Idempotency-Key: %s-%ld", run_id, j->index);
			s->headers = curl_slist_append(s->headers, s->key_header);
		}
		curl_easy_setopt(s->easy, CURLOPT_POSTFIELDS, s->body);
	}
	s->errbuf[0] = '\0';
	curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
	curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
	curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, (long)(opt.timeout_s * 1000));
	curl_easy_setopt(s->easy, CURLOPT_ERRORBUFFER, s->errbuf);
	curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
	curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
	s->attempt_start = now_s();
	j->attempts++;
	curl_multi_add_handle(multi, s->easy);
	s->busy = true;
}

static void write_csv(const struct slot *s, long code, double latency_ms, const char *error)
{
	if (csv == NULL)
		return;
	fprintf(csv, "%.6f,%d,%s,%ld,%.3f,", wall_s(), s->id, opt.targets[s->job.target], code, latency_ms);
	/* The error text is a CSV field: quote it, doubling quotes. */
	fputc('"', csv);
	for (const char *p = error; *p; p++) {
		if (*p == '"')
			fputc('"', csv);
		if (*p != '\n' && *p != '\r')
			fputc(*p, csv);
	}
	fputs("\"\n", csv);
}

/* A failed attempt is retried only with --idempotency (else a retry could add twice). */
static bool retryable(long code)
{
	return opt.idempotency && (code == 0 || code == 429 || code >= 500);
}

static void finish_job(struct slot *s, long code)
{
	struct job *j = &s->job;

	latencies[finished++] = (now_s() - j->first_start) * 1000.0;
	if (code == 200) {
		succeeded++;
		if (!j->is_get)
			acknowledged_delta += j->delta;
	} else {
		failed++;
	}
	s->busy = false;
}

static void on_done(CURLM *multi, CURLMsg *msg)
{
	struct slot *s = NULL;
	long code = 0;
	double latency_ms;

	curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
	curl_multi_remove_handle(multi, msg->easy_handle);
	if (msg->data.result == CURLE_OK)
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
	latency_ms = (now_s() - s->attempt_start) * 1000.0;
	status_count[code >= 0 && code < STATUS_SLOTS ? code : STATUS_SLOTS]++;
	write_csv(s, code, latency_ms, msg->data.result == CURLE_OK ? "" :
	          s->errbuf[0] ? s->errbuf : curl_easy_strerror(msg->data.result));
	if (code != 200 && s->job.is_get == false && retryable(code) && s->job.attempts <= opt.max_retries) {
		retries++;
		s->busy = true;
		/* Retry on the next front end: this one may be the one that is down. */
		s->job.target = (s->job.target + 1) % opt.target_count;
		/* Back off a little; 429 and 503 ask for it. */
		s->not_before = now_s() + fmin(0.05 * s->job.attempts, 1.0);
		s->attempt_start = -1; /* pending retry */
		return;
	}
	finish_job(s, code);
}

/* ---- /metrics snapshots ---- */

static CURL *metrics_easy;
static bool metrics_busy;
static double metrics_next;
static struct buffer *metrics_buf;
static FILE *snapshots;

static void poll_metrics(CURLM *multi, double t)
{
	if (opt.metrics_url == NULL || metrics_busy || t < metrics_next)
		return;
	if (metrics_easy == NULL) {
		metrics_easy = curl_easy_init();
		metrics_buf = calloc(1, sizeof(*metrics_buf));
		snapshots = fopen("metrics_snapshots.txt", "a");
	}
	metrics_buf->len = 0;
	curl_easy_setopt(metrics_easy, CURLOPT_URL, opt.metrics_url);
	curl_easy_setopt(metrics_easy, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(metrics_easy, CURLOPT_WRITEDATA, metrics_buf);
	curl_easy_setopt(metrics_easy, CURLOPT_TIMEOUT_MS, 2000L);
	curl_easy_setopt(metrics_easy, CURLOPT_PRIVATE, NULL);
	curl_multi_add_handle(multi, metrics_easy);
	metrics_busy = true;
	metrics_next = t + 1.0;
}

static void metrics_done(CURLM *multi, CURLMsg *msg)
{
	curl_multi_remove_handle(multi, msg->easy_handle);
	metrics_busy = false;
	if (snapshots != NULL) {
		fprintf(snapshots, "# snapshot %.3f %s %s\n", wall_s(), opt.metrics_url,
		        msg->data.result == CURLE_OK ? "ok" : curl_easy_strerror(msg->data.result));
		fwrite(metrics_buf->data, 1, metrics_buf->len, snapshots);
		fflush(snapshots);
	}
}

/* One last snapshot after the load, so the file always shows its end state. */
static void final_snapshot(void)
{
	CURLcode rc;

	if (opt.metrics_url == NULL || metrics_easy == NULL || snapshots == NULL)
		return;
	metrics_buf->len = 0;
	rc = curl_easy_perform(metrics_easy);
	fprintf(snapshots, "# snapshot %.3f %s %s (final)\n", wall_s(), opt.metrics_url,
	        rc == CURLE_OK ? "ok" : curl_easy_strerror(rc));
	fwrite(metrics_buf->data, 1, metrics_buf->len, snapshots);
	fflush(snapshots);
}

static void progress(double started, bool final)
{
	static double last;
	double t = now_s();

	if (!isatty(STDERR_FILENO) || (!final && t - last < 0.2))
		return;
	last = t;
	fprintf(stderr, "\r%ld/%ld done  %.0f req/s  %ld errors  %ld retries   %s", finished, opt.requests,
	        finished / fmax(t - started, 1e-9), failed, retries, final ? "\n" : "");
	fflush(stderr);
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double percentile(double p)
{
	size_t i;

	if (finished == 0)
		return 0;
	i = (size_t)ceil(p / 100.0 * (double)finished) - 1;
	return latencies[i < (size_t)finished ? i : (size_t)finished - 1];
}

static void run(void)
{
	CURLM *multi = curl_multi_init();
	struct slot *slots = calloc((size_t)opt.concurrency, sizeof(*slots));
	double started = now_s();

	for (int i = 0; i < opt.concurrency; i++) {
		slots[i].id = i;
		slots[i].easy = curl_easy_init();
	}
	curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)opt.concurrency);
	while (finished < opt.requests) {
		double t = now_s();
		int running, queued;
		CURLMsg *msg;

		for (int i = 0; i < opt.concurrency; i++) {
			struct slot *s = &slots[i];

			if (s->busy && s->attempt_start < 0 && t >= s->not_before) {
				start_attempt(multi, s);            /* a retry */
			} else if (!s->busy && (opt.rate <= 0 || t >= started + (double)issued / opt.rate) &&
			           next_job(&s->job)) {
				start_attempt(multi, s);
			}
		}
		poll_metrics(multi, t);
		curl_multi_perform(multi, &running);
		while ((msg = curl_multi_info_read(multi, &queued)) != NULL) {
			char *priv = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
			if (priv == NULL)
				metrics_done(multi, msg);
			else
				on_done(multi, msg);
		}
		progress(started, false);
		curl_multi_poll(multi, NULL, 0, opt.rate > 0 ? 2 : 10, NULL);
	}
	if (metrics_busy) {
		curl_multi_remove_handle(multi, metrics_easy);
		metrics_busy = false;
	}
	final_snapshot();
	progress(started, true);
	{
		double elapsed = now_s() - started;

		qsort(latencies, (size_t)finished, sizeof(double), compare_double);
		printf("requests: %ld in %.2f s = %.0f req/s  (concurrency %d, %d target%s)\n", finished, elapsed,
		       finished / elapsed, opt.concurrency, opt.target_count, opt.target_count > 1 ? "s" : "");
		printf("latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", percentile(50), percentile(90),
		       percentile(99), finished ? latencies[finished - 1] : 0.0);
		printf("statuses (every attempt):");
		for (int code = 0; code <= STATUS_SLOTS; code++)
			if (status_count[code] > 0)
				printf(" %s%d:%ld", code == 0 ? "error" : "", code == 0 ? 0 : code, status_count[code]);
		printf("\nsucceeded: %ld  failed: %ld  retries: %ld\n", succeeded, failed, retries);
	}
	for (int i = 0; i < opt.concurrency; i++) {
		curl_slist_free_all(slots[i].headers);
		curl_easy_cleanup(slots[i].easy);
	}
	free(slots);
	if (metrics_easy != NULL)
		curl_easy_cleanup(metrics_easy);
	free(metrics_buf);
	if (snapshots != NULL)
		fclose(snapshots);
	curl_multi_cleanup(multi);
}

int main(int argc, char **argv)
{
	int64_t before = 0, after = 0;
	int rc = 0;

	if (!parse_args(argc, argv)) {
		usage(stderr);
		return 2;
	}
	for (int i = 0; i < opt.target_count; i++) {
		size_t n = strlen(opt.targets[i]);

		while (n > 0 && opt.targets[i][n - 1] == '/')
			((char *)opt.targets[i])[--n] = '\0';
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	rng_state = (uint64_t)wall_s() * 1000003u ^ (uint64_t)getpid();
	snprintf(run_id, sizeof(run_id), "load-%lx-%x", (unsigned long)time(NULL), (unsigned)(rng_next() & 0xffffff));
	latencies = calloc((size_t)opt.requests, sizeof(double));
	if (latencies == NULL) {
		fprintf(stderr, "abacus-load: out of memory for %ld latencies\n", (long)opt.requests);
		return 2;
	}
	if (opt.csv_path != NULL) {
		csv = fopen(opt.csv_path, "w");
		if (csv == NULL) {
			perror(opt.csv_path);
			return 2;
		}
		fputs("timestamp,worker_id,target,status,latency_ms,error\n", csv);
	}
	if (opt.verify && !read_sum(opt.targets[0], &before)) {
		fprintf(stderr, "abacus-load: cannot read the sum before the run\n");
		return 1;
	}
	run();
	if (csv != NULL)
		fclose(csv);
	if (opt.verify) {
		__int128 expected = (__int128)before + acknowledged_delta;

		if (!read_sum(opt.targets[opt.target_count - 1], &after)) {
			fprintf(stderr, "abacus-load: cannot read the sum after the run\n");
			return 1;
		}
		if ((__int128)after == expected) {
			printf("verify: ok, the sum moved by exactly the acknowledged deltas (%" PRId64 " -> %" PRId64 ")\n",
			       before, after);
		} else {
			printf("verify: FAILED: the sum went %" PRId64 " -> %" PRId64 ", the acknowledged deltas say %s%lld\n",
			       before, after, expected > INT64_MAX || expected < INT64_MIN ? "(out of range) " : "",
			       (long long)expected);
			rc = 1;
		}
	}
	free(latencies);
	curl_global_cleanup();
	return rc;
}
