/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* credential.h — turns a credential (the value of a header such as Authorization) into the text a
 * rate-limit window is counted under: "h:" and 32 hex digits of HMAC-SHA256 under a secret key,
 * so windows, logs, metrics, 429 bodies and Redis never hold the credential itself. Owns the
 * secret keys; must not keep, log or return a value it was given. */
#ifndef RLPROXY_CREDENTIAL_H
#define RLPROXY_CREDENTIAL_H

#include <stddef.h>

struct credential_key;

/* "h:" + 16 bytes of the MAC in hex + NUL */
#define CREDENTIAL_TEXT_SIZE 35

/* A key of 32 random bytes from getrandom(2), for windows that live in this process only. NULL
 * (with a reason in err) when the kernel has no randomness to give. */
struct credential_key *credential_key_new_random(char *err, size_t err_len);
/* A key from a configured secret (shared.key_secret), the same in every instance that is given
 * it; NULL when out of memory. */
struct credential_key *credential_key_new(const void *secret, size_t secret_len);
void credential_key_free(struct credential_key *key);

/* Writes the text for `value` (len bytes, may be 0) into out[CREDENTIAL_TEXT_SIZE]. With a NULL
 * key the MAC is a plain SHA-256: still never the value, but a reader of the text can test
 * guesses of it, which a secret key prevents. Thread-safe. */
void credential_text(const struct credential_key *key, const char *value, size_t len,
                     char out[CREDENTIAL_TEXT_SIZE]);

#endif
