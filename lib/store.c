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
#include "router.h"
#include "scripts.h"
#include "topology.h"
#include "transport.h"

#define KEY_MAX 512
#define TOKEN_LEN 16            /* an attempt token: 64 bits in hex */

struct store {
	struct store_options opt;
	char prefix[CONFIG_PREFIX_MAX + 1];
	char default_tag[RATELIMIT_TAG_MAX + 1]; /* "{prefix}": the default sum's hash tag, the caller's budget's */
	/* Attempt tokens (see lib/store.h, resends): a random start, then one per change. */
	uint64_t token_next;
	char scripts[SCRIPT_COUNT][SCRIPT_MAX]; /* what every connection loads */
	unsigned default_slot;          /* the slot of {prefix}: the default sum, the registry */
	unsigned long memo_reconnects;  /* reconnections when the remembered refusals were last forgotten */
	struct router router;           /* the connection(s): one per Cluster master */
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
	struct transport tr;

	if (store == NULL)
		return NULL;
	store->opt = *opt;
	snprintf(store->prefix, sizeof(store->prefix), "%s", opt->prefix);
	store->opt.prefix = store->prefix;
	snprintf(store->default_tag, sizeof(store->default_tag), "{%s}", store->prefix);
	store->default_slot = topology_key_slot(store->default_tag, strlen(store->default_tag));
	if (getrandom(&store->token_next, sizeof(store->token_next), 0) != sizeof(store->token_next))
		store->token_next = ((uint64_t)getpid() << 32) ^ transport_now_us();
	memset(&tr, 0, sizeof(tr));
	tr.slot = store->default_slot;
	tr.jitter_state = store->token_next | 1;
	tr.target = opt->target;
	tr.connect_timeout_ms = opt->connect_timeout_ms;
	tr.command_timeout_ms = opt->command_timeout_ms;
	tr.min_replicas = opt->min_replicas;
	tr.wait_timeout_ms = opt->wait_timeout_ms;
	tr.script = store->scripts;
	settings.rate_limit_requests = opt->rate_limit_requests;
	settings.rate_limit_window_seconds = opt->rate_limit_window_seconds;
	settings.idempotency_ttl_seconds = opt->idempotency_ttl_seconds;
	settings.request_deadline_ms = opt->connect_timeout_ms + opt->command_timeout_ms;
	settings.wait_for_replicas = opt->min_replicas > 0;
	settings.ledger_retention_seconds = opt->ledger_retention_seconds;
	for (int i = 0; i < SCRIPT_COUNT; i++) {
		if (!scripts_format((enum script_id)i, &settings, store->scripts[i], sizeof(store->scripts[i]))) {
			free(store);
			return NULL;
		}
	}
	router_init(&store->router, &tr);
	explicit_bzero(tr.target.password, sizeof(tr.target.password));
	explicit_bzero(tr.target.sentinel_password, sizeof(tr.target.sentinel_password));
	return store;
}

void store_free(struct store *store)
{
	if (store == NULL)
		return;
	router_free(&store->router);
	explicit_bzero(store->opt.target.password, sizeof(store->opt.target.password));
	explicit_bzero(store->opt.target.sentinel_password, sizeof(store->opt.target.sentinel_password));
	explicit_bzero(store->router.main.target.password, sizeof(store->router.main.target.password));
	explicit_bzero(store->router.main.target.sentinel_password, sizeof(store->router.main.target.sentinel_password));
	free(store);
}

unsigned long store_reconnects(const struct store *store)
{
	return router_reconnects(&store->router);
}

bool store_connect(struct store *store)
{
	return call_ensure_connected(router_pick(&store->router, store->default_slot),
	                             transport_now_ms() + (uint64_t)store->opt.connect_timeout_ms +
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

/* What a reply may say besides a store_status (named sums: lib/lua/add.lua, set.lua). */
struct reply_extra {
	bool unregistered;              /* a named sum to create, whose name is not registered yet */
	char token[TOKEN_LEN + 2];      /* "deleted": the registration token the sum kept ('-': none) */
};

/*
 * Decodes a script's reply into res.  The reply is one string, words
 * separated by a space (a Lua table costs Redis 2,800 instructions more to
 * convert, and hiredis six allocations instead of one):
 *   ok <remaining> <sum>         replay <remaining> <sum at the first time>
 *   conflict <remaining>         overflow <remaining>        notint <remaining>
 *   missing <remaining>          unregistered <remaining>    deleted <remaining> <token>
 *   limited <reset_us> <retry_us>
 * remaining is -1 with the limiter off (and for a recognised resend).  The
 * ledger's and the listing's reply is "ok <remaining> <text>": the text is
 * copied out to res->page.
 */
static enum store_status decode_reply(const redisReply *reply, const struct store *store,
                                      struct store_result *res, enum script_id id, const char *op,
                                      struct reply_extra *extra)
{
	enum word { REPLY_OK, REPLY_REPLAY, REPLY_CONFLICT, REPLY_OVERFLOW, REPLY_NOTINT, REPLY_LIMITED, REPLY_MISSING, REPLY_UNREGISTERED,
	            REPLY_DELETED, REPLY_NONE };
	static const struct { const char *name; enum store_status status; } table[REPLY_NONE] = {
		[REPLY_OK] = { "ok", STORE_OK }, [REPLY_REPLAY] = { "replay", STORE_REPLAYED },
		[REPLY_CONFLICT] = { "conflict", STORE_KEY_CONFLICT }, [REPLY_OVERFLOW] = { "overflow", STORE_OVERFLOW },
		[REPLY_NOTINT] = { "notint", STORE_NOT_INTEGER }, [REPLY_LIMITED] = { "limited", STORE_RATE_LIMITED },
		[REPLY_MISSING] = { "missing", STORE_NOT_FOUND }, [REPLY_UNREGISTERED] = { "unregistered", STORE_NOT_FOUND },
		[REPLY_DELETED] = { "deleted", STORE_OK },
	};
	enum word w = REPLY_NONE;
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
	for (int i = 0; i < REPLY_NONE; i++)
		if (strlen(table[i].name) == len && memcmp(word, table[i].name, len) == 0)
			w = (enum word)i;
	if (w == REPLY_NONE) {
		transport_log_error(op, "unexpected reply");
		return STORE_UNAVAILABLE;
	}

	if (w == REPLY_LIMITED) {
		if (!next_int(&at, end, &a) || !next_int(&at, end, &b) || !ratelimit_refusal(a, b, &res->budget)) {
			transport_log_error(op, "unexpected reply");
			return STORE_UNAVAILABLE;
		}
		return STORE_RATE_LIMITED;
	}
	if (!next_int(&at, end, &a) ||
	    !ratelimit_admitted(a, store->opt.rate_limit_window_seconds, &res->budget)) {
		transport_log_error(op, "unexpected reply");
		return STORE_UNAVAILABLE;
	}
	if (w == REPLY_UNREGISTERED && extra != NULL)
		extra->unregistered = true;
	if (w == REPLY_DELETED) {
		word = next_word(&at, end, &len);
		if (extra == NULL || len == 0 || len >= sizeof(extra->token)) {
			transport_log_error(op, "unexpected reply");
			return STORE_UNAVAILABLE;
		}
		memcpy(extra->token, word, len);
		extra->token[len] = '\0';
		return STORE_OK;
	}
	/* The limiter alone has nothing more to say. */
	if (id == SCRIPT_ADMIT && w == REPLY_OK)
		return STORE_OK;
	/* The ledger's page, the listing's names: the rest of the reply, handed over as it is. */
	if ((id == SCRIPT_LEDGER || id == SCRIPT_LIST) && w == REPLY_OK)
		return copy_page(at, (size_t)(end - at), res->page) ? STORE_OK : STORE_UNAVAILABLE;
	/* The sum is the rest of the reply: a corrupt one, even with spaces, is not an integer. */
	if ((w == REPLY_OK || w == REPLY_REPLAY) && !store_parse_int64(at, (size_t)(end - at), &res->sum))
		return STORE_NOT_INTEGER;
	res->replayed = w == REPLY_REPLAY;
	return table[w].status;
}

/*
 * Decodes a reply into res.  A write that WAIT saw reach fewer replicas than
 * required is NOT_REPLICATED: it is applied on the master, so the client's
 * retry with the same key replays it (and waits again).
 */
static enum store_status finish(redisReply *reply, const struct store *store,
                                const struct script_call *call, struct store_result *res,
                                const char *op, struct reply_extra *extra)
{
	enum store_status status;

	if (reply == NULL)
		return call->changes && call->maybe_applied ? STORE_OUTCOME_UNKNOWN : STORE_UNAVAILABLE;
	status = decode_reply(reply, store, res, call->id, op, extra);
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

/* ---- keys ---- */

/*
 * The keys of one sum.  The default sum's hash tag is {prefix}, as it always
 * was; a named sum's is {prefix/name} ('/' is in neither a prefix nor a
 * name, so no name's keys can be another deployment's).
 */
struct sum_keys {
	bool named;
	char tag[RATELIMIT_TAG_MAX + 1];
	size_t tag_len;
	char sum[KEY_MAX];              /* <tag>:sum */
	char ledger[KEY_MAX];           /* <tag>:ledger (filled by the calls that use it) */
	char reg[KEY_MAX];              /* <tag>:reg: the registration's token (named sums; changes) */
	char rl[RATELIMIT_KEY_MAX];     /* the limiter's key for this caller and sum */
	size_t rl_len;
	bool own_budget;                /* a named sum with one budget per caller and sum (ABACUS_RATE_LIMIT_SCOPE=sum) */
	bool rl_apart;                  /* the limiter lives in another slot: run it first, alone */
	char name[SUMNAME_MAX + 1];     /* "default" for the default sum */
	const struct caller *caller;
};

/* "<tag>:<suffix>" into out (KEY_MAX bytes); returns its length. */
static size_t tag_key(const struct sum_keys *k, const char *suffix, char *out)
{
	char *at = out;

	memcpy(at, k->tag, k->tag_len);
	at = stpcpy(at + k->tag_len, suffix);
	return (size_t)(at - out);
}

/*
 * The keys of sum `name` (NULL: the default sum) every call needs: its tag,
 * its value, the caller's limiter (the caller's budget, "{prefix}:rl:<id>",
 * or with one budget per sum under the sum's tag).  A change adds its
 * ledger's and registration's (change_keys).  No printf: this runs on every
 * request.  False for a name outside the rules (never the default sum's).
 */
static bool sum_keys(const struct store *store, const char *name, const struct caller *caller,
                     struct sum_keys *k)
{
	size_t len = name != NULL ? strnlen(name, SUMNAME_MAX + 1) : 0;
	char *at;

	if (name != NULL && !sumname_valid(name, len))
		return false;
	k->named = name != NULL && !sumname_is_default(name, len);
	if (k->named) {
		at = stpcpy(k->tag, "{");
		at = stpcpy(at, store->prefix);
		*at++ = '/';
		memcpy(at, name, len);
		at = stpcpy(at + len, "}");
		memcpy(k->name, name, len + 1);
	} else {
		at = stpcpy(k->tag, store->default_tag);
		memcpy(k->name, SUMNAME_DEFAULT, sizeof(SUMNAME_DEFAULT));
	}
	k->tag_len = (size_t)(at - k->tag);
	k->caller = caller;
	tag_key(k, ":sum", k->sum);
	k->own_budget = k->named && store->opt.rate_limit_per_sum;
	k->rl_len = ratelimit_key(k->own_budget ? k->tag : store->default_tag, caller, k->rl);
	/* In a Cluster a script may touch one slot only: the caller's budget is elsewhere. */
	k->rl_apart = k->named && !k->own_budget && store->opt.target.mode == REDIS_MODE_CLUSTER &&
	              store->opt.rate_limit_requests > 0;
	return true;
}

/* ---- a script's arguments ---- */

#define ARGS_MAX 16

/* EVALSHA's arguments: slots 0-2 are call_run's (EVALSHA, sha, numkeys), then KEYS, then ARGV. */
struct args {
	const char *v[ARGS_MAX];
	size_t len[ARGS_MAX];
	int n;
	int nkeys;
};

static void args_start(struct args *a)
{
	a->n = 3;
	a->nkeys = 0;
}

/* Appends one argument; returns its index. */
static int push(struct args *a, const char *text, size_t len)
{
	a->v[a->n] = text;
	a->len[a->n] = len;
	return a->n++;
}

static int push_str(struct args *a, const char *text)
{
	return push(a, text, strlen(text));
}

/* Appends a key; keys come before every ARGV. */
static void push_key(struct args *a, const char *key, size_t len)
{
	push(a, key, len);
	a->nkeys++;
}

/* The sum's script's last key: the limiter's, unless it runs apart (then the script runs without it). */
static void push_limiter_key(struct args *a, const struct sum_keys *k)
{
	if (!k->rl_apart)
		push_key(a, k->rl, k->rl_len);
}

static void call_with(struct script_call *call, enum script_id id, struct args *a)
{
	memset(call, 0, sizeof(*call));
	call->id = id;
	call->argc = a->n;
	call->nkeys = a->nkeys;
	call->argv = a->v;
	call->argvlen = a->len;
}

/* The caller's API key id, "-" with auth off (in idempotency key names and ledger entries). */
static const char *key_id_or_dash(const struct caller *caller)
{
	return caller->key_id[0] != '\0' ? caller->key_id : "-";
}

/* Runs a call and decodes its reply. */
static enum store_status run(struct store *store, struct script_call *call, struct store_result *res,
                             const char *op, struct reply_extra *extra)
{
	return finish(router_call(&store->router, call), store, call, res, op, extra);
}

/*
 * The limiter alone, on the caller's slot (a named sum in a Cluster with one
 * budget per caller: docs/OPERATIONS.md).  STORE_OK: admitted, res->budget
 * says what is left; STORE_RATE_LIMITED, or a failure.
 */
static enum store_status admit_apart(struct store *store, const struct sum_keys *k, struct store_result *res)
{
	struct script_call call;
	struct args a;

	args_start(&a);
	push_key(&a, k->rl, k->rl_len);
	call_with(&call, SCRIPT_ADMIT, &a);
	return run(store, &call, res, "admit", NULL);
}

/*
 * Whether this worker may answer the caller's refusal from memory
 * (lib/ratelimit.h, the local refusal): the memory holds one budget per
 * caller, so not with one budget per caller and sum.  A new connection may
 * be a restarted or failed-over Redis, where every budget is free again:
 * then everything remembered is forgotten.
 */
static bool refusal_remembered(struct store *store, const struct sum_keys *k, struct store_result *res,
                               int64_t *asked_at_us)
{
	unsigned long reconnects = store_reconnects(store);

	if (reconnects != store->memo_reconnects) {
		store->memo_reconnects = reconnects;
		ratelimit_forget_refusals();
	}
	*asked_at_us = ratelimit_clock_us();
	return store->opt.rate_limit_requests > 0 && !k->own_budget &&
	       ratelimit_refused_here(k->caller, *asked_at_us, &res->budget);
}

/*
 * Runs a sum's script, after the limiter when it runs apart: the budget the
 * caller sees is then the limiter's (the script ran without it).  A caller
 * refused a moment ago is refused again here, without Redis.
 */
static enum store_status run_for_sum(struct store *store, const struct sum_keys *k, struct script_call *call,
                                     struct store_result *res, const char *op, struct reply_extra *extra)
{
	struct ratelimit_budget budget;
	enum store_status status;
	int64_t asked_at_us;

	if (refusal_remembered(store, k, res, &asked_at_us))
		return STORE_RATE_LIMITED;
	if (!k->rl_apart) {
		status = run(store, call, res, op, extra);
	} else {
		status = admit_apart(store, k, res);
		if (status == STORE_OK) {
			budget = res->budget;
			status = run(store, call, res, op, extra);
			res->budget = budget;
		}
	}
	if (status == STORE_RATE_LIMITED && !k->own_budget)
		ratelimit_remember_refusal(k->caller, asked_at_us, &res->budget);
	return status;
}

/* ---- reading ---- */

enum store_status store_sum_get(struct store *store, const char *name, const struct caller *caller,
                                struct store_result *res)
{
	struct sum_keys k;
	struct script_call call;
	struct args a;

	memset(res, 0, sizeof(*res));
	if (!sum_keys(store, name, caller, &k))
		return STORE_NOT_FOUND;
	/* KEYS: sum, [rl].  ARGV: named (lib/lua/get.lua). */
	args_start(&a);
	push_key(&a, k.sum, strlen(k.sum));
	push_limiter_key(&a, &k);
	push(&a, k.named ? "1" : "0", 1);
	call_with(&call, SCRIPT_GET, &a);
	return run_for_sum(store, &k, &call, res, "get", NULL);
}

enum store_status store_get(struct store *store, const struct caller *caller, struct store_result *res)
{
	return store_sum_get(store, NULL, caller, res);
}

enum store_status store_sum_ledger(struct store *store, const char *name, const struct caller *caller,
                                   const char *after, long limit, struct store_result *res,
                                   struct store_text *page)
{
	char count[DECIMAL_MAX];
	struct sum_keys k;
	struct script_call call;
	struct args a;

	memset(res, 0, sizeof(*res));
	res->page = page;
	if (!sum_keys(store, name, caller, &k))
		return STORE_NOT_FOUND;
	/* KEYS: ledger, sum, [rl].  ARGV: after ('-': from the oldest), count, named (lib/lua/ledger.lua). */
	args_start(&a);
	push_key(&a, k.ledger, tag_key(&k, ":ledger", k.ledger));
	push_key(&a, k.sum, strlen(k.sum));
	push_limiter_key(&a, &k);
	push_str(&a, after[0] != '\0' ? after : "-");
	push(&a, count, decimal_format(count, limit));
	push(&a, k.named ? "1" : "0", 1);
	call_with(&call, SCRIPT_LEDGER, &a);
	return run_for_sum(store, &k, &call, res, "ledger", NULL);
}

enum store_status store_ledger(struct store *store, const struct caller *caller, const char *after,
                               long limit, struct store_result *res, struct store_text *page)
{
	return store_sum_ledger(store, NULL, caller, after, limit, res, page);
}

/* ---- changes ---- */

/* "<tag>:idem:<key id, or - with auth off>:<key>"; every part is bounded, so it fits. */
static size_t idem_key_name(const struct sum_keys *k, const struct caller *caller,
                            const struct idem_key *key, char *out)
{
	char *at = out;

	_Static_assert(sizeof(k->tag) + sizeof(caller->key_id) + IDEM_KEY_MAX + 16 <= KEY_MAX,
	               "idempotency key name fits");
	at += tag_key(k, ":idem:", at);
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

/* One change's arguments and the text they point into. */
struct change {
	struct sum_keys k;
	struct args a;
	char record[KEY_MAX];           /* the idempotency record, or the op key */
	char number[DECIMAL_MAX];
	char token[TOKEN_LEN + 1];
	char resend[2];                 /* "0"; call_run makes it "1" on a resend */
	char registration[24];          /* '' (default sum), '-' (not registered yet) or the registration's token */
	int registration_at;            /* its argument's index */
};

/* One call of the registry (lib/lua/registry.lua): KEYS names, tokens, seq; ARGV op, name, arg. */
static redisReply *registry_call(struct store *store, const char *op, const char *name, const char *arg,
                                 struct script_call *call)
{
	char names[KEY_MAX], tokens[KEY_MAX], seq[KEY_MAX];
	struct args a;

	snprintf(names, sizeof(names), "{%s}:sums", store->prefix);
	snprintf(tokens, sizeof(tokens), "{%s}:sums:tokens", store->prefix);
	snprintf(seq, sizeof(seq), "{%s}:sums:seq", store->prefix);
	args_start(&a);
	push_key(&a, names, strlen(names));
	push_key(&a, tokens, strlen(tokens));
	push_key(&a, seq, strlen(seq));
	push_str(&a, op);
	push_str(&a, name);
	push_str(&a, arg);
	call_with(call, SCRIPT_REGISTRY, &a);
	/* A name must outlive a failover as the sum does. */
	call->wait = store->opt.min_replicas > 0;
	return router_call(&store->router, call);
}

/* A registry call's answer that is neither ok nor full: logged, and what it means. */
static enum store_status registry_failure(const redisReply *reply, const char *op)
{
	if (reply == NULL)
		return STORE_UNAVAILABLE;
	if (reply->type == REDIS_REPLY_ERROR) {
		log_script_error(SCRIPT_REGISTRY, op, reply->str);
		return strncmp(reply->str, "OOM ", 4) == 0 ? STORE_FULL : STORE_UNAVAILABLE;
	}
	transport_log_error(op, "unexpected reply");
	return STORE_UNAVAILABLE;
}

/*
 * A named sum's name, registered: the registration's token into
 * ch->registration, or STORE_TOO_MANY_SUMS.  With WAIT configured, a
 * registration too few replicas confirmed is STORE_NOT_REPLICATED (the
 * client's retry registers again).
 */
static enum store_status register_name(struct store *store, struct change *ch)
{
	char max[DECIMAL_MAX + 1];
	struct script_call call;
	redisReply *reply;
	enum store_status status;

	max[decimal_format(max, store->opt.max_sums)] = '\0';
	reply = registry_call(store, "add", ch->k.name, max, &call);
	if (reply != NULL && reply->type == REDIS_REPLY_STRING && strcmp(reply->str, "full") == 0) {
		status = STORE_TOO_MANY_SUMS;
	} else if (reply != NULL && reply->type == REDIS_REPLY_STRING && strncmp(reply->str, "ok ", 3) == 0 &&
	           reply->len - 3 < sizeof(ch->registration)) {
		memcpy(ch->registration, reply->str + 3, reply->len - 3);
		ch->registration[reply->len - 3] = '\0';
		status = call.wait && call.acked < store->opt.min_replicas ? STORE_NOT_REPLICATED : STORE_OK;
	} else {
		status = registry_failure(reply, "register");
	}
	freeReplyObject(reply);
	return status;
}

/*
 * Removes a name from the registry: "remove" when the registry still holds
 * the deleted sum's token, "ghost" when it is registered without a sum and
 * its registration is too old for any creation to be under way.  Left
 * behind, a name is only listed-but-absent (skipped) and counted.
 */
static void unregister_name(struct store *store, const char *name, const char *how, const char *arg)
{
	struct script_call call;
	redisReply *reply = registry_call(store, how, name, arg, &call);

	if (reply == NULL || reply->type != REDIS_REPLY_STRING)
		(void)registry_failure(reply, "unregister");
	freeReplyObject(reply);
}

/* A name registered without a sum, older than any creation can take (the request's deadline and a minute). */
static void remove_ghost(struct store *store, const char *name)
{
	char grace[DECIMAL_MAX + 1];

	grace[decimal_format(grace, (int64_t)store->opt.connect_timeout_ms + store->opt.command_timeout_ms + 60000)] = '\0';
	unregister_name(store, name, "ghost", grace);
}

/*
 * The start of a change: KEYS sum, record, ledger, reg, [rl]; ARGV from the
 * caller's first (the number), then a fresh attempt token and the resend flag.
 * The record key is left for the caller (it may need the token).
 */
static bool start_change(struct store *store, const char *name, const struct caller *caller, struct change *ch)
{
	if (!sum_keys(store, name, caller, &ch->k))
		return false;
	args_start(&ch->a);
	next_token(store, ch->token);
	strcpy(ch->resend, "0");
	snprintf(ch->registration, sizeof(ch->registration), "%s", ch->k.named ? "-" : "");
	return true;
}

static void push_change_keys(struct change *ch, size_t record_len)
{
	push_key(&ch->a, ch->k.sum, strlen(ch->k.sum));
	push_key(&ch->a, ch->record, record_len);
	push_key(&ch->a, ch->k.ledger, tag_key(&ch->k, ":ledger", ch->k.ledger));
	push_key(&ch->a, ch->k.reg, tag_key(&ch->k, ":reg", ch->k.reg));
	push_limiter_key(&ch->a, &ch->k);
}

/* The call of a change, ready for call_run (resend flag and WAIT as configured). */
static void change_call(struct store *store, struct change *ch, enum script_id id, int resend_at,
                        struct script_call *call)
{
	call_with(call, id, &ch->a);
	call->changes = true;
	call->wait = store->opt.min_replicas > 0;
	call->resend_arg = resend_at;
}

/*
 * Runs a change; a named sum that does not exist yet gets its name
 * registered first, and the change runs again with the registration (two
 * more round trips, once per sum's life).  The request was admitted by the
 * limiter once: a limiter that runs apart is not asked again, and one in the
 * script did not count the first call (it answered "unregistered" before).
 */
static enum store_status run_change(struct store *store, struct change *ch, enum script_id id, int resend_at,
                                    struct store_result *res, const char *op, struct reply_extra *extra)
{
	struct ratelimit_budget budget;
	struct script_call call;
	enum store_status status;

	change_call(store, ch, id, resend_at, &call);
	status = run_for_sum(store, &ch->k, &call, res, op, extra);
	/* A DELETE racing the creation can undo a registration: a few tries, then 503. */
	for (int tries = 0; extra->unregistered && tries < 3; tries++) {
		budget = res->budget;
		status = register_name(store, ch);
		if (status != STORE_OK)
			return status;
		ch->a.len[ch->registration_at] = strlen(ch->registration);
		extra->unregistered = false;
		change_call(store, ch, id, resend_at, &call);
		status = run(store, &call, res, op, extra);
		if (ch->k.rl_apart)
			res->budget = budget;
	}
	return extra->unregistered ? STORE_UNAVAILABLE : status;
}

/* "<tag>:op:<token>": where a change without an Idempotency-Key leaves its token. */
static size_t op_key(const struct change *ch, char *out)
{
	char *at = out + tag_key(&ch->k, ":op:", out);

	at = stpcpy(at, ch->token);
	return (size_t)(at - out);
}

enum store_status store_sum_add(struct store *store, const char *name, const struct caller *caller,
                                const struct idem_key *key, int64_t delta, const char *request_id,
                                struct store_result *res)
{
	struct reply_extra extra = { 0 };
	struct change ch;
	int resend_at;

	memset(res, 0, sizeof(*res));
	if (!start_change(store, name, caller, &ch))
		return STORE_NOT_FOUND;
	push_change_keys(&ch, key->len > 0 ? idem_key_name(&ch.k, caller, key, ch.record) : op_key(&ch, ch.record));
	/* ARGV: delta, use_idem, tok, resend, key id, request id, Idempotency-Key, registration (lib/lua/add.lua). */
	push(&ch.a, ch.number, decimal_format(ch.number, delta));
	push(&ch.a, key->len > 0 ? "1" : "0", 1);
	push(&ch.a, ch.token, TOKEN_LEN);
	resend_at = push(&ch.a, ch.resend, 1);
	push_str(&ch.a, key_id_or_dash(caller));
	push_str(&ch.a, request_id != NULL ? request_id : "");
	push(&ch.a, key->len > 0 ? key->text : "", key->len > 0 ? key->len : 0);
	ch.registration_at = push_str(&ch.a, ch.registration);
	return run_change(store, &ch, SCRIPT_ADD, resend_at, res, "add", &extra);
}

enum store_status store_add(struct store *store, const struct caller *caller, const struct idem_key *key,
                            int64_t delta, const char *request_id, struct store_result *res)
{
	return store_sum_add(store, NULL, caller, key, delta, request_id, res);
}

enum store_status store_sum_set(struct store *store, const char *name, const struct caller *caller,
                                int64_t value, enum store_set_op op, const char *request_id,
                                struct store_result *res)
{
	static const char *const op_names[] = {
		[STORE_SET_VALUE] = "set", [STORE_SET_RESET] = "reset", [STORE_SET_DELETE] = "delete",
	};
	struct reply_extra extra = { 0 };
	enum store_status status;
	struct change ch;
	int resend_at;

	memset(res, 0, sizeof(*res));
	if (!start_change(store, name, caller, &ch))
		return STORE_NOT_FOUND;
	/* The default sum always exists: its DELETE is a reset to 0. */
	if (op == STORE_SET_DELETE) {
		value = 0;
		if (!ch.k.named)
			op = STORE_SET_RESET;
	}
	push_change_keys(&ch, op_key(&ch, ch.record));
	/* ARGV: value, tok, resend, op, key id, request id, registration (lib/lua/set.lua). */
	push(&ch.a, ch.number, decimal_format(ch.number, value));
	push(&ch.a, ch.token, TOKEN_LEN);
	resend_at = push(&ch.a, ch.resend, 1);
	push_str(&ch.a, op_names[op]);
	push_str(&ch.a, key_id_or_dash(caller));
	push_str(&ch.a, request_id != NULL ? request_id : "");
	ch.registration_at = push_str(&ch.a, ch.registration);
	status = run_change(store, &ch, SCRIPT_SET, resend_at, res, op_names[op], &extra);
	if (op == STORE_SET_DELETE && (status == STORE_OK || status == STORE_NOT_REPLICATED)) {
		if (strcmp(extra.token, "-") != 0)
			unregister_name(store, ch.k.name, "remove", extra.token);
		res->sum = 0;
	} else if (op == STORE_SET_DELETE && status == STORE_NOT_FOUND) {
		remove_ghost(store, ch.k.name);     /* registered by a creation that never finished? */
	}
	return status;
}

enum store_status store_set(struct store *store, const struct caller *caller, int64_t value, bool reset,
                            const char *request_id, struct store_result *res)
{
	return store_sum_set(store, NULL, caller, value, reset ? STORE_SET_RESET : STORE_SET_VALUE, request_id, res);
}

/* ---- the listing ---- */

/* One sum's value for the listing (lib/lua/peek.lua): STORE_OK, STORE_NOT_FOUND, STORE_NOT_INTEGER. */
static enum store_status peek(struct store *store, const char *name, struct store_sum_entry *e)
{
	static const struct caller nobody;
	struct store_result res;
	struct script_call call;
	struct sum_keys k;
	struct args a;
	enum store_status status;

	memset(&res, 0, sizeof(res));
	if (!sum_keys(store, name, &nobody, &k))
		return STORE_NOT_FOUND;
	args_start(&a);
	push_key(&a, k.sum, strlen(k.sum));
	call_with(&call, SCRIPT_PEEK, &a);
	status = run(store, &call, &res, "peek", NULL);
	if (status == STORE_NOT_FOUND && !k.named)
		status = STORE_OK;              /* the default sum always exists: unset, it reads 0 */
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->sum = status == STORE_OK ? res.sum : 0;
	e->not_integer = status == STORE_NOT_INTEGER;
	return status;
}

/*
 * The page's names: the registry's (up to limit + 1, after `after`, in byte
 * order) with "default" placed among them by a byte comparison.  Returns how
 * many, at most limit + 1 (one more than the page: more follow).
 */
static size_t page_names(const struct store_text *reply, const char *after, long limit,
                         char names[][SUMNAME_MAX + 1])
{
	const char *at = reply->text, *end = reply->text + reply->len, *word;
	bool default_due = strcmp(SUMNAME_DEFAULT, after) > 0;
	size_t n = 0, len;

	while (at < end && n < (size_t)limit + 1) {
		word = next_word(&at, end, &len);
		if (len == 0 || len > SUMNAME_MAX)
			continue;
		memcpy(names[n], word, len);
		names[n][len] = '\0';
		if (default_due && strcmp(SUMNAME_DEFAULT, names[n]) < 0) {
			memcpy(names[n + 1], names[n], len + 1);
			memcpy(names[n], SUMNAME_DEFAULT, sizeof(SUMNAME_DEFAULT));
			n++;
			default_due = false;
		}
		n++;
	}
	if (default_due && n < (size_t)limit + 1)
		memcpy(names[n++], SUMNAME_DEFAULT, sizeof(SUMNAME_DEFAULT));
	return n;
}

enum store_status store_list(struct store *store, const struct caller *caller, const char *after, long limit,
                             struct store_sum_entry *entries, size_t *count, char next[SUMNAME_MAX + 1],
                             struct store_result *res)
{
	static struct store_text reply;
	static char names[STORE_LIST_LIMIT_MAX + 2][SUMNAME_MAX + 1];
	char registry[KEY_MAX], count_text[DECIMAL_MAX];
	struct script_call call;
	struct sum_keys k;
	struct args a;
	enum store_status status;
	size_t n;

	memset(res, 0, sizeof(*res));
	*count = 0;
	next[0] = '\0';
	if (limit < 1 || limit > STORE_LIST_LIMIT_MAX)
		return STORE_UNAVAILABLE;
	if (after == NULL)
		after = "";
	res->page = &reply;
	(void)sum_keys(store, NULL, caller, &k);   /* the default sum's: the registry's slot, the caller's limiter */
	snprintf(registry, sizeof(registry), "{%s}:sums", store->prefix);
	/* KEYS: names, [rl].  ARGV: after, count: one more than the page, to know whether more follow. */
	args_start(&a);
	push_key(&a, registry, strlen(registry));
	push_key(&a, k.rl, k.rl_len);
	push_str(&a, after);
	push(&a, count_text, decimal_format(count_text, limit + 1));
	call_with(&call, SCRIPT_LIST, &a);
	status = run_for_sum(store, &k, &call, res, "list", NULL);
	res->page = NULL;
	if (status != STORE_OK)
		return status;
	n = page_names(&reply, after, limit, names);
	if (n > (size_t)limit) {
		n = (size_t)limit;
		snprintf(next, SUMNAME_MAX + 1, "%s", names[n - 1]);
	}
	/* Each name's value, where it lives; a name without a sum (being created, deleted, or a ghost) is left out. */
	for (size_t i = 0; i < n; i++) {
		status = peek(store, names[i], &entries[*count]);
		if (status == STORE_OK || status == STORE_NOT_INTEGER)
			(*count)++;
		else if (status == STORE_NOT_FOUND)
			remove_ghost(store, names[i]);
		else
			return status;
	}
	return STORE_OK;
}

enum store_status store_ping(struct store *store)
{
	static const enum store_status status[] = {
		[CALL_PING_DOWN] = STORE_UNAVAILABLE, [CALL_PING_OK] = STORE_OK, [CALL_PING_FULL] = STORE_FULL,
	};

	return status[call_ping(router_pick(&store->router, store->default_slot))];
}
