/*
 * lib/transport against the real redis-server tests/run-unit.sh starts
 * (ABACUS_TEST_REDIS_PORT): backoff and its reset, deadlines, connecting and
 * the setup pipeline.
 */
#include "transport.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "check_transport_init.h"

static int redis_port;

START_TEST(test_transport_backoff_doubles_with_jitter_and_resets_on_an_answer)
{
	static const int steps[] = { 0, 50, 100, 200, 400, 800, 1000, 1000 };
	struct transport tr;

	init(&tr, redis_port);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		uint64_t before = transport_now_ms(), wait;

		ck_assert_int_eq(tr.backoff_ms, steps[i]);
		transport_disconnect(&tr, "test");
		wait = tr.next_attempt_ms - before;
		/* Equal jitter: between half the step and the step (0 for the first). */
		ck_assert_msg(wait >= (uint64_t)steps[i] / 2 && wait <= (uint64_t)steps[i] + 5,
		              "step %d waited %llu", steps[i], (unsigned long long)wait);
	}
	transport_answered(&tr);
	ck_assert_int_eq(tr.backoff_ms, 0);
}
END_TEST

START_TEST(test_transport_ms_left_is_capped_and_ends)
{
	uint64_t now = transport_now_ms();

	ck_assert_int_eq(transport_ms_left(now + 10000, 1000), 1000);
	ck_assert_int_le(transport_ms_left(now + 300, 1000), 300);
	ck_assert_int_eq(transport_ms_left(now - 1, 1000), 0);
}
END_TEST

START_TEST(test_transport_connects_and_loads_the_scripts)
{
	uint64_t deadline = transport_now_ms() + 1500;
	struct transport tr;
	struct redis_node node = { .port = redis_port };

	init(&tr, redis_port);
	strcpy(node.host, "127.0.0.1");
	tr.ctx = transport_connect_node(&tr, &node, deadline);
	ck_assert_ptr_nonnull(tr.ctx);
	tr.timeout_ms = -1;
	ck_assert(transport_set_timeout(&tr, deadline));
	ck_assert(transport_setup(&tr, deadline));
	for (int i = 0; i < SCRIPT_COUNT; i++)
		ck_assert_int_eq(strlen(tr.sha[i]), 40);
	ck_assert(tr.policy_checked);
	ck_assert(transport_reload_script(&tr, SCRIPT_GET, deadline));
	redisFree(tr.ctx);
}
END_TEST

START_TEST(test_transport_refused_connection_is_null_in_time)
{
	struct transport tr;
	struct redis_node node = { .port = 1 };         /* nothing listens on port 1 */

	init(&tr, 1);
	strcpy(node.host, "127.0.0.1");
	ck_assert_ptr_null(transport_connect_node(&tr, &node, transport_now_ms() + 1500));
	/* No time left: no attempt at all. */
	node.port = redis_port;
	ck_assert_ptr_null(transport_connect_node(&tr, &node, transport_now_ms() - 1));
}
END_TEST

static Suite *transport_suite(void)
{
	Suite *s = suite_create("transport");
	TCase *core = tcase_create("core");
	TCase *errors = tcase_create("errors");

	redis_port = test_redis_port("check_transport");
	tcase_add_test(core, test_transport_backoff_doubles_with_jitter_and_resets_on_an_answer);
	tcase_add_test(core, test_transport_ms_left_is_capped_and_ends);
	tcase_add_test(core, test_transport_connects_and_loads_the_scripts);
	tcase_add_test(errors, test_transport_refused_connection_is_null_in_time);
	suite_add_tcase(s, core);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(transport_suite)
