#include "resolve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"

#define HOST_MAX 256
#define CACHE_SLOTS 8

/* One lookup, shared by the waiting caller and the helper thread; the last to let go frees it. */
struct lookup {
	pthread_mutex_t lock;
	pthread_cond_t done_cond;
	int refs;
	bool done;
	bool ok;
	char host[HOST_MAX];
	char addr[RESOLVE_ADDR_MAX];
};

/* The last good address of each name looked up (a worker talks to a handful of hosts). */
static struct {
	char host[HOST_MAX];
	char addr[RESOLVE_ADDR_MAX];
} cache[CACHE_SLOTS];
static unsigned cache_next;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;

static bool is_numeric(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static void release(struct lookup *l)
{
	bool last;

	pthread_mutex_lock(&l->lock);
	last = --l->refs == 0;
	pthread_mutex_unlock(&l->lock);
	if (last) {
		pthread_mutex_destroy(&l->lock);
		pthread_cond_destroy(&l->done_cond);
		free(l);
	}
}

static void *lookup_thread(void *arg)
{
	struct lookup *l = arg;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	char addr[RESOLVE_ADDR_MAX] = "";
	bool ok = false;

	if (getaddrinfo(l->host, NULL, &hints, &res) == 0 && res != NULL) {
		const void *where = res->ai_family == AF_INET6
		                  ? (const void *)&((const struct sockaddr_in6 *)(const void *)res->ai_addr)->sin6_addr
		                  : (const void *)&((const struct sockaddr_in *)(const void *)res->ai_addr)->sin_addr;

		ok = inet_ntop(res->ai_family, where, addr, sizeof(addr)) != NULL;
	}
	if (res != NULL)
		freeaddrinfo(res);
	pthread_mutex_lock(&l->lock);
	l->ok = ok;
	memcpy(l->addr, addr, sizeof(addr));
	l->done = true;
	pthread_cond_signal(&l->done_cond);
	pthread_mutex_unlock(&l->lock);
	release(l);
	return NULL;
}

static void remember(const char *host, const char *addr)
{
	unsigned i;

	pthread_mutex_lock(&cache_lock);
	for (i = 0; i < CACHE_SLOTS && strcmp(cache[i].host, host) != 0; i++)
		;
	if (i == CACHE_SLOTS)
		i = cache_next++ % CACHE_SLOTS;
	snprintf(cache[i].host, sizeof(cache[i].host), "%s", host);
	snprintf(cache[i].addr, sizeof(cache[i].addr), "%s", addr);
	pthread_mutex_unlock(&cache_lock);
}

static bool recall(const char *host, char *addr)
{
	bool found = false;

	pthread_mutex_lock(&cache_lock);
	for (unsigned i = 0; i < CACHE_SLOTS && !found; i++) {
		if (cache[i].host[0] != '\0' && strcmp(cache[i].host, host) == 0) {
			memcpy(addr, cache[i].addr, RESOLVE_ADDR_MAX);
			found = true;
		}
	}
	pthread_mutex_unlock(&cache_lock);
	return found;
}

/* Starts the lookup and waits for it at most timeout_ms. */
static bool lookup_in_time(const char *host, int timeout_ms, char *addr)
{
	struct lookup *l = calloc(1, sizeof(*l));
	struct timespec until;
	pthread_attr_t attr;
	pthread_t thread;
	bool ok = false;
	int rc = 0;

	if (l == NULL)
		return false;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->done_cond, NULL);
	snprintf(l->host, sizeof(l->host), "%s", host);
	l->refs = 2;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&thread, &attr, lookup_thread, l) != 0) {
		pthread_attr_destroy(&attr);
		l->refs = 1;
		release(l);
		return false;
	}
	pthread_attr_destroy(&attr);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&l->lock);
	while (!l->done && rc != ETIMEDOUT)
		rc = pthread_cond_timedwait(&l->done_cond, &l->lock, &until);
	if (l->done && l->ok) {
		memcpy(addr, l->addr, RESOLVE_ADDR_MAX);
		ok = true;
	}
	pthread_mutex_unlock(&l->lock);
	release(l);             /* a late thread frees it when it ends */
	return ok;
}

bool resolve_host(const char *host, int timeout_ms, char *addr)
{
	struct log_line line;

	if (is_numeric(host)) {
		snprintf(addr, RESOLVE_ADDR_MAX, "%s", host);
		return true;
	}
	if (timeout_ms > 0 && lookup_in_time(host, timeout_ms, addr)) {
		remember(host, addr);
		return true;
	}
	if (!recall(host, addr))
		return false;
	if (log_begin(&line, LOG_LEVEL_WARN, "dns_stale", NULL)) {
		log_str(&line, "host", host);
		log_str(&line, "address", addr);
		log_str(&line, "message", "the name did not resolve in time: using its last address");
		log_end(&line);
	}
	return true;
}
