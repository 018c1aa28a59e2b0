/* lib/sha256: nettle's SHA-256 behind the key-id API; the FIPS 180-4 vectors. */
#include "sha256.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"

static void hex(const unsigned char *d, char *out)
{
	for (int i = 0; i < 32; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

START_TEST(test_sha256_fips_vectors)
{
	static const struct { const char *msg; const char *digest; } v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	};
	unsigned char d[32];
	char out[65];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		sha256(v[i].msg, strlen(v[i].msg), d);
		hex(d, out);
		ck_assert_str_eq(out, v[i].digest);
	}
}
END_TEST

START_TEST(test_sha256_key_id_is_the_first_eight_hex_digits)
{
	char id[SHA256_KEY_ID_LEN + 1];

	sha256_key_id("abc", 3, id);
	ck_assert_str_eq(id, "ba7816bf");
}
END_TEST

static Suite *sha256_suite(void)
{
	Suite *s = suite_create("sha256");
	TCase *core = tcase_create("core");

	tcase_add_test(core, test_sha256_fips_vectors);
	tcase_add_test(core, test_sha256_key_id_is_the_first_eight_hex_digits);
	suite_add_tcase(s, core);
	return s;
}

CHECK_MAIN(sha256_suite)
