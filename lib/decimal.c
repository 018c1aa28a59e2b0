#include "decimal.h"

enum decimal_err decimal_parse_int64(const char *s, size_t len, enum decimal_minus_zero minus_zero,
                                     int64_t *out)
{
	bool negative = len > 0 && s[0] == '-';
	/* The magnitude may reach 2^63 only for a negative number (INT64_MIN). */
	uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	uint64_t v = 0;
	size_t i = negative;

	if (i == len || (s[i] == '0' && len - i > 1))
		return DECIMAL_NOT_INTEGER;
	if (negative && s[i] == '0' && minus_zero == DECIMAL_REFUSE_MINUS_ZERO)
		return DECIMAL_NOT_INTEGER;
	for (; i < len; i++) {
		unsigned d = (unsigned)(s[i] - '0');

		if (d > 9)
			return DECIMAL_NOT_INTEGER;
		if (v > (limit - d) / 10) {
			/* Only digits may follow for it to be "out of range" rather than "not a number". */
			while (++i < len)
				if ((unsigned)(s[i] - '0') > 9)
					return DECIMAL_NOT_INTEGER;
			return DECIMAL_OUT_OF_RANGE;
		}
		v = v * 10 + d;
	}
	*out = negative ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
	return DECIMAL_OK;
}

size_t decimal_format(char *out, int64_t v)
{
	char tmp[DECIMAL_MAX];
	/* The magnitude as unsigned, so INT64_MIN has one too. */
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	size_t n = 0, len = 0;

	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		out[len++] = '-';
	while (n > 0)
		out[len++] = tmp[--n];
	return len;
}

char *decimal_put_size(char *out, size_t v)
{
	char tmp[DECIMAL_MAX];
	size_t n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (n > 0)
		*out++ = tmp[--n];
	return out;
}
