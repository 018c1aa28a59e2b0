#include "discovery.h"

#include <stdio.h>

#include "topology.h"

/* Sentinel: asks the sentinels in turn which server is the master. */
static bool ask_sentinels(struct transport *tr, uint64_t deadline, struct redis_node *out)
{
	const struct redis_target *t = &tr->target;
	const char *argv[] = { "SENTINEL", "get-master-addr-by-name", t->master_name };

	for (size_t i = 0; i < t->node_count; i++) {
		size_t at = (tr->sentinel_first + i) % t->node_count;
		redisReply *reply = transport_query_node(tr, &t->nodes[at], t->sentinel_user,
		                                         t->sentinel_password, t->sentinel_has_password,
		                                         deadline, 3, argv);
		bool found = topology_master_addr(reply, out);

		if (reply != NULL && !found)
			transport_log_error("sentinel", reply->type == REDIS_REPLY_ERROR ? reply->str
			                                : "the sentinel knows no master of that name");
		freeReplyObject(reply);
		if (found) {
			tr->sentinel_first = at;
			return true;
		}
	}
	return false;
}

/* Cluster: asks the seed nodes in turn which master serves the slot. */
static bool ask_cluster(struct transport *tr, uint64_t deadline, struct redis_node *out)
{
	const struct redis_target *t = &tr->target;
	const char *argv[] = { "CLUSTER", "SLOTS" };

	for (size_t i = 0; i < t->node_count; i++) {
		redisReply *reply = transport_query_node(tr, &t->nodes[i], t->user, t->password,
		                                         t->has_password, deadline, 2, argv);
		bool found = topology_slot_owner(reply, tr->slot, t->nodes[i].host, out);

		if (reply != NULL && !found)
			transport_log_error("cluster", reply->type == REDIS_REPLY_ERROR ? reply->str
			                           : "no node serves the slot of the prefix");
		freeReplyObject(reply);
		if (found)
			return true;
	}
	return false;
}

/* Works out which server to connect to.  False: none could be found now. */
bool discovery_locate(struct transport *tr, uint64_t deadline, struct redis_node *out)
{
	const struct redis_target *t = &tr->target;

	switch (t->mode) {
	case REDIS_MODE_SENTINEL:
		return ask_sentinels(tr, deadline, out);
	case REDIS_MODE_CLUSTER:
		if (tr->node_known) {
			*out = tr->node;
			return true;
		}
		return ask_cluster(tr, deadline, out);
	case REDIS_MODE_SINGLE:
	default:
		snprintf(out->host, sizeof(out->host), "%s", t->host);
		out->port = t->port;
		return true;
	}
}
