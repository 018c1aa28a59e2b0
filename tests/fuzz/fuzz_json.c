/* libFuzzer: the JSON scanner never crashes, and what it finds holds up on its own. */
#include <stdint.h>
#include <stdlib.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct json_member m = { .count = 12345 }, again;

	if (json_scan_member(text, size, "number", &m) != JSON_OK) {
		if (m.count != 12345)
			abort(); /* output touched on error */
		return 0;
	}
	if (m.count > 0 && m.document != JSON_TYPE_OBJECT)
		abort(); /* only an object has members */
	if (m.count == 0) {
		if (m.value != NULL)
			abort(); /* a value without a member */
		return 0;
	}
	if (m.value <= text || m.value + m.len >= text + size)
		abort(); /* the token lies inside the object it came from */

	/* The value's token is a JSON text by itself, of the type reported. */
	if (json_scan_member(m.value, m.len, "number", &again) != JSON_OK || again.document != m.type)
		abort();
	return 0;
}
