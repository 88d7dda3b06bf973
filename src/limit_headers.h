/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* limit_headers.h — reading an API's own rate limits from its response headers: the IETF
 * RateLimit/RateLimit-Policy fields (every draft form), X-RateLimit-*, X-Rate-Limit-*, OpenAI's
 * -requests forms and Retry-After, reduced to one most restrictive limit. A pure parser of outside
 * input: no I/O, no heap, no global state, time is an argument. It must not decide what to do with
 * the result (admission does) and must never turn a malformed value into a looser limit.
 *
 * Families and the fields read (names case-insensitive; every line of a field is read):
 *   family          fields                                        reset is
 *   "ietf"          RateLimit: "p";r=50;t=30 (draft-08 to -11,     t: delta seconds
 *                   also a=/w= of the 2026 proposal; c= ignored)
 *                   RateLimit: limit=, remaining=, reset= (-07)
 *                   RateLimit-Policy: "p";q=100;w=60  /  100;w=60
 *   "ietf-old"      RateLimit-Limit / -Remaining / -Reset (-00..-06)  reset value rule
 *   "openai"        x-ratelimit-{limit,remaining,reset}-requests   reset value rule
 *                   (-tokens is not a request count: ignored)
 *   "x-ratelimit"   X-RateLimit-Limit / -Remaining / -Reset (GitHub, Reddit, most APIs);
 *                   no -Limit but -Used (Reddit): the limit is used + remaining
 *   "x-rate-limit"  X-Rate-Limit-Limit / -Remaining / -Reset (X/Twitter)
 *   Retry-After     read on 4xx and 5xx only, with http_retry_after_ms (seconds or HTTP-date)
 *
 * Values:
 *   count        1-15 digits, an optional fraction (Reddit's "598.0") rounded down; anything else
 *                (sign, exponent, trailing text, 16+ digits) makes the value unknown
 *   reset value  digits with an optional fraction: >= 10^9 is epoch seconds (converted with now; a
 *                past epoch is 0), below is delta seconds; fractions round up to the millisecond.
 *                Or a duration: number+unit groups, units h m s ms us/µs ns ("6m0s", "1h2m3.5s",
 *                "12ms"), rounded up to the millisecond
 *   IETF params  SF Integers >= 0 only (RFC 9651); a decimal, string or negative value is unknown;
 *                other parameters (pk, qu, c...) are read past. A line that is not a valid SF list
 *                or dictionary is ignored whole (other lines still count).
 *   bounds       reset, window and Retry-After over LIMIT_HEADERS_MAX_WAIT_MS (7 days) are unknown
 *
 * Choosing (never looser than any clean candidate):
 *   candidates   the strictest IETF RateLimit item by its own r and t (first listed on a tie),
 *                with limit and window from the RateLimit-Policy item of the same name, or the
 *                strictest Policy item when there is no RateLimit field; one per other family,
 *                built from its lines: lowest limit, lowest remaining, latest reset
 *   winner       lowest remaining, clamped to its limit (known beats unknown); tie: later reset
 *                (known beats unknown); tie: lower limit per window; tie: lower limit; tie: the
 *                family listed first above
 *   remaining    0 on a 429 (the answer itself says the quota is spent)
 *   reset        Retry-After, when read, replaces the winner's reset (the draft says it wins)
 * A value that is unknown is left out of the choice; it never becomes 0 or a prefix of itself. */
#ifndef RLPROXY_LIMIT_HEADERS_H
#define RLPROXY_LIMIT_HEADERS_H

#include <stddef.h>
#include <stdint.h>

#define LIMIT_HEADERS_EPOCH_THRESHOLD_S INT64_C(1000000000)
#define LIMIT_HEADERS_MAX_WAIT_MS (INT64_C(7) * 24 * 3600 * 1000)
#define LIMIT_HEADERS_MAX_COUNT INT64_C(999999999999999) /* 15 digits, as an SF Integer */
#define LIMIT_HEADERS_POLICY_SIZE 32

/* What the response said, every number -1 when unknown. */
struct limit_headers {
    int found;              /* 1 when any field below is known */
    int64_t limit;          /* requests per window */
    int64_t remaining;      /* requests left, <= limit when both are known */
    int64_t reset_ms;       /* from now until the quota resets, 0..LIMIT_HEADERS_MAX_WAIT_MS */
    int64_t window_ms;      /* the quota's window (IETF w only) */
    int64_t retry_after_ms; /* Retry-After, from now */
    char policy[LIMIT_HEADERS_POLICY_SIZE]; /* IETF policy name ("" if none), cut to fit */
    const char *family; /* the winner's family (see above), "retry-after", "status" or NULL */
};

/* head: curl's header block ("Name: value\r\n" lines, as http_retry_after_ms takes it); status:
 * the response's status code; now_ms: wall-clock milliseconds since the epoch. Fills *out and
 * returns out->found. */
int limit_headers_parse(const char *head, size_t len, int status, int64_t now_ms,
                        struct limit_headers *out);

#endif
