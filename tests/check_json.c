/* lib/json: the strict RFC 8259 scanner and the one member it remembers. */
#include "json.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"

struct json_case {
	const char *json;
	enum json_err want;
	enum json_type document;        /* when want == JSON_OK */
	unsigned count;                 /* of "number" in the top-level object */
	enum json_type type;            /* of its value, when count > 0 */
	const char *token;              /* that value's token, when count > 0 */
};

#define FOUND(j, t, tok) { j, JSON_OK, JSON_TYPE_OBJECT, 1, t, tok }
#define TWICE(j, t, tok) { j, JSON_OK, JSON_TYPE_OBJECT, 2, t, tok }
#define ABSENT(j, doc) { j, JSON_OK, doc, 0, JSON_TYPE_NULL, NULL }
#define BAD(j) { j, JSON_MALFORMED, JSON_TYPE_NULL, 0, JSON_TYPE_NULL, NULL }

static const struct json_case cases[] = {
	FOUND("{\"number\":5}", JSON_TYPE_INTEGER, "5"),
	FOUND("{\"number\": -5}", JSON_TYPE_INTEGER, "-5"),
	FOUND(" \t\r\n{ \"number\" : 7 } \n", JSON_TYPE_INTEGER, "7"),
	FOUND("{\"number\":-0}", JSON_TYPE_INTEGER, "-0"),
	FOUND("{\"number\":123456789012345678901234567890}", JSON_TYPE_INTEGER,
	      "123456789012345678901234567890"),
	FOUND("{\"other\":[1,{\"a\":null}],\"number\":3,\"x\":\"y\"}", JSON_TYPE_INTEGER, "3"),
	FOUND("{\"nested\":{\"number\":1},\"number\":2}", JSON_TYPE_INTEGER, "2"),
	FOUND("{\"\\u006eumber\":4}", JSON_TYPE_INTEGER, "4"),
	FOUND("{\"s\":\"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00\",\"number\":1}", JSON_TYPE_INTEGER, "1"),
	FOUND("{\"number\":1.0}", JSON_TYPE_NUMBER, "1.0"),
	FOUND("{\"number\":1e3}", JSON_TYPE_NUMBER, "1e3"),
	FOUND("{\"number\":1E+3}", JSON_TYPE_NUMBER, "1E+3"),
	FOUND("{\"number\":-0.0}", JSON_TYPE_NUMBER, "-0.0"),
	FOUND("{\"number\":\"5\"}", JSON_TYPE_STRING, "\"5\""),
	FOUND("{\"number\":true}", JSON_TYPE_BOOLEAN, "true"),
	FOUND("{\"number\":false}", JSON_TYPE_BOOLEAN, "false"),
	FOUND("{\"number\":null}", JSON_TYPE_NULL, "null"),
	FOUND("{\"number\":[5]}", JSON_TYPE_ARRAY, "[5]"),
	FOUND("{\"number\":{ }}", JSON_TYPE_OBJECT, "{ }"),
	TWICE("{\"number\":1,\"number\":2}", JSON_TYPE_INTEGER, "2"),
	TWICE("{\"number\":1,\"n\\u0075mber\":\"x\"}", JSON_TYPE_STRING, "\"x\""),
	ABSENT("{}", JSON_TYPE_OBJECT),
	ABSENT("{\"Number\":5}", JSON_TYPE_OBJECT),
	ABSENT("{\"number \":5}", JSON_TYPE_OBJECT),
	ABSENT("{\"numbe\":5}", JSON_TYPE_OBJECT),
	ABSENT("{\"number\\u0000\":5}", JSON_TYPE_OBJECT),
	ABSENT("{\"n\xc3\xbcmber\":5}", JSON_TYPE_OBJECT),
	ABSENT("{\"numbernumbernumbernumber\":5}", JSON_TYPE_OBJECT),
	ABSENT("[1]", JSON_TYPE_ARRAY),
	ABSENT("[{\"number\":1}]", JSON_TYPE_ARRAY),
	ABSENT("5", JSON_TYPE_INTEGER),
	ABSENT("\"{\\\"number\\\":5}\"", JSON_TYPE_STRING),
	ABSENT("null", JSON_TYPE_NULL),
	BAD(""),
	BAD("   "),
	BAD("{"),
	BAD("{\"number\":5"),
	BAD("{\"number\":5}}"),
	BAD("{\"number\":5} x"),
	BAD("{\"number\":5}{\"number\":6}"),
	BAD("{\"number\":5,}"),
	BAD("{'number':5}"),
	BAD("{number:5}"),
	BAD("{\"number\":05}"),
	BAD("{\"number\":+5}"),
	BAD("{\"number\":-}"),
	BAD("{\"number\":1.}"),
	BAD("{\"number\":.5}"),
	BAD("{\"number\":1e}"),
	BAD("{\"number\":NaN}"),
	BAD("{\"number\":Infinity}"),
	BAD("{\"number\":0x10}"),
	BAD("{\"number\":tru}"),
	BAD("{\"number\" 5}"),
	BAD("{\"a\":\"\x01\",\"number\":5}"),
	BAD("{\"a\":\"\\x\",\"number\":5}"),
	BAD("{\"a\":\"\\u12\",\"number\":5}"),
	BAD("{\"a\":\"\xff\",\"number\":5}"),
	BAD("{\"a\":\"\xc0\xaf\",\"number\":5}"),
	BAD("{\"a\":\"\xed\xa0\x80\",\"number\":5}"),
	BAD("{\"a\":\"\xf4\x90\x80\x80\",\"number\":5}"),
	BAD("{\"a\":\"\xe2\x82\",\"number\":5}"),
	BAD("\xef\xbb\xbf{\"number\":5}"),
	BAD("{\"number\":[1,2,]}"),
};

START_TEST(test_json_scans_table_row)
{
	const struct json_case *c = &cases[_i];
	struct json_member m = { .count = 99 };
	size_t len = strlen(c->json);
	enum json_err err = json_scan_member(c->json, len, "number", &m);

	ck_assert_msg(err == c->want, "input %s: want error %d, got %d", c->json, c->want, err);
	if (err != JSON_OK) {
		ck_assert_msg(m.count == 99, "input %s: output changed on error", c->json);
	} else {
		ck_assert_msg(m.document == c->document, "input %s: want document type %d, got %d",
		              c->json, c->document, m.document);
		ck_assert_msg(m.count == c->count, "input %s: want the member %u times, got %u", c->json,
		              c->count, m.count);
	}
	if (err == JSON_OK && c->count > 0) {
		ck_assert_msg(m.type == c->type, "input %s: want value type %d, got %d", c->json, c->type,
		              m.type);
		ck_assert_msg(m.len == strlen(c->token) && memcmp(m.value, c->token, m.len) == 0,
		              "input %s: want token %s, got %.*s", c->json, c->token, (int)m.len, m.value);
		ck_assert_msg(m.value > c->json && m.value + m.len < c->json + len,
		              "input %s: the token is not borrowed from the input", c->json);
	} else if (err == JSON_OK) {
		ck_assert_msg(m.value == NULL, "input %s: a value without a member", c->json);
	}
}
END_TEST

START_TEST(test_json_rejects_nul_byte_inside)
{
	static const char json[] = "{\"number\":5,\"a\":\"x\0y\"}";
	struct json_member m;

	ck_assert_int_eq(json_scan_member(json, sizeof(json) - 1, "number", &m), JSON_MALFORMED);
	ck_assert_int_eq(json_scan_member("{\"number\":5}\0", 13, "number", &m), JSON_MALFORMED);
}
END_TEST

START_TEST(test_json_reads_only_len_bytes)
{
	struct json_member m;

	/* The buffer need not end in NUL: what follows len is never looked at. */
	ck_assert_int_eq(json_scan_member("{\"number\":12}garbage", 13, "number", &m), JSON_OK);
	ck_assert_int_eq(m.len, 2);
	ck_assert_int_eq(json_scan_member("{\"number\":12}", 12, "number", &m), JSON_MALFORMED);
}
END_TEST

/* Builds `levels` nested arrays around {"number":1}. */
static char *nested(int levels)
{
	char *s = malloc((size_t)levels * 2 + 32);
	size_t at = 0;

	at += (size_t)sprintf(s, "{\"number\":1,\"deep\":");
	for (int i = 0; i < levels; i++)
		s[at++] = '[';
	for (int i = 0; i < levels; i++)
		s[at++] = ']';
	s[at++] = '}';
	s[at] = '\0';
	return s;
}

START_TEST(test_json_limits_nesting_depth)
{
	char *ok = nested(JSON_MAX_DEPTH - 1);          /* the object and 31 arrays: 32 levels */
	char *one_more = nested(JSON_MAX_DEPTH);
	char *deep = nested(10000);
	struct json_member m;

	ck_assert_int_eq(json_scan_member(ok, strlen(ok), "number", &m), JSON_OK);
	ck_assert_int_eq(m.count, 1);
	ck_assert_int_eq(json_scan_member(one_more, strlen(one_more), "number", &m), JSON_TOO_DEEP);
	ck_assert_int_eq(json_scan_member(deep, strlen(deep), "number", &m), JSON_TOO_DEEP);
	free(ok);
	free(one_more);
	free(deep);
}
END_TEST

/* The ledger's int64 members as strings (?int64=string), and nothing else. */
START_TEST(test_json_quotes_only_the_named_int_members)
{
	static const char *const names[] = { "number", "sum", "was", NULL };
	static const struct { const char *in, *want; } quoted[] = {
		{ "{\"sum\":5}", "{\"sum\":\"5\"}" },
		{ "{\"sum\":-9223372036854775808,\"last\":null}", "{\"sum\":\"-9223372036854775808\",\"last\":null}" },
		{ "{\"sum\":null}", "{\"sum\":null}" },
		{ "{\"entries\":[{\"id\":\"1-0\",\"op\":\"add\",\"number\":9007199254740996,\"sum\":1,\"was\":0}],"
		  "\"next\":\"1-0\",\"sum\":1,\"last\":\"1-0\"}",
		  "{\"entries\":[{\"id\":\"1-0\",\"op\":\"add\",\"number\":\"9007199254740996\",\"sum\":\"1\",\"was\":\"0\"}],"
		  "\"next\":\"1-0\",\"sum\":\"1\",\"last\":\"1-0\"}" },
		/* Other members, and names or numbers inside strings, are left alone. */
		{ "{\"count\":5,\"sum\":1}", "{\"count\":5,\"sum\":\"1\"}" },
		{ "{\"idempotency_key\":\"x\\\",\\\"sum\\\":5\",\"sum\":2}",
		  "{\"idempotency_key\":\"x\\\",\\\"sum\\\":5\",\"sum\":\"2\"}" },
		{ "{\"k\":\"sum\",\"v\":3}", "{\"k\":\"sum\",\"v\":3}" },
		{ "{\"sum\" : 4}", "{\"sum\" : \"4\"}" },
		{ "{\"a\\\\\":1,\"sum\":4}", "{\"a\\\\\":1,\"sum\":\"4\"}" },
		{ "", "" },
	};
	char out[256];

	for (size_t i = 0; i < sizeof(quoted) / sizeof(quoted[0]); i++) {
		size_t n = json_quote_int_members(quoted[i].in, strlen(quoted[i].in), names, NULL);

		ck_assert_msg(n == strlen(quoted[i].want), "%s: measured %zu, expected %zu", quoted[i].in, n,
		              strlen(quoted[i].want));
		memset(out, 0, sizeof(out));
		ck_assert_int_eq(json_quote_int_members(quoted[i].in, strlen(quoted[i].in), names, out), n);
		ck_assert_msg(strcmp(out, quoted[i].want) == 0, "%s: expected %s, got %s", quoted[i].in, quoted[i].want, out);
	}
}
END_TEST

static Suite *json_suite(void)
{
	Suite *s = suite_create("json");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_loop_test(core, test_json_scans_table_row, 0, sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(limits, test_json_limits_nesting_depth);
	tcase_add_test(core, test_json_quotes_only_the_named_int_members);
	tcase_add_test(limits, test_json_reads_only_len_bytes);
	tcase_add_test(errors, test_json_rejects_nul_byte_inside);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(json_suite)
