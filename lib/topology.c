#include "topology.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as Redis Cluster uses. */
static unsigned crc16(const char *buf, size_t len)
{
	unsigned crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (unsigned)(unsigned char)buf[i] << 8;
		for (int bit = 0; bit < 8; bit++)
			crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
	}
	return crc;
}

unsigned topology_key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	/* Only the part between the first '{' and the next '}' counts, if not empty. */
	if (open != NULL) {
		size_t from = (size_t)(open - key) + 1;
		const char *close = memchr(key + from, '}', len - from);

		if (close != NULL && close > key + from)
			return crc16(key + from, (size_t)(close - key) - from) & (TOPOLOGY_SLOTS - 1);
	}
	return crc16(key, len) & (TOPOLOGY_SLOTS - 1);
}

/* A TCP port in canonical decimal (lib/decimal's parser), 1-65535. */
static bool parse_port(const char *text, size_t len, int *port)
{
	int64_t v;

	if (decimal_parse_int64(text, len, DECIMAL_REFUSE_MINUS_ZERO, &v) != DECIMAL_OK || v < 1 || v > 65535)
		return false;
	*port = (int)v;
	return true;
}

/* Parses "host:port" (host may be empty or an unbracketed IPv6 address). */
static bool parse_endpoint(const char *text, struct redis_node *node)
{
	const char *colon = strrchr(text, ':');
	size_t host_len;

	if (colon == NULL)
		return false;
	host_len = (size_t)(colon - text);
	if (host_len >= sizeof(node->host))
		return false;
	if (!parse_port(colon + 1, strcspn(colon + 1, " "), &node->port))
		return false;
	memcpy(node->host, text, host_len);
	node->host[host_len] = '\0';
	return true;
}

/* Parses "<slot> <host>:<port>", the rest of a MOVED or ASK error. */
static bool parse_redirect(const char *rest, struct redis_node *node)
{
	const char *space = strchr(rest, ' ');

	return space != NULL && space > rest && parse_endpoint(space + 1, node);
}

enum topology_error topology_classify(const char *error, struct redis_node *node)
{
	static const struct { const char *prefix; enum topology_error kind; } table[] = {
		{ "NOSCRIPT", TOPOLOGY_ERR_NOSCRIPT }, { "TRYAGAIN", TOPOLOGY_ERR_TRYAGAIN },
		{ "READONLY", TOPOLOGY_ERR_READONLY }, { "MASTERDOWN", TOPOLOGY_ERR_MASTERDOWN },
		{ "CLUSTERDOWN", TOPOLOGY_ERR_CLUSTERDOWN }, { "LOADING", TOPOLOGY_ERR_LOADING },
	};
	size_t n;

	if (error == NULL)
		return TOPOLOGY_ERR_OTHER;
	if (strncmp(error, "MOVED ", 6) == 0)
		return parse_redirect(error + 6, node) ? TOPOLOGY_ERR_MOVED : TOPOLOGY_ERR_OTHER;
	if (strncmp(error, "ASK ", 4) == 0)
		return parse_redirect(error + 4, node) ? TOPOLOGY_ERR_ASK : TOPOLOGY_ERR_OTHER;
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		n = strlen(table[i].prefix);
		if (strncmp(error, table[i].prefix, n) == 0 && (error[n] == ' ' || error[n] == '\0'))
			return table[i].kind;
	}
	return TOPOLOGY_ERR_OTHER;
}

/* Copies a node entry ["host", port, ...] of CLUSTER SLOTS. */
static bool slot_node(const redisReply *entry, const char *asked_host, struct redis_node *out)
{
	const redisReply *host, *port;

	if (entry->type != REDIS_REPLY_ARRAY || entry->elements < 2)
		return false;
	host = entry->element[0];
	port = entry->element[1];
	if (host->type != REDIS_REPLY_STRING || port->type != REDIS_REPLY_INTEGER ||
	    port->integer < 1 || port->integer > 65535)
		return false;
	if (host->len == 0 || strcmp(host->str, "?") == 0)
		snprintf(out->host, sizeof(out->host), "%s", asked_host);
	else if (host->len < sizeof(out->host))
		memcpy(out->host, host->str, host->len + 1);
	else
		return false;
	out->port = (int)port->integer;
	return true;
}

bool topology_slot_owner(const redisReply *slots, unsigned slot, const char *asked_host,
                         struct redis_node *out)
{
	if (slots == NULL || slots->type != REDIS_REPLY_ARRAY)
		return false;
	for (size_t i = 0; i < slots->elements; i++) {
		const redisReply *range = slots->element[i];

		/* [start, end, [master host, port, id], [replica ...]...] */
		if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
		    range->element[0]->type != REDIS_REPLY_INTEGER ||
		    range->element[1]->type != REDIS_REPLY_INTEGER)
			continue;
		if ((long long)slot >= range->element[0]->integer &&
		    (long long)slot <= range->element[1]->integer)
			return slot_node(range->element[2], asked_host, out);
	}
	return false;
}

bool topology_slot_range(const redisReply *slots, size_t i, const char *asked_host, unsigned *first,
                         unsigned *last, struct redis_node *master)
{
	const redisReply *range;

	if (slots == NULL || slots->type != REDIS_REPLY_ARRAY || i >= slots->elements)
		return false;
	range = slots->element[i];
	if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
	    range->element[0]->type != REDIS_REPLY_INTEGER || range->element[1]->type != REDIS_REPLY_INTEGER ||
	    range->element[0]->integer < 0 || range->element[1]->integer >= TOPOLOGY_SLOTS ||
	    range->element[0]->integer > range->element[1]->integer)
		return false;
	*first = (unsigned)range->element[0]->integer;
	*last = (unsigned)range->element[1]->integer;
	return slot_node(range->element[2], asked_host, master);
}

bool topology_master_addr(const redisReply *reply, struct redis_node *out)
{
	const redisReply *host, *port;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2)
		return false;
	host = reply->element[0];
	port = reply->element[1];
	if (host->type != REDIS_REPLY_STRING || port->type != REDIS_REPLY_STRING ||
	    host->len == 0 || host->len >= sizeof(out->host))
		return false;
	if (!parse_port(port->str, port->len, &out->port))
		return false;
	memcpy(out->host, host->str, host->len + 1);
	return true;
}

bool topology_is_master(const redisReply *role)
{
	return role != NULL && role->type == REDIS_REPLY_ARRAY && role->elements > 0 &&
	       role->element[0]->type == REDIS_REPLY_STRING &&
	       strcmp(role->element[0]->str, "master") == 0;
}

