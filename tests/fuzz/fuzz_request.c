/*
 * libFuzzer: the whole request handler (routing, auth, body, idempotency key,
 * replies) fed a synthetic FastCGI environment.  abacus.fcgi.c is compiled in
 * with ABACUS_FUZZ (no main()); Redis is unreachable, so the store answers
 * 503 quickly: what is fuzzed is everything before and after it.
 *
 * Input: NAME=value lines (FastCGI params), a blank line, then the body.
 */
#define ABACUS_FUZZ 1
#pragma clang diagnostic ignored "-Wunused-function"   /* the FastCGI glue is not driven here */
#include "../../abacus.fcgi.c"

struct body_source {
	const uint8_t *data;
	size_t len, at;
};

static size_t read_fuzz_body(void *ctx, char *buf, size_t n)
{
	struct body_source *b = ctx;
	size_t k = b->len - b->at < n ? b->len - b->at : n;

	if (k == 0)
		return 0;
	memcpy(buf, b->data + b->at, k);
	b->at += k;
	return k;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("REDIS_URL", "redis://127.0.0.1:1/0", 1);  /* nothing listens: 503 at once */
	setenv("ABACUS_REDIS_CONNECT_TIMEOUT_MS", "5", 1);
	setenv("ABACUS_REDIS_TIMEOUT_MS", "5", 1);
	setenv("ABACUS_API_KEYS", "fuzz-key", 1);
	setenv("ABACUS_ADMIN_API_KEYS", "fuzz-admin", 1);
	setenv("ABACUS_METRICS_SHM", "/abacus-fuzz", 1);
	setenv("ABACUS_LOG_LEVEL", "error", 1);
	start();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1);
	char *env[65];
	size_t n = 0, i = 0;
	struct body_source body = { 0 };
	struct request r;
	char head[HTTP_HEADERS_MAX + 512];
	size_t len;

	memcpy(copy, data, size);
	copy[size] = '\0';
	/* Params up to the first empty line. */
	while (i < size && n < 64) {
		char *line = copy + i;
		char *nl = memchr(line, '\n', size - i);
		size_t l = nl != NULL ? (size_t)(nl - line) : size - i;

		i += l + 1;
		if (l == 0)
			break;
		line[l] = '\0';
		env[n++] = line;
	}
	env[n] = NULL;
	if (i < size) {
		body.data = data + i;
		body.len = size - i;
	}
	http_request_init(&r, env, read_fuzz_body, &body);
	dispatch(&r);
	if (r.resp.status < 200 || r.resp.status > 599)
		abort();
	if (http_format_head(&r, head, sizeof(head)) == 0)
		abort();
	http_body(&r, &len);
	if (len > 0 && r.resp.body_ext == NULL && strlen(r.resp.body) != len)
		abort();
	free(copy);
	return 0;
}
