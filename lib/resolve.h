#ifndef ABACUS_RESOLVE_H
#define ABACUS_RESOLVE_H

/*
 * Host names with a deadline.  getaddrinfo has no timeout of its own (a slow
 * or dead DNS server holds the caller for the resolver's 5 s x attempts), and
 * hiredis resolves on every connect: a worker reconnecting to
 * redis://redis:6379 would hold requests and /readyz far past connect +
 * command timeout.  resolve_host looks the name up on a helper thread and
 * waits at most timeout_ms; when the answer is late or an error, it falls
 * back to the last address that name resolved to in this process.  A numeric
 * address is returned as it is, without a lookup.
 */

#include <stdbool.h>
#include <stddef.h>

#define RESOLVE_ADDR_MAX 64     /* an IPv4 or IPv6 address in text */

/* Fills addr (RESOLVE_ADDR_MAX bytes) with an address of host.  False: none in time. */
bool resolve_host(const char *host, int timeout_ms, char *addr);

#endif
