/* lib/resolve: names looked up within a deadline, numeric addresses as they are. */
#include "resolve.h"

#include <check.h>
#include <string.h>
#include <time.h>

#include "check_main.h"

START_TEST(test_resolve_numeric_is_returned_as_is)
{
	char addr[RESOLVE_ADDR_MAX];

	ck_assert(resolve_host("127.0.0.1", 0, addr));          /* no lookup, no time needed */
	ck_assert_str_eq(addr, "127.0.0.1");
	ck_assert(resolve_host("::1", 0, addr));
	ck_assert_str_eq(addr, "::1");
}
END_TEST

START_TEST(test_resolve_localhost_prefers_ipv4)
{
	char addr[RESOLVE_ADDR_MAX];

	ck_assert(resolve_host("localhost", 2000, addr));
	ck_assert_str_eq(addr, "127.0.0.1");
	/* Known now: with no time at all it comes from the last good address. */
	ck_assert(resolve_host("localhost", 0, addr));
	ck_assert_str_eq(addr, "127.0.0.1");
}
END_TEST

START_TEST(test_resolve_unknown_name_fails_in_time)
{
	char addr[RESOLVE_ADDR_MAX];
	struct timespec a, b;
	long ms;

	clock_gettime(CLOCK_MONOTONIC, &a);
	ck_assert(!resolve_host("no-such-host.invalid", 300, addr));
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	/* Bounded by the deadline (plus scheduling), never by the resolver's own timeouts. */
	ck_assert_int_lt(ms, 3000);
}
END_TEST

static Suite *resolve_suite(void)
{
	Suite *s = suite_create("resolve");
	TCase *core = tcase_create("core");
	TCase *errors = tcase_create("errors");

	tcase_add_test(core, test_resolve_numeric_is_returned_as_is);
	tcase_add_test(core, test_resolve_localhost_prefers_ipv4);
	tcase_add_test(errors, test_resolve_unknown_name_fails_in_time);
	suite_add_tcase(s, core);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(resolve_suite)
