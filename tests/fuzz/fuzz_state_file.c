/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* fuzz_state_file.c — libFuzzer target for the state file reader (state_file.c). The file is
 * outside input (a disk, an operator's editor, a crash mid-write), so besides crashes and sanitizer
 * reports the reader must keep its promises, or this traps:
 *   - all or nothing: a refused file restores no window;
 *   - an accepted file restores at most `limit` entries per window, none older than its window
 *     or in the future (checked through the limiter's view); a window without entries only for a
 *     learned limit that still holds (a pause or a reset ahead, at most their bounds away);
 *   - the same bytes with a checksum recomputed over them are parsed too, so the fuzzer reaches
 *     the parser and not only the checksum;
 *   - a rendered limiter parses again and renders to the same windows (and no more learned
 *     limits: a file may name a key twice, a render names it once).
 * Input: byte 0 picks the clock (monotonic small or large, wall before or after the saves in the
 * corpus); the rest is the file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "limit_headers.h"
#include "limiter.h"
#include "state_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S 1000000ULL

static struct rate_rule rules[3];
static struct config config;

static void setup(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    const char *names[] = {"api", "all", "hosts"};
    const enum rate_key keys[] = {RATE_KEY_CLIENT, RATE_KEY_GLOBAL, RATE_KEY_HOST};
    const uint32_t limits[] = {3, 100, 5};
    const uint64_t windows_ms[] = {60000, 3600000, 1000};
    for (size_t i = 0; i < 3; i++) {
        snprintf(rules[i].name, sizeof rules[i].name, "%s", names[i]);
        rules[i].key = keys[i];
        rules[i].limit = limits[i];
        rules[i].window_ms = windows_ms[i];
        rules[i].over_limit = RATE_OVER_REJECT;
        rules[i].max_delay_ms = 30000;
        rules[i].max_queue = 1000;
        rules[i].cost = 1;
        rules[i].enforce = 1;
    }
    config.rate_limits = rules;
    config.rate_limits_count = 3;
    config.rate_limits_max_keys = 100000;
}

struct check {
    uint32_t limit;
    uint64_t total;
};

static void check_window(const struct limiter_window_view *v, void *arg)
{
    struct check *c = arg;
    int learned = v->paused_us > 0 || v->origin_reset_us > 0;
    if ((v->used == 0 && !learned) || v->used > c->limit || v->held != 0 ||
        v->key_len >= LIMITER_KEY_TEXT_MAX || v->paused_us > LIMITER_MAX_PAUSE_US ||
        v->origin_reset_us > (uint64_t)LIMIT_HEADERS_MAX_WAIT_MS * 1000)
        abort();
    c->total += v->used;
}

static uint64_t check_limiter(struct limiter *l, uint64_t mono)
{
    uint64_t total = 0;
    for (size_t i = 0; i < limiter_rule_count(l); i++) {
        struct check c = {rules[i].limit, 0};
        limiter_foreach_window(l, i, mono, check_window, &c);
        total += c.total;
    }
    return total;
}

static void parse_one(const char *text, size_t len, uint64_t mono, uint64_t wall)
{
    struct limiter *l = limiter_new(&config, NULL, NULL);
    if (l == NULL)
        return;
    struct state_file_counts counts;
    char err[256];
    int rc = state_file_parse(l, text, len, mono, wall, &counts, err, sizeof err);
    uint64_t entries = check_limiter(l, mono);
    if (rc != 0 && (entries != 0 || limiter_total_keys(l) != 0))
        abort(); /* a refused file restored something */
    if (rc == 0 && (entries != counts.entries || counts.matched > counts.rules))
        abort();
    if (rc == 0 && wall > mono) { /* what was restored renders and parses back the same */
        size_t again_len;
        char *again = state_file_render(l, mono, wall, &again_len);
        if (again != NULL) {
            struct limiter *l2 = limiter_new(&config, NULL, NULL);
            struct state_file_counts counts2;
            if (l2 != NULL &&
                (state_file_parse(l2, again, again_len, mono, wall, &counts2, err, sizeof err) !=
                     0 ||
                 check_limiter(l2, mono) != entries || counts2.learned > counts.learned))
                abort();
            limiter_unref(l2);
            free(again);
        }
    }
    limiter_unref(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size < 1 || size > 1 << 16)
        return 0;
    static const uint64_t monos[] = {2 * S, 100000 * S};
    static const uint64_t walls[] = {1800000000ULL * S, 1800000030ULL * S, 1, 0};
    uint64_t mono = monos[data[0] & 1], wall = walls[(data[0] >> 1) & 3];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    parse_one(text, len, mono, wall);
    /* the same body under a valid checksum: replace or add the trailer */
    size_t body = len;
    const char *end = NULL;
    for (size_t i = len; i >= 4 && end == NULL; i--)
        if (memcmp(text + i - 4, "end ", 4) == 0 && (i == 4 || text[i - 5] == '\n'))
            end = text + i - 4;
    if (end != NULL)
        body = (size_t)(end - text);
    char *fixed = malloc(body + 14);
    if (fixed == NULL)
        return 0;
    memcpy(fixed, text, body);
    snprintf(fixed + body, 14, "end %08x\n", state_file_crc32(fixed, body));
    parse_one(fixed, body + 13, mono, wall);
    free(fixed);
    return 0;
}
