#ifndef ABACUS_DISCOVERY_H
#define ABACUS_DISCOVERY_H

/*
 * Where to connect: the master the sentinels name, the cluster node that
 * holds the slot (asked of the seeds unless known), or the one server of
 * REDIS_URL.  Talks to sentinels and seeds over short-lived connections
 * (lib/transport) and reads their answers with lib/topology's parsers.
 */

#include <stdbool.h>
#include <stdint.h>

#include "transport.h"

/* False: nobody could say within deadline. */
bool discovery_locate(struct transport *tr, uint64_t deadline, struct redis_node *out);

#endif
