/* auth.c — see auth.h. */
#include "auth.h"

#include <crypt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define CACHE_SLOTS 64
#define CACHE_TTL_MS (5 * 60 * 1000) /* a removed user or changed password stops working by then */

struct cache_entry {
    const struct config *config; /* entries belong to one config: a reload starts afresh */
    char token[512];             /* the Basic token as sent */
    char user[256];
    uint64_t expires_ms;
};

static _Thread_local struct cache_entry cache[CACHE_SLOTS];
static _Thread_local struct crypt_data crypt_scratch;

int auth_required(const struct config *config) { return config->auth_users_count > 0; }

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int auth_base64_decode(const char *in, size_t len, char *out, size_t out_cap, size_t *out_len)
{
    if (len % 4 != 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad > 0 || (v[k] = b64_value(in[i + k])) < 0) {
                return -1;
            }
        }
        unsigned triple = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 |
                          (unsigned)v[3];
        for (int k = 0; k < 3 - pad; k++) {
            if (n + 1 >= out_cap)
                return -1;
            out[n++] = (char)(triple >> (16 - 8 * k));
        }
    }
    out[n] = '\0';
    *out_len = n;
    return 0;
}

/* Compares without an early exit, so timing does not tell how much of a guess was right. */
static int equal_constant_time(const char *a, size_t a_len, const char *b, size_t b_len)
{
    unsigned char diff = (unsigned char)(a_len != b_len);
    size_t n = a_len < b_len ? a_len : b_len;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

static uint64_t hash_token(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static const struct auth_user *find_user(const struct config *config, const char *name)
{
    for (size_t i = 0; i < config->auth_users_count; i++)
        if (strcmp(config->auth_users[i].name, name) == 0)
            return &config->auth_users[i];
    return NULL;
}

static int verify(const struct auth_user *u, const char *password)
{
    const char *hashed = crypt_r(password, u->hash, &crypt_scratch);
    if (hashed == NULL || hashed[0] == '*')
        return 0; /* crypt's failure tokens start with '*' */
    return equal_constant_time(hashed, strlen(hashed), u->hash, strlen(u->hash));
}

int auth_check(const struct config *config, const char *value, size_t len, char *user_out,
               size_t user_len)
{
    if (len < 6 || strncasecmp(value, "Basic ", 6) != 0)
        return 0;
    const char *token = value + 6;
    size_t token_len = len - 6;
    while (token_len > 0 && *token == ' ') {
        token++;
        token_len--;
    }
    if (token_len == 0 || token_len >= sizeof cache[0].token)
        return 0;
    uint64_t now = util_now_ms();
    struct cache_entry *slot = &cache[hash_token(token, token_len) % CACHE_SLOTS];
    if (slot->config == config && slot->expires_ms > now &&
        equal_constant_time(slot->token, strlen(slot->token), token, token_len)) {
        snprintf(user_out, user_len, "%s", slot->user);
        return 1;
    }
    char decoded[512];
    size_t decoded_len;
    if (auth_base64_decode(token, token_len, decoded, sizeof decoded, &decoded_len) != 0 ||
        memchr(decoded, '\0', decoded_len) != NULL)
        return 0;
    char *colon = strchr(decoded, ':');
    if (colon == NULL)
        return 0;
    *colon = '\0';
    const struct auth_user *u = strlen(decoded) < sizeof slot->user ? find_user(config, decoded)
                                                                    : NULL;
    /* an unknown user costs a hash too, so timing does not tell which user names exist */
    int ok = verify(u != NULL ? u : &config->auth_users[0], colon + 1) && u != NULL;
    if (ok) {
        slot->config = config;
        memcpy(slot->token, token, token_len);
        slot->token[token_len] = '\0';
        snprintf(slot->user, sizeof slot->user, "%s", decoded);
        slot->expires_ms = now + CACHE_TTL_MS;
        snprintf(user_out, user_len, "%s", decoded);
    }
    /* the password does not outlive this call on our stack */
    explicit_bzero(decoded, sizeof decoded);
    return ok;
}
