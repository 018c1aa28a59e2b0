#include "idem.h"

#include <check.h>
#include <string.h>

#include "check_main.h"

static const struct { const char *header; enum idem_err want; const char *key; } cases[] = {
	{ "abc", IDEM_OK, "abc" },
	{ "\"abc\"", IDEM_OK, "abc" },
	{ "\"\"abc\"\"", IDEM_OK, "\"abc\"" },
	{ "550e8400-e29b-41d4-a716-446655440000", IDEM_OK, "550e8400-e29b-41d4-a716-446655440000" },
	{ "!~", IDEM_OK, "!~" },
	{ "\"", IDEM_OK, "\"" },
	{ NULL, IDEM_MISSING, NULL },
	{ "", IDEM_MISSING, NULL },
	{ "\"\"", IDEM_MALFORMED, NULL },
	{ "has space", IDEM_MALFORMED, NULL },
	{ "tab\there", IDEM_MALFORMED, NULL },
	{ "caf\xc3\xa9", IDEM_MALFORMED, NULL },
	{ "del\x7f", IDEM_MALFORMED, NULL },
};

START_TEST(test_idem_parses_table_row)
{
	struct idem_key key = { 0 };
	enum idem_err err = idem_key_parse(cases[_i].header, &key);

	ck_assert_msg(err == cases[_i].want, "header '%s': want %d, got %d",
	              cases[_i].header ? cases[_i].header : "(absent)", cases[_i].want, err);
	if (err == IDEM_OK) {
		ck_assert_int_eq(key.len, strlen(cases[_i].key));
		ck_assert(memcmp(key.text, cases[_i].key, key.len) == 0);
	}
}
END_TEST

START_TEST(test_idem_length_limits)
{
	char buf[300];
	struct idem_key key;

	memset(buf, 'k', sizeof(buf));
	buf[255] = '\0';
	ck_assert_int_eq(idem_key_parse(buf, &key), IDEM_OK);
	ck_assert_int_eq(key.len, 255);
	buf[255] = 'k';
	buf[256] = '\0';
	ck_assert_int_eq(idem_key_parse(buf, &key), IDEM_MALFORMED);

	/* 255 characters inside quotes is fine: the quotes are stripped first. */
	buf[0] = '"';
	buf[256] = '"';
	buf[257] = '\0';
	ck_assert_int_eq(idem_key_parse(buf, &key), IDEM_OK);
	ck_assert_int_eq(key.len, 255);
}
END_TEST

START_TEST(test_idem_or_problem_statuses)
{
	const char *missing[] = { NULL };
	const char *bad[] = { "HTTP_IDEMPOTENCY_KEY=a b", NULL };
	struct request r;
	struct idem_key key;

	http_request_init(&r, (char *const *)missing, NULL, NULL);
	ck_assert(!idem_key_or_problem(&r, true, &key));
	ck_assert_int_eq(r.resp.status, 400);
	ck_assert(strstr(r.resp.body, "idempotency-key-missing") != NULL);

	http_request_init(&r, (char *const *)missing, NULL, NULL);
	ck_assert(idem_key_or_problem(&r, false, &key));
	ck_assert_int_eq(key.len, 0);

	http_request_init(&r, (char *const *)bad, NULL, NULL);
	ck_assert(!idem_key_or_problem(&r, false, &key));
	ck_assert(strstr(r.resp.body, "idempotency-key-invalid") != NULL);
}
END_TEST

static Suite *idem_suite(void)
{
	Suite *s = suite_create("idem");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_loop_test(core, test_idem_parses_table_row, 0, sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(limits, test_idem_length_limits);
	tcase_add_test(errors, test_idem_or_problem_statuses);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(idem_suite)
