/* libFuzzer: Idempotency-Key and X-Request-ID validation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "idem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	struct idem_key key;

	memcpy(s, data, size);
	s[size] = '\0';
	if (idem_key_parse(s, &key) == IDEM_OK) {
		if (key.len == 0 || key.len > IDEM_KEY_MAX)
			abort();
		for (size_t i = 0; i < key.len; i++)
			if (key.text[i] < 0x21 || key.text[i] > 0x7e)
				abort();
	}
	if (http_request_id_is_sane(s) && (strlen(s) == 0 || strlen(s) > HTTP_REQUEST_ID_MAX))
		abort();
	free(s);
	return 0;
}
