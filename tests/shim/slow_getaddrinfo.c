/*
 * A slow resolver, for tests (LD_PRELOAD): while the file named by
 * ABACUS_TEST_SLOW_DNS_FILE exists, every lookup of a host name (not of a
 * numeric address, which never asks a DNS server) takes 5 s longer.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static int numeric(const char *node)
{
	unsigned char buf[16];

	return node == NULL || inet_pton(AF_INET, node, buf) == 1 || inet_pton(AF_INET6, node, buf) == 1;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
	getaddrinfo_fn real = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
	const char *flag = getenv("ABACUS_TEST_SLOW_DNS_FILE");

	if (!numeric(node) && flag != NULL && access(flag, F_OK) == 0)
		sleep(5);
	return real(node, service, hints, res);
}
