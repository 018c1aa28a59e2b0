#include "auth.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "metrics.h"
#include "sha256.h"

struct auth_entry {
	uint8_t digest[SHA256_DIGEST_LEN];  /* SHA-256 of the key */
	bool admin;                         /* may PUT/DELETE */
};

struct auth {
	bool enabled;                       /* checks on at all */
	bool admin_keys_set;                /* ABACUS_ADMIN_API_KEYS given */
	struct auth_entry *entries;
	size_t count;
};

bool auth_equal_ct(const void *a, const void *b, size_t n)
{
	const volatile unsigned char *x = a;
	const volatile unsigned char *y = b;
	unsigned char diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= x[i] ^ y[i];
	return diff == 0;
}

static bool add_entries(struct auth *auth, const struct key_list *keys, bool admin)
{
	for (size_t i = 0; i < keys->count; i++) {
		struct auth_entry *e = &auth->entries[auth->count];
		char id[SHA256_KEY_ID_LEN + 1];

		sha256(keys->keys[i], strlen(keys->keys[i]), e->digest);
		e->admin = admin;
		sha256_hex_prefix(e->digest, id);

		/* The same key in both lists is one admin key; a different key with
		 * the same id would share idempotency and rate-limit scopes. */
		for (size_t j = 0; j < auth->count; j++) {
			char other[SHA256_KEY_ID_LEN + 1];

			if (memcmp(auth->entries[j].digest, e->digest, SHA256_DIGEST_LEN) == 0) {
				auth->entries[j].admin |= admin;
				goto next;
			}
			sha256_hex_prefix(auth->entries[j].digest, other);
			if (strcmp(id, other) == 0) {
				log_message(LOG_LEVEL_ERROR, "config_error", NULL,
				            "two API keys share a key id; replace one of them");
				return false;
			}
		}
		auth->count++;
next:;
	}
	return true;
}

struct auth *auth_new(const struct config *cfg)
{
	struct auth *auth = calloc(1, sizeof(*auth));
	size_t total = cfg->api_keys.count + cfg->admin_keys.count;

	if (auth == NULL)
		return NULL;
	auth->enabled = cfg->auth_enabled;
	auth->admin_keys_set = cfg->admin_keys.count > 0;
	auth->entries = calloc(total > 0 ? total : 1, sizeof(*auth->entries));
	if (auth->entries == NULL)
		goto err;

	/* Without admin keys, every key may administer (SPEC 4). */
	if (!add_entries(auth, &cfg->api_keys, !auth->admin_keys_set) ||
	    !add_entries(auth, &cfg->admin_keys, true))
		goto err;
	return auth;
err:
	auth_free(auth);
	return NULL;
}

void auth_free(struct auth *auth)
{
	if (auth == NULL)
		return;
	free(auth->entries);
	free(auth);
}

const char *auth_result_name(enum auth_result result)
{
	switch (result) {
	case AUTH_OK: return "ok";
	case AUTH_MISSING: return "missing";
	case AUTH_UNKNOWN: return "unknown";
	case AUTH_NOT_ADMIN: return "not_admin";
	default: return "?";
	}
}

enum auth_result auth_check(const struct auth *auth, const char *presented, enum auth_need need,
                            struct caller *caller)
{
	uint8_t digest[SHA256_DIGEST_LEN];
	const struct auth_entry *match = NULL;

	caller->key_id[0] = '\0';
	caller->admin = !auth->enabled;
	if (!auth->enabled)
		return AUTH_OK;
	if (presented == NULL || *presented == '\0')
		return AUTH_MISSING;

	sha256(presented, strlen(presented), digest);
	sha256_hex_prefix(digest, caller->key_id);

	/* Look at every entry, whatever matches, so timing says nothing. */
	for (size_t i = 0; i < auth->count; i++)
		if (auth_equal_ct(auth->entries[i].digest, digest, SHA256_DIGEST_LEN))
			match = &auth->entries[i];
	if (match == NULL)
		return AUTH_UNKNOWN;
	caller->admin = match->admin;
	if (need == AUTH_ADMIN && !match->admin)
		return AUTH_NOT_ADMIN;
	return AUTH_OK;
}

static bool check_key_or_problem(const struct auth *auth, struct request *r, const char *presented,
                                 enum auth_need need)
{
	enum auth_result result = auth_check(auth, presented, need, &r->caller);
	struct log_line l;

	if (result == AUTH_OK)
		return true;
	metrics_auth_failure(result == AUTH_MISSING ? METRICS_AUTH_MISSING
	                     : result == AUTH_NOT_ADMIN ? METRICS_AUTH_NOT_ADMIN
	                     : METRICS_AUTH_UNKNOWN);
	if (log_begin(&l, LOG_LEVEL_WARN, "auth_failure", r->request_id)) {
		log_str(&l, "reason", auth_result_name(result));
		if (result != AUTH_MISSING)
			log_str(&l, "key_id", r->caller.key_id);
		log_end(&l);
	}
	switch (result) {
	case AUTH_MISSING:
		http_problem(r, PROBLEM_UNAUTHORIZED, "send your API key in the X-API-Key header");
		http_add_header(r, "WWW-Authenticate", "ApiKey header=\"X-API-Key\"");
		break;
	case AUTH_NOT_ADMIN:
		http_problem(r, PROBLEM_ADMIN_REQUIRED, "this operation needs an admin API key");
		break;
	default:
		http_problem(r, PROBLEM_FORBIDDEN, "the API key is not valid");
		break;
	}
	return false;
}

bool auth_check_or_problem(const struct auth *auth, struct request *r, enum auth_need need)
{
	return check_key_or_problem(auth, r, http_param(r, "HTTP_X_API_KEY"), need);
}

bool auth_check_bearer_or_problem(const struct auth *auth, struct request *r)
{
	const char *key = http_param(r, "HTTP_X_API_KEY");
	const char *authorization = http_param(r, "HTTP_AUTHORIZATION");

	if (key == NULL && authorization != NULL && strncasecmp(authorization, "Bearer ", 7) == 0)
		key = authorization + 7;
	return check_key_or_problem(auth, r, key, AUTH_ANY);
}
