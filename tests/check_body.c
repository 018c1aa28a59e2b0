/* lib/body: the HTTP side of request bodies, and what each JSON outcome becomes. */
#include "body.h"

#include <check.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"

struct body_case {
	const char *json;
	size_t len;             /* 0: strlen(json) */
	enum body_err want;
	int64_t value;          /* when want == BODY_OK */
};

#define OK(j, v) { j, 0, BODY_OK, v }
#define BAD(j, e) { j, 0, e, 0 }

/*
 * What each outcome of the scanner becomes (its own table is in check_json.c),
 * and the int64 edges.
 */
static const struct body_case cases[] = {
	OK("{\"number\":5}", 5),
	OK("{\"number\": -5}", -5),
	OK("{\"number\":0}", 0),
	OK("{\"number\":-0}", 0),
	OK("{\"number\":9223372036854775807}", INT64_MAX),
	OK("{\"number\":-9223372036854775808}", INT64_MIN),
	OK("{\"number\":9007199254740993}", 9007199254740993LL),
	OK("{\"nested\":{\"number\":1},\"number\":2}", 2),
	BAD("{\"number\":9223372036854775808}", BODY_FIELD_OUT_OF_RANGE),
	BAD("{\"number\":-9223372036854775809}", BODY_FIELD_OUT_OF_RANGE),
	BAD("{\"number\":123456789012345678901234567890}", BODY_FIELD_OUT_OF_RANGE),
	BAD("{\"number\":-123456789012345678901234567890}", BODY_FIELD_OUT_OF_RANGE),
	BAD("{\"number\":1.0}", BODY_FIELD_NOT_INTEGER),
	BAD("{\"number\":1e3}", BODY_FIELD_NOT_INTEGER),
	BAD("{\"number\":1E3}", BODY_FIELD_NOT_INTEGER),
	BAD("{\"number\":-0.0}", BODY_FIELD_NOT_INTEGER),
	BAD("{\"number\":\"5\"}", BODY_FIELD_NOT_INTEGER),
	BAD("{\"number\":true}", BODY_FIELD_NOT_INTEGER),
	BAD("{\"number\":null}", BODY_FIELD_NOT_INTEGER),
	BAD("{\"number\":[5]}", BODY_FIELD_NOT_INTEGER),
	BAD("{\"number\":{}}", BODY_FIELD_NOT_INTEGER),
	BAD("{}", BODY_FIELD_MISSING),
	BAD("{\"Number\":5}", BODY_FIELD_MISSING),
	BAD("{\"number\":1,\"number\":2}", BODY_FIELD_DUPLICATE),
	BAD("{\"number\":1,\"n\\u0075mber\":1}", BODY_FIELD_DUPLICATE),
	BAD("[1]", BODY_NOT_OBJECT),
	BAD("5", BODY_NOT_OBJECT),
	BAD("\"{\\\"number\\\":5}\"", BODY_NOT_OBJECT),
	BAD("null", BODY_NOT_OBJECT),
	BAD("", BODY_MALFORMED),
	BAD("{\"number\":5} x", BODY_MALFORMED),
	BAD("{\"number\":05}", BODY_MALFORMED),
	BAD("{\"number\":+5}", BODY_MALFORMED),
	BAD("{\"a\":\"\xff\",\"number\":5}", BODY_MALFORMED),
};

START_TEST(test_body_parses_table_row)
{
	const struct body_case *c = &cases[_i];
	size_t len = c->len ? c->len : strlen(c->json);
	int64_t got = 42;
	enum body_err err;

	err = body_parse_int64_field(c->json, len, "number", &got);
	ck_assert_msg(err == c->want, "input %s: want error %d (%s), got %d (%s)", c->json, c->want,
	              body_strerror(c->want), err, body_strerror(err));
	if (c->want == BODY_OK)
		ck_assert_msg(got == c->value, "input %s: want %" PRId64 ", got %" PRId64, c->json,
		              c->value, got);
	else
		ck_assert_msg(got == 42, "input %s: output changed on error", c->json);
}
END_TEST

/* The opt-in string form (?int64=string): a string of a canonical decimal, or still an integer. */
static const struct body_case string_cases[] = {
	OK("{\"number\":\"5\"}", 5),
	OK("{\"number\":5}", 5),
	OK("{\"number\":\"-5\"}", -5),
	OK("{\"number\":\"0\"}", 0),
	OK("{\"number\":\"9007199254740993\"}", 9007199254740993LL),
	OK("{\"number\":\"9223372036854775807\"}", INT64_MAX),
	OK("{\"number\":\"-9223372036854775808\"}", INT64_MIN),
	BAD("{\"number\":\"9223372036854775808\"}", BODY_FIELD_OUT_OF_RANGE),
	BAD("{\"number\":\"-9223372036854775809\"}", BODY_FIELD_OUT_OF_RANGE),
	BAD("{\"number\":\"\"}", BODY_FIELD_NOT_DECIMAL),
	BAD("{\"number\":\"-0\"}", BODY_FIELD_NOT_DECIMAL),
	BAD("{\"number\":\"+5\"}", BODY_FIELD_NOT_DECIMAL),
	BAD("{\"number\":\"05\"}", BODY_FIELD_NOT_DECIMAL),
	BAD("{\"number\":\" 5\"}", BODY_FIELD_NOT_DECIMAL),
	BAD("{\"number\":\"5 \"}", BODY_FIELD_NOT_DECIMAL),
	BAD("{\"number\":\"5.0\"}", BODY_FIELD_NOT_DECIMAL),
	BAD("{\"number\":\"1e3\"}", BODY_FIELD_NOT_DECIMAL),
	BAD("{\"number\":\"0x10\"}", BODY_FIELD_NOT_DECIMAL),
	BAD("{\"number\":\"\\u0035\"}", BODY_FIELD_NOT_DECIMAL),   /* an escape, even of a digit */
	BAD("{\"number\":true}", BODY_FIELD_NOT_DECIMAL),
	BAD("{\"number\":null}", BODY_FIELD_NOT_DECIMAL),
	BAD("{\"number\":1.5}", BODY_FIELD_NOT_DECIMAL),
	BAD("{\"number\":\"5\",\"number\":\"5\"}", BODY_FIELD_DUPLICATE),
	BAD("{\"numbr\":\"5\"}", BODY_FIELD_MISSING),
	BAD("\"5\"", BODY_NOT_OBJECT),
};

START_TEST(test_body_string_form_parses_table_row)
{
	const struct body_case *c = &string_cases[_i];
	int64_t v = 123;
	enum body_err err = body_parse_int64_field_as(c->json, strlen(c->json), "number",
	                                              BODY_INT64_NUMBER_OR_STRING, &v);

	ck_assert_msg(err == c->want, "%s: expected %s, got %s", c->json, body_strerror(c->want), body_strerror(err));
	if (c->want == BODY_OK)
		ck_assert_msg(v == c->value, "%s: expected %" PRId64 ", got %" PRId64, c->json, c->value, v);
	else
		ck_assert_msg(v == 123, "%s: value touched on error", c->json);
	/* Without the opt-in, a string stays what SPEC 2 says: not an integer. */
	if (strncmp(c->json, "{\"number\":\"", 11) == 0 && c->want != BODY_FIELD_DUPLICATE)
		ck_assert_int_eq(body_parse_int64_field(c->json, strlen(c->json), "number", &v), BODY_FIELD_NOT_INTEGER);
}
END_TEST

START_TEST(test_body_names_too_deep_nesting)
{
	char deep[64];
	int64_t got = 42;

	memset(deep, '[', sizeof(deep));
	ck_assert_int_eq(body_parse_int64_field(deep, sizeof(deep), "number", &got), BODY_TOO_DEEP);
	ck_assert_int_eq(got, 42);
	ck_assert_str_eq(body_strerror(BODY_TOO_DEEP), "body nests deeper than 32 levels");
}
END_TEST

START_TEST(test_body_media_type)
{
	ck_assert(body_media_type_is_json("application/json"));
	ck_assert(body_media_type_is_json("Application/JSON"));
	ck_assert(body_media_type_is_json("application/json; charset=utf-8"));
	ck_assert(body_media_type_is_json("application/json;charset=UTF-8"));
	ck_assert(body_media_type_is_json(NULL));
	ck_assert(body_media_type_is_json(""));
	ck_assert(!body_media_type_is_json("text/plain"));
	ck_assert(!body_media_type_is_json("application/x-www-form-urlencoded"));
	ck_assert(!body_media_type_is_json("application/jsonx"));
	ck_assert(!body_media_type_is_json("application/json-patch+json"));
	ck_assert(!body_media_type_is_json("multipart/form-data; boundary=x"));
}
END_TEST

/* ---- body_int64_or_problem through a fake request ---- */

struct source {
	const char *data;
	size_t len;
	size_t at;
};

static size_t read_source(void *ctx, char *buf, size_t n)
{
	struct source *s = ctx;
	size_t k = s->len - s->at < n ? s->len - s->at : n;

	if (k > 3)
		k = 3;  /* short reads, as a socket gives them */
	memcpy(buf, s->data + s->at, k);
	s->at += k;
	return k;
}

static int run_request(const char *content_length, const char *content_type, const char *body,
                       int64_t *out, struct request *r)
{
	char cl[64], ct[128];
	char *env[4] = { NULL };
	int n = 0;
	bool ok;
	static struct source src;

	src.data = body;
	src.len = strlen(body);
	src.at = 0;
	if (content_length != NULL) {
		snprintf(cl, sizeof(cl), "CONTENT_LENGTH=%s", content_length);
		env[n++] = cl;
	}
	if (content_type != NULL) {
		snprintf(ct, sizeof(ct), "CONTENT_TYPE=%s", content_type);
		env[n++] = ct;
	}
	http_request_init(r, env, read_source, &src);
	ok = body_int64_or_problem(r, "number", out);
	r->envp = NULL; /* env lives on this stack frame */
	return ok ? 200 : r->resp.status;
}

START_TEST(test_body_request_statuses)
{
	struct request r;
	int64_t v = 0;

	body_set_limit(64);
	ck_assert_int_eq(run_request("12", "application/json", "{\"number\":9}", &v, &r), 200);
	ck_assert_int_eq(v, 9);
	ck_assert_int_eq(run_request(NULL, NULL, "", &v, &r), 411);
	ck_assert_int_eq(run_request("0", "application/json", "", &v, &r), 411);
	ck_assert_int_eq(run_request("65", "application/json", "x", &v, &r), 413);
	ck_assert_int_eq(run_request("12", "text/plain", "{\"number\":9}", &v, &r), 415);
	ck_assert_int_eq(run_request("20", "application/json", "{\"number\":9}", &v, &r), 400);
	ck_assert_int_eq(run_request("12", "application/json", "{\"number\":\"9", &v, &r), 400);
	ck_assert_int_eq(run_request("14", "application/json", "{\"number\":1.5}", &v, &r), 400);
	ck_assert(strstr(r.resp.body, "\"errors\":[{\"field\":\"number\"") != NULL);
	ck_assert_str_eq(r.resp.content_type, "application/problem+json");
	body_set_limit(4096);
}
END_TEST

static Suite *body_suite(void)
{
	Suite *s = suite_create("body");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_loop_test(core, test_body_parses_table_row, 0, sizeof(cases) / sizeof(cases[0]));
	tcase_add_test(core, test_body_media_type);
	tcase_add_loop_test(core, test_body_string_form_parses_table_row, 0,
	                    sizeof(string_cases) / sizeof(string_cases[0]));
	tcase_add_test(limits, test_body_names_too_deep_nesting);
	tcase_add_test(errors, test_body_request_statuses);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(body_suite)
