/*
 * lib/redis_call against the real redis-server tests/run-unit.sh starts
 * (ABACUS_TEST_REDIS_PORT): a script run over a connection made on demand,
 * NOSCRIPT reloaded, PING and a full Redis, an unreachable one.
 */
#include "redis_call.h"

#include <check.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "check_transport_init.h"

static int redis_port;

/* The GET script on the keys "crc-sum" and "crc-rl" (limiter off). */
static redisReply *run_get(struct transport *tr, struct script_call *call)
{
	static const char *argv[5];
	static size_t argvlen[5];

	memset(call, 0, sizeof(*call));
	call->id = SCRIPT_GET;
	call->argc = 5;
	call->nkeys = 2;
	call->argv = argv;
	call->argvlen = argvlen;
	argv[3] = "{crc}:sum";
	argvlen[3] = strlen(argv[3]);
	argv[4] = "{crc}:rl";
	argvlen[4] = strlen(argv[4]);
	return call_run(tr, call);
}

static void side(const char *command)
{
	redisContext *c = redisConnect("127.0.0.1", redis_port);

	ck_assert(c != NULL && c->err == 0);
	freeReplyObject(redisCommand(c, command));
	redisFree(c);
}

START_TEST(test_call_runs_and_reloads_after_noscript)
{
	struct transport tr;
	struct script_call call;
	redisReply *r;

	init(&tr, redis_port);
	side("SET {crc}:sum 41");
	r = run_get(&tr, &call);
	ck_assert(r != NULL && r->type == REDIS_REPLY_STRING);
	ck_assert_str_eq(r->str, "ok -1 41");
	freeReplyObject(r);
	side("SCRIPT FLUSH");                   /* NOSCRIPT next: reloaded, run again */
	r = run_get(&tr, &call);
	ck_assert(r != NULL && r->type == REDIS_REPLY_STRING);
	ck_assert_str_eq(r->str, "ok -1 41");
	freeReplyObject(r);
	ck_assert_int_eq(tr.connects, 1);       /* the same connection throughout */
	redisFree(tr.ctx);
}
END_TEST

START_TEST(test_call_ping_sees_a_full_redis)
{
	struct transport tr;

	init(&tr, redis_port);
	ck_assert_int_eq(call_ping(&tr), CALL_PING_OK);
	side("CONFIG SET maxmemory 1");
	ck_assert_int_eq(call_ping(&tr), CALL_PING_FULL);
	side("CONFIG SET maxmemory 0");
	ck_assert_int_eq(call_ping(&tr), CALL_PING_OK);
	redisFree(tr.ctx);
}
END_TEST

START_TEST(test_call_unreachable_is_null_and_not_applied)
{
	struct transport tr;
	struct script_call call;

	init(&tr, 1);                           /* nothing listens on port 1 */
	ck_assert_ptr_null(run_get(&tr, &call));
	ck_assert(!call.maybe_applied);
	ck_assert_int_eq(call_ping(&tr), CALL_PING_DOWN);
}
END_TEST

static Suite *redis_call_suite(void)
{
	Suite *s = suite_create("redis_call");
	TCase *core = tcase_create("core");
	TCase *errors = tcase_create("errors");

	redis_port = test_redis_port("check_redis_call");
	tcase_add_test(core, test_call_runs_and_reloads_after_noscript);
	tcase_add_test(core, test_call_ping_sees_a_full_redis);
	tcase_add_test(errors, test_call_unreachable_is_null_and_not_applied);
	suite_add_tcase(s, core);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(redis_call_suite)
