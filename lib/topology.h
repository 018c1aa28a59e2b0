#ifndef ABACUS_TOPOLOGY_H
#define ABACUS_TOPOLOGY_H

/*
 * Where the sum lives when there is more than one Redis (docs/OPERATIONS.md):
 * the pure parts of Sentinel and Cluster support, kept apart from the
 * connections (lib/transport, lib/discovery) so they can be tested byte for byte.
 *
 * - Sentinel: SENTINEL get-master-addr-by-name names the master; ROLE
 *   confirms it before any write (a sentinel can lag behind a failover).
 * - Cluster: every key of one sum carries the {prefix} hash tag, so one
 *   slot, so one master, holds all of them.  CLUSTER SLOTS names it; MOVED
 *   and ASK redirect when the slot moves.
 */

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#include "config.h"

#define TOPOLOGY_SLOTS 16384

/* Redis Cluster's slot of a key: CRC16 (XMODEM) of its {hash tag}, mod 16384. */
unsigned topology_key_slot(const char *key, size_t len);

/* What an error reply means for the caller. */
enum topology_error {
	TOPOLOGY_ERR_OTHER,       /* a real error: report it */
	TOPOLOGY_ERR_NOSCRIPT,    /* script cache empty: SCRIPT LOAD and retry */
	TOPOLOGY_ERR_MOVED,       /* slot served elsewhere for good: reconnect there, retry */
	TOPOLOGY_ERR_ASK,         /* slot migrating: ask that node once (ASKING) */
	TOPOLOGY_ERR_TRYAGAIN,    /* keys of the slot split by a migration: retry shortly */
	TOPOLOGY_ERR_READONLY,    /* a replica: the master moved (failover) */
	TOPOLOGY_ERR_MASTERDOWN,  /* a replica that lost its master */
	TOPOLOGY_ERR_CLUSTERDOWN, /* the cluster cannot serve the slot */
	TOPOLOGY_ERR_LOADING,     /* Redis is loading its data set */
};

/*
 * Classifies an error reply.  For MOVED and ASK fills *node with the address
 * (an empty host means "the node you asked", as Redis 7 may answer).
 * A command that drew any of these errors, except OTHER, was not executed.
 */
enum topology_error topology_classify(const char *error, struct redis_node *node);

/*
 * From a CLUSTER SLOTS reply, the master serving slot.  An empty host (or
 * "?") stands for asked_host.  False when no range covers the slot.
 */
bool topology_slot_owner(const redisReply *slots, unsigned slot, const char *asked_host,
                         struct redis_node *out);

/*
 * Range i of a CLUSTER SLOTS reply: its slots first..last and their master.
 * False when there is no range i or it is malformed (skip it).
 */
bool topology_slot_range(const redisReply *slots, size_t i, const char *asked_host, unsigned *first,
                         unsigned *last, struct redis_node *master);

/* From SENTINEL get-master-addr-by-name: host and port.  False for nil or junk. */
bool topology_master_addr(const redisReply *reply, struct redis_node *out);

/* From ROLE: true when the server says it is a master. */
bool topology_is_master(const redisReply *role);

#endif
