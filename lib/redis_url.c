#include "redis_url.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decimal.h"

#define DEFAULT_PORT 6379
#define DEFAULT_SENTINEL_PORT 26379

/* Writes "<setting>: <why>" to err; returns false for the caller to pass on. */
static bool refuse(char *err, size_t errlen, const char *setting, const char *why)
{
	snprintf(err, errlen, "%s: %s", setting, why);
	return false;
}

/* A strict decimal s[0..len) in [min, max] (lib/decimal: no sign "+", spaces, leading zeros, "-0"). */
static bool parse_int(const char *s, size_t len, int min, int max, int *out)
{
	int64_t v;

	if (decimal_parse_int64(s, len, DECIMAL_REFUSE_MINUS_ZERO, &v) != DECIMAL_OK ||
	    v < min || v > max)
		return false;
	*out = (int)v;
	return true;
}

/* The byte that the two hex digits at s stand for, or -1. */
static int hex_byte(const char *s)
{
	char pair[3] = { s[0], s[1], '\0' };

	if (!isxdigit((unsigned char)pair[0]) || !isxdigit((unsigned char)pair[1]))
		return -1;
	return (int)strtol(pair, NULL, 16);
}

/* Copies src[0..n) to dst (cap bytes), decoding %XX.  False on bad escape, %00 or overflow. */
static bool percent_decode(char *dst, size_t cap, const char *src, size_t n)
{
	size_t at = 0;

	for (size_t i = 0; i < n; i++) {
		char c = src[i];

		if (c == '%') {
			int byte = i + 2 < n ? hex_byte(src + i + 1) : -1;

			if (byte <= 0)
				return false;
			c = (char)byte;
			i += 2;
		}
		if (at + 1 >= cap)
			return false;
		dst[at++] = c;
	}
	dst[at] = '\0';
	return true;
}

/* Parses "user:password@" (already cut out, without the '@'). */
static bool parse_userinfo(const char *s, size_t n, struct redis_target *out,
                           char *err, size_t errlen)
{
	const char *colon = memchr(s, ':', n);

	if (colon == NULL)
		return refuse(err, errlen, "REDIS_URL", "credentials must be user:password or :password");
	if (!percent_decode(out->user, sizeof(out->user), s, (size_t)(colon - s)) ||
	    !percent_decode(out->password, sizeof(out->password), colon + 1,
	                    n - (size_t)(colon - s) - 1))
		return refuse(err, errlen, "REDIS_URL",
		              "user or password is too long or badly percent-encoded");
	out->has_password = true;
	return true;
}

/* The port after a host: s[0..len), 1..65535. */
static bool parse_port(const char *s, size_t len, int *port, const char *setting,
                       char *err, size_t errlen)
{
	/* More than 7 characters cannot be a port, whatever they are. */
	if (len == 0 || len > 7)
		return refuse(err, errlen, setting, "bad port");
	if (!parse_int(s, len, 1, 65535, port))
		return refuse(err, errlen, setting, "port must be 1..65535");
	return true;
}

/*
 * Parses "host[:port]" or "[v6addr][:port]" of length n into node.  setting
 * names the variable in messages.
 */
static bool parse_host_port(const char *s, size_t n, struct redis_node *node, int default_port,
                            const char *setting, char *err, size_t errlen)
{
	const char *end = s + n;
	const char *port = NULL;
	const char *host = s;
	size_t host_len;

	node->port = default_port;
	if (n > 0 && *s == '[') {
		const char *close = memchr(s, ']', n);

		if (close == NULL)
			return refuse(err, errlen, setting, "unclosed '[' in host");
		if (close + 1 < end) {
			if (close[1] != ':')
				return refuse(err, errlen, setting, "junk after ']'");
			port = close + 2;
		}
		host = s + 1;
		host_len = (size_t)(close - host);
		if (host_len == 0 || host_len >= sizeof(node->host))
			return refuse(err, errlen, setting, "bad host");
	} else {
		const char *colon = memchr(s, ':', n);

		host_len = (size_t)((colon != NULL ? colon : end) - s);
		if (host_len == 0 || host_len >= sizeof(node->host))
			return refuse(err, errlen, setting, "missing or too long host");
		if (colon != NULL)
			port = colon + 1;
	}
	memcpy(node->host, host, host_len);
	node->host[host_len] = '\0';
	for (const char *p = node->host; *p != '\0'; p++)
		if (!isalnum((unsigned char)*p) && strchr(".-_:%", *p) == NULL)
			return refuse(err, errlen, setting, "bad character in host");
	return port == NULL || parse_port(port, (size_t)(end - port), &node->port, setting, err, errlen);
}

/* Parses a comma-separated host:port list (s[0..n)) into target->nodes. */
static bool parse_node_list(const char *s, size_t n, struct redis_target *target, int default_port,
                            const char *setting, char *err, size_t errlen)
{
	const char *end = s + n;

	target->node_count = 0;
	while (s < end) {
		const char *comma = memchr(s, ',', (size_t)(end - s));
		const char *stop = comma != NULL ? comma : end;

		while (s < stop && *s == ' ')
			s++;
		while (stop > s && stop[-1] == ' ')
			stop--;
		if (target->node_count == REDIS_URL_NODES_MAX) {
			snprintf(err, errlen, "%s: at most %d nodes", setting, REDIS_URL_NODES_MAX);
			return false;
		}
		if (!parse_host_port(s, (size_t)(stop - s), &target->nodes[target->node_count],
		                     default_port, setting, err, errlen))
			return false;
		target->node_count++;
		s = comma != NULL ? comma + 1 : end;
		if (comma != NULL && s == end)
			return refuse(err, errlen, setting, "empty entry after ','");
	}
	if (target->node_count == 0)
		return refuse(err, errlen, setting, "no host:port");
	return true;
}

/* redis:// and redis+cluster:// after the scheme: [userinfo@]host[:port][,...][/db]. */
static bool parse_tcp_url(const char *rest, struct redis_target *out, char *err, size_t errlen)
{
	const char *at = strrchr(rest, '@');
	const char *host = at != NULL ? at + 1 : rest;
	const char *slash = strchr(host, '/');
	size_t host_len = slash != NULL ? (size_t)(slash - host) : strlen(host);
	struct redis_node node;

	if (at != NULL && !parse_userinfo(rest, (size_t)(at - rest), out, err, errlen))
		return false;
	if (out->mode == REDIS_MODE_CLUSTER) {
		if (!parse_node_list(host, host_len, out, DEFAULT_PORT, "REDIS_URL", err, errlen))
			return false;
		node = out->nodes[0];
	} else if (!parse_host_port(host, host_len, &node, DEFAULT_PORT, "REDIS_URL", err, errlen)) {
		return false;
	}
	memcpy(out->host, node.host, sizeof(out->host));
	out->port = node.port;
	if (slash != NULL && slash[1] != '\0' &&
	    !parse_int(slash + 1, strlen(slash + 1), 0, 65535, &out->db))
		return refuse(err, errlen, "REDIS_URL", "database must be a number 0..65535");
	if (out->mode == REDIS_MODE_CLUSTER && out->db != 0)
		return refuse(err, errlen, "REDIS_URL", "a Redis Cluster has only database 0");
	return true;
}

/* One parameter of a unix:// URL, p[0..len): db=N, user=, password=. */
static bool parse_unix_param(const char *p, size_t len, struct redis_target *out,
                             char *err, size_t errlen)
{
	char value[256];

	if (len > 3 && strncmp(p, "db=", 3) == 0) {
		if (len - 3 >= sizeof(value) || !percent_decode(value, sizeof(value), p + 3, len - 3) ||
		    !parse_int(value, strlen(value), 0, 65535, &out->db))
			return refuse(err, errlen, "REDIS_URL", "db must be a number 0..65535");
	} else if (len >= 9 && strncmp(p, "password=", 9) == 0) {
		if (!percent_decode(out->password, sizeof(out->password), p + 9, len - 9))
			return refuse(err, errlen, "REDIS_URL", "bad password parameter");
		out->has_password = true;
	} else if (len >= 5 && strncmp(p, "user=", 5) == 0) {
		if (!percent_decode(out->user, sizeof(out->user), p + 5, len - 5))
			return refuse(err, errlen, "REDIS_URL", "bad user parameter");
	} else {
		return refuse(err, errlen, "REDIS_URL", "unknown parameter (known: db, user, password)");
	}
	return true;
}

/* unix:// after the scheme: /path[?param&param...]. */
static bool parse_unix_url(const char *rest, struct redis_target *out, char *err, size_t errlen)
{
	const char *query = strchr(rest, '?');
	size_t n = query != NULL ? (size_t)(query - rest) : strlen(rest);

	if (n == 0 || rest[0] != '/')
		return refuse(err, errlen, "REDIS_URL", "unix:// needs an absolute socket path");
	if (n >= sizeof(out->path))
		return refuse(err, errlen, "REDIS_URL", "socket path too long");
	memcpy(out->path, rest, n);
	out->path[n] = '\0';
	for (const char *p = query != NULL ? query + 1 : ""; *p != '\0';) {
		const char *amp = strchr(p, '&');
		size_t len = amp != NULL ? (size_t)(amp - p) : strlen(p);

		if (!parse_unix_param(p, len, out, err, errlen))
			return false;
		p += len + (amp != NULL);
	}
	return true;
}

bool redis_url_parse(const char *url, struct redis_target *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	out->port = DEFAULT_PORT;
	if (strncmp(url, "redis://", 8) == 0) {
		out->transport = REDIS_TRANSPORT_TCP;
		return parse_tcp_url(url + 8, out, err, errlen);
	}
	if (strncmp(url, "redis+cluster://", 16) == 0) {
		out->mode = REDIS_MODE_CLUSTER;
		out->transport = REDIS_TRANSPORT_TCP;
		return parse_tcp_url(url + 16, out, err, errlen);
	}
	if (strncmp(url, "unix://", 7) == 0) {
		out->transport = REDIS_TRANSPORT_UNIX;
		return parse_unix_url(url + 7, out, err, errlen);
	}
	if (strncmp(url, "rediss://", 9) == 0)
		return refuse(err, errlen, "REDIS_URL", "TLS (rediss://) is not supported by this build");
	snprintf(err, errlen, "REDIS_URL must start with redis://, unix:// or redis+cluster://");
	return false;
}

bool redis_url_parse_sentinels(const char *text, struct redis_target *target, char *err,
                               size_t errlen)
{
	return parse_node_list(text, strlen(text), target, DEFAULT_SENTINEL_PORT, "REDIS_SENTINELS",
	                       err, errlen);
}

void redis_url_format_masked(const struct redis_target *t, char *out, size_t cap)
{
	bool v6 = strchr(t->host, ':') != NULL;

	if (t->transport == REDIS_TRANSPORT_UNIX)
		snprintf(out, cap, "unix://%s?db=%d%s", t->path, t->db,
		         t->has_password ? "&password=***" : "");
	else
		snprintf(out, cap, "%s://%s%s%s%s%s:%d%s/%d",
		         t->mode == REDIS_MODE_CLUSTER ? "redis+cluster" : "redis", t->user,
		         t->has_password ? ":***@" : "", v6 ? "[" : "", t->host, v6 ? "]" : "", t->port,
		         t->mode == REDIS_MODE_CLUSTER && t->node_count > 1 ? ",..." : "", t->db);
}
