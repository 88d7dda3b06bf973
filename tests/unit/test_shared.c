/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_shared.c — shared.c's scripts against a real redis-server (the test's own, on 127.0.0.1 and
 * a free port), driven through shared_decide / shared_ready / shared_depart on an event loop the
 * way admission.c drives them: a DELAY is waited out, then the reservation asks whether it may go
 * (again after every DELAY), and a request departs right after it is told to go. Sleeps only
 * arrange the order of the steps; pass or fail is the window rule itself on the scores Redis
 * keeps: no limit+1 of them within one window.
 *   1. a reservation checked late (its timer fired after its time, on a loaded machine) while a
 *      request checked before it departed in between, after its reserved time: it is ranked at the
 *      time it can go, not at its stale reserved time, so it follows that request.
 * Needs redis-server and redis-cli (Debian package redis-server); without them the test FAILS. */
#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../e2e/harness.h"
#include "../e2e/redis_server.h"
#include "limiter_fixture.h"
#include "shared.h"

/* Long enough for Redis to answer on a loaded machine, or under valgrind */
#define ANSWER_TIMEOUT_MS 5000

struct redis_fixture {
    struct redis *redis;
    struct event_base *base;
    struct shared *shared;
    struct config config;
    char url[64];
    struct rate_rule rule;
};

struct call {
    int answered;
    struct shared_result result;
};

static void on_answer(void *arg, const struct shared_result *result)
{
    struct call *c = arg;
    c->result = *result;
    c->answered = 1;
}

/* Runs the loop until c is answered (bounded: a hang fails the test) */
static const struct shared_result *wait_answer(struct redis_fixture *f, struct call *c,
                                               const char *what)
{
    uint64_t deadline = now_ms() + 2 * ANSWER_TIMEOUT_MS;
    while (!c->answered) {
        ck_assert_msg(now_ms() < deadline, "no answer from shared.c to %s", what);
        event_base_loop(f->base, EVLOOP_ONCE);
    }
    ck_assert_msg(c->result.outcome != SHARED_ERROR, "%s: shared.c answered SHARED_ERROR", what);
    return &c->result;
}

/* A shared rule (limit per window_ms, over_limit delay) and shared.c connected to a fresh Redis */
static void redis_fixture_up(struct redis_fixture *f, const char *name, uint32_t limit,
                             uint64_t window_ms)
{
    memset(f, 0, sizeof *f);
    f->redis = redis_start();
    snprintf(f->url, sizeof f->url, "redis://127.0.0.1:%d/0", f->redis->port);
    f->config.shared_redis = f->url;
    f->config.shared_timeout_ms = ANSWER_TIMEOUT_MS;
    f->rule = limiter_fixture_rule(name, RATE_KEY_GLOBAL, limit, window_ms, RATE_OVER_DELAY);
    f->rule.shared = 1;
    f->base = event_base_new();
    ck_assert_ptr_nonnull(f->base);
    f->shared = shared_new(f->base, &f->config);
    ck_assert_ptr_nonnull(f->shared);
    uint64_t deadline = now_ms() + ANSWER_TIMEOUT_MS;
    struct shared_stats stats;
    for (shared_stats(f->shared, &stats); !stats.connected; shared_stats(f->shared, &stats)) {
        ck_assert_msg(now_ms() < deadline, "shared.c never connected to Redis on port %d",
                      f->redis->port);
        event_base_loop(f->base, EVLOOP_ONCE);
    }
}

static void redis_fixture_down(struct redis_fixture *f)
{
    shared_free(f->shared);
    event_base_free(f->base);
    redis_free(f->redis);
}

/* A new request's decision; *due_us: when a DELAY's reservation comes, by this host's clock */
static struct shared_result decide(struct redis_fixture *f, uint64_t *due_us)
{
    struct limiter_request request;
    memset(&request, 0, sizeof request);
    request.depart_later = 1;
    struct call c = {0};
    ck_assert_ptr_nonnull(
        shared_decide(f->shared, &f->rule, &request, ANSWER_TIMEOUT_MS, on_answer, &c));
    struct shared_result result = *wait_answer(f, &c, "a decision");
    *due_us = now_us() + result.delay_us;
    return result;
}

/* Every command sent before this one has run in Redis when it answers: Redis runs one
 * connection's commands in order. A ready check of a member that is not in the set is such a
 * round trip (it answers "go"). */
static void barrier(struct redis_fixture *f, const char *key)
{
    struct call c = {0};
    ck_assert_ptr_nonnull(
        shared_ready(f->shared, &f->rule, key, "none", ANSWER_TIMEOUT_MS, on_answer, &c));
    wait_answer(f, &c, "a round trip");
}

/* The request of member departs now (and Redis has recorded it when this returns) */
static void depart(struct redis_fixture *f, const char *key, const char *member)
{
    shared_depart(f->shared, key, member, 1);
    barrier(f, key);
}

/* What admission.c does with a reservation: from due_us on, ask whether it may go, and wait
 * whatever more Redis says; returns how many times Redis said to wait more */
static unsigned go_when_ready(struct redis_fixture *f, const struct shared_result *reserved,
                              uint64_t due_us)
{
    unsigned waits = 0;
    for (;;) {
        sleep_until_us(due_us);
        struct call c = {0};
        ck_assert_ptr_nonnull(shared_ready(f->shared, &f->rule, reserved->key, reserved->member,
                                           ANSWER_TIMEOUT_MS, on_answer, &c));
        const struct shared_result *r = wait_answer(f, &c, "a ready check");
        if (r->outcome == SHARED_ADMIT)
            return waits;
        ck_assert_int_eq(r->outcome, SHARED_DELAY);
        ck_assert_uint_le(++waits, 100); /* a bounded wait, not a loop on the recheck */
        due_us = now_us() + r->delay_us;
    }
}

/* Fails unless no limit+1 of rule name's scores in Redis lie within window_ms, saying where */
static void assert_window_kept(struct redis_fixture *f, const char *name, size_t want, int limit,
                               uint64_t window_ms)
{
    long long *scores;
    size_t n = window_scores(f->redis->port, name, &scores);
    char list[512] = "";
    for (size_t i = 0, used = 0; i < n && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, " %lld",
                                 (scores[i] - scores[0]) / 1000);
    long long span_us = scores_min_span(scores, n, limit);
    free(scores);
    ck_assert_msg(n == want, "%zu entries in Redis, not %zu (ms after the first:%s)", n, want,
                  list);
    ck_assert_msg(span_us >= (long long)window_ms * 1000,
                  "%d entries within %lld us in Redis' window of %llu ms (ms after the first:%s)",
                  limit + 1, span_us, (unsigned long long)window_ms, list);
}

/* Limit 2 per window W. A admitted and departed at 0, B admitted at W/10 and departed at W/2;
 * C reserved from A (at W), D from B (at 1.1 W). C is checked at its time, goes (A has left)
 * and departs at 1.2 W, after D's reserved time. D's check comes late, at 1.3 W: D can go no
 * earlier than that, so it follows C and its entry `limit` places back is B, in the window until
 * 1.5 W. Ranked at its stale reserved time 1.1 W it would follow A and go at once: B, C and D
 * within 0.8 W. */
START_TEST(test_late_ready_check_ranks_at_now)
{
    const uint64_t window_ms = 1000, w_us = window_ms * 1000;
    struct redis_fixture f;
    redis_fixture_up(&f, "late", 2, window_ms);
    uint64_t t0 = now_us(), due_a, due_b, due_c, due_d;

    struct shared_result a = decide(&f, &due_a);
    ck_assert_int_eq(a.outcome, SHARED_ADMIT);
    depart(&f, a.key, a.member);
    sleep_until_us(t0 + w_us / 10);
    struct shared_result b = decide(&f, &due_b);
    ck_assert_int_eq(b.outcome, SHARED_ADMIT);
    struct shared_result c = decide(&f, &due_c);
    struct shared_result d = decide(&f, &due_d);
    ck_assert_msg(c.outcome == SHARED_DELAY && d.outcome == SHARED_DELAY,
                  "C and D are held (outcomes %d, %d)", c.outcome, d.outcome);

    sleep_until_us(t0 + w_us / 2);
    depart(&f, b.key, b.member);

    go_when_ready(&f, &c, due_c);
    sleep_until_us(t0 + w_us * 12 / 10);
    depart(&f, c.key, c.member);

    sleep_until_us(t0 + w_us * 13 / 10); /* D's timer, late */
    go_when_ready(&f, &d, due_d);
    depart(&f, d.key, d.member);

    assert_window_kept(&f, "late", 4, 2, window_ms);
    redis_fixture_down(&f);
}
END_TEST

static void add_tests(Suite *s)
{
    TCase *tc = harness_tcase("shared", 60);
    tcase_add_checked_fixture(tc, NULL, redis_teardown);
    tcase_add_test(tc, test_late_ready_check_ranks_at_now);
    suite_add_tcase(s, tc);
}

int main(void)
{
    Suite *s = suite_create("shared");
    add_tests(s);
    return harness_run_suite(s);
}
