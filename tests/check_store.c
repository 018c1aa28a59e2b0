/*
 * The store against a real redis-server: tests/run-unit.sh starts one on a
 * free port and passes it in ABACUS_TEST_REDIS_PORT.  Each test uses its
 * own key prefix, so they never see each other's data.
 */
#include "store.h"

#include <check.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check_main.h"
#include "log.h"

static int redis_port;
static long ledger_retention = 3600;    /* of the stores the tests open (0: the ledger off) */
static long max_sums = 100;             /* of the stores the tests open */
static bool limit_per_sum;              /* of the stores the tests open: ABACUS_RATE_LIMIT_SCOPE=sum */
static char prefix[64];
static int prefix_seq;
static struct caller alice = { .key_id = "aaaaaaaa", .limit_id = "k:aaaaaaaa" };
static struct caller bob = { .key_id = "bbbbbbbb", .limit_id = "k:bbbbbbbb" };

/* A store on the test Redis, keys under key_prefix. */
static struct store *store_at(const char *key_prefix, long limit, long window)
{
	struct store_options opt;
	struct store *s;

	memset(&opt, 0, sizeof(opt));
	opt.target.transport = REDIS_TRANSPORT_TCP;
	strcpy(opt.target.host, "127.0.0.1");
	opt.target.port = redis_port;
	opt.connect_timeout_ms = 500;
	opt.command_timeout_ms = 1000;
	opt.prefix = key_prefix;
	opt.idempotency_ttl_seconds = 60;
	opt.rate_limit_requests = limit;
	opt.rate_limit_window_seconds = window;
	opt.ledger_retention_seconds = ledger_retention;
	opt.max_sums = max_sums;
	opt.rate_limit_per_sum = limit_per_sum;
	s = store_new(&opt);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* A store with a fresh prefix (left in `prefix`). */
static struct store *open_store(long limit, long window)
{
	snprintf(prefix, sizeof(prefix), "t%d-%ld-%d", (int)getpid(), (long)time(NULL), ++prefix_seq);
	return store_at(prefix, limit, window);
}

/* Runs a raw command on a side connection (to corrupt or inspect data). */
static redisReply *raw(const char *fmt, const char *arg)
{
	redisContext *c = redisConnect("127.0.0.1", redis_port);
	redisReply *r;

	ck_assert(c != NULL && c->err == 0);
	r = redisCommand(c, fmt, arg);
	redisFree(c);
	return r;
}

static struct idem_key key(const char *text)
{
	struct idem_key k = { text, strlen(text) };

	return k;
}

static int64_t sum_of(struct store *s)
{
	struct store_result res;

	ck_assert_int_eq(store_get(s, &alice, &res), STORE_OK);
	return res.sum;
}

START_TEST(test_store_missing_sum_reads_zero)
{
	struct store *s = open_store(0, 60);

	ck_assert_int_eq(sum_of(s), 0);
	store_free(s);
}
END_TEST

START_TEST(test_store_add_replay_and_conflict)
{
	struct store *s = open_store(0, 60);
	struct store_result res;
	struct idem_key k1 = key("k1"), k2 = key("k2");

	ck_assert_int_eq(store_add(s, &alice, &k1, 5, "req-test", &res), STORE_OK);
	ck_assert_int_eq(res.sum, 5);
	ck_assert_int_eq(store_add(s, &alice, &k2, -7, "req-test", &res), STORE_OK);
	ck_assert_int_eq(res.sum, -2);
	/* The replay answers the sum at the time of the first addition. */
	ck_assert_int_eq(store_add(s, &alice, &k1, 5, "req-test", &res), STORE_REPLAYED);
	ck_assert_int_eq(res.sum, 5);
	ck_assert_int_eq(store_add(s, &alice, &k1, 6, "req-test", &res), STORE_KEY_CONFLICT);
	ck_assert_int_eq(sum_of(s), -2);
	store_free(s);
}
END_TEST

START_TEST(test_store_keys_are_scoped_per_caller)
{
	struct store *s = open_store(0, 60);
	struct store_result res;
	struct idem_key k = key("same");

	ck_assert_int_eq(store_add(s, &alice, &k, 1, "req-test", &res), STORE_OK);
	ck_assert_int_eq(store_add(s, &bob, &k, 1, "req-test", &res), STORE_OK);
	ck_assert_int_eq(res.sum, 2);
	store_free(s);
}
END_TEST

START_TEST(test_store_without_key_always_applies)
{
	struct store *s = open_store(0, 60);
	struct store_result res;
	struct idem_key none = { NULL, 0 };

	ck_assert_int_eq(store_add(s, &alice, &none, 3, "req-test", &res), STORE_OK);
	ck_assert_int_eq(store_add(s, &alice, &none, 3, "req-test", &res), STORE_OK);
	ck_assert_int_eq(res.sum, 6);
	store_free(s);
}
END_TEST

static const struct { int64_t start; int64_t delta; enum store_status want; int64_t end; } edges[] = {
	{ INT64_MAX - 1, 1, STORE_OK, INT64_MAX },
	{ INT64_MAX, 1, STORE_OVERFLOW, INT64_MAX },
	{ INT64_MAX, INT64_MAX, STORE_OVERFLOW, INT64_MAX },
	{ INT64_MIN + 1, -1, STORE_OK, INT64_MIN },
	{ INT64_MIN, -1, STORE_OVERFLOW, INT64_MIN },
	{ INT64_MIN, INT64_MIN, STORE_OVERFLOW, INT64_MIN },
	{ INT64_MIN, INT64_MAX, STORE_OK, -1 },
	/* Around 2^53, where a Lua number (a double) would stop being exact. */
	{ 9007199254740990LL, 1, STORE_OK, 9007199254740991LL },
	{ 9007199254740991LL, 1, STORE_OK, 9007199254740992LL },
	{ -9007199254740990LL, -1, STORE_OK, -9007199254740991LL },
	{ -9007199254740991LL, -1, STORE_OK, -9007199254740992LL },
	{ 9007199254740992LL, 1, STORE_OK, 9007199254740993LL },
	{ 9007199254740993LL, 2, STORE_OK, 9007199254740995LL },
	{ -9007199254740993LL, -2, STORE_OK, -9007199254740995LL },
	{ 4611686018427387904LL, 4611686018427387903LL, STORE_OK, INT64_MAX },
	{ 0, INT64_MIN, STORE_OK, INT64_MIN },
};

START_TEST(test_store_is_exact_at_int64_edges)
{
	struct store *s = open_store(0, 60);
	struct store_result res;
	struct idem_key k = key("edge");
	enum store_status st;

	ck_assert_int_eq(store_set(s, &alice, edges[_i].start, false, "req-test", &res), STORE_OK);
	ck_assert_int_eq(res.sum, edges[_i].start);
	st = store_add(s, &alice, &k, edges[_i].delta, "req-test", &res);
	ck_assert_msg(st == edges[_i].want, "%" PRId64 " + %" PRId64 ": want %s, got %s",
	              edges[_i].start, edges[_i].delta, store_strerror(edges[_i].want), store_strerror(st));
	ck_assert_msg(sum_of(s) == edges[_i].end, "%" PRId64 " + %" PRId64 ": want sum %" PRId64
	              ", got %" PRId64, edges[_i].start, edges[_i].delta, edges[_i].end, sum_of(s));
	if (st == STORE_OK)
		ck_assert_msg(res.sum == edges[_i].end, "%" PRId64 " + %" PRId64 ": answered %" PRId64,
		              edges[_i].start, edges[_i].delta, res.sum);
	if (st == STORE_OVERFLOW) {
		/* A refused key stays unused: a retry is evaluated afresh. */
		ck_assert_int_eq(store_set(s, &alice, 0, false, "req-test", &res), STORE_OK);
		ck_assert_int_eq(store_add(s, &alice, &k, edges[_i].delta, "req-test", &res), STORE_OK);
		ck_assert_int_eq(res.sum, edges[_i].delta);
	}
	store_free(s);
}
END_TEST

/* Stored sums that are not int64 text: a space, empty, too big, a float, padding. */
static const char *const corrupt_sums[] = {
	"not-a-number", "12 34", "", "99999999999999999999", "1e3", " 5", "5 ", "-0",
};

START_TEST(test_store_corrupt_sum_is_reported_not_reset)
{
	struct store *s = open_store(_i % 2 == 0 ? 0 : 100, 60);
	struct store_result res;
	struct idem_key k = key("c");
	char name[128];
	redisContext *c = redisConnect("127.0.0.1", redis_port);
	redisReply *r;

	ck_assert(c != NULL && c->err == 0);
	ck_assert_int_eq(store_get(s, &alice, &res), STORE_OK);
	snprintf(name, sizeof(name), "{%s}:sum", prefix);
	freeReplyObject(redisCommand(c, "SET %s %s", name, corrupt_sums[_i]));
	ck_assert_int_eq(store_get(s, &alice, &res), STORE_NOT_INTEGER);
	ck_assert_int_eq(store_add(s, &alice, &k, 1, "req-test", &res), STORE_NOT_INTEGER);
	r = redisCommand(c, "GET %s", name);
	ck_assert_str_eq(r->str, corrupt_sums[_i]);
	freeReplyObject(r);
	/* The key was not recorded: after a repair it applies. */
	ck_assert_int_eq(store_set(s, &alice, 10, false, "req-test", &res), STORE_OK);
	ck_assert_int_eq(store_add(s, &alice, &k, 1, "req-test", &res), STORE_OK);
	ck_assert_int_eq(res.sum, 11);
	redisFree(c);
	store_free(s);
}
END_TEST

START_TEST(test_store_reloads_scripts_after_flush)
{
	struct store *s = open_store(0, 60);
	struct store_result res;
	struct idem_key k = key("f");

	ck_assert_int_eq(store_get(s, &alice, &res), STORE_OK);
	freeReplyObject(raw("SCRIPT %s", "FLUSH"));
	ck_assert_int_eq(store_add(s, &alice, &k, 4, "req-test", &res), STORE_OK);
	ck_assert_int_eq(res.sum, 4);
	store_free(s);
}
END_TEST

START_TEST(test_store_rate_limit_refuses_without_effect)
{
	struct store *s = open_store(3, 60);
	struct store_result res;
	struct idem_key none = { NULL, 0 };
	struct idem_key k = key("limited");

	ck_assert_int_eq(store_add(s, &alice, &none, 1, "req-test", &res), STORE_OK);
	ck_assert(res.budget.limited);
	ck_assert_int_eq(res.budget.remaining, 2);
	ck_assert_int_eq(res.budget.reset_seconds, 60);
	ck_assert_int_eq(store_add(s, &alice, &none, 1, "req-test", &res), STORE_OK);
	ck_assert_int_eq(res.budget.remaining, 1);
	ck_assert_int_eq(store_add(s, &alice, &none, 1, "req-test", &res), STORE_OK);
	ck_assert_int_eq(res.budget.remaining, 0);
	ck_assert_int_eq(store_add(s, &alice, &k, 1, "req-test", &res), STORE_RATE_LIMITED);
	ck_assert_int_ge(res.budget.retry_after_seconds, 59);
	ck_assert_int_le(res.budget.retry_after_seconds, 60);
	ck_assert_int_eq(res.budget.remaining, 0);
	/* Bob has his own budget; the refused key was not recorded. */
	ck_assert_int_eq(store_get(s, &bob, &res), STORE_OK);
	ck_assert_int_eq(res.sum, 3);
	ck_assert_int_eq(store_add(s, &bob, &k, 1, "req-test", &res), STORE_OK);
	ck_assert_int_eq(res.sum, 4);
	store_free(s);
}
END_TEST

/*
 * The limiter's memory per caller is bounded by the limit: entries older than
 * the window are trimmed once the set is full (issue 18, limiter memory).
 */
START_TEST(test_store_rate_limit_entries_never_exceed_the_limit)
{
	struct store *s = open_store(5, 1);
	struct store_result res;
	char rl[256];
	redisReply *r;

	snprintf(rl, sizeof(rl), "{%s}:rl:%s", prefix, alice.limit_id);
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 5; i++)
			ck_assert_int_eq(store_get(s, &alice, &res), STORE_OK);
		ck_assert_int_eq(store_get(s, &alice, &res), STORE_RATE_LIMITED);
		ck_assert_int_gt(res.budget.retry_us, 0);
		ck_assert_int_le(res.budget.retry_us, 1000000);
		ck_assert_int_ge(res.budget.reset_us, res.budget.retry_us);
		r = raw("ZCARD %s", rl);
		ck_assert_int_eq(r->integer, 5);
		freeReplyObject(r);
		usleep(1050000);        /* the whole window passes */
	}
	store_free(s);
}
END_TEST

/* XLEN of this prefix's ledger. */
static long long ledger_len(void)
{
	char name[256];
	redisReply *r;
	long long n;

	snprintf(name, sizeof(name), "{%s}:ledger", prefix);
	r = raw("XLEN %s", name);
	ck_assert(r != NULL && r->type == REDIS_REPLY_INTEGER);
	n = r->integer;
	freeReplyObject(r);
	return n;
}

/* The ledger: an entry per applied change in the same script, none for a replay, a conflict or a refusal. */
START_TEST(test_store_ledger_records_each_applied_change)
{
	struct store *s = open_store(4, 60);
	struct store_result res;
	struct store_text page = { NULL, 0, 0 };
	struct idem_key k = key("led-1"), none = { NULL, 0 };

	ck_assert_int_eq(store_add(s, &alice, &k, 5, "req-1", &res), STORE_OK);
	ck_assert_int_eq(store_add(s, &alice, &k, 5, "req-2", &res), STORE_REPLAYED);
	ck_assert_int_eq(store_add(s, &alice, &k, 6, "req-3", &res), STORE_KEY_CONFLICT);
	ck_assert_int_eq(ledger_len(), 1);
	ck_assert_int_eq(store_set(s, &bob, 7, true, "req-4", &res), STORE_OK);
	ck_assert_int_eq(store_add(s, &bob, &none, -2, "req-5", &res), STORE_OK);
	ck_assert_int_eq(ledger_len(), 3);
	ck_assert_int_eq(store_ledger(s, &bob, "", 2, &res, &page), STORE_OK);
	ck_assert_ptr_nonnull(strstr(page.text, "\"op\":\"add\",\"number\":5,\"sum\":5,\"key_id\":\"aaaaaaaa\","
	                                        "\"idempotency_key\":\"led-1\",\"request_id\":\"req-1\"}"));
	ck_assert_ptr_nonnull(strstr(page.text, "\"op\":\"reset\",\"number\":7,\"sum\":7,\"was\":5,\"key_id\":\"bbbbbbbb\","
	                                        "\"idempotency_key\":null,\"request_id\":\"req-4\"}"));
	/* The sum and the newest entry, read with the page: the keyless -2 made it 5. */
	ck_assert_ptr_nonnull(strstr(page.text, "\"sum\":5,\"last\":\""));
	ck_assert_ptr_null(strstr(page.text, "req-5"));          /* limit 2 */
	/* Alice's 4th request passes (a replay: nothing appended), her 5th is refused: nothing appended. */
	ck_assert_int_eq(store_add(s, &alice, &k, 5, "req-6", &res), STORE_REPLAYED);
	ck_assert_int_eq(store_add(s, &alice, &none, 1, "req-7", &res), STORE_RATE_LIMITED);
	ck_assert_int_eq(ledger_len(), 3);
	free(page.text);
	store_free(s);
}
END_TEST

/*
 * A change whose entry the ledger refuses (another type at the stream's key:
 * an operator's mistake) is undone by its script: no change without its entry.
 */
START_TEST(test_store_change_refused_by_the_ledger_is_undone)
{
	struct store *s = open_store(0, 60);
	struct store_result res;
	struct idem_key k = key("undone-1"), none = { NULL, 0 };
	char name[256];
	redisReply *r;
	static const int64_t deltas[] = { 5, -7, INT64_MIN, INT64_MAX - 40 };

	ck_assert_int_eq(store_set(s, &alice, 40, false, "req", &res), STORE_OK);
	snprintf(name, sizeof(name), "{%s}:ledger", prefix);
	freeReplyObject(raw("DEL %s", name));
	freeReplyObject(raw("SET %s not-a-stream", name));
	for (size_t i = 0; i < sizeof(deltas) / sizeof(deltas[0]); i++) {
		ck_assert_int_eq(store_add(s, &alice, i % 2 ? &none : &k, deltas[i], "req", &res), STORE_UNAVAILABLE);
		ck_assert_int_eq(sum_of(s), 40);
	}
	ck_assert_int_eq(store_set(s, &alice, 7, true, "req", &res), STORE_UNAVAILABLE);
	ck_assert_int_eq(sum_of(s), 40);
	/* Nothing recorded either: with the stream back, the same key applies (not a replay). */
	freeReplyObject(raw("DEL %s", name));
	ck_assert_int_eq(store_add(s, &alice, &k, 5, "req", &res), STORE_OK);
	ck_assert_int_eq(res.sum, 45);
	r = raw("XLEN %s", name);
	ck_assert_int_eq(r->integer, 1);
	freeReplyObject(r);
	store_free(s);
}
END_TEST

/* An overflow, a corrupt sum and a resend that finds its token append nothing. */
START_TEST(test_store_refused_changes_append_nothing)
{
	struct store *s = open_store(0, 60);
	struct store_result res;
	struct idem_key k = key("edge-1"), none = { NULL, 0 };
	char name[256];

	ck_assert_int_eq(store_set(s, &alice, INT64_MAX, false, "req", &res), STORE_OK);
	ck_assert_int_eq(ledger_len(), 1);
	ck_assert_int_eq(store_add(s, &alice, &k, 1, "req", &res), STORE_OVERFLOW);
	ck_assert_int_eq(store_add(s, &alice, &none, 1, "req", &res), STORE_OVERFLOW);
	snprintf(name, sizeof(name), "{%s}:sum", prefix);
	freeReplyObject(raw("SET %s twelve", name));
	ck_assert_int_eq(store_add(s, &alice, &k, 1, "req", &res), STORE_NOT_INTEGER);
	ck_assert_int_eq(ledger_len(), 1);
	store_free(s);
}
END_TEST

/* ABACUS_LEDGER_RETENTION_SECONDS=0: no stream at all. */
START_TEST(test_store_ledger_off_writes_nothing)
{
	struct store *s;
	struct store_result res;
	struct idem_key k = key("off-1");

	ledger_retention = 0;
	s = open_store(0, 60);
	ledger_retention = 3600;
	ck_assert_int_eq(store_add(s, &alice, &k, 5, "req", &res), STORE_OK);
	ck_assert_int_eq(store_set(s, &alice, 1, false, "req", &res), STORE_OK);
	ck_assert_int_eq(ledger_len(), 0);
	store_free(s);
}
END_TEST

/* Redis's clock in microseconds (TIME), on connection c. */
static long long redis_now_us(redisContext *c)
{
	redisReply *r = redisCommand(c, "TIME");
	long long us;

	ck_assert(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
	us = atoll(r->element[0]->str) * 1000000LL + atoll(r->element[1]->str);
	freeReplyObject(r);
	return us;
}

/*
 * Two admissions in the same microsecond (a clock stepped back) must still be
 * two entries.  The set is filled ahead with one entry for every microsecond
 * of a 200 ms span; requests made inside it each land on a taken microsecond
 * and must be recorded as a second member all the same.
 *
 * Whether the three requests land inside the span depends on how fast this
 * machine is: filling takes a while, and a loaded machine may pause anywhere.
 * Redis's clock, read before and after them, says whether they did; a run
 * that did not is repeated (at most ATTEMPTS times, starting the next span
 * further ahead if filling took longer than the lead), and only a run that
 * did is judged.
 */
#define SPAN_US 200000
#define ATTEMPTS 5

/* Fills rl with one member for every microsecond of [start, start + SPAN_US). */
static void fill_span(redisContext *c, const char *rl, long long start)
{
	for (long long at = start; at < start + SPAN_US; at += 1000) {
		const char *argv[2 + 2 * 1000];
		size_t argvlen[2 + 2 * 1000];
		static char text[1000][24];
		redisReply *r;

		argv[0] = "ZADD";
		argv[1] = rl;
		for (int i = 0; i < 1000; i++) {
			snprintf(text[i], sizeof(text[i]), "%lld", at + i);
			argv[2 + 2 * i] = argv[3 + 2 * i] = text[i];
		}
		for (int i = 0; i < 2 + 2 * 1000; i++)
			argvlen[i] = strlen(argv[i]);
		r = redisCommandArgv(c, 2 + 2 * 1000, argv, argvlen);
		ck_assert(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1000);
		freeReplyObject(r);
	}
}

START_TEST(test_store_rate_limit_counts_a_repeated_microsecond)
{
	struct store *s = open_store(1000000000, 60);
	redisContext *c = redisConnect("127.0.0.1", redis_port);
	struct store_result res;
	char rl[256];
	long long lead = 300000;
	int attempt;
	redisReply *r;

	ck_assert(c != NULL && c->err == 0);
	snprintf(rl, sizeof(rl), "{%s}:rl:%s", prefix, alice.limit_id);
	for (attempt = 0; attempt < ATTEMPTS; attempt++) {
		long long filling = redis_now_us(c), start = filling + lead, before, after;

		freeReplyObject(redisCommand(c, "DEL %s", rl));
		fill_span(c, rl, start);
		filling = redis_now_us(c) - filling;
		if (2 * filling > lead)
			lead = 2 * filling;
		for (int i = 0; i < 100 && (before = redis_now_us(c)) < start; i++)
			usleep((useconds_t)(start - before < 500000 ? start - before : 500000));
		before = redis_now_us(c);
		for (int i = 0; i < 3; i++) {
			ck_assert_int_eq(store_get(s, &alice, &res), STORE_OK);
			ck_assert_int_eq(res.budget.remaining, 1000000000 - SPAN_US - i - 1);
		}
		after = redis_now_us(c);
		if (before >= start && after < start + SPAN_US)
			break;          /* all three inside the span */
	}
	ck_assert_msg(attempt < ATTEMPTS, "in %d attempts the three requests never fell inside the %d ms span",
	              ATTEMPTS, SPAN_US / 1000);
	r = redisCommand(c, "ZCARD %s", rl);
	ck_assert_int_eq(r->integer, SPAN_US + 3);
	freeReplyObject(r);
	r = redisCommand(c, "EVAL %s 1 %s",
	                 "local n = 0 for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do "
	                 "if string.find(m, ':', 1, true) then n = n + 1 end end return n", rl);
	ck_assert_int_eq(r->integer, 3);
	freeReplyObject(r);
	freeReplyObject(redisCommand(c, "DEL %s", rl));
	redisFree(c);
	store_free(s);
}
END_TEST

/*
 * The limiter's settings are constants of the script text: two workers with
 * different settings load two scripts (two SHA1s) into one Redis, and each
 * keeps its own limit on the same sum.
 */
START_TEST(test_store_two_configurations_share_one_redis)
{
	struct store *two = open_store(2, 60);
	struct store *five = store_at(prefix, 5, 60);
	struct store_result res;
	struct idem_key none = { NULL, 0 };

	ck_assert_int_eq(store_add(two, &alice, &none, 1, "req-test", &res), STORE_OK);
	ck_assert_int_eq(res.budget.remaining, 1);
	ck_assert_int_eq(store_add(five, &alice, &none, 1, "req-test", &res), STORE_OK);
	ck_assert_int_eq(res.budget.remaining, 3);      /* the same log: two admissions in it */
	ck_assert_int_eq(store_add(two, &alice, &none, 1, "req-test", &res), STORE_RATE_LIMITED);
	/* The refusals remembered are the worker's, and a worker has one configuration: not here. */
	ratelimit_forget_refusals();
	ck_assert_int_eq(store_add(five, &alice, &none, 1, "req-test", &res), STORE_OK);
	ck_assert_int_eq(res.budget.remaining, 2);
	ck_assert_int_eq(res.sum, 3);
	store_free(two);
	store_free(five);
}
END_TEST

START_TEST(test_store_disabled_limit_reports_nothing)
{
	struct store *s = open_store(0, 60);
	struct store_result res;

	ck_assert_int_eq(store_get(s, &alice, &res), STORE_OK);
	ck_assert(!res.budget.limited);
	store_free(s);
}
END_TEST

START_TEST(test_store_unreachable_redis_is_unavailable_fast)
{
	struct store_options opt;
	struct store *s;
	struct store_result res;
	struct timespec a, b;

	memset(&opt, 0, sizeof(opt));
	opt.target.transport = REDIS_TRANSPORT_TCP;
	strcpy(opt.target.host, "127.0.0.1");
	opt.target.port = 1; /* nothing listens there */
	opt.connect_timeout_ms = 200;
	opt.command_timeout_ms = 200;
	opt.prefix = "x";
	s = store_new(&opt);
	clock_gettime(CLOCK_MONOTONIC, &a);
	ck_assert_int_eq(store_get(s, &alice, &res), STORE_UNAVAILABLE);
	ck_assert_int_eq(store_get(s, &alice, &res), STORE_UNAVAILABLE); /* in backoff */
	ck_assert_int_eq(store_ping(s), STORE_UNAVAILABLE);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ck_assert_int_lt(b.tv_sec - a.tv_sec, 2);
	store_free(s);
}
END_TEST

START_TEST(test_store_parse_int64)
{
	int64_t v;

	ck_assert(store_parse_int64("0", 1, &v) && v == 0);
	ck_assert(store_parse_int64("-9223372036854775808", 20, &v) && v == INT64_MIN);
	ck_assert(store_parse_int64("9223372036854775807", 19, &v) && v == INT64_MAX);
	ck_assert(!store_parse_int64("9223372036854775808", 19, &v));
	ck_assert(!store_parse_int64("-0", 2, &v));
	ck_assert(!store_parse_int64("01", 2, &v));
	ck_assert(!store_parse_int64("", 0, &v));
	ck_assert(!store_parse_int64("1.5", 3, &v));
	ck_assert(!store_parse_int64(" 1", 2, &v));
}
END_TEST

/* A Lua error from Redis is logged with the file and line of lib/lua it came from. */
/* ---- named sums ---- */

/* A raw command with two arguments, its integer answer. */
static long long raw_int2(const char *fmt, const char *a, const char *b)
{
	redisContext *c = redisConnect("127.0.0.1", redis_port);
	redisReply *r;
	long long n;

	ck_assert(c != NULL && c->err == 0);
	r = redisCommand(c, fmt, a, b);
	ck_assert(r != NULL && r->type == REDIS_REPLY_INTEGER);
	n = r->integer;
	freeReplyObject(r);
	redisFree(c);
	return n;
}

/* Keys whose name starts with "{<prefix>/" (a named sum's), or "{<prefix>}" with named false. */
static long long keys_under(bool named)
{
	char pattern[128];
	redisReply *r;
	long long n;

	snprintf(pattern, sizeof(pattern), named ? "{%s/*" : "{%s}*", prefix);
	r = raw("KEYS %s", pattern);
	ck_assert(r != NULL && r->type == REDIS_REPLY_ARRAY);
	n = (long long)r->elements;
	freeReplyObject(r);
	return n;
}

static int64_t named_sum(struct store *s, const char *name)
{
	struct store_result res;

	ck_assert_int_eq(store_sum_get(s, name, &alice, &res), STORE_OK);
	return res.sum;
}

/* Each name is a sum of its own; "default" is the original sum on its original key. */
START_TEST(test_store_named_sums_are_separate)
{
	struct store *s = open_store(0, 60);
	struct store_result res;
	struct idem_key k = key("same-key");
	char sum_key[128];

	ck_assert_int_eq(store_sum_get(s, "apples", &alice, &res), STORE_NOT_FOUND);
	ck_assert_int_eq(store_sum_add(s, "apples", &alice, &k, 5, "r1", &res), STORE_OK);
	ck_assert_int_eq(res.sum, 5);
	/* The same Idempotency-Key on another sum is another request. */
	ck_assert_int_eq(store_sum_add(s, "pears", &alice, &k, 5, "r2", &res), STORE_OK);
	ck_assert_int_eq(store_sum_add(s, "pears", &alice, &k, 5, "r3", &res), STORE_REPLAYED);
	ck_assert_int_eq(store_sum_add(s, "default", &alice, &k, 7, "r4", &res), STORE_OK);
	ck_assert_int_eq(named_sum(s, "apples"), 5);
	ck_assert_int_eq(named_sum(s, "pears"), 5);
	ck_assert_int_eq(sum_of(s), 7);
	ck_assert_int_eq(named_sum(s, "default"), 7);
	snprintf(sum_key, sizeof(sum_key), "{%s}:sum", prefix);
	ck_assert_int_eq(raw_int2("STRLEN %s", sum_key, ""), 1);
	/* Every key of a named sum is under its own tag: the sum, its record, its ledger, its registration. */
	snprintf(sum_key, sizeof(sum_key), "{%s/apples}:sum", prefix);
	ck_assert_int_eq(raw_int2("EXISTS %s", sum_key, ""), 1);
	ck_assert_int_eq(store_sum_set(s, "plums", &alice, -3, STORE_SET_VALUE, "r5", &res), STORE_OK);
	ck_assert_int_eq(named_sum(s, "plums"), -3);
	store_free(s);
}
END_TEST

/* A DELETE removes a named sum (reads 404, unlisted); the default sum's DELETE is a reset. */
START_TEST(test_store_named_delete_removes)
{
	struct store *s = open_store(0, 60);
	struct store_result res;
	struct idem_key none = { NULL, 0 };
	char names[128];

	ck_assert_int_eq(store_sum_set(s, "gone", &alice, 0, STORE_SET_DELETE, "r0", &res), STORE_NOT_FOUND);
	ck_assert_int_eq(store_sum_add(s, "gone", &alice, &none, 4, "r1", &res), STORE_OK);
	snprintf(names, sizeof(names), "{%s}:sums", prefix);
	ck_assert_int_eq(raw_int2("ZCARD %s", names, ""), 1);
	ck_assert_int_eq(store_sum_set(s, "gone", &alice, 0, STORE_SET_DELETE, "r2", &res), STORE_OK);
	ck_assert_int_eq(store_sum_get(s, "gone", &alice, &res), STORE_NOT_FOUND);
	ck_assert_int_eq(store_sum_set(s, "gone", &alice, 0, STORE_SET_DELETE, "r3", &res), STORE_NOT_FOUND);
	ck_assert_int_eq(raw_int2("ZCARD %s", names, ""), 0);
	/* Its ledger stays, to be read (and audited): the delete is its last entry. */
	ck_assert_int_eq(store_sum_add(s, "default", &alice, &none, 9, "r4", &res), STORE_OK);
	ck_assert_int_eq(store_sum_set(s, "default", &alice, 0, STORE_SET_DELETE, "r5", &res), STORE_OK);
	ck_assert_int_eq(store_get(s, &alice, &res), STORE_OK);
	ck_assert_int_eq(res.sum, 0);
	/* Created again after its delete: a new sum from 0. */
	ck_assert_int_eq(store_sum_add(s, "gone", &alice, &none, 2, "r6", &res), STORE_OK);
	ck_assert_int_eq(res.sum, 2);
	store_free(s);
}
END_TEST

/* At most max_sums named sums: the next new one changes nothing; after a delete it fits. */
START_TEST(test_store_named_sums_are_bounded)
{
	struct store *s;
	struct store_result res;
	struct idem_key none = { NULL, 0 }, k = key("bounded");
	long long before;

	max_sums = 2;
	s = open_store(0, 60);
	max_sums = 100;
	ck_assert_int_eq(store_sum_add(s, "a", &alice, &none, 1, "r1", &res), STORE_OK);
	ck_assert_int_eq(store_sum_set(s, "b", &alice, 1, STORE_SET_VALUE, "r2", &res), STORE_OK);
	before = keys_under(true);
	ck_assert_int_eq(store_sum_add(s, "c", &alice, &k, 1, "r3", &res), STORE_TOO_MANY_SUMS);
	ck_assert_int_eq(store_sum_set(s, "c", &alice, 1, STORE_SET_VALUE, "r4", &res), STORE_TOO_MANY_SUMS);
	ck_assert_int_eq(keys_under(true), before);
	/* The existing ones, and the default sum, are not bounded. */
	ck_assert_int_eq(store_sum_add(s, "a", &alice, &none, 1, "r5", &res), STORE_OK);
	ck_assert_int_eq(store_add(s, &alice, &none, 1, "r6", &res), STORE_OK);
	ck_assert_int_eq(store_sum_set(s, "a", &alice, 0, STORE_SET_DELETE, "r7", &res), STORE_OK);
	ck_assert_int_eq(store_sum_add(s, "c", &alice, &k, 1, "r8", &res), STORE_OK);
	store_free(s);
}
END_TEST

/* A DELETE whose registration token was replaced (a new creation raced it) leaves the new name registered. */
START_TEST(test_store_named_delete_keeps_a_newer_registration)
{
	struct store *s = open_store(0, 60);
	struct store_result res;
	struct idem_key none = { NULL, 0 };
	char names[128], tokens[128];
	redisReply *r;

	ck_assert_int_eq(store_sum_add(s, "raced", &alice, &none, 1, "r1", &res), STORE_OK);
	snprintf(names, sizeof(names), "{%s}:sums", prefix);
	snprintf(tokens, sizeof(tokens), "HSET {%s}:sums:tokens raced %%s", prefix);
	r = raw(tokens, "99999999999999");     /* a later registration's (tokens grow) */
	freeReplyObject(r);
	ck_assert_int_eq(store_sum_set(s, "raced", &alice, 0, STORE_SET_DELETE, "r2", &res), STORE_OK);
	ck_assert_int_eq(raw_int2("ZCARD %s", names, ""), 1);
	store_free(s);
}
END_TEST

/* What a DELETE leaves (docs/API.md): the ledger expires after the retention, the records replay. */
START_TEST(test_store_named_delete_leaves)
{
	struct store *s = open_store(0, 60);
	struct store_result res;
	struct idem_key k = key("before-delete");
	char ledger[128];

	ck_assert_int_eq(store_sum_add(s, "left", &alice, &k, 4, "r1", &res), STORE_OK);
	snprintf(ledger, sizeof(ledger), "{%s/left}:ledger", prefix);
	ck_assert_int_eq(raw_int2("PTTL %s", ledger, ""), -1);
	ck_assert_int_eq(store_sum_set(s, "left", &alice, 0, STORE_SET_DELETE, "r2", &res), STORE_OK);
	/* The ledger goes a retention (3600 s here) after the delete... */
	ck_assert(raw_int2("PTTL %s", ledger, "") > 3500000 && raw_int2("PTTL %s", ledger, "") <= 3600000);
	/* ...and the key of an addition made before it replays that addition, adding nothing to a new sum. */
	ck_assert_int_eq(store_sum_add(s, "left", &alice, &k, 4, "r3", &res), STORE_REPLAYED);
	ck_assert_int_eq(res.sum, 4);
	ck_assert_int_eq(store_sum_get(s, "left", &alice, &res), STORE_NOT_FOUND);
	/* Created again: its ledger is kept again. */
	ck_assert_int_eq(store_sum_set(s, "left", &alice, 7, STORE_SET_VALUE, "r4", &res), STORE_OK);
	ck_assert_int_eq(raw_int2("PTTL %s", ledger, ""), -1);
	store_free(s);
}
END_TEST

/* A name registered without a sum (a creation that failed after registering) goes once it is old. */
START_TEST(test_store_named_ghosts_are_removed)
{
	struct store *s = open_store(0, 60);
	struct store_sum_entry e[4];
	struct store_result res;
	char names[128], cmd[128], next[SUMNAME_MAX + 1];
	size_t count;
	redisReply *r;

	snprintf(names, sizeof(names), "{%s}:sums", prefix);
	snprintf(cmd, sizeof(cmd), "ZADD {%s}:sums 0 old-ghost 0 new-ghost", prefix);
	freeReplyObject(raw(cmd, ""));
	snprintf(cmd, sizeof(cmd), "HSET {%s}:sums:tokens old-ghost 1000 new-ghost %%s", prefix);
	r = raw(cmd, "99999999999999");         /* registered "now" (in the far future): a creation may be under way */
	freeReplyObject(r);
	ck_assert_int_eq(store_sum_set(s, "old-ghost", &alice, 0, STORE_SET_DELETE, "r1", &res), STORE_NOT_FOUND);
	ck_assert_int_eq(store_sum_set(s, "new-ghost", &alice, 0, STORE_SET_DELETE, "r2", &res), STORE_NOT_FOUND);
	ck_assert_int_eq(raw_int2("ZCARD %s", names, ""), 1);
	/* The listing leaves ghosts out, and clears the old ones it meets. */
	freeReplyObject(raw(cmd, "1000"));
	ck_assert_int_eq(store_list(s, &alice, "", 4, e, &count, next, &res), STORE_OK);
	ck_assert_uint_eq(count, 1);
	ck_assert_str_eq(e[0].name, "default");
	ck_assert_int_eq(raw_int2("ZCARD %s", names, ""), 0);
	/* A name outside the rules is no sum, and never the default one. */
	ck_assert_int_eq(store_sum_get(s, "a/b", &alice, &res), STORE_NOT_FOUND);
	ck_assert_int_eq(store_sum_set(s, "", &alice, 5, STORE_SET_VALUE, "r3", &res), STORE_NOT_FOUND);
	snprintf(cmd, sizeof(cmd), "{%s}:sum", prefix);
	ck_assert_int_eq(raw_int2("EXISTS %s", cmd, ""), 0);
	ck_assert_int_eq(keys_under(true), 0);
	store_free(s);
}
END_TEST

/* The listing: byte order, "default" among the names, pages that join up, absent sums left out. */
START_TEST(test_store_list_pages_through_every_name)
{
	struct store *s = open_store(0, 60);
	struct store_sum_entry e[STORE_LIST_LIMIT_MAX];
	struct store_result res;
	redisReply *r;
	struct idem_key none = { NULL, 0 };
	char after[SUMNAME_MAX + 1] = "", name[16], seen[8][16], next[SUMNAME_MAX + 1] = "-";
	size_t count, n = 0;

	ck_assert_int_eq(store_sum_add(s, "b", &alice, &none, 2, "r", &res), STORE_OK);
	ck_assert_int_eq(store_sum_add(s, "e", &alice, &none, 5, "r", &res), STORE_OK);
	ck_assert_int_eq(store_sum_add(s, "Z", &alice, &none, 26, "r", &res), STORE_OK);
	ck_assert_int_eq(store_sum_add(s, "x", &alice, &none, 1, "r", &res), STORE_OK);
	ck_assert_int_eq(store_sum_set(s, "x", &alice, 0, STORE_SET_DELETE, "r", &res), STORE_OK);
	for (int pages = 0; next[0] != '\0' && pages < 10; pages++) {
		ck_assert_int_eq(store_list(s, &alice, after, 2, e, &count, next, &res), STORE_OK);
		ck_assert_uint_le(count, 2);
		for (size_t i = 0; i < count && n < 8; i++)
			snprintf(seen[n++], sizeof(seen[0]), "%s=%" PRId64, e[i].name, e[i].sum);
		snprintf(after, sizeof(after), "%s", next);
	}
	ck_assert_str_eq(next, "");
	ck_assert_uint_eq(n, 4);
	ck_assert_str_eq(seen[0], "Z=26");
	ck_assert_str_eq(seen[1], "b=2");
	ck_assert_str_eq(seen[2], "default=0");
	ck_assert_str_eq(seen[3], "e=5");
	snprintf(name, sizeof(name), "%s", "e");
	ck_assert_int_eq(store_list(s, &alice, name, 10, e, &count, next, &res), STORE_OK);
	ck_assert_uint_eq(count, 0);
	ck_assert_str_eq(next, "");
	/* A page whose every name has no sum (registered, not yet created) still says where to go on. */
	r = raw("ZADD {%s}:sums 0 a-ghost", prefix);
	freeReplyObject(r);
	ck_assert_int_eq(store_list(s, &alice, "", 1, e, &count, next, &res), STORE_OK);
	ck_assert_uint_eq(count, 1);
	ck_assert_str_eq(e[0].name, "Z");
	ck_assert_int_eq(store_list(s, &alice, "Z", 1, e, &count, next, &res), STORE_OK);
	ck_assert_uint_eq(count, 0);
	ck_assert_str_eq(next, "a-ghost");
	store_free(s);
}
END_TEST

/* One budget per caller over every sum (the default), or per caller and sum (scope=sum). */
START_TEST(test_store_named_rate_limit_scope)
{
	struct store *s = open_store(2, 60);
	struct store_result res;
	struct idem_key none = { NULL, 0 };

	ck_assert_int_eq(store_sum_add(s, "one", &alice, &none, 1, "r", &res), STORE_OK);
	ck_assert_int_eq(store_sum_get(s, "default", &alice, &res), STORE_OK);
	ck_assert_int_eq(store_sum_get(s, "one", &alice, &res), STORE_RATE_LIMITED);
	store_free(s);
	ratelimit_forget_refusals();    /* a worker's memory, of another configuration */
	limit_per_sum = true;
	s = open_store(2, 60);
	limit_per_sum = false;
	ck_assert_int_eq(store_sum_add(s, "one", &alice, &none, 1, "r", &res), STORE_OK);
	ck_assert_int_eq(store_sum_get(s, "one", &alice, &res), STORE_OK);
	ck_assert_int_eq(res.budget.remaining, 0);
	ck_assert_int_eq(store_sum_get(s, "one", &alice, &res), STORE_RATE_LIMITED);
	ck_assert_int_eq(store_sum_add(s, "two", &alice, &none, 1, "r", &res), STORE_OK);
	ck_assert_int_eq(store_get(s, &alice, &res), STORE_OK);
	store_free(s);
}
END_TEST

/* A named sum's ledger is its own; a sum that never existed has none. */
START_TEST(test_store_named_ledger)
{
	struct store *s = open_store(0, 60);
	struct store_result res;
	struct store_text page = { NULL, 0, 0 };
	struct idem_key k = key("led");

	ck_assert_int_eq(store_sum_ledger(s, "never", &alice, "", 10, &res, &page), STORE_NOT_FOUND);
	ck_assert_int_eq(store_sum_add(s, "kept", &alice, &k, 3, "req-k", &res), STORE_OK);
	ck_assert_int_eq(store_sum_set(s, "kept", &alice, 0, STORE_SET_DELETE, "req-d", &res), STORE_OK);
	ck_assert_int_eq(store_sum_ledger(s, "kept", &alice, "", 10, &res, &page), STORE_OK);
	ck_assert_ptr_nonnull(strstr(page.text, "\"op\":\"add\",\"number\":3,\"sum\":3,"));
	ck_assert_ptr_nonnull(strstr(page.text, "\"op\":\"delete\",\"number\":0,\"sum\":0,\"was\":3,"));
	ck_assert_int_eq(store_ledger(s, &alice, "", 10, &res, &page), STORE_OK);
	ck_assert_ptr_nonnull(strstr(page.text, "{\"entries\":[],"));
	free(page.text);
	store_free(s);
}
END_TEST

START_TEST(test_store_lua_error_names_its_source)
{
	struct store *s = open_store(10, 60);
	struct store_result res;
	char rl[256], *captured = NULL;
	size_t size = 0;
	FILE *log = open_memstream(&captured, &size);
	redisReply *r;

	ck_assert_ptr_nonnull(log);
	snprintf(rl, sizeof(rl), "{%s}:rl:%s", prefix, alice.limit_id);
	r = raw("SET %s not-a-sorted-set", rl);     /* ZCOUNT on it fails inside the script */
	freeReplyObject(r);
	log_set_stream(log);
	ck_assert_int_eq(store_get(s, &alice, &res), STORE_UNAVAILABLE);
	log_set_stream(NULL);
	fclose(log);
	ck_assert_msg(strstr(captured, "\"source\":\"lib/lua/limiter_budget.lua:13\"") != NULL, "%s", captured);
	ck_assert_msg(strstr(captured, "WRONGTYPE") != NULL, "%s", captured);
	free(captured);
	store_free(s);
}
END_TEST

START_TEST(test_store_free_accepts_null)
{
	store_free(NULL);
}
END_TEST

static Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_test(core, test_store_missing_sum_reads_zero);
	tcase_add_test(core, test_store_add_replay_and_conflict);
	tcase_add_test(core, test_store_keys_are_scoped_per_caller);
	tcase_add_test(core, test_store_without_key_always_applies);
	tcase_add_test(core, test_store_reloads_scripts_after_flush);
	/* Check's default of 4 s per test is a speed limit: the repeated-microsecond
	 * test may fill and try its span up to ATTEMPTS times on a loaded machine. */
	tcase_set_timeout(limits, 60);
	tcase_add_loop_test(limits, test_store_is_exact_at_int64_edges, 0, sizeof(edges) / sizeof(edges[0]));
	tcase_add_test(limits, test_store_rate_limit_refuses_without_effect);
	tcase_add_test(core, test_store_ledger_records_each_applied_change);
	tcase_add_test(core, test_store_ledger_off_writes_nothing);
	tcase_add_test(core, test_store_named_sums_are_separate);
	tcase_add_test(core, test_store_named_delete_removes);
	tcase_add_test(core, test_store_named_sums_are_bounded);
	tcase_add_test(core, test_store_named_delete_keeps_a_newer_registration);
	tcase_add_test(core, test_store_list_pages_through_every_name);
	tcase_add_test(core, test_store_named_ghosts_are_removed);
	tcase_add_test(core, test_store_named_delete_leaves);
	tcase_add_test(limits, test_store_named_rate_limit_scope);
	tcase_add_test(core, test_store_named_ledger);
	tcase_add_test(limits, test_store_refused_changes_append_nothing);
	tcase_add_test(errors, test_store_change_refused_by_the_ledger_is_undone);
	tcase_add_test(limits, test_store_rate_limit_entries_never_exceed_the_limit);
	tcase_add_test(limits, test_store_rate_limit_counts_a_repeated_microsecond);
	tcase_add_test(limits, test_store_two_configurations_share_one_redis);
	tcase_add_test(limits, test_store_disabled_limit_reports_nothing);
	tcase_add_test(limits, test_store_parse_int64);
	tcase_add_loop_test(errors, test_store_corrupt_sum_is_reported_not_reset, 0,
	                    sizeof(corrupt_sums) / sizeof(corrupt_sums[0]));
	tcase_add_test(errors, test_store_unreachable_redis_is_unavailable_fast);
	tcase_add_test(errors, test_store_lua_error_names_its_source);
	tcase_add_test(errors, test_store_free_accepts_null);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

static Suite *store_suite_with_redis(void)
{
	const char *port = getenv("ABACUS_TEST_REDIS_PORT");

	if (port == NULL || atoi(port) <= 0) {
		fprintf(stderr, "check_store: set ABACUS_TEST_REDIS_PORT (tests/run-unit.sh does)\n");
		exit(EXIT_FAILURE);
	}
	redis_port = atoi(port);
	return store_suite();
}

CHECK_MAIN(store_suite_with_redis)
