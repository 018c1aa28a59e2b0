#include "sha256.h"

#include <nettle/sha2.h>

_Static_assert(SHA256_DIGEST_LEN == SHA256_DIGEST_SIZE, "nettle's SHA-256 digest size");

void sha256(const void *data, size_t len, uint8_t digest[SHA256_DIGEST_LEN])
{
	struct sha256_ctx ctx;

	sha256_init(&ctx);
	sha256_update(&ctx, len, data);
	sha256_digest(&ctx, SHA256_DIGEST_LEN, digest);
}

void sha256_hex_prefix(const uint8_t digest[SHA256_DIGEST_LEN], char out[SHA256_KEY_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < SHA256_KEY_ID_LEN / 2; i++) {
		out[2 * i] = hex[digest[i] >> 4];
		out[2 * i + 1] = hex[digest[i] & 15];
	}
	out[SHA256_KEY_ID_LEN] = '\0';
}

void sha256_key_id(const char *key, size_t len, char out[SHA256_KEY_ID_LEN + 1])
{
	uint8_t digest[SHA256_DIGEST_LEN];

	sha256(key, len, digest);
	sha256_hex_prefix(digest, out);
}
