/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_limit_headers.c — the parser of upstream rate-limit headers (limit_headers.c): each
 * vendor's real header shapes, every IETF draft form, Retry-After, which candidate wins, the
 * sanity rules and malformed input, as rows of one table run against a fixed clock. */
#include <check.h>
#include <stdint.h>
#include <string.h>

#include "limit_headers.h"

#include "unit.h"

#define NOW_S INT64_C(1700000000) /* Tue, 14 Nov 2023 22:13:20 GMT */
#define NOW_MS (NOW_S * 1000)     /* what limit_headers_parse takes */
#define U (-1)                    /* unknown */
#define DAYS_7_MS (INT64_C(604800) * 1000)

struct row {
    const char *what;
    int status;
    const char *head;
    int64_t limit, remaining, reset_ms, window_ms, retry_after_ms;
    const char *policy; /* NULL: "" */
    const char *family; /* NULL: nothing found */
};

static const struct row rows[] = {
    /* ---- vendors, as they send it */
    {"github", 200,
     "x-ratelimit-limit: 5000\r\nx-ratelimit-remaining: 4999\r\nx-ratelimit-used: 1\r\n"
     "x-ratelimit-reset: 1700000600\r\nx-ratelimit-resource: core\r\n",
     5000, 4999, 600000, U, U, NULL, "x-ratelimit"},
    {"github spent (403)", 403,
     "x-ratelimit-limit: 60\r\nx-ratelimit-remaining: 0\r\nx-ratelimit-reset: 1700000060\r\n", 60,
     0, 60000, U, U, NULL, "x-ratelimit"},
    {"github secondary limit: retry-after on a 403", 403,
     "retry-after: 60\r\nx-ratelimit-limit: 5000\r\nx-ratelimit-remaining: 4000\r\n"
     "x-ratelimit-reset: 1700003000\r\n",
     5000, 4000, 60000, U, 60000, NULL, "x-ratelimit"},
    {"x/twitter", 200,
     "x-rate-limit-limit: 900\r\nx-rate-limit-remaining: 899\r\nx-rate-limit-reset: 1700000900\r\n",
     900, 899, 900000, U, U, NULL, "x-rate-limit"},
    {"reddit: float remaining, delta reset", 200,
     "x-ratelimit-used: 4\r\nx-ratelimit-remaining: 596.0\r\nx-ratelimit-reset: 340\r\n", 600, 596,
     340000, U, U, NULL, "x-ratelimit"},
    {"reddit without used: no limit", 200,
     "x-ratelimit-remaining: 596.0\r\nx-ratelimit-reset: 340\r\n", U, 596, 340000, U, U, NULL,
     "x-ratelimit"},
    {"openai", 200,
     "x-ratelimit-limit-requests: 60\r\nx-ratelimit-limit-tokens: 150000\r\n"
     "x-ratelimit-remaining-requests: 59\r\nx-ratelimit-remaining-tokens: 149984\r\n"
     "x-ratelimit-reset-requests: 1s\r\nx-ratelimit-reset-tokens: 6m0s\r\n",
     60, 59, 1000, U, U, NULL, "openai"},
    {"openai tokens only are ignored", 200,
     "x-ratelimit-limit-tokens: 150000\r\nx-ratelimit-remaining-tokens: 0\r\n"
     "x-ratelimit-reset-tokens: 6m0s\r\n",
     U, U, U, U, U, NULL, NULL},
    {"ietf draft-10", 200,
     "RateLimit-Policy: \"default\";q=100;w=60\r\nRateLimit: \"default\";r=50;t=30\r\n", 100, 50,
     30000, 60000, U, "default", "ietf"},
    {"cloudflare-style, lower case", 200,
     "ratelimit: \"default\";r=1199;t=300\r\nratelimit-policy: \"default\";q=1200;w=300\r\n", 1200,
     1199, 300000, 300000, U, "default", "ietf"},
    {"ietf 2026 proposal: a, w, c", 200,
     "RateLimit-Policy: \"p\";q=10;w=1\r\nRateLimit: \"p\";a=3;w=2;c=1\r\n", 10, 3, 2000, 1000, U,
     "p", "ietf"},
    {"ietf draft-07 dictionary", 200,
     "RateLimit: limit=100, remaining=50, reset=5\r\nRateLimit-Policy: 100;w=60, 1000;w=3600\r\n",
     100, 50, 5000, 60000, U, NULL, "ietf"},
    {"ietf drafts 00-06: separate fields", 200,
     "RateLimit-Limit: 100\r\nRateLimit-Remaining: 10\r\nRateLimit-Reset: 30\r\n", 100, 10, 30000,
     U, U, NULL, "ietf-old"},
    {"ietf drafts 00-06: limit with quota policies", 200,
     "RateLimit-Limit: 10, 10;w=1, 50;w=60\r\nRateLimit-Remaining: 3\r\nRateLimit-Reset: 1\r\n", 10,
     3, 1000, 1000, U, NULL, "ietf-old"},
    {"ietf policy name as a token", 200, "RateLimit: default;r=5;t=10\r\n", U, 5, 10000, U, U,
     "default", "ietf"},
    {"ietf unknown parameters read past", 200,
     "RateLimit: \"p\";r=3;pk=:cHFzd2FzZA==:;x=?1;y=\"s\";z=@1700000000;t=5\r\n", U, 3, 5000, U, U,
     "p", "ietf"},

    /* ---- durations */
    {"duration 1h2m3.5s", 200,
     "x-ratelimit-remaining-requests: 1\r\n"
     "x-ratelimit-reset-requests: 1h2m3.5s\r\n",
     U, 1, 3723500, U, U, NULL, "openai"},
    {"duration 12ms", 200, "x-ratelimit-reset-requests: 12ms\r\n", U, U, 12, U, U, NULL, "openai"},
    {"duration 0.5s", 200, "x-ratelimit-reset-requests: 0.5s\r\n", U, U, 500, U, U, NULL, "openai"},
    {"duration 20s", 200, "x-ratelimit-reset-requests: 20s\r\n", U, U, 20000, U, U, NULL, "openai"},
    {"duration rounds up: 1.5ms", 200, "x-ratelimit-reset-requests: 1.5ms\r\n", U, U, 2, U, U, NULL,
     "openai"},
    {"duration rounds up: 250us", 200, "x-ratelimit-reset-requests: 250us\r\n", U, U, 1, U, U, NULL,
     "openai"},
    {"duration micro sign", 200, "x-ratelimit-reset-requests: 1500\xc2\xb5s\r\n", U, U, 2, U, U,
     NULL, "openai"},
    {"duration 168h is the bound", 200, "x-ratelimit-reset-requests: 168h\r\n", U, U, DAYS_7_MS, U,
     U, NULL, "openai"},
    {"duration over the bound", 200, "x-ratelimit-reset-requests: 167h60m1s\r\n", U, U, U, U, U,
     NULL, NULL},
    {"duration in x-ratelimit-reset", 200, "X-RateLimit-Reset: 30s\r\n", U, U, 30000, U, U, NULL,
     "x-ratelimit"},

    /* ---- lists and which candidate wins */
    {"several policies: lowest remaining", 200,
     "RateLimit-Policy: \"burst\";q=100;w=60, \"day\";q=1000;w=86400\r\n"
     "RateLimit: \"burst\";r=50;t=30, \"day\";r=5;t=3600\r\n",
     1000, 5, 3600000, 86400000, U, "day", "ietf"},
    {"tie on remaining: later reset", 200, "RateLimit: \"a\";r=5;t=10, \"b\";r=5;t=20\r\n", U, 5,
     20000, U, U, "b", "ietf"},
    {"items on two lines", 200, "RateLimit: \"a\";r=9;t=1\r\nRateLimit: \"b\";r=2;t=5\r\n", U, 2,
     5000, U, U, "b", "ietf"},
    {"policies alone: lowest rate", 200,
     "RateLimit-Policy: \"fast\";q=10;w=1, \"slow\";q=100;w=60\r\n", 100, U, U, 60000, U, "slow",
     "ietf"},
    {"ratelimit item without a policy of its name", 200,
     "RateLimit-Policy: \"other\";q=1;w=1\r\nRateLimit: \"p\";r=4;t=4\r\n", U, 4, 4000, U, U, "p",
     "ietf"},
    {"same values in two families: ietf", 200,
     "X-RateLimit-Remaining: 5\r\nX-RateLimit-Reset: 10\r\nRateLimit: \"p\";r=5;t=10\r\n", U, 5,
     10000, U, U, "p", "ietf"},
    {"across families: the strictest", 200,
     "RateLimit: \"p\";r=50;t=10\r\nX-RateLimit-Limit: 60\r\nX-RateLimit-Remaining: 0\r\n"
     "X-RateLimit-Reset: 100\r\n",
     60, 0, 100000, U, U, NULL, "x-ratelimit"},
    {"case-insensitive names", 200, "X-RATELIMIT-REMAINING: 7\r\nx-RateLimit-Reset: 10\r\n", U, 7,
     10000, U, U, NULL, "x-ratelimit"},
    {"duplicate lines: lowest remaining, latest reset", 200,
     "X-RateLimit-Remaining: 10\r\nX-RateLimit-Remaining: 3\r\nX-RateLimit-Reset: 10\r\n"
     "X-RateLimit-Reset: 20\r\n",
     U, 3, 20000, U, U, NULL, "x-ratelimit"},
    {"folded duplicates", 200, "X-RateLimit-Remaining: 10, 3\r\nX-RateLimit-Limit: 60 , 50\r\n", 50,
     3, U, U, U, NULL, "x-ratelimit"},
    {"repeated ietf parameter: the stricter", 200, "RateLimit: \"p\";r=0;r=10;t=9;t=1\r\n", U, 0,
     9000, U, U, "p", "ietf"},
    {"last line without CRLF", 200, "X-RateLimit-Remaining: 4", U, 4, U, U, U, NULL, "x-ratelimit"},

    /* ---- Retry-After */
    {"retry-after wins over t", 429, "RateLimit: \"p\";r=0;t=30\r\nRetry-After: 60\r\n", U, 0,
     60000, U, 60000, "p", "ietf"},
    {"a shorter retry-after wins too", 503, "RateLimit: \"p\";r=0;t=30\r\nRetry-After: 5\r\n", U, 0,
     5000, U, 5000, "p", "ietf"},
    {"retry-after date", 503, "Retry-After: Tue, 14 Nov 2023 22:14:20 GMT\r\n", U, U, 60000, U,
     60000, NULL, "retry-after"},
    {"retry-after date in the past", 503, "Retry-After: Tue, 14 Nov 2023 22:00:00 GMT\r\n", U, U, 0,
     U, 0, NULL, "retry-after"},
    {"retry-after on a 200 is not a limit", 200, "Retry-After: 30\r\n", U, U, U, U, U, NULL, NULL},
    {"retry-after on a redirect is not a limit", 301, "Retry-After: 30\r\n", U, U, U, U, U, NULL,
     NULL},
    {"retry-after over 7 days", 503, "Retry-After: 604801\r\n", U, U, U, U, U, NULL, NULL},
    {"retry-after: unusable line skipped, latest of the rest", 503,
     "Retry-After: soon\r\nRetry-After: 30\r\nRetry-After: 10\r\n", U, U, 30000, U, 30000, NULL,
     "retry-after"},
    {"a bare 429 says the quota is spent", 429, "Content-Type: text/plain\r\n", U, 0, U, U, U, NULL,
     "status"},
    {"a 429 overrides a remaining above 0", 429,
     "X-RateLimit-Limit: 60\r\nX-RateLimit-Remaining: 5\r\n", 60, 0, U, U, U, NULL, "x-ratelimit"},

    /* ---- sanity rules */
    {"remaining above limit is clamped", 200,
     "X-RateLimit-Limit: 10\r\nX-RateLimit-Remaining: 50\r\n", 10, 10, U, U, U, NULL,
     "x-ratelimit"},
    {"clamped before candidates are compared", 200,
     "X-RateLimit-Limit: 2\r\nX-RateLimit-Remaining: 10\r\nRateLimit: \"p\";r=5\r\n", 2, 2, U, U, U,
     NULL, "x-ratelimit"},
    {"negative remaining", 200, "X-RateLimit-Remaining: -1\r\n", U, U, U, U, U, NULL, NULL},
    {"16 digits overflow the count", 200, "X-RateLimit-Remaining: 9999999999999999\r\n", U, U, U, U,
     U, NULL, NULL},
    {"20 digits", 200, "X-RateLimit-Limit: 99999999999999999999\r\n", U, U, U, U, U, NULL, NULL},
    {"15 digits are fine", 200, "X-RateLimit-Limit: 999999999999999\r\n", 999999999999999, U, U, U,
     U, NULL, "x-ratelimit"},
    {"epoch in the past is 0", 200, "X-RateLimit-Reset: 1600000000\r\n", U, U, 0, U, U, NULL,
     "x-ratelimit"},
    {"epoch 7 days ahead", 200, "X-RateLimit-Reset: 1700604800\r\n", U, U, DAYS_7_MS, U, U, NULL,
     "x-ratelimit"},
    {"epoch beyond 7 days", 200, "X-RateLimit-Reset: 1700604801\r\n", U, U, U, U, U, NULL, NULL},
    {"delta at the bound", 200, "X-RateLimit-Reset: 604800\r\n", U, U, DAYS_7_MS, U, U, NULL,
     "x-ratelimit"},
    {"delta beyond the bound", 200, "X-RateLimit-Reset: 604801\r\n", U, U, U, U, U, NULL, NULL},
    {"just under the epoch threshold is a (too long) delta", 200,
     "X-RateLimit-Reset: 999999999\r\n", U, U, U, U, U, NULL, NULL},
    {"the epoch threshold", 200, "X-RateLimit-Reset: 1000000000\r\n", U, U, 0, U, U, NULL,
     "x-ratelimit"},
    {"fractional delta rounds up", 200, "X-RateLimit-Reset: 1.0001\r\n", U, U, 1001, U, U, NULL,
     "x-ratelimit"},
    {"fractional epoch", 200, "X-RateLimit-Reset: 1700000001.5\r\n", U, U, 1500, U, U, NULL,
     "x-ratelimit"},
    {"ietf negative r", 200, "RateLimit: \"p\";r=-1;t=5\r\n", U, U, 5000, U, U, "p", "ietf"},
    {"ietf decimal r", 200, "RateLimit: \"p\";r=1.5;t=5\r\n", U, U, 5000, U, U, "p", "ietf"},
    {"ietf t beyond 7 days", 200, "RateLimit: \"p\";r=1;t=604801\r\n", U, 1, U, U, U, "p", "ietf"},
    {"ietf policy name cut to fit", 200,
     "RateLimit: \"0123456789012345678901234567890123456789\";r=1\r\n", U, 1, U, U, U,
     "0123456789012345678901234567890", "ietf"},
    {"a malformed ietf line leaves the other lines", 200,
     "RateLimit: \"a\";r=10;t=1\r\nRateLimit: \"b\";r=0;t=5, (\r\n", U, 10, 1000, U, U, "a",
     "ietf"},
};

/* Garbage: nothing in these may be read as a limit. */
static const char *const garbage[] = {
    "X-RateLimit-Reset: 3O\r\n",
    "X-RateLimit-Remaining: 5abc\r\n",
    "X-RateLimit-Remaining: 5, x\r\n",
    "X-RateLimit-Remaining: 5,\r\n",
    "X-RateLimit-Remaining: \r\n",
    "X-RateLimit-Remaining: +5\r\n",
    "X-RateLimit-Remaining: 1e3\r\n",
    "X-RateLimit-Remaining: 0x10\r\n",
    "X-RateLimit-Remaining: 5.\r\n",
    "X-RateLimit-Remaining: .5\r\n",
    "X-RateLimit-Remaining: 1 0\r\n",
    "X-RateLimit-Remaining : 0\r\n",
    "X-RateLimit-Remainin: 0\r\n",
    "X-RateLimit-Remaining-Foo: 0\r\n",
    " X-RateLimit-Remaining: 0\r\n",
    "X-RateLimit-Reset: -5\r\n",
    "X-RateLimit-Reset: Tue, 14 Nov 2023 22:14:20 GMT\r\n",
    "x-ratelimit-reset-requests: 6m0\r\n",
    "x-ratelimit-reset-requests: 1x\r\n",
    "x-ratelimit-reset-requests: -1s\r\n",
    "x-ratelimit-reset-requests: 1s2\r\n",
    "x-ratelimit-reset-requests: 5sec\r\n",
    "x-ratelimit-reset-requests: s\r\n",
    "x-ratelimit-reset-requests: 1..5s\r\n",
    "x-ratelimit-reset-requests: 99999999999999999h\r\n",
    "RateLimit: \"p\";r=0;t=5, garbage(\r\n",
    "RateLimit: \"p\";R=0;T=5\r\n",
    "RateLimit: \"p\";r=0;t=5,\r\n",
    "RateLimit: \"p;r=0;t=5\r\n",
    "RateLimit: \"p\";r=0x0;t=5\r\n",
    "RateLimit: \"p\";r=1234567890123456;t=5\r\n",
    "RateLimit: \"p\";r=\"0\";t=\"5\"\r\n",
    "RateLimit: \"p\" ;r=0\r\n",
    "RateLimit: \"p\";r=0;;t=5\r\n",
    "RateLimit: \"p\\x\";r=0\r\n",
    "RateLimit: limit=x, remaining=y\r\n",
    "RateLimit-Policy: \"p\";q=-5;w=-1\r\n",
    "RateLimit-Remaining: abc\r\n",
    "RateLimit-Limit: 10, \"x\"\r\n",
    "\r\n\r\n\r\n",
    "X-RateLimit-Remaining\r\n",
    "X-RateLimit-Remaining:\r\n",
    "",
};

static void expect_int(const char *what, const char *field, int64_t got, int64_t want)
{
    ck_assert_msg(got == want, "%s: %s is %lld, expected %lld", what, field, (long long)got,
                  (long long)want);
}

START_TEST(test_rows)
{
    const struct row *r = &rows[_i];
    struct limit_headers lh;
    memset(&lh, 0x5a, sizeof lh); /* nothing may be left over from the caller */
    int found = limit_headers_parse(r->head, strlen(r->head), r->status, NOW_MS, &lh);
    expect_int(r->what, "limit", lh.limit, r->limit);
    expect_int(r->what, "remaining", lh.remaining, r->remaining);
    expect_int(r->what, "reset_ms", lh.reset_ms, r->reset_ms);
    expect_int(r->what, "window_ms", lh.window_ms, r->window_ms);
    expect_int(r->what, "retry_after_ms", lh.retry_after_ms, r->retry_after_ms);
    ck_assert_msg(strcmp(lh.policy, r->policy ? r->policy : "") == 0, "%s: policy \"%s\"", r->what,
                  lh.policy);
    if (r->family == NULL)
        ck_assert_msg(lh.family == NULL, "%s: family %s", r->what, lh.family);
    else
        ck_assert_msg(lh.family != NULL && strcmp(lh.family, r->family) == 0,
                      "%s: family %s, expected %s", r->what, lh.family ? lh.family : "(none)",
                      r->family);
    ck_assert_int_eq(found, r->family != NULL);
    ck_assert_int_eq(lh.found, found);
}
END_TEST

START_TEST(test_garbage)
{
    const char *head = garbage[_i];
    for (int status = 200; status <= 503; status += 303) { /* 200 and 503 */
        struct limit_headers lh;
        int found = limit_headers_parse(head, strlen(head), status, NOW_MS, &lh);
        ck_assert_msg(found == 0 && lh.limit == U && lh.remaining == U && lh.reset_ms == U &&
                          lh.window_ms == U && lh.retry_after_ms == U && lh.family == NULL,
                      "garbage %d read as something: \"%s\"", _i, head);
    }
}
END_TEST

/* A garbled copy of a value is never looser than the clean value: here, a clean header plus a
 * garbled duplicate must give what the clean one alone gives. */
START_TEST(test_garbled_duplicate_is_not_looser)
{
    static const char *const clean = "X-RateLimit-Remaining: 3\r\nX-RateLimit-Reset: 300\r\n";
    static const char *const garbled[] = {
        "X-RateLimit-Remaining: 3\r\nX-RateLimit-Reset: 300\r\nX-RateLimit-Remaining: 30O\r\n"
        "X-RateLimit-Reset: 3O\r\n",
        "X-RateLimit-Remaining: 9x, 3\r\nX-RateLimit-Remaining: 3\r\nX-RateLimit-Reset: 300\r\n",
        "RateLimit: \"p\";r=99;t=1, \r\nX-RateLimit-Remaining: 3\r\nX-RateLimit-Reset: 300\r\n",
    };
    struct limit_headers want, got;
    limit_headers_parse(clean, strlen(clean), 200, NOW_MS, &want);
    for (size_t i = 0; i < sizeof garbled / sizeof garbled[0]; i++) {
        limit_headers_parse(garbled[i], strlen(garbled[i]), 200, NOW_MS, &got);
        ck_assert_int_eq(got.remaining, want.remaining);
        ck_assert_int_eq(got.reset_ms, want.reset_ms);
    }
}
END_TEST

/* The header block is read within its length: a value cut by len is not read past it. */
/* An epoch reset is counted from the wall clock to the millisecond: from whole seconds it would
 * look up to 1 s further off, and two resets read at different fractions of a second would make a
 * wrong quota period (rlproxy renewed early and the origin answered 429s). */
START_TEST(test_epoch_reset_from_the_millisecond)
{
    struct limit_headers lh;
    const char *head = "X-RateLimit-Remaining: 0\r\nX-RateLimit-Reset: 1700000002\r\n";
    ck_assert(limit_headers_parse(head, strlen(head), 200, NOW_MS + 700, &lh));
    ck_assert_int_eq(lh.reset_ms, 1300);
    ck_assert(limit_headers_parse(head, strlen(head), 200, NOW_MS + 2500, &lh));
    ck_assert_int_eq(lh.reset_ms, 0); /* already past */
}
END_TEST

START_TEST(test_length_bounds_the_block)
{
    static const char head[] = "X-RateLimit-Remaining: 12\r\nX-RateLimit-Reset: 60\r\n";
    struct limit_headers lh;
    limit_headers_parse(head, strlen("X-RateLimit-Remaining: 1"), 200, NOW_MS, &lh);
    ck_assert_int_eq(lh.remaining, 1);
    ck_assert_int_eq(lh.reset_ms, U);
    limit_headers_parse(head, 0, 200, NOW_MS, &lh);
    ck_assert_int_eq(lh.found, 0);
    limit_headers_parse(NULL, 0, 429, NOW_MS, &lh); /* no headers at all */
    ck_assert_int_eq(lh.remaining, 0);
    ck_assert_str_eq(lh.family, "status");
}
END_TEST

static Suite *limit_headers_suite(void)
{
    Suite *s = suite_create("limit_headers");
    TCase *tc = unit_add_tcase(s, tcase_create("parse"),
                               UNIT_TESTS(test_garbled_duplicate_is_not_looser,
                                          test_length_bounds_the_block,
                                          test_epoch_reset_from_the_millisecond));
    tcase_add_loop_test(tc, test_rows, 0, (int)(sizeof rows / sizeof rows[0]));
    tcase_add_loop_test(tc, test_garbage, 0, (int)(sizeof garbage / sizeof garbage[0]));
    return s;
}

int main(void) { return unit_run(limit_headers_suite()); }
