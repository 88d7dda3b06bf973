/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* credential.c — see credential.h.
 *
 * HMAC rather than a bare hash of key and value: HMAC-SHA256 is a PRF under its key, so equal
 * texts mean equal values and nothing else can be learned without the key, not even whether two
 * processes saw the same token. 128 bits of the MAC keep collisions between tokens (which would
 * merge their windows) out of reach for any number of keys a limiter can hold. */
#include "credential.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define RANDOM_KEY_SIZE 32
#define MAC_BYTES_KEPT 16

struct credential_key {
    size_t len;
    unsigned char bytes[];
};

struct credential_key *credential_key_new(const void *secret, size_t secret_len)
{
    struct credential_key *key = malloc(sizeof *key + (secret_len ? secret_len : 1));
    if (key == NULL)
        return NULL;
    key->len = secret_len;
    if (secret_len > 0)
        memcpy(key->bytes, secret, secret_len);
    return key;
}

struct credential_key *credential_key_new_random(char *err, size_t err_len)
{
    unsigned char bytes[RANDOM_KEY_SIZE];
    size_t got = 0;
    while (got < sizeof bytes) {
        ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, err_len, "cannot draw a random key for header rate-limit keys: %s",
                     strerror(errno));
            return NULL;
        }
        got += (size_t)n;
    }
    struct credential_key *key = credential_key_new(bytes, sizeof bytes);
    OPENSSL_cleanse(bytes, sizeof bytes);
    if (key == NULL)
        snprintf(err, err_len, "out of memory");
    return key;
}

void credential_key_free(struct credential_key *key)
{
    if (key == NULL)
        return;
    OPENSSL_cleanse(key->bytes, key->len);
    free(key);
}

void credential_text(const struct credential_key *key, const char *value, size_t len,
                     char out[CREDENTIAL_TEXT_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    static const char empty[1] = "";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (value == NULL) /* an absent header counts as the empty value */
        value = empty, len = 0;
    if (key != NULL)
        HMAC(EVP_sha256(), key->bytes, (int)key->len, (const unsigned char *)value, len, mac,
             &mac_len);
    if (mac_len < MAC_BYTES_KEPT) { /* no key, or HMAC failed: never fall back to the value */
        SHA256((const unsigned char *)value, len, mac);
        mac_len = SHA256_DIGEST_LENGTH;
    }
    out[0] = 'h';
    out[1] = ':';
    for (size_t i = 0; i < MAC_BYTES_KEPT; i++) {
        out[2 + 2 * i] = hex[mac[i] >> 4];
        out[3 + 2 * i] = hex[mac[i] & 15];
    }
    out[2 + 2 * MAC_BYTES_KEPT] = '\0';
    OPENSSL_cleanse(mac, sizeof mac);
}
