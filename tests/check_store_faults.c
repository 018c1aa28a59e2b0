/*
 * The store at each fault point between it and Redis, forced by the fault
 * proxy (tests/faultproxy.py) that tests/run-unit.sh starts in front of the
 * test Redis: ABACUS_TEST_PROXY_PORT (Redis through the proxy),
 * ABACUS_TEST_PROXY_CONTROL (its control port), ABACUS_TEST_REDIS_PORT (Redis
 * itself, to look behind the store's back).
 */
#include "store.h"

#include <arpa/inet.h>
#include <check.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"

static int redis_port, proxy_port, control_port;
static char prefix[64];
static const struct caller alice = { .key_id = "aaaaaaaa", .limit_id = "k:aaaaaaaa" };

/* Sends one control line to the proxy; returns its answer in out. */
static void proxy(const char *line, char *out, size_t cap)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)control_port) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char buf[256];
	ssize_t n;
	size_t len = 0;

	ck_assert_int_ge(fd, 0);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	snprintf(buf, sizeof(buf), "%s\n", line);
	ck_assert_int_eq(write(fd, buf, strlen(buf)), (ssize_t)strlen(buf));
	while (len + 1 < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
		len += (size_t)n;
		if (memchr(buf, '\n', len) != NULL)
			break;
	}
	buf[len] = '\0';
	close(fd);
	ck_assert_msg(strncmp(buf, "OK", 2) == 0, "proxy answered [%s] to [%s]", buf, line);
	if (out != NULL)
		snprintf(out, cap, "%s", buf);
}

/* Runs a command on Redis directly (not through the proxy). */
static void redis_do(const char *command)
{
	redisContext *c = redisConnect("127.0.0.1", redis_port);
	redisReply *r;

	ck_assert(c != NULL && c->err == 0);
	r = redisCommand(c, command);
	ck_assert_ptr_nonnull(r);
	freeReplyObject(r);
	redisFree(c);
}

/* A store through the proxy with this rate limit, keys under a fresh prefix; connected and warm. */
static struct store *open_limited_store(long limit)
{
	struct store_options opt;
	struct store_result res;
	struct store *s;

	snprintf(prefix, sizeof(prefix), "f%d-%ld-%d", (int)getpid(), (long)time(NULL), rand());
	memset(&opt, 0, sizeof(opt));
	opt.target.transport = REDIS_TRANSPORT_TCP;
	strcpy(opt.target.host, "127.0.0.1");
	opt.target.port = proxy_port;
	opt.connect_timeout_ms = 500;
	opt.command_timeout_ms = 1000;
	opt.prefix = prefix;
	opt.idempotency_ttl_seconds = 60;
	opt.rate_limit_requests = limit;
	opt.rate_limit_window_seconds = 60;
	s = store_new(&opt);
	ck_assert_ptr_nonnull(s);
	proxy("CLEAR", NULL, 0);
	redis_do("CONFIG SET maxmemory 0");     /* whatever a failed test left */
	/* Open, with the scripts loaded: a fault then hits a connection that was open. */
	ck_assert_int_eq(store_get(s, &alice, &res), STORE_OK);
	return s;
}

static struct store *open_store(void)
{
	return open_limited_store(1000000);
}

/*
 * While the proxy holds a reply ("ARM drop ... wait"), another client's
 * command runs on Redis; then the reply is dropped and the store resends.
 */
static void *meanwhile(void *command)
{
	char status[256] = "";

	for (int i = 0; i < 100 && strstr(status, "held=1 ") == NULL; i++) {
		usleep(20000);
		proxy("STATUS", status, sizeof(status));
	}
	redis_do(command);
	proxy("RELEASE", NULL, 0);
	return NULL;
}

static pthread_t start_meanwhile(const char *command)
{
	pthread_t t;

	ck_assert_int_eq(pthread_create(&t, NULL, meanwhile, (void *)command), 0);
	return t;
}

/* The sum as Redis has it, read directly (0 when missing). */
static long long redis_sum(void)
{
	redisContext *c = redisConnect("127.0.0.1", redis_port);
	redisReply *r;
	long long v;

	ck_assert(c != NULL && c->err == 0);
	r = redisCommand(c, "GET {%s}:sum", prefix);
	v = r != NULL && r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
	freeReplyObject(r);
	redisFree(c);
	return v;
}

static struct idem_key key(const char *text)
{
	struct idem_key k = { text, strlen(text) };

	return k;
}

START_TEST(test_lost_reply_of_an_addition_is_resent_and_recognised)
{
	struct store *s = open_store();
	struct idem_key k = key("lost-1");
	struct store_result res;

	proxy("ARM drop script:add 1 0", NULL, 0);
	ck_assert_int_eq(store_add(s, &alice, &k, 7, "req-test", &res), STORE_OK);   /* not REPLAYED */
	ck_assert_int_eq(res.sum, 7);
	ck_assert_int_eq(redis_sum(), 7);
	/* The client's own repeat is a replay. */
	ck_assert_int_eq(store_add(s, &alice, &k, 7, "req-test", &res), STORE_REPLAYED);
	ck_assert_int_eq(redis_sum(), 7);
	store_free(s);
}
END_TEST

START_TEST(test_lost_reply_of_a_keyless_addition_applies_once)
{
	struct store *s = open_store();
	struct idem_key none = { "", 0 };
	struct store_result res;

	proxy("ARM drop script:add 1 0", NULL, 0);
	ck_assert_int_eq(store_add(s, &alice, &none, 3, "req-test", &res), STORE_OK);
	ck_assert_int_eq(redis_sum(), 3);
	store_free(s);
}
END_TEST

START_TEST(test_lost_reply_of_a_set_is_not_set_again)
{
	struct store *s = open_store();
	struct store_result res;
	char incr[128];
	pthread_t t;

	/* Set 100; before its reply arrives another client adds 5; the resend must keep it. */
	snprintf(incr, sizeof(incr), "INCRBY {%s}:sum 5", prefix);
	proxy("ARM drop script:set 1 wait", NULL, 0);
	t = start_meanwhile(incr);
	ck_assert_int_eq(store_set(s, &alice, 100, false, "req-test", &res), STORE_OK);
	pthread_join(t, NULL);
	ck_assert_int_eq(res.sum, 100);
	ck_assert_int_eq(redis_sum(), 105);
	store_free(s);
}
END_TEST

START_TEST(test_resend_at_the_rate_limit_is_recognised)
{
	struct store *s = open_limited_store(2);        /* the warm-up GET took one */
	struct idem_key k = key("limit-1");
	struct store_result res;

	proxy("ARM drop script:add 1 0", NULL, 0);
	/* The first attempt took the last one: the resend must not be refused. */
	ck_assert_int_eq(store_add(s, &alice, &k, 6, "req-test", &res), STORE_OK);
	ck_assert_int_eq(redis_sum(), 6);
	ck_assert_int_eq(store_add(s, &alice, &k, 6, "req-test", &res), STORE_RATE_LIMITED);
	store_free(s);
}
END_TEST

START_TEST(test_resend_refused_by_a_full_redis_is_unknown)
{
	struct store *s = open_store();
	struct idem_key k = key("full-1");
	struct store_result res;
	pthread_t t;

	proxy("ARM drop script:add 1 wait", NULL, 0);
	t = start_meanwhile("CONFIG SET maxmemory 1");
	/* The first attempt ran; the resend is refused before it runs: unknown, not "full". */
	ck_assert_int_eq(store_add(s, &alice, &k, 2, "req-test", &res), STORE_OUTCOME_UNKNOWN);
	pthread_join(t, NULL);
	redis_do("CONFIG SET maxmemory 0");
	ck_assert_int_eq(redis_sum(), 2);
	store_free(s);
}
END_TEST

START_TEST(test_lost_reply_twice_is_unknown)
{
	struct store *s = open_store();
	struct idem_key k = key("twice-1");
	struct store_result res;

	proxy("ARM drop script:add 1 0", NULL, 0);
	proxy("ARM drop script:add 1 0", NULL, 0);
	ck_assert_int_eq(store_add(s, &alice, &k, 3, "req-test", &res), STORE_OUTCOME_UNKNOWN);
	ck_assert_int_eq(redis_sum(), 3);
	store_free(s);
}
END_TEST

START_TEST(test_reset_before_redis_is_resent)
{
	struct store *s = open_store();
	struct idem_key k = key("reset-1");
	struct store_result res;

	proxy("ARM reset script:add 1", NULL, 0);
	ck_assert_int_eq(store_add(s, &alice, &k, 4, "req-test", &res), STORE_OK);
	ck_assert_int_eq(redis_sum(), 4);
	proxy("ARM reset script:set 1", NULL, 0);
	ck_assert_int_eq(store_set(s, &alice, 9, false, "req-test", &res), STORE_OK);
	ck_assert_int_eq(redis_sum(), 9);
	store_free(s);
}
END_TEST

START_TEST(test_late_reply_is_an_unknown_outcome)
{
	struct store *s = open_store();
	struct idem_key k = key("late-1");
	struct store_result res;

	proxy("ARM hold script:add 1 2500", NULL, 0);
	ck_assert_int_eq(store_add(s, &alice, &k, 9, "req-test", &res), STORE_OUTCOME_UNKNOWN);
	for (int i = 0; i < 50 && redis_sum() != 9; i++)
		usleep(100000);
	ck_assert_int_eq(redis_sum(), 9);              /* it did run */
	/* The retry with the same key replays (after the backoff pause). */
	for (int i = 0; i < 50; i++) {
		enum store_status st = store_add(s, &alice, &k, 9, "req-test", &res);

		if (st != STORE_UNAVAILABLE) {
			ck_assert_int_eq(st, STORE_REPLAYED);
			break;
		}
		usleep(100000);
	}
	ck_assert_int_eq(redis_sum(), 9);
	/* A read without an answer is just unavailable. */
	ck_assert_int_eq(store_get(s, &alice, &res), STORE_OK);
	proxy("ARM hold script:get 1 2500", NULL, 0);
	ck_assert_int_eq(store_get(s, &alice, &res), STORE_UNAVAILABLE);
	store_free(s);
}
END_TEST

START_TEST(test_refused_connection_changes_nothing)
{
	struct store *s = open_store();
	struct idem_key k = key("refused-1");
	struct store_result res;

	proxy("REFUSE on", NULL, 0);
	proxy("KILL", NULL, 0);
	ck_assert_int_eq(store_get(s, &alice, &res), STORE_UNAVAILABLE);  /* meets the reset */
	ck_assert_int_eq(store_add(s, &alice, &k, 5, "req-test", &res), STORE_UNAVAILABLE);
	ck_assert_int_eq(store_set(s, &alice, 5, false, "req-test", &res), STORE_UNAVAILABLE);
	ck_assert_int_eq(redis_sum(), 0);
	proxy("REFUSE off", NULL, 0);
	for (int i = 0; i < 50 && store_add(s, &alice, &k, 5, "req-test", &res) != STORE_OK; i++)
		usleep(100000);
	ck_assert_int_eq(redis_sum(), 5);
	store_free(s);
}
END_TEST

static Suite *faults_suite(void)
{
	Suite *s = suite_create("store_faults");
	TCase *tc = tcase_create("faults");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_lost_reply_of_an_addition_is_resent_and_recognised);
	tcase_add_test(tc, test_lost_reply_of_a_keyless_addition_applies_once);
	tcase_add_test(tc, test_lost_reply_of_a_set_is_not_set_again);
	tcase_add_test(tc, test_resend_at_the_rate_limit_is_recognised);
	tcase_add_test(tc, test_resend_refused_by_a_full_redis_is_unknown);
	tcase_add_test(tc, test_lost_reply_twice_is_unknown);
	tcase_add_test(tc, test_reset_before_redis_is_resent);
	tcase_add_test(tc, test_late_reply_is_an_unknown_outcome);
	tcase_add_test(tc, test_refused_connection_changes_nothing);
	suite_add_tcase(s, tc);
	return s;
}

static Suite *faults_suite_with_proxy(void)
{
	const char *r = getenv("ABACUS_TEST_REDIS_PORT");
	const char *p = getenv("ABACUS_TEST_PROXY_PORT");
	const char *c = getenv("ABACUS_TEST_PROXY_CONTROL");

	if (r == NULL || p == NULL || c == NULL || atoi(r) <= 0 || atoi(p) <= 0 || atoi(c) <= 0) {
		fprintf(stderr, "check_store_faults: set ABACUS_TEST_REDIS_PORT, ABACUS_TEST_PROXY_PORT and "
		        "ABACUS_TEST_PROXY_CONTROL (tests/run-unit.sh does)\n");
		exit(EXIT_FAILURE);
	}
	redis_port = atoi(r);
	proxy_port = atoi(p);
	control_port = atoi(c);
	srand((unsigned)getpid());
	return faults_suite();
}

CHECK_MAIN(faults_suite_with_proxy)
