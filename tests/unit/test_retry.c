/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_retry.c — retry policy (retry.c): what qualifies, the backoff schedule with and without
 * jitter, Retry-After, and the budget, with an injected clock and injected randomness. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "retry.h"

#include "unit.h"

static struct retry_policy policy(void)
{
    struct retry_policy p;
    memset(&p, 0, sizeof p);
    p.attempts = 3;
    p.base_delay_ms = 100;
    p.max_delay_ms = 10000;
    p.jitter_full = 0;
    static uint16_t on[] = {RETRY_ON_CONNECT_ERROR, RETRY_ON_TIMEOUT, 502, 503, 504, 429};
    p.on = on;
    p.on_count = 6;
    const char *m[] = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"};
    for (unsigned i = 0; i < 5; i++)
        strcpy(p.methods[i], m[i]);
    p.methods_count = 5;
    p.max_body = 1 << 20;
    p.budget_percent = 20;
    return p;
}

START_TEST(test_allowed)
{
    struct retry_policy p = policy();
    ck_assert_int_eq(retry_allowed(&p, "GET", 1, RETRY_STATUS, 503, 0, 1), 1);
    ck_assert_int_eq(retry_allowed(&p, "GET", 2, RETRY_STATUS, 503, 0, 1), 1);
    ck_assert_int_eq(retry_allowed(&p, "GET", 3, RETRY_STATUS, 503, 0, 1), 0); /* attempts used */
    ck_assert_int_eq(retry_allowed(&p, "GET", 1, RETRY_STATUS, 500, 0, 1), 0);
    ck_assert_int_eq(retry_allowed(&p, "GET", 1, RETRY_STATUS, 404, 0, 1), 0);
    ck_assert_int_eq(retry_allowed(&p, "GET", 1, RETRY_OTHER, 0, 0, 1), 0);
    /* POST only when nothing was sent */
    ck_assert_int_eq(retry_allowed(&p, "POST", 1, RETRY_STATUS, 503, 0, 1), 0);
    ck_assert_int_eq(retry_allowed(&p, "POST", 1, RETRY_TIMEOUT, 0, 0, 1), 0);
    ck_assert_int_eq(retry_allowed(&p, "POST", 1, RETRY_CONNECT_ERROR, 0, 1, 0), 1);
    /* a body that could not be kept cannot be sent again */
    ck_assert_int_eq(retry_allowed(&p, "PUT", 1, RETRY_STATUS, 502, 0, 0), 0);
    ck_assert_int_eq(retry_allowed(&p, "PUT", 1, RETRY_STATUS, 502, 0, 1), 1);
    p.on_count = 1; /* connect errors only */
    ck_assert_int_eq(retry_allowed(&p, "GET", 1, RETRY_TIMEOUT, 0, 0, 1), 0);
    p.attempts = 1;
    ck_assert_int_eq(retry_allowed(&p, "GET", 1, RETRY_CONNECT_ERROR, 0, 1, 1), 0);
}
END_TEST

START_TEST(test_schedule)
{
    struct retry_policy p = policy();
    ck_assert_int_eq(retry_delay_ms(&p, 1, -1, 0), 100);
    ck_assert_int_eq(retry_delay_ms(&p, 2, -1, 0), 200);
    ck_assert_int_eq(retry_delay_ms(&p, 3, -1, 0), 400);
    ck_assert_int_eq(retry_delay_ms(&p, 8, -1, 0), 10000); /* 12800 capped */
    ck_assert_int_eq(retry_delay_ms(&p, 60, -1, 0), 10000); /* no overflow */
    /* Retry-After replaces the schedule, unless it is over max_delay */
    ck_assert_int_eq(retry_delay_ms(&p, 1, 3000, 0), 3000);
    ck_assert_int_eq(retry_delay_ms(&p, 1, 0, 0), 0);
    ck_assert_int_eq(retry_delay_ms(&p, 1, 10001, 0), -1);
}
END_TEST

START_TEST(test_full_jitter)
{
    struct retry_policy p = policy();
    p.jitter_full = 1;
    ck_assert_int_eq(retry_delay_ms(&p, 3, -1, 0), 0);
    ck_assert_int_eq(retry_delay_ms(&p, 3, -1, UINT32_MAX), 400);
    ck_assert_int_eq(retry_delay_ms(&p, 3, -1, UINT32_MAX / 2), 200);
    /* uniform over [0, 400]: the mean of many draws is near 200 */
    unsigned seed = 1;
    double sum = 0;
    int64_t lo = 1000, hi = -1;
    for (int i = 0; i < 100000; i++) {
        uint32_t r = ((uint32_t)rand_r(&seed) << 16) ^ (uint32_t)rand_r(&seed);
        int64_t d = retry_delay_ms(&p, 3, -1, r);
        sum += (double)d;
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    ck_assert_int_ge(lo, 0);
    ck_assert_int_le(hi, 400);
    ck_assert_msg(sum / 100000 > 190 && sum / 100000 < 210, "mean %f", sum / 100000);
}
END_TEST

START_TEST(test_budget)
{
    static struct retry_budget b; /* zeroed */
    uint64_t now = 1000000;
    for (int i = 0; i < 100; i++)
        retry_budget_request(&b, now + (uint64_t)i * 10);
    int taken = 0;
    while (retry_budget_take(&b, 20, now + 1000) && taken < 1000)
        taken++;
    ck_assert_int_eq(taken, 20); /* 20% of 100 requests */
    /* 10 s later the window has moved on: the floor of 3 applies again */
    now += 20000;
    taken = 0;
    while (retry_budget_take(&b, 20, now) && taken < 1000)
        taken++;
    ck_assert_int_eq(taken, 10);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("retry");
    unit_add_tcase(s, tcase_create("policy"),
                   UNIT_TESTS(test_allowed, test_schedule, test_full_jitter, test_budget));
    return unit_run(s);
}
