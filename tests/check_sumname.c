/* lib/sumname: the rules for the names of sums (docs/API.md, "Named sums"). */
#include "sumname.h"

#include <check.h>
#include <string.h>

#include "check_main.h"

static bool valid(const char *s)
{
	return sumname_valid(s, strlen(s));
}

/* Names that follow the rules, each with why it is worth a line. */
static const char *const good[] = {
	"a",                    /* one character */
	"Z",
	"7",                    /* a digit first */
	"default",              /* the original sum */
	"Default",              /* case matters: another name */
	"campaign-2026",
	"eu.west_1",
	"a-",                   /* the last may be anything allowed */
	"a.",
	"a_",
	"a..b",                 /* dots inside: not a dot segment */
	"ledger-2024",          /* contains a route word, is not one */
	"numbers",
	"0123456789012345678901234567890123456789012345678901234567890123", /* 64 */
};

START_TEST(test_sumname_accepts_names_within_the_rules)
{
	ck_assert_msg(valid(good[_i]), "[%s]: expected valid, got invalid", good[_i]);
}
END_TEST

/* Names that break them: each a case the routes must answer 400 invalid-sum-name. */
static const char *const bad[] = {
	"",                     /* empty (/abacus/sums/) */
	".",                    /* dot segments */
	"..",
	".a",                   /* a first character that is not a letter or digit */
	"-a",
	"_a",
	"a/b",                  /* a second segment */
	"a%2Fb",                /* percent-encoding of any kind, as sent */
	"%61",
	"a b",
	"a+b",
	"a:b",                  /* Redis key separators and hash-tag braces */
	"{a}",
	"a{b",
	"a}b",
	"a\\b",
	"a\"b",
	"a?b",
	"a#b",
	"a*b",
	"caf\xc3\xa9",          /* non-ASCII (UTF-8) */
	"a\xff",
	"a\tb",
	"a\r\nb",
	"01234567890123456789012345678901234567890123456789012345678901234", /* 65 */
};

START_TEST(test_sumname_refuses_names_outside_the_rules)
{
	ck_assert_msg(!valid(bad[_i]), "[%s]: expected invalid, got valid", bad[_i]);
}
END_TEST

START_TEST(test_sumname_length_is_bounded_by_len_not_nul)
{
	char name[SUMNAME_MAX + 2];

	memset(name, 'x', sizeof(name));
	ck_assert(sumname_valid(name, SUMNAME_MAX));
	ck_assert(!sumname_valid(name, SUMNAME_MAX + 1));
	ck_assert(sumname_valid(name, 1));
	/* A NUL inside the length is a byte outside the rules, not an end. */
	ck_assert(!sumname_valid("ab\0cd", 5));
	ck_assert(sumname_valid("ab\0cd", 2));
	ck_assert(!sumname_valid("x", 0));
}
END_TEST

START_TEST(test_sumname_default_is_exactly_default)
{
	ck_assert(sumname_is_default("default", 7));
	ck_assert(!sumname_is_default("Default", 7));
	ck_assert(!sumname_is_default("default2", 8));
	ck_assert(!sumname_is_default("defaul", 6));
	ck_assert(sumname_is_default("defaultX", 7));  /* by length: the first 7 bytes */
	ck_assert(!sumname_is_default("", 0));
}
END_TEST

START_TEST(test_sumname_route_words_are_reserved)
{
	static const char *const words[] = { "sum", "sums", "number", "ledger" };
	static const char *const not_words[] = { "Sum", "LEDGER", "numbers", "ledger-1", "su", "default", "" };

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		ck_assert_msg(sumname_valid(words[i], strlen(words[i])), "[%s] follows the rules", words[i]);
		ck_assert_msg(sumname_is_reserved(words[i], strlen(words[i])), "[%s]: expected reserved", words[i]);
	}
	for (size_t i = 0; i < sizeof(not_words) / sizeof(not_words[0]); i++)
		ck_assert_msg(!sumname_is_reserved(not_words[i], strlen(not_words[i])), "[%s]: expected not reserved",
		              not_words[i]);
}
END_TEST

static Suite *sumname_suite(void)
{
	Suite *s = suite_create("sumname");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_loop_test(core, test_sumname_accepts_names_within_the_rules, 0, sizeof(good) / sizeof(good[0]));
	tcase_add_test(core, test_sumname_default_is_exactly_default);
	tcase_add_test(core, test_sumname_route_words_are_reserved);
	tcase_add_test(limits, test_sumname_length_is_bounded_by_len_not_nul);
	tcase_add_loop_test(errors, test_sumname_refuses_names_outside_the_rules, 0, sizeof(bad) / sizeof(bad[0]));
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(sumname_suite)
