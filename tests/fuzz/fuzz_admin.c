/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* fuzz_admin.c — libFuzzer target for what the admin endpoint reads from the network before it
 * answers (admin_request.c): the method and request target (path, rule name, percent-decoded
 * key) and the Authorization header's token check. Besides crashes and sanitizer reports it traps
 * when a promise breaks:
 *   - a reset names a rule of [A-Za-z0-9_.-]{1,63} and a NUL-free key shorter than
 *     LIMITER_KEY_TEXT_MAX, terminated inside its buffer; a 400 has a reason;
 *   - the token check accepts exactly "Bearer " (any case) + the token, never an empty token;
 *   - the same input routes the same way twice.
 * Input: byte 0 picks the method; then the target up to the first NUL; after it the
 * Authorization value, checked against the token "s3cret-Token". */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char token[] = "s3cret-Token";

static void check_request(const struct admin_request *r)
{
    if (r->route == ADMIN_ROUTE_BAD_REQUEST && r->why == NULL)
        abort();
    if (r->route != ADMIN_ROUTE_RESET)
        return;
    size_t n = strnlen(r->rule, sizeof r->rule);
    if (n == 0 || n >= sizeof r->rule)
        abort();
    for (size_t i = 0; i < n; i++)
        if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-",
                   r->rule[i]) == NULL)
            abort();
    if (r->key_len >= sizeof r->key || r->key[r->key_len] != '\0' ||
        memchr(r->key, '\0', r->key_len) != NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum admin_method method = (enum admin_method)(data[0] % 4);
    const char *target = (const char *)data + 1;
    size_t rest = size - 1;
    const char *nul = memchr(target, '\0', rest);
    size_t target_len = nul != NULL ? (size_t)(nul - target) : rest;
    struct admin_request a, b;
    admin_request_parse(method, target, target_len, &a);
    admin_request_parse(method, target, target_len, &b);
    check_request(&a);
    if (a.route != b.route || a.method_allowed != b.method_allowed || a.key_len != b.key_len ||
        memcmp(a.key, b.key, a.key_len) != 0 || strcmp(a.rule, b.rule) != 0)
        abort();
    if (nul == NULL)
        return 0;
    size_t auth_len = rest - target_len - 1;
    char *auth = malloc(auth_len + 1);
    if (auth == NULL)
        return 0;
    memcpy(auth, nul + 1, auth_len);
    auth[auth_len] = '\0';
    int ok = admin_request_token_ok(auth, token);
    int want = strlen(auth) == 7 + strlen(token) && strncasecmp(auth, "bearer ", 7) == 0 &&
               strcmp(auth + 7, token) == 0;
    if (ok != want || admin_request_token_ok(auth, "") != 0)
        abort();
    free(auth);
    return 0;
}
