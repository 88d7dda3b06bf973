/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_state_file.c — windows that survive a restart, with an injected clock: the limiter's view,
 * export, restore and reset (limiter.c's snapshot API), the state file's round trip, truncation at
 * every byte, corruption, old and future entries dropped, the monotonic/wall-clock conversion,
 * rules matched by name and parameters, and the atomic write. No sleeps. Also the admin endpoint's
 * request parsing and token check (admin_request.c), pure functions of bytes. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin_request.h"
#include "limit_headers.h"
#include "limiter.h"
#include "state_file.h"

#include "limiter_fixture.h"
#include "unit.h"

#define MS 1000ULL /* microseconds */
#define S (1000 * MS)
/* monotonic and wall clocks of two runs: the second boots later, with a smaller monotonic clock */
#define MONO_1 (5000 * S)
#define WALL_1 (1800000000ULL * S)

/* A limiter of one rule, "api", set up in the caller's api and c (the limiter points into them);
 * a delay rule holds requests up to 120 s */
static struct limiter *api_limiter(struct rate_rule *api, struct config *c, enum rate_key key,
                                   uint32_t limit, uint64_t window_ms,
                                   enum rate_over_limit over_limit)
{
    *api = limiter_fixture_rule("api", key, limit, window_ms, RATE_OVER_REJECT);
    api->over_limit = over_limit;
    if (over_limit == RATE_OVER_DELAY)
        api->max_delay_ms = 120000;
    *c = limiter_fixture_config(api, 1, 100000);
    return limiter_new(c, NULL, NULL);
}

/* A GET from ip at now, decided by the limiter: d as limiter_decide fills it */
static void decide(struct limiter *l, const char *ip, uint64_t now, struct limiter_decision *d)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a.sin_addr);
    struct limiter_request r = {.client = (struct sockaddr *)&a,
                                .user = "-",
                                .host = "h",
                                .port = 80,
                                .method = "GET",
                                .path = "/",
                                .path_len = 1};
    limiter_decide(l, &r, now, d);
}

/* decide, and a held request goes at once: the verdict */
static enum limiter_verdict ask(struct limiter *l, const char *ip, uint64_t now)
{
    struct limiter_decision d;
    decide(l, ip, now, &d);
    if (d.hold != NULL)
        limiter_hold_done(d.hold, now);
    return d.verdict;
}

struct views {
    size_t count;
    char keys[8][64];
    uint32_t used[8], held[8];
    uint64_t reset_us[8];
};

static void collect(const struct limiter_window_view *v, void *arg)
{
    struct views *out = arg;
    if (out->count < 8) {
        snprintf(out->keys[out->count], sizeof out->keys[0], "%.*s", (int)v->key_len, v->key);
        out->used[out->count] = v->used;
        out->held[out->count] = v->held;
        out->reset_us[out->count] = v->reset_us;
    }
    out->count++;
}

/* ---- the limiter's side ---- */

START_TEST(test_view_reports_used_held_and_reset)
{
    struct rate_rule api;
    struct config c;
    struct limiter *l = api_limiter(&api, &c, RATE_KEY_CLIENT, 2, 60000, RATE_OVER_DELAY);
    ask(l, "10.0.0.1", 1 * S);
    ask(l, "10.0.0.1", 2 * S);
    ask(l, "10.0.0.2", 3 * S);
    struct limiter_decision held;
    decide(l, "10.0.0.1", 4 * S, &held); /* third of 10.0.0.1: held until 61 s */
    ck_assert_int_eq(held.verdict, LIMITER_DELAY);
    struct views v = {0};
    limiter_foreach_window(l, 0, 4 * S, collect, &v);
    ck_assert_uint_eq(v.count, 2);
    int one = strcmp(v.keys[0], "10.0.0.1") == 0 ? 0 : 1;
    ck_assert_str_eq(v.keys[one], "10.0.0.1");
    ck_assert_uint_eq(v.used[one], 2); /* the entry at 2 s and the reservation at 61 s */
    ck_assert_uint_eq(v.held[one], 1);
    ck_assert_uint_eq(v.reset_us[one], 58 * S); /* the entry at 2 s leaves at 62 s */
    ck_assert_uint_eq(v.used[1 - one], 1);
    ck_assert_uint_eq(v.held[1 - one], 0);
    limiter_hold_cancel(held.hold);
    limiter_unref(l);
}
END_TEST

START_TEST(test_reset_empties_one_window)
{
    struct rate_rule api;
    struct config c;
    struct limiter *l = api_limiter(&api, &c, RATE_KEY_CLIENT, 1, 60000, RATE_OVER_REJECT);
    ck_assert_int_eq(ask(l, "10.0.0.1", 1 * S), LIMITER_ADMIT);
    ck_assert_int_eq(ask(l, "10.0.0.2", 1 * S), LIMITER_ADMIT);
    ck_assert_int_eq(ask(l, "10.0.0.1", 2 * S), LIMITER_REJECT);
    ck_assert_int_eq(limiter_reset_window(l, 0, "10.0.0.1", 8, 2 * S), 0);
    ck_assert_int_eq(limiter_reset_window(l, 0, "10.0.0.9", 8, 2 * S), -1); /* no such window */
    ck_assert_int_eq(limiter_reset_window(l, 1, "10.0.0.1", 8, 2 * S), -1); /* no such rule */
    ck_assert_int_eq(ask(l, "10.0.0.1", 3 * S), LIMITER_ADMIT);
    ck_assert_int_eq(ask(l, "10.0.0.1", 4 * S), LIMITER_REJECT); /* counting again */
    ck_assert_int_eq(ask(l, "10.0.0.2", 4 * S), LIMITER_REJECT); /* the other key untouched */
    limiter_unref(l);
}
END_TEST

START_TEST(test_restore_drops_old_future_and_excess)
{
    struct rate_rule api;
    struct config c;
    struct limiter *l = api_limiter(&api, &c, RATE_KEY_GLOBAL, 3, 10000, RATE_OVER_REJECT);
    uint64_t now = 100 * S;
    /* 85 s is out of the window, 101 s is in the future; of the five in the window only the
     * newest three (the limit) stay */
    uint64_t times[] = {97 * S, 85 * S, 91 * S, 101 * S, 95 * S, 99 * S, 93 * S};
    ck_assert_int_eq(limiter_restore_window(l, 0, "", 0, times, 7, now), 3);
    struct views v = {0};
    limiter_foreach_window(l, 0, now, collect, &v);
    ck_assert_uint_eq(v.count, 1);
    ck_assert_uint_eq(v.used[0], 3);
    ck_assert_uint_eq(v.reset_us[0], 5 * S); /* the oldest kept is 95 s */
    ck_assert_int_eq(ask(l, "1.1.1.1", now), LIMITER_REJECT);
    ck_assert_int_eq(ask(l, "1.1.1.1", 105 * S), LIMITER_ADMIT);
    uint64_t stale[] = {1 * S};
    ck_assert_int_eq(limiter_restore_window(l, 0, "x", 1, stale, 1, now), 0);
    limiter_unref(l);
}
END_TEST

/* A held request's reservation survives a reset: it will still go, so it still counts. */
START_TEST(test_reset_keeps_held_reservations)
{
    struct rate_rule api;
    struct config c;
    struct limiter *l = api_limiter(&api, &c, RATE_KEY_CLIENT, 2, 60000, RATE_OVER_DELAY);
    ask(l, "10.0.0.1", 1 * S);
    ask(l, "10.0.0.1", 2 * S);
    struct limiter_decision held;
    decide(l, "10.0.0.1", 3 * S, &held); /* reserved at 61 s */
    ck_assert_int_eq(held.verdict, LIMITER_DELAY);
    ck_assert_int_eq(limiter_reset_window(l, 0, "10.0.0.1", 8, 4 * S), 0);
    struct views v = {0};
    limiter_foreach_window(l, 0, 4 * S, collect, &v);
    ck_assert_uint_eq(v.used[0], 1); /* the reservation */
    ck_assert_uint_eq(v.held[0], 1);
    ck_assert_int_eq(ask(l, "10.0.0.1", 5 * S), LIMITER_ADMIT); /* one slot free again */
    struct limiter_decision d;
    decide(l, "10.0.0.1", 6 * S, &d);
    ck_assert_int_eq(d.verdict, LIMITER_DELAY); /* full: 5 s and the reservation */
    ck_assert_uint_eq(d.delay_us, 59 * S);      /* when the entry at 5 s leaves */
    limiter_hold_cancel(d.hold);
    limiter_hold_cancel(held.hold);
    limiter_unref(l);
}
END_TEST

/* ---- the file ---- */

/* A limiter of two rules with some windows, as a first run leaves it at MONO_1. */
static struct limiter *first_run(struct rate_rule *rules, struct config *c)
{
    rules[0] = limiter_fixture_rule("api", RATE_KEY_CLIENT, 3, 60000, RATE_OVER_REJECT);
    rules[1] = limiter_fixture_rule("all", RATE_KEY_GLOBAL, 100, 3600000, RATE_OVER_REJECT);
    *c = limiter_fixture_config(rules, 2, 100000);
    struct limiter *l = limiter_new(c, NULL, NULL);
    /* 10.0.0.1 fills its window (3 of 3) in the last 30 s; 10.0.0.2 sends one 50 s ago; "api"
     * matches every request first, so "all" stays empty (and is saved as an empty section) */
    ask(l, "10.0.0.2", MONO_1 - 50 * S);
    ask(l, "10.0.0.1", MONO_1 - 30 * S);
    ask(l, "10.0.0.1", MONO_1 - 20 * S);
    ask(l, "10.0.0.1", MONO_1 - 10 * S);
    return l;
}

static char *render(struct limiter *l, size_t *len)
{
    char *text = state_file_render(l, MONO_1, WALL_1, len);
    ck_assert_ptr_nonnull(text);
    return text;
}

/* The state file a first run leaves (first_run, rendered, the limiter gone), with the rules and
 * config it was made under: fill one in place (run.c points into run.rules) */
struct saved_run {
    struct rate_rule rules[2];
    struct config c;
    char *text;
    size_t len;
};

static void save_first_run(struct saved_run *run)
{
    struct limiter *before = first_run(run->rules, &run->c);
    run->text = render(before, &run->len);
    limiter_unref(before);
}

/* Frees the saved file and the limiter it was restored into */
static void saved_run_free(struct saved_run *run, struct limiter *after)
{
    limiter_unref(after);
    free(run->text);
}

START_TEST(test_crc32_known_value)
{
    ck_assert_uint_eq(state_file_crc32("123456789", 9), 0xCBF43926u); /* the standard check */
    ck_assert_uint_eq(state_file_crc32("", 0), 0);
}
END_TEST

/* Restarted 35 s later on a machine that booted since: the monotonic clock is small now. */
START_TEST(test_round_trip_across_a_reboot)
{
    struct saved_run run;
    save_first_run(&run);

    struct limiter *after = limiter_new(&run.c, NULL, NULL);
    uint64_t mono_2 = 40 * S, wall_2 = WALL_1 + 5 * S;
    struct state_file_counts counts;
    char err[256];
    ck_assert_msg(
        state_file_parse(after, run.text, run.len, mono_2, wall_2, &counts, err, sizeof err) == 0,
        "%s", err);
    ck_assert_uint_eq(counts.rules, 2);
    ck_assert_uint_eq(counts.matched, 2);
    ck_assert_uint_eq(counts.windows, 2);
    ck_assert_uint_eq(counts.entries, 4);
    /* 10.0.0.1 is still full: its oldest entry (35 s ago now) leaves 25 s from now */
    ck_assert_int_eq(ask(after, "10.0.0.1", mono_2), LIMITER_REJECT);
    struct views v = {0};
    limiter_foreach_window(after, 0, mono_2, collect, &v);
    ck_assert_uint_eq(v.count, 2);
    int one = strcmp(v.keys[0], "10.0.0.1") == 0 ? 0 : 1;
    ck_assert_uint_eq(v.used[one], 3);
    ck_assert_uint_eq(v.reset_us[one], 25 * S);
    ck_assert_int_eq(ask(after, "10.0.0.1", mono_2 + 25 * S), LIMITER_ADMIT);
    ck_assert_int_eq(ask(after, "10.0.0.3", mono_2), LIMITER_ADMIT);
    saved_run_free(&run, after);
}
END_TEST

/* An entry older than the new monotonic clock's zero (boot came after it) is placed at 0, which
 * is later than its true time: stricter, never looser. */
START_TEST(test_entries_before_boot_clamp_to_zero)
{
    struct saved_run run;
    save_first_run(&run);
    struct limiter *after = limiter_new(&run.c, NULL, NULL);
    char err[256];
    uint64_t mono_2 = 2 * S, wall_2 = WALL_1 + 5 * S; /* entries are 15..55 s old, uptime 2 s */
    ck_assert_int_eq(
        state_file_parse(after, run.text, run.len, mono_2, wall_2, NULL, err, sizeof err), 0);
    struct views v = {0};
    limiter_foreach_window(after, 0, mono_2, collect, &v);
    int one = strcmp(v.keys[0], "10.0.0.1") == 0 ? 0 : 1;
    ck_assert_uint_eq(v.used[one], 3);
    ck_assert_uint_eq(v.reset_us[one], 58 * S); /* placed at 0, leaves at 60 s */
    saved_run_free(&run, after);
}
END_TEST

START_TEST(test_old_entries_dropped)
{
    struct saved_run run;
    save_first_run(&run);
    struct limiter *after = limiter_new(&run.c, NULL, NULL);
    struct state_file_counts counts;
    char err[256];
    /* 45 s later: 10.0.0.2's entry (95 s old) and 10.0.0.1's first two are gone from "api" */
    ck_assert_int_eq(state_file_parse(after, run.text, run.len, 100 * S, WALL_1 + 45 * S, &counts,
                                      err, sizeof err),
                     0);
    struct views v = {0};
    limiter_foreach_window(after, 0, 100 * S, collect, &v);
    ck_assert_uint_eq(v.count, 1);
    ck_assert_str_eq(v.keys[0], "10.0.0.1");
    ck_assert_uint_eq(v.used[0], 1);
    ck_assert_uint_eq(counts.entries, 1);
    /* a day later nothing is left, and that is no error */
    limiter_unref(after);
    after = limiter_new(&run.c, NULL, NULL);
    ck_assert_int_eq(state_file_parse(after, run.text, run.len, 100 * S, WALL_1 + 86400 * S,
                                      &counts, err, sizeof err),
                     0);
    ck_assert_uint_eq(counts.windows, 0);
    ck_assert_uint_eq(limiter_total_keys(after), 0);
    saved_run_free(&run, after);
}
END_TEST

/* A rule whose parameters changed starts empty, as a reload would; renamed rules too. */
START_TEST(test_changed_rules_start_empty)
{
    struct saved_run run;
    save_first_run(&run);
    struct rate_rule changed[] = {
        limiter_fixture_rule("api", RATE_KEY_CLIENT, 4, 60000, RATE_OVER_REJECT),
        limiter_fixture_rule("everything", RATE_KEY_GLOBAL, 100, 3600000, RATE_OVER_REJECT)};
    struct config c2 = limiter_fixture_config(changed, 2, 100000);
    struct limiter *after = limiter_new(&c2, NULL, NULL);
    struct state_file_counts counts;
    char err[256];
    ck_assert_int_eq(
        state_file_parse(after, run.text, run.len, MONO_1, WALL_1, &counts, err, sizeof err), 0);
    ck_assert_uint_eq(counts.rules, 2);
    ck_assert_uint_eq(counts.matched, 0);
    ck_assert_uint_eq(limiter_total_keys(after), 0);
    saved_run_free(&run, after);
}
END_TEST

/* Every prefix of a valid file is refused as a whole and restores nothing. */
START_TEST(test_truncation_at_every_byte)
{
    struct saved_run run;
    save_first_run(&run);
    struct limiter *after = limiter_new(&run.c, NULL, NULL);
    char err[256];
    for (size_t cut = 0; cut < run.len; cut++) {
        ck_assert_msg(
            state_file_parse(after, run.text, cut, MONO_1, WALL_1, NULL, err, sizeof err) == -1,
            "a file cut at %zu of %zu bytes was accepted", cut, run.len);
        ck_assert_uint_eq(limiter_total_keys(after), 0);
    }
    saved_run_free(&run, after);
}
END_TEST

/* Any one byte changed is caught by the checksum, or by the parser when it is in the trailer. */
START_TEST(test_corruption_of_any_byte)
{
    struct saved_run run;
    save_first_run(&run);
    struct limiter *after = limiter_new(&run.c, NULL, NULL);
    char err[256];
    for (size_t at = 0; at < run.len; at++) {
        char saved = run.text[at];
        run.text[at] = (char)(saved ^ 0x04);
        ck_assert_msg(
            state_file_parse(after, run.text, run.len, MONO_1, WALL_1, NULL, err, sizeof err) == -1,
            "a file with byte %zu changed was accepted", at);
        run.text[at] = saved;
    }
    ck_assert_uint_eq(limiter_total_keys(after), 0);
    saved_run_free(&run, after);
}
END_TEST

/* Files with a valid checksum but a bad body: the parser, not the checksum, refuses them. */
static int parse_with_crc(const char *body, char *err, size_t err_len)
{
    char text[4096];
    size_t n = (size_t)snprintf(text, sizeof text, "%s", body);
    n += (size_t)snprintf(text + n, sizeof text - n, "end %08x\n", state_file_crc32(text, n));
    struct rate_rule api;
    struct config c;
    struct limiter *l = api_limiter(&api, &c, RATE_KEY_CLIENT, 3, 60000, RATE_OVER_REJECT);
    int rc = state_file_parse(l, text, n, MONO_1, WALL_1, NULL, err, err_len);
    if (rc != 0)
        ck_assert_uint_eq(limiter_total_keys(l), 0);
    limiter_unref(l);
    return rc;
}

START_TEST(test_bad_bodies_refused)
{
    char err[256];
    static const char *const bad[] = {
        "rlproxy-state 3\nsaved 1\n", /* a future version */
        "rlproxy-state 0\nsaved 1\n",
        "something 1\nsaved 1\n",                    /* not ours */
        "rlproxy-state 1\n",                         /* no saved line */
        "rlproxy-state 1\nsaved 1\nwindow 41 1 5\n", /* window before rule */
        "rlproxy-state 1\nsaved 1\nrule api 0 3 60000 1 30000 1000 0\nwindow 41 4 1 2 3 4\n",
        "rlproxy-state 1\nsaved 1\nrule api 0 3 60000 1 30000 1000 0\nwindow 4 1 5\n",
        "rlproxy-state 1\nsaved 1\nrule api 0 3 60000 1 30000 1000 0\nwindow 41 0\n",
        "rlproxy-state 1\nsaved 1\nrule api 0 3 60000 1 30000 1000 0\nwindow 41 2 5\n",
        "rlproxy-state 1\nsaved 1\nrule api 9 3 60000 1 30000 1000 0\n", /* no such key kind */
        "rlproxy-state 1\nsaved 1\nrule api 0 0 60000 1 30000 1000 0\n", /* limit 0 */
        "rlproxy-state 1\nsaved 1\nrule a$i 0 3 60000 1 30000 1000 0\n",
        "rlproxy-state 1\nsaved 99999999999999999999\n", /* over 64 bits */
        "rlproxy-state 1\nsaved 1\nrule api 0 3 60000 1 30000 1000 0\nwindow 41 1 5 \n",
        /* learned lines: only from version 2, inside a rule, every field bounded */
        "rlproxy-state 1\nsaved 1\nrule api 0 3 60000 1 30000 1000 0\nlearned 41 0 5 3 0 0\n",
        "rlproxy-state 2\nsaved 1\nlearned 41 0 5 3 0 0\n",
        "rlproxy-state 2\nsaved 1\nrule api 0 3 60000 1 30000 1000 0\nlearned 41 4 5 3 0 0\n",
        "rlproxy-state 2\nsaved 1\nrule api 0 3 60000 1 30000 1000 0\nlearned 41 0 5 3 0\n",
        "rlproxy-state 2\nsaved 1\nrule api 0 3 60000 1 30000 1000 0\nlearned 41 -1 5 3 0 0\n",
        "rlproxy-state 2\nsaved 1\nrule api 0 3 60000 1 30000 1000 0\n"
        "learned 41 0 5 1000000000000000 0 0\n", /* limit over 15 digits */
        "rlproxy-state 2\nsaved 1\nrule api 0 3 60000 1 30000 1000 0\n"
        "learned 41 0 5 3 604800000001 0\n", /* a period over 7 days */
        "rlproxy-state 2\nsaved 1\nrule api 0 3 60000 1 30000 1000 0\nlearned 41 0 5 3 0 0 \n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(parse_with_crc(bad[i], err, sizeof err) == -1, "bad[%zu] accepted", i);
    /* and the well-formed neighbour of the last ones is accepted */
    ck_assert_int_eq(
        parse_with_crc(
            "rlproxy-state 1\nsaved 1\nrule api 0 3 60000 1 30000 1000 0\nwindow 41 1 5\n", err,
            sizeof err),
        0);
    ck_assert_int_eq(parse_with_crc("rlproxy-state 2\nsaved 1\nrule api 0 3 60000 1 30000 1000 "
                                    "0\nwindow 41 1 5\nlearned 41 - 5 3 0 0\n",
                                    err, sizeof err),
                     0);
}
END_TEST

/* A version 1 file (windows only, as the previous release wrote it) still restores its windows:
 * an upgrade is not an empty start. */
START_TEST(test_version_1_file_still_read)
{
    struct rate_rule api;
    struct config c;
    struct limiter *l = api_limiter(&api, &c, RATE_KEY_CLIENT, 3, 60000, RATE_OVER_REJECT);
    char text[512];
    /* 10.0.0.1 ("31302e302e302e31") sent three in the last 30 s */
    size_t n = (size_t)snprintf(text, sizeof text,
                                "rlproxy-state 1\nsaved %llu\nrule api 0 3 60000 1 30000 1000 0\n"
                                "window 31302e302e302e31 3 %llu %llu %llu\n",
                                (unsigned long long)WALL_1, (unsigned long long)(WALL_1 - 30 * S),
                                (unsigned long long)(WALL_1 - 20 * S),
                                (unsigned long long)(WALL_1 - 10 * S));
    n += (size_t)snprintf(text + n, sizeof text - n, "end %08x\n", state_file_crc32(text, n));
    struct state_file_counts counts;
    char err[256];
    ck_assert_msg(state_file_parse(l, text, n, MONO_1, WALL_1, &counts, err, sizeof err) == 0, "%s",
                  err);
    ck_assert_uint_eq(counts.windows, 1);
    ck_assert_uint_eq(counts.entries, 3);
    ck_assert_uint_eq(counts.learned, 0);
    ck_assert_int_eq(ask(l, "10.0.0.1", MONO_1), LIMITER_REJECT);
    ck_assert_int_eq(ask(l, "10.0.0.1", MONO_1 + 30 * S), LIMITER_ADMIT);
    limiter_unref(l);
}
END_TEST

/* One request of ip admitted at now, departed at once and answered with h (status). */
static void exchange(struct limiter *l, const char *ip, uint64_t now, int status,
                     struct limit_headers h)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    inet_pton(AF_INET, ip, &a.sin_addr);
    struct limiter_request r = {.client = (struct sockaddr *)&a,
                                .user = "-",
                                .host = "h",
                                .port = 80,
                                .method = "GET",
                                .path = "/",
                                .path_len = 1,
                                .depart_later = 1};
    struct limiter_decision d;
    limiter_decide(l, &r, now, &d);
    ck_assert_int_eq(d.verdict, LIMITER_ADMIT);
    struct limiter_stamp answer = {0};
    limiter_depart(&d.stamp, now, &answer);
    if (h.found)
        limiter_learn(&answer, status, &h, now);
    limiter_answered(&answer);
}

static struct limit_headers origin_said(int64_t limit, int64_t remaining, int64_t reset_ms,
                                        int64_t retry_after_ms)
{
    struct limit_headers h;
    memset(&h, 0, sizeof h);
    h.found = limit >= 0 || remaining >= 0 || reset_ms >= 0 || retry_after_ms >= 0;
    h.limit = limit;
    h.remaining = remaining;
    h.reset_ms = reset_ms;
    h.window_ms = -1;
    h.retry_after_ms = retry_after_ms;
    return h;
}

/* What the origin said outlives a restart: a key whose quota is spent until a reset 30 s after
 * the save is held until then by the new process, and free after; a pause over by the load is
 * dropped. The rule alone (100 a minute) would admit every request here. */
START_TEST(test_learned_limits_survive_a_restart)
{
    struct rate_rule api;
    struct config c;
    struct limiter *before = api_limiter(&api, &c, RATE_KEY_CLIENT, 100, 60000, RATE_OVER_REJECT);
    /* 10.0.0.1: the origin says 1 of 5 left, renewing 30 s after the save; one more request
     * departs unanswered and spends it */
    exchange(before, "10.0.0.1", MONO_1 - 1 * S, 200, origin_said(5, 1, 31000, -1));
    exchange(before, "10.0.0.1", MONO_1 - 500 * MS, 200, origin_said(-1, -1, -1, -1));
    /* 10.0.0.3: a 429 asking for 2 s, over 1 s after the save */
    exchange(before, "10.0.0.3", MONO_1 - 1 * S, 429, origin_said(-1, -1, -1, 2000));
    size_t len;
    char *text = render(before, &len);
    limiter_unref(before);

    /* restarted 5 s later after a reboot */
    struct limiter *after = limiter_new(&c, NULL, NULL);
    uint64_t mono_2 = 40 * S, wall_2 = WALL_1 + 5 * S;
    struct state_file_counts counts;
    char err[256];
    ck_assert_msg(state_file_parse(after, text, len, mono_2, wall_2, &counts, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_uint_eq(counts.learned, 1);
    struct limiter_decision d;
    decide(after, "10.0.0.1", mono_2, &d);
    ck_assert_int_ne(d.verdict, LIMITER_ADMIT);
    ck_assert_uint_eq(d.reset_us, 25 * S); /* until the origin's reset */
    if (d.hold != NULL)
        limiter_hold_cancel(d.hold);
    decide(after, "10.0.0.1", mono_2 + 25 * S - 1, &d);
    ck_assert_int_ne(d.verdict, LIMITER_ADMIT);
    if (d.hold != NULL)
        limiter_hold_cancel(d.hold);
    /* at the reset the quota renews to the origin's 5 */
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(ask(after, "10.0.0.1", mono_2 + 25 * S), LIMITER_ADMIT);
    ck_assert_int_eq(ask(after, "10.0.0.3", mono_2), LIMITER_ADMIT); /* its pause was over */
    ck_assert_int_eq(ask(after, "10.0.0.2", mono_2), LIMITER_ADMIT);
    limiter_unref(after);
    free(text);
}
END_TEST

/* What the limiter learned is written within the bounds the reader checks, whatever order the
 * origin's answers came in: a quota said smaller than the remaining caps it, and the file loads. */
START_TEST(test_learned_lines_always_read_back)
{
    struct rate_rule api;
    struct config c;
    struct limiter *before = api_limiter(&api, &c, RATE_KEY_CLIENT, 100, 60000, RATE_OVER_REJECT);
    exchange(before, "10.0.0.4", MONO_1 - 1 * S, 200, origin_said(2, 5, 10000, -1));
    size_t len;
    char *text = render(before, &len);
    limiter_unref(before);
    struct limiter *after = limiter_new(&c, NULL, NULL);
    struct state_file_counts counts;
    char err[256];
    ck_assert_msg(state_file_parse(after, text, len, MONO_1, WALL_1, &counts, err, sizeof err) == 0,
                  "%s", err);
    ck_assert_uint_eq(counts.learned, 1);
    ck_assert_int_eq(ask(after, "10.0.0.4", MONO_1), LIMITER_ADMIT);
    ck_assert_int_eq(ask(after, "10.0.0.4", MONO_1), LIMITER_ADMIT);
    ck_assert_int_ne(ask(after, "10.0.0.4", MONO_1), LIMITER_ADMIT); /* 2, not 5 */
    limiter_unref(after);
    free(text);
}
END_TEST

START_TEST(test_save_and_load_a_file)
{
    struct rate_rule rules[2];
    struct config c;
    struct limiter *before = first_run(rules, &c);
    char dir[] = "/tmp/rlproxy-state-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256], tmp[300];
    snprintf(path, sizeof path, "%s/windows", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    char err[256];
    struct state_file_counts counts;
    struct limiter *after = limiter_new(&c, NULL, NULL);
    ck_assert_int_eq(state_file_load(after, path, MONO_1, WALL_1, &counts, err, sizeof err), 1);
    ck_assert_msg(state_file_save(before, path, MONO_1, WALL_1, err, sizeof err) == 0, "%s", err);
    struct stat st;
    ck_assert_int_eq(stat(tmp, &st), -1); /* renamed away */
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_uint_eq(st.st_mode & 0777, 0600);
    ck_assert_msg(state_file_load(after, path, MONO_1, WALL_1, &counts, err, sizeof err) == 0, "%s",
                  err);
    ck_assert_uint_eq(counts.windows, 2);
    /* a directory where the file should be: a reason, not a crash */
    ck_assert_int_eq(state_file_load(after, dir, MONO_1, WALL_1, &counts, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
    /* a save into a directory that does not exist fails and says where */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none/windows", dir);
    ck_assert_int_eq(state_file_save(before, missing, MONO_1, WALL_1, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "open"));
    unlink(path);
    rmdir(dir);
    limiter_unref(before);
    limiter_unref(after);
}
END_TEST

/* ---- admin requests ---- */

START_TEST(test_admin_routes)
{
    struct admin_request r;
    admin_request_parse(ADMIN_METHOD_GET, "/", 1, &r);
    ck_assert_int_eq(r.route, ADMIN_ROUTE_PAGE);
    ck_assert(r.method_allowed);
    admin_request_parse(ADMIN_METHOD_GET, "/limits?x=1", 11, &r);
    ck_assert_int_eq(r.route, ADMIN_ROUTE_LIMITS);
    admin_request_parse(ADMIN_METHOD_HEAD, "/metrics", 8, &r);
    ck_assert_int_eq(r.route, ADMIN_ROUTE_METRICS);
    ck_assert(r.method_allowed);
    admin_request_parse(ADMIN_METHOD_POST, "/healthz", 8, &r);
    ck_assert_int_eq(r.route, ADMIN_ROUTE_HEALTHZ);
    ck_assert(!r.method_allowed);
    admin_request_parse(ADMIN_METHOD_GET, "/limitsx", 8, &r);
    ck_assert_int_eq(r.route, ADMIN_ROUTE_NOT_FOUND);
    admin_request_parse(ADMIN_METHOD_GET, "http://x/limits", 15, &r);
    ck_assert_int_eq(r.route, ADMIN_ROUTE_NOT_FOUND);
    const char *t = "/limits/api.v2/reset?a=b&key=10.0.0.1%20example.com";
    admin_request_parse(ADMIN_METHOD_POST, t, strlen(t), &r);
    ck_assert_int_eq(r.route, ADMIN_ROUTE_RESET);
    ck_assert(r.method_allowed);
    ck_assert_str_eq(r.rule, "api.v2");
    ck_assert_str_eq(r.key, "10.0.0.1 example.com");
    admin_request_parse(ADMIN_METHOD_GET, t, strlen(t), &r);
    ck_assert(!r.method_allowed);
    ck_assert_str_eq(r.allow, "POST");
    t = "/limits/all/reset?key=";
    admin_request_parse(ADMIN_METHOD_POST, t, strlen(t), &r);
    ck_assert_int_eq(r.route, ADMIN_ROUTE_RESET);
    ck_assert_uint_eq(r.key_len, 0);
    t = "/limits/all/reset?key=a+b%2b";
    admin_request_parse(ADMIN_METHOD_POST, t, strlen(t), &r);
    ck_assert_str_eq(r.key, "a b+");
    static const char *const bad_key[] = {"/limits/all/reset",         "/limits/all/reset?k=1",
                                          "/limits/all/reset?key=%",   "/limits/all/reset?key=%4",
                                          "/limits/all/reset?key=%zz", "/limits/all/reset?key=%00"};
    for (size_t i = 0; i < sizeof bad_key / sizeof bad_key[0]; i++) {
        admin_request_parse(ADMIN_METHOD_POST, bad_key[i], strlen(bad_key[i]), &r);
        ck_assert_msg(r.route == ADMIN_ROUTE_BAD_REQUEST, "%s", bad_key[i]);
    }
    static const char *const not_found[] = {"/limits//reset?key=a", "/limits/a b/reset?key=a",
                                            "/limits/a/b/reset?key=a", "/limits/reset?key=a"};
    for (size_t i = 0; i < sizeof not_found / sizeof not_found[0]; i++) {
        admin_request_parse(ADMIN_METHOD_POST, not_found[i], strlen(not_found[i]), &r);
        ck_assert_msg(r.route == ADMIN_ROUTE_NOT_FOUND, "%s", not_found[i]);
    }
    char long_key[2000] = "/limits/a/reset?key=";
    memset(long_key + strlen(long_key), 'k', 1500);
    admin_request_parse(ADMIN_METHOD_POST, long_key, strlen(long_key), &r);
    ck_assert_int_eq(r.route, ADMIN_ROUTE_BAD_REQUEST);
}
END_TEST

START_TEST(test_admin_token)
{
    ck_assert(admin_request_token_ok("Bearer s3cret", "s3cret"));
    ck_assert(admin_request_token_ok("bearer s3cret", "s3cret"));
    ck_assert(!admin_request_token_ok("Bearer s3cre", "s3cret"));
    ck_assert(!admin_request_token_ok("Bearer s3cret2", "s3cret"));
    ck_assert(!admin_request_token_ok("Bearer S3cret", "s3cret"));
    ck_assert(!admin_request_token_ok("Basic s3cret", "s3cret"));
    ck_assert(!admin_request_token_ok("Bearer", "s3cret"));
    ck_assert(!admin_request_token_ok(NULL, "s3cret"));
    ck_assert(!admin_request_token_ok("Bearer ", "")); /* an empty token is no token */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("state_file");
    TCase *limiter = tcase_create("limiter");
    tcase_add_test(limiter, test_view_reports_used_held_and_reset);
    tcase_add_test(limiter, test_reset_empties_one_window);
    tcase_add_test(limiter, test_reset_keeps_held_reservations);
    tcase_add_test(limiter, test_restore_drops_old_future_and_excess);
    suite_add_tcase(s, limiter);
    TCase *file = tcase_create("file");
    tcase_add_test(file, test_crc32_known_value);
    tcase_add_test(file, test_round_trip_across_a_reboot);
    tcase_add_test(file, test_entries_before_boot_clamp_to_zero);
    tcase_add_test(file, test_old_entries_dropped);
    tcase_add_test(file, test_changed_rules_start_empty);
    tcase_add_test(file, test_truncation_at_every_byte);
    tcase_add_test(file, test_corruption_of_any_byte);
    tcase_add_test(file, test_bad_bodies_refused);
    tcase_add_test(file, test_version_1_file_still_read);
    tcase_add_test(file, test_learned_limits_survive_a_restart);
    tcase_add_test(file, test_learned_lines_always_read_back);
    tcase_add_test(file, test_save_and_load_a_file);
    suite_add_tcase(s, file);
    TCase *admin = tcase_create("admin_request");
    tcase_add_test(admin, test_admin_routes);
    tcase_add_test(admin, test_admin_token);
    suite_add_tcase(s, admin);
    return unit_run(s);
}
