#ifndef ABACUS_TRANSPORT_H
#define ABACUS_TRANSPORT_H

/*
 * One worker's connection to Redis: connecting (a name looked up with a
 * deadline), the setup pipeline every new connection gets (AUTH, SELECT,
 * ROLE behind sentinels, the SCRIPT LOADs), socket timeouts cut to the
 * request's one deadline, and the backoff between attempts.  Any I/O failure
 * frees the connection (a hiredis context with err set is dead); the next
 * call connects again, after the backoff.  lib/redis_call.c runs the scripts
 * over it; lib/topology.c finds the server behind sentinels or in a cluster.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "config.h"
#include "metrics.h"
#include "scripts.h"

struct transport {
	struct redis_target target;
	int connect_timeout_ms;
	int command_timeout_ms;
	int min_replicas;               /* > 0: WAIT for that many replicas after each write */
	int wait_timeout_ms;

	redisContext *ctx;              /* NULL while disconnected */
	int timeout_ms;                 /* socket timeout currently set on ctx */
	uint64_t next_attempt_ms;       /* no reconnect before this (backoff) */
	int backoff_ms;                 /* next backoff step */
	uint64_t jitter_state;          /* the backoff's random part (never 0) */
	bool policy_checked;            /* maxmemory-policy looked at once */
	unsigned long connects;         /* successful connections so far */

	/* Sentinel and Cluster: which server ctx talks to, and how it was found. */
	struct redis_node node;         /* the server ctx is (or was last) connected to */
	bool node_known;                /* cluster: node holds the slot, as far as we know */
	size_t sentinel_first;          /* the sentinel that answered last is asked first */
	unsigned slot;                  /* cluster: the slot of the {prefix} hash tag */

	/* The scripts every connection loads: header (this configuration's constants) + body; the owner's, shared. */
	char (*script)[SCRIPT_MAX];
	char sha[SCRIPT_COUNT][41];     /* SCRIPT LOAD results (the same on every server) */
};

static inline uint64_t transport_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline uint64_t transport_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Counts one command (or connection attempt) started at `started` (transport_now_us()). */
void transport_count_op(enum metrics_redis_op op, const redisReply *reply, uint64_t started);
struct timeval transport_ms_to_tv(int ms);
void transport_log_error(const char *what, const char *detail);
void transport_log_node(const char *event, const struct redis_node *node, const char *why);

/* Redis answered a command: the next failure starts the backoff afresh. */
void transport_answered(struct transport *tr);
/* Drops a broken connection and schedules the next attempt. */
void transport_disconnect(struct transport *tr, const char *why);
/* Leaves a healthy server that is the wrong one (redirected): reconnect at once. */
void transport_leave(struct transport *tr);

/* Milliseconds left before deadline, at most cap; 0 when it has passed. */
int transport_ms_left(uint64_t deadline, int cap);
/* Sets a socket timeout to the time left before deadline (capped); false when none is left. */
bool transport_set_ctx_timeout(redisContext *c, int *current_ms, int cap_ms, uint64_t deadline);
bool transport_set_timeout(struct transport *tr, uint64_t deadline);

/* Opens a TCP connection to node within the connect timeout and deadline; NULL on failure. */
redisContext *transport_connect_node(const struct transport *tr, const struct redis_node *node,
                                     uint64_t deadline);
/* Appends AUTH [user] password when there is a password. */
void transport_append_auth(redisContext *c, const char *user, const char *password, bool has_password);
/* A short-lived connection to node (a sentinel, a cluster seed): one command's reply, or NULL. */
redisReply *transport_query_node(const struct transport *tr, const struct redis_node *node,
                                 const char *user, const char *password, bool has_password,
                                 uint64_t deadline, int argc, const char **argv);
/* The setup pipeline on a new connection, within deadline; false: drop it. */
bool transport_setup(struct transport *tr, uint64_t deadline);
/* SCRIPT LOAD again after NOSCRIPT (a Redis restart, SCRIPT FLUSH), within deadline. */
bool transport_reload_script(struct transport *tr, enum script_id id, uint64_t deadline);

#endif
