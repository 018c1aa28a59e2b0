#include "topology.h"

#include <check.h>
#include <string.h>

#include "check_main.h"

/* Parses RESP text into a reply, as hiredis would from a socket. */
static redisReply *parse_resp(const char *resp)
{
	redisReader *reader = redisReaderCreate();
	void *reply = NULL;

	ck_assert_ptr_nonnull(reader);
	ck_assert_int_eq(redisReaderFeed(reader, resp, strlen(resp)), REDIS_OK);
	ck_assert_int_eq(redisReaderGetReply(reader, &reply), REDIS_OK);
	ck_assert_ptr_nonnull(reply);
	redisReaderFree(reader);
	return reply;
}

/* Expected values are what CLUSTER KEYSLOT answers on Redis 7.0. */
static const struct { const char *key; unsigned slot; } slots[] = {
	{ "123456789", 0x31C3 },        /* the CRC16/XMODEM check value */
	{ "foo", 12182 },
	{ "bar", 5061 },
	{ "{abacus}:sum", 5090 },
	{ "{abacus}:idem:1a2b3c4d:key-1", 5090 },
	{ "abacus", 5090 },
	{ "{}:sum", 13695 },            /* empty tag: the whole key counts */
	{ "x{abacus}y{z}", 5090 },      /* only the first tag counts */
	{ "{abacus", 7340 },           /* unclosed: the whole key */
};

START_TEST(test_topology_key_slot)
{
	ck_assert_uint_eq(topology_key_slot(slots[_i].key, strlen(slots[_i].key)), slots[_i].slot);
}
END_TEST

static const struct {
	const char *error;
	enum topology_error kind;
	const char *host;
	int port;
} errors[] = {
	{ "MOVED 7638 127.0.0.1:30002", TOPOLOGY_ERR_MOVED, "127.0.0.1", 30002 },
	{ "ASK 7638 10.0.0.5:6380", TOPOLOGY_ERR_ASK, "10.0.0.5", 6380 },
	{ "MOVED 7638 ::1:7001", TOPOLOGY_ERR_MOVED, "::1", 7001 },
	{ "MOVED 7638 :7001", TOPOLOGY_ERR_MOVED, "", 7001 },
	{ "MOVED 7638 host-without-port", TOPOLOGY_ERR_OTHER, NULL, 0 },
	{ "MOVED 7638 h:0", TOPOLOGY_ERR_OTHER, NULL, 0 },
	{ "MOVED", TOPOLOGY_ERR_OTHER, NULL, 0 },
	{ "NOSCRIPT No matching script. Please use EVAL.", TOPOLOGY_ERR_NOSCRIPT, NULL, 0 },
	{ "TRYAGAIN Multiple keys request during rehashing of slot", TOPOLOGY_ERR_TRYAGAIN, NULL, 0 },
	{ "READONLY You can't write against a read only replica.", TOPOLOGY_ERR_READONLY, NULL, 0 },
	{ "MASTERDOWN Link with MASTER is down", TOPOLOGY_ERR_MASTERDOWN, NULL, 0 },
	{ "CLUSTERDOWN The cluster is down", TOPOLOGY_ERR_CLUSTERDOWN, NULL, 0 },
	{ "LOADING Redis is loading the dataset in memory", TOPOLOGY_ERR_LOADING, NULL, 0 },
	{ "READONLYX", TOPOLOGY_ERR_OTHER, NULL, 0 },
	{ "ERR unknown command", TOPOLOGY_ERR_OTHER, NULL, 0 },
	{ "OOM command not allowed", TOPOLOGY_ERR_OTHER, NULL, 0 },
};

START_TEST(test_topology_classifies_error)
{
	struct redis_node node = { "unchanged", 1 };
	enum topology_error kind = topology_classify(errors[_i].error, &node);

	ck_assert_msg(kind == errors[_i].kind, "%s: want %d, got %d", errors[_i].error,
	              errors[_i].kind, kind);
	if (errors[_i].host != NULL) {
		ck_assert_str_eq(node.host, errors[_i].host);
		ck_assert_int_eq(node.port, errors[_i].port);
	}
}
END_TEST

/* Three masters, each with one replica, as CLUSTER SLOTS shows them. */
static const char cluster_slots[] =
	"*3\r\n"
	"*4\r\n:0\r\n:5460\r\n"
	"*3\r\n$9\r\n127.0.0.1\r\n:30001\r\n$3\r\nid1\r\n"
	"*3\r\n$9\r\n127.0.0.1\r\n:30004\r\n$3\r\nid4\r\n"
	"*4\r\n:5461\r\n:10922\r\n"
	"*3\r\n$9\r\n127.0.0.2\r\n:30002\r\n$3\r\nid2\r\n"
	"*3\r\n$9\r\n127.0.0.1\r\n:30005\r\n$3\r\nid5\r\n"
	"*3\r\n:10923\r\n:16383\r\n"
	"*3\r\n$0\r\n\r\n:30003\r\n$3\r\nid3\r\n";

START_TEST(test_topology_finds_slot_owner)
{
	redisReply *reply = parse_resp(cluster_slots);
	struct redis_node node;

	ck_assert(topology_slot_owner(reply, 7638, "seed", &node));
	ck_assert_str_eq(node.host, "127.0.0.2");
	ck_assert_int_eq(node.port, 30002);
	ck_assert(topology_slot_owner(reply, 0, "seed", &node));
	ck_assert_int_eq(node.port, 30001);
	ck_assert(topology_slot_owner(reply, 5460, "seed", &node));
	ck_assert_int_eq(node.port, 30001);
	/* An empty host means the node that was asked. */
	ck_assert(topology_slot_owner(reply, 16383, "seed", &node));
	ck_assert_str_eq(node.host, "seed");
	ck_assert_int_eq(node.port, 30003);
	ck_assert(!topology_slot_owner(reply, 16384, "seed", &node));
	freeReplyObject(reply);

	/* A slot nobody serves (a cluster being built). */
	reply = parse_resp("*1\r\n*3\r\n:0\r\n:100\r\n*2\r\n$1\r\nh\r\n:1\r\n");
	ck_assert(!topology_slot_owner(reply, 7638, "seed", &node));
	ck_assert(topology_slot_owner(reply, 100, "seed", &node));
	freeReplyObject(reply);

	reply = parse_resp("-ERR This instance has cluster support disabled\r\n");
	ck_assert(!topology_slot_owner(reply, 7638, "seed", &node));
	freeReplyObject(reply);
	ck_assert(!topology_slot_owner(NULL, 7638, "seed", &node));
}
END_TEST

/* The whole map, range by range (lib/router.c fills its slot table from it). */
START_TEST(test_topology_reads_slot_ranges)
{
	redisReply *reply = parse_resp(cluster_slots);
	struct redis_node node;
	unsigned first, last, covered = 0;
	size_t i;

	for (i = 0; topology_slot_range(reply, i, "seed", &first, &last, &node); i++)
		covered += last - first + 1;
	ck_assert_uint_eq(i, 3);
	ck_assert_uint_eq(covered, TOPOLOGY_SLOTS);
	ck_assert(topology_slot_range(reply, 2, "seed", &first, &last, &node));
	ck_assert_uint_eq(last, 16383);
	ck_assert_str_eq(node.host, "seed");
	freeReplyObject(reply);
	/* A range out of bounds or upside down is refused. */
	reply = parse_resp("*2\r\n*3\r\n:5\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n"
	                   "*3\r\n:9\r\n:3\r\n*2\r\n$1\r\nh\r\n:1\r\n");
	ck_assert(!topology_slot_range(reply, 0, "seed", &first, &last, &node));
	ck_assert(!topology_slot_range(reply, 1, "seed", &first, &last, &node));
	freeReplyObject(reply);
	ck_assert(!topology_slot_range(NULL, 0, "seed", &first, &last, &node));
}
END_TEST

START_TEST(test_topology_reads_sentinel_answers)
{
	redisReply *reply = parse_resp("*2\r\n$9\r\n127.0.0.1\r\n$5\r\n26380\r\n");
	struct redis_node node;

	ck_assert(topology_master_addr(reply, &node));
	ck_assert_str_eq(node.host, "127.0.0.1");
	ck_assert_int_eq(node.port, 26380);
	freeReplyObject(reply);

	reply = parse_resp("*-1\r\n");         /* no master of that name */
	ck_assert(!topology_master_addr(reply, &node));
	freeReplyObject(reply);
	reply = parse_resp("*2\r\n$1\r\nh\r\n$2\r\nxx\r\n");
	ck_assert(!topology_master_addr(reply, &node));
	freeReplyObject(reply);
	reply = parse_resp("-NOAUTH Authentication required.\r\n");
	ck_assert(!topology_master_addr(reply, &node));
	freeReplyObject(reply);

	reply = parse_resp("*3\r\n$6\r\nmaster\r\n:100\r\n*0\r\n");
	ck_assert(topology_is_master(reply));
	freeReplyObject(reply);
	reply = parse_resp("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:100\r\n");
	ck_assert(!topology_is_master(reply));
	freeReplyObject(reply);
	ck_assert(!topology_is_master(NULL));
}
END_TEST

static Suite *topology_suite(void)
{
	Suite *s = suite_create("topology");
	TCase *core = tcase_create("core");
	TCase *errs = tcase_create("errors");

	tcase_add_loop_test(core, test_topology_key_slot, 0, sizeof(slots) / sizeof(slots[0]));
	tcase_add_test(core, test_topology_finds_slot_owner);
	tcase_add_test(core, test_topology_reads_slot_ranges);
	tcase_add_test(core, test_topology_reads_sentinel_answers);
	tcase_add_loop_test(errs, test_topology_classifies_error, 0, sizeof(errors) / sizeof(errors[0]));
	suite_add_tcase(s, core);
	suite_add_tcase(s, errs);
	return s;
}

CHECK_MAIN(topology_suite)
