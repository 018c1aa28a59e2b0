/* Shared by check_transport and check_redis_call: a transport to 127.0.0.1:port, scripts formatted. */
#ifndef CHECK_TRANSPORT_INIT_H
#define CHECK_TRANSPORT_INIT_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport.h"

static char init_scripts[SCRIPT_COUNT][SCRIPT_MAX];

static void init(struct transport *tr, int port)
{
	struct script_settings settings = { .rate_limit_requests = 0, .rate_limit_window_seconds = 60,
	                                    .idempotency_ttl_seconds = 60, .request_deadline_ms = 1500 };

	memset(tr, 0, sizeof(*tr));
	tr->target.mode = REDIS_MODE_SINGLE;
	tr->target.transport = REDIS_TRANSPORT_TCP;
	strcpy(tr->target.host, "127.0.0.1");
	tr->target.port = port;
	tr->connect_timeout_ms = 500;
	tr->command_timeout_ms = 1000;
	tr->jitter_state = 12345;
	tr->script = init_scripts;
	for (int i = 0; i < SCRIPT_COUNT; i++)
		ck_assert(scripts_format((enum script_id)i, &settings, tr->script[i], sizeof(tr->script[i])));
}

/* The test Redis's port (tests/run-unit.sh sets it); exits when it is missing. */
static int test_redis_port(const char *suite)
{
	const char *port = getenv("ABACUS_TEST_REDIS_PORT");
	int p = port != NULL ? atoi(port) : 0;

	if (p <= 0) {
		fprintf(stderr, "%s: set ABACUS_TEST_REDIS_PORT (tests/run-unit.sh does)\n", suite);
		exit(EXIT_FAILURE);
	}
	return p;
}

#endif
