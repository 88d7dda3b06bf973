/* fuzz_config.c — libFuzzer target for the config loader: any byte string must come back as a
 * config or as one error message, without crashes, leaks or undefined behaviour. Build by hand:
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc tests/fuzz/fuzz_config.c \
 *         src/config.c src/config_yaml.c src/log.c -lyaml -o fuzz_config
 *   ./fuzz_config -max_total_time=60 tests/fuzz/corpus_config */

#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
    } else if (cfg != NULL || strlen(err) == 0) {
        __builtin_trap(); /* failure promises no config and a message */
    }
    config_unref(cfg);
    return 0;
}
