/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* fuzz_limit_headers.c — libFuzzer target for the parser of the rate limits an origin announces
 * (limit_headers.c). The origin is outside input, so besides crashes and sanitizer reports the
 * result must keep the promises admission relies on (check), or it traps:
 *   - every number is -1 (unknown) or inside its bound: counts 0..LIMIT_HEADERS_MAX_COUNT, times
 *     0..LIMIT_HEADERS_MAX_WAIT_MS; no negative reset;
 *   - remaining <= limit when both are known; a 429 leaves remaining 0;
 *   - Retry-After, when read, is the reset; found says whether anything was; the policy name is
 *     terminated inside its buffer; the same input parses the same way twice;
 *   - never looser: the same block after a clean "7 left of 100" never yields more than 7 left.
 * Input: bytes 0-1 pick the status (100-599), byte 2 the clock (now, 0, the epoch threshold, or far
 * ahead); the rest is the header block, as curl hands it over. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "limit_headers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_range(int64_t value, int64_t max)
{
    if (value < -1 || value > max)
        abort();
}

static void check(const struct limit_headers *lh, int status, int found)
{
    if (found != lh->found || (found != 0) != (lh->family != NULL))
        abort();
    check_range(lh->limit, LIMIT_HEADERS_MAX_COUNT);
    check_range(lh->remaining, LIMIT_HEADERS_MAX_COUNT);
    check_range(lh->reset_ms, LIMIT_HEADERS_MAX_WAIT_MS);
    check_range(lh->window_ms, LIMIT_HEADERS_MAX_WAIT_MS);
    check_range(lh->retry_after_ms, LIMIT_HEADERS_MAX_WAIT_MS);
    if (lh->limit >= 0 && lh->remaining > lh->limit)
        abort();
    if (status == 429 && lh->remaining != 0)
        abort();
    if (lh->retry_after_ms >= 0 && lh->reset_ms != lh->retry_after_ms)
        abort();
    if (memchr(lh->policy, '\0', sizeof lh->policy) == NULL)
        abort();
    if (!found && (lh->limit != -1 || lh->remaining != -1 || lh->reset_ms != -1 ||
                   lh->window_ms != -1 || lh->retry_after_ms != -1 || lh->policy[0] != '\0'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t clocks_ms[] = {1700000000000, 0, 1000000000999, 4102444800500};
    if (size < 3)
        return 0;
    int status = 100 + (int)(((unsigned)data[0] << 8 | data[1]) % 500);
    int64_t now_ms = clocks_ms[data[2] % 4];
    const char *head = (const char *)data + 3;
    size_t len = size - 3;

    /* a copy of exactly len bytes, so that ASan sees any read past the block */
    char *block = malloc(len ? len : 1);
    if (block == NULL)
        return 0;
    memcpy(block, head, len);
    struct limit_headers first, second;
    int found = limit_headers_parse(block, len, status, now_ms, &first);
    check(&first, status, found);
    limit_headers_parse(block, len, status, now_ms, &second);
    if (memcmp(&first, &second, sizeof first) != 0)
        abort();
    free(block);

    static const char clean[] =
        "X-RateLimit-Limit: 100\r\nX-RateLimit-Remaining: 7\r\nX-RateLimit-Reset: 60\r\n";
    size_t clean_len = sizeof clean - 1;
    char *after_clean = malloc(clean_len + len);
    if (after_clean == NULL)
        return 0;
    memcpy(after_clean, clean, clean_len);
    memcpy(after_clean + clean_len, head, len);
    found = limit_headers_parse(after_clean, clean_len + len, status, now_ms, &first);
    check(&first, status, found);
    if (first.remaining < 0 || first.remaining > 7)
        abort();
    free(after_clean);
    return 0;
}
