#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "decimal.h"
#include "log.h"
#include "metrics.h"
#include "resolve.h"
#include "scripts.h"
#include "topology.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define BACKOFF_MAX_SENTINEL_MS 250
#define KEY_MAX 512
#define TOKEN_LEN 16            /* an attempt token: 64 bits in hex */

static const enum metrics_redis_op script_ops[SCRIPT_COUNT] = {
	[SCRIPT_GET] = METRICS_OP_GET,
	[SCRIPT_ADD] = METRICS_OP_ADD,
	[SCRIPT_SET] = METRICS_OP_SET,
};

struct store {
	struct store_options opt;
	char prefix[CONFIG_PREFIX_MAX + 1];
	char sum_key[KEY_MAX];          /* {prefix}:sum */
	redisContext *ctx;              /* NULL while disconnected */
	char sha[SCRIPT_COUNT][41];     /* SCRIPT LOAD results (the same on every server) */
	int timeout_ms;                 /* socket timeout currently set on ctx */
	uint64_t next_attempt_ms;       /* no reconnect before this (backoff) */
	int backoff_ms;                 /* next backoff step */
	bool policy_checked;            /* maxmemory-policy looked at once */
	unsigned long connects;         /* successful connections so far */

	/* Sentinel and Cluster: which server ctx talks to, and how it was found. */
	struct redis_node node;         /* the server ctx is (or was last) connected to */
	bool node_known;                /* cluster: node holds the slot, as far as we know */
	size_t sentinel_first;          /* the sentinel that answered last is asked first */
	unsigned slot;                  /* cluster: the slot of the {prefix} hash tag */

	/* The scripts: header (this configuration's constants) + body. */
	char script[SCRIPT_COUNT][SCRIPT_MAX];

	/* Attempt tokens (see "Resends"): a random start, then one per change. */
	uint64_t token_next;
	uint64_t jitter_state;          /* the backoff's random part (never 0) */
};

/* One script to run, and how. */
struct script_call {
	enum script_id id;
	int argc;
	int nkeys;
	const char **argv;
	size_t *argvlen;
	int resend_arg;         /* argv index of the resend flag ('0' -> '1'); 0: none */
	bool wait;              /* WAIT for min_replicas in the same round trip */
	bool changes;           /* it changes the sum: a lost reply leaves the outcome unknown */
	bool maybe_applied;     /* sent, and no reply came: it may have run */
	long long acked;        /* WAIT's answer: replicas that have the write */
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
		[STORE_NOT_REPLICATED] = "not_replicated",
		[STORE_OUTCOME_UNKNOWN] = "outcome_unknown",
		[STORE_FULL] = "redis_full",
	};

	return status < STORE_STATUS_COUNT ? names[status] : "?";
}

bool store_parse_int64(const char *s, size_t len, int64_t *out)
{
	return decimal_parse_int64(s, len, DECIMAL_REFUSE_MINUS_ZERO, out) == DECIMAL_OK;
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
	opt->min_replicas = cfg->redis_min_replicas;
	opt->wait_timeout_ms = cfg->redis_wait_timeout_ms;
}

struct store *store_new(const struct store_options *opt)
{
	struct store *store = calloc(1, sizeof(*store));
	struct script_settings settings;

	if (store == NULL)
		return NULL;
	store->opt = *opt;
	snprintf(store->prefix, sizeof(store->prefix), "%s", opt->prefix);
	store->opt.prefix = store->prefix;
	snprintf(store->sum_key, sizeof(store->sum_key), "{%s}:sum", store->prefix);
	store->slot = topology_key_slot(store->sum_key, strlen(store->sum_key));
	if (getrandom(&store->token_next, sizeof(store->token_next), 0) != sizeof(store->token_next))
		store->token_next = ((uint64_t)getpid() << 32) ^ now_us();
	store->jitter_state = store->token_next | 1;
	settings.rate_limit_requests = opt->rate_limit_requests;
	settings.rate_limit_window_seconds = opt->rate_limit_window_seconds;
	settings.idempotency_ttl_seconds = opt->idempotency_ttl_seconds;
	settings.request_deadline_ms = opt->connect_timeout_ms + opt->command_timeout_ms;
	settings.wait_for_replicas = opt->min_replicas > 0;
	for (int i = 0; i < SCRIPT_COUNT; i++) {
		if (!scripts_format((enum script_id)i, &settings, store->script[i], sizeof(store->script[i]))) {
			free(store);
			return NULL;
		}
	}
	return store;
}

void store_free(struct store *store)
{
	if (store == NULL)
		return;
	if (store->ctx != NULL)
		redisFree(store->ctx);
	explicit_bzero(store->opt.target.password, sizeof(store->opt.target.password));
	explicit_bzero(store->opt.target.sentinel_password, sizeof(store->opt.target.sentinel_password));
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

/* Logs a change of server: a failover seen, a slot that moved. */
static void log_redis_node(const char *event, const struct redis_node *node, const char *why)
{
	struct log_line l;

	if (log_begin(&l, LOG_LEVEL_INFO, event, NULL)) {
		log_str(&l, "host", node->host);
		log_int(&l, "port", node->port);
		log_str(&l, "reason", why);
		log_end(&l);
	}
}

/*
 * The longest pause between two connection attempts.  Behind sentinels a
 * lost master is usually replaced within a second or two, and the sentinels
 * say when: asking them four times a second ends the outage sooner.
 */
static int max_backoff(const struct redis_target *t)
{
	return t->mode == REDIS_MODE_SENTINEL ? BACKOFF_MAX_SENTINEL_MS : BACKOFF_MAX_MS;
}

/* A uniform random number below n (n > 0): xorshift64, seeded at store_new. */
static uint64_t jitter_below(struct store *store, uint64_t n)
{
	uint64_t x = store->jitter_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	store->jitter_state = x;
	return x % n;
}

/* 0, then BACKOFF_MIN_MS doubling up to cap. */
static int next_backoff(int backoff_ms, int cap)
{
	if (backoff_ms == 0)
		return BACKOFF_MIN_MS;
	return backoff_ms * 2 > cap ? cap : backoff_ms * 2;
}

/*
 * The next connection attempt waits the backoff step, less a random part of
 * up to half of it ("equal jitter"): after a Redis restart the workers of
 * every front end spread their attempts instead of retrying in step.  The
 * step doubles with each failure and is reset only by a command that Redis
 * answered (command_answered), not by a connection that opened: a server
 * that accepts connections but answers nothing must not be hammered.
 */
static void schedule_retry(struct store *store)
{
	uint64_t wait = (uint64_t)store->backoff_ms;
	struct log_line l;

	if (wait > 1)
		wait = wait - wait / 2 + jitter_below(store, wait / 2 + 1);
	store->next_attempt_ms = now_ms() + wait;
	if (wait > 0 && log_begin(&l, LOG_LEVEL_INFO, "redis_backoff", NULL)) {
		log_int(&l, "retry_in_ms", (long long)wait);
		log_int(&l, "backoff_ms", store->backoff_ms);
		log_end(&l);
	}
	store->backoff_ms = next_backoff(store->backoff_ms, max_backoff(&store->opt.target));
}

/* Redis answered a command: the next failure starts the backoff afresh. */
static void command_answered(struct store *store)
{
	store->backoff_ms = 0;
}

/* Drops a broken connection and schedules the next attempt. */
static void disconnect(struct store *store, const char *why)
{
	if (store->ctx != NULL) {
		log_redis_error("connection", why);
		redisFree(store->ctx);
		store->ctx = NULL;
	}
	/* A cluster node that failed may no longer hold the slot: ask the seeds again. */
	store->node_known = false;
	/*
	 * The sentinel that named this server may be behind the others (it has
	 * not seen the failover yet, or is in TILT): the next attempt starts with
	 * the next one, so one stale sentinel cannot keep every attempt failing.
	 */
	if (store->opt.target.mode == REDIS_MODE_SENTINEL && store->opt.target.node_count > 0)
		store->sentinel_first = (store->sentinel_first + 1) % store->opt.target.node_count;
	schedule_retry(store);
}

/* Leaves a healthy server that is the wrong one (redirected): reconnect at once. */
static void leave_server(struct store *store)
{
	if (store->ctx != NULL) {
		redisFree(store->ctx);
		store->ctx = NULL;
	}
	store->next_attempt_ms = 0;
	metrics_inc(METRICS_REDIS_REDIRECTS);
}

/* Milliseconds left before deadline, at most cap; 0 when it has passed. */
static int ms_left(uint64_t deadline, int cap)
{
	uint64_t now = now_ms();

	if (now >= deadline)
		return 0;
	return deadline - now < (uint64_t)cap ? (int)(deadline - now) : cap;
}

/* Sets the socket timeout to the time left before deadline (capped). */
static bool set_ctx_timeout(redisContext *c, int *current_ms, int cap_ms, uint64_t deadline)
{
	int ms = ms_left(deadline, cap_ms);

	if (ms == 0)
		return false;
	if (ms != *current_ms) {
		if (redisSetTimeout(c, ms_to_tv(ms)) != REDIS_OK)
			return false;
		*current_ms = ms;
	}
	return true;
}

static bool set_timeout(struct store *store, uint64_t deadline)
{
	return set_ctx_timeout(store->ctx, &store->timeout_ms, store->opt.command_timeout_ms, deadline);
}

/* Opens a TCP connection to node within the connect timeout and deadline; NULL on failure. */
static redisContext *connect_node(const struct store *store, const struct redis_node *node,
                                  uint64_t deadline)
{
	int ms = ms_left(deadline, store->opt.connect_timeout_ms);
	char addr[RESOLVE_ADDR_MAX];
	redisContext *c;

	if (ms == 0)
		return NULL;
	/* The name lookup gets half the connect budget (see resolve.h). */
	if (!resolve_host(node->host, ms / 2 > 0 ? ms / 2 : 1, addr)) {
		char detail[400];

		snprintf(detail, sizeof(detail), "%s:%d: the name did not resolve in time", node->host, node->port);
		log_redis_error("connect", detail);
		return NULL;
	}
	ms = ms_left(deadline, store->opt.connect_timeout_ms);
	if (ms == 0)
		return NULL;
	c = redisConnectWithTimeout(addr, node->port, ms_to_tv(ms));
	if (c == NULL || c->err) {
		char detail[400];

		snprintf(detail, sizeof(detail), "%s:%d: %s", node->host, node->port,
		         c != NULL ? c->errstr : "out of memory");
		log_redis_error("connect", detail);
		if (c != NULL)
			redisFree(c);
		return NULL;
	}
	redisEnableKeepAlive(c);
	return c;
}

/* Appends AUTH [user] password when there is a password. */
static void append_auth(redisContext *c, const char *user, const char *password, bool has_password)
{
	if (!has_password)
		return;
	if (user[0] != '\0')
		redisAppendCommand(c, "AUTH %s %s", user, password);
	else
		redisAppendCommand(c, "AUTH %s", password);
}

/*
 * Connects to node, logs in if asked, sends one command (argv) and returns its
 * reply (caller frees), or NULL after logging why.  For the short-lived
 * connections to sentinels and cluster seeds.
 */
static redisReply *query_node(const struct store *store, const struct redis_node *node,
                              const char *user, const char *password, bool has_password,
                              uint64_t deadline, int argc, const char **argv)
{
	redisContext *c = connect_node(store, node, deadline);
	redisReply *reply = NULL;
	int timeout_ms = -1;

	if (c == NULL)
		return NULL;
	if (!set_ctx_timeout(c, &timeout_ms, store->opt.command_timeout_ms, deadline))
		goto out;
	append_auth(c, user, password, has_password);
	redisAppendCommandArgv(c, argc, argv, NULL);
	if (has_password) {
		bool refused;

		if (redisGetReply(c, (void **)&reply) != REDIS_OK)
			goto out;
		refused = reply != NULL && reply->type == REDIS_REPLY_ERROR;
		if (refused)
			log_redis_error("auth", reply->str);
		freeReplyObject(reply);
		reply = NULL;
		if (refused)
			goto out;
	}
	if (redisGetReply(c, (void **)&reply) != REDIS_OK)
		reply = NULL;
out:
	if (reply == NULL && c->err)
		log_redis_error(argv[0], c->errstr);
	redisFree(c);
	return reply;
}

/* Sentinel: asks the sentinels in turn which server is the master. */
static bool ask_sentinels(struct store *store, uint64_t deadline, struct redis_node *out)
{
	const struct redis_target *t = &store->opt.target;
	const char *argv[] = { "SENTINEL", "get-master-addr-by-name", t->master_name };

	for (size_t i = 0; i < t->node_count; i++) {
		size_t at = (store->sentinel_first + i) % t->node_count;
		redisReply *reply = query_node(store, &t->nodes[at], t->sentinel_user,
		                               t->sentinel_password, t->sentinel_has_password,
		                               deadline, 3, argv);
		bool found = topology_master_addr(reply, out);

		if (reply != NULL && !found)
			log_redis_error("sentinel", reply->type == REDIS_REPLY_ERROR ? reply->str
			                            : "the sentinel knows no master of that name");
		freeReplyObject(reply);
		if (found) {
			store->sentinel_first = at;
			return true;
		}
	}
	return false;
}

/* Cluster: asks the seed nodes in turn which master serves the slot. */
static bool ask_cluster(struct store *store, uint64_t deadline, struct redis_node *out)
{
	const struct redis_target *t = &store->opt.target;
	const char *argv[] = { "CLUSTER", "SLOTS" };

	for (size_t i = 0; i < t->node_count; i++) {
		redisReply *reply = query_node(store, &t->nodes[i], t->user, t->password,
		                               t->has_password, deadline, 2, argv);
		bool found = topology_slot_owner(reply, store->slot, t->nodes[i].host, out);

		if (reply != NULL && !found)
			log_redis_error("cluster", reply->type == REDIS_REPLY_ERROR ? reply->str
			                           : "no node serves the slot of the prefix");
		freeReplyObject(reply);
		if (found)
			return true;
	}
	return false;
}

/* Works out which server to connect to.  False: none could be found now. */
static bool locate_server(struct store *store, uint64_t deadline, struct redis_node *out)
{
	const struct redis_target *t = &store->opt.target;

	switch (t->mode) {
	case REDIS_MODE_SENTINEL:
		return ask_sentinels(store, deadline, out);
	case REDIS_MODE_CLUSTER:
		if (store->node_known) {
			*out = store->node;
			return true;
		}
		return ask_cluster(store, deadline, out);
	case REDIS_MODE_SINGLE:
	default:
		snprintf(out->host, sizeof(out->host), "%s", t->host);
		out->port = t->port;
		return true;
	}
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

/* The commands that prepare a new connection, in the order they are sent. */
enum setup_step { STEP_AUTH, STEP_SELECT, STEP_ROLE, STEP_SCRIPT, STEP_POLICY };

/*
 * Sends AUTH, SELECT (not in a cluster), ROLE (sentinel mode: the master we
 * were told about must still be one), the SCRIPT LOADs and once per process
 * CONFIG GET maxmemory-policy as one pipeline, and checks every reply.
 */
static bool setup_connection(struct store *store, uint64_t deadline)
{
	const struct redis_target *t = &store->opt.target;
	redisContext *c = store->ctx;
	enum setup_step steps[SCRIPT_COUNT + 4];
	int sent = 0, script = 0;
	bool ok = true;
	char db[16];

	append_auth(c, t->user, t->password, t->has_password);
	if (t->has_password)
		steps[sent++] = STEP_AUTH;
	if (t->mode != REDIS_MODE_CLUSTER) {
		snprintf(db, sizeof(db), "%d", t->db);
		redisAppendCommand(c, "SELECT %s", db);
		steps[sent++] = STEP_SELECT;
	}
	if (t->mode == REDIS_MODE_SENTINEL) {
		redisAppendCommand(c, "ROLE");
		steps[sent++] = STEP_ROLE;
	}
	for (int i = 0; i < SCRIPT_COUNT; i++) {
		redisAppendCommand(c, "SCRIPT LOAD %s", store->script[i]);
		steps[sent++] = STEP_SCRIPT;
	}
	if (!store->policy_checked) {
		redisAppendCommand(c, "CONFIG GET maxmemory-policy");
		steps[sent++] = STEP_POLICY;
	}

	for (int i = 0; i < sent; i++) {
		redisReply *reply = NULL;

		/* One deadline for the whole pipeline, not a full timeout per reply. */
		if (!set_timeout(store, deadline)) {
			log_redis_error("connect", "deadline passed during connection setup");
			return false;
		}
		if (redisGetReply(c, (void **)&reply) != REDIS_OK || reply == NULL) {
			log_redis_error("connect", c->errstr);
			return false;
		}
		if (steps[i] == STEP_POLICY) {
			check_eviction_policy(reply);
			store->policy_checked = true;
		} else if (reply->type == REDIS_REPLY_ERROR) {
			log_redis_error(steps[i] == STEP_SCRIPT ? "script_load" : "auth/select/role", reply->str);
			ok = false;
		} else if (steps[i] == STEP_ROLE && !topology_is_master(reply)) {
			log_redis_error("role", "the sentinels' master is not (or no longer) a master");
			ok = false;
		} else if (steps[i] == STEP_SCRIPT) {
			snprintf(store->sha[script], sizeof(store->sha[script]), "%s",
			         reply->type == REDIS_REPLY_STRING ? reply->str : "");
		}
		if (steps[i] == STEP_SCRIPT)
			script++;
		freeReplyObject(reply);
	}
	return ok;
}

/* Connects to the server found (TCP) or the socket, within deadline. */
static bool open_connection(struct store *store, uint64_t deadline)
{
	const struct redis_target *t = &store->opt.target;
	struct redis_node node;
	int ms;

	if (t->transport == REDIS_TRANSPORT_UNIX) {
		ms = ms_left(deadline, store->opt.connect_timeout_ms);
		if (ms == 0)
			return false;
		store->ctx = redisConnectUnixWithTimeout(t->path, ms_to_tv(ms));
		if (store->ctx == NULL || store->ctx->err) {
			log_redis_error("connect", store->ctx != NULL ? store->ctx->errstr : "out of memory");
			if (store->ctx != NULL)
				redisFree(store->ctx);
			store->ctx = NULL;
			return false;
		}
		return true;
	}
	if (!locate_server(store, deadline, &node))
		return false;
	store->ctx = connect_node(store, &node, deadline);
	if (store->ctx == NULL)
		return false;
	if (t->mode != REDIS_MODE_SINGLE &&
	    (strcmp(node.host, store->node.host) != 0 || node.port != store->node.port)) {
		if (store->connects > 0)
			log_redis_node("redis_server_changed", &node,
			               t->mode == REDIS_MODE_SENTINEL ? "sentinel" : "cluster");
		store->node = node;
	}
	store->node_known = true;
	return true;
}

/* Makes sure there is a ready connection, within deadline.  False: unavailable. */
static bool ensure_connected(struct store *store, uint64_t deadline)
{
	uint64_t started, connect_started;

	if (store->ctx != NULL)
		return true;
	started = now_ms();
	if (started < store->next_attempt_ms || started >= deadline)
		return false;

	connect_started = now_us();
	if (!open_connection(store, deadline)) {
		metrics_redis(METRICS_OP_CONNECT, METRICS_RESULT_UNAVAILABLE, now_us() - connect_started);
		disconnect(store, "connect failed");
		return false;
	}
	store->timeout_ms = -1;
	if (!set_timeout(store, deadline) || !setup_connection(store, deadline)) {
		metrics_redis(METRICS_OP_CONNECT, METRICS_RESULT_ERROR, now_us() - connect_started);
		disconnect(store, "connection setup failed");
		return false;
	}
	metrics_redis(METRICS_OP_CONNECT, METRICS_RESULT_OK, now_us() - connect_started);
	store->connects++;
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
 * Formats a command in RESP into buf (cap bytes): what redisAppendCommandArgv
 * does, without its per-argument allocations (they showed up in callgrind).
 * Returns the length, or 0 when it does not fit.
 */
static size_t format_command(char *buf, size_t cap, int argc, const char **argv,
                             const size_t *argvlen)
{
	char *p = buf;
	size_t need = 16;

	for (int i = 0; i < argc; i++)
		need += argvlen[i] + 32;
	if (need > cap)
		return 0;
	*p++ = '*';
	p = decimal_put_size(p, (size_t)argc);
	*p++ = '\r';
	*p++ = '\n';
	for (int i = 0; i < argc; i++) {
		*p++ = '$';
		p = decimal_put_size(p, argvlen[i]);
		*p++ = '\r';
		*p++ = '\n';
		memcpy(p, argv[i], argvlen[i]);
		p += argvlen[i];
		*p++ = '\r';
		*p++ = '\n';
	}
	return (size_t)(p - buf);
}

/* Queues [ASKING,] EVALSHA and, for a write that must reach replicas, WAIT. */
static void append_script(redisContext *c, const struct store *store, struct script_call *call,
                          bool asking)
{
	char replicas[16], timeout[16];
	char command[4096];
	size_t len;

	if (asking)
		redisAppendCommand(c, "ASKING");
	call->argv[1] = store->sha[call->id];
	call->argvlen[1] = strlen(store->sha[call->id]);
	len = format_command(command, sizeof(command), call->argc, call->argv, call->argvlen);
	if (len > 0)
		redisAppendFormattedCommand(c, command, len);
	else
		redisAppendCommandArgv(c, call->argc, call->argv, call->argvlen);
	if (call->wait) {
		snprintf(replicas, sizeof(replicas), "%d", store->opt.min_replicas);
		snprintf(timeout, sizeof(timeout), "%d", store->opt.wait_timeout_ms);
		redisAppendCommand(c, "WAIT %s %s", replicas, timeout);
	}
}

/* Reads what append_script queued.  Returns the script's reply, or NULL if the connection failed. */
static redisReply *read_script(redisContext *c, struct script_call *call, bool asking)
{
	redisReply *reply = NULL, *extra = NULL;

	if (asking) {
		if (redisGetReply(c, (void **)&extra) != REDIS_OK)
			return NULL;
		freeReplyObject(extra);
		extra = NULL;
	}
	if (redisGetReply(c, (void **)&reply) != REDIS_OK)
		return NULL;
	if (call->wait) {
		if (redisGetReply(c, (void **)&extra) != REDIS_OK) {
			freeReplyObject(reply);
			return NULL;
		}
		call->acked = extra != NULL && extra->type == REDIS_REPLY_INTEGER ? extra->integer : -1;
		freeReplyObject(extra);
	}
	return reply;
}

/*
 * Cluster ASK: the slot is migrating and our keys are already on node.  Runs
 * the script there once, on a connection of its own: AUTH, SCRIPT LOAD,
 * ASKING, EVALSHA [, WAIT] in one round trip.
 */
static redisReply *run_script_asking(struct store *store, const struct redis_node *node,
                                     struct script_call *call, uint64_t deadline)
{
	const struct redis_target *t = &store->opt.target;
	redisContext *c = connect_node(store, node, deadline);
	redisReply *reply = NULL;
	int timeout_ms = -1;
	int prefix = t->has_password ? 2 : 1;

	if (c == NULL)
		return NULL;
	metrics_inc(METRICS_REDIS_REDIRECTS);
	if (set_ctx_timeout(c, &timeout_ms, store->opt.command_timeout_ms, deadline)) {
		append_auth(c, t->user, t->password, t->has_password);
		redisAppendCommand(c, "SCRIPT LOAD %s", store->script[call->id]);
		append_script(c, store, call, true);
		for (int i = 0; i < prefix; i++) {
			redisReply *r = NULL;

			if (redisGetReply(c, (void **)&r) != REDIS_OK) {
				prefix = -1;
				break;
			}
			freeReplyObject(r);
		}
		if (prefix >= 0)
			reply = read_script(c, call, true);
	}
	if (reply == NULL)
		log_redis_error("ask", c->errstr[0] != '\0' ? c->errstr : "timed out");
	redisFree(c);
	return reply;
}

/* Sleeps a little before a retry, if the deadline allows.  False: it does not. */
static bool pause_before_retry(uint64_t deadline, int ms)
{
	struct timespec ts;

	if (ms_left(deadline, ms + 1) <= ms)
		return false;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)ms * 1000000L;
	nanosleep(&ts, NULL);
	return true;
}

/* Reloads a script after NOSCRIPT.  False if the connection broke. */
static bool reload_script(struct store *store, enum script_id id, uint64_t deadline)
{
	uint64_t started = now_us();
	redisReply *load;

	/* The request's deadline covers this round trip too. */
	if (!set_timeout(store, deadline)) {
		disconnect(store, "deadline passed before SCRIPT LOAD");
		return false;
	}
	load = redisCommand(store->ctx, "SCRIPT LOAD %s", store->script[id]);

	count_op(METRICS_OP_SCRIPT_LOAD, load, started);
	if (load == NULL) {
		disconnect(store, store->ctx->errstr);
		return false;
	}
	if (load->type == REDIS_REPLY_STRING)
		snprintf(store->sha[id], sizeof(store->sha[id]), "%s", load->str);
	freeReplyObject(load);
	return true;
}

#define MAX_ATTEMPTS 32         /* redirections and retries; the deadline bounds them too */
#define TRYAGAIN_PAUSE_MS 10

/*
 * Runs one script: EVALSHA (and WAIT, see store_options.min_replicas).
 * Every error that means "not executed here" is handled by trying again,
 * within the deadline: NOSCRIPT reloads the script (once), MOVED reconnects
 * to the node named, ASK runs it once on the node named, TRYAGAIN pauses,
 * READONLY/MASTERDOWN (sentinel, cluster) asks again where the master is.
 * If a connection that was already open turns out to be dead (Redis
 * restarted), reconnects and resends once, flagged as a resend: the script
 * recognises its own earlier attempt (see "Resends").  A script sent without
 * a reply (call->maybe_applied) may have run.
 * Returns the reply (caller frees) or NULL.
 */
static redisReply *run_script(struct store *store, struct script_call *call)
{
	uint64_t deadline = now_ms() + (uint64_t)store->opt.connect_timeout_ms +
	                    (uint64_t)store->opt.command_timeout_ms;
	static const char *const digits[] = { "0", "1", "2", "3" };
	bool reloaded = false, resent = false;
	int moves = 0;

	call->argv[0] = "EVALSHA";
	call->argvlen[0] = 7;
	call->argv[2] = digits[call->nkeys];
	call->argvlen[2] = 1;
	for (int attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
		bool was_open = store->ctx != NULL;
		struct redis_node node;
		enum topology_error kind;
		redisReply *reply;
		uint64_t started;
		size_t queued;

		if (!ensure_connected(store, deadline) || !set_timeout(store, deadline))
			return NULL;
		errno = 0;
		started = now_us();
		append_script(store->ctx, store, call, false);
		queued = sdslen(store->ctx->obuf);
		reply = read_script(store->ctx, call, false);
		count_op(script_ops[call->id], reply, started);
		if (reply == NULL) {
			int err = store->ctx->err;
			int saved_errno = errno;

			/*
			 * Redis runs only a command it received whole: a write that sent
			 * nothing (hiredis keeps what it could not send) ran nothing.
			 */
			if (sdslen(store->ctx->obuf) < queued)
				call->maybe_applied = true;
			disconnect(store, store->ctx->errstr);
			/*
			 * A socket that went stale while idle (Redis restarted) fails with
			 * EOF or a reset: reconnect and resend once, flagged, so the script
			 * recognises its own attempt.  A timeout (EAGAIN) is never resent:
			 * the deadline is spent.
			 */
			if (was_open && !resent && (err == REDIS_ERR_EOF || err == REDIS_ERR_IO) &&
			    saved_errno != EAGAIN && saved_errno != EWOULDBLOCK) {
				store->next_attempt_ms = 0;
				resent = true;
				if (call->resend_arg > 0) {
					call->argv[call->resend_arg] = "1";
					call->argvlen[call->resend_arg] = 1;
				}
				continue;
			}
			return NULL;
		}
		command_answered(store);
		if (reply->type != REDIS_REPLY_ERROR)
			return reply;

		memset(&node, 0, sizeof(node));
		kind = topology_classify(reply->str, &node);
		/* A redirect may name no host (":port"): the one we are talking to. */
		if (node.host[0] == '\0')
			snprintf(node.host, sizeof(node.host), "%s", store->node.host);
		switch (kind) {
		case TOPOLOGY_ERR_NOSCRIPT:
			if (reloaded)
				return reply;
			freeReplyObject(reply);
			reloaded = true;
			if (!reload_script(store, call->id, deadline))
				return NULL;
			continue;
		case TOPOLOGY_ERR_MOVED:
			if (store->opt.target.mode != REDIS_MODE_CLUSTER)
				return reply;
			log_redis_node("redis_moved", &node, reply->str);
			freeReplyObject(reply);
			leave_server(store);
			store->node = node;
			store->node_known = true;
			/* Nodes that disagree (a slot being handed over) bounce us: slow down. */
			if (++moves > 1 && !pause_before_retry(deadline, TRYAGAIN_PAUSE_MS))
				return NULL;
			continue;
		case TOPOLOGY_ERR_ASK:
			if (store->opt.target.mode != REDIS_MODE_CLUSTER)
				return reply;
			freeReplyObject(reply);
			reply = run_script_asking(store, &node, call, deadline);
			if (reply == NULL)
				call->maybe_applied = true;     /* it may have run there */
			if (reply == NULL || reply->type != REDIS_REPLY_ERROR ||
			    topology_classify(reply->str, &node) != TOPOLOGY_ERR_TRYAGAIN)
				return reply;
			/* The keys are split between the two nodes: like TRYAGAIN here. */
			freeReplyObject(reply);
			if (!pause_before_retry(deadline, TRYAGAIN_PAUSE_MS))
				return NULL;
			continue;
		case TOPOLOGY_ERR_TRYAGAIN:
			freeReplyObject(reply);
			if (!pause_before_retry(deadline, TRYAGAIN_PAUSE_MS))
				return NULL;
			continue;
		case TOPOLOGY_ERR_READONLY:
		case TOPOLOGY_ERR_MASTERDOWN:
			/* In single mode a replica is a configuration error: report it. */
			if (store->opt.target.mode == REDIS_MODE_SINGLE)
				return reply;
			log_redis_node("redis_not_master", &store->node, reply->str);
			freeReplyObject(reply);
			leave_server(store);
			store->node_known = false;
			if (!pause_before_retry(deadline, TRYAGAIN_PAUSE_MS))
				return NULL;
			continue;
		case TOPOLOGY_ERR_CLUSTERDOWN:
		case TOPOLOGY_ERR_LOADING:
		case TOPOLOGY_ERR_OTHER:
		default:
			return reply;
		}
	}
	return NULL;
}

/* The next space-separated word of the reply at *at (before end); advances past it. */
static const char *next_word(const char **at, const char *end, size_t *len)
{
	const char *start = *at;
	const char *space = memchr(start, ' ', (size_t)(end - start));

	*len = (size_t)((space != NULL ? space : end) - start);
	*at = space != NULL ? space + 1 : end;
	return start;
}

/* The next word as an integer; false if it is not one. */
static bool next_int(const char **at, const char *end, int64_t *v)
{
	size_t len;
	const char *word = next_word(at, end, &len);

	return store_parse_int64(word, len, v);
}

/* Decodes the scripts' reply (see "Each script" above) into res. */
/* A script's error, with the Lua file and line it came from when Redis names one. */
static void log_script_error(enum script_id id, const char *op, const char *error)
{
	char source[256];
	struct log_line l;

	if (log_begin(&l, LOG_LEVEL_ERROR, "redis_error", NULL)) {
		log_str(&l, "operation", op);
		log_str(&l, "error", error);
		if (scripts_source_in_error(id, error, source, sizeof(source)))
			log_str(&l, "source", source);
		log_end(&l);
	}
}

static enum store_status decode_reply(const redisReply *reply, const struct store *store,
                                      struct store_result *res, enum script_id id, const char *op)
{
	static const struct { const char *name; enum store_status status; } table[] = {
		{ "ok", STORE_OK }, { "replay", STORE_REPLAYED }, { "conflict", STORE_KEY_CONFLICT },
		{ "overflow", STORE_OVERFLOW }, { "notint", STORE_NOT_INTEGER },
		{ "limited", STORE_RATE_LIMITED },
	};
	enum store_status status = STORE_UNAVAILABLE;
	const char *at, *end, *word;
	int64_t a, b;
	size_t len;

	if (reply->type == REDIS_REPLY_ERROR) {
		log_script_error(id, op, reply->str);
		/* A full Redis (noeviction) refuses a writing script before it runs. */
		return strncmp(reply->str, "OOM ", 4) == 0 ? STORE_FULL : STORE_UNAVAILABLE;
	}
	if (reply->type != REDIS_REPLY_STRING) {
		log_redis_error(op, "unexpected reply shape");
		return STORE_UNAVAILABLE;
	}
	at = reply->str;
	end = reply->str + reply->len;
	word = next_word(&at, end, &len);
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strlen(table[i].name) == len && memcmp(word, table[i].name, len) == 0)
			status = table[i].status;
	if (status == STORE_UNAVAILABLE) {
		log_redis_error(op, "unexpected reply");
		return STORE_UNAVAILABLE;
	}

	if (status == STORE_RATE_LIMITED) {
		if (!next_int(&at, end, &a) || !next_int(&at, end, &b) || a < 0 || b < 0) {
			log_redis_error(op, "unexpected reply");
			return STORE_UNAVAILABLE;
		}
		res->limited = true;
		res->remaining = 0;
		res->reset_seconds = (long)((a + 999999) / 1000000);
		res->retry_after_seconds = (long)((b + 999999) / 1000000);
		if (res->retry_after_seconds < 1)
			res->retry_after_seconds = 1;
		return status;
	}
	if (!next_int(&at, end, &a) || a < -1) {
		log_redis_error(op, "unexpected reply");
		return STORE_UNAVAILABLE;
	}
	res->limited = a >= 0;
	res->remaining = res->limited ? (long)a : 0;
	res->reset_seconds = res->limited ? store->opt.rate_limit_window_seconds : 0;
	/* The sum is the rest of the reply: a corrupt one, even with spaces, is not an integer. */
	if ((status == STORE_OK || status == STORE_REPLAYED) &&
	    !store_parse_int64(at, (size_t)(end - at), &res->sum))
		status = STORE_NOT_INTEGER;
	res->replayed = status == STORE_REPLAYED;
	return status;
}

/*
 * Decodes a reply into res.  A write that WAIT saw reach fewer replicas than
 * required is NOT_REPLICATED: it is applied on the master, so the client's
 * retry with the same key replays it (and waits again).
 */
static enum store_status finish(redisReply *reply, const struct store *store,
                                const struct script_call *call, struct store_result *res,
                                const char *op)
{
	enum store_status status;

	if (reply == NULL)
		return call->changes && call->maybe_applied ? STORE_OUTCOME_UNKNOWN : STORE_UNAVAILABLE;
	status = decode_reply(reply, store, res, call->id, op);
	freeReplyObject(reply);
	/*
	 * The resend's script ran and found no token: the first attempt did not
	 * apply, whatever the resend answered.  But an error reply means the
	 * resend did not run at all: the first attempt's fate is still unknown.
	 */
	if (call->changes && call->maybe_applied && (status == STORE_UNAVAILABLE || status == STORE_FULL))
		return STORE_OUTCOME_UNKNOWN;
	if (call->wait && (status == STORE_OK || status == STORE_REPLAYED) &&
	    call->acked < store->opt.min_replicas) {
		struct log_line l;

		metrics_inc(METRICS_REPLICATION_SHORTFALLS);
		if (log_begin(&l, LOG_LEVEL_WARN, "redis_replication_shortfall", NULL)) {
			log_str(&l, "operation", op);
			log_int(&l, "replicas_acked", call->acked);
			log_int(&l, "replicas_required", store->opt.min_replicas);
			log_end(&l);
		}
		return STORE_NOT_REPLICATED;
	}
	return status;
}

/* Writes "{prefix}" (the hash tag every key shares) at out; returns the end. */
static char *put_hash_tag(const struct store *store, char *out)
{
	*out++ = '{';
	out = stpcpy(out, store->prefix);
	*out++ = '}';
	return out;
}

/* "{prefix}:rl:<identity>" (the prefix and the identity are bounded well below KEY_MAX). */
static size_t limit_key(const struct store *store, const struct caller *caller, char *out)
{
	char *at = out;

	_Static_assert(CONFIG_PREFIX_MAX + sizeof(caller->limit_id) + 8 <= KEY_MAX, "limit key fits");
	at = put_hash_tag(store, at);
	at = stpcpy(at, ":rl:");
	at = stpcpy(at, caller->limit_id[0] != '\0' ? caller->limit_id : "-");
	return (size_t)(at - out);
}

enum store_status store_get(struct store *store, const struct caller *caller,
                            struct store_result *res)
{
	char rl[KEY_MAX];
	const char *argv[5];
	size_t argvlen[5];
	struct script_call call = { .id = SCRIPT_GET, .argc = 5, .nkeys = 2, .argv = argv,
	                            .argvlen = argvlen };

	memset(res, 0, sizeof(*res));
	argv[3] = store->sum_key;
	argvlen[3] = strlen(store->sum_key);
	argv[4] = rl;
	argvlen[4] = limit_key(store, caller, rl);
	return finish(run_script(store, &call), store, &call, res, "get");
}

/* "{prefix}:idem:<key id, or - with auth off>:<key>"; every part is bounded, so it fits. */
static size_t idem_key_name(const struct store *store, const struct caller *caller,
                            const struct idem_key *key, char *out)
{
	char *at = out;

	_Static_assert(CONFIG_PREFIX_MAX + sizeof(caller->key_id) + IDEM_KEY_MAX + 16 <= KEY_MAX,
	               "idempotency key name fits");
	at = put_hash_tag(store, at);
	at = stpcpy(at, ":idem:");
	at = stpcpy(at, caller->key_id[0] != '\0' ? caller->key_id : "-");
	*at++ = ':';
	if (key->len > 0) {
		/* idem.c let only 1-IDEM_KEY_MAX characters through; the bound keeps it so. */
		size_t n = key->len < IDEM_KEY_MAX ? key->len : IDEM_KEY_MAX;

		memcpy(at, key->text, n);
		at += n;
	}
	*at = '\0';
	return (size_t)(at - out);
}

/* A new attempt token (see "Resends"): 16 hex digits. */
static size_t next_token(struct store *store, char out[TOKEN_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	/* An odd step visits every 64-bit value before repeating. */
	uint64_t t = store->token_next += 0x9e3779b97f4a7c15ULL;

	for (int i = TOKEN_LEN - 1; i >= 0; i--, t >>= 4)
		out[i] = hex[t & 15];
	out[TOKEN_LEN] = '\0';
	return TOKEN_LEN;
}

/* "{prefix}:op:<token>": where a change without an Idempotency-Key leaves its token. */
static size_t op_key(const struct store *store, const char *token, char *out)
{
	char *at = put_hash_tag(store, out);

	at = stpcpy(at, ":op:");
	at = stpcpy(at, token);
	return (size_t)(at - out);
}

enum store_status store_add(struct store *store, const struct caller *caller,
                            const struct idem_key *key, int64_t delta, struct store_result *res)
{
	char rl[KEY_MAX], idem[KEY_MAX], d[DECIMAL_MAX], token[TOKEN_LEN + 1];
	char resend[2] = "0";
	const char *argv[10];
	size_t argvlen[10];
	struct script_call call = { .id = SCRIPT_ADD, .argc = 10, .nkeys = 3, .argv = argv,
	                            .argvlen = argvlen, .resend_arg = 9, .changes = true,
	                            .wait = store->opt.min_replicas > 0 };

	memset(res, 0, sizeof(*res));
	argvlen[8] = next_token(store, token);
	argv[8] = token;
	argv[3] = store->sum_key;
	argvlen[3] = strlen(store->sum_key);
	argv[4] = idem;
	argvlen[4] = key->len > 0 ? idem_key_name(store, caller, key, idem) : op_key(store, token, idem);
	argv[5] = rl;
	argvlen[5] = limit_key(store, caller, rl);
	argv[6] = d;
	argvlen[6] = decimal_format(d, delta);
	argv[7] = key->len > 0 ? "1" : "0";
	argvlen[7] = 1;
	argv[9] = resend;
	argvlen[9] = 1;
	return finish(run_script(store, &call), store, &call, res, "add");
}

enum store_status store_set(struct store *store, const struct caller *caller, int64_t value,
                            struct store_result *res)
{
	char rl[KEY_MAX], op[KEY_MAX], v[24], token[TOKEN_LEN + 1];
	char resend[2] = "0";
	const char *argv[9];
	size_t argvlen[9];
	struct script_call call = { .id = SCRIPT_SET, .argc = 9, .nkeys = 3, .argv = argv,
	                            .argvlen = argvlen, .resend_arg = 8, .changes = true,
	                            .wait = store->opt.min_replicas > 0 };

	memset(res, 0, sizeof(*res));
	snprintf(v, sizeof(v), "%" PRId64, value);
	argvlen[7] = next_token(store, token);
	argv[7] = token;
	argv[3] = store->sum_key;
	argvlen[3] = strlen(store->sum_key);
	argv[4] = op;
	argvlen[4] = op_key(store, token, op);
	argv[5] = rl;
	argvlen[5] = limit_key(store, caller, rl);
	argv[6] = v;
	argvlen[6] = strlen(v);
	argv[8] = resend;
	argvlen[8] = 1;
	return finish(run_script(store, &call), store, &call, res, "set");
}

/* "name:<digits>" in INFO's text; -1 when absent. */
static long long info_field(const char *info, const char *name)
{
	size_t n = strlen(name);

	for (const char *at = info; (at = strstr(at, name)) != NULL; at += n) {
		if ((at == info || at[-1] == '\n') && at[n] == ':')
			return strtoll(at + n + 1, NULL, 10);
	}
	return -1;
}

/*
 * Full: INFO memory says used_memory has reached maxmemory under noeviction
 * (Redis then refuses every writing script; an evicting policy makes room
 * instead).  Close to Redis's own test, which leaves replication and AOF
 * buffers out of the count: near the limit this may say full a little early.
 */
static bool memory_full(const redisReply *info)
{
	long long used, max;

	if (info == NULL || info->type != REDIS_REPLY_STRING ||
	    strstr(info->str, "\nmaxmemory_policy:noeviction") == NULL)
		return false;
	used = info_field(info->str, "used_memory");
	max = info_field(info->str, "maxmemory");
	return max > 0 && used >= max;
}

enum store_status store_ping(struct store *store)
{
	uint64_t deadline = now_ms() + (uint64_t)store->opt.connect_timeout_ms +
	                    (uint64_t)store->opt.command_timeout_ms;
	redisReply *reply = NULL, *info = NULL;
	uint64_t started;
	bool ok, full;

	if (!ensure_connected(store, deadline) || !set_timeout(store, deadline))
		return STORE_UNAVAILABLE;
	started = now_us();
	redisAppendCommand(store->ctx, "PING");
	redisAppendCommand(store->ctx, "INFO memory");
	if (redisGetReply(store->ctx, (void **)&reply) != REDIS_OK ||
	    redisGetReply(store->ctx, (void **)&info) != REDIS_OK) {
		count_op(METRICS_OP_PING, NULL, started);
		freeReplyObject(reply);
		disconnect(store, store->ctx->errstr);
		return STORE_UNAVAILABLE;
	}
	count_op(METRICS_OP_PING, reply, started);
	ok = reply != NULL && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
	full = memory_full(info);
	command_answered(store);
	if (!ok)
		log_redis_error("ping", reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
	freeReplyObject(reply);
	freeReplyObject(info);
	return !ok ? STORE_UNAVAILABLE : full ? STORE_FULL : STORE_OK;
}
