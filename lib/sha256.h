#ifndef ABACUS_SHA256_H
#define ABACUS_SHA256_H

/*
 * SHA-256 (FIPS 180-4), for key ids: logs and Redis keys identify an API key
 * by the first 8 hex digits of its SHA-256 (SPEC section 4), never by the key.
 * The hashing is nettle's (Debian's nettle-dev), which picks the CPU's SHA
 * instructions itself where there are any; this module only names the three
 * things the worker needs.
 */

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_LEN 32
#define SHA256_KEY_ID_LEN 8

/* Writes the 32-byte digest of data[0..len) to digest. */
void sha256(const void *data, size_t len, uint8_t digest[SHA256_DIGEST_LEN]);

/* Writes the first 8 lowercase hex digits of a digest, NUL-terminated. */
void sha256_hex_prefix(const uint8_t digest[SHA256_DIGEST_LEN], char out[SHA256_KEY_ID_LEN + 1]);

/* sha256() then sha256_hex_prefix(): the key id of a key. */
void sha256_key_id(const char *key, size_t len, char out[SHA256_KEY_ID_LEN + 1]);

#endif
