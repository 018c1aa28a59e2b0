#include "sha256.h"

#include <string.h>

/* x86-64 CPUs with the SHA extensions compress a block in ~300 instructions instead of ~4,000. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define SHA256_NI 1
#endif

static const uint32_t k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, int n)
{
	return (x >> n) | (x << (32 - n));
}

static void compress(uint32_t h[8], const uint8_t block[64])
{
	uint32_t w[64], a, b, c, d, e, f, g, hh;

	for (size_t i = 0; i < 16; i++)
		w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
		       (uint32_t)block[4 * i + 2] << 8 | block[4 * i + 3];
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; hh = h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
		uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		hh = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
	}
	h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
}

#ifdef SHA256_NI
/*
 * The same compression with the SHA-NI instructions (Intel's published
 * scheme): the state is kept as ABEF/CDGH, each sha256rnds2 does two rounds,
 * sha256msg1/msg2 extend the message schedule four words at a time.
 */
__attribute__((target("sha,sse4.1")))
static void compress_ni(uint32_t h[8], const uint8_t block[64])
{
	const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i m[4], msg, tmp, state0, state1, abef, cdgh;

	tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1);      /* CDAB */
	state1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B);   /* EFGH */
	state0 = _mm_alignr_epi8(tmp, state1, 8);                                     /* ABEF */
	state1 = _mm_blend_epi16(state1, tmp, 0xF0);                                  /* CDGH */
	abef = state0;
	cdgh = state1;

	for (size_t j = 0; j < 16; j++) {
		__m128i *cur = &m[j % 4];

		if (j < 4)
			*cur = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(block + 16 * j)), mask);
		msg = _mm_add_epi32(*cur, _mm_loadu_si128((const __m128i *)&k[4 * j]));
		state1 = _mm_sha256rnds2_epu32(state1, state0, msg);
		if (j >= 3 && j <= 14) {
			__m128i *next = &m[(j + 1) % 4];

			tmp = _mm_alignr_epi8(*cur, m[(j + 3) % 4], 4);
			*next = _mm_sha256msg2_epu32(_mm_add_epi32(*next, tmp), *cur);
		}
		msg = _mm_shuffle_epi32(msg, 0x0E);
		state0 = _mm_sha256rnds2_epu32(state0, state1, msg);
		if (j >= 1 && j <= 12)
			m[(j + 3) % 4] = _mm_sha256msg1_epu32(m[(j + 3) % 4], *cur);
	}

	state0 = _mm_add_epi32(state0, abef);
	state1 = _mm_add_epi32(state1, cdgh);
	tmp = _mm_shuffle_epi32(state0, 0x1B);                                        /* FEBA */
	state1 = _mm_shuffle_epi32(state1, 0xB1);                                     /* DCHG */
	_mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(tmp, state1, 0xF0));       /* DCBA */
	_mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(state1, tmp, 8));          /* HGFE */
}

/* CPUID: SHA (leaf 7, EBX bit 29), SSSE3 and SSE4.1 (leaf 1, ECX bits 9 and 19). */
static bool cpu_has_sha_ni(void)
{
	unsigned a, b, c, d;

	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 9)) || !(c & (1u << 19)))
		return false;
	return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29));
}
#endif

static bool force_portable;

void sha256_use_portable(bool portable)
{
	force_portable = portable;
}

/* The CPU's instructions when it has them (asked once), else the portable code. */
static void (*choose_compress(void))(uint32_t h[8], const uint8_t block[64])
{
#ifdef SHA256_NI
	static int has_ni = -1;

	if (has_ni < 0)
		has_ni = cpu_has_sha_ni();
	if (has_ni && !force_portable)
		return compress_ni;
#endif
	return compress;
}

void sha256(const void *data, size_t len, uint8_t digest[SHA256_DIGEST_LEN])
{
	uint32_t h[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
	                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	void (*compress_block)(uint32_t h[8], const uint8_t block[64]) = choose_compress();
	const uint8_t *p = data;
	uint8_t tail[128] = { 0 };
	size_t full = len / 64 * 64;
	size_t rest = len - full;
	size_t tail_len = rest < 56 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;

	for (size_t off = 0; off < full; off += 64)
		compress_block(h, p + off);
	if (rest > 0)
		memcpy(tail, p + full, rest);
	tail[rest] = 0x80;
	for (size_t i = 0; i < 8; i++)
		tail[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
	compress_block(h, tail);
	if (tail_len == 128)
		compress_block(h, tail + 64);
	for (size_t i = 0; i < 8; i++) {
		digest[4 * i] = (uint8_t)(h[i] >> 24);
		digest[4 * i + 1] = (uint8_t)(h[i] >> 16);
		digest[4 * i + 2] = (uint8_t)(h[i] >> 8);
		digest[4 * i + 3] = (uint8_t)h[i];
	}
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
