/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_smuggling.c — request smuggling never reaches the origin. The driver of
 * tests/cases/smuggling/ (format: tests/cases/README): each file is an outer request whose framing
 * is ambiguous, with inner requests in its body ("/smuggled" in origin-form and
 * "/smuggled-absolute" in absolute-form, the two ways an origin or rlproxy itself could take them).
 * rlproxy must answer the file's status (400) and close, and the origin must see nothing of it:
 * neither the outer request nor an inner one. Every failure message names the case file.
 *
 * Each case runs on its own origin and proxy (one Check test per file), so the origin's log holds
 * only what that case let through; the whole directory then runs once more on one proxy, where a
 * request that arrives last proves nothing smuggled is still on its way. */
#include "cases.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CASES 10 /* fewer means the directory was not read as it should be */

static struct case_dir g_cases; /* listed by main() before the suite forks */

/* A valid request after the cases: once the origin logged it, anything the proxy had forwarded
 * before it has arrived too; then "smuggl" may appear in the log only as that request's target. */
static void assert_nothing_smuggled(struct proxy *p, struct origin *o, const char *file)
{
    char url[300];
    struct fetch_res rs;
    fetch_via(p->port, origin_url(o, "/headers/after-smuggling", url, sizeof url), &rs);
    ck_assert_msg(rs.status == 200, "%s: the request after the case got %ld", file, rs.status);
    fetch_free(&rs);
    char *log = origin_get(o, "/log");
    ck_assert_msg(strstr(log, "after-smuggling") != NULL, "%s: origin log: %s", file, log);
    ck_assert_msg(text_count(log, "smuggl") == 1,
                  "%s: a smuggled or refused request reached the origin: %s", file, log);
    free(log);
}

START_TEST(test_smuggling_case)
{
    struct request_case c;
    case_load(g_cases.files[_i], &c);
    struct fixture f = {.o = origin_start(0)};
    f.p = proxy_start(NULL);
    const char *why = case_play(&c, f.p->port, f.o->port);
    ck_assert_msg(why[0] == '\0', "%s (%s): %s", c.file, c.name, why);
    assert_nothing_smuggled(f.p, f.o, c.file);
    ck_assert_msg(proxy_alive(f.p), "%s (%s): %s", c.file, c.name, proxy_state(f.p));
    fixture_down(f);
    case_free(&c);
}
END_TEST

START_TEST(test_smuggling_one_proxy)
{
    struct fixture f = {.o = origin_start(0)};
    f.p = proxy_start(NULL);
    for (size_t i = 0; i < g_cases.count; i++) {
        struct request_case c;
        case_load(g_cases.files[i], &c);
        const char *why = case_play(&c, f.p->port, f.o->port);
        ck_assert_msg(why[0] == '\0', "%s (%s): %s", c.file, c.name, why);
        case_free(&c);
    }
    assert_nothing_smuggled(f.p, f.o, "tests/cases/smuggling (all on one proxy)");
    ck_assert_msg(proxy_alive(f.p), "%s", proxy_state(f.p));
    fixture_down(f);
}
END_TEST

int main(void)
{
    return case_driver_main("smuggling", MIN_CASES, &g_cases, harness_tcase("each", 30),
                            test_smuggling_case, harness_tcase("one proxy", 60),
                            test_smuggling_one_proxy);
}
