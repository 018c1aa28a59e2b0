/* lib/scripts: the Lua files composed with this configuration's header, and errors traced to their source. */
#include "scripts.h"

#include <check.h>
#include <string.h>

#include "check_main.h"

static const struct script_settings settings = {
	.rate_limit_requests = 600, .rate_limit_window_seconds = 60,
	.idempotency_ttl_seconds = 86400, .request_deadline_ms = 1500, .wait_for_replicas = false,
	.ledger_retention_seconds = 86400,
};

START_TEST(test_scripts_header_holds_this_configuration)
{
	char text[SCRIPT_MAX];

	ck_assert(scripts_format(SCRIPT_GET, &settings, text, sizeof(text)));
	ck_assert(strncmp(text, "#!lua flags=allow-oom\n", 22) == 0);
	ck_assert(strstr(text, "local MAX, WINDOW_US, WINDOW_MS, TTL, OP_TTL, WAITS, LEDGER_MS = 600, 60000000, '60000', "
	                       "'86400', '62', false, 86400000\n") != NULL);
	ck_assert(strstr(text, "-- abacus:get\n") != NULL);
	ck_assert(scripts_format(SCRIPT_ADD, &settings, text, sizeof(text)));
	ck_assert(strncmp(text, "#!lua\n", 6) == 0);            /* changes are refused when Redis is full */
	ck_assert(strstr(text, "-- abacus:add\n") != NULL);
	/* The limiter's halves are pasted in, with this script's key. */
	ck_assert(strstr(text, "redis.call('ZCOUNT', KEYS[5], since, '+inf')") != NULL);
	ck_assert(strstr(text, "@RL@") == NULL && strstr(text, "--@include") == NULL);
	/* So is the ledger's append, with this script's stream and fields. */
	ck_assert(strstr(text, "redis.pcall('XADD', KEYS[3], 'MINID', '~'") != NULL);
	ck_assert(strstr(text, "'op', 'add', 'n', ARGV[1], 'sum', s, 'key', ARGV[5], 'idem', ARGV[7], 'req', ARGV[6])") != NULL);
	ck_assert(strstr(text, "@LEDGER@") == NULL && strstr(text, "@OP@") == NULL);
	ck_assert(scripts_format(SCRIPT_LEDGER, &settings, text, sizeof(text)));
	ck_assert(strncmp(text, "#!lua flags=allow-oom\n", 22) == 0);   /* reading the ledger goes on when Redis is full */
	ck_assert(strstr(text, "-- abacus:ledger\n") != NULL);
}
END_TEST

START_TEST(test_scripts_ttl_outlives_the_deadline)
{
	struct script_settings short_ttl = settings;
	char text[SCRIPT_MAX];

	short_ttl.idempotency_ttl_seconds = 1;
	short_ttl.request_deadline_ms = 120000;
	short_ttl.wait_for_replicas = true;
	ck_assert(scripts_format(SCRIPT_SET, &short_ttl, text, sizeof(text)));
	/* A record or token lives the deadline plus a minute at least: 120 + 60. */
	ck_assert_msg(strstr(text, "'180', '180', true, 86400000\n") != NULL, "%s", text);
}
END_TEST

START_TEST(test_scripts_errors_name_file_and_line)
{
	char text[SCRIPT_MAX], source[256];
	int line = 0, n = 0;

	/* Find the ZCOUNT line of the composed GET script as Redis numbers it (from 1, header included). */
	ck_assert(scripts_format(SCRIPT_GET, &settings, text, sizeof(text)));
	for (const char *p = text; *p != '\0'; p++) {
		if (p == text || p[-1] == '\n') {
			n++;
			if (strncmp(p, "  local count = redis.call('ZCOUNT'", 35) == 0)
				line = n;
		}
	}
	ck_assert_int_gt(line, SCRIPT_HEADER_LINES);
	ck_assert(scripts_source_of(SCRIPT_GET, line, source, sizeof(source)));
	ck_assert_str_eq(source, "lib/lua/limiter_budget.lua:13");
	ck_assert(scripts_source_in_error(SCRIPT_GET, "WRONGTYPE ... script: abc, on @user_script:14.", source,
	                                  sizeof(source)));
	ck_assert(!scripts_source_of(SCRIPT_GET, 1, source, sizeof(source)));     /* the header */
	ck_assert(!scripts_source_of(SCRIPT_GET, 100000, source, sizeof(source)));
	ck_assert(!scripts_source_in_error(SCRIPT_ADD, "ERR no line here", source, sizeof(source)));
}
END_TEST

START_TEST(test_scripts_refuse_a_buffer_too_small)
{
	char text[64];

	ck_assert(!scripts_format(SCRIPT_ADD, &settings, text, sizeof(text)));
}
END_TEST

static Suite *scripts_suite(void)
{
	Suite *s = suite_create("scripts");
	TCase *core = tcase_create("core");
	TCase *errors = tcase_create("errors");

	tcase_add_test(core, test_scripts_header_holds_this_configuration);
	tcase_add_test(core, test_scripts_ttl_outlives_the_deadline);
	tcase_add_test(errors, test_scripts_errors_name_file_and_line);
	tcase_add_test(errors, test_scripts_refuse_a_buffer_too_small);
	suite_add_tcase(s, core);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(scripts_suite)
