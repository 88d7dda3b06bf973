/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* fuzz_auth.c — libFuzzer target for proxy authentication (auth.c): the base64 decoder against a
 * reference decoder, with an output buffer of exactly the size the caller claims (so ASan sees any
 * write past it), and auth_check on arbitrary Proxy-Authorization values, which may only ever
 * accept the one configured user with the right password.
 *
 * Input: byte 0 picks the decoder's output capacity (1..64 bytes); the rest is the base64 text and,
 * as is, a Proxy-Authorization value (also tried behind "Basic "). The users are alice (password
 * "pw", md5-crypt so a hit costs microseconds, not a sha512 round trip) and mallory, whose hash is
 * not one crypt(3) can use. Build with the FUZZ targets (./configure CC=clang --enable-fuzz), or:
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc tests/fuzz/fuzz_auth.c \
 *         src/librlproxy.a -lyaml -lcrypt -o fuzz_auth
 *   ./fuzz_auth -max_total_time=60 tests/fuzz/corpus_auth */

#include "auth.h"
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct config *cfg;

static const char yaml[] = "auth:\n"
                           "  realm: fuzz\n"
                           "  users:\n"
                           "    alice: \"$1$fuzzsalt$PTQ9Un8QTaVCYiHFsvjEO1\"\n"
                           "    mallory: \"$9$not-a-usable-hash\"\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char err[512];
    if (config_load_string(yaml, sizeof yaml - 1, "fuzz_auth.yaml", &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_auth: config: %s\n", err);
        abort();
    }
    return 0;
}

static int b64_ref(unsigned char c)
{
    const char *tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = c != 0 ? strchr(tab, c) : NULL;
    return p != NULL ? (int)(p - tab) : -1;
}

/* RFC 4648 section 4, padding required, nothing else accepted; -1 or the decoded length */
static long ref_decode(const uint8_t *in, size_t len, uint8_t *out)
{
    if (len % 4 != 0)
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        int last = i + 4 == len;
        int pad = (last && in[i + 3] == '=') + (last && in[i + 2] == '=' && in[i + 3] == '=');
        unsigned v = 0;
        for (int k = 0; k < 4; k++) {
            int d = k >= 4 - pad ? 0 : b64_ref(in[i + k]);
            if (d < 0)
                return -1;
            v = v << 6 | (unsigned)d;
        }
        for (int k = 0; k < 3 - pad; k++)
            out[n++] = (uint8_t)(v >> (16 - 8 * k));
    }
    return (long)n;
}

static void check_decoder(const uint8_t *text, size_t len, size_t cap)
{
    char *out = malloc(cap); /* exactly cap bytes: a write past them is an ASan report */
    uint8_t *want = malloc(len + 1);
    if (out == NULL || want == NULL)
        abort();
    size_t out_len = 0;
    int rc = auth_base64_decode((const char *)text, len, out, cap, &out_len);
    long ref = ref_decode(text, len, want);
    if (rc == 0) {
        /* accepted: valid base64, the same bytes, room for the terminating NUL */
        if (ref < 0 || (size_t)ref != out_len || out_len >= cap || out[out_len] != '\0' ||
            memcmp(out, want, out_len) != 0)
            __builtin_trap();
    } else if (rc != -1 || (ref >= 0 && (size_t)ref + 1 <= cap)) {
        __builtin_trap(); /* refused valid base64 that fits */
    }
    free(out);
    free(want);
}

static void check_credentials(const char *value, size_t len)
{
    char user[256];
    memset(user, 'X', sizeof user);
    if (auth_check(cfg, value, len, user, sizeof user) != 1)
        return;
    /* accepted: only alice:pw may get here, whatever the spelling of the scheme and padding */
    if (strcmp(user, "alice") != 0)
        __builtin_trap();
    const char *token = value + 6;
    size_t token_len = len - 6;
    while (token_len > 0 && *token == ' ')
        token++, token_len--;
    uint8_t *plain = malloc(token_len + 1);
    if (plain == NULL)
        abort();
    long n = ref_decode((const uint8_t *)token, token_len, plain);
    if (n != 8 || memcmp(plain, "alice:pw", 8) != 0)
        __builtin_trap();
    free(plain);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096)
        return 0;
    size_t cap = 1 + data[0] % 64;
    const uint8_t *text = data + 1;
    size_t len = size - 1;
    check_decoder(text, len, cap);

    /* the value as sent, in a buffer of exactly its length (no NUL after it) */
    char *value = malloc(len ? len : 1);
    if (value == NULL)
        abort();
    memcpy(value, text, len);
    check_credentials(value, len);
    free(value);

    /* and as the token of a Basic credential */
    char *basic = malloc(len + 6);
    if (basic == NULL)
        abort();
    memcpy(basic, "Basic ", 6);
    memcpy(basic + 6, text, len);
    check_credentials(basic, len + 6);
    free(basic);
    return 0;
}
