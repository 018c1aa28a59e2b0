#include "transport.h"

#include <stdio.h>
#include <string.h>

#include "decimal.h"
#include "log.h"
#include "resolve.h"
#include "topology.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 1000
#define BACKOFF_MAX_SENTINEL_MS 250

/* Counts one command (or connection attempt) started at `started` (transport_now_us()). */
void transport_count_op(enum metrics_redis_op op, const redisReply *reply, uint64_t started)
{
	enum metrics_redis_result result = reply == NULL ? METRICS_RESULT_UNAVAILABLE
	                                 : reply->type == REDIS_REPLY_ERROR ? METRICS_RESULT_ERROR
	                                 : METRICS_RESULT_OK;

	metrics_redis(op, result, transport_now_us() - started);
}

struct timeval transport_ms_to_tv(int ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

	return tv;
}

void transport_log_error(const char *what, const char *detail)
{
	struct log_line l;

	if (log_begin(&l, LOG_LEVEL_ERROR, "redis_error", NULL)) {
		log_str(&l, "operation", what);
		log_str(&l, "error", detail);
		log_end(&l);
	}
}

/* Logs a change of server: a failover seen, a slot that moved. */
void transport_log_node(const char *event, const struct redis_node *node, const char *why)
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
static uint64_t jitter_below(struct transport *tr, uint64_t n)
{
	uint64_t x = tr->jitter_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	tr->jitter_state = x;
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
 * answered (transport_answered), not by a connection that opened: a server
 * that accepts connections but answers nothing must not be hammered.
 */
static void schedule_retry(struct transport *tr)
{
	uint64_t wait = (uint64_t)tr->backoff_ms;
	struct log_line l;

	if (wait > 1)
		wait = wait - wait / 2 + jitter_below(tr, wait / 2 + 1);
	tr->next_attempt_ms = transport_now_ms() + wait;
	if (wait > 0 && log_begin(&l, LOG_LEVEL_INFO, "redis_backoff", NULL)) {
		log_int(&l, "retry_in_ms", (long long)wait);
		log_int(&l, "backoff_ms", tr->backoff_ms);
		log_end(&l);
	}
	tr->backoff_ms = next_backoff(tr->backoff_ms, max_backoff(&tr->target));
}

/* Redis answered a command: the next failure starts the backoff afresh. */
void transport_answered(struct transport *tr)
{
	tr->backoff_ms = 0;
}

/* Drops a broken connection and schedules the next attempt. */
void transport_disconnect(struct transport *tr, const char *why)
{
	if (tr->ctx != NULL) {
		transport_log_error("connection", why);
		redisFree(tr->ctx);
		tr->ctx = NULL;
	}
	/* A cluster node that failed may no longer hold the slot: ask the seeds again. */
	tr->node_known = false;
	/*
	 * The sentinel that named this server may be behind the others (it has
	 * not seen the failover yet, or is in TILT): the next attempt starts with
	 * the next one, so one stale sentinel cannot keep every attempt failing.
	 */
	if (tr->target.mode == REDIS_MODE_SENTINEL && tr->target.node_count > 0)
		tr->sentinel_first = (tr->sentinel_first + 1) % tr->target.node_count;
	schedule_retry(tr);
}

/* Leaves a healthy server that is the wrong one (redirected): reconnect at once. */
void transport_leave(struct transport *tr)
{
	if (tr->ctx != NULL) {
		redisFree(tr->ctx);
		tr->ctx = NULL;
	}
	tr->next_attempt_ms = 0;
	metrics_inc(METRICS_REDIS_REDIRECTS);
}

/* Milliseconds left before deadline, at most cap; 0 when it has passed. */
int transport_ms_left(uint64_t deadline, int cap)
{
	uint64_t now = transport_now_ms();

	if (now >= deadline)
		return 0;
	return deadline - now < (uint64_t)cap ? (int)(deadline - now) : cap;
}

/* Sets the socket timeout to the time left before deadline (capped). */
bool transport_set_ctx_timeout(redisContext *c, int *current_ms, int cap_ms, uint64_t deadline)
{
	int ms = transport_ms_left(deadline, cap_ms);

	if (ms == 0)
		return false;
	if (ms != *current_ms) {
		if (redisSetTimeout(c, transport_ms_to_tv(ms)) != REDIS_OK)
			return false;
		*current_ms = ms;
	}
	return true;
}

bool transport_set_timeout(struct transport *tr, uint64_t deadline)
{
	return transport_set_ctx_timeout(tr->ctx, &tr->timeout_ms, tr->command_timeout_ms, deadline);
}

/* Opens a TCP connection to node within the connect timeout and deadline; NULL on failure. */
redisContext *transport_connect_node(const struct transport *tr, const struct redis_node *node,
                                     uint64_t deadline)
{
	int ms = transport_ms_left(deadline, tr->connect_timeout_ms);
	char addr[RESOLVE_ADDR_MAX];
	redisContext *c;

	if (ms == 0)
		return NULL;
	/* The name lookup gets half the connect budget (see resolve.h). */
	if (!resolve_host(node->host, ms / 2 > 0 ? ms / 2 : 1, addr)) {
		char detail[400];

		snprintf(detail, sizeof(detail), "%s:%d: the name did not resolve in time", node->host, node->port);
		transport_log_error("connect", detail);
		return NULL;
	}
	ms = transport_ms_left(deadline, tr->connect_timeout_ms);
	if (ms == 0)
		return NULL;
	c = redisConnectWithTimeout(addr, node->port, transport_ms_to_tv(ms));
	if (c == NULL || c->err) {
		char detail[400];

		snprintf(detail, sizeof(detail), "%s:%d: %s", node->host, node->port,
		         c != NULL ? c->errstr : "out of memory");
		transport_log_error("connect", detail);
		if (c != NULL)
			redisFree(c);
		return NULL;
	}
	redisEnableKeepAlive(c);
	return c;
}

/* Appends AUTH [user] password when there is a password. */
void transport_append_auth(redisContext *c, const char *user, const char *password, bool has_password)
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
redisReply *transport_query_node(const struct transport *tr, const struct redis_node *node,
                                 const char *user, const char *password, bool has_password,
                                 uint64_t deadline, int argc, const char **argv)
{
	redisContext *c = transport_connect_node(tr, node, deadline);
	redisReply *reply = NULL;
	int timeout_ms = -1;

	if (c == NULL)
		return NULL;
	if (!transport_set_ctx_timeout(c, &timeout_ms, tr->command_timeout_ms, deadline))
		goto out;
	transport_append_auth(c, user, password, has_password);
	redisAppendCommandArgv(c, argc, argv, NULL);
	if (has_password) {
		bool refused;

		if (redisGetReply(c, (void **)&reply) != REDIS_OK)
			goto out;
		refused = reply != NULL && reply->type == REDIS_REPLY_ERROR;
		if (refused)
			transport_log_error("auth", reply->str);
		freeReplyObject(reply);
		reply = NULL;
		if (refused)
			goto out;
	}
	if (redisGetReply(c, (void **)&reply) != REDIS_OK)
		reply = NULL;
out:
	if (reply == NULL && c->err)
		transport_log_error(argv[0], c->errstr);
	redisFree(c);
	return reply;
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
/* Queues the setup pipeline on tr->ctx; fills steps; returns how many. */
static int queue_setup(struct transport *tr, enum setup_step *steps)
{
	const struct redis_target *t = &tr->target;
	redisContext *c = tr->ctx;
	int sent = 0;
	char db[DECIMAL_MAX + 1];

	transport_append_auth(c, t->user, t->password, t->has_password);
	if (t->has_password)
		steps[sent++] = STEP_AUTH;
	if (t->mode != REDIS_MODE_CLUSTER) {
		db[decimal_format(db, t->db)] = '\0';
		redisAppendCommand(c, "SELECT %s", db);
		steps[sent++] = STEP_SELECT;
	}
	if (t->mode == REDIS_MODE_SENTINEL) {
		redisAppendCommand(c, "ROLE");
		steps[sent++] = STEP_ROLE;
	}
	for (int i = 0; i < SCRIPT_COUNT; i++) {
		redisAppendCommand(c, "SCRIPT LOAD %s", tr->script[i]);
		steps[sent++] = STEP_SCRIPT;
	}
	if (!tr->policy_checked) {
		redisAppendCommand(c, "CONFIG GET maxmemory-policy");
		steps[sent++] = STEP_POLICY;
	}
	return sent;
}

/* A refused setup step; a script that does not compile is named by its Lua file and line. */
static void log_setup_error(enum setup_step step, int script, const char *error)
{
	char source[256];
	struct log_line l;

	if (step != STEP_SCRIPT || !scripts_source_in_error((enum script_id)script, error, source, sizeof(source))) {
		transport_log_error(step == STEP_SCRIPT ? "script_load" : "auth/select/role", error);
		return;
	}
	if (log_begin(&l, LOG_LEVEL_ERROR, "redis_error", NULL)) {
		log_str(&l, "operation", "script_load");
		log_str(&l, "error", error);
		log_str(&l, "source", source);
		log_end(&l);
	}
}

/* Checks one setup reply (the script-th SCRIPT LOAD records its SHA); false: the setup failed. */
static bool check_setup_reply(struct transport *tr, enum setup_step step, int script, const redisReply *reply)
{
	if (step == STEP_POLICY) {
		check_eviction_policy(reply);
		tr->policy_checked = true;
	} else if (reply->type == REDIS_REPLY_ERROR) {
		log_setup_error(step, script, reply->str);
		return false;
	} else if (step == STEP_ROLE && !topology_is_master(reply)) {
		transport_log_error("role", "the sentinels' master is not (or no longer) a master");
		return false;
	} else if (step == STEP_SCRIPT) {
		snprintf(tr->sha[script], sizeof(tr->sha[script]), "%s",
		         reply->type == REDIS_REPLY_STRING ? reply->str : "");
	}
	return true;
}

bool transport_setup(struct transport *tr, uint64_t deadline)
{
	enum setup_step steps[SCRIPT_COUNT + 4];
	int sent = queue_setup(tr, steps), script = 0;
	bool ok = true;

	for (int i = 0; i < sent; i++) {
		redisReply *reply = NULL;

		/* One deadline for the whole pipeline, not a full timeout per reply. */
		if (!transport_set_timeout(tr, deadline)) {
			transport_log_error("connect", "deadline passed during connection setup");
			return false;
		}
		if (redisGetReply(tr->ctx, (void **)&reply) != REDIS_OK || reply == NULL) {
			transport_log_error("connect", tr->ctx->errstr);
			return false;
		}
		ok = check_setup_reply(tr, steps[i], script, reply) && ok;
		if (steps[i] == STEP_SCRIPT)
			script++;
		freeReplyObject(reply);
	}
	return ok;
}

/* Reloads a script after NOSCRIPT.  False if the connection broke. */
bool transport_reload_script(struct transport *tr, enum script_id id, uint64_t deadline)
{
	uint64_t started = transport_now_us();
	redisReply *load;

	/* The request's deadline covers this round trip too. */
	if (!transport_set_timeout(tr, deadline)) {
		transport_disconnect(tr, "deadline passed before SCRIPT LOAD");
		return false;
	}
	load = redisCommand(tr->ctx, "SCRIPT LOAD %s", tr->script[id]);

	transport_count_op(METRICS_OP_SCRIPT_LOAD, load, started);
	if (load == NULL) {
		transport_disconnect(tr, tr->ctx->errstr);
		return false;
	}
	if (load->type == REDIS_REPLY_STRING)
		snprintf(tr->sha[id], sizeof(tr->sha[id]), "%s", load->str);
	freeReplyObject(load);
	return true;
}
