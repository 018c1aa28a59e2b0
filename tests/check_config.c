#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check_main.h"

/* A fake environment: NAME=value pairs. */
static const char *fake_env[32];

static const char *lookup(const char *name)
{
	size_t n = strlen(name);

	for (int i = 0; fake_env[i] != NULL; i++)
		if (strncmp(fake_env[i], name, n) == 0 && fake_env[i][n] == '=')
			return fake_env[i] + n + 1;
	return NULL;
}

static void set_env(const char *const *vars)
{
	int i = 0;

	for (; vars[i] != NULL; i++)
		fake_env[i] = vars[i];
	fake_env[i] = NULL;
}

START_TEST(test_config_defaults)
{
	struct config cfg;
	char err[256];
	static const char *const none[] = { NULL };

	set_env(none);
	ck_assert(config_load(&cfg, lookup, err, sizeof(err)));
	ck_assert_str_eq(cfg.redis.host, "127.0.0.1");
	ck_assert_int_eq(cfg.redis.port, 6379);
	ck_assert_int_eq(cfg.redis.db, 0);
	ck_assert_int_eq(cfg.redis_connect_timeout_ms, 500);
	ck_assert_int_eq(cfg.redis_timeout_ms, 1000);
	ck_assert_str_eq(cfg.redis_prefix, "abacus");
	ck_assert(!cfg.auth_enabled);
	ck_assert(cfg.idempotency_required);
	ck_assert_int_eq(cfg.idempotency_ttl_seconds, 86400);
	ck_assert_int_eq(cfg.max_body_bytes, 4096);
	ck_assert(cfg.rate_limit_enabled);
	ck_assert_int_eq(cfg.rate_limit_requests, 600);
	ck_assert_int_eq(cfg.rate_limit_window_seconds, 60);
	ck_assert_int_eq(cfg.log_level, LOG_LEVEL_INFO);
	ck_assert_str_eq(cfg.metrics_shm, "/abacus-metrics");
	ck_assert(!cfg.metrics_auth);
	ck_assert_int_eq(cfg.workers_configured, 0);          /* unset: unknown */
	config_free(&cfg);
}
END_TEST

START_TEST(test_config_reads_every_setting)
{
	struct config cfg;
	char err[256];
	static const char *const vars[] = {
		"REDIS_URL=redis://app:s%40cret@db.example:6380/3",
		"ABACUS_REDIS_CONNECT_TIMEOUT_MS=250", "ABACUS_REDIS_TIMEOUT_MS=2000",
		"ABACUS_REDIS_PREFIX=prod.sum", "ABACUS_API_KEYS= k1 ,k2,,k3",
		"ABACUS_ADMIN_API_KEYS=adm", "ABACUS_IDEMPOTENCY_REQUIRED=false",
		"ABACUS_IDEMPOTENCY_TTL_SECONDS=60", "ABACUS_MAX_BODY_BYTES=100",
		"ABACUS_RATE_LIMIT_ENABLED=no", "ABACUS_RATE_LIMIT_REQUESTS=5",
		"ABACUS_RATE_LIMIT_WINDOW_SECONDS=2", "ABACUS_LOG_LEVEL=debug",
		"ABACUS_TRUSTED_PROXIES=10.0.0.0/8, ::1", "ABACUS_WORKERS=8", NULL
	};

	set_env(vars);
	ck_assert_msg(config_load(&cfg, lookup, err, sizeof(err)), "load failed: %s", err);
	ck_assert_str_eq(cfg.redis.host, "db.example");
	ck_assert_int_eq(cfg.redis.port, 6380);
	ck_assert_int_eq(cfg.redis.db, 3);
	ck_assert_str_eq(cfg.redis.user, "app");
	ck_assert_str_eq(cfg.redis.password, "s@cret");
	ck_assert_int_eq(cfg.redis_connect_timeout_ms, 250);
	ck_assert_int_eq(cfg.redis_timeout_ms, 2000);
	ck_assert_str_eq(cfg.redis_prefix, "prod.sum");
	ck_assert(cfg.auth_enabled);
	ck_assert_int_eq(cfg.api_keys.count, 3);
	ck_assert_str_eq(cfg.api_keys.keys[0], "k1");
	ck_assert_str_eq(cfg.api_keys.keys[2], "k3");
	ck_assert_int_eq(cfg.admin_keys.count, 1);
	ck_assert(!cfg.idempotency_required);
	ck_assert_int_eq(cfg.idempotency_ttl_seconds, 60);
	ck_assert_int_eq(cfg.max_body_bytes, 100);
	ck_assert(!cfg.rate_limit_enabled);
	ck_assert_int_eq(cfg.rate_limit_requests, 5);
	ck_assert_int_eq(cfg.rate_limit_window_seconds, 2);
	ck_assert_int_eq(cfg.log_level, LOG_LEVEL_DEBUG);
	ck_assert_int_eq(cfg.trusted_proxy_count, 2);
	ck_assert_int_eq(cfg.workers_configured, 8);
	config_free(&cfg);
}
END_TEST

START_TEST(test_config_reads_keys_file)
{
	struct config cfg;
	char err[256];
	char path[] = "/tmp/abacus-keys-XXXXXX";
	char var[64];
	int fd = mkstemp(path);
	const char *vars[3];
	static const char text[] = "# keys\nfile-key-1\n\n  file-key-2  \r\n";

	ck_assert(fd >= 0);
	ck_assert(write(fd, text, sizeof(text) - 1) == (ssize_t)sizeof(text) - 1);
	close(fd);
	snprintf(var, sizeof(var), "ABACUS_API_KEYS_FILE=%s", path);
	vars[0] = var;
	vars[1] = "ABACUS_API_KEYS=inline";
	vars[2] = NULL;
	set_env(vars);
	ck_assert_msg(config_load(&cfg, lookup, err, sizeof(err)), "load failed: %s", err);
	ck_assert_int_eq(cfg.api_keys.count, 3);
	ck_assert_str_eq(cfg.api_keys.keys[1], "file-key-1");
	ck_assert_str_eq(cfg.api_keys.keys[2], "file-key-2");
	ck_assert(cfg.auth_enabled);
	config_free(&cfg);
	unlink(path);
}
END_TEST

struct bad_case {
	const char *var;
	const char *needle;     /* the message must name this */
};

static const struct bad_case bad[] = {
	{ "ABACUS_REDIS_TIMEOUT_MS=0", "ABACUS_REDIS_TIMEOUT_MS" },
	{ "ABACUS_REDIS_TIMEOUT_MS=1s", "ABACUS_REDIS_TIMEOUT_MS" },
	{ "ABACUS_REDIS_CONNECT_TIMEOUT_MS=-5", "ABACUS_REDIS_CONNECT_TIMEOUT_MS" },
	{ "ABACUS_MAX_BODY_BYTES=abc", "ABACUS_MAX_BODY_BYTES" },
	{ "ABACUS_MAX_BODY_BYTES= 100", "ABACUS_MAX_BODY_BYTES" },
	{ "ABACUS_MAX_BODY_BYTES=99999999999999999999999", "ABACUS_MAX_BODY_BYTES" },
	{ "ABACUS_IDEMPOTENCY_TTL_SECONDS=0", "ABACUS_IDEMPOTENCY_TTL_SECONDS" },
	{ "ABACUS_IDEMPOTENCY_REQUIRED=maybe", "ABACUS_IDEMPOTENCY_REQUIRED" },
	{ "ABACUS_RATE_LIMIT_ENABLED=2", "ABACUS_RATE_LIMIT_ENABLED" },
	{ "ABACUS_RATE_LIMIT_REQUESTS=0", "ABACUS_RATE_LIMIT_REQUESTS" },
	{ "ABACUS_RATE_LIMIT_WINDOW_SECONDS=+60", "ABACUS_RATE_LIMIT_WINDOW_SECONDS" },
	{ "ABACUS_LOG_LEVEL=verbose", "ABACUS_LOG_LEVEL" },
	{ "ABACUS_AUTH_ENABLED=true", "ABACUS_AUTH_ENABLED" },
	{ "ABACUS_AUTH_ENABLED=yesplease", "ABACUS_AUTH_ENABLED" },
	{ "ABACUS_API_KEYS=good,bad key", "ABACUS_API_KEYS" },
	{ "ABACUS_API_KEYS_FILE=/nonexistent/keys", "ABACUS_API_KEYS_FILE" },
	{ "ABACUS_REDIS_PREFIX={x}", "ABACUS_REDIS_PREFIX" },
	{ "ABACUS_TRUSTED_PROXIES=10.0.0.0/33", "ABACUS_TRUSTED_PROXIES" },
	{ "ABACUS_TRUSTED_PROXIES=proxy.local", "ABACUS_TRUSTED_PROXIES" },
	{ "REDIS_URL=localhost:6379", "REDIS_URL" },
	{ "ABACUS_METRICS_SHM=abacus", "ABACUS_METRICS_SHM" },
	{ "REDIS_SENTINELS=h:1,h:0", "REDIS_SENTINELS" },
	{ "REDIS_SENTINELS=,", "REDIS_SENTINELS" },
	{ "ABACUS_REDIS_MIN_REPLICAS=17", "ABACUS_REDIS_MIN_REPLICAS" },
	{ "ABACUS_REDIS_MIN_REPLICAS=-1", "ABACUS_REDIS_MIN_REPLICAS" },
	{ "ABACUS_REDIS_WAIT_TIMEOUT_MS=0", "ABACUS_REDIS_WAIT_TIMEOUT_MS" },
	{ "ABACUS_METRICS_SHM=/a/b", "ABACUS_METRICS_SHM" },
	{ "ABACUS_METRICS_AUTH=sometimes", "ABACUS_METRICS_AUTH" },
	{ "ABACUS_WORKERS=0", "ABACUS_WORKERS" },
	{ "ABACUS_WORKERS=257", "ABACUS_WORKERS" },
	{ "ABACUS_WORKERS=four", "ABACUS_WORKERS" },
	{ "ABACUS_WORKERS=04", "ABACUS_WORKERS" },
};

START_TEST(test_config_refuses_bad_value)
{
	struct config cfg;
	char err[256] = "";
	const char *vars[2] = { bad[_i].var, NULL };

	set_env(vars);
	ck_assert_msg(!config_load(&cfg, lookup, err, sizeof(err)), "%s was accepted", bad[_i].var);
	ck_assert_msg(strstr(err, bad[_i].needle) != NULL, "%s: message '%s' does not name %s",
	              bad[_i].var, err, bad[_i].needle);
}
END_TEST

START_TEST(test_config_refuses_secret_in_message)
{
	struct config cfg;
	char err[256] = "";
	static const char *const vars[] = { "ABACUS_API_KEYS=topsecret,bad key", NULL };

	set_env(vars);
	ck_assert(!config_load(&cfg, lookup, err, sizeof(err)));
	ck_assert_msg(strstr(err, "topsecret") == NULL && strstr(err, "bad key") == NULL,
	              "message leaks a key: %s", err);
}
END_TEST

START_TEST(test_config_auth_can_be_disabled_with_keys)
{
	struct config cfg;
	char err[256];
	static const char *const vars[] = { "ABACUS_API_KEYS=k", "ABACUS_AUTH_ENABLED=false", NULL };

	set_env(vars);
	ck_assert(config_load(&cfg, lookup, err, sizeof(err)));
	ck_assert(!cfg.auth_enabled);
	config_free(&cfg);
}
END_TEST

START_TEST(test_config_reads_sentinels)
{
	struct config cfg;
	char err[256];
	static const char *const vars[] = {
		"REDIS_URL=redis://:masterpw@ignored:1/3",
		"REDIS_SENTINELS=127.0.0.1:26379, [::1]:26380 ,s3",
		"ABACUS_REDIS_MASTER_NAME=sums",
		"ABACUS_REDIS_SENTINEL_PASSWORD=sentinelpw",
		"ABACUS_REDIS_MIN_REPLICAS=1",
		NULL,
	};

	set_env(vars);
	ck_assert_msg(config_load(&cfg, lookup, err, sizeof(err)), "%s", err);
	ck_assert_int_eq(cfg.redis.mode, REDIS_MODE_SENTINEL);
	ck_assert_int_eq(cfg.redis.node_count, 3);
	ck_assert_str_eq(cfg.redis.nodes[0].host, "127.0.0.1");
	ck_assert_int_eq(cfg.redis.nodes[0].port, 26379);
	ck_assert_str_eq(cfg.redis.nodes[2].host, "s3");
	ck_assert_int_eq(cfg.redis.nodes[2].port, 26379);
	ck_assert_str_eq(cfg.redis.master_name, "sums");
	ck_assert(cfg.redis.sentinel_has_password);
	ck_assert_str_eq(cfg.redis.sentinel_password, "sentinelpw");
	ck_assert_str_eq(cfg.redis.password, "masterpw");
	ck_assert_int_eq(cfg.redis.db, 3);
	ck_assert_int_eq(cfg.redis_min_replicas, 1);
	ck_assert_int_eq(cfg.redis_wait_timeout_ms, 500);
	config_free(&cfg);
}
END_TEST

START_TEST(test_config_refuses_bad_combinations)
{
	struct config cfg;
	char err[256] = "";
	static const char *const unix_and_sentinels[] = {
		"REDIS_URL=unix:///run/redis.sock", "REDIS_SENTINELS=h:1", NULL };
	static const char *const cluster_and_sentinels[] = {
		"REDIS_URL=redis+cluster://h:1", "REDIS_SENTINELS=h:1", NULL };
	static const char *const wait_too_long[] = {
		"ABACUS_REDIS_MIN_REPLICAS=1", "ABACUS_REDIS_TIMEOUT_MS=300",
		"ABACUS_REDIS_WAIT_TIMEOUT_MS=300", NULL };
	static const char *const name_with_space[] = {
		"REDIS_SENTINELS=h:1", "ABACUS_REDIS_MASTER_NAME=a b", NULL };
	static const char *const replicas_without_keys[] = {
		"ABACUS_REDIS_MIN_REPLICAS=1", "ABACUS_IDEMPOTENCY_REQUIRED=false", NULL };

	set_env(unix_and_sentinels);
	ck_assert(!config_load(&cfg, lookup, err, sizeof(err)));
	ck_assert_msg(strstr(err, "REDIS_SENTINELS") != NULL, "%s", err);
	set_env(cluster_and_sentinels);
	ck_assert(!config_load(&cfg, lookup, err, sizeof(err)));
	ck_assert_msg(strstr(err, "REDIS_SENTINELS") != NULL, "%s", err);
	set_env(wait_too_long);
	ck_assert(!config_load(&cfg, lookup, err, sizeof(err)));
	ck_assert_msg(strstr(err, "ABACUS_REDIS_WAIT_TIMEOUT_MS") != NULL, "%s", err);
	set_env(name_with_space);
	ck_assert(!config_load(&cfg, lookup, err, sizeof(err)));
	ck_assert_msg(strstr(err, "ABACUS_REDIS_MASTER_NAME") != NULL, "%s", err);
	set_env(replicas_without_keys);
	ck_assert(!config_load(&cfg, lookup, err, sizeof(err)));
	ck_assert_msg(strstr(err, "ABACUS_IDEMPOTENCY_REQUIRED=true") != NULL, "%s", err);
}
END_TEST

START_TEST(test_config_workers_limits)
{
	struct config cfg;
	char err[256];
	static const char *const one[] = { "ABACUS_WORKERS=1", NULL };
	static const char *const most[] = { "ABACUS_WORKERS=256", NULL };
	static const char *const empty[] = { "ABACUS_WORKERS=", NULL };

	set_env(one);
	ck_assert_msg(config_load(&cfg, lookup, err, sizeof(err)), "ABACUS_WORKERS=1: %s", err);
	ck_assert_int_eq(cfg.workers_configured, 1);
	config_free(&cfg);
	set_env(most);
	ck_assert_msg(config_load(&cfg, lookup, err, sizeof(err)), "ABACUS_WORKERS=256: %s", err);
	ck_assert_int_eq(cfg.workers_configured, CONFIG_WORKERS_MAX);
	config_free(&cfg);
	set_env(empty);
	ck_assert_msg(config_load(&cfg, lookup, err, sizeof(err)), "ABACUS_WORKERS=: %s", err);
	ck_assert_int_eq(cfg.workers_configured, 0);
	config_free(&cfg);
}
END_TEST

START_TEST(test_config_parse_long_limits)
{
	long v;

	ck_assert(config_parse_long("0", 0, 10, &v) && v == 0);
	ck_assert(config_parse_long("10", 0, 10, &v) && v == 10);
	ck_assert(!config_parse_long("11", 0, 10, &v));
	ck_assert(!config_parse_long("-0", -5, 10, &v));
	ck_assert(config_parse_long("-5", -5, 10, &v) && v == -5);
	ck_assert(!config_parse_long("007", 0, 10, &v));
	ck_assert(!config_parse_long("", 0, 10, &v));
	ck_assert(!config_parse_long("9223372036854775808", 0, __LONG_MAX__, &v));
	ck_assert(config_parse_long("9223372036854775807", 0, __LONG_MAX__, &v));
	ck_assert(!config_parse_long("+5", -5, 10, &v));
	ck_assert(!config_parse_long(" 5", -5, 10, &v));
	ck_assert(!config_parse_long("5 ", -5, 10, &v));
	ck_assert(!config_parse_long("-", -5, 10, &v));
	ck_assert(!config_parse_long("1e3", 0, 10000, &v));
	ck_assert(!config_parse_long(NULL, 0, 10, &v));
	v = 42;
	ck_assert(!config_parse_long("-6", -5, 10, &v) && v == 42);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_test(core, test_config_defaults);
	tcase_add_test(core, test_config_reads_every_setting);
	tcase_add_test(core, test_config_reads_keys_file);
	tcase_add_test(core, test_config_auth_can_be_disabled_with_keys);
	tcase_add_test(core, test_config_reads_sentinels);
	tcase_add_test(errors, test_config_refuses_bad_combinations);
	tcase_add_test(limits, test_config_parse_long_limits);
	tcase_add_test(limits, test_config_workers_limits);
	tcase_add_loop_test(errors, test_config_refuses_bad_value, 0, sizeof(bad) / sizeof(bad[0]));
	tcase_add_test(errors, test_config_refuses_secret_in_message);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(config_suite)
