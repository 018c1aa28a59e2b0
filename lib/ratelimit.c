#include "ratelimit.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cidr.h"
#include "decimal.h"

/* Copies the right-most untrusted address of an X-Forwarded-For list. */
static bool forwarded_client(const char *xff, const struct config *cfg, char *out, size_t cap)
{
	const char *end = xff + strlen(xff);

	while (end > xff) {
		const char *start = end;
		char item[64];
		size_t n;

		while (start > xff && start[-1] != ',')
			start--;
		while (start < end && (*start == ' ' || *start == '\t'))
			start++;
		n = (size_t)(end - start);
		while (n > 0 && (start[n - 1] == ' ' || start[n - 1] == '\t'))
			n--;
		if (n == 0 || n >= sizeof(item))
			return false;
		memcpy(item, start, n);
		item[n] = '\0';
		{
			unsigned char probe[16];

			if (inet_pton(AF_INET, item, probe) != 1 && inet_pton(AF_INET6, item, probe) != 1)
				return false;   /* garbage: fall back to the peer */
		}
		if (!cidr_address_in(item, cfg->trusted_proxies, cfg->trusted_proxy_count)) {
			snprintf(out, cap, "%s", item);
			return true;
		}
		end = start;
		while (end > xff && (end[-1] == ',' || end[-1] == ' '))
			end--;
	}
	return false;
}

/*
 * An IPv6 client as its network: "2001:db8:1:2::/64" into out.  IPv4 (and
 * IPv4-mapped IPv6, as the dotted address) stays as it is.
 */
static void aggregate_ipv6(char *client, size_t cap, long prefix)
{
	unsigned char a[16];
	char text[INET6_ADDRSTRLEN];

	if (strchr(client, ':') == NULL || inet_pton(AF_INET6, client, a) != 1)
		return;
	if (IN6_IS_ADDR_V4MAPPED((struct in6_addr *)a)) {
		if (inet_ntop(AF_INET, a + 12, text, sizeof(text)) != NULL)
			snprintf(client, cap, "%s", text);
		return;
	}
	if (prefix < 1 || prefix > 128)
		return;
	/* Written back by inet_ntop either way: "2001:DB8::1" and "2001:db8::1" are one caller. */
	for (long bit = prefix; bit < 128; bit++)
		a[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
	if (inet_ntop(AF_INET6, a, text, sizeof(text)) == NULL)
		return;
	if (prefix < 128)
		snprintf(client, cap, "%s/%d", text, (int)prefix);
	else
		snprintf(client, cap, "%s", text);
}

void ratelimit_identify(struct request *r, const struct config *cfg)
{
	struct caller *c = &r->caller;
	const char *peer = http_param(r, "REMOTE_ADDR");
	const char *xff = http_param(r, "HTTP_X_FORWARDED_FOR");
	char client[64];

	if (c->key_id[0] != '\0') {
		/* "k:" and the 8-digit key id: no printf on every request. */
		memcpy(c->limit_id, "k:", 2);
		memcpy(c->limit_id + 2, c->key_id, sizeof(c->key_id));
		return;
	}
	snprintf(client, sizeof(client), "%s", peer != NULL ? peer : "unknown");
	if (peer != NULL && xff != NULL &&
	    cidr_address_in(peer, cfg->trusted_proxies, cfg->trusted_proxy_count))
		forwarded_client(xff, cfg, client, sizeof(client));
	aggregate_ipv6(client, sizeof(client), cfg->rate_limit_ipv6_prefix);
	snprintf(c->limit_id, sizeof(c->limit_id), "ip:%s", client);
}

/* "default";r=<remaining>;t=<reset> into out (room for 64), without printf. */
static const char *rate_limit_value(char out[64], long remaining, long reset)
{
	char *at = out;

	at = stpcpy(at, "\"default\";r=");
	at += decimal_format(at, remaining);
	at = stpcpy(at, ";t=");
	at += decimal_format(at, reset);
	*at = '\0';
	return out;
}

size_t ratelimit_key(const char *tag, const struct caller *caller, char *out)
{
	char *at = stpcpy(out, tag);

	at = stpcpy(at, ":rl:");
	at = stpcpy(at, caller->limit_id[0] != '\0' ? caller->limit_id : "-");
	return (size_t)(at - out);
}

bool ratelimit_refusal(int64_t reset_us, int64_t retry_us, struct ratelimit_budget *b)
{
	if (reset_us < 0 || retry_us < 0)
		return false;
	b->limited = true;
	b->remaining = 0;
	b->reset_seconds = (long)((reset_us + 999999) / 1000000);
	b->retry_after_seconds = (long)((retry_us + 999999) / 1000000);
	if (b->retry_after_seconds < 1)
		b->retry_after_seconds = 1;
	b->reset_us = reset_us;
	b->retry_us = retry_us;
	b->remembered = false;
	return true;
}

/* ---- refusals remembered by this worker ---- */

static struct memo {
	char id[sizeof(((struct caller *)0)->limit_id)];
	int64_t retry_at_us;    /* the earliest moment one request may pass */
	int64_t reset_at_us;    /* the budget is full again */
	int64_t trusted_until_us; /* answered here until then (RATELIMIT_MEMO_TRUST_US at most) */
} memo[RATELIMIT_MEMO_SLOTS];

int64_t ratelimit_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* FNV-1a of the caller's identity: its slot. */
static struct memo *memo_slot(const char *id)
{
	uint32_t h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *)id; *p != '\0'; p++)
		h = (h ^ *p) * 16777619u;
	return &memo[h % RATELIMIT_MEMO_SLOTS];
}

bool ratelimit_refused_here(const struct caller *c, int64_t now_us, struct ratelimit_budget *b)
{
	const struct memo *m = memo_slot(c->limit_id);

	if (m->trusted_until_us <= now_us || strcmp(m->id, c->limit_id) != 0)
		return false;
	if (!ratelimit_refusal(m->reset_at_us > now_us ? m->reset_at_us - now_us : 0,
	                       m->retry_at_us - now_us, b))
		return false;
	b->remembered = true;
	return true;
}

void ratelimit_remember_refusal(const struct caller *c, int64_t asked_at_us,
                                const struct ratelimit_budget *b)
{
	struct memo *m = memo_slot(c->limit_id);

	/* Only a refusal has a moment before which nothing can pass. */
	if (!b->limited || b->retry_us <= 0 || c->limit_id[0] == '\0')
		return;
	snprintf(m->id, sizeof(m->id), "%s", c->limit_id);
	m->retry_at_us = asked_at_us + b->retry_us;
	m->reset_at_us = asked_at_us + b->reset_us;
	m->trusted_until_us = asked_at_us + (b->retry_us < RATELIMIT_MEMO_TRUST_US ? b->retry_us : RATELIMIT_MEMO_TRUST_US);
}

void ratelimit_forget_refusals(void)
{
	memset(memo, 0, sizeof(memo));
}

bool ratelimit_admitted(int64_t remaining, long window_seconds, struct ratelimit_budget *b)
{
	if (remaining < -1)
		return false;
	/* An admitted request's budget is full again one window later. */
	b->limited = remaining >= 0;
	b->remaining = b->limited ? (long)remaining : 0;
	b->reset_seconds = b->limited ? window_seconds : 0;
	b->retry_after_seconds = 0;
	b->reset_us = (int64_t)b->reset_seconds * 1000000;
	b->retry_us = 0;
	b->remembered = false;
	return true;
}

void ratelimit_add_headers(struct request *r, const struct config *cfg, enum store_status status,
                           const struct ratelimit_budget *res)
{
	/* The policy only changes with the configuration: formatted once, not per request. */
	static char policy[96];
	static long policy_q = -1, policy_w = -1;
	char value[96];

	if (!res->limited)
		return;
	if (policy_q != cfg->rate_limit_requests || policy_w != cfg->rate_limit_window_seconds) {
		snprintf(policy, sizeof(policy), "\"default\";q=%ld;w=%ld", cfg->rate_limit_requests,
		         cfg->rate_limit_window_seconds);
		policy_q = cfg->rate_limit_requests;
		policy_w = cfg->rate_limit_window_seconds;
	}
	http_add_header(r, "RateLimit-Policy", policy);
	http_add_header(r, "RateLimit", rate_limit_value(value, res->remaining, res->reset_seconds));
	if (status == STORE_RATE_LIMITED) {
		value[decimal_format(value, res->retry_after_seconds)] = '\0';
		http_add_header(r, "Retry-After", value);
	}
}
