#include "router.h"

#include <stdlib.h>
#include <string.h>

#include "discovery.h"

void router_init(struct router *r, const struct transport *main)
{
	r->main = *main;
	r->cluster = main->target.mode == REDIS_MODE_CLUSTER;
	/* The table only matters in a Cluster (and is not touched, so not resident, outside one). */
	if (r->cluster)
		memset(r->owner, 0, sizeof(r->owner));
	r->nodes = 0;
	r->stale = true;
	r->next_refresh_ms = 0;
}

void router_free(struct router *r)
{
	if (r->main.ctx != NULL)
		redisFree(r->main.ctx);
	r->main.ctx = NULL;
	for (size_t i = 0; i < r->nodes; i++) {
		if (r->tr[i].ctx != NULL)
			redisFree(r->tr[i].ctx);
		r->tr[i].ctx = NULL;
		explicit_bzero(r->tr[i].target.password, sizeof(r->tr[i].target.password));
	}
}

static bool same_node(const struct redis_node *a, const struct redis_node *b)
{
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* The index of node in the table, added (with a connection of its own, not yet open) if new; -1 when full. */
static int node_index(struct router *r, const struct redis_node *node)
{
	struct transport *tr;

	for (size_t i = 0; i < r->nodes; i++)
		if (same_node(&r->node[i], node))
			return (int)i;
	if (r->nodes == ROUTER_NODES_MAX)
		return -1;
	r->node[r->nodes] = *node;
	tr = &r->tr[r->nodes];
	*tr = r->main;
	tr->ctx = NULL;
	tr->connects = 0;
	tr->next_attempt_ms = 0;
	tr->backoff_ms = 0;
	tr->node = *node;
	tr->node_known = true;
	/* cppcheck-suppress knownConditionTrueFalse ; jitter must never be 0 (xorshift) */
	tr->jitter_state = (r->main.jitter_state * 0x9e3779b97f4a7c15ULL + r->nodes) | 1;
	return (int)r->nodes++;
}

/* Fills the table from one CLUSTER SLOTS reply; false when it covers nothing. */
static bool learn_slots(struct router *r, const redisReply *slots, const char *asked_host)
{
	struct redis_node master;
	unsigned first, last;
	bool any = false;

	if (slots == NULL || slots->type != REDIS_REPLY_ARRAY)
		return false;
	memset(r->owner, 0, sizeof(r->owner));
	for (size_t i = 0; i < slots->elements; i++) {
		int at;

		if (!topology_slot_range(slots, i, asked_host, &first, &last, &master))
			continue;
		at = node_index(r, &master);
		if (at < 0)
			continue;
		memset(&r->owner[first], at + 1, last - first + 1);
		any = true;
	}
	return any;
}

/* Asks the seeds, then the masters known, for the table: the first that answers is believed. */
static void refresh(struct router *r)
{
	const struct redis_target *t = &r->main.target;
	const char *argv[] = { "CLUSTER", "SLOTS" };
	uint64_t now = transport_now_ms();
	uint64_t deadline = now + (uint64_t)r->main.connect_timeout_ms + (uint64_t)r->main.command_timeout_ms;
	size_t known = r->nodes;

	if (now < r->next_refresh_ms)
		return;
	r->next_refresh_ms = now + ROUTER_REFRESH_MS;
	for (size_t i = 0; i < t->node_count + known; i++) {
		const struct redis_node *ask = i < t->node_count ? &t->nodes[i] : &r->node[i - t->node_count];
		redisReply *reply = transport_query_node(&r->main, ask, t->user, t->password, t->has_password,
		                                         deadline, 2, argv);
		bool learnt = learn_slots(r, reply, ask->host);

		freeReplyObject(reply);
		if (learnt) {
			r->stale = false;
			return;
		}
	}
}

struct transport *router_pick(struct router *r, unsigned slot)
{
	struct transport *tr;
	unsigned at;

	if (!r->cluster)
		return &r->main;
	slot %= TOPOLOGY_SLOTS;
	if (r->stale || r->owner[slot] == 0)
		refresh(r);
	at = r->owner[slot];
	/* Not known (no seed answered): the one connection finds the slot's master itself. */
	if (at == 0) {
		r->main.slot = slot;
		return &r->main;
	}
	tr = &r->tr[at - 1];
	tr->slot = slot;
	return tr;
}

/*
 * After a call on tr, which was the connection of node[at]: had it to follow
 * the slot elsewhere (a MOVED, or a failover found through the seeds), the
 * slot's master is where it ended up; the connection goes back to its own
 * node (on its next use), and the table is asked for again.
 */
static void learn_from(struct router *r, struct transport *tr, unsigned slot, redisReply *reply)
{
	size_t at = (size_t)(tr - r->tr);

	if (!same_node(&tr->node, &r->node[at])) {
		int moved = node_index(r, &tr->node);

		if (moved >= 0)
			r->owner[slot] = (uint8_t)(moved + 1);
		r->stale = true;
		if (tr->ctx != NULL)
			redisFree(tr->ctx);
		tr->ctx = NULL;
		tr->node = r->node[at];
		tr->node_known = true;
	} else if (!tr->node_known) {
		tr->node_known = true;
	}
	/* No answer: the master may be gone and replaced; ask which node serves what. */
	if (reply == NULL)
		r->stale = true;
}

redisReply *router_call(struct router *r, struct script_call *call)
{
	/* Outside a Cluster there is one connection: no slot to work out (a CRC16 per request saved). */
	unsigned slot = r->cluster && call->nkeys > 0 ? topology_key_slot(call->argv[3], call->argvlen[3]) : 0;
	struct transport *tr = router_pick(r, slot);
	redisReply *reply = call_run(tr, call);

	if (tr != &r->main)
		learn_from(r, tr, slot % TOPOLOGY_SLOTS, reply);
	return reply;
}

unsigned long router_reconnects(const struct router *r)
{
	unsigned long n = r->main.connects > 0 ? r->main.connects - 1 : 0;

	for (size_t i = 0; i < r->nodes; i++)
		n += r->tr[i].connects > 0 ? r->tr[i].connects - 1 : 0;
	return n;
}
