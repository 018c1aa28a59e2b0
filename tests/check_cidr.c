#include "cidr.h"

#include <check.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "check_main.h"

static struct cidr nets[2];

static void setup(void)
{
	ck_assert(cidr_parse("10.0.0.0/8", &nets[0]));
	ck_assert(cidr_parse("::1", &nets[1]));
}

START_TEST(test_cidr_address_in_networks)
{
	ck_assert(cidr_address_in("10.255.0.1", nets, 2));
	ck_assert(!cidr_address_in("11.0.0.1", nets, 2));
	ck_assert(cidr_address_in("::1", nets, 2));
	ck_assert(!cidr_address_in("::2", nets, 2));
	ck_assert(!cidr_address_in("garbage", nets, 2));
}
END_TEST

static const struct { const char *text; bool ok; int family; int prefix_len; } cases[] = {
	{ "10.0.0.0/8", true, AF_INET, 8 },
	{ "1.2.3.4", true, AF_INET, 32 },
	{ "0.0.0.0/0", true, AF_INET, 0 },
	{ "10.0.0.0/32", true, AF_INET, 32 },
	{ "::1", true, AF_INET6, 128 },
	{ "fe80::/10", true, AF_INET6, 10 },
	{ "::/0", true, AF_INET6, 0 },
	{ "10.0.0.0/33", false, 0, 0 },
	{ "::1/129", false, 0, 0 },
	{ "10.0.0.0/", false, 0, 0 },
	{ "10.0.0.0/-0", false, 0, 0 },
	{ "10.0.0.0/08", false, 0, 0 },
	{ "10.0.0.0/+8", false, 0, 0 },
	{ "10.0.0.0/ 8", false, 0, 0 },
	{ "/8", false, 0, 0 },
	{ "", false, 0, 0 },
	{ "proxy.local", false, 0, 0 },
	{ "10.0.0", false, 0, 0 },
};

START_TEST(test_cidr_parses_table)
{
	struct cidr c;
	bool ok = cidr_parse(cases[_i].text, &c);

	ck_assert_msg(ok == cases[_i].ok, "'%s': want %s, got %s", cases[_i].text,
	              cases[_i].ok ? "ok" : "refused", ok ? "ok" : "refused");
	if (ok)
		ck_assert_msg(c.family == cases[_i].family && c.prefix_len == cases[_i].prefix_len,
		              "'%s': want family %d /%d, got %d /%d", cases[_i].text, cases[_i].family,
		              cases[_i].prefix_len, c.family, c.prefix_len);
}
END_TEST

START_TEST(test_cidr_prefix_bits_decide)
{
	struct cidr c;

	ck_assert(cidr_parse("192.168.4.0/22", &c));
	ck_assert(cidr_address_in("192.168.7.255", &c, 1));
	ck_assert(!cidr_address_in("192.168.8.0", &c, 1));
	ck_assert(cidr_parse("2001:db8::/33", &c));
	ck_assert(cidr_address_in("2001:db8:7fff::1", &c, 1));
	ck_assert(!cidr_address_in("2001:db8:8000::1", &c, 1));
	ck_assert(cidr_parse("0.0.0.0/0", &c));
	ck_assert(cidr_address_in("255.255.255.255", &c, 1));
	ck_assert(!cidr_address_in("::1", &c, 1));      /* families never mix */
}
END_TEST

START_TEST(test_cidr_list_skips_blanks)
{
	struct cidr out[4];
	size_t count = 0;
	char err[128] = "";

	ck_assert_msg(cidr_parse_list(" 10.0.0.0/8 , ,::1,", out, 4, &count, "X", err, sizeof(err)),
	              "%s", err);
	ck_assert_int_eq(count, 2);
	ck_assert_int_eq(out[1].family, AF_INET6);
	count = 0;
	ck_assert(cidr_parse_list(NULL, out, 4, &count, "X", err, sizeof(err)));
	ck_assert_int_eq(count, 0);
}
END_TEST

START_TEST(test_cidr_list_refusals_name_the_setting)
{
	struct cidr out[2];
	size_t count = 0;
	char err[128] = "", long_entry[80];

	ck_assert(!cidr_parse_list("10.0.0.0/33", out, 2, &count, "ABACUS_TRUSTED_PROXIES", err,
	                           sizeof(err)));
	ck_assert_str_eq(err, "ABACUS_TRUSTED_PROXIES: '10.0.0.0/33' is not an address or CIDR");
	count = 0;
	ck_assert(!cidr_parse_list("1.1.1.1,1.1.1.2,1.1.1.3", out, 2, &count, "ABACUS_TRUSTED_PROXIES",
	                           err, sizeof(err)));
	ck_assert_str_eq(err, "ABACUS_TRUSTED_PROXIES: at most 2 entries");
	count = 0;
	memset(long_entry, '1', sizeof(long_entry) - 1);
	long_entry[sizeof(long_entry) - 1] = '\0';
	ck_assert(!cidr_parse_list(long_entry, out, 2, &count, "ABACUS_TRUSTED_PROXIES", err,
	                           sizeof(err)));
	ck_assert_str_eq(err, "ABACUS_TRUSTED_PROXIES: entry too long");
}
END_TEST

static Suite *cidr_suite(void)
{
	Suite *s = suite_create("cidr");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_checked_fixture(limits, setup, NULL);
	tcase_add_loop_test(core, test_cidr_parses_table, 0, sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(core, test_cidr_list_skips_blanks);
	tcase_add_test(limits, test_cidr_address_in_networks);
	tcase_add_test(limits, test_cidr_prefix_bits_decide);
	tcase_add_test(errors, test_cidr_list_refusals_name_the_setting);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(cidr_suite)
