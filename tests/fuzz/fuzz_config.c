/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* fuzz_config.c — libFuzzer target for the config loader: any byte string must come back as a
 * config or as one error message, without crashes, leaks or undefined behaviour; a config that
 * loads must load again, the same, from what -T prints of it. Build by hand:
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc tests/fuzz/fuzz_config.c \
 *         src/config*.c src/log.c -lyaml -o fuzz_config
 *   ./fuzz_config -max_total_time=60 tests/fuzz/corpus_config */

#include "config.h"
#include "config_dump.h"
#include "config_warn.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Only a masked secret may differ after -T's output is loaded again. */
static void only_secrets_differ(const struct config_key *key, const char *old_text,
                                const char *new_text, void *arg)
{
    (void)old_text, (void)new_text, (void)arg;
    if (!key->secret)
        __builtin_trap();
}

static void ignore_warning(const char *message, void *arg)
{
    (void)message, (void)arg;
}

/* What -T prints loads again as the same config. Masked user hashes do not load (they are no
 * crypt(3) hashes), so configs with users are not compared. */
static void check_dump_round_trip(const struct config *cfg)
{
    char *text = NULL, err[512];
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (out == NULL || config_dump(cfg, out) != 0 || fclose(out) != 0)
        __builtin_trap();
    struct config *again = NULL;
    if (cfg->auth_users_count == 0) {
        if (config_load_string(text, len, "dump.yaml", &again, err, sizeof err) != 0)
            __builtin_trap();
        config_diff(cfg, again, only_secrets_differ, NULL);
        config_unref(again);
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = NULL;
    char err[512];
    /* The input is not NUL-terminated: this also checks that the length, not a NUL, bounds the
     * parse. */
    int rc = config_load_string((const char *)data, size, "fuzz.yaml", &cfg, err, sizeof err);
    if (rc == 0) {
        if (cfg == NULL || cfg->listen_count == 0)
            __builtin_trap(); /* success promises a complete config */
        check_dump_round_trip(cfg);
        config_rule_warnings(cfg, ignore_warning, NULL);
    } else if (cfg != NULL || strlen(err) == 0) {
        __builtin_trap(); /* failure promises no config and a message */
    }
    config_unref(cfg);
    return 0;
}
