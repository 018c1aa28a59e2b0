#ifndef ABACUS_ROUTER_H
#define ABACUS_ROUTER_H

/*
 * Which connection a script goes over.  Outside a Redis Cluster there is one
 * (the single server, or the master the sentinels name).  In a Cluster every
 * sum's keys share the sum's hash tag, so one slot, so one master: the router
 * keeps a connection per master and a table of which master serves which
 * slot (CLUSTER SLOTS, asked of the seed nodes, then of the masters it
 * knows).  A call goes to its slot's master; a MOVED it had to follow
 * (lib/redis_call.c does), a failover or a master that stopped answering
 * marks the table stale, and the next call asks again.  Sums under different
 * tags thus spread over the masters (docs/OPERATIONS.md, Cluster).
 */

#include <stdbool.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "redis_call.h"
#include "topology.h"
#include "transport.h"

#define ROUTER_NODES_MAX 32     /* masters a worker keeps a connection to */
#define ROUTER_REFRESH_MS 100   /* the table is asked for again at most this often */

struct router {
	struct transport main;          /* outside a Cluster: the connection; in one: the template */
	bool cluster;
	struct redis_node node[ROUTER_NODES_MAX];
	struct transport tr[ROUTER_NODES_MAX];  /* tr[i] talks to node[i] */
	size_t nodes;
	uint8_t owner[TOPOLOGY_SLOTS];  /* the master of each slot: node index + 1; 0 not known */
	bool stale;                     /* the table may be wrong: ask again before the next call */
	uint64_t next_refresh_ms;
};

/* Sets the router up around a configured transport (copied; its scripts stay shared); r zeroed before. */
void router_init(struct router *r, const struct transport *main);
void router_free(struct router *r);

/* The connection for a slot: its master's in a Cluster (the table asked for first if needed). */
struct transport *router_pick(struct router *r, unsigned slot);

/*
 * Runs a script on the master of its keys' slot (they share one hash tag:
 * the first key's; call_run), and learns from where it had to go.
 */
redisReply *router_call(struct router *r, struct script_call *call);

/* Successful (re)connections over every connection (the first of each not counted). */
unsigned long router_reconnects(const struct router *r);

#endif
