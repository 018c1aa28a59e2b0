/* lib/metrics: the counters and their Prometheus rendering. */
#include "metrics.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_main.h"

static char name[64];

static void fresh_name(void)
{
	static int seq;

	snprintf(name, sizeof(name), "/abacus-check-%d-%d", (int)getpid(), ++seq);
	shm_unlink(name);
}

/* The value of one exposition line ("name{labels} value"), or -1. */
static long long sample(const char *text, const char *series)
{
	const char *p = text;
	size_t n = strlen(series);

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return atoll(p + n + 1);
		p += n;
	}
	return -1;
}

START_TEST(test_metrics_one_scrape_counts_every_worker)
{
	pid_t kids[2];
	size_t len;
	const char *text;

	/* The segment's own races are check_metrics_shm's; here, that the counters are in it. */
	fresh_name();
	for (int i = 0; i < 2; i++) {
		kids[i] = fork();
		ck_assert_int_ge(kids[i], 0);
		if (kids[i] == 0) {
			if (!metrics_open(name, "test"))
				_exit(2);
			for (int k = 0; k < 1000; k++)
				metrics_request(METRICS_EP_SUM, HTTP_GET, 200, 50);
			_exit(0);
		}
	}
	for (int i = 0; i < 2; i++) {
		int st;

		ck_assert_int_eq(waitpid(kids[i], &st, 0), kids[i]);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker %d failed", i);
	}
	ck_assert(metrics_open(name, "test"));
	ck_assert_str_eq(metrics_segment_name(), name);
	text = metrics_render(&len);
	ck_assert_int_eq(sample(text, "abacus_request_total{endpoint=\"/abacus/sum\",method=\"GET\",status=\"200\"}"), 2000);
	ck_assert_int_eq(sample(text, "abacus_request_duration_seconds_count{endpoint=\"/abacus/sum\",method=\"GET\"}"), 2000);
	ck_assert_int_eq(sample(text, "abacus_workers"), 1);
	metrics_close();
	shm_unlink(name);
}
END_TEST

START_TEST(test_metrics_layout_4_segment_keeps_its_bytes)
{
	/*
	 * Workers of the previous build share the segment with this one while a
	 * front end restarts: layout 4 must stay 20,800 bytes (or the version move).
	 * Layout 3 was 14,016 bytes, before the named sums' four routes and four
	 * operations; layout 2 12,320, before the ledger's route and operation.
	 */
	ck_assert_int_eq(METRICS_LAYOUT_VERSION, 4);
	ck_assert_uint_eq(metrics_segment_size(), 20800);
	ck_assert_str_eq(metrics_segment_name(), "");        /* before metrics_open */
}
END_TEST

START_TEST(test_metrics_dead_workers_are_not_counted)
{
	pid_t kid;
	int pipefd[2];
	char c;
	size_t len;

	fresh_name();
	ck_assert(metrics_open(name, "test"));
	ck_assert_int_eq(pipe(pipefd), 0);
	kid = fork();
	if (kid == 0) {
		metrics_open(name, "test");
		(void)!write(pipefd[1], "x", 1);
		pause();
		_exit(0);
	}
	ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
	ck_assert_int_eq(sample(metrics_render(&len), "abacus_workers"), 2);
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
	ck_assert_int_eq(sample(metrics_render(&len), "abacus_workers"), 1);
	metrics_close();
	shm_unlink(name);
}
END_TEST

START_TEST(test_metrics_histogram_buckets_are_cumulative)
{
	size_t len;
	const char *text;

	fresh_name();
	ck_assert(metrics_open(name, "1.2.3"));
	metrics_redis(METRICS_OP_ADD, METRICS_RESULT_OK, 100);      /* le 0.0001 */
	metrics_redis(METRICS_OP_ADD, METRICS_RESULT_OK, 101);      /* le 0.00025 */
	metrics_redis(METRICS_OP_ADD, METRICS_RESULT_ERROR, 7000000); /* +Inf only */
	text = metrics_render(&len);
	ck_assert_int_eq(sample(text, "abacus_redis_operation_duration_seconds_bucket{operation=\"add\",le=\"0.0001\"}"), 1);
	ck_assert_int_eq(sample(text, "abacus_redis_operation_duration_seconds_bucket{operation=\"add\",le=\"0.00025\"}"), 2);
	ck_assert_int_eq(sample(text, "abacus_redis_operation_duration_seconds_bucket{operation=\"add\",le=\"5\"}"), 2);
	ck_assert_int_eq(sample(text, "abacus_redis_operation_duration_seconds_bucket{operation=\"add\",le=\"+Inf\"}"), 3);
	ck_assert_int_eq(sample(text, "abacus_redis_operation_duration_seconds_count{operation=\"add\"}"), 3);
	ck_assert(strstr(text, "abacus_redis_operation_duration_seconds_sum{operation=\"add\"} 7.000201\n") != NULL);
	ck_assert_int_eq(sample(text, "abacus_redis_operations_total{operation=\"add\",result=\"ok\"}"), 2);
	ck_assert_int_eq(sample(text, "abacus_redis_operations_total{operation=\"add\",result=\"error\"}"), 1);
	ck_assert(strstr(text, "abacus_build_info{version=\"1.2.3\"} 1\n") != NULL);
	ck_assert_int_eq(len, strlen(text));
	metrics_close();
	shm_unlink(name);
}
END_TEST

START_TEST(test_metrics_counters_and_labels)
{
	size_t len;
	const char *text;

	fresh_name();
	ck_assert(metrics_open(name, "t"));
	metrics_auth_failure(METRICS_AUTH_NOT_ADMIN);
	metrics_inc(METRICS_RATE_LIMITED);
	metrics_inc(METRICS_RATE_LIMITED);
	metrics_inc(METRICS_IDEMPOTENT_REPLAYS);
	metrics_inc(METRICS_IDEMPOTENCY_CONFLICTS);
	metrics_inc(METRICS_REDIS_RECONNECTS);
	metrics_request(METRICS_EP_NUMBER, HTTP_POST, 429, 10);
	metrics_request(METRICS_EP_COUNT, HTTP_POST, 200, 10);    /* out of range: ignored */
	text = metrics_render(&len);
	ck_assert_int_eq(sample(text, "abacus_auth_failures_total{reason=\"not_admin\"}"), 1);
	ck_assert_int_eq(sample(text, "abacus_auth_failures_total{reason=\"missing\"}"), 0);
	ck_assert_int_eq(sample(text, "abacus_rate_limited_total"), 2);
	ck_assert_int_eq(sample(text, "abacus_idempotent_replays_total"), 1);
	ck_assert_int_eq(sample(text, "abacus_idempotency_conflicts_total"), 1);
	ck_assert_int_eq(sample(text, "abacus_redis_reconnects_total"), 1);
	ck_assert_int_eq(sample(text, "abacus_request_total{endpoint=\"/abacus/number\",method=\"POST\",status=\"429\"}"), 1);
	ck_assert(strstr(text, "# TYPE abacus_workers gauge\n") != NULL);
	metrics_close();
	shm_unlink(name);
}
END_TEST

START_TEST(test_metrics_workers_configured_is_rendered_when_known)
{
	size_t len;
	const char *text;

	/* Rendered only, not in the segment: the layout test above keeps its bytes. */
	fresh_name();
	ck_assert(metrics_open(name, "t"));
	text = metrics_render(&len);
	ck_assert_msg(strstr(text, "abacus_workers_configured") == NULL,
	              "unknown (0) must not be rendered, got:\n%s", text);
	metrics_set_workers_configured(4);
	text = metrics_render(&len);
	ck_assert(strstr(text, "# TYPE abacus_workers_configured gauge\n") != NULL);
	ck_assert_int_eq(sample(text, "abacus_workers_configured"), 4);
	ck_assert_int_eq(sample(text, "abacus_workers"), 1);
	metrics_set_workers_configured(0);
	ck_assert(strstr(metrics_render(&len), "abacus_workers_configured") == NULL);
	metrics_close();
	shm_unlink(name);
}
END_TEST

static Suite *metrics_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_test(core, test_metrics_histogram_buckets_are_cumulative);
	tcase_add_test(core, test_metrics_counters_and_labels);
	tcase_add_test(core, test_metrics_one_scrape_counts_every_worker);
	tcase_add_test(core, test_metrics_workers_configured_is_rendered_when_known);
	tcase_add_test(limits, test_metrics_layout_4_segment_keeps_its_bytes);
	tcase_add_test(errors, test_metrics_dead_workers_are_not_counted);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(metrics_suite)
