#include "auth.h"

#include <check.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <string.h>

#include "check_main.h"
#include "sha256.h"

static char k_user_buf[] = "user-key";
static char *k_user = k_user_buf;
static char k_admin_buf[] = "admin-key";
static char *k_admin = k_admin_buf;

static struct auth *make_auth(bool with_admin)
{
	struct config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.auth_enabled = true;
	cfg.api_keys.keys = &k_user;
	cfg.api_keys.count = 1;
	if (with_admin) {
		cfg.admin_keys.keys = &k_admin;
		cfg.admin_keys.count = 1;
	}
	return auth_new(&cfg);
}

static void hex(const uint8_t d[SHA256_DIGEST_LEN], char out[2 * SHA256_DIGEST_LEN + 1])
{
	for (size_t i = 0; i < SHA256_DIGEST_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* FIPS 180-4 examples and the lengths where the padding takes another block. */
START_TEST(test_sha256_known_vectors)
{
	static const struct { const char *text; size_t repeat; const char *digest; } v[] = {
		{ "", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
		{ "a", 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
		{ "a", 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
		{ "a", 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
		{ "a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
	};
	static char text[1000000];
	uint8_t d[SHA256_DIGEST_LEN];
	char got[2 * SHA256_DIGEST_LEN + 1];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t len = strlen(v[i].text) == 1 ? v[i].repeat : strlen(v[i].text);

		if (strlen(v[i].text) == 1)
			memset(text, v[i].text[0], len);
		else
			memcpy(text, v[i].text, len);
		sha256(text, len, d);
		hex(d, got);
		ck_assert_msg(strcmp(got, v[i].digest) == 0, "%zu x '%.8s': want %s, got %s", len,
		              v[i].text, v[i].digest, got);
	}
}
END_TEST

/*
 * sha256() in one call and the library fed one byte at a time agree on every
 * length 0-300: each place where the padding moves to another block.
 */
START_TEST(test_sha256_one_call_and_bytewise_agree)
{
	uint8_t data[300], a[SHA256_DIGEST_LEN], b[SHA256_DIGEST_LEN];
	uint32_t x = 2463534242u;

	for (size_t len = 0; len <= sizeof(data); len++) {
		struct sha256_ctx ctx;

		for (size_t i = 0; i < len; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			data[i] = (uint8_t)x;
		}
		sha256(data, len, a);
		sha256_init(&ctx);
		for (size_t i = 0; i < len; i++)
			sha256_update(&ctx, 1, data + i);
		sha256_digest(&ctx, SHA256_DIGEST_SIZE, b);
		ck_assert_msg(memcmp(a, b, SHA256_DIGEST_LEN) == 0, "length %zu differs", len);
	}
}
END_TEST

/* The key id is what `printf %s KEY | sha256sum | cut -c1-8` prints (tests/it_ratelimit.sh). */
START_TEST(test_sha256_key_id_is_the_digest_prefix)
{
	char id[SHA256_KEY_ID_LEN + 1];

	sha256_key_id("abc", 3, id);
	ck_assert_str_eq(id, "ba7816bf");
	sha256_key_id("", 0, id);
	ck_assert_str_eq(id, "e3b0c442");
}
END_TEST

START_TEST(test_auth_accepts_configured_keys)
{
	struct auth *a = make_auth(true);
	struct caller c;
	char id[9];

	ck_assert_int_eq(auth_check(a, "user-key", AUTH_ANY, &c), AUTH_OK);
	sha256_key_id("user-key", 8, id);
	ck_assert_str_eq(c.key_id, id);
	ck_assert(!c.admin);
	ck_assert_int_eq(auth_check(a, "admin-key", AUTH_ADMIN, &c), AUTH_OK);
	ck_assert(c.admin);
	ck_assert_int_eq(auth_check(a, "admin-key", AUTH_ANY, &c), AUTH_OK);
	auth_free(a);
}
END_TEST

START_TEST(test_auth_refuses_missing_unknown_and_non_admin)
{
	struct auth *a = make_auth(true);
	struct caller c;

	ck_assert_int_eq(auth_check(a, NULL, AUTH_ANY, &c), AUTH_MISSING);
	ck_assert_int_eq(auth_check(a, "", AUTH_ANY, &c), AUTH_MISSING);
	ck_assert_int_eq(auth_check(a, "user-ke", AUTH_ANY, &c), AUTH_UNKNOWN);
	ck_assert_int_eq(auth_check(a, "user-key ", AUTH_ANY, &c), AUTH_UNKNOWN);
	ck_assert_int_eq(auth_check(a, "USER-KEY", AUTH_ANY, &c), AUTH_UNKNOWN);
	ck_assert_int_eq(auth_check(a, "user-key", AUTH_ADMIN, &c), AUTH_NOT_ADMIN);
	auth_free(a);
}
END_TEST

START_TEST(test_auth_without_admin_keys_every_key_administers)
{
	struct auth *a = make_auth(false);
	struct caller c;

	ck_assert_int_eq(auth_check(a, "user-key", AUTH_ADMIN, &c), AUTH_OK);
	auth_free(a);
}
END_TEST

START_TEST(test_auth_disabled_lets_everyone_in)
{
	struct config cfg;
	struct auth *a;
	struct caller c;

	memset(&cfg, 0, sizeof(cfg));
	a = auth_new(&cfg);
	ck_assert_int_eq(auth_check(a, NULL, AUTH_ADMIN, &c), AUTH_OK);
	ck_assert_str_eq(c.key_id, "");
	auth_free(a);
}
END_TEST

START_TEST(test_auth_equal_ct)
{
	ck_assert(auth_equal_ct("abcd", "abcd", 4));
	ck_assert(!auth_equal_ct("abcd", "abce", 4));
	ck_assert(!auth_equal_ct("xbcd", "abcd", 4));
	ck_assert(auth_equal_ct("", "", 0));
}
END_TEST

START_TEST(test_auth_or_problem_never_echoes_the_key)
{
	struct auth *a = make_auth(true);
	const char *env[] = { "HTTP_X_API_KEY=wrong-secret-value", NULL };
	struct request r;

	http_request_init(&r, (char *const *)env, NULL, NULL);
	ck_assert(!auth_check_or_problem(a, &r, AUTH_ANY));
	ck_assert_int_eq(r.resp.status, 403);
	ck_assert(strstr(r.resp.body, "wrong-secret-value") == NULL);
	ck_assert(strstr(r.resp.headers, "wrong-secret-value") == NULL);
	auth_free(a);
}
END_TEST

START_TEST(test_auth_free_accepts_null)
{
	auth_free(NULL);
}
END_TEST

static Suite *auth_suite(void)
{
	Suite *s = suite_create("auth");
	TCase *core = tcase_create("core");
	TCase *limits = tcase_create("limits");
	TCase *errors = tcase_create("errors");

	tcase_add_test(core, test_sha256_known_vectors);
	tcase_add_test(core, test_sha256_key_id_is_the_digest_prefix);
	tcase_add_test(limits, test_sha256_one_call_and_bytewise_agree);
	tcase_add_test(core, test_auth_accepts_configured_keys);
	tcase_add_test(core, test_auth_without_admin_keys_every_key_administers);
	tcase_add_test(core, test_auth_disabled_lets_everyone_in);
	tcase_add_test(limits, test_auth_equal_ct);
	tcase_add_test(errors, test_auth_refuses_missing_unknown_and_non_admin);
	tcase_add_test(errors, test_auth_or_problem_never_echoes_the_key);
	tcase_add_test(errors, test_auth_free_accepts_null);
	suite_add_tcase(s, core);
	suite_add_tcase(s, limits);
	suite_add_tcase(s, errors);
	return s;
}

CHECK_MAIN(auth_suite)
