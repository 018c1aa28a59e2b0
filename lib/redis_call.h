#ifndef ABACUS_REDIS_CALL_H
#define ABACUS_REDIS_CALL_H

/*
 * Running one script over the transport, within one deadline: connect if
 * needed (the server found through lib/topology), EVALSHA (and WAIT), and
 * whatever Redis answers that means "not executed here" handled by trying
 * again: NOSCRIPT reloads, MOVED/ASK/TRYAGAIN follow the cluster,
 * READONLY/MASTERDOWN ask where the master went.  A change whose reply is
 * lost on a connection that was open is resent once, flagged: the script
 * recognises its own first attempt (lib/store.h).
 */

#include <stdbool.h>
#include <stddef.h>

#include <hiredis/hiredis.h>

#include "scripts.h"
#include "transport.h"

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

/* Makes sure there is a ready connection, within deadline.  False: unavailable. */
bool call_ensure_connected(struct transport *tr, uint64_t deadline);

/* Runs the script; its reply (caller frees), or NULL when none came (see call->maybe_applied). */
redisReply *call_run(struct transport *tr, struct script_call *call);

enum call_ping { CALL_PING_DOWN, CALL_PING_OK, CALL_PING_FULL };

/*
 * PING within the timeouts (readiness), with INFO memory in the same round
 * trip: OK, FULL (answers, but out of memory under noeviction: changes are
 * refused, reads are served) or DOWN.
 */
enum call_ping call_ping(struct transport *tr);

#endif
