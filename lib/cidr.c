#include "cidr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "decimal.h"

bool cidr_parse(const char *text, struct cidr *out)
{
	char addr[64];
	const char *slash = strchr(text, '/');
	size_t n = slash != NULL ? (size_t)(slash - text) : strlen(text);
	int64_t bits;

	if (n == 0 || n >= sizeof(addr))
		return false;
	memcpy(addr, text, n);
	addr[n] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		out->prefix_len = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		out->prefix_len = 128;
	} else {
		return false;
	}
	if (slash != NULL) {
		if (decimal_parse_int64(slash + 1, strlen(slash + 1), DECIMAL_REFUSE_MINUS_ZERO, &bits) !=
		    DECIMAL_OK || bits < 0 || bits > out->prefix_len)
			return false;
		out->prefix_len = (int)bits;
	}
	return true;
}

bool cidr_parse_list(const char *text, struct cidr *out, size_t cap, size_t *count,
                     const char *setting, char *err, size_t errlen)
{
	for (const char *p = text; p != NULL && *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t n = comma != NULL ? (size_t)(comma - p) : strlen(p);
		char item[64];
		size_t a = 0;

		while (a < n && isspace((unsigned char)p[a]))
			a++;
		while (n > a && isspace((unsigned char)p[n - 1]))
			n--;
		if (n > a) {
			if (*count == cap) {
				snprintf(err, errlen, "%s: at most %zu entries", setting, cap);
				return false;
			}
			if (n - a >= sizeof(item)) {
				snprintf(err, errlen, "%s: entry too long", setting);
				return false;
			}
			memcpy(item, p + a, n - a);
			item[n - a] = '\0';
			if (!cidr_parse(item, &out[(*count)++])) {
				snprintf(err, errlen, "%s: '%s' is not an address or CIDR", setting, item);
				return false;
			}
		}
		p = comma != NULL ? comma + 1 : NULL;
	}
	return true;
}

/* True when the first prefix_len bits of addr are the network's. */
static bool matches(const unsigned char *addr, const struct cidr *net)
{
	int full = net->prefix_len / 8;
	int rest = net->prefix_len % 8;

	if (memcmp(addr, net->addr, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((addr[full] ^ net->addr[full]) & (0xff << (8 - rest))) == 0;
}

bool cidr_address_in(const char *addr, const struct cidr *nets, size_t count)
{
	unsigned char v4[4], v6[16];
	bool is_v4 = inet_pton(AF_INET, addr, v4) == 1;
	bool is_v6 = !is_v4 && inet_pton(AF_INET6, addr, v6) == 1;

	for (size_t i = 0; i < count; i++) {
		if (is_v4 && nets[i].family == AF_INET && matches(v4, &nets[i]))
			return true;
		if (is_v6 && nets[i].family == AF_INET6 && matches(v6, &nets[i]))
			return true;
	}
	return false;
}
