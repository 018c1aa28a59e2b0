#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "log.h"
#include "metrics.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define KEY_MAX 512

/*
 * ---------------------------------------------------------------------------
 * The scripts.  `#!lua` (Redis 7) makes Redis refuse a writing script up front
 * when it is out of memory (noeviction) or a read-only replica, so a refused
 * script has written nothing.
 *
 * The limiter (SPEC 5) is a sliding-window log: a sorted set per caller of
 * the times (microseconds of Redis's clock, TIME, so front ends with skewed
 * clocks agree) of the requests admitted in the last window.  A request is
 * admitted while fewer than `max` lie in (now - window, now]: never more
 * than the limit in any window-long interval, whatever the alignment, which a
 * fixed window (up to twice the limit across an edge) and GCRA (a full burst
 * plus the steady rate) cannot promise.  A refused request writes nothing.
 * The limiter's writes are not propagated (redis.set_repl(REPL_NONE)): they
 * never reach the AOF or replicas, so a GET costs no fsync, and a Redis
 * restart or failover gives every caller a fresh budget.
 * Returns: admitted, remaining, microseconds until the budget is full again,
 * microseconds until one request is admitted.
 * ---------------------------------------------------------------------------
 */
#define SCRIPT_PRELUDE \
	"#!lua\n" \
	"local function limit(key, max, window_us)\n" \
	"  if max <= 0 then return true, -1, 0, 0 end\n" \
	"  local t = redis.call('TIME')\n" \
	"  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n" \
	"  redis.set_repl(redis.REPL_NONE)\n" \
	"  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', now - window_us))\n" \
	"  local count = redis.call('ZCARD', key)\n" \
	"  if count >= max then\n" \
	"    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')\n" \
	"    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')\n" \
	"    redis.set_repl(redis.REPL_ALL)\n" \
	"    return false, 0, tonumber(newest[2]) + window_us - now, tonumber(oldest[2]) + window_us - now\n" \
	"  end\n" \
	"  local stamp = string.format('%.0f', now)\n" \
	"  redis.call('ZADD', key, stamp, stamp .. ':' .. count)\n" \
	"  redis.call('PEXPIRE', key, math.ceil(window_us / 1000))\n" \
	"  redis.set_repl(redis.REPL_ALL)\n" \
	"  return true, max - count - 1, window_us, 0\n" \
	"end\n"

/* KEYS: sum, rl.  ARGV: limit, window_us. */
static const char script_get[] = SCRIPT_PRELUDE
	"local ok, left, reset, retry = limit(KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]))\n"
	"if not ok then return {'limited', '', left, reset, retry} end\n"
	"local v = redis.pcall('GET', KEYS[1])\n"
	"if type(v) == 'table' then return {'notint', '', left, reset, 0} end\n"
	"return {'ok', v or '0', left, reset, 0}\n";

/*
 * KEYS: sum, idem, rl.  ARGV: delta, ttl, limit, window_us, use_idem.
 * The record is "<delta> <sum after>"; a replay returns that sum.
 */
static const char script_add[] = SCRIPT_PRELUDE
	"local ok, left, reset, retry = limit(KEYS[3], tonumber(ARGV[3]), tonumber(ARGV[4]))\n"
	"if not ok then return {'limited', '', left, reset, retry} end\n"
	"local use_idem = ARGV[5] == '1'\n"
	"if use_idem then\n"
	"  local rec = redis.call('GET', KEYS[2])\n"
	"  if rec then\n"
	"    local sp = string.find(rec, ' ', 1, true)\n"
	"    if sp and string.sub(rec, 1, sp - 1) == ARGV[1] then\n"
	"      return {'replay', string.sub(rec, sp + 1), left, reset, 0}\n"
	"    end\n"
	"    return {'conflict', '', left, reset, 0}\n"
	"  end\n"
	"end\n"
	"local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])\n"
	"if type(r) == 'table' and r.err then\n"
	"  if string.find(r.err, 'overflow', 1, true) then return {'overflow', '', left, reset, 0} end\n"
	"  if string.find(r.err, 'not an integer', 1, true) or string.find(r.err, 'WRONGTYPE', 1, true) then\n"
	"    return {'notint', '', left, reset, 0}\n"
	"  end\n"
	"  return r\n"
	"end\n"
	"local s = redis.call('GET', KEYS[1])\n"
	"if use_idem then redis.call('SET', KEYS[2], ARGV[1] .. ' ' .. s, 'EX', ARGV[2]) end\n"
	"return {'ok', s, left, reset, 0}\n";

/* KEYS: sum, rl.  ARGV: value, limit, window_us. */
static const char script_set[] = SCRIPT_PRELUDE
	"local ok, left, reset, retry = limit(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]))\n"
	"if not ok then return {'limited', '', left, reset, retry} end\n"
	"redis.call('SET', KEYS[1], ARGV[1])\n"
	"return {'ok', ARGV[1], left, reset, 0}\n";

enum script_id { SCRIPT_GET, SCRIPT_ADD, SCRIPT_SET, SCRIPT_COUNT };

static const enum metrics_redis_op script_ops[SCRIPT_COUNT] = {
	[SCRIPT_GET] = METRICS_OP_GET,
	[SCRIPT_ADD] = METRICS_OP_ADD,
	[SCRIPT_SET] = METRICS_OP_SET,
};

static const char *const scripts[SCRIPT_COUNT] = {
	[SCRIPT_GET] = script_get,
	[SCRIPT_ADD] = script_add,
	[SCRIPT_SET] = script_set,
};

struct store {
	struct store_options opt;
	char prefix[CONFIG_PREFIX_MAX + 1];
	char sum_key[KEY_MAX];          /* {prefix}:sum */
	redisContext *ctx;              /* NULL while disconnected */
	char sha[SCRIPT_COUNT][41];     /* SCRIPT LOAD results of this connection */
	int timeout_ms;                 /* socket timeout currently set on ctx */
	uint64_t next_attempt_ms;       /* no reconnect before this (backoff) */
	int backoff_ms;                 /* next backoff step */
	bool policy_checked;            /* maxmemory-policy looked at once */
	unsigned long connects;         /* successful connections so far */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Counts one command (or connection attempt) started at `started` (now_us()). */
static void count_op(enum metrics_redis_op op, const redisReply *reply, uint64_t started)
{
	enum metrics_redis_result result = reply == NULL ? METRICS_RESULT_UNAVAILABLE
	                                 : reply->type == REDIS_REPLY_ERROR ? METRICS_RESULT_ERROR
	                                 : METRICS_RESULT_OK;

	metrics_redis(op, result, now_us() - started);
}

static struct timeval ms_to_tv(int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

	return tv;
}

const char *store_strerror(enum store_status status)
{
	static const char *const names[STORE_STATUS_COUNT] = {
		[STORE_OK] = "ok",
		[STORE_REPLAYED] = "replayed",
		[STORE_KEY_CONFLICT] = "conflict",
		[STORE_OVERFLOW] = "overflow",
		[STORE_NOT_INTEGER] = "not_integer",
		[STORE_RATE_LIMITED] = "rate_limited",
		[STORE_UNAVAILABLE] = "unavailable",
	};

	return status < STORE_STATUS_COUNT ? names[status] : "?";
}

bool store_parse_int64(const char *s, size_t len, int64_t *out)
{
	bool negative = len > 0 && s[0] == '-';
	uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	uint64_t v = 0;
	size_t i = negative;

	if (i == len || (s[i] == '0' && len - i > 1) || (negative && s[i] == '0'))
		return false;
	for (; i < len; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (d > 9 || v > (limit - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = negative ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
	return true;
}

void store_options_from_config(struct store_options *opt, const struct config *cfg)
{
	memset(opt, 0, sizeof(*opt));
	opt->target = cfg->redis;
	opt->connect_timeout_ms = cfg->redis_connect_timeout_ms;
	opt->command_timeout_ms = cfg->redis_timeout_ms;
	opt->prefix = cfg->redis_prefix;
	opt->idempotency_ttl_seconds = cfg->idempotency_ttl_seconds;
	opt->rate_limit_requests = cfg->rate_limit_enabled ? cfg->rate_limit_requests : 0;
	opt->rate_limit_window_seconds = cfg->rate_limit_window_seconds;
}

struct store *store_new(const struct store_options *opt)
{
	struct store *store = calloc(1, sizeof(*store));

	if (store == NULL)
		return NULL;
	store->opt = *opt;
	snprintf(store->prefix, sizeof(store->prefix), "%s", opt->prefix);
	store->opt.prefix = store->prefix;
	snprintf(store->sum_key, sizeof(store->sum_key), "{%s}:sum", store->prefix);
	return store;
}

void store_free(struct store *store)
{
	if (store == NULL)
		return;
	if (store->ctx != NULL)
		redisFree(store->ctx);
	explicit_bzero(store->opt.target.password, sizeof(store->opt.target.password));
	free(store);
}

unsigned long store_reconnects(const struct store *store)
{
	return store->connects > 0 ? store->connects - 1 : 0;
}

static void log_redis_error(const char *what, const char *detail)
{
	struct log_line l;

	if (log_begin(&l, LOG_LEVEL_ERROR, "redis_error", NULL)) {
		log_str(&l, "operation", what);
		log_str(&l, "error", detail);
		log_end(&l);
	}
}

/* Drops a broken connection and schedules the next attempt. */
static void disconnect(struct store *store, const char *why)
{
	if (store->ctx != NULL) {
		log_redis_error("connection", why);
		redisFree(store->ctx);
		store->ctx = NULL;
	}
	store->next_attempt_ms = now_ms() + (uint64_t)store->backoff_ms;
	store->backoff_ms = store->backoff_ms == 0 ? BACKOFF_MIN_MS
	                  : store->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
	                  : store->backoff_ms * 2;
}

/* Sets the socket timeout to the time left before deadline (capped). */
static bool set_timeout(struct store *store, uint64_t deadline)
{
	uint64_t now = now_ms();
	int ms = store->opt.command_timeout_ms;

	if (now >= deadline)
		return false;
	if (deadline - now < (uint64_t)ms)
		ms = (int)(deadline - now);
	if (ms != store->timeout_ms) {
		if (redisSetTimeout(store->ctx, ms_to_tv(ms)) != REDIS_OK)
			return false;
		store->timeout_ms = ms;
	}
	return true;
}

static void check_eviction_policy(const redisReply *reply)
{
	const char *policy;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
	    reply->element[1]->type != REDIS_REPLY_STRING)
		return;
	policy = reply->element[1]->str;
	if (strcmp(policy, "noeviction") != 0) {
		struct log_line l;

		if (log_begin(&l, LOG_LEVEL_WARN, "redis_eviction_policy", NULL)) {
			log_str(&l, "maxmemory_policy", policy);
			log_str(&l, "message", "Redis may evict the sum or idempotency records: "
			                       "set maxmemory-policy noeviction");
			log_end(&l);
		}
	}
}

/*
 * Sends AUTH, SELECT, the SCRIPT LOADs (and once per process CONFIG GET
 * maxmemory-policy) as one pipeline, and checks every reply.
 */
static bool setup_connection(struct store *store)
{
	const struct redis_target *t = &store->opt.target;
	redisContext *c = store->ctx;
	int sent = 0;
	bool ok = true;
	char db[16];

	if (t->has_password) {
		if (t->user[0] != '\0')
			redisAppendCommand(c, "AUTH %s %s", t->user, t->password);
		else
			redisAppendCommand(c, "AUTH %s", t->password);
		sent++;
	}
	snprintf(db, sizeof(db), "%d", t->db);
	redisAppendCommand(c, "SELECT %s", db);
	sent++;
	for (int i = 0; i < SCRIPT_COUNT; i++, sent++)
		redisAppendCommand(c, "SCRIPT LOAD %s", scripts[i]);
	if (!store->policy_checked) {
		redisAppendCommand(c, "CONFIG GET maxmemory-policy");
		sent++;
	}

	for (int i = 0; i < sent; i++) {
		redisReply *reply = NULL;
		int script = i - (t->has_password ? 2 : 1);

		if (redisGetReply(c, (void **)&reply) != REDIS_OK || reply == NULL) {
			log_redis_error("connect", c->errstr);
			return false;
		}
		if (script >= SCRIPT_COUNT) {
			check_eviction_policy(reply);
			store->policy_checked = true;
		} else if (reply->type == REDIS_REPLY_ERROR) {
			log_redis_error(script < 0 ? "auth/select" : "script_load", reply->str);
			ok = false;
		} else if (script >= 0) {
			snprintf(store->sha[script], sizeof(store->sha[script]), "%s",
			         reply->type == REDIS_REPLY_STRING ? reply->str : "");
		}
		freeReplyObject(reply);
	}
	return ok;
}

/* Makes sure there is a ready connection, within deadline.  False: unavailable. */
static bool ensure_connected(struct store *store, uint64_t deadline)
{
	const struct redis_target *t = &store->opt.target;
	struct timeval tv;
	uint64_t started, connect_started;
	int connect_ms = store->opt.connect_timeout_ms;

	if (store->ctx != NULL)
		return true;
	started = now_ms();
	if (started < store->next_attempt_ms || started >= deadline)
		return false;
	if (deadline - started < (uint64_t)connect_ms)
		connect_ms = (int)(deadline - started);
	tv = ms_to_tv(connect_ms);

	connect_started = now_us();
	if (t->transport == REDIS_TRANSPORT_UNIX)
		store->ctx = redisConnectUnixWithTimeout(t->path, tv);
	else
		store->ctx = redisConnectWithTimeout(t->host, t->port, tv);
	if (store->ctx == NULL || store->ctx->err) {
		log_redis_error("connect", store->ctx != NULL ? store->ctx->errstr : "out of memory");
		if (store->ctx != NULL)
			redisFree(store->ctx);
		store->ctx = NULL;
		metrics_redis(METRICS_OP_CONNECT, METRICS_RESULT_UNAVAILABLE, now_us() - connect_started);
		disconnect(store, "connect failed");
		return false;
	}
	if (t->transport == REDIS_TRANSPORT_TCP)
		redisEnableKeepAlive(store->ctx);
	store->timeout_ms = -1;
	if (!set_timeout(store, deadline) || !setup_connection(store)) {
		metrics_redis(METRICS_OP_CONNECT, METRICS_RESULT_ERROR, now_us() - connect_started);
		disconnect(store, "connection setup failed");
		return false;
	}
	metrics_redis(METRICS_OP_CONNECT, METRICS_RESULT_OK, now_us() - connect_started);
	store->connects++;
	store->backoff_ms = 0;
	if (store->connects > 1) {
		struct log_line l;

		metrics_inc(METRICS_REDIS_RECONNECTS);
		if (log_begin(&l, LOG_LEVEL_INFO, "redis_reconnected", NULL)) {
			log_int(&l, "reconnects", (long long)store->connects - 1);
			log_end(&l);
		}
	}
	return true;
}

bool store_connect(struct store *store)
{
	return ensure_connected(store, now_ms() + (uint64_t)store->opt.connect_timeout_ms +
	                                   (uint64_t)store->opt.command_timeout_ms);
}

/*
 * Runs one script: EVALSHA, reloading once on NOSCRIPT.  If a connection that
 * was already open turns out to be dead (Redis restarted), reconnects and
 * retries once when retry_safe.  Returns the reply (caller frees) or NULL.
 */
static redisReply *run_script(struct store *store, enum script_id id, int nkeys, int argc,
                              const char **argv, size_t *argvlen, bool retry_safe)
{
	uint64_t deadline = now_ms() + (uint64_t)store->opt.connect_timeout_ms +
	                    (uint64_t)store->opt.command_timeout_ms;
	static const char *const digits[] = { "0", "1", "2", "3" };
	bool reloaded = false;

	argv[0] = "EVALSHA";
	argvlen[0] = 7;
	argv[2] = digits[nkeys];
	argvlen[2] = 1;
	for (int attempt = 0; attempt < 3; attempt++) {
		bool was_open = store->ctx != NULL;
		redisReply *reply;
		uint64_t started;

		if (!ensure_connected(store, deadline) || !set_timeout(store, deadline))
			return NULL;
		argv[1] = store->sha[id];
		argvlen[1] = strlen(store->sha[id]);
		errno = 0;
		started = now_us();
		reply = redisCommandArgv(store->ctx, argc, argv, argvlen);
		count_op(script_ops[id], reply, started);
		if (reply == NULL) {
			int err = store->ctx->err;
			int saved_errno = errno;

			disconnect(store, store->ctx->errstr);
			/*
			 * A socket that went stale while idle (Redis restarted) fails with
			 * EOF or a reset: reconnect and retry once if a repeat is harmless.
			 * A timeout (EAGAIN) is never retried: the deadline is spent.
			 */
			if (was_open && retry_safe && (err == REDIS_ERR_EOF || err == REDIS_ERR_IO) &&
			    saved_errno != EAGAIN && saved_errno != EWOULDBLOCK) {
				store->next_attempt_ms = 0;
				retry_safe = false;
				continue;
			}
			return NULL;
		}
		if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0 &&
		    !reloaded) {
			redisReply *load;

			started = now_us();
			load = redisCommand(store->ctx, "SCRIPT LOAD %s", scripts[id]);
			count_op(METRICS_OP_SCRIPT_LOAD, load, started);
			freeReplyObject(reply);
			reloaded = true;
			if (load == NULL) {
				disconnect(store, store->ctx->errstr);
				return NULL;
			}
			if (load->type == REDIS_REPLY_STRING)
				snprintf(store->sha[id], sizeof(store->sha[id]), "%s", load->str);
			freeReplyObject(load);
			continue;
		}
		return reply;
	}
	return NULL;
}

/* Decodes {status, value, left, reset_us, retry_us} into res. */
static enum store_status decode_reply(const redisReply *reply, struct store_result *res,
                                      const char *op)
{
	static const struct { const char *name; enum store_status status; } table[] = {
		{ "ok", STORE_OK }, { "replay", STORE_REPLAYED }, { "conflict", STORE_KEY_CONFLICT },
		{ "overflow", STORE_OVERFLOW }, { "notint", STORE_NOT_INTEGER },
		{ "limited", STORE_RATE_LIMITED },
	};
	const redisReply *const *e;
	enum store_status status = STORE_UNAVAILABLE;

	if (reply->type == REDIS_REPLY_ERROR) {
		log_redis_error(op, reply->str);
		return STORE_UNAVAILABLE;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 5) {
		log_redis_error(op, "unexpected reply shape");
		return STORE_UNAVAILABLE;
	}
	e = (const redisReply *const *)reply->element;
	if (e[0]->type != REDIS_REPLY_STRING || e[1]->type != REDIS_REPLY_STRING ||
	    e[2]->type != REDIS_REPLY_INTEGER || e[3]->type != REDIS_REPLY_INTEGER ||
	    e[4]->type != REDIS_REPLY_INTEGER) {
		log_redis_error(op, "unexpected reply types");
		return STORE_UNAVAILABLE;
	}
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strcmp(e[0]->str, table[i].name) == 0)
			status = table[i].status;

	res->limited = e[2]->integer >= 0;
	res->remaining = res->limited ? (long)e[2]->integer : 0;
	res->reset_seconds = (long)((e[3]->integer + 999999) / 1000000);
	res->retry_after_seconds = (long)((e[4]->integer + 999999) / 1000000);
	if (status == STORE_RATE_LIMITED && res->retry_after_seconds < 1)
		res->retry_after_seconds = 1;
	if ((status == STORE_OK || status == STORE_REPLAYED) &&
	    !store_parse_int64(e[1]->str, e[1]->len, &res->sum))
		status = STORE_NOT_INTEGER;
	return status;
}

static enum store_status finish(redisReply *reply, struct store_result *res, const char *op)
{
	enum store_status status;

	if (reply == NULL)
		return STORE_UNAVAILABLE;
	status = decode_reply(reply, res, op);
	freeReplyObject(reply);
	return status;
}

/* Formats the limiter arguments: limit and window in microseconds. */
static void limit_args(const struct store *store, char limit[24], char window_us[24])
{
	snprintf(limit, 24, "%ld", store->opt.rate_limit_requests);
	snprintf(window_us, 24, "%lld", (long long)store->opt.rate_limit_window_seconds * 1000000LL);
}

static size_t limit_key(const struct store *store, const struct caller *caller, char *out)
{
	int n = snprintf(out, KEY_MAX, "{%s}:rl:%s", store->prefix,
	                 caller->limit_id[0] != '\0' ? caller->limit_id : "-");

	return n > 0 && n < KEY_MAX ? (size_t)n : KEY_MAX - 1;
}

enum store_status store_get(struct store *store, const struct caller *caller,
                            struct store_result *res)
{
	char rl[KEY_MAX], limit[24], window[24];
	const char *argv[7];
	size_t argvlen[7];

	memset(res, 0, sizeof(*res));
	limit_args(store, limit, window);
	argv[3] = store->sum_key;
	argvlen[3] = strlen(store->sum_key);
	argv[4] = rl;
	argvlen[4] = limit_key(store, caller, rl);
	argv[5] = limit;
	argvlen[5] = strlen(limit);
	argv[6] = window;
	argvlen[6] = strlen(window);
	return finish(run_script(store, SCRIPT_GET, 2, 7, argv, argvlen, true), res, "get");
}

enum store_status store_add(struct store *store, const struct caller *caller,
                            const struct idem_key *key, int64_t delta, struct store_result *res)
{
	char rl[KEY_MAX], idem[KEY_MAX], limit[24], window[24], d[24], ttl[24];
	const char *argv[11];
	size_t argvlen[11];
	int n;

	memset(res, 0, sizeof(*res));
	limit_args(store, limit, window);
	snprintf(d, sizeof(d), "%" PRId64, delta);
	snprintf(ttl, sizeof(ttl), "%ld", store->opt.idempotency_ttl_seconds);
	n = snprintf(idem, sizeof(idem), "{%s}:idem:%s:%.*s", store->prefix,
	             caller->key_id[0] != '\0' ? caller->key_id : "-", (int)key->len,
	             key->len > 0 ? key->text : "");

	argv[3] = store->sum_key;
	argvlen[3] = strlen(store->sum_key);
	argv[4] = idem;
	argvlen[4] = n > 0 && (size_t)n < sizeof(idem) ? (size_t)n : sizeof(idem) - 1;
	argv[5] = rl;
	argvlen[5] = limit_key(store, caller, rl);
	argv[6] = d;
	argvlen[6] = strlen(d);
	argv[7] = ttl;
	argvlen[7] = strlen(ttl);
	argv[8] = limit;
	argvlen[8] = strlen(limit);
	argv[9] = window;
	argvlen[9] = strlen(window);
	argv[10] = key->len > 0 ? "1" : "0";
	argvlen[10] = 1;

	/* Without a key a repeat would add twice: never retry that. */
	return finish(run_script(store, SCRIPT_ADD, 3, 11, argv, argvlen, key->len > 0), res, "add");
}

enum store_status store_set(struct store *store, const struct caller *caller, int64_t value,
                            struct store_result *res)
{
	char rl[KEY_MAX], limit[24], window[24], v[24];
	const char *argv[8];
	size_t argvlen[8];

	memset(res, 0, sizeof(*res));
	limit_args(store, limit, window);
	snprintf(v, sizeof(v), "%" PRId64, value);
	argv[3] = store->sum_key;
	argvlen[3] = strlen(store->sum_key);
	argv[4] = rl;
	argvlen[4] = limit_key(store, caller, rl);
	argv[5] = v;
	argvlen[5] = strlen(v);
	argv[6] = limit;
	argvlen[6] = strlen(limit);
	argv[7] = window;
	argvlen[7] = strlen(window);
	return finish(run_script(store, SCRIPT_SET, 2, 8, argv, argvlen, true), res, "set");
}

enum store_status store_ping(struct store *store)
{
	uint64_t deadline = now_ms() + (uint64_t)store->opt.connect_timeout_ms +
	                    (uint64_t)store->opt.command_timeout_ms;
	redisReply *reply;
	uint64_t started;
	bool ok;

	if (!ensure_connected(store, deadline) || !set_timeout(store, deadline))
		return STORE_UNAVAILABLE;
	started = now_us();
	reply = redisCommand(store->ctx, "PING");
	count_op(METRICS_OP_PING, reply, started);
	if (reply == NULL) {
		disconnect(store, store->ctx->errstr);
		return STORE_UNAVAILABLE;
	}
	ok = reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
	if (!ok)
		log_redis_error("ping", reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
	freeReplyObject(reply);
	return ok ? STORE_OK : STORE_UNAVAILABLE;
}
