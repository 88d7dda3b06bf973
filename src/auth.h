/* auth.h — proxy authentication (RFC 9110 11.7: Basic over Proxy-Authorization). Verifies the
 * client's credentials against the config's users (crypt(3) hashes), with a small per-thread
 * cache so a keep-alive client does not pay a slow hash on every request. Never logs or forwards
 * a password. */
#ifndef RLPROXY_AUTH_H
#define RLPROXY_AUTH_H

#include <stddef.h>

#include "config.h"

/* 1 when the config asks clients to authenticate. */
int auth_required(const struct config *config);

/* Checks a Proxy-Authorization value ("Basic dXNlcjpwYXNz"). 1 and the user name in user_out
 * when valid; 0 otherwise. Thread-safe (the cache is per thread). */
int auth_check(const struct config *config, const char *value, size_t len, char *user_out,
               size_t user_len);

/* Decodes standard base64 (RFC 4648 4, padding required when the length is not a multiple of 4);
 * -1 on anything else. For tests too. */
int auth_base64_decode(const char *in, size_t len, char *out, size_t out_cap, size_t *out_len);

#endif
