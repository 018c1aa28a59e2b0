#include "store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "decimal.h"
#include "log.h"
#include "metrics.h"
#include "redis_call.h"
#include "scripts.h"
#include "topology.h"
#include "transport.h"

#define KEY_MAX 512
#define TOKEN_LEN 16            /* an attempt token: 64 bits in hex */

struct store {
	struct store_options opt;
	char prefix[CONFIG_PREFIX_MAX + 1];
	char sum_key[KEY_MAX];          /* {prefix}:sum */
	char ledger_key[KEY_MAX];       /* {prefix}:ledger */
	/* Attempt tokens (see lib/store.h, resends): a random start, then one per change. */
	uint64_t token_next;
	struct transport tr;            /* the connection, and the scripts it loads */
};

const char *store_strerror(enum store_status status)
{
	/* The names are log events (abacus.fcgi.c logs a refusal under its status's name). */
	switch (status) {
	case STORE_OK: return "ok";
	case STORE_REPLAYED: return "replayed";
	case STORE_KEY_CONFLICT: return "conflict";
	case STORE_OVERFLOW: return "overflow";
	case STORE_NOT_INTEGER: return "not_integer";
	case STORE_RATE_LIMITED: return "rate_limited";
	case STORE_UNAVAILABLE: return "unavailable";
	case STORE_NOT_REPLICATED: return "not_replicated";
	case STORE_OUTCOME_UNKNOWN: return "outcome_unknown";
	case STORE_FULL: return "redis_full";
	case STORE_NOT_FOUND: return "sum_not_found";
	case STORE_TOO_MANY_SUMS: return "too_many_sums";
	case STORE_STATUS_COUNT:
	default: return "?";
	}
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
	opt->ledger_retention_seconds = cfg->ledger_retention_seconds;
	opt->max_sums = cfg->max_sums;
	opt->rate_limit_per_sum = cfg->rate_limit_per_sum;
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
	snprintf(store->ledger_key, sizeof(store->ledger_key), "{%s}:ledger", store->prefix);
	store->tr.slot = topology_key_slot(store->sum_key, strlen(store->sum_key));
	if (getrandom(&store->token_next, sizeof(store->token_next), 0) != sizeof(store->token_next))
		store->token_next = ((uint64_t)getpid() << 32) ^ transport_now_us();
	store->tr.jitter_state = store->token_next | 1;
	store->tr.target = opt->target;
	store->tr.connect_timeout_ms = opt->connect_timeout_ms;
	store->tr.command_timeout_ms = opt->command_timeout_ms;
	store->tr.min_replicas = opt->min_replicas;
	store->tr.wait_timeout_ms = opt->wait_timeout_ms;
	settings.rate_limit_requests = opt->rate_limit_requests;
	settings.rate_limit_window_seconds = opt->rate_limit_window_seconds;
	settings.idempotency_ttl_seconds = opt->idempotency_ttl_seconds;
	settings.request_deadline_ms = opt->connect_timeout_ms + opt->command_timeout_ms;
	settings.wait_for_replicas = opt->min_replicas > 0;
	settings.ledger_retention_seconds = opt->ledger_retention_seconds;
	for (int i = 0; i < SCRIPT_COUNT; i++) {
		if (!scripts_format((enum script_id)i, &settings, store->tr.script[i], sizeof(store->tr.script[i]))) {
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
	if (store->tr.ctx != NULL)
		redisFree(store->tr.ctx);
	explicit_bzero(store->opt.target.password, sizeof(store->opt.target.password));
	explicit_bzero(store->opt.target.sentinel_password, sizeof(store->opt.target.sentinel_password));
	explicit_bzero(store->tr.target.password, sizeof(store->tr.target.password));
	explicit_bzero(store->tr.target.sentinel_password, sizeof(store->tr.target.sentinel_password));
	free(store);
}

unsigned long store_reconnects(const struct store *store)
{
	return store->tr.connects > 0 ? store->tr.connects - 1 : 0;
}

bool store_connect(struct store *store)
{
	return call_ensure_connected(&store->tr, transport_now_ms() + (uint64_t)store->opt.connect_timeout_ms +
	                                             (uint64_t)store->opt.command_timeout_ms);
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

/* The ledger's page into page's buffer (grown as needed); false when out of memory. */
static bool copy_page(const char *text, size_t len, struct store_text *page)
{
	if (page == NULL)
		return false;
	if (len + 1 > page->cap) {
		char *grown = realloc(page->text, len + 1);

		if (grown == NULL)
			return false;
		page->text = grown;
		page->cap = len + 1;
	}
	memcpy(page->text, text, len);
	page->text[len] = '\0';
	page->len = len;
	return true;
}

/*
 * Decodes a script's reply into res.  The reply is one string, words
 * separated by a space (a Lua table costs Redis 2,800 instructions more to
 * convert, and hiredis six allocations instead of one):
 *   ok <remaining> <sum>         replay <remaining> <sum at the first time>
 *   conflict <remaining>         overflow <remaining>        notint <remaining>
 *   limited <reset_us> <retry_us>
 * remaining is -1 with the limiter off (and for a recognised resend).  The
 * ledger's reply is "ok <remaining> <json page>": the page is copied out.
 */
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
		transport_log_error(op, "unexpected reply shape");
		return STORE_UNAVAILABLE;
	}
	at = reply->str;
	end = reply->str + reply->len;
	word = next_word(&at, end, &len);
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strlen(table[i].name) == len && memcmp(word, table[i].name, len) == 0)
			status = table[i].status;
	if (status == STORE_UNAVAILABLE) {
		transport_log_error(op, "unexpected reply");
		return STORE_UNAVAILABLE;
	}

	if (status == STORE_RATE_LIMITED) {
		if (!next_int(&at, end, &a) || !next_int(&at, end, &b) || !ratelimit_refusal(a, b, &res->budget)) {
			transport_log_error(op, "unexpected reply");
			return STORE_UNAVAILABLE;
		}
		return status;
	}
	if (!next_int(&at, end, &a) ||
	    !ratelimit_admitted(a, store->opt.rate_limit_window_seconds, &res->budget)) {
		transport_log_error(op, "unexpected reply");
		return STORE_UNAVAILABLE;
	}
	/* The ledger's page is the rest of the reply, handed over as it is. */
	if (id == SCRIPT_LEDGER && status == STORE_OK)
		return copy_page(at, (size_t)(end - at), res->page) ? STORE_OK : STORE_UNAVAILABLE;
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

static void put_arg(struct script_call *call, int i, const char *text, size_t len)
{
	call->argv[i] = text;
	call->argvlen[i] = len;
}

static void put_str(struct script_call *call, int i, const char *text)
{
	put_arg(call, i, text, strlen(text));
}

/* The caller's API key id, "-" with auth off (in idempotency key names and ledger entries). */
static const char *key_id_or_dash(const struct caller *caller)
{
	return caller->key_id[0] != '\0' ? caller->key_id : "-";
}

enum store_status store_get(struct store *store, const struct caller *caller,
                            struct store_result *res)
{
	char rl[RATELIMIT_KEY_MAX];
	const char *argv[5];
	size_t argvlen[5];
	struct script_call call = { .id = SCRIPT_GET, .argc = 5, .nkeys = 2, .argv = argv,
	                            .argvlen = argvlen };

	memset(res, 0, sizeof(*res));
	put_str(&call, 3, store->sum_key);
	put_arg(&call, 4, rl, ratelimit_key(store->prefix, caller, rl));
	return finish(call_run(&store->tr, &call), store, &call, res, "get");
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
	at = stpcpy(at, key_id_or_dash(caller));
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

/* A new attempt token (store.h: resends): 16 hex digits. */
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

/* One change's arguments (14 at most: add's). */
struct change {
	const char *argv[14];
	size_t argvlen[14];
	char rl[RATELIMIT_KEY_MAX];
	char record[KEY_MAX];           /* the idempotency record, or the op key */
	char number[DECIMAL_MAX];
	char token[TOKEN_LEN + 1];
	char resend[2];                 /* "0"; call_run makes it "1" on a resend */
};

/*
 * The call of a change: KEYS sum, (record: the caller's), rl, ledger; ARGV
 * from 7: (the number: the caller's), then a fresh attempt token and the
 * resend flag at token_at, token_at + 1.
 */
static void start_change(struct store *store, const struct caller *caller, struct change *ch,
                         struct script_call *call, enum script_id id, int argc, int token_at)
{
	memset(call, 0, sizeof(*call));
	call->id = id;
	call->argc = argc;
	call->nkeys = 4;
	/* cppcheck-suppress ctuuninitvar ; the arrays' addresses, filled below and by the caller */
	call->argv = ch->argv;
	call->argvlen = ch->argvlen;
	call->changes = true;
	call->wait = store->opt.min_replicas > 0;
	put_str(call, 3, store->sum_key);
	put_arg(call, 5, ch->rl, ratelimit_key(store->prefix, caller, ch->rl));
	put_str(call, 6, store->ledger_key);
	put_arg(call, token_at, ch->token, next_token(store, ch->token));
	strcpy(ch->resend, "0");
	call->resend_arg = token_at + 1;
	put_arg(call, call->resend_arg, ch->resend, 1);
}

enum store_status store_add(struct store *store, const struct caller *caller,
                            const struct idem_key *key, int64_t delta, const char *request_id,
                            struct store_result *res)
{
	struct script_call call;
	struct change ch;

	memset(res, 0, sizeof(*res));
	/* ARGV: delta, use_idem, tok, resend, key id, request id, Idempotency-Key (lib/lua/add.lua). */
	start_change(store, caller, &ch, &call, SCRIPT_ADD, 14, 9);
	put_arg(&call, 4, ch.record, key->len > 0 ? idem_key_name(store, caller, key, ch.record)
	                                          : op_key(store, ch.token, ch.record));
	put_arg(&call, 7, ch.number, decimal_format(ch.number, delta));
	put_arg(&call, 8, key->len > 0 ? "1" : "0", 1);
	put_str(&call, 11, key_id_or_dash(caller));
	put_str(&call, 12, request_id != NULL ? request_id : "");
	put_arg(&call, 13, key->len > 0 ? key->text : "", key->len > 0 ? key->len : 0);
	return finish(call_run(&store->tr, &call), store, &call, res, "add");
}

enum store_status store_set(struct store *store, const struct caller *caller, int64_t value, bool reset,
                            const char *request_id, struct store_result *res)
{
	struct script_call call;
	struct change ch;

	memset(res, 0, sizeof(*res));
	/* ARGV: value, tok, resend, op, key id, request id (lib/lua/set.lua). */
	start_change(store, caller, &ch, &call, SCRIPT_SET, 13, 8);
	put_arg(&call, 4, ch.record, op_key(store, ch.token, ch.record));
	put_arg(&call, 7, ch.number, decimal_format(ch.number, value));
	put_str(&call, 10, reset ? "reset" : "set");
	put_str(&call, 11, key_id_or_dash(caller));
	put_str(&call, 12, request_id != NULL ? request_id : "");
	return finish(call_run(&store->tr, &call), store, &call, res, "set");
}

enum store_status store_ledger(struct store *store, const struct caller *caller, const char *after,
                               long limit, struct store_result *res, struct store_text *page)
{
	char rl[RATELIMIT_KEY_MAX];
	char count[DECIMAL_MAX];
	const char *argv[8];
	size_t argvlen[8];
	struct script_call call = { .id = SCRIPT_LEDGER, .argc = 8, .nkeys = 3, .argv = argv,
	                            .argvlen = argvlen };

	memset(res, 0, sizeof(*res));
	res->page = page;
	/* KEYS: ledger, rl, sum.  ARGV: after ('-': from the oldest), count (lib/lua/ledger.lua). */
	put_str(&call, 3, store->ledger_key);
	put_arg(&call, 4, rl, ratelimit_key(store->prefix, caller, rl));
	put_str(&call, 5, store->sum_key);
	put_str(&call, 6, after[0] != '\0' ? after : "-");
	put_arg(&call, 7, count, decimal_format(count, limit));
	return finish(call_run(&store->tr, &call), store, &call, res, "ledger");
}

enum store_status store_ping(struct store *store)
{
	static const enum store_status status[] = {
		[CALL_PING_DOWN] = STORE_UNAVAILABLE, [CALL_PING_OK] = STORE_OK, [CALL_PING_FULL] = STORE_FULL,
	};

	return status[call_ping(&store->tr)];
}

/* TODO(#19): being written; these placeholders let the handlers build meanwhile. */
enum store_status store_sum_get(struct store *store, const char *name, const struct caller *caller,
                                struct store_result *res)
{
	(void)name;
	return store_get(store, caller, res);
}

enum store_status store_sum_add(struct store *store, const char *name, const struct caller *caller,
                                const struct idem_key *key, int64_t delta, const char *request_id,
                                struct store_result *res)
{
	(void)name;
	return store_add(store, caller, key, delta, request_id, res);
}

enum store_status store_sum_set(struct store *store, const char *name, const struct caller *caller,
                                int64_t value, enum store_set_op op, const char *request_id,
                                struct store_result *res)
{
	(void)name;
	return store_set(store, caller, value, op != STORE_SET_VALUE, request_id, res);
}

enum store_status store_sum_ledger(struct store *store, const char *name, const struct caller *caller,
                                   const char *after, long limit, struct store_result *res,
                                   struct store_text *page)
{
	(void)name;
	return store_ledger(store, caller, after, limit, res, page);
}

enum store_status store_list(struct store *store, const struct caller *caller, const char *after, long limit,
                             struct store_sum_entry *entries, size_t *count, bool *more,
                             struct store_result *res)
{
	(void)after;
	(void)limit;
	*count = 0;
	*more = false;
	(void)entries;
	return store_get(store, caller, res);
}
