#ifndef ABACUS_STORE_STATUS_H
#define ABACUS_STORE_STATUS_H

/*
 * What an operation on the sum came to: lib/store answers it, lib/http
 * turns it into the response a client gets (status, problem type, detail,
 * Retry-After).  Its own header so that http needs nothing else of store.
 */

enum store_status {
	STORE_OK = 0,           /* applied; result holds the sum */
	STORE_REPLAYED,         /* key seen before with this number: the original sum */
	STORE_KEY_CONFLICT,     /* key seen before with another number; nothing changed */
	STORE_OVERFLOW,         /* the sum would leave int64; nothing changed */
	STORE_NOT_INTEGER,      /* the stored sum is not an integer; nothing changed */
	STORE_RATE_LIMITED,     /* over the caller's rate limit; nothing changed */
	STORE_UNAVAILABLE,      /* Redis unreachable, refusing, or no answer to a read; nothing changed */
	STORE_NOT_REPLICATED,   /* applied on the master, but WAIT saw too few replicas */
	STORE_OUTCOME_UNKNOWN,  /* a change was sent and no answer came: it may have been applied */
	STORE_FULL,             /* Redis is out of memory (noeviction): the change was refused */
	STORE_NOT_FOUND,        /* a named sum that does not exist (never written, or deleted) */
	STORE_TOO_MANY_SUMS,    /* a new named sum past ABACUS_MAX_SUMS; nothing changed */
	STORE_STATUS_COUNT
};

#endif
