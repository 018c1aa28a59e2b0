#include "idem.h"

#include <string.h>

const char *idem_strerror(enum idem_err err)
{
	switch (err) {
	case IDEM_OK: return "ok";
	case IDEM_MISSING: return "send an Idempotency-Key header with every POST /abacus/number";
	case IDEM_MALFORMED: return "Idempotency-Key must be 1-255 visible ASCII characters (0x21-0x7E)";
	default: return "unknown error";
	}
}

enum idem_err idem_key_parse(const char *header, struct idem_key *key)
{
	size_t len;

	if (header == NULL || *header == '\0')
		return IDEM_MISSING;
	len = strlen(header);

	/* sf-string form: "abc" -> abc (one pair only). */
	if (len >= 2 && header[0] == '"' && header[len - 1] == '"') {
		header++;
		len -= 2;
	}
	if (len == 0 || len > IDEM_KEY_MAX)
		return IDEM_MALFORMED;
	for (size_t i = 0; i < len; i++)
		if (header[i] < 0x21 || header[i] > 0x7e)
			return IDEM_MALFORMED;
	key->text = header;
	key->len = len;
	return IDEM_OK;
}

bool idem_key_or_problem(struct request *r, bool required, struct idem_key *key)
{
	enum idem_err err = idem_key_parse(http_param(r, "HTTP_IDEMPOTENCY_KEY"), key);

	if (err == IDEM_OK || (err == IDEM_MISSING && !required)) {
		if (err != IDEM_OK)
			key->len = 0;
		return true;
	}
	http_problem(r, err == IDEM_MISSING ? PROBLEM_IDEMPOTENCY_KEY_MISSING
	                                    : PROBLEM_IDEMPOTENCY_KEY_INVALID,
	             idem_strerror(err));
	return false;
}
