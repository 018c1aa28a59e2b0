/*
 * libFuzzer: REDIS_URL and the whole configuration.  The input is a list of
 * NAME=value lines handed to config_load() as the environment; the first
 * line is also parsed as a REDIS_URL on its own.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static char *lines[64];
static size_t line_count;

static const char *lookup(const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < line_count; i++)
		if (strncmp(lines[i], name, n) == 0 && lines[i][n] == '=')
			return lines[i] + n + 1;
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	struct redis_target t;
	struct config cfg;
	char err[256];

	memcpy(text, data, size);
	text[size] = '\0';
	line_count = 0;
	for (char *p = text, *save = NULL, *line; (line = strtok_r(p, "\n", &save)) != NULL && line_count < 64; p = NULL)
		lines[line_count++] = line;
	if (line_count > 0 && redis_url_parse(lines[0], &t, err, sizeof(err))) {
		if (t.transport == REDIS_TRANSPORT_TCP && (t.port < 1 || t.port > 65535 || t.host[0] == '\0'))
			abort();
		if (t.db < 0 || t.db > 65535)
			abort();
	}
	if (config_load(&cfg, lookup, err, sizeof(err)))
		config_free(&cfg);
	free(text);
	return 0;
}
