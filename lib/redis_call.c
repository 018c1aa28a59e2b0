#include "redis_call.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "decimal.h"
#include "discovery.h"
#include "metrics.h"
#include "topology.h"

static const enum metrics_redis_op script_ops[SCRIPT_COUNT] = {
	[SCRIPT_GET] = METRICS_OP_GET,
	[SCRIPT_ADD] = METRICS_OP_ADD,
	[SCRIPT_SET] = METRICS_OP_SET,
	[SCRIPT_LEDGER] = METRICS_OP_LEDGER,
	[SCRIPT_LIST] = METRICS_OP_LIST,
	[SCRIPT_PEEK] = METRICS_OP_PEEK,
	[SCRIPT_REGISTRY] = METRICS_OP_REGISTER,
	[SCRIPT_ADMIT] = METRICS_OP_ADMIT,
};

/* Connects to the server found (TCP) or the socket, within deadline. */
static bool open_connection(struct transport *tr, uint64_t deadline)
{
	const struct redis_target *t = &tr->target;
	struct redis_node node;
	int ms;

	if (t->transport == REDIS_TRANSPORT_UNIX) {
		ms = transport_ms_left(deadline, tr->connect_timeout_ms);
		if (ms == 0)
			return false;
		tr->ctx = redisConnectUnixWithTimeout(t->path, transport_ms_to_tv(ms));
		if (tr->ctx == NULL || tr->ctx->err) {
			transport_log_error("connect", tr->ctx != NULL ? tr->ctx->errstr : "out of memory");
			if (tr->ctx != NULL)
				redisFree(tr->ctx);
			tr->ctx = NULL;
			return false;
		}
		return true;
	}
	if (!discovery_locate(tr, deadline, &node))
		return false;
	tr->ctx = transport_connect_node(tr, &node, deadline);
	if (tr->ctx == NULL)
		return false;
	if (t->mode != REDIS_MODE_SINGLE &&
	    (strcmp(node.host, tr->node.host) != 0 || node.port != tr->node.port)) {
		if (tr->connects > 0)
			transport_log_node("redis_server_changed", &node,
			                   t->mode == REDIS_MODE_SENTINEL ? "sentinel" : "cluster");
		tr->node = node;
	}
	tr->node_known = true;
	return true;
}

/* Makes sure there is a ready connection, within deadline.  False: unavailable. */
bool call_ensure_connected(struct transport *tr, uint64_t deadline)
{
	uint64_t started, connect_started;

	if (tr->ctx != NULL)
		return true;
	started = transport_now_ms();
	if (started < tr->next_attempt_ms || started >= deadline)
		return false;

	connect_started = transport_now_us();
	if (!open_connection(tr, deadline)) {
		metrics_redis(METRICS_OP_CONNECT, METRICS_RESULT_UNAVAILABLE, transport_now_us() - connect_started);
		transport_disconnect(tr, "connect failed");
		return false;
	}
	tr->timeout_ms = -1;
	if (!transport_set_timeout(tr, deadline) || !transport_setup(tr, deadline)) {
		metrics_redis(METRICS_OP_CONNECT, METRICS_RESULT_ERROR, transport_now_us() - connect_started);
		transport_disconnect(tr, "connection setup failed");
		return false;
	}
	metrics_redis(METRICS_OP_CONNECT, METRICS_RESULT_OK, transport_now_us() - connect_started);
	tr->connects++;
	if (tr->connects > 1) {
		struct log_line l;

		metrics_inc(METRICS_REDIS_RECONNECTS);
		if (log_begin(&l, LOG_LEVEL_INFO, "redis_reconnected", NULL)) {
			log_int(&l, "reconnects", (long long)tr->connects - 1);
			log_end(&l);
		}
	}
	return true;
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
static void append_script(redisContext *c, const struct transport *tr, struct script_call *call,
                          bool asking)
{
	char replicas[DECIMAL_MAX + 1], timeout[DECIMAL_MAX + 1];
	char command[4096];
	size_t len;

	if (asking)
		redisAppendCommand(c, "ASKING");
	call->argv[1] = tr->sha[call->id];
	call->argvlen[1] = strlen(tr->sha[call->id]);
	len = format_command(command, sizeof(command), call->argc, call->argv, call->argvlen);
	if (len > 0)
		redisAppendFormattedCommand(c, command, len);
	else
		redisAppendCommandArgv(c, call->argc, call->argv, call->argvlen);
	if (call->wait) {
		replicas[decimal_format(replicas, tr->min_replicas)] = '\0';
		timeout[decimal_format(timeout, tr->wait_timeout_ms)] = '\0';
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
static redisReply *run_script_asking(struct transport *tr, const struct redis_node *node,
                                     struct script_call *call, uint64_t deadline)
{
	const struct redis_target *t = &tr->target;
	redisContext *c = transport_connect_node(tr, node, deadline);
	redisReply *reply = NULL;
	int timeout_ms = -1;
	int prefix = t->has_password ? 2 : 1;

	if (c == NULL)
		return NULL;
	metrics_inc(METRICS_REDIS_REDIRECTS);
	if (transport_set_ctx_timeout(c, &timeout_ms, tr->command_timeout_ms, deadline)) {
		transport_append_auth(c, t->user, t->password, t->has_password);
		redisAppendCommand(c, "SCRIPT LOAD %s", tr->script[call->id]);
		append_script(c, tr, call, true);
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
		transport_log_error("ask", c->errstr[0] != '\0' ? c->errstr : "timed out");
	redisFree(c);
	return reply;
}

/* Sleeps a little before a retry, if the deadline allows.  False: it does not. */
static bool pause_before_retry(uint64_t deadline, int ms)
{
	struct timespec ts;

	if (transport_ms_left(deadline, ms + 1) <= ms)
		return false;
	ts.tv_sec = 0;
	ts.tv_nsec = (long)ms * 1000000L;
	nanosleep(&ts, NULL);
	return true;
}

#define MAX_ATTEMPTS 32         /* redirections and retries; the deadline bounds them too */
#define TRYAGAIN_PAUSE_MS 10

/* What the loop does with a reply: return it, or try again after an action. */
enum reply_action {
	ACT_DONE,       /* a result, or an error to report: return the reply */
	ACT_RELOAD,     /* NOSCRIPT: SCRIPT LOAD, then again (once) */
	ACT_MOVE,       /* MOVED: reconnect to the node named, then again */
	ACT_ASK,        /* ASK: run it once on the node named */
	ACT_PAUSE,      /* TRYAGAIN: the slot's keys are split; again shortly */
	ACT_FIND_MASTER,/* READONLY, MASTERDOWN: the master moved; ask where, again */
};

/*
 * Which errors mean "not executed here, try again", per deployment: a
 * redirect outside a cluster, or a replica in single mode (a configuration
 * error), is reported as it is.
 */
static enum reply_action action_for(enum topology_error kind, enum redis_mode mode)
{
	static const enum reply_action cluster[] = {
		[TOPOLOGY_ERR_NOSCRIPT] = ACT_RELOAD, [TOPOLOGY_ERR_MOVED] = ACT_MOVE,
		[TOPOLOGY_ERR_ASK] = ACT_ASK, [TOPOLOGY_ERR_TRYAGAIN] = ACT_PAUSE,
		[TOPOLOGY_ERR_READONLY] = ACT_FIND_MASTER, [TOPOLOGY_ERR_MASTERDOWN] = ACT_FIND_MASTER,
	};
	static const enum reply_action sentinel[] = {
		[TOPOLOGY_ERR_NOSCRIPT] = ACT_RELOAD, [TOPOLOGY_ERR_TRYAGAIN] = ACT_PAUSE,
		[TOPOLOGY_ERR_READONLY] = ACT_FIND_MASTER, [TOPOLOGY_ERR_MASTERDOWN] = ACT_FIND_MASTER,
	};
	static const enum reply_action single[] = {
		[TOPOLOGY_ERR_NOSCRIPT] = ACT_RELOAD, [TOPOLOGY_ERR_TRYAGAIN] = ACT_PAUSE,
	};
	const enum reply_action *table = mode == REDIS_MODE_CLUSTER ? cluster
	                               : mode == REDIS_MODE_SENTINEL ? sentinel : single;
	size_t n = mode == REDIS_MODE_CLUSTER ? sizeof(cluster) / sizeof(cluster[0])
	         : mode == REDIS_MODE_SENTINEL ? sizeof(sentinel) / sizeof(sentinel[0])
	         : sizeof(single) / sizeof(single[0]);

	return (size_t)kind < n ? table[kind] : ACT_DONE;
}

/* The state of one call across its attempts. */
struct attempts {
	uint64_t deadline;
	bool reloaded;
	bool resent;
	int moves;
};

/*
 * One attempt on the connection (made if needed).  NULL: no reply; then
 * *resend says whether the connection, open before, failed as a stale one
 * does (EOF or a reset, not a timeout), so a flagged resend may follow.
 */
static redisReply *attempt(struct transport *tr, struct script_call *call, uint64_t deadline, bool *resend)
{
	bool was_open = tr->ctx != NULL;
	redisReply *reply;
	uint64_t started;
	size_t queued;
	int err, saved_errno;

	*resend = false;
	if (!call_ensure_connected(tr, deadline) || !transport_set_timeout(tr, deadline))
		return NULL;
	errno = 0;
	started = transport_now_us();
	append_script(tr->ctx, tr, call, false);
	queued = sdslen(tr->ctx->obuf);
	reply = read_script(tr->ctx, call, false);
	transport_count_op(script_ops[call->id], reply, started);
	if (reply != NULL) {
		transport_answered(tr);
		return reply;
	}
	err = tr->ctx->err;
	saved_errno = errno;
	/* Redis runs only a command it received whole: a write that sent nothing ran nothing. */
	if (sdslen(tr->ctx->obuf) < queued)
		call->maybe_applied = true;
	transport_disconnect(tr, tr->ctx->errstr);
	/* A timeout (EAGAIN) is never resent: the deadline is spent. */
	*resend = was_open && (err == REDIS_ERR_EOF || err == REDIS_ERR_IO) &&
	          saved_errno != EAGAIN && saved_errno != EWOULDBLOCK;
	return NULL;
}

/* Flags the call as a resend (the script then looks for its own first attempt). */
static void mark_resend(struct transport *tr, struct script_call *call)
{
	tr->next_attempt_ms = 0;
	if (call->resend_arg > 0) {
		call->argv[call->resend_arg] = "1";
		call->argvlen[call->resend_arg] = 1;
	}
}

/*
 * Carries out a retrying action for reply (which it frees, or returns when
 * the attempt ends here).  Returns NULL to go on with the next attempt and
 * sets *done when the call is over (its result in *out).
 */
static redisReply *act(struct transport *tr, struct script_call *call, struct attempts *a,
                       enum reply_action action, redisReply *reply, const struct redis_node *node,
                       bool *done)
{
	struct redis_node scratch;

	*done = false;
	switch (action) {
	case ACT_RELOAD:
		if (a->reloaded)
			break;
		freeReplyObject(reply);
		a->reloaded = true;
		*done = !transport_reload_script(tr, call->id, a->deadline);
		return NULL;
	case ACT_MOVE:
		transport_log_node("redis_moved", node, reply->str);
		freeReplyObject(reply);
		transport_leave(tr);
		tr->node = *node;
		tr->node_known = true;
		/* Nodes that disagree (a slot being handed over) bounce us: slow down. */
		*done = ++a->moves > 1 && !pause_before_retry(a->deadline, TRYAGAIN_PAUSE_MS);
		return NULL;
	case ACT_ASK:
		freeReplyObject(reply);
		reply = run_script_asking(tr, node, call, a->deadline);
		if (reply == NULL)
			call->maybe_applied = true;     /* it may have run there */
		/* TRYAGAIN from there: the keys are split between the two nodes; as below. */
		if (reply == NULL || reply->type != REDIS_REPLY_ERROR ||
		    topology_classify(reply->str, &scratch) != TOPOLOGY_ERR_TRYAGAIN)
			break;
		/* fall through */
	case ACT_PAUSE:
		freeReplyObject(reply);
		*done = !pause_before_retry(a->deadline, TRYAGAIN_PAUSE_MS);
		return NULL;
	case ACT_FIND_MASTER:
		transport_log_node("redis_not_master", &tr->node, reply->str);
		freeReplyObject(reply);
		transport_leave(tr);
		tr->node_known = false;
		*done = !pause_before_retry(a->deadline, TRYAGAIN_PAUSE_MS);
		return NULL;
	case ACT_DONE:
	default:
		break;
	}
	*done = true;
	return reply;
}

redisReply *call_run(struct transport *tr, struct script_call *call)
{
	static const char *const digits[] = { "0", "1", "2", "3", "4", "5" };
	struct attempts a = { .deadline = transport_now_ms() + (uint64_t)tr->connect_timeout_ms +
	                                  (uint64_t)tr->command_timeout_ms };

	call->argv[0] = "EVALSHA";
	call->argvlen[0] = 7;
	call->argv[2] = digits[call->nkeys];
	call->argvlen[2] = 1;
	for (int n = 0; n < MAX_ATTEMPTS; n++) {
		struct redis_node node;
		enum topology_error kind;
		redisReply *reply, *result;
		bool resend, done;

		reply = attempt(tr, call, a.deadline, &resend);
		if (reply == NULL) {
			if (!resend || a.resent)
				return NULL;
			a.resent = true;
			mark_resend(tr, call);
			continue;
		}
		if (reply->type != REDIS_REPLY_ERROR)
			return reply;
		memset(&node, 0, sizeof(node));
		kind = topology_classify(reply->str, &node);
		/* A redirect may name no host (":port"): the one we are talking to. */
		if (node.host[0] == '\0')
			snprintf(node.host, sizeof(node.host), "%s", tr->node.host);
		result = act(tr, call, &a, action_for(kind, tr->target.mode), reply, &node, &done);
		if (done)
			return result;
	}
	return NULL;
}

/* "name:<digits>" in INFO's text; -1 when absent. */
static long long info_field(const char *info, const char *name)
{
	size_t n = strlen(name);

	for (const char *at = info; (at = strstr(at, name)) != NULL; at += n) {
		if ((at == info || at[-1] == '\n') && at[n] == ':') {
			const char *digits = at + n + 1;
			int64_t v;

			return decimal_parse_int64(digits, strspn(digits, "0123456789"), DECIMAL_REFUSE_MINUS_ZERO, &v) ==
			       DECIMAL_OK ? v : -1;
		}
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

/*
 * PING and INFO memory on the connection (made if needed).  false: no answer;
 * then *stale says whether the connection, open before, failed as a stale
 * one does (EOF or a reset: Redis restarted since), so one more try on a new
 * connection may follow, as for a script.
 */
static bool ping_once(struct transport *tr, uint64_t deadline, redisReply **reply, redisReply **info, bool *stale)
{
	bool was_open = tr->ctx != NULL;
	uint64_t started;
	int err, saved_errno;

	*stale = false;
	*reply = *info = NULL;
	if (!call_ensure_connected(tr, deadline) || !transport_set_timeout(tr, deadline))
		return false;
	errno = 0;
	started = transport_now_us();
	redisAppendCommand(tr->ctx, "PING");
	redisAppendCommand(tr->ctx, "INFO memory");
	if (redisGetReply(tr->ctx, (void **)reply) == REDIS_OK &&
	    redisGetReply(tr->ctx, (void **)info) == REDIS_OK) {
		transport_count_op(METRICS_OP_PING, *reply, started);
		return true;
	}
	err = tr->ctx->err;
	saved_errno = errno;
	transport_count_op(METRICS_OP_PING, NULL, started);
	freeReplyObject(*reply);
	*reply = NULL;
	transport_disconnect(tr, tr->ctx->errstr);
	*stale = was_open && (err == REDIS_ERR_EOF || err == REDIS_ERR_IO) &&
	         saved_errno != EAGAIN && saved_errno != EWOULDBLOCK;
	return false;
}

enum call_ping call_ping(struct transport *tr)
{
	uint64_t deadline = transport_now_ms() + (uint64_t)tr->connect_timeout_ms +
	                    (uint64_t)tr->command_timeout_ms;
	redisReply *reply, *info;
	bool ok, full, stale;

	/* A connection Redis closed (a restart) is found stale by the first use: one more try. */
	if (!ping_once(tr, deadline, &reply, &info, &stale) &&
	    (!stale || !ping_once(tr, deadline, &reply, &info, &stale)))
		return CALL_PING_DOWN;
	ok = reply != NULL && reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0;
	full = memory_full(info);
	transport_answered(tr);
	if (!ok)
		transport_log_error("ping", reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
	freeReplyObject(reply);
	freeReplyObject(info);
	return !ok ? CALL_PING_DOWN : full ? CALL_PING_FULL : CALL_PING_OK;
}
