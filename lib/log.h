#ifndef ABACUS_LOG_H
#define ABACUS_LOG_H

/*
 * JSON-lines logging on stderr (SPEC section 8).  Every line carries "ts",
 * "level", "event" and "request_id" (null outside a request), then the
 * event's own fields in the order they were added:
 *
 *     struct log_line l;
 *     if (log_begin(&l, LOG_LEVEL_INFO, "sum_changed", r->request_id)) {
 *         log_int(&l, "delta", delta);
 *         log_end(&l);
 *     }
 *
 * log_begin returns false when the level is filtered out; then nothing else
 * needs to be called.  A line longer than LOG_LINE_MAX is cut at a field
 * boundary and marked "truncated": true.  Strings are JSON-escaped; never pass
 * a secret (API key, password): log a key id instead (auth_key_id()).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum log_level {
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
	LOG_LEVEL_COUNT
};

#define LOG_LINE_MAX 2048

struct log_line {
	char buf[LOG_LINE_MAX]; /* the line being built, NUL-terminated */
	size_t len;             /* bytes used in buf */
	bool truncated;         /* a field did not fit */
};

/* Parses "debug", "info", "warn" or "error".  Returns false for anything else. */
bool log_level_parse(const char *name, enum log_level *out);

/* "debug", "info", "warn", "error". */
const char *log_level_name(enum log_level level);

/* Lines below this level are dropped.  Default LOG_LEVEL_INFO. */
void log_set_level(enum log_level level);

/* Where lines go (default stderr).  Tests point it at a memory stream. */
void log_set_stream(FILE *stream);

/* Starts a line.  request_id may be NULL.  Returns false if filtered out. */
bool log_begin(struct log_line *line, enum log_level level, const char *event,
               const char *request_id);

void log_str(struct log_line *line, const char *key, const char *value);
void log_strn(struct log_line *line, const char *key, const char *value, size_t len);
void log_int(struct log_line *line, const char *key, long long value);
void log_bool(struct log_line *line, const char *key, bool value);

/* Adds a member whose value is already valid JSON (an array, an object). */
void log_raw(struct log_line *line, const char *key, const char *json);

/* Closes the line and writes it with one write(2)-sized fputs + fflush. */
void log_end(struct log_line *line);

/* One-call form for an event with a single message string. */
void log_message(enum log_level level, const char *event, const char *request_id,
                 const char *message);

/*
 * Appends value to dst (capacity cap, current length *len) as the inside of a
 * JSON string: quotes, backslashes and control bytes escaped, bytes >= 0x80
 * passed through.  Returns false, leaving *len unchanged, if it does not fit.
 */
bool log_json_escape(char *dst, size_t cap, size_t *len, const char *value, size_t n);

#endif
