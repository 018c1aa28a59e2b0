/*
 * The ceilings of `make bench`: a trivial FastCGI worker behind the same
 * lighttpd configuration as abacus.  It answers a fixed JSON body; with
 * BENCH_EVALSHA=1 it first runs one EVALSHA of a trivial script on Redis
 * (REDIS_URL's host and port), i.e. the least any worker needing one Redis
 * round trip per request can do.  With BENCH_EVALSHA=write the script does
 * one INCR: the least a worker needing one durable write can do (with
 * appendfsync always, Redis fsyncs before it answers).
 */
#include <fcgiapp.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static redisContext *connect_redis(const char *script, char *sha, size_t cap)
{
	const char *url = getenv("REDIS_URL");
	char host[256] = "127.0.0.1";
	int port = 6379;
	redisContext *c;
	redisReply *r;

	if (url != NULL && strncmp(url, "redis://", 8) == 0)
		sscanf(url + 8, "%255[^:/]:%d", host, &port);
	c = redisConnect(host, port);
	if (c == NULL || c->err)
		return NULL;
	r = redisCommand(c, "SCRIPT LOAD %s", script);
	if (r != NULL && r->type == REDIS_REPLY_STRING)
		snprintf(sha, cap, "%s", r->str);
	freeReplyObject(r);
	return c;
}

int main(int argc, char **argv)
{
	static const char head[] = "Status: 200 OK\r\nContent-Type: application/json\r\n"
	                           "Content-Length: 17\r\n\r\n{\"current_sum\":0}";
	FCGX_Request req;
	redisContext *redis = NULL;
	char sha[64] = "";
	const char *mode = getenv("BENCH_EVALSHA");

	if (argc > 1 && (strcmp(argv[1], "--check-config") == 0 || strcmp(argv[1], "--version") == 0))
		return 0;
	signal(SIGPIPE, SIG_IGN);
	if (mode != NULL && strcmp(mode, "1") == 0)
		redis = connect_redis("return 1", sha, sizeof(sha));
	else if (mode != NULL && strcmp(mode, "write") == 0)
		redis = connect_redis("return redis.call('INCR', KEYS[1])", sha, sizeof(sha));
	FCGX_Init();
	FCGX_InitRequest(&req, 0, 0);
	while (FCGX_Accept_r(&req) >= 0) {
		if (redis != NULL)
			freeReplyObject(redisCommand(redis, "EVALSHA %s 1 {bench}:n", sha));
		FCGX_PutStr(head, (int)sizeof(head) - 1, req.out);
		FCGX_Finish_r(&req);
	}
	return 0;
}
