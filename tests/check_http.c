#include "http.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"

static void init(struct request *r, const char **env)
{
	/* The FastCGI API hands out char **; the test tables are literals. */
	http_request_init(r, (char *const *)env, NULL, NULL);
}

START_TEST(test_http_parses_method_and_path)
{
	const char *env[] = { "REQUEST_METHOD=POST", "REQUEST_URI=/abacus/number?x=1", NULL };
	struct request r;

	init(&r, env);
	ck_assert_int_eq(r.method, HTTP_POST);
	ck_assert(http_path_is(&r, "/abacus/number"));
	ck_assert(!http_path_is(&r, "/abacus/numbe"));
	ck_assert(!http_path_is(&r, "/abacus/number/"));
}
END_TEST

START_TEST(test_http_unknown_method_is_other)
{
	const char *env[] = { "REQUEST_METHOD=PATCH", "REQUEST_URI=/", NULL };
	const char *lower[] = { "REQUEST_METHOD=get", "REQUEST_URI=/", NULL };
	struct request r;

	init(&r, env);
	ck_assert_int_eq(r.method, HTTP_OTHER);
	init(&r, lower);
	ck_assert_int_eq(r.method, HTTP_OTHER);
}
END_TEST

START_TEST(test_http_percent_encoded_path_is_not_a_route)
{
	const char *env[] = { "REQUEST_METHOD=GET", "REQUEST_URI=/abacus/%73um", NULL };
	struct request r;

	init(&r, env);
	ck_assert(!http_path_is(&r, "/abacus/sum"));
}
END_TEST

static const struct { const char *id; bool sane; } ids[] = {
	{ "abc-123", true }, { "A.b_c:d-e", true }, { "x", true },
	{ "", false }, { "has space", false }, { "semi;colon", false }, { "é", false },
	{ "line\nbreak", false }, { "quote\"", false },
};

START_TEST(test_http_request_id_sanity)
{
	ck_assert_msg(http_request_id_is_sane(ids[_i].id) == ids[_i].sane, "id '%s': want %d",
	              ids[_i].id, ids[_i].sane);
}
END_TEST

START_TEST(test_http_request_id_length_limit)
{
	char id[140];

	memset(id, 'a', sizeof(id));
	id[128] = '\0';
	ck_assert(http_request_id_is_sane(id));
	id[128] = 'a';
	id[129] = '\0';
	ck_assert(!http_request_id_is_sane(id));
}
END_TEST

START_TEST(test_http_keeps_sane_request_id_and_replaces_bad_one)
{
	const char *good[] = { "HTTP_X_REQUEST_ID=client-id-1", NULL };
	const char *evil[] = { "HTTP_X_REQUEST_ID=x\r\nSet-Cookie: a=b", NULL };
	struct request r;

	init(&r, good);
	ck_assert_str_eq(r.request_id, "client-id-1");
	init(&r, evil);
	ck_assert_int_eq(strlen(r.request_id), 32);
	ck_assert(http_request_id_is_sane(r.request_id));
}
END_TEST

START_TEST(test_http_generated_ids_differ)
{
	char a[33], b[33];

	http_generate_request_id(a);
	http_generate_request_id(b);
	ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(test_http_problem_renders_rfc9457)
{
	const char *env[] = { NULL };
	struct request r;
	char head[2048];

	init(&r, env);
	http_problem(&r, PROBLEM_NOT_FOUND, "no \"such\" route");
	ck_assert_int_eq(r.resp.status, 404);
	ck_assert_str_eq(r.resp.body, "{\"type\":\"urn:abacus:problem:not-found\",\"title\":\"Not found\","
	                              "\"status\":404,\"detail\":\"no \\\"such\\\" route\"}");
	ck_assert_int_eq(r.resp.body_len, strlen(r.resp.body));
	ck_assert(http_format_head(&r, head, sizeof(head)) > 0);
	ck_assert(strstr(head, "Status: 404 Not Found\r\n") == head);
	ck_assert(strstr(head, "Content-Type: application/problem+json\r\n") != NULL);
	ck_assert(strstr(head, "X-Request-ID: ") != NULL);
}
END_TEST

/* Every failure of an operation has its problem; a 503 says when to retry; a keyed POST its own rule. */
START_TEST(test_http_store_outcome_maps_every_failure)
{
	static const struct { enum store_status status; int code; const char *slug; } map[] = {
		{ STORE_KEY_CONFLICT, 422, "idempotency-key-conflict" }, { STORE_OVERFLOW, 409, "sum-out-of-range" },
		{ STORE_NOT_INTEGER, 500, "sum-not-integer" }, { STORE_RATE_LIMITED, 429, "rate-limited" },
		{ STORE_UNAVAILABLE, 503, "redis-unavailable" }, { STORE_NOT_REPLICATED, 503, "not-replicated" },
		{ STORE_OUTCOME_UNKNOWN, 503, "outcome-unknown" }, { STORE_FULL, 503, "redis-full" },
		{ STORE_NOT_FOUND, 404, "sum-not-found" }, { STORE_TOO_MANY_SUMS, 409, "too-many-sums" },
	};
	const char *env[] = { NULL };
	struct request r;
	char head[2048], type[96];

	init(&r, env);
	ck_assert(http_store_outcome(&r, STORE_OK, false));
	ck_assert(http_store_outcome(&r, STORE_REPLAYED, true));
	ck_assert_int_eq(sizeof(map) / sizeof(map[0]), STORE_STATUS_COUNT - 2);
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		init(&r, env);
		ck_assert(!http_store_outcome(&r, map[i].status, false));
		ck_assert_int_eq(r.resp.status, map[i].code);
		snprintf(type, sizeof(type), "\"type\":\"urn:abacus:problem:%s\"", map[i].slug);
		ck_assert_msg(strstr(r.resp.body, type) != NULL, "%s", r.resp.body);
		ck_assert(http_format_head(&r, head, sizeof(head)) > 0);
		ck_assert_int_eq(strstr(head, "Retry-After: 1\r\n") != NULL, map[i].code == 503);
	}
	init(&r, env);
	http_store_outcome(&r, STORE_OUTCOME_UNKNOWN, true);
	ck_assert(strstr(r.resp.body, "retry with the same Idempotency-Key") != NULL);
	init(&r, env);
	http_store_outcome(&r, STORE_OUTCOME_UNKNOWN, false);
	ck_assert(strstr(r.resp.body, "read the sum") != NULL);
}
END_TEST

START_TEST(test_http_problem_field_lists_errors)
{
	const char *env[] = { NULL };
	struct request r;

	init(&r, env);
	http_problem_field(&r, PROBLEM_INVALID_NUMBER, "bad", "number", "must be an integer");
	ck_assert_int_eq(r.resp.status, 400);
	ck_assert(strstr(r.resp.body, ",\"errors\":[{\"field\":\"number\",\"message\":\"must be an integer\"}]}") != NULL);
}
END_TEST

START_TEST(test_http_every_problem_has_status_slug_title)
{
	const struct problem_info *p = http_problem_info((enum problem)_i);

	ck_assert_int_ge(p->status, 400);
	ck_assert_int_le(p->status, 599);
	ck_assert_ptr_nonnull(p->slug);
	ck_assert_ptr_nonnull(p->title);
	ck_assert_str_ne(http_status_text(p->status), "Unknown");
}
END_TEST

START_TEST(test_http_header_values_with_newlines_are_dropped)
{
	const char *env[] = { NULL };
	struct request r;

	init(&r, env);
	http_add_header(&r, "X-A", "ok");
	http_add_header(&r, "X-B", "bad\r\nInjected: 1");
	ck_assert_str_eq(r.resp.headers, "X-A: ok\r\n");
}
END_TEST

START_TEST(test_http_headers_overflow_is_cut_not_corrupted)
{
	const char *env[] = { NULL };
	struct request r;
	char big[600];

	memset(big, 'v', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	init(&r, env);
	http_add_header(&r, "X-1", big);
	http_add_header(&r, "X-2", big);
	ck_assert_int_lt(r.resp.headers_len, HTTP_HEADERS_MAX);
	ck_assert_int_eq(strlen(r.resp.headers), r.resp.headers_len);
	ck_assert(strstr(r.resp.headers, "X-2") == NULL);
}
END_TEST

START_TEST(test_http_reply_json_sets_length)
{
	const char *env[] = { NULL };
	struct request r;
	size_t len;

	init(&r, env);
	http_reply_json(&r, 200, "{\"current_sum\":%d}", 42);
	ck_assert_str_eq(http_body(&r, &len), "{\"current_sum\":42}");
	ck_assert_int_eq(len, 18);
}
END_TEST

START_TEST(test_http_reply_json_int_is_exact_at_the_edges)
{
	static const struct { int64_t v; const char *text; } cases[] = {
		{ 0, "0" }, { 7, "7" }, { -1, "-1" }, { 10, "10" }, { -4503599627370497LL, "-4503599627370497" },
		{ INT64_MAX, "9223372036854775807" }, { INT64_MIN, "-9223372036854775808" },
	};
	const char *env[] = { NULL };
	struct request r;
	char want[64];
	size_t len;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		init(&r, env);
		http_reply_json_int(&r, 200, "{\"current_sum\":", cases[i].v, "}");
		snprintf(want, sizeof(want), "{\"current_sum\":%s}", cases[i].text);
		ck_assert_str_eq(http_body(&r, &len), want);
		ck_assert_int_eq(len, strlen(want));
		ck_assert_int_eq(r.resp.status, 200);
		ck_assert_str_eq(r.resp.content_type, "application/json");
	}
}
END_TEST

/* ?int64=string: the reply's int64 as a JSON string; other values, or twice, a 400. */
START_TEST(test_http_int64_string_form)
{
	const char *plain[] = { "REQUEST_URI=/abacus/sum?x=1", NULL };
	const char *opted[] = { "REQUEST_URI=/abacus/sum?int64=string", NULL };
	const char *bad[][2] = { { "REQUEST_URI=/abacus/sum?int64=number", NULL }, { "REQUEST_URI=/abacus/sum?int64=", NULL },
	                         { "REQUEST_URI=/abacus/sum?int64", NULL },
	                         { "REQUEST_URI=/abacus/sum?int64=string&int64=string", NULL },
	                         { "REQUEST_URI=/abacus/sum?int64=STRING", NULL } };
	struct request r;
	size_t len;

	init(&r, plain);
	ck_assert(http_int64_form_or_problem(&r));
	ck_assert(!r.int64_as_string);
	http_reply_json_int(&r, 200, "{\"current_sum\":", 9007199254740996LL, "}");
	ck_assert_str_eq(http_body(&r, &len), "{\"current_sum\":9007199254740996}");
	init(&r, opted);
	ck_assert(http_int64_form_or_problem(&r));
	ck_assert(r.int64_as_string);
	http_reply_json_int(&r, 200, "{\"current_sum\":", INT64_MIN, "}");
	ck_assert_str_eq(http_body(&r, &len), "{\"current_sum\":\"-9223372036854775808\"}");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		init(&r, bad[i]);
		ck_assert_msg(!http_int64_form_or_problem(&r), "%s: expected refused", bad[i][0]);
		ck_assert_int_eq(r.resp.status, 400);
		ck_assert(strstr(r.resp.body, "invalid-query") != NULL);
	}
}
END_TEST

START_TEST(test_http_head_is_complete_and_refuses_a_short_buffer)
{
	const char *env[] = { "HTTP_X_REQUEST_ID=req-1", NULL };
	const char *want = "Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: 18\r\n"
	                   "X-Request-ID: req-1\r\nCache-Control: no-store\r\nX-A: ok\r\n\r\n";
	struct request r;
	char head[512];

	init(&r, env);
	http_reply_json_int(&r, 200, "{\"current_sum\":", 42, "}");
	http_add_header(&r, "X-A", "ok");
	ck_assert_int_eq(http_format_head(&r, head, sizeof(head)), strlen(want));
	ck_assert_str_eq(head, want);
	/* One byte short of head and NUL: nothing, never a cut head. */
	ck_assert_int_eq(http_format_head(&r, head, strlen(want)), 0);
	ck_assert_int_eq(http_format_head(&r, head, strlen(want) + 1), strlen(want));
}
END_TEST

static Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_test(core, test_http_parses_method_and_path);
	tcase_add_test(core, test_http_keeps_sane_request_id_and_replaces_bad_one);
	tcase_add_test(core, test_http_generated_ids_differ);
	tcase_add_test(core, test_http_problem_renders_rfc9457);
	tcase_add_test(core, test_http_problem_field_lists_errors);
	tcase_add_test(core, test_http_reply_json_sets_length);
	tcase_add_test(core, test_http_head_is_complete_and_refuses_a_short_buffer);
	tcase_add_test(limits, test_http_reply_json_int_is_exact_at_the_edges);
	tcase_add_test(core, test_http_int64_string_form);
	tcase_add_loop_test(core, test_http_every_problem_has_status_slug_title, 0, PROBLEM_COUNT);
	tcase_add_loop_test(limits, test_http_request_id_sanity, 0, sizeof(ids) / sizeof(ids[0]));
	tcase_add_test(limits, test_http_request_id_length_limit);
	tcase_add_test(limits, test_http_headers_overflow_is_cut_not_corrupted);
	tcase_add_test(errors, test_http_unknown_method_is_other);
	tcase_add_test(errors, test_http_store_outcome_maps_every_failure);
	tcase_add_test(errors, test_http_percent_encoded_path_is_not_a_route);
	tcase_add_test(errors, test_http_header_values_with_newlines_are_dropped);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(http_suite)
