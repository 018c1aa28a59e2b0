#include "resolve.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
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

/*
 * Per name: its last good address, and the lookup in flight (at most one per
 * name: callers while it runs wait on it rather than start another, so a dead
 * resolver costs one thread per name, not one per connection attempt).  A
 * worker talks to a handful of hosts.
 */
static struct {
	char host[HOST_MAX];
	char addr[RESOLVE_ADDR_MAX];
	struct lookup *inflight;
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

/* The lookup has ended: the next caller for this name starts a new one. */
static void forget_inflight(const struct lookup *l)
{
	pthread_mutex_lock(&cache_lock);
	for (unsigned i = 0; i < CACHE_SLOTS; i++)
		if (cache[i].inflight == l)
			cache[i].inflight = NULL;
	pthread_mutex_unlock(&cache_lock);
}

static void *lookup_thread(void *arg)
{
	struct lookup *l = arg;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	char addr[RESOLVE_ADDR_MAX] = "";
	bool ok = false;

	if (getaddrinfo(l->host, NULL, &hints, &res) == 0 && res != NULL) {
		/* IPv4 first, as hiredis does (Redis often listens on 127.0.0.1 alone). */
		const struct addrinfo *pick = res;

		for (const struct addrinfo *a = res; a != NULL; a = a->ai_next)
			if (a->ai_family == AF_INET) {
				pick = a;
				break;
			}
		ok = inet_ntop(pick->ai_family,
		               pick->ai_family == AF_INET6
		               ? (const void *)&((const struct sockaddr_in6 *)(const void *)pick->ai_addr)->sin6_addr
		               : (const void *)&((const struct sockaddr_in *)(const void *)pick->ai_addr)->sin_addr,
		               addr, sizeof(addr)) != NULL;
	}
	if (res != NULL)
		freeaddrinfo(res);
	forget_inflight(l);
	pthread_mutex_lock(&l->lock);
	l->ok = ok;
	memcpy(l->addr, addr, sizeof(addr));
	l->done = true;
	pthread_cond_signal(&l->done_cond);
	pthread_mutex_unlock(&l->lock);
	release(l);
	return NULL;
}

/* The cache slot of host, taken if it has none (caller holds cache_lock). */
static unsigned slot_of(const char *host)
{
	unsigned i;

	for (i = 0; i < CACHE_SLOTS && strcmp(cache[i].host, host) != 0; i++)
		;
	if (i == CACHE_SLOTS) {
		i = cache_next++ % CACHE_SLOTS;
		snprintf(cache[i].host, sizeof(cache[i].host), "%s", host);
		cache[i].addr[0] = '\0';
		cache[i].inflight = NULL;       /* a lookup still running frees itself */
	}
	return i;
}

static void remember(const char *host, const char *addr)
{
	pthread_mutex_lock(&cache_lock);
	snprintf(cache[slot_of(host)].addr, RESOLVE_ADDR_MAX, "%s", addr);
	pthread_mutex_unlock(&cache_lock);
}

static bool recall(const char *host, char *addr)
{
	bool found = false;

	pthread_mutex_lock(&cache_lock);
	for (unsigned i = 0; i < CACHE_SLOTS && !found; i++) {
		if (cache[i].host[0] != '\0' && cache[i].addr[0] != '\0' && strcmp(cache[i].host, host) == 0) {
			memcpy(addr, cache[i].addr, RESOLVE_ADDR_MAX);
			found = true;
		}
	}
	pthread_mutex_unlock(&cache_lock);
	return found;
}

/* A new lookup of host on its own thread (all signals blocked there); NULL if none could start. */
static struct lookup *start_lookup(const char *host)
{
	struct lookup *l = calloc(1, sizeof(*l));
	pthread_condattr_t cattr;
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t thread;
	int rc;

	if (l == NULL)
		return NULL;
	pthread_mutex_init(&l->lock, NULL);
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&l->done_cond, &cattr);
	pthread_condattr_destroy(&cattr);
	snprintf(l->host, sizeof(l->host), "%s", host);
	l->refs = 2;                    /* the thread's and the caller's */
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* The worker's SIGTERM must reach the main thread (it interrupts accept()). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&thread, &attr, lookup_thread, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		l->refs = 1;
		release(l);
		return NULL;
	}
	return l;
}

/* Joins the lookup of host in flight, or starts one, and waits for it at most timeout_ms. */
static bool lookup_in_time(const char *host, int timeout_ms, char *addr)
{
	struct timespec until;
	struct lookup *l;
	unsigned slot;
	bool ok = false;
	int rc = 0;

	pthread_mutex_lock(&cache_lock);
	slot = slot_of(host);
	l = cache[slot].inflight;
	if (l != NULL) {
		pthread_mutex_lock(&l->lock);
		l->refs++;
		pthread_mutex_unlock(&l->lock);
	} else {
		l = start_lookup(host);
		if (l != NULL) {
			pthread_mutex_lock(&l->lock);
			/* Registered unless it has already ended (then it forgot nothing). */
			if (!l->done) {
				cache[slot].inflight = l;
			}
			pthread_mutex_unlock(&l->lock);
		}
	}
	pthread_mutex_unlock(&cache_lock);
	if (l == NULL)
		return false;

	clock_gettime(CLOCK_MONOTONIC, &until);
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
