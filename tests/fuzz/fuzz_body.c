/* libFuzzer: the JSON body parser never crashes and never accepts what it should not. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t v = 0x5a5a;
	enum body_err err = body_parse_int64_field((const char *)data, size, "number", &v);
	char *type = malloc(size + 1);

	/* A body that parsed must contain the field's name somewhere. */
	if (err == BODY_OK && size < 10)
		abort();
	if (err != BODY_OK && v != 0x5a5a)
		abort(); /* output touched on error */
	memcpy(type, data, size);
	type[size] = '\0';
	body_media_type_is_json(type);
	free(type);
	return 0;
}
