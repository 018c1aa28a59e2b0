/* lib/decimal: the one strict int64 parser and the formatters. */
#include "decimal.h"

#include <check.h>
#include <stdint.h>
#include <string.h>

#include "check_main.h"

static enum decimal_err parse(const char *s, enum decimal_minus_zero mz, int64_t *out)
{
	return decimal_parse_int64(s, strlen(s), mz, out);
}

START_TEST(test_decimal_parses_canonical_int64)
{
	int64_t v = 1;

	ck_assert_int_eq(parse("0", DECIMAL_REFUSE_MINUS_ZERO, &v), DECIMAL_OK);
	ck_assert_int_eq(v, 0);
	ck_assert_int_eq(parse("42", DECIMAL_REFUSE_MINUS_ZERO, &v), DECIMAL_OK);
	ck_assert_int_eq(v, 42);
	ck_assert_int_eq(parse("-42", DECIMAL_REFUSE_MINUS_ZERO, &v), DECIMAL_OK);
	ck_assert_int_eq(v, -42);
	ck_assert_int_eq(parse("9223372036854775807", DECIMAL_REFUSE_MINUS_ZERO, &v), DECIMAL_OK);
	ck_assert(v == INT64_MAX);
	ck_assert_int_eq(parse("-9223372036854775808", DECIMAL_REFUSE_MINUS_ZERO, &v), DECIMAL_OK);
	ck_assert(v == INT64_MIN);
}
END_TEST

START_TEST(test_decimal_refuses_what_is_not_canonical)
{
	static const char *const bad[] = { "", "-", "+1", " 1", "1 ", "01", "-01", "00", "1.0", "1e3",
	                                   "0x10", "١", "--1", "1-" };
	int64_t v = 7;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(parse(bad[i], DECIMAL_ALLOW_MINUS_ZERO, &v) == DECIMAL_NOT_INTEGER, "[%s]", bad[i]);
	ck_assert_int_eq(v, 7);                 /* untouched */
}
END_TEST

START_TEST(test_decimal_out_of_range_and_minus_zero)
{
	int64_t v = 7;

	ck_assert_int_eq(parse("9223372036854775808", DECIMAL_REFUSE_MINUS_ZERO, &v), DECIMAL_OUT_OF_RANGE);
	ck_assert_int_eq(parse("-9223372036854775809", DECIMAL_REFUSE_MINUS_ZERO, &v), DECIMAL_OUT_OF_RANGE);
	ck_assert_int_eq(parse("123456789012345678901234567890", DECIMAL_REFUSE_MINUS_ZERO, &v),
	                 DECIMAL_OUT_OF_RANGE);
	ck_assert_int_eq(parse("99999999999999999999x", DECIMAL_REFUSE_MINUS_ZERO, &v), DECIMAL_NOT_INTEGER);
	ck_assert_int_eq(parse("-0", DECIMAL_REFUSE_MINUS_ZERO, &v), DECIMAL_NOT_INTEGER);
	ck_assert_int_eq(v, 7);
	ck_assert_int_eq(parse("-0", DECIMAL_ALLOW_MINUS_ZERO, &v), DECIMAL_OK);
	ck_assert_int_eq(v, 0);
}
END_TEST

START_TEST(test_decimal_formats_every_edge)
{
	static const int64_t values[] = { 0, 1, -1, 10, -10, INT64_MAX, INT64_MIN, 1000000007 };
	char buf[DECIMAL_MAX + 1], size[DECIMAL_MAX + 1];
	int64_t back;

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		size_t n = decimal_format(buf, values[i]);

		ck_assert_int_eq(decimal_parse_int64(buf, n, DECIMAL_REFUSE_MINUS_ZERO, &back), DECIMAL_OK);
		ck_assert(back == values[i]);
	}
	*decimal_put_size(size, 0) = '\0';
	ck_assert_str_eq(size, "0");
	*decimal_put_size(size, (size_t)18446744073709551615ULL) = '\0';
	ck_assert_str_eq(size, "18446744073709551615");
}
END_TEST

static Suite *decimal_suite(void)
{
	Suite *s = suite_create("decimal");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");

	tcase_add_test(core, test_decimal_parses_canonical_int64);
	tcase_add_test(core, test_decimal_refuses_what_is_not_canonical);
	tcase_add_test(limits, test_decimal_out_of_range_and_minus_zero);
	tcase_add_test(limits, test_decimal_formats_every_edge);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	return s;
}

CHECK_MAIN(decimal_suite)
