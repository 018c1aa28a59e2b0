/*
 * abacus-load — a load generator for abacus that checks what it measures.
 *
 * Concurrent POST /abacus/number (and, with --get-ratio, GET /abacus/sum)
 * over one or more front ends, on libcurl's multi interface; with --sums N
 * the same over N named sums (POST /abacus/sums/{name}/number, GET
 * /abacus/sums/{name}).  With --idempotency every addition carries its own
 * Idempotency-Key and a failed one is retried with the same key on the same
 * sum, so --verify can check that each sum moved by exactly the deltas that
 * were acknowledged.  See docs/LOAD.md.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
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
#define MAX_SUMS 100000                 /* --sums: at most this many named sums */
#define SUMNAME_MAX 64                  /* the service's name rules (lib/sumname.h) */

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
	long sums;                      /* named sums to spread over; 0: the original sum */
	const char *sum_prefix;         /* their names: <prefix>-<i> */
};

/* One logical request (an addition or a read) and its retries. */
struct job {
	long index;                     /* 0..requests-1 */
	bool is_get;
	int64_t delta;
	int target;
	long sum;                       /* 0..sums-1 (0 without --sums); kept across retries */
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
	char url[640];
	char body[64];
	char key_header[128];
	char errbuf[CURL_ERROR_SIZE];
	char reply[256];                /* the answer's first bytes (a problem's type) */
	size_t reply_len;
};

static struct options opt = {
	.requests = 1000, .concurrency = 16, .delta_min = 1, .delta_max = 1, .timeout_s = 10,
	.max_retries = DEFAULT_MAX_RETRIES, .sum_prefix = "load",
};
static char run_id[32];
static uint64_t rng_state;
/*
 * The first SIGINT/SIGTERM: start no new request; finish (and retry) those in
 * flight, then report.  A second one ends the run at once (SA_RESETHAND).
 */
static volatile sig_atomic_t draining;

/* ---- results ---- */
static double *latencies;               /* ms, one per finished job */
static long finished, succeeded, failed, retries, issued;
static long status_count[STATUS_SLOTS + 1]; /* index 0: transport error */
static __int128 acknowledged_delta;     /* sum of deltas of 200 additions */
static __int128 *sum_acknowledged;      /* the same per named sum (--sums) */
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
	      "  --get-ratio F         share of GETs of the sum among the requests (default 0)\n"
	      "  --sums N              spread the requests over N named sums, <prefix>-0 .. <prefix>-(N-1)\n"
	      "                        (/abacus/sums/{name}...; default 0: the original /abacus/number, /abacus/sum)\n"
	      "  --sum-prefix P        the named sums' prefix (default load)\n"
	      "  --verify              read the sum (each sum) before and after; exit 1 unless it moved by\n"
	      "                        exactly the acknowledged deltas\n"
	      "  --metrics-url URL     poll this /metrics every second into metrics_snapshots.txt\n"
	      "  --out-csv FILE        one line per attempt: timestamp,worker_id,target,status,latency_ms,error,\n"
	      "                        method,idempotency_key,delta,sum\n"
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

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/*
 * The prefix makes valid names (the service's rules, docs/API.md "Named
 * sums": 1-64 of A-Z a-z 0-9 _ . -, the first a letter or a digit) up to the
 * longest, <prefix>-<sums-1>: a bad one is refused here rather than by every
 * request of the run.
 */
static bool sum_prefix_ok(void)
{
	const char *p = opt.sum_prefix;
	char last[32];
	int digits = snprintf(last, sizeof(last), "%ld", opt.sums > 0 ? opt.sums - 1 : 0);

	if (!is_alnum(p[0])) {
		fprintf(stderr, "abacus-load: --sum-prefix '%s' must start with a letter or a digit\n", p);
		return false;
	}
	for (size_t i = 1; p[i] != '\0'; i++) {
		if (!is_alnum(p[i]) && p[i] != '_' && p[i] != '.' && p[i] != '-') {
			fprintf(stderr, "abacus-load: --sum-prefix '%s' may hold only A-Z a-z 0-9 _ . -\n", p);
			return false;
		}
	}
	if (strlen(p) + 1 + (size_t)digits > SUMNAME_MAX) {
		fprintf(stderr, "abacus-load: --sum-prefix '%s' makes names longer than %d characters\n", p,
		        SUMNAME_MAX);
		return false;
	}
	return true;
}

/* The name of sum i: "default" without --sums (the original routes), else <prefix>-<i>. */
static const char *sum_name(long i, char *buf, size_t len)
{
	if (opt.sums == 0)
		return "default";
	snprintf(buf, len, "%s-%ld", opt.sum_prefix, i);
	return buf;
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
		{ "max-retries", required_argument, NULL, 'R' }, { "sums", required_argument, NULL, 'S' },
		{ "sum-prefix", required_argument, NULL, 'P' },
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
		case 'S':
			/* Digits only: no sign, space or leading zero (STYLE.md, "Integers"). */
			opt.sums = strtol(optarg, &end, 10);
			if (optarg[0] == '\0' || strspn(optarg, "0123456789") != strlen(optarg) ||
			    (optarg[0] == '0' && optarg[1] != '\0') || strlen(optarg) > 6 || opt.sums > MAX_SUMS) {
				fprintf(stderr, "abacus-load: --sums wants a whole number from 0 to %d, not '%s'\n",
				        MAX_SUMS, optarg);
				return false;
			}
			break;
		case 'P': opt.sum_prefix = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: return false;
		}
	}
	return opt.target_count > 0 && optind == argc && sum_prefix_ok();
}

/* ---- a blocking GET for --verify ---- */

struct buffer {
	char data[65536];
	size_t len;
};

/* Keeps the first bytes of an answer in its slot. */
static size_t collect_slot(char *p, size_t size, size_t n, void *ctx)
{
	struct slot *s = ctx;
	size_t k = size * n;

	if (k > sizeof(s->reply) - 1 - s->reply_len)
		k = sizeof(s->reply) - 1 - s->reply_len;
	memcpy(s->reply + s->reply_len, p, k);
	s->reply_len += k;
	s->reply[s->reply_len] = '\0';
	return size * n;
}

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

/* A blocking reader: one easy handle, reused for every sum (one connection). */
static CURL *reader_new(void)
{
	CURL *e = curl_easy_init();

	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(opt.timeout_s * 1000));
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	return e;
}

/*
 * Reads sum i through base into *out: GET /abacus/sum, or with --sums GET
 * /abacus/sums/{name}, where a never-written sum (404 sum-not-found) reads
 * 0.  A transport error, 408, 429 or 5xx is tried again (50 times, 0.2 s
 * apart: a failover may be under way); any other answer fails at once.  On
 * failure says why on stderr.
 */
static bool read_sum(CURL *e, const char *base, long i, int64_t *out)
{
	struct curl_slist *h = NULL;
	struct buffer *b = calloc(1, sizeof(*b));
	char url[640], hdr[300], name[SUMNAME_MAX + 1];
	long code = 0;
	bool ok = false, again = true;
	CURLcode rc = CURLE_OK;

	if (b == NULL)
		return false;
	if (opt.sums == 0)
		snprintf(url, sizeof(url), "%s/abacus/sum", base);
	else
		snprintf(url, sizeof(url), "%s/abacus/sums/%s", base, sum_name(i, name, sizeof(name)));
	if (opt.api_key != NULL) {
		snprintf(hdr, sizeof(hdr), "X-API-Key: %s", opt.api_key);
		h = curl_slist_append(h, hdr);
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, b);
	for (int attempt = 0; attempt < 50 && !ok && again; attempt++) {
		const char *p;

		b->len = 0;
		b->data[0] = '\0';
		code = 0;
		rc = curl_easy_perform(e);
		if (rc == CURLE_OK)
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
		if (code == 200 && (p = strstr(b->data, "\"current_sum\"")) != NULL) {
			p += strlen("\"current_sum\"");
			p += strspn(p, " \t");
			*out = strtoll(p + (*p == ':'), NULL, 10);
			ok = true;
		} else if (code == 404 && opt.sums > 0 && strstr(b->data, "sum-not-found") != NULL) {
			*out = 0;
			ok = true;
		} else if (code >= 400 && code < 500 && code != 408 && code != 429) {
			again = false;
		} else {
			usleep(200000);
		}
	}
	if (!ok && rc != CURLE_OK)
		fprintf(stderr, "abacus-load: GET %s: %s\n", url, curl_easy_strerror(rc));
	else if (!ok)
		fprintf(stderr, "abacus-load: GET %s answered %ld: %.300s\n", url, code, b->data);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
	curl_slist_free_all(h);
	free(b);
	return ok;
}

/*
 * Reads every sum (one, or --sums N) into sums[] through base; false (said
 * on stderr) if one could not be read.
 */
static bool read_sums(const char *base, int64_t *sums, const char *when)
{
	CURL *e = reader_new();
	bool ok = true;
	long n = opt.sums > 0 ? opt.sums : 1;

	for (long i = 0; i < n && ok; i++) {
		ok = read_sum(e, base, i, &sums[i]);
		if (!ok) {
			char name[SUMNAME_MAX + 1];

			if (opt.sums == 0)
				fprintf(stderr, "abacus-load: cannot read the sum %s the run\n", when);
			else
				fprintf(stderr, "abacus-load: cannot read the sum %s %s the run\n",
				        sum_name(i, name, sizeof(name)), when);
		}
	}
	curl_easy_cleanup(e);
	return ok;
}

/* ---- the load ---- */

static void on_drain_signal(int sig)
{
	(void)sig;
	draining = 1;
}

static bool next_job(struct job *job)
{
	if (issued >= opt.requests || draining)
		return false;
	memset(job, 0, sizeof(*job));
	job->index = issued;
	job->target = (int)(issued % opt.target_count);
	if (opt.sums > 0) {
		/*
		 * The sums in turn; the front ends in turn too, shifted by one at
		 * each pass over the sums, so that every sum is reached through
		 * every front end (with 2 front ends and an even N a sum would
		 * otherwise always start on the same one).
		 */
		job->sum = issued % opt.sums;
		job->target = (int)((issued + issued / opt.sums) % opt.target_count);
	}
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
	if (opt.sums > 0) {
		char name[SUMNAME_MAX + 1];

		/* The same sum on every attempt: keys are scoped by sum (on another it is another request). */
		snprintf(s->url, sizeof(s->url), "%s/abacus/sums/%s%s", opt.targets[j->target],
		         sum_name(j->sum, name, sizeof(name)), j->is_get ? "" : "/number");
	} else {
		snprintf(s->url, sizeof(s->url), "%s/abacus/%s", opt.targets[j->target], j->is_get ? "sum" : "number");
	}
	if (!j->is_get) {
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
	s->reply_len = 0;
	s->reply[0] = '\0';
	curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, collect_slot);
	curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
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
	char name[SUMNAME_MAX + 1];

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
	fputc('"', csv);
	/*
	 * What was sent, and to which sum: the audit (tools/abacus-audit
	 * --load-csv, --sum) matches it with that sum's ledger.
	 */
	if (s->job.is_get)
		fputs(",GET,,,", csv);
	else if (opt.idempotency)
		fprintf(csv, ",POST,%s-%ld,%" PRId64 ",", run_id, s->job.index, s->job.delta);
	else
		fprintf(csv, ",POST,,%" PRId64 ",", s->job.delta);
	fprintf(csv, "%s\n", sum_name(s->job.sum, name, sizeof(name)));
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
	/* A named sum never written answers 404 sum-not-found: a right answer, not a failure. */
	if (code == 200 || (code == 404 && j->is_get && opt.sums > 0 && strstr(s->reply, "sum-not-found") != NULL)) {
		succeeded++;
		if (!j->is_get) {
			acknowledged_delta += j->delta;
			if (sum_acknowledged != NULL)
				sum_acknowledged[j->sum] += j->delta;
		}
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
	        (double)finished / fmax(t - started, 1e-9), failed, retries, final ? "\n" : "");
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
	while (finished < (draining ? issued : opt.requests)) {
		double t = now_s();
		int running, queued;
		CURLMsg *msg;

		for (int i = 0; i < opt.concurrency; i++) {
			struct slot *s = &slots[i];

			bool retry = s->busy && s->attempt_start < 0 && t >= s->not_before;

			if (retry || (!s->busy && (opt.rate <= 0 || t >= started + (double)issued / opt.rate) &&
			              next_job(&s->job)))
				start_attempt(multi, s);
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
		char over[48] = "";

		if (opt.sums > 0)
			snprintf(over, sizeof(over), ", %ld named sum%s", opt.sums, opt.sums > 1 ? "s" : "");
		printf("requests: %ld in %.2f s = %.0f req/s  (concurrency %d, %d target%s%s)\n", finished, elapsed,
		       (double)finished / elapsed, opt.concurrency, opt.target_count, opt.target_count > 1 ? "s" : "", over);
		printf("latency ms: p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", percentile(50), percentile(90),
		       percentile(99), finished ? latencies[finished - 1] : 0.0);
		printf("statuses (every attempt):");
		for (int code = 0; code <= STATUS_SLOTS; code++)
			if (status_count[code] > 0)
				printf(" %s%d:%ld", code == 0 ? "error" : "", code == 0 ? 0 : code, status_count[code]);
		printf("\nsucceeded: %ld  failed: %ld  retries: %ld\n", succeeded, failed, retries);
		/* The deltas of the additions that got a 200 (what --verify expects the sum to move by). */
		if (acknowledged_delta >= INT64_MIN && acknowledged_delta <= INT64_MAX)
			printf("acknowledged: %" PRId64 "%s\n", (int64_t)acknowledged_delta,
			       draining ? "  (drained: stopped by a signal)" : "");
		else
			printf("acknowledged: (beyond int64)%s\n", draining ? "  (drained: stopped by a signal)" : "");
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

/* Prints the int128 v in decimal (the expected sum may be beyond int64). */
static const char *i128_str(__int128 v, char *buf, size_t len)
{
	char tmp[48];
	size_t n = 0;
	unsigned __int128 u = v < 0 ? -(unsigned __int128)v : (unsigned __int128)v;

	do {
		tmp[n++] = (char)('0' + (int)(u % 10));
		u /= 10;
	} while (u > 0);
	if (v < 0)
		tmp[n++] = '-';
	for (size_t i = 0; i < n && i + 1 < len; i++)
		buf[i] = tmp[n - 1 - i];
	buf[n < len ? n : len - 1] = '\0';
	return buf;
}

/*
 * --verify with --sums: every sum must have moved by exactly its own
 * acknowledged deltas.  One line per sum that did not, then the verdict
 * with the count of sums checked; 0 or 1 as the exit status.
 */
static int verify_sums(const int64_t *before, const int64_t *after)
{
	long bad = 0;
	__int128 total_before = 0, total_after = 0;
	char name[SUMNAME_MAX + 1], e1[48], e2[48], e3[48];

	for (long i = 0; i < opt.sums; i++) {
		__int128 expected = (__int128)before[i] + sum_acknowledged[i];

		total_before += before[i];
		total_after += after[i];
		if ((__int128)after[i] == expected)
			continue;
		bad++;
		printf("verify: sum %s went %" PRId64 " -> %" PRId64 ", its acknowledged deltas say %s (%s%s)\n",
		       sum_name(i, name, sizeof(name)), before[i], after[i], i128_str(expected, e1, sizeof(e1)),
		       (__int128)after[i] > expected ? "+" : "", i128_str((__int128)after[i] - expected, e2, sizeof(e2)));
	}
	if (bad == 0) {
		printf("verify: ok, each sum moved by exactly its acknowledged deltas (%ld sums checked, "
		       "together %s -> %s)\n", opt.sums, i128_str(total_before, e1, sizeof(e1)),
		       i128_str(total_after, e2, sizeof(e2)));
		return 0;
	}
	printf("verify: FAILED: %ld of %ld sums did not move by exactly their acknowledged deltas "
	       "(%ld sums checked; acknowledged in all %s)\n", bad, opt.sums, opt.sums,
	       i128_str(acknowledged_delta, e3, sizeof(e3)));
	return 1;
}

int main(int argc, char **argv)
{
	int64_t *before = NULL, *after = NULL;
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
	{
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_drain_signal;
		sa.sa_flags = SA_RESETHAND;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	rng_state = (uint64_t)wall_s() * 1000003u ^ (uint64_t)getpid();
	snprintf(run_id, sizeof(run_id), "load-%lx-%x", (unsigned long)time(NULL), (unsigned)(rng_next() & 0xffffff));
	latencies = calloc((size_t)opt.requests, sizeof(double));
	before = calloc((size_t)(opt.sums > 0 ? opt.sums : 1), sizeof(*before));
	after = calloc((size_t)(opt.sums > 0 ? opt.sums : 1), sizeof(*after));
	if (opt.sums > 0)
		sum_acknowledged = calloc((size_t)opt.sums, sizeof(*sum_acknowledged));
	if (latencies == NULL || before == NULL || after == NULL || (opt.sums > 0 && sum_acknowledged == NULL)) {
		fprintf(stderr, "abacus-load: out of memory for %ld latencies and %ld sums\n", (long)opt.requests,
		        opt.sums);
		rc = 2;
		goto out;
	}
	if (opt.csv_path != NULL) {
		csv = fopen(opt.csv_path, "w");
		if (csv == NULL) {
			perror(opt.csv_path);
			rc = 2;
			goto out;
		}
		fputs("timestamp,worker_id,target,status,latency_ms,error,method,idempotency_key,delta,sum\n", csv);
	}
	if (opt.verify && !read_sums(opt.targets[0], before, "before")) {
		rc = 1;
		goto out;
	}
	run();
	if (csv != NULL)
		fclose(csv);
	csv = NULL;
	if (opt.verify && !read_sums(opt.targets[opt.target_count - 1], after, "after")) {
		rc = 1;
	} else if (opt.verify && opt.sums > 0) {
		rc = verify_sums(before, after);
	} else if (opt.verify) {
		__int128 expected = (__int128)before[0] + acknowledged_delta;

		if ((__int128)after[0] == expected) {
			printf("verify: ok, the sum moved by exactly the acknowledged deltas (%" PRId64 " -> %" PRId64 ")\n",
			       before[0], after[0]);
		} else {
			printf("verify: FAILED: the sum went %" PRId64 " -> %" PRId64 ", the acknowledged deltas say %s%lld\n",
			       before[0], after[0], expected > INT64_MAX || expected < INT64_MIN ? "(out of range) " : "",
			       (long long)expected);
			rc = 1;
		}
	}
out:
	if (csv != NULL)
		fclose(csv);
	free(latencies);
	free(before);
	free(after);
	free(sum_acknowledged);
	curl_global_cleanup();
	return rc;
}
