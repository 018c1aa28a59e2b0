#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "decimal.h"

static enum log_level min_level = LOG_LEVEL_INFO;
static FILE *log_stream;

static const char *const level_names[LOG_LEVEL_COUNT] = {
	[LOG_LEVEL_DEBUG] = "debug",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_ERROR] = "error",
};

bool log_level_parse(const char *name, enum log_level *out)
{
	for (int i = 0; i < LOG_LEVEL_COUNT; i++) {
		if (name != NULL && strcmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	return false;
}

const char *log_level_name(enum log_level level)
{
	return level < LOG_LEVEL_COUNT ? level_names[level] : "?";
}

void log_set_level(enum log_level level)
{
	min_level = level;
}

void log_set_stream(FILE *stream)
{
	log_stream = stream;
}

bool log_json_escape(char *dst, size_t cap, size_t *len, const char *value, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t at = *len;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)value[i];
		char esc[7];
		size_t k = 0;

		if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
			if (at + 1 >= cap)
				return false;
			dst[at++] = (char)c;
			continue;
		}
		if (c == '"' || c == '\\') {
			esc[k++] = '\\';
			esc[k++] = (char)c;
		} else if (c == '\n') {
			esc[k++] = '\\';
			esc[k++] = 'n';
		} else {        /* the other control characters */
			esc[0] = '\\';
			esc[1] = 'u';
			esc[2] = '0';
			esc[3] = '0';
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			k = 6;
		}
		if (at + k >= cap)
			return false;
		memcpy(dst + at, esc, k);
		at += k;
	}
	dst[at] = '\0';
	*len = at;
	return true;
}

/* Appends raw text; on overflow marks the line truncated and keeps it intact. */
static bool append(struct log_line *line, const char *text, size_t n)
{
	/* Keep room for the closing `,"truncated":true}` and newline. */
	const size_t reserve = 24;

	if (line->truncated || line->len + n + reserve >= sizeof(line->buf)) {
		line->truncated = true;
		return false;
	}
	memcpy(line->buf + line->len, text, n);
	line->len += n;
	line->buf[line->len] = '\0';
	return true;
}

/* Appends `,"key":` or rolls back to the previous field boundary. */
static bool append_key(struct log_line *line, const char *key, size_t *mark)
{
	*mark = line->len;
	return append(line, ",\"", 2) && append(line, key, strlen(key)) &&
	       append(line, "\":", 2);
}

static void rollback(struct log_line *line, size_t mark)
{
	line->len = mark;
	line->buf[mark] = '\0';
	line->truncated = true;
}

static bool append_escaped(struct log_line *line, const char *value, size_t n)
{
	size_t len = line->len;

	if (line->truncated || !log_json_escape(line->buf, sizeof(line->buf) - 24, &len, value, n)) {
		line->truncated = true;
		return false;
	}
	line->len = len;
	return true;
}

/* "2026-11-26T23:40:05" for a second; the last one is cached (one strftime a second). */
static const char *format_second(time_t sec)
{
	static time_t cached_sec = -1;
	static char cached[32];

	if (sec != cached_sec) {
		struct tm tm;

		gmtime_r(&sec, &tm);
		strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = sec;
	}
	return cached;
}

/*
 * This process's pid in decimal, formatted once: getpid() is a system call
 * (glibc no longer caches it), and a worker logs on the request path.  A
 * fork (Check runs each test in one) formats it again in the child.
 */
static char pid_text[DECIMAL_MAX + 1];
static size_t pid_len;

static void forget_pid(void)
{
	pid_len = 0;
}

static void own_pid(const char **text, size_t *len)
{
	if (pid_len == 0) {
		static bool registered;

		if (!registered) {
			pthread_atfork(NULL, NULL, forget_pid);
			registered = true;
		}
		pid_len = decimal_format(pid_text, getpid());
		pid_text[pid_len] = '\0';
	}
	*text = pid_text;
	*len = pid_len;
}

bool log_begin(struct log_line *line, enum log_level level, const char *event,
               const char *request_id)
{
	struct timeval tv;
	const char *second;
	const char *level_name = log_level_name(level);
	const char *pid;
	size_t pid_n;
	char ms[5];

	if (level < min_level)
		return false;
	line->len = 0;
	line->truncated = false;
	line->buf[0] = '\0';

	/* {"ts":"<second>.<ms>Z","level":"<level>","event":" -- built by copying, no printf. */
	gettimeofday(&tv, NULL);
	second = format_second(tv.tv_sec);
	ms[0] = '.';
	ms[1] = (char)('0' + tv.tv_usec / 100000);
	ms[2] = (char)('0' + tv.tv_usec / 10000 % 10);
	ms[3] = (char)('0' + tv.tv_usec / 1000 % 10);
	ms[4] = 'Z';
	append(line, "{\"ts\":\"", 7);
	append(line, second, strlen(second));
	append(line, ms, sizeof(ms));
	append(line, "\",\"level\":\"", 11);
	append(line, level_name, strlen(level_name));
	append(line, "\",\"event\":\"", 11);
	append_escaped(line, event, strlen(event));
	append(line, "\",\"request_id\":", 15);
	if (request_id == NULL) {
		append(line, "null", 4);
	} else {
		append(line, "\"", 1);
		append_escaped(line, request_id, strlen(request_id));
		append(line, "\"", 1);
	}
	/* Which worker wrote it: several share one error log. */
	append(line, ",\"pid\":", 7);
	own_pid(&pid, &pid_n);
	append(line, pid, pid_n);
	return true;
}

void log_strn(struct log_line *line, const char *key, const char *value, size_t len)
{
	size_t mark;

	if (value == NULL) {
		log_raw(line, key, "null");
		return;
	}
	if (!append_key(line, key, &mark) || !append(line, "\"", 1) ||
	    !append_escaped(line, value, len) || !append(line, "\"", 1))
		rollback(line, mark);
}

void log_str(struct log_line *line, const char *key, const char *value)
{
	log_strn(line, key, value, value != NULL ? strlen(value) : 0);
}

void log_int(struct log_line *line, const char *key, long long value)
{
	char num[DECIMAL_MAX + 1];

	num[decimal_format(num, value)] = '\0';
	log_raw(line, key, num);
}

void log_bool(struct log_line *line, const char *key, bool value)
{
	log_raw(line, key, value ? "true" : "false");
}

void log_raw(struct log_line *line, const char *key, const char *json)
{
	size_t mark;

	if (!append_key(line, key, &mark) || !append(line, json, strlen(json)))
		rollback(line, mark);
}

/*
 * One write(2) per line: lines of several workers sharing a file or a pipe
 * never interleave (O_APPEND; a pipe write up to PIPE_BUF is atomic), and no
 * stdio buffering (stderr is unbuffered: fputs may split a line).
 */
static void write_line(int fd, const char *text, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, text, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;         /* nowhere to report it: the log is the report */
		text += w;
		n -= (size_t)w;
	}
}

void log_end(struct log_line *line)
{
	FILE *out = log_stream != NULL ? log_stream : stderr;

	if (line->truncated) {
		memcpy(line->buf + line->len, ",\"truncated\":true", 17);
		line->len += 17;
	}
	line->buf[line->len++] = '}';
	line->buf[line->len++] = '\n';
	line->buf[line->len] = '\0';
	if (log_stream == NULL) {
		write_line(STDERR_FILENO, line->buf, line->len);
		return;
	}
	fputs(line->buf, out);
	fflush(out);
}

void log_message(enum log_level level, const char *event, const char *request_id,
                 const char *message)
{
	struct log_line line;

	if (log_begin(&line, level, event, request_id)) {
		log_str(&line, "message", message);
		log_end(&line);
	}
}
