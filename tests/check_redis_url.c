#include "redis_url.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"

struct url_case {
	const char *url;
	bool ok;
	int transport;
	const char *host_or_path;
	int port;
	int db;
	const char *user;
	const char *password;
};

static const struct url_case urls[] = {
	{ "redis://127.0.0.1:6379/0", true, REDIS_TRANSPORT_TCP, "127.0.0.1", 6379, 0, "", "" },
	{ "redis://localhost", true, REDIS_TRANSPORT_TCP, "localhost", 6379, 0, "", "" },
	{ "redis://redis:6379/0", true, REDIS_TRANSPORT_TCP, "redis", 6379, 0, "", "" },
	{ "redis://:pw@h:1/15", true, REDIS_TRANSPORT_TCP, "h", 1, 15, "", "pw" },
	{ "redis://user:p%3Aw%2F@h/2", true, REDIS_TRANSPORT_TCP, "h", 6379, 2, "user", "p:w/" },
	{ "redis://[::1]:7000/1", true, REDIS_TRANSPORT_TCP, "::1", 7000, 1, "", "" },
	{ "redis://h/", true, REDIS_TRANSPORT_TCP, "h", 6379, 0, "", "" },
	{ "unix:///run/redis.sock", true, REDIS_TRANSPORT_UNIX, "/run/redis.sock", 0, 0, "", "" },
	{ "unix:///run/redis.sock?db=4", true, REDIS_TRANSPORT_UNIX, "/run/redis.sock", 0, 4, "", "" },
	{ "unix:///s?db=1&password=x&user=u", true, REDIS_TRANSPORT_UNIX, "/s", 0, 1, "u", "x" },
	{ "redis+cluster://127.0.0.1:30001,127.0.0.1:30002", true, REDIS_TRANSPORT_TCP, "127.0.0.1", 30001, 0, "", "" },
	{ "redis+cluster://u:pw@[::1]:7000,h2/0", true, REDIS_TRANSPORT_TCP, "::1", 7000, 0, "u", "pw" },
	{ "redis+cluster://h:1/1", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis+cluster://h:1,", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis+cluster://h:1,,h:2", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis+cluster://a,b,c,d,e,f,g,h,i", false, 0, NULL, 0, 0, NULL, NULL },
	{ "http://h", false, 0, NULL, 0, 0, NULL, NULL },
	{ "rediss://h", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://h:0", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://h:65536", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://h:12x", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://h/db", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://h/-1", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://h/01", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://pw@h", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://:p%zz@h", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://[::1", false, 0, NULL, 0, 0, NULL, NULL },
	{ "redis://h h", false, 0, NULL, 0, 0, NULL, NULL },
	{ "unix://relative.sock", false, 0, NULL, 0, 0, NULL, NULL },
	{ "unix:///s?db=x", false, 0, NULL, 0, 0, NULL, NULL },
	{ "unix:///s?foo=1", false, 0, NULL, 0, 0, NULL, NULL },
};

START_TEST(test_redis_url_parses_table)
{
	const struct url_case *c = &urls[_i];
	struct redis_target t;
	char err[256] = "";
	bool ok = redis_url_parse(c->url, &t, err, sizeof(err));

	ck_assert_msg(ok == c->ok, "%s: want %s, got %s (%s)", c->url, c->ok ? "ok" : "error",
	              ok ? "ok" : "error", err);
	if (!ok) {
		ck_assert_msg(strstr(err, "REDIS_URL") != NULL, "%s: message should name the setting: %s",
		              c->url, err);
		return;
	}
	ck_assert_int_eq(t.transport, c->transport);
	ck_assert_str_eq(c->transport == REDIS_TRANSPORT_TCP ? t.host : t.path, c->host_or_path);
	if (c->transport == REDIS_TRANSPORT_TCP)
		ck_assert_int_eq(t.port, c->port);
	ck_assert_int_eq(t.db, c->db);
	ck_assert_str_eq(t.user, c->user);
	ck_assert_str_eq(t.password, c->password);
	ck_assert(t.has_password == (c->password[0] != '\0'));
}
END_TEST


/* Refusals word for word: the worker prints them when it refuses to start. */
static const struct { const char *url; const char *message; } refusals[] = {
	{ "http://h", "REDIS_URL must start with redis://, unix:// or redis+cluster://" },
	{ "rediss://h", "REDIS_URL: TLS (rediss://) is not supported by this build" },
	{ "redis://pw@h", "REDIS_URL: credentials must be user:password or :password" },
	{ "redis://:p%00@h", "REDIS_URL: user or password is too long or badly percent-encoded" },
	{ "redis://:p%4@h", "REDIS_URL: user or password is too long or badly percent-encoded" },
	{ "redis://[::1", "REDIS_URL: unclosed '[' in host" },
	{ "redis://[::1]x", "REDIS_URL: junk after ']'" },
	{ "redis://[]:1", "REDIS_URL: bad host" },
	{ "redis://", "REDIS_URL: missing or too long host" },
	{ "redis://h h", "REDIS_URL: bad character in host" },
	{ "redis://h:", "REDIS_URL: bad port" },
	{ "redis://h:00000001", "REDIS_URL: bad port" },
	{ "redis://h:0000001", "REDIS_URL: port must be 1..65535" },
	{ "redis://h:65536", "REDIS_URL: port must be 1..65535" },
	{ "redis://h/-0", "REDIS_URL: database must be a number 0..65535" },
	{ "redis://h/65536", "REDIS_URL: database must be a number 0..65535" },
	{ "redis+cluster://h:1/1", "REDIS_URL: a Redis Cluster has only database 0" },
	{ "redis+cluster://h:1,", "REDIS_URL: empty entry after ','" },
	{ "redis+cluster://a,b,c,d,e,f,g,h,i", "REDIS_URL: at most 8 nodes" },
	{ "unix://relative.sock", "REDIS_URL: unix:// needs an absolute socket path" },
	{ "unix:///s?db=", "REDIS_URL: unknown parameter (known: db, user, password)" },
	{ "unix:///s?db=x", "REDIS_URL: db must be a number 0..65535" },
	{ "unix:///s?password=%zz", "REDIS_URL: bad password parameter" },
	{ "unix:///s?user=%zz", "REDIS_URL: bad user parameter" },
};

START_TEST(test_redis_url_refusal_names_the_fault)
{
	struct redis_target t;
	char err[256] = "";

	ck_assert_msg(!redis_url_parse(refusals[_i].url, &t, err, sizeof(err)), "%s was accepted",
	              refusals[_i].url);
	ck_assert_msg(strcmp(err, refusals[_i].message) == 0, "%s: want '%s', got '%s'",
	              refusals[_i].url, refusals[_i].message, err);
}
END_TEST

START_TEST(test_redis_url_long_parts_are_refused)
{
	struct redis_target t;
	char url[600], err[256] = "";

	snprintf(url, sizeof(url), "redis://%0300d", 0);
	ck_assert(!redis_url_parse(url, &t, err, sizeof(err)));
	ck_assert_str_eq(err, "REDIS_URL: missing or too long host");
	snprintf(url, sizeof(url), "unix:///%0200d", 0);
	ck_assert(!redis_url_parse(url, &t, err, sizeof(err)));
	ck_assert_str_eq(err, "REDIS_URL: socket path too long");
	snprintf(url, sizeof(url), "redis://:%0300d@h", 0);
	ck_assert(!redis_url_parse(url, &t, err, sizeof(err)));
	ck_assert_str_eq(err, "REDIS_URL: user or password is too long or badly percent-encoded");
}
END_TEST

START_TEST(test_redis_url_percent_decodes_credentials)
{
	struct redis_target t;
	char err[256] = "";

	ck_assert_msg(redis_url_parse("redis://%41b%4a:%2540x@h", &t, err, sizeof(err)), "%s", err);
	ck_assert_str_eq(t.user, "AbJ");
	ck_assert_str_eq(t.password, "%40x");
	ck_assert_msg(redis_url_parse("unix:///s?db=%31%32", &t, err, sizeof(err)), "%s", err);
	ck_assert_int_eq(t.db, 12);
}
END_TEST

START_TEST(test_redis_url_parses_sentinels)
{
	struct redis_target t;
	char err[256] = "";

	memset(&t, 0, sizeof(t));
	ck_assert_msg(redis_url_parse_sentinels("127.0.0.1:26379, [::1]:26380 ,s3", &t, err, sizeof(err)),
	              "%s", err);
	ck_assert_int_eq(t.node_count, 3);
	ck_assert_str_eq(t.nodes[0].host, "127.0.0.1");
	ck_assert_int_eq(t.nodes[0].port, 26379);
	ck_assert_str_eq(t.nodes[1].host, "::1");
	ck_assert_int_eq(t.nodes[1].port, 26380);
	ck_assert_str_eq(t.nodes[2].host, "s3");
	ck_assert_int_eq(t.nodes[2].port, 26379);
}
END_TEST

START_TEST(test_redis_url_refuses_bad_sentinels)
{
	static const struct { const char *text; const char *message; } v[] = {
		{ "h:1,h:0", "REDIS_SENTINELS: port must be 1..65535" },
		{ ",", "REDIS_SENTINELS: missing or too long host" },
		{ "", "REDIS_SENTINELS: no host:port" },
		{ "a,b,c,d,e,f,g,h,i", "REDIS_SENTINELS: at most 8 nodes" },
	};
	struct redis_target t;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char err[256] = "";

		memset(&t, 0, sizeof(t));
		ck_assert_msg(!redis_url_parse_sentinels(v[i].text, &t, err, sizeof(err)),
		              "'%s' was accepted", v[i].text);
		ck_assert_msg(strcmp(err, v[i].message) == 0, "'%s': want '%s', got '%s'", v[i].text,
		              v[i].message, err);
	}
}
END_TEST

START_TEST(test_redis_url_masks_the_password)
{
	static const struct { const char *url; const char *shown; } v[] = {
		{ "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0" },
		{ "redis://u:secret@[::1]:7000/3", "redis://u:***@[::1]:7000/3" },
		{ "redis://:secret@h", "redis://:***@h:6379/0" },
		{ "redis+cluster://u:secret@h1:1,h2:2", "redis+cluster://u:***@h1:1,.../0" },
		{ "redis+cluster://h1:1", "redis+cluster://h1:1/0" },
		{ "unix:///tmp/s?db=2&password=secret", "unix:///tmp/s?db=2&password=***" },
		{ "unix:///tmp/s", "unix:///tmp/s?db=0" },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct redis_target t;
		char err[256] = "", shown[700];

		ck_assert_msg(redis_url_parse(v[i].url, &t, err, sizeof(err)), "%s: %s", v[i].url, err);
		redis_url_format_masked(&t, shown, sizeof(shown));
		ck_assert_msg(strcmp(shown, v[i].shown) == 0, "%s: want '%s', got '%s'", v[i].url,
		              v[i].shown, shown);
	}
}
END_TEST

static Suite *redis_url_suite(void)
{
	Suite *s = suite_create("redis_url");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_loop_test(core, test_redis_url_parses_table, 0, sizeof(urls) / sizeof(urls[0]));
	tcase_add_test(core, test_redis_url_percent_decodes_credentials);
	tcase_add_test(core, test_redis_url_parses_sentinels);
	tcase_add_test(core, test_redis_url_masks_the_password);
	tcase_add_test(limits, test_redis_url_long_parts_are_refused);
	tcase_add_loop_test(errors, test_redis_url_refusal_names_the_fault, 0,
	                    sizeof(refusals) / sizeof(refusals[0]));
	tcase_add_test(errors, test_redis_url_refuses_bad_sentinels);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(redis_url_suite)
