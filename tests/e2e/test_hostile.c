/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_hostile.c — issue 8, item 7: hostile input. The driver of tests/cases/hostile/ (format:
 * tests/cases/README): each file holds the exact request bytes and the status rlproxy must answer
 * (or, where the file says so, a clean close with no response at all), then the proxy's close
 * within 2 s; after every case the daemon must be alive and a normal request on a new connection
 * must succeed. Every failure message names the case file.
 *
 * Each case runs on its own proxy (one Check test per file), and the whole directory runs once more
 * on a single proxy: a crash in any case shows as proxy_alive failing right after it, and nothing a
 * refused request leaves behind may leak into later requests. */
#include "cases.h"
#include "harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_MS 5000
#define MIN_CASES 30 /* fewer means the directory was not read as it should be */

static struct case_dir g_cases; /* listed by main() before the suite forks */

static void note(char *report, size_t cap, const char *fmt, const char *file, const char *detail)
{
    size_t used = strlen(report);
    if (used + 200 < cap)
        snprintf(report + used, cap - used, fmt, file, detail);
}

/* ---- each case on a fresh proxy (one Check test per case) ------------------------------------ */

static struct origin *g_origin;    /* one origin for the loop, started before the forks */
static struct proxy *g_case_proxy; /* the running case's proxy, for the teardown */

static void origin_up(void) { g_origin = origin_start(0); }

static void origin_down(void)
{
    origin_stop(g_origin);
    g_origin = NULL;
}

static void case_teardown(void)
{
    if (g_case_proxy != NULL && g_case_proxy->running)
        kill(g_case_proxy->pid, SIGKILL);
    g_case_proxy = NULL;
}

START_TEST(test_hostile_case)
{
    struct request_case c;
    case_load(g_cases.files[_i], &c);
    struct proxy *p = proxy_start(NULL);
    g_case_proxy = p;
    const char *why = case_play(&c, p->port, g_origin->port);
    ck_assert_msg(why[0] == '\0', "%s (%s): %s", c.file, c.name, why);
    ck_assert_msg(proxy_alive(p), "%s (%s): %s", c.file, c.name, proxy_state(p));
    char url[300];
    struct fetch_res rs;
    fetch_via(p->port, origin_url(g_origin, "/bytes/10", url, sizeof url), &rs);
    ck_assert_msg(rs.status == 200 && rs.body_len == 10, "%s (%s): the next request got %ld",
                  c.file, c.name, rs.status);
    fetch_free(&rs);
    g_case_proxy = NULL;
    proxy_stop(p);
    case_free(&c);
}
END_TEST

/* ---- every case on one proxy: nothing accumulates, nothing leaks into later requests ----------
 */

START_TEST(test_hostile_inputs_one_proxy)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    size_t cap = 64 * 1024;
    char *report = calloc(1, cap);
    ck_assert(report != NULL);
    int bad = 0;
    char url[300];
    origin_url(o, "/bytes/10", url, sizeof url);
    for (size_t i = 0; i < g_cases.count; i++) {
        struct request_case c;
        case_load(g_cases.files[i], &c);
        uint64_t t0 = now_ms();
        const char *why = case_play(&c, p->port, o->port);
        if (why[0] != '\0') {
            bad++;
            note(report, cap, "\n  %s: %s", c.file, why);
        }
        if (!proxy_alive(p))
            ck_abort_msg("rlproxy died on %s (%s): %s%s", c.file, c.name, proxy_state(p), report);
        /* a normal request on a new connection */
        struct fetch_req rq = {.url = url, .proxy_port = p->port, .timeout_ms = T_MS};
        struct fetch_res rs;
        fetch(&rq, &rs);
        if (rs.rc != CURLE_OK || rs.status != 200 || rs.body_len != 10) {
            bad++;
            char detail[300];
            snprintf(detail, sizeof detail, "curl %d (%s), status %ld", (int)rs.rc, rs.err,
                     rs.status);
            note(report, cap, "\n  %s: the next normal request failed: %s", c.file, detail);
        }
        fetch_free(&rs);
        printf("hostile: %-55s %s (%llu ms)\n", c.file, why[0] ? "FAILED" : "ok",
               (unsigned long long)(now_ms() - t0));
        case_free(&c);
    }
    fflush(stdout);
    ck_assert_msg(bad == 0, "%d of %zu hostile cases went wrong:%s", bad, g_cases.count, report);
    free(report);
    /* nothing that was refused reached the origin: only the valid requests did */
    char *log = origin_get(o, "/log");
    ck_assert_msg(strstr(log, "/h09") == NULL, "a refused request reached the origin: %s", log);
    free(log);
    proxy_stop_with_origin(p, o);
}
END_TEST

int main(void)
{
    /* not harness_tcase: its teardown would kill the shared origin from inside each forked case */
    TCase *each = tcase_create("each");
    tcase_set_timeout(each, 30);
    tcase_add_unchecked_fixture(each, origin_up, origin_down);
    tcase_add_checked_fixture(each, NULL, case_teardown);
    return case_driver_main("hostile", MIN_CASES, &g_cases, each, test_hostile_case,
                            harness_tcase("one proxy", 120), test_hostile_inputs_one_proxy);
}
