#include "auth.h"

#include <check.h>
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

START_TEST(test_sha256_known_vectors)
{
	uint8_t d[SHA256_DIGEST_LEN];
	char id[9];
	char million[1000];

	sha256("", 0, d);
	sha256_hex_prefix(d, id);
	ck_assert_str_eq(id, "e3b0c442");
	sha256("abc", 3, d);
	sha256_hex_prefix(d, id);
	ck_assert_str_eq(id, "ba7816bf");
	sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, d);
	sha256_hex_prefix(d, id);
	ck_assert_str_eq(id, "248d6a61");
	memset(million, 'a', sizeof(million));
	sha256(million, 64, d);     /* exactly one block + padding block */
	sha256_hex_prefix(d, id);
	ck_assert_str_eq(id, "ffe054fe");
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
