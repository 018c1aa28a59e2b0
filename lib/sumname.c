#include "sumname.h"

#include <string.h>

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool sumname_valid(const char *s, size_t len)
{
	if (len == 0 || len > SUMNAME_MAX || !is_alnum(s[0]))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
			return false;
	return true;
}

bool sumname_is_default(const char *s, size_t len)
{
	return len == sizeof(SUMNAME_DEFAULT) - 1 && memcmp(s, SUMNAME_DEFAULT, len) == 0;
}

bool sumname_is_reserved(const char *s, size_t len)
{
	static const char *const words[] = { "sum", "sums", "number", "ledger" };

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strlen(words[i]) == len && memcmp(s, words[i], len) == 0)
			return true;
	return false;
}
