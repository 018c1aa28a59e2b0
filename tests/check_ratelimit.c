#include "ratelimit.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"

static struct config cfg;

static void setup(void)
{
	memset(&cfg, 0, sizeof(cfg));
	cfg.rate_limit_requests = 20;
	cfg.rate_limit_window_seconds = 60;
	ck_assert(cidr_parse("10.0.0.0/8", &cfg.trusted_proxies[0]));
	ck_assert(cidr_parse("::1", &cfg.trusted_proxies[1]));
	cfg.trusted_proxy_count = 2;
}

static const char *identify(const char **env, const char *key_id)
{
	static struct request r;

	http_request_init(&r, (char *const *)env, NULL, NULL);
	strcpy(r.caller.key_id, key_id);
	ratelimit_identify(&r, &cfg);
	return r.caller.limit_id;
}

START_TEST(test_ratelimit_identity_is_key_id_when_authenticated)
{
	const char *env[] = { "REMOTE_ADDR=1.2.3.4", NULL };

	ck_assert_str_eq(identify(env, "1a2b3c4d"), "k:1a2b3c4d");
}
END_TEST

START_TEST(test_ratelimit_identity_is_peer_without_auth)
{
	const char *env[] = { "REMOTE_ADDR=1.2.3.4", NULL };

	ck_assert_str_eq(identify(env, ""), "ip:1.2.3.4");
}
END_TEST

START_TEST(test_ratelimit_forged_forwarded_for_is_ignored)
{
	const char *env[] = { "REMOTE_ADDR=1.2.3.4", "HTTP_X_FORWARDED_FOR=9.9.9.9", NULL };

	ck_assert_str_eq(identify(env, ""), "ip:1.2.3.4");
}
END_TEST

START_TEST(test_ratelimit_trusted_proxy_forwarded_for_counts)
{
	const char *env[] = { "REMOTE_ADDR=10.1.2.3", "HTTP_X_FORWARDED_FOR=6.6.6.6, 5.5.5.5, 10.9.9.9", NULL };
	const char *v6[] = { "REMOTE_ADDR=::1", "HTTP_X_FORWARDED_FOR=2001:db8::7", NULL };
	const char *junk[] = { "REMOTE_ADDR=10.1.2.3", "HTTP_X_FORWARDED_FOR=not-an-ip", NULL };

	/* The right-most untrusted hop: 5.5.5.5 (6.6.6.6 could be forged by the client). */
	ck_assert_str_eq(identify(env, ""), "ip:5.5.5.5");
	ck_assert_str_eq(identify(v6, ""), "ip:2001:db8::7");
	ck_assert_str_eq(identify(junk, ""), "ip:10.1.2.3");
}
END_TEST

START_TEST(test_ratelimit_all_trusted_hops_fall_back_to_peer)
{
	const char *trusted[] = { "REMOTE_ADDR=10.1.2.3", "HTTP_X_FORWARDED_FOR=10.0.0.7, ::1", NULL };
	const char *too_long[] = { "REMOTE_ADDR=10.1.2.3",
		"HTTP_X_FORWARDED_FOR=1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd", NULL };

	ck_assert_str_eq(identify(trusted, ""), "ip:10.1.2.3");
	ck_assert_str_eq(identify(too_long, ""), "ip:10.1.2.3");
}
END_TEST

START_TEST(test_ratelimit_headers)
{
	const char *env[] = { NULL };
	struct request r;
	struct ratelimit_budget res = { .limited = true, .remaining = 7, .reset_seconds = 39,
	                                .retry_after_seconds = 3 };

	http_request_init(&r, (char *const *)env, NULL, NULL);
	ratelimit_add_headers(&r, &cfg, STORE_OK, &res);
	ck_assert_str_eq(r.resp.headers, "RateLimit-Policy: \"default\";q=20;w=60\r\n"
	                                 "RateLimit: \"default\";r=7;t=39\r\n");
	http_request_init(&r, (char *const *)env, NULL, NULL);
	ratelimit_add_headers(&r, &cfg, STORE_RATE_LIMITED, &res);
	ck_assert(strstr(r.resp.headers, "Retry-After: 3\r\n") != NULL);
	http_request_init(&r, (char *const *)env, NULL, NULL);
	res.limited = false;
	ratelimit_add_headers(&r, &cfg, STORE_OK, &res);
	ck_assert_int_eq(r.resp.headers_len, 0);
}
END_TEST

/* The limiter's key and the decoding of its verdict (the script's reply words). */
START_TEST(test_ratelimit_key_and_verdicts)
{
	struct caller who = { .key_id = "1a2b3c4d", .limit_id = "k:1a2b3c4d" };
	struct caller nobody = { .key_id = "", .limit_id = "" };
	struct ratelimit_budget b;
	char key[RATELIMIT_KEY_MAX];

	ck_assert_int_eq(ratelimit_key("{abacus}", &who, key), strlen("{abacus}:rl:k:1a2b3c4d"));
	ck_assert_str_eq(key, "{abacus}:rl:k:1a2b3c4d");
	ratelimit_key("{p}", &nobody, key);
	ck_assert_str_eq(key, "{p}:rl:-");
	ck_assert(ratelimit_refusal(59000001, 1, &b));
	ck_assert(b.limited && b.remaining == 0 && b.reset_seconds == 60 && b.retry_after_seconds == 1);
	ck_assert(ratelimit_refusal(0, 0, &b));
	ck_assert_int_eq(b.retry_after_seconds, 1);       /* never "retry after 0 s" */
	ck_assert(!ratelimit_refusal(-1, 5, &b));
	ck_assert(ratelimit_admitted(7, 60, &b));
	ck_assert(b.limited && b.remaining == 7 && b.reset_seconds == 60);
	ck_assert(ratelimit_admitted(-1, 60, &b));
	ck_assert(!b.limited && b.remaining == 0 && b.reset_seconds == 0);
	ck_assert(!ratelimit_admitted(-2, 60, &b));
}
END_TEST

START_TEST(test_ratelimit_ipv6_callers_count_as_their_network)
{
	const char *v6[] = { "REMOTE_ADDR=2001:db8:1:2:aaaa:bbbb:cccc:dddd", NULL };
	const char *same_net[] = { "REMOTE_ADDR=2001:db8:1:2::7", NULL };
	const char *mapped[] = { "REMOTE_ADDR=::ffff:192.0.2.9", NULL };
	const char *v4[] = { "REMOTE_ADDR=192.0.2.9", NULL };

	cfg.rate_limit_ipv6_prefix = 64;
	ck_assert_str_eq(identify(v6, ""), "ip:2001:db8:1:2::/64");
	ck_assert_str_eq(identify(same_net, ""), "ip:2001:db8:1:2::/64");
	ck_assert_str_eq(identify(mapped, ""), "ip:192.0.2.9");   /* IPv4 behind a dual-stack socket */
	ck_assert_str_eq(identify(v4, ""), "ip:192.0.2.9");
	cfg.rate_limit_ipv6_prefix = 56;
	ck_assert_str_eq(identify(v6, ""), "ip:2001:db8:1::/56");
	cfg.rate_limit_ipv6_prefix = 1;
	ck_assert_str_eq(identify(v6, ""), "ip:::/1");
	cfg.rate_limit_ipv6_prefix = 128;                          /* every address its own caller */
	ck_assert_str_eq(identify(v6, ""), "ip:2001:db8:1:2:aaaa:bbbb:cccc:dddd");
	{
		const char *upper[] = { "REMOTE_ADDR=2001:DB8:1:2:0:0:0:1", NULL };

		/* One spelling per address: written back as inet_ntop writes it. */
		ck_assert_str_eq(identify(upper, ""), "ip:2001:db8:1:2::1");
	}
	/* An authenticated caller is its key, wherever it comes from. */
	cfg.rate_limit_ipv6_prefix = 64;
	ck_assert_str_eq(identify(v6, "1a2b3c4d"), "k:1a2b3c4d");
}
END_TEST

/* A refusal remembered: answered here until the budget can free, then asked again. */
START_TEST(test_ratelimit_refusal_is_remembered_until_the_budget_can_free)
{
	struct caller alice = { .key_id = "aaaaaaaa", .limit_id = "k:aaaaaaaa" };
	struct caller bob = { .key_id = "bbbbbbbb", .limit_id = "k:bbbbbbbb" };
	struct ratelimit_budget refused, b;
	const int64_t t0 = 1000000000;

	ratelimit_forget_refusals();
	ck_assert(!ratelimit_refused_here(&alice, t0, &b));
	/* Redis said: one request may pass 2.5 s after it looked, the whole budget 30 s after. */
	ck_assert(ratelimit_refusal(30000000, 2500000, &refused));
	ratelimit_remember_refusal(&alice, t0, &refused);
	memset(&b, 0, sizeof(b));
	ck_assert(ratelimit_refused_here(&alice, t0 + 1000, &b));
	ck_assert(b.limited && b.remaining == 0);
	ck_assert_int_eq(b.retry_after_seconds, 3);                /* 2.499 s, rounded up */
	ck_assert_int_eq(b.reset_seconds, 30);
	ck_assert(b.remembered);
	ck_assert(ratelimit_refused_here(&alice, t0 + 999999, &b));
	ck_assert_int_eq(b.retry_after_seconds, 2);                /* still the full delay Redis gave */
	ck_assert_int_eq(b.reset_seconds, 30);
	/* Trusted a second at most (a restarted Redis frees budgets), then Redis is asked again. */
	ck_assert(!ratelimit_refused_here(&alice, t0 + 1000000, &b));
	ck_assert(!ratelimit_refused_here(&alice, t0 + 2499999, &b));
	ck_assert(!ratelimit_refused_here(&alice, t0 + 9000000, &b));
	/* A shorter delay than that second is trusted only that long. */
	ck_assert(ratelimit_refusal(30000000, 300000, &refused));
	ratelimit_remember_refusal(&alice, t0, &refused);
	ck_assert(ratelimit_refused_here(&alice, t0 + 299999, &b));
	ck_assert(!ratelimit_refused_here(&alice, t0 + 300000, &b));
	/* Only the refused caller. */
	ratelimit_remember_refusal(&alice, t0, &refused);
	ck_assert(!ratelimit_refused_here(&bob, t0 + 1000, &b));
	ck_assert(ratelimit_refused_here(&alice, t0 + 1000, &b));
	ratelimit_forget_refusals();
	ck_assert(!ratelimit_refused_here(&alice, t0 + 1000, &b));
}
END_TEST

/* A caller pushed out of its slot by another is asked again: never refused in its place. */
START_TEST(test_ratelimit_remembered_refusals_never_leak_between_callers)
{
	struct ratelimit_budget refused, b;
	struct caller callers[3 * RATELIMIT_MEMO_SLOTS];
	const int64_t t0 = 5000000;
	int refused_count = 0;

	ratelimit_forget_refusals();
	ck_assert(ratelimit_refusal(60000000, 60000000, &refused));
	for (int i = 0; i < 3 * RATELIMIT_MEMO_SLOTS; i++) {
		memset(&callers[i], 0, sizeof(callers[i]));
		snprintf(callers[i].limit_id, sizeof(callers[i].limit_id), "ip:10.0.%d.%d", i / 256, i % 256);
	}
	/* Only the first half refused: none of the others may ever be answered 429 here. */
	for (int i = 0; i < 3 * RATELIMIT_MEMO_SLOTS / 2; i++)
		ratelimit_remember_refusal(&callers[i], t0, &refused);
	for (int i = 3 * RATELIMIT_MEMO_SLOTS / 2; i < 3 * RATELIMIT_MEMO_SLOTS; i++)
		ck_assert_msg(!ratelimit_refused_here(&callers[i], t0 + 1, &b), "%s", callers[i].limit_id);
	for (int i = 0; i < 3 * RATELIMIT_MEMO_SLOTS / 2; i++)
		refused_count += ratelimit_refused_here(&callers[i], t0 + 1, &b);
	/* Some share a slot and were pushed out (asked again), most are remembered. */
	ck_assert_int_gt(refused_count, RATELIMIT_MEMO_SLOTS / 2);
	ck_assert_int_le(refused_count, RATELIMIT_MEMO_SLOTS);
	/* An admission is not a refusal; a caller without identity is never remembered. */
	ratelimit_forget_refusals();
	ck_assert(ratelimit_admitted(0, 60, &b));
	ratelimit_remember_refusal(&callers[0], t0, &b);
	ck_assert(!ratelimit_refused_here(&callers[0], t0 + 1, &b));
	callers[1].limit_id[0] = '\0';
	ratelimit_remember_refusal(&callers[1], t0, &refused);
	ck_assert(!ratelimit_refused_here(&callers[1], t0 + 1, &b));
	ck_assert_int_gt(ratelimit_clock_us(), 0);
}
END_TEST

static Suite *ratelimit_suite(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_checked_fixture(core, setup, NULL);
	tcase_add_checked_fixture(limits, setup, NULL);
	tcase_add_checked_fixture(errors, setup, NULL);
	tcase_add_test(core, test_ratelimit_key_and_verdicts);
	tcase_add_test(core, test_ratelimit_identity_is_key_id_when_authenticated);
	tcase_add_test(core, test_ratelimit_identity_is_peer_without_auth);
	tcase_add_test(core, test_ratelimit_headers);
	tcase_add_test(core, test_ratelimit_ipv6_callers_count_as_their_network);
	tcase_add_test(core, test_ratelimit_refusal_is_remembered_until_the_budget_can_free);
	tcase_add_test(limits, test_ratelimit_remembered_refusals_never_leak_between_callers);
	tcase_add_test(limits, test_ratelimit_all_trusted_hops_fall_back_to_peer);
	tcase_add_test(errors, test_ratelimit_forged_forwarded_for_is_ignored);
	tcase_add_test(errors, test_ratelimit_trusted_proxy_forwarded_for_counts);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(ratelimit_suite)
