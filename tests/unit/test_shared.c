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
 *   2. the learned budget (shared_learn): the origin's remaining less the departures it has not
 *      counted (later ones, and earlier unanswered ones) less the requests on their way, the lower
 *      kept when a later answer for the same quota window says more; 3. an answer about the next
 *      window replaces a spent one; 4. past its reset a quota of known size renews (for its
 *      period, or for the rule's window when no period is known);
 *      5. a dry run is not held by it (counted as would-refuse), and upstream_limits: ignore
 *      does not count it.
 *      Pass or fail is the verdicts Redis gives; the one sleep waits out a reset.
 *   6. an answer without limit fields only answers (its request stops counting as unanswered);
 *   7. Redis' script cache flushed between a decision, its departure and its answer: nothing is
 *      lost (every script goes by its SHA, and again as EVAL after NOSCRIPT).
 *   8. cost: a request of cost n takes n units (admitted while at most limit - n are in the
 *      window; remaining and Retry-After in units; a dry run takes none when it would not fit),
 *      and its units leave the window together; 9. a held request of cost n goes only when n
 *      units have left, and given back its units all leave; 10. a departure moves all of a
 *      request's units.
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

/* ---- the learned budget (upstream_limits: follow) ----------------------------------------------
 */

/* A new request that must be admitted */
static struct shared_result admitted(struct redis_fixture *f, const char *what)
{
    uint64_t due_us;
    struct shared_result r = decide(f, &due_us);
    ck_assert_msg(r.outcome == SHARED_ADMIT && !r.paused && r.member[0] != '\0',
                  "%s: outcome %d (paused %d), not admitted", what, r.outcome, r.paused);
    return r;
}

/* A new request that the learned budget must refuse (over_limit reject), held until about
 * reset_ms from now */
static void refused_for_budget(struct redis_fixture *f, const char *what, uint64_t reset_ms)
{
    uint64_t due_us;
    struct shared_result r = decide(f, &due_us);
    ck_assert_msg(r.outcome == SHARED_REJECT && r.paused,
                  "%s: outcome %d (paused %d), not refused for the origin's budget", what,
                  r.outcome, r.paused);
    ck_assert_msg(r.retry_after_us <= reset_ms * 1000 &&
                      r.retry_after_us + 1000000 > reset_ms * 1000,
                  "%s: Retry-After of %llu us, not about the announced reset (%llu ms)", what,
                  (unsigned long long)r.retry_after_us, (unsigned long long)reset_ms);
}

/* The origin's answer to member: remaining, its reset from now, its limit and window (-1: not
 * said); Redis has it when this returns */
static void answer(struct redis_fixture *f, const struct shared_result *to, int64_t remaining,
                   int64_t reset_ms, int64_t limit, int64_t window_ms)
{
    struct limit_headers said = {.found = 1,
                                 .limit = limit,
                                 .remaining = remaining,
                                 .reset_ms = reset_ms,
                                 .window_ms = window_ms,
                                 .retry_after_ms = -1};
    shared_learn(f->shared, to->key, to->member, &said, 0);
    barrier(f, to->key);
}

/* A rule far looser than its origin (100 per 10 s) that refuses over its limit */
static void learned_fixture_up(struct redis_fixture *f, const char *name)
{
    redis_fixture_up(f, name, 100, 10000);
    f->rule.over_limit = RATE_OVER_REJECT;
}

/* A, B, C admitted; A and B departed (in that order), C still on its way. B's answer comes first:
 * 5 remaining. The origin may not have counted A yet (departed before B, unanswered) and will
 * count C: the budget is 5 - 1 - 1 = 3 across the fleet. A's answer then says 6 remaining for the
 * same quota window (it was counted first, its answer came last): that must not raise the budget.
 * Three more requests go, the fourth is refused until the reset. */
START_TEST(test_learned_budget_counts_in_flight_and_keeps_the_lower)
{
    struct redis_fixture f;
    learned_fixture_up(&f, "budget");
    struct shared_result a = admitted(&f, "A"), b = admitted(&f, "B");
    admitted(&f, "C");
    shared_depart(f.shared, a.key, a.member, 1);
    depart(&f, b.key, b.member);
    answer(&f, &b, 5, 8000, 10, -1);
    answer(&f, &a, 6, 8000, 10, -1);
    for (int i = 0; i < 3; i++)
        admitted(&f, "within the budget");
    refused_for_budget(&f, "past the budget", 8000);
    redis_fixture_down(&f);
}
END_TEST

/* A spent budget for a quota window that resets in 8 s; an answer about the next window (reset
 * in 18 s, 50 remaining) replaces it, and requests go again. */
START_TEST(test_learned_new_window_replaces)
{
    struct redis_fixture f;
    learned_fixture_up(&f, "next");
    struct shared_result a = admitted(&f, "A"), b = admitted(&f, "B");
    depart(&f, a.key, a.member);
    answer(&f, &a, 0, 8000, 10, -1);
    refused_for_budget(&f, "spent", 8000);
    depart(&f, b.key, b.member);
    answer(&f, &b, 50, 18000, 60, -1);
    admitted(&f, "in the next window");
    redis_fixture_down(&f);
}
END_TEST

/* A quota of 2 per 1 s (announced), spent until a reset 300 ms away: after it the budget renews
 * at the announced limit, so two requests go and the third is refused until the next reset. */
START_TEST(test_learned_renews_at_the_announced_limit)
{
    struct redis_fixture f;
    learned_fixture_up(&f, "renew");
    struct shared_result a = admitted(&f, "A");
    depart(&f, a.key, a.member);
    answer(&f, &a, 0, 300, 2, 1000);
    refused_for_budget(&f, "spent", 300);
    sleep_ms(400);
    admitted(&f, "renewed, 1");
    admitted(&f, "renewed, 2");
    refused_for_budget(&f, "renewed and spent", 1000);
    redis_fixture_down(&f);
}
END_TEST

/* The same without the quota's period (GitHub's fields: a limit and a reset): past the reset the
 * budget renews at the announced limit for one window of the rule (10 s), not unbounded, until
 * an answer says when the origin's window ends. */
START_TEST(test_learned_renews_without_a_period)
{
    struct redis_fixture f;
    learned_fixture_up(&f, "renew_guess");
    struct shared_result a = admitted(&f, "A");
    depart(&f, a.key, a.member);
    answer(&f, &a, 0, 300, 2, -1);
    refused_for_budget(&f, "spent", 300);
    sleep_ms(400);
    struct shared_result b = admitted(&f, "renewed, 1");
    admitted(&f, "renewed, 2");
    refused_for_budget(&f, "renewed and spent", 10000);
    /* the origin's answer says when its window really ends: that reset replaces the guess */
    depart(&f, b.key, b.member);
    answer(&f, &b, 1, 2000, 2, -1);
    refused_for_budget(&f, "spent until the reset said", 2000);
    redis_fixture_down(&f);
}
END_TEST

/* A spent budget holds nothing in a dry run (enforce: false): the request goes, counted as what
 * enforcing would have done (would: refused); with upstream_limits: ignore it does not count. */
START_TEST(test_learned_dry_run_and_ignore)
{
    struct redis_fixture f;
    learned_fixture_up(&f, "dry");
    struct shared_result a = admitted(&f, "A");
    depart(&f, a.key, a.member);
    answer(&f, &a, 0, 8000, 10, -1);
    refused_for_budget(&f, "spent", 8000);
    f.rule.enforce = 0;
    uint64_t due_us;
    struct shared_result dry = decide(&f, &due_us);
    ck_assert_msg(dry.outcome == SHARED_ADMIT && dry.would == SHARED_REJECT,
                  "a dry run past the budget: outcome %d, would %d", dry.outcome, dry.would);
    f.rule.enforce = 1;
    f.rule.upstream_limits = RATE_UPSTREAM_IGNORE;
    struct shared_result ignored = admitted(&f, "upstream_limits: ignore");
    ck_assert_int_eq(ignored.would, SHARED_ADMIT);
    redis_fixture_down(&f);
}
END_TEST

/* An answer that says nothing (no limit fields) only answers: A and B depart, A's answer says
 * nothing, B's says 3 remaining. A is no longer unanswered, so the budget is 3 (not 2): three
 * more requests go, the fourth is refused. */
START_TEST(test_learned_answer_without_fields_only_answers)
{
    struct redis_fixture f;
    learned_fixture_up(&f, "silent");
    struct shared_result a = admitted(&f, "A"), b = admitted(&f, "B");
    shared_depart(f.shared, a.key, a.member, 1);
    depart(&f, b.key, b.member);
    shared_learn(f.shared, a.key, a.member, NULL, 0);
    answer(&f, &b, 3, 8000, 10, -1);
    for (int i = 0; i < 3; i++)
        admitted(&f, "within the budget");
    refused_for_budget(&f, "past the budget", 8000);
    redis_fixture_down(&f);
}
END_TEST

/* Redis' script cache emptied (SCRIPT FLUSH; a restart under a connection does the same) while a
 * request is on its way: its departure, its answer and the next decision, each sent by SHA, are
 * answered NOSCRIPT and must reach Redis all the same. A admitted; flushed; A departs: no longer
 * pending, departure 1 recorded and unanswered; flushed; A's answer (0 remaining, reset in 8 s)
 * is learned; flushed; the next request is refused for that budget. */
START_TEST(test_flushed_scripts_lose_nothing)
{
    struct redis_fixture f;
    learned_fixture_up(&f, "flush");
    int port = f.redis->port;
    struct shared_result a = admitted(&f, "A");
    char pending[800], departed[800], unanswered[800];
    snprintf(pending, sizeof pending, "%s:pending", a.key);
    snprintf(departed, sizeof departed, "%s:departed", a.key);
    snprintf(unanswered, sizeof unanswered, "%s:unanswered", a.key);
    free(redis_cli(port, "SCRIPT", "FLUSH"));
    depart(&f, a.key, a.member);
    ck_assert_msg(redis_int(port, "SCARD", pending) == 0 && redis_int(port, "EXISTS", departed) == 1,
                  "A's departure did not reach Redis after its script cache was flushed");
    ck_assert_int_eq(redis_int(port, "GET", departed), 1);
    ck_assert_int_eq(redis_int(port, "ZCARD", unanswered), 1);
    free(redis_cli(port, "SCRIPT", "FLUSH"));
    answer(&f, &a, 0, 8000, 10, -1);
    ck_assert_msg(redis_int(port, "ZCARD", unanswered) == 0,
                  "A's answer did not reach Redis after its script cache was flushed");
    free(redis_cli(port, "SCRIPT", "FLUSH"));
    refused_for_budget(&f, "after a flush, past the learned budget", 8000);
    /* each flush was seen: the scripts went by SHA, not as their whole text */
    ck_assert_int_ge(redis_info(port, "errorstats", "errorstat_NOSCRIPT:count="), 3);
    redis_fixture_down(&f);
}
END_TEST

/* ---- cost: a request takes its units of the shared window -------------------------------------
 */

/* A new request of cost units' decision */
static struct shared_result decide_cost(struct redis_fixture *f, uint32_t cost, uint64_t *due_us)
{
    f->rule.cost = cost;
    struct shared_result r = decide(f, due_us);
    f->rule.cost = 1;
    return r;
}

/* Limit 5 per 500 ms, over_limit reject. A (cost 3) is admitted with 2 remaining and is 3 entries
 * in Redis; B (cost 3) is refused, remaining 2 in units, Retry-After when A's units leave (500 ms
 * after A departed); C (cost 2) fits. A dry run of cost 3 then takes nothing (the window is full:
 * it would be refused). Past the window
 * A's 3 units have left, C's 2 (never departed: still on their way) stay, so D (cost 3) fits and
 * E (cost 1) does not. */
START_TEST(test_cost_takes_units)
{
    const uint64_t window_ms = 500;
    struct redis_fixture f;
    redis_fixture_up(&f, "cost", 5, window_ms);
    f.rule.over_limit = RATE_OVER_REJECT;
    int port = f.redis->port;
    uint64_t due_us, t0 = now_us();
    struct shared_result a = decide_cost(&f, 3, &due_us);
    ck_assert_msg(a.outcome == SHARED_ADMIT && a.remaining == 2,
                  "A (cost 3 of 5): outcome %d, remaining %u", a.outcome, a.remaining);
    ck_assert_int_eq(redis_int(port, "ZCARD", a.key), 3);
    depart(&f, a.key, a.member);
    uint64_t departed_us = now_us();
    struct shared_result b = decide_cost(&f, 3, &due_us);
    ck_assert_msg(b.outcome == SHARED_REJECT && b.remaining == 2,
                  "B (cost 3, 3 of 5 used): outcome %d, remaining %u", b.outcome, b.remaining);
    ck_assert_msg(b.retry_after_us <= window_ms * 1000 &&
                      b.retry_after_us + (now_us() - t0) >= window_ms * 1000,
                  "B: Retry-After %llu us, not when A's units leave",
                  (unsigned long long)b.retry_after_us);
    struct shared_result c = decide_cost(&f, 2, &due_us);
    ck_assert_msg(c.outcome == SHARED_ADMIT && c.remaining == 0,
                  "C (cost 2, 3 of 5 used): outcome %d, remaining %u", c.outcome, c.remaining);
    f.rule.enforce = 0;
    struct shared_result dry = decide_cost(&f, 3, &due_us);
    ck_assert_msg(dry.outcome == SHARED_ADMIT && dry.would == SHARED_REJECT &&
                      dry.member[0] == '\0',
                  "a dry run over the limit: outcome %d, would %d", dry.outcome, dry.would);
    f.rule.enforce = 1;
    ck_assert_int_eq(redis_int(port, "ZCARD", a.key), 5);
    sleep_until_us(departed_us + window_ms * 1000 + 50000);
    struct shared_result d = decide_cost(&f, 3, &due_us);
    ck_assert_msg(d.outcome == SHARED_ADMIT && d.remaining == 0,
                  "D (cost 3, after A's units left): outcome %d, remaining %u", d.outcome,
                  d.remaining);
    struct shared_result e = decide_cost(&f, 1, &due_us);
    ck_assert_int_eq(e.outcome, SHARED_REJECT);
    ck_assert_int_eq(redis_int(port, "ZCARD", a.key), 5);
    redis_fixture_down(&f);
}
END_TEST

/* Limit 5 per window W, over_limit delay. A (cost 1) departs at 0, B (cost 1) and C (cost 3) at
 * W/5: the window is full. D (cost 2) must wait until two units have left, A's and B's: it is
 * reserved at 1.2 W, not at W (when A's one unit leaves). Asked at 1.05 W it waits more; at its
 * time it goes, and no 6 units ever lie within one window. Given back, a held request's units
 * all leave: E (cost 2), reserved after D and released, leaves the set as it was. */
START_TEST(test_cost_held_until_its_units_left)
{
    const uint64_t window_ms = 600, w_us = window_ms * 1000;
    struct redis_fixture f;
    redis_fixture_up(&f, "cost_held", 5, window_ms);
    int port = f.redis->port;
    uint64_t due_us, t0 = now_us();
    struct shared_result a = decide_cost(&f, 1, &due_us);
    depart(&f, a.key, a.member);
    sleep_until_us(t0 + w_us / 5);
    struct shared_result b = decide_cost(&f, 1, &due_us);
    struct shared_result c = decide_cost(&f, 3, &due_us);
    ck_assert_msg(b.outcome == SHARED_ADMIT && c.outcome == SHARED_ADMIT,
                  "B and C fit (outcomes %d, %d)", b.outcome, c.outcome);
    shared_depart(f.shared, b.key, b.member, 1);
    depart(&f, c.key, c.member);
    uint64_t due_d;
    struct shared_result d = decide_cost(&f, 2, &due_d);
    ck_assert_msg(d.outcome == SHARED_DELAY && d.remaining == 0,
                  "D (cost 2, window full): outcome %d, remaining %u", d.outcome, d.remaining);
    ck_assert_msg(due_d >= t0 + w_us * 6 / 5,
                  "D is due %lld ms after A, before B's unit leaves (%llu ms)",
                  (long long)(due_d - t0) / 1000, (unsigned long long)window_ms * 6 / 5);
    uint64_t due_e;
    struct shared_result e = decide_cost(&f, 2, &due_e);
    ck_assert_int_eq(e.outcome, SHARED_DELAY);
    ck_assert_int_eq(redis_int(port, "ZCARD", e.key), 9);
    shared_release(f.shared, e.key, e.member);
    barrier(&f, e.key);
    ck_assert_int_eq(redis_int(port, "ZCARD", e.key), 7);
    sleep_until_us(t0 + w_us * 105 / 100); /* A's unit has left, B's has not */
    struct call early = {0};
    ck_assert_ptr_nonnull(
        shared_ready(f.shared, &f.rule, d.key, d.member, ANSWER_TIMEOUT_MS, on_answer, &early));
    const struct shared_result *r = wait_answer(&f, &early, "D's early ready check");
    ck_assert_msg(r->outcome == SHARED_DELAY, "D may go when only one of its 2 units left");
    go_when_ready(&f, &d, now_us() + r->delay_us);
    depart(&f, d.key, d.member);
    assert_window_kept(&f, "cost_held", 7, 5, window_ms);
    redis_fixture_down(&f);
}
END_TEST

/* Limit 5 per 500 ms, reject. A (cost 3) is admitted at 0 and departs at 150 ms: all three of its
 * units move to its departure, so at 550 ms (past A's admission's window, within its departure's)
 * they are all still in the window and B (cost 3) is refused; at 700 ms they have all left and C
 * (cost 5) fills the window. Moving only one unit would let B go at 550 ms. */
START_TEST(test_cost_departure_moves_every_unit)
{
    const uint64_t window_ms = 500, w_us = window_ms * 1000;
    struct redis_fixture f;
    redis_fixture_up(&f, "cost_depart", 5, window_ms);
    f.rule.over_limit = RATE_OVER_REJECT;
    uint64_t due_us, t0 = now_us();
    struct shared_result a = decide_cost(&f, 3, &due_us);
    ck_assert_int_eq(a.outcome, SHARED_ADMIT);
    sleep_until_us(t0 + w_us * 3 / 10);
    depart(&f, a.key, a.member);
    long long *scores;
    size_t n = window_scores(f.redis->port, "cost_depart", &scores);
    ck_assert_msg(n == 3 && scores[0] == scores[2],
                  "A's 3 units are not all at its departure (%zu entries)", n);
    free(scores);
    sleep_until_us(t0 + w_us * 11 / 10);
    struct shared_result b = decide_cost(&f, 3, &due_us);
    ck_assert_msg(b.outcome == SHARED_REJECT && b.remaining == 2,
                  "B (cost 3) within A's departure's window: outcome %d, remaining %u", b.outcome,
                  b.remaining);
    sleep_until_us(t0 + w_us * 14 / 10);
    struct shared_result c = decide_cost(&f, 5, &due_us);
    ck_assert_msg(c.outcome == SHARED_ADMIT && c.remaining == 0,
                  "C (cost 5) after A's units left: outcome %d, remaining %u", c.outcome,
                  c.remaining);
    redis_fixture_down(&f);
}
END_TEST

static void add_tests(Suite *s)
{
    TCase *tc = harness_tcase("shared", 60);
    tcase_add_checked_fixture(tc, NULL, redis_teardown);
    tcase_add_test(tc, test_late_ready_check_ranks_at_now);
    tcase_add_test(tc, test_learned_budget_counts_in_flight_and_keeps_the_lower);
    tcase_add_test(tc, test_learned_new_window_replaces);
    tcase_add_test(tc, test_learned_renews_at_the_announced_limit);
    tcase_add_test(tc, test_learned_renews_without_a_period);
    tcase_add_test(tc, test_learned_dry_run_and_ignore);
    tcase_add_test(tc, test_learned_answer_without_fields_only_answers);
    tcase_add_test(tc, test_flushed_scripts_lose_nothing);
    tcase_add_test(tc, test_cost_takes_units);
    tcase_add_test(tc, test_cost_held_until_its_units_left);
    tcase_add_test(tc, test_cost_departure_moves_every_unit);
    suite_add_tcase(s, tc);
}

int main(void)
{
    Suite *s = suite_create("shared");
    add_tests(s);
    return harness_run_suite(s);
}
