#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "decimal.h"
#include "log.h"
#include "sha256.h"

#define KEYS_FILE_MAX ((size_t)1024 * 1024)

static bool fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static bool fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return false;
}

bool config_parse_long(const char *text, long min, long max, long *out)
{
	int64_t v;

	if (text == NULL ||
	    decimal_parse_int64(text, strlen(text), DECIMAL_REFUSE_MINUS_ZERO, &v) != DECIMAL_OK ||
	    v < min || v > max)
		return false;
	*out = (long)v;
	return true;
}

bool config_parse_bool(const char *text, bool *out)
{
	static const char *const yes[] = { "true", "1", "yes", "on" };
	static const char *const no[] = { "false", "0", "no", "off" };

	for (size_t i = 0; text != NULL && i < 4; i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

static bool key_is_valid(const char *key, size_t n)
{
	if (n == 0 || n > CONFIG_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (key[i] < 0x21 || key[i] > 0x7e || key[i] == ',')
			return false;
	return true;
}

static bool list_push(struct key_list *list, const char *key, size_t n)
{
	char **grown = realloc(list->keys, (list->count + 1) * sizeof(*grown));
	char *copy;

	if (grown == NULL)
		return false;
	list->keys = grown;
	copy = strndup(key, n);
	if (copy == NULL)
		return false;
	list->keys[list->count++] = copy;
	return true;
}

bool config_add_keys(struct key_list *list, const char *text, bool by_line, char *err, size_t errlen)
{
	const char sep = by_line ? '\n' : ',';
	size_t index = 0;

	for (const char *p = text; *p != '\0';) {
		const char *end = strchr(p, sep);
		const char *stop = end != NULL ? end : p + strlen(p);
		const char *a = p;
		const char *b = stop;

		while (a < b && isspace((unsigned char)*a))
			a++;
		while (b > a && isspace((unsigned char)b[-1]))
			b--;
		index++;
		if (a < b && !(by_line && *a == '#')) {
			if (!key_is_valid(a, (size_t)(b - a)))
				return fail(err, errlen,
				            "key #%zu: keys are 1..%d visible ASCII characters, no comma or space",
				            index, CONFIG_KEY_MAX);
			if (!list_push(list, a, (size_t)(b - a)))
				return fail(err, errlen, "out of memory");
		}
		p = end != NULL ? end + 1 : stop;
	}
	return true;
}

static void list_free(struct key_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		/* Keys are secrets: do not leave them in freed memory. */
		explicit_bzero(list->keys[i], strlen(list->keys[i]));
		free(list->keys[i]);
	}
	free(list->keys);
	list->keys = NULL;
	list->count = 0;
}

void config_free(struct config *cfg)
{
	list_free(&cfg->api_keys);
	list_free(&cfg->admin_keys);
	explicit_bzero(cfg->redis.password, sizeof(cfg->redis.password));
	explicit_bzero(cfg->redis.sentinel_password, sizeof(cfg->redis.sentinel_password));
}

/* Reads a whole (small) file into a NUL-terminated heap buffer. */
static char *read_small_file(const char *path, char *err, size_t errlen, const char *setting)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;

	if (f == NULL) {
		fail(err, errlen, "%s: cannot open %s: %s", setting, path, strerror(errno));
		return NULL;
	}
	buf = malloc(KEYS_FILE_MAX + 1);
	if (buf == NULL) {
		fclose(f);
		fail(err, errlen, "out of memory");
		return NULL;
	}
	n = fread(buf, 1, KEYS_FILE_MAX + 1, f);
	fclose(f);
	if (n > KEYS_FILE_MAX) {
		free(buf);
		fail(err, errlen, "%s: %s is larger than 1 MiB", setting, path);
		return NULL;
	}
	buf[n] = '\0';
	return buf;
}

static bool load_keys(struct key_list *list, config_lookup_fn lookup, const char *name,
                      char *err, size_t errlen)
{
	char file_name[64];
	char reason[160];
	const char *inline_keys = lookup(name);
	const char *path;

	if (inline_keys != NULL && !config_add_keys(list, inline_keys, false, reason, sizeof(reason)))
		return fail(err, errlen, "%s: %s", name, reason);

	snprintf(file_name, sizeof(file_name), "%s_FILE", name);
	path = lookup(file_name);
	if (path != NULL && *path != '\0') {
		char *text = read_small_file(path, err, errlen, file_name);
		bool ok;

		if (text == NULL)
			return false;
		ok = config_add_keys(list, text, true, reason, sizeof(reason));
		explicit_bzero(text, strlen(text));
		free(text);
		if (!ok)
			return fail(err, errlen, "%s: %s", file_name, reason);
	}
	return true;
}

/* A numeric setting: absent means the default; present must parse. */
static bool load_long(config_lookup_fn lookup, const char *name, long def, long min, long max,
                      long *out, char *err, size_t errlen)
{
	const char *text = lookup(name);

	if (text == NULL || *text == '\0') {
		*out = def;
		return true;
	}
	if (!config_parse_long(text, min, max, out))
		return fail(err, errlen, "%s: '%.40s' is not an integer in %ld..%ld", name, text, min, max);
	return true;
}

static bool load_bool(config_lookup_fn lookup, const char *name, bool def, bool *out,
                      char *err, size_t errlen)
{
	const char *text = lookup(name);

	if (text == NULL || *text == '\0') {
		*out = def;
		return true;
	}
	if (!config_parse_bool(text, out))
		return fail(err, errlen, "%s: '%.40s' is not true or false", name, text);
	return true;
}

/* True when s has min..max characters, each a letter, a digit or one of extra. */
static bool name_is_valid(const char *s, size_t min, size_t max, const char *extra)
{
	size_t n = strlen(s);

	if (n < min || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && strchr(extra, s[i]) == NULL)
			return false;
	return true;
}

/* REDIS_SENTINELS and the settings that go with it (sentinel mode). */
static bool load_sentinels(struct redis_target *t, config_lookup_fn lookup, char *err, size_t errlen)
{
	const char *sentinels = lookup("REDIS_SENTINELS");
	const char *name = lookup("ABACUS_REDIS_MASTER_NAME");
	const char *user = lookup("ABACUS_REDIS_SENTINEL_USERNAME");
	const char *password = lookup("ABACUS_REDIS_SENTINEL_PASSWORD");

	if (sentinels == NULL || *sentinels == '\0')
		return true;
	if (t->mode == REDIS_MODE_CLUSTER || t->transport != REDIS_TRANSPORT_TCP)
		return fail(err, errlen, "REDIS_SENTINELS: only with a redis:// REDIS_URL "
		                         "(its credentials and database apply to the master)");
	if (!redis_url_parse_sentinels(sentinels, t, err, errlen))
		return false;
	t->mode = REDIS_MODE_SENTINEL;
	if (name == NULL || *name == '\0')
		name = "abacus";
	if (strlen(name) >= sizeof(t->master_name) || strpbrk(name, " \t\r\n") != NULL)
		return fail(err, errlen, "ABACUS_REDIS_MASTER_NAME: 1..%zu characters, no spaces",
		            sizeof(t->master_name) - 1);
	snprintf(t->master_name, sizeof(t->master_name), "%s", name);
	if (user != NULL && *user != '\0') {
		if (strlen(user) >= sizeof(t->sentinel_user))
			return fail(err, errlen, "ABACUS_REDIS_SENTINEL_USERNAME: too long");
		snprintf(t->sentinel_user, sizeof(t->sentinel_user), "%s", user);
	}
	if (password != NULL && *password != '\0') {
		if (strlen(password) >= sizeof(t->sentinel_password))
			return fail(err, errlen, "ABACUS_REDIS_SENTINEL_PASSWORD: too long");
		snprintf(t->sentinel_password, sizeof(t->sentinel_password), "%s", password);
		t->sentinel_has_password = true;
	}
	return true;
}

/* ABACUS_REDIS_MIN_REPLICAS and the WAIT timeout that goes with it. */
static bool load_replication(struct config *cfg, config_lookup_fn lookup, char *err, size_t errlen)
{
	long replicas = 0, wait_ms = 0;

	long default_wait_ms = cfg->redis_timeout_ms / 2 > 0 ? cfg->redis_timeout_ms / 2 : 1;

	if (!load_long(lookup, "ABACUS_REDIS_MIN_REPLICAS", 0, 0, 16, &replicas, err, errlen) ||
	    !load_long(lookup, "ABACUS_REDIS_WAIT_TIMEOUT_MS", default_wait_ms, 1, 60000,
	               &wait_ms, err, errlen))
		return false;
	/* WAIT must give up before the socket does, or a shortfall reads as a dead connection. */
	if (replicas > 0 && wait_ms >= cfg->redis_timeout_ms)
		return fail(err, errlen, "ABACUS_REDIS_WAIT_TIMEOUT_MS: must be below "
		                         "ABACUS_REDIS_TIMEOUT_MS (%d)", cfg->redis_timeout_ms);
	cfg->redis_min_replicas = (int)replicas;
	cfg->redis_wait_timeout_ms = (int)wait_ms;
	return true;
}

static bool load_redis(struct config *cfg, config_lookup_fn lookup, char *err, size_t errlen)
{
	const char *url = lookup("REDIS_URL");
	const char *prefix = lookup("ABACUS_REDIS_PREFIX");
	long connect_ms = 0, command_ms = 0;

	if (url == NULL || *url == '\0')
		url = "redis://127.0.0.1:6379/0";
	if (!redis_url_parse(url, &cfg->redis, err, errlen))
		return false;
	if (!load_long(lookup, "ABACUS_REDIS_CONNECT_TIMEOUT_MS", 500, 1, 60000, &connect_ms, err, errlen) ||
	    !load_long(lookup, "ABACUS_REDIS_TIMEOUT_MS", 1000, 1, 60000, &command_ms, err, errlen))
		return false;
	cfg->redis_connect_timeout_ms = (int)connect_ms;
	cfg->redis_timeout_ms = (int)command_ms;
	if (!load_sentinels(&cfg->redis, lookup, err, errlen) ||
	    !load_replication(cfg, lookup, err, errlen))
		return false;

	if (prefix == NULL || *prefix == '\0')
		prefix = "abacus";
	if (!name_is_valid(prefix, 1, CONFIG_PREFIX_MAX, "_.:-"))
		return fail(err, errlen,
		            "ABACUS_REDIS_PREFIX: 1..%d characters of A-Z a-z 0-9 _ . : - (no braces)",
		            CONFIG_PREFIX_MAX);
	snprintf(cfg->redis_prefix, sizeof(cfg->redis_prefix), "%s", prefix);
	return true;
}

static bool load_auth(struct config *cfg, config_lookup_fn lookup, char *err, size_t errlen)
{
	const char *enabled = lookup("ABACUS_AUTH_ENABLED");
	bool explicit_value = false;

	if (!load_keys(&cfg->api_keys, lookup, "ABACUS_API_KEYS", err, errlen) ||
	    !load_keys(&cfg->admin_keys, lookup, "ABACUS_ADMIN_API_KEYS", err, errlen))
		return false;
	if (enabled != NULL && *enabled != '\0' && !config_parse_bool(enabled, &explicit_value))
		return fail(err, errlen, "ABACUS_AUTH_ENABLED: '%.40s' is not true or false", enabled);

	/* SPEC 4: on when any key is configured, unless explicitly disabled. */
	if (enabled != NULL && *enabled != '\0')
		cfg->auth_enabled = explicit_value;
	else
		cfg->auth_enabled = cfg->api_keys.count + cfg->admin_keys.count > 0;
	if (cfg->auth_enabled && cfg->api_keys.count + cfg->admin_keys.count == 0)
		return fail(err, errlen,
		            "ABACUS_AUTH_ENABLED=true but no key in ABACUS_API_KEYS or ABACUS_API_KEYS_FILE");
	return true;
}

/*
 * ABACUS_RATE_LIMIT_SCOPE: caller (one budget per caller over every sum) or
 * sum (one per caller and sum: in a Redis Cluster it saves a named sum's
 * request a second round trip; docs/CONFIGURATION.md).
 */
static bool load_rate_limit_scope(struct config *cfg, config_lookup_fn lookup, char *err, size_t errlen)
{
	const char *scope = lookup("ABACUS_RATE_LIMIT_SCOPE");

	if (scope == NULL || *scope == '\0' || strcmp(scope, "caller") == 0)
		cfg->rate_limit_per_sum = false;
	else if (strcmp(scope, "sum") == 0)
		cfg->rate_limit_per_sum = true;
	else
		return fail(err, errlen, "ABACUS_RATE_LIMIT_SCOPE: '%.40s' is not caller or sum", scope);
	return true;
}

static bool load_limits(struct config *cfg, config_lookup_fn lookup, char *err, size_t errlen)
{
	return load_rate_limit_scope(cfg, lookup, err, errlen) &&
	       load_long(lookup, "ABACUS_MAX_SUMS", 10000, 1, 100000000, &cfg->max_sums, err, errlen) &&
	       load_bool(lookup, "ABACUS_IDEMPOTENCY_REQUIRED", true, &cfg->idempotency_required, err, errlen) &&
	       load_long(lookup, "ABACUS_IDEMPOTENCY_TTL_SECONDS", 86400, 1, 31536000,
	                 &cfg->idempotency_ttl_seconds, err, errlen) &&
	       load_long(lookup, "ABACUS_MAX_BODY_BYTES", 4096, 16, 1048576, &cfg->max_body_bytes, err, errlen) &&
	       load_long(lookup, "ABACUS_LEDGER_RETENTION_SECONDS", CONFIG_LEDGER_RETENTION_DEFAULT, 0, 31536000,
	                 &cfg->ledger_retention_seconds, err, errlen) &&
	       load_bool(lookup, "ABACUS_RATE_LIMIT_ENABLED", true, &cfg->rate_limit_enabled, err, errlen) &&
	       load_long(lookup, "ABACUS_RATE_LIMIT_REQUESTS", 600, 1, 1000000000,
	                 &cfg->rate_limit_requests, err, errlen) &&
	       load_long(lookup, "ABACUS_RATE_LIMIT_WINDOW_SECONDS", 60, 1, 86400,
	                 &cfg->rate_limit_window_seconds, err, errlen) &&
	       load_long(lookup, "ABACUS_RATE_LIMIT_IPV6_PREFIX", 64, 1, 128,
	                 &cfg->rate_limit_ipv6_prefix, err, errlen) &&
	       cidr_parse_list(lookup("ABACUS_TRUSTED_PROXIES"), cfg->trusted_proxies, CONFIG_PROXIES_MAX,
	                       &cfg->trusted_proxy_count, "ABACUS_TRUSTED_PROXIES", err, errlen);
}

static bool load_metrics(struct config *cfg, config_lookup_fn lookup, char *err, size_t errlen)
{
	const char *name = lookup("ABACUS_METRICS_SHM");

	if (name == NULL || *name == '\0')
		name = "/abacus-metrics";
	/* A POSIX shared-memory name: "/" then 1-100 of A-Z a-z 0-9 _ . - */
	if (name[0] != '/' || !name_is_valid(name + 1, 1, 100, "_.-"))
		return fail(err, errlen,
		            "ABACUS_METRICS_SHM: '/' then 1..100 of A-Z a-z 0-9 _ . - (got '%.40s')", name);
	snprintf(cfg->metrics_shm, sizeof(cfg->metrics_shm), "%s", name);
	/*
	 * ABACUS_WORKERS is the front end's setting (lighttpd's max-procs,
	 * multiwatch's -f); the workers inherit it and only report it, as
	 * abacus_workers_configured, against which the alert compares
	 * abacus_workers.  Unset (a front end of one's own that does not pass it
	 * on): 0, and the gauge is not rendered.
	 */
	return load_bool(lookup, "ABACUS_METRICS_AUTH", false, &cfg->metrics_auth, err, errlen) &&
	       load_long(lookup, "ABACUS_WORKERS", 0, 1, CONFIG_WORKERS_MAX, &cfg->workers_configured,
	                 err, errlen);
}

bool config_load(struct config *cfg, config_lookup_fn lookup, char *err, size_t errlen)
{
	const char *level = lookup("ABACUS_LOG_LEVEL");

	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = LOG_LEVEL_INFO;
	if (level != NULL && *level != '\0' && !log_level_parse(level, &cfg->log_level)) {
		fail(err, errlen, "ABACUS_LOG_LEVEL: '%.40s' is not debug, info, warn or error", level);
		goto err;
	}
	if (!load_redis(cfg, lookup, err, errlen) || !load_auth(cfg, lookup, err, errlen) ||
	    !load_limits(cfg, lookup, err, errlen) || !load_metrics(cfg, lookup, err, errlen))
		goto err;
	/*
	 * A change that reached too few replicas is answered 503 not-replicated
	 * although it was applied: only a keyed addition can be retried safely
	 * after that (it replays), so replication needs the keys.
	 */
	if (cfg->redis_min_replicas > 0 && !cfg->idempotency_required) {
		fail(err, errlen, "ABACUS_REDIS_MIN_REPLICAS>0 needs ABACUS_IDEMPOTENCY_REQUIRED=true "
		     "(a retry after not-replicated would add twice)");
		goto err;
	}
	return true;
err:
	config_free(cfg);
	return false;
}

/* Renders a key list as a JSON array of key ids: ["1a2b3c4d", ...]. */
static void key_ids_json(const struct key_list *list, char *out, size_t cap)
{
	size_t len = 0;

	len += (size_t)snprintf(out, cap, "[");
	for (size_t i = 0; i < list->count && len + 12 < cap; i++) {
		char id[SHA256_KEY_ID_LEN + 1];

		sha256_key_id(list->keys[i], strlen(list->keys[i]), id);
		len += (size_t)snprintf(out + len, cap - len, "%s\"%s\"", i ? "," : "", id);
	}
	snprintf(out + len, cap - len, "]");
}

void config_log_effective(const struct config *cfg)
{
	struct log_line l;
	char ids[512];
	char url[700];
	const struct redis_target *r = &cfg->redis;

	if (!log_begin(&l, LOG_LEVEL_INFO, "config", NULL))
		return;
	redis_url_format_masked(r, url, sizeof(url));
	log_str(&l, "redis_url", url);
	log_str(&l, "redis_mode", r->mode == REDIS_MODE_SENTINEL ? "sentinel"
	                          : r->mode == REDIS_MODE_CLUSTER ? "cluster" : "single");
	if (r->mode != REDIS_MODE_SINGLE)
		log_int(&l, "redis_nodes", (long long)r->node_count);
	if (r->mode == REDIS_MODE_SENTINEL) {
		log_str(&l, "redis_master_name", r->master_name);
		log_bool(&l, "redis_sentinel_auth", r->sentinel_has_password);
	}
	log_int(&l, "redis_min_replicas", cfg->redis_min_replicas);
	if (cfg->redis_min_replicas > 0)
		log_int(&l, "redis_wait_timeout_ms", cfg->redis_wait_timeout_ms);
	log_int(&l, "redis_connect_timeout_ms", cfg->redis_connect_timeout_ms);
	log_int(&l, "redis_timeout_ms", cfg->redis_timeout_ms);
	log_str(&l, "redis_prefix", cfg->redis_prefix);
	log_bool(&l, "auth_enabled", cfg->auth_enabled);
	key_ids_json(&cfg->api_keys, ids, sizeof(ids));
	log_raw(&l, "api_key_ids", ids);
	key_ids_json(&cfg->admin_keys, ids, sizeof(ids));
	log_raw(&l, "admin_key_ids", ids);
	log_bool(&l, "idempotency_required", cfg->idempotency_required);
	log_int(&l, "idempotency_ttl_seconds", cfg->idempotency_ttl_seconds);
	log_int(&l, "max_body_bytes", cfg->max_body_bytes);
	log_bool(&l, "rate_limit_enabled", cfg->rate_limit_enabled);
	log_int(&l, "rate_limit_requests", cfg->rate_limit_requests);
	log_int(&l, "rate_limit_window_seconds", cfg->rate_limit_window_seconds);
	log_int(&l, "rate_limit_ipv6_prefix", cfg->rate_limit_ipv6_prefix);
	log_int(&l, "ledger_retention_seconds", cfg->ledger_retention_seconds);
	log_str(&l, "rate_limit_scope", cfg->rate_limit_per_sum ? "sum" : "caller");
	log_int(&l, "max_sums", cfg->max_sums);
	log_int(&l, "trusted_proxies", (long long)cfg->trusted_proxy_count);
	log_str(&l, "metrics_shm", cfg->metrics_shm);
	log_bool(&l, "metrics_auth", cfg->metrics_auth);
	if (cfg->workers_configured > 0)
		log_int(&l, "workers_configured", cfg->workers_configured);
	log_str(&l, "log_level", log_level_name(cfg->log_level));
	log_end(&l);
}
