#ifndef ABACUS_CIDR_H
#define ABACUS_CIDR_H

/*
 * IPv4 and IPv6 networks in CIDR notation, for ABACUS_TRUSTED_PROXIES: their
 * parsing (at start-up) and the test whether an address lies in one of them
 * (per request, to decide whether X-Forwarded-For is believed; SPEC 5).
 */

#include <stdbool.h>
#include <stddef.h>

/* An IPv4/IPv6 network. */
struct cidr {
	int family;            /* AF_INET or AF_INET6 */
	unsigned char addr[16];/* network address, in network byte order */
	int prefix_len;        /* bits that must match */
};

/*
 * Parses "10.0.0.0/8" or "::1" (a plain address is a /32 or /128).  The
 * prefix length is a strict decimal within the family's bits.  Returns false
 * on anything else.
 */
bool cidr_parse(const char *text, struct cidr *out);

/*
 * Appends the entries of a comma-separated list to out[*count..cap) (spaces
 * around entries and empty entries are ignored).  Returns false with a
 * reason naming setting in err (errlen bytes) when an entry is not an
 * address or CIDR, too long, or one too many.
 */
bool cidr_parse_list(const char *text, struct cidr *out, size_t cap, size_t *count,
                     const char *setting, char *err, size_t errlen);

/* True if the textual address addr (IPv4 or IPv6) lies in one of nets[0..count). */
bool cidr_address_in(const char *addr, const struct cidr *nets, size_t count);

#endif
