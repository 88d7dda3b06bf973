/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_live_view.c — windows that survive a restart and the operators' live view (issue 17, items
 * 6 and 7), against a real origin:
 *   - state_file: a filled 1-minute window is still full after SIGTERM and a start with the same
 *     file (the next request is refused, as if there had been no restart), and a held request's
 *     window likewise holds the next one; without state_file the restart forgets (the control);
 *     an origin's Retry-After pause of a key is still kept after the restart;
 *     a corrupt or truncated file is a warning and an empty start, one that cannot be written a
 *     warning;
 *   - GET /limits shows the rule, the key, used/limit and a held request; POST
 *     /limits/RULE/reset?key= empties that window (the next request goes at once); 404 for an
 *     unknown rule or key, 405 for other methods, 400 without key=;
 *   - admin.token: 401 without the bearer token or with another, on /limits, /metrics and
 *     /healthz; the page itself is served; a non-loopback admin.listen without a token is refused
 *     by -t with its position;
 *   - the page at / in headless Chromium (Debian's chromium): it renders the rules and a held
 *     request appears on it. Without chromium the test fails under CI=true, else says so. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T_MS 10000

/* A request sent through the proxy on a raw connection and left waiting (held by a delay rule). */
static struct raw *send_and_leave(struct proxy *p, struct origin *o, const char *path)
{
    struct raw *c = raw_connect(p->port);
    raw_sendf(c, "GET http://127.0.0.1:%d%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", o->port, path,
              o->port);
    return c;
}

/* Polls /limits until it contains `text`; returns the last body (malloc'd). */
static char *limits_with(struct proxy *p, const char *text, const char *auth)
{
    uint64_t deadline = now_ms() + 5000;
    for (;;) {
        struct fetch_res rs;
        proxy_admin_fetch(p, NULL, "/limits", auth, &rs);
        ck_assert_int_eq(rs.status, 200);
        char *body = strdup(rs.body != NULL ? rs.body : "");
        fetch_free(&rs);
        if (strstr(body, text) != NULL || now_ms() > deadline)
            return body;
        free(body);
        sleep_ms(20);
    }
}

static void state_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", harness_tmpdir(), name);
}

#define REJECT_RULE                                                                                \
    "state_file: %s\n"                                                                             \
    "rate_limits:\n  - name: daily\n    key: global\n    limit: 3\n    window: 1m\n"               \
    "    over_limit: reject\n"

/* ---- state_file ------------------------------------------------------------------------------ */

START_TEST(test_full_window_survives_restart)
{
    char path[512];
    state_path(path, sizeof path, "windows-reject");
    unlink(path);
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf(REJECT_RULE, path);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(origin_status_via(p, o, "/bytes/1"), 200);
    ck_assert_int_eq(origin_status_via(p, o, "/bytes/1"), 429);
    proxy_stop(p); /* SIGTERM: the graceful stop writes the file */
    ck_assert_msg(access(path, R_OK) == 0, "no state file at %s after the stop", path);

    p = proxy_startf(REJECT_RULE, path);
    ck_assert_msg(proxy_log_contains(p, "state_file: restored 1 windows (3 entries)"), "log:\n%s",
                  proxy_log_tail(p, 1500));
    ck_assert_int_eq(origin_status_via(p, o, "/bytes/1"),
                     429); /* as if there had been no restart */
    proxy_stop(p);

    /* the control: the same restart without the file forgets the window */
    p = proxy_start("rate_limits:\n  - name: daily\n    key: global\n    limit: 3\n"
                    "    window: 1m\n    over_limit: reject\n");
    ck_assert_int_eq(origin_status_via(p, o, "/bytes/1"), 200);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* A delay rule: after the restart the next request is held, not sent at once. */
START_TEST(test_delay_window_survives_restart)
{
    char path[512];
    state_path(path, sizeof path, "windows-delay");
    unlink(path);
    static const char yaml[] = "state_file: %s\n"
                               "rate_limits:\n  - name: slow\n    key: global\n    limit: 1\n"
                               "    window: 1m\n    over_limit: delay\n    max_delay: 2m\n";
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf(yaml, path);
    ck_assert_int_eq(origin_status_via(p, o, "/bytes/1"), 200);
    proxy_stop(p);
    p = proxy_startf(yaml, path);
    struct raw *c = send_and_leave(p, o, "/bytes/1");
    char *json = limits_with(p, "\"held\":1", NULL);
    ck_assert_msg(strstr(json, "\"held\":1") != NULL, "not held after the restart: %s", json);
    ck_assert_msg(raw_pending(c, 300) == 0, "the request was answered at once");
    free(json);
    raw_close(c);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* An origin's 429 with Retry-After: 60 pauses the key; after a restart with the same file the next
 * request is still refused by rlproxy, and the origin never sees it (its /flaky would answer 200
 * to a second request). */
START_TEST(test_origin_pause_survives_restart)
{
    char path[512];
    state_path(path, sizeof path, "windows-learned");
    unlink(path);
    static const char yaml[] = "state_file: %s\nretry:\n  attempts: 1\n"
                               "rate_limits:\n  - name: api\n    key: global\n    limit: 1000\n"
                               "    window: 1m\n    over_limit: reject\n";
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf(yaml, path);
    ck_assert_int_eq(origin_status_via(p, o, "/flaky?key=lp&fail=1&status=429&retry_after=60"),
                     429);
    proxy_stop(p);
    p = proxy_startf(yaml, path);
    ck_assert_msg(proxy_log_contains(p, "and 1 learned limits"), "log:\n%s",
                  proxy_log_tail(p, 1500));
    ck_assert_int_eq(origin_status_via(p, o, "/flaky?key=lp"), 429);
    ck_assert_int_eq(origin_key_count(o, "lp"), 1);
    proxy_stop_with_origin(p, o);
}
END_TEST

static void start_with_bad_file(struct origin *o, const char *path, const char *expect)
{
    struct proxy *p = proxy_startf(REJECT_RULE, path);
    ck_assert_msg(proxy_log_contains(p, expect) &&
                      proxy_log_contains(p, "starting with empty windows"),
                  "expected a warning with \"%s\"; log:\n%s", expect, proxy_log_tail(p, 1500));
    ck_assert_int_eq(origin_status_via(p, o, "/bytes/1"), 200);
    ck_assert(proxy_alive(p));
    proxy_stop(p);
}

START_TEST(test_corrupt_or_truncated_file_is_an_empty_start)
{
    char path[512];
    state_path(path, sizeof path, "windows-bad");
    struct origin *o = origin_start(0);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("this is not a state file\n\x01\x02\xff", f);
    fclose(f);
    start_with_bad_file(o, path, "truncated");

    /* a real file, full, then cut short by one byte and then corrupted in its middle */
    unlink(path);
    struct proxy *p = proxy_startf(REJECT_RULE, path);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(origin_status_via(p, o, "/bytes/1"), 200);
    proxy_stop(p);
    size_t len;
    char *text = read_file(path, &len);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(truncate(path, (off_t)len - 1), 0);
    start_with_bad_file(o, path, "truncated");
    text[len / 2] ^= 0x01;
    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fwrite(text, 1, len, f);
    fclose(f);
    start_with_bad_file(o, path, "checksum mismatch");
    free(text);
    origin_stop(o);
}
END_TEST

/* A file that cannot be written (its directory is missing) is a warning, not a failed stop. */
START_TEST(test_unwritable_file_is_a_warning)
{
    char path[512];
    state_path(path, sizeof path, "no-such-dir/windows");
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf(REJECT_RULE, path);
    ck_assert(proxy_log_contains(p, "does not exist yet; starting with empty windows"));
    ck_assert_int_eq(origin_status_via(p, o, "/bytes/1"), 200);
    char *log_path = strdup(p->log_path);
    proxy_stop(p); /* fails the test unless rlproxy exits 0 */
    char *log = read_file(log_path, NULL);
    ck_assert_ptr_nonnull(log);
    ck_assert_msg(strstr(log, "warn: state_file: ") != NULL && strstr(log, ".tmp: open: ") != NULL,
                  "no warning about the state file:\n%s", log);
    free(log);
    free(log_path);
    origin_stop(o);
}
END_TEST

/* ---- /limits and reset --------------------------------------------------------------------- */

#define HOLD_RULE                                                                                  \
    "rate_limits:\n  - name: api\n    key: client+host\n    limit: 1\n    window: 10s\n"           \
    "    over_limit: delay\n"

START_TEST(test_limits_shows_held_request_and_reset_clears)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, HOLD_RULE);
    ck_assert_int_eq(origin_status_via(p, o, "/bytes/1"), 200);
    struct raw *c = send_and_leave(p, o, "/bytes/1");
    char *json = limits_with(p, "\"held\":1,\"reset_ms\"", NULL);
    ck_assert_msg(strstr(json, "{\"name\":\"api\",\"key\":\"client+host\",\"limit\":1,") != NULL,
                  "%s", json);
    ck_assert_msg(strstr(json, "{\"key\":\"127.0.0.1 127.0.0.1\",\"used\":1,\"limit\":1,"
                               "\"held\":1,") != NULL,
                  "no held key in /limits: %s", json);
    free(json);
    raw_close(c); /* the held request goes away: its reservation is given back */

    ck_assert_int_eq(proxy_admin_status(p, "POST", "/limits/api/reset?key=nobody", NULL), 404);
    ck_assert_int_eq(proxy_admin_status(p, "POST", "/limits/nope/reset?key=x", NULL), 404);
    ck_assert_int_eq(proxy_admin_status(p, "POST", "/limits/api/reset", NULL), 400);
    ck_assert_int_eq(proxy_admin_status(p, NULL, "/limits/api/reset?key=x", NULL), 405);
    ck_assert_int_eq(proxy_admin_status(p, "PUT", "/limits", NULL), 405);
    /* the window is full (one admitted 10 s window): the next request would wait ~10 s */
    ck_assert_int_eq(
        proxy_admin_status(p, "POST", "/limits/api/reset?key=127.0.0.1+127.0.0.1", NULL), 200);
    uint64_t start = now_ms();
    ck_assert_int_eq(origin_status_via(p, o, "/bytes/1"), 200);
    ck_assert_msg(now_ms() - start < 5000, "the request after a reset waited %llu ms",
                  (unsigned long long)(now_ms() - start));
    ck_assert(proxy_log_contains(p, "admin: window of rule api reset for key 127.0.0.1 127.0.0.1"));
    proxy_stop_with_origin(p, o);
}
END_TEST

/* A key taken from the request (a host name here) is text in the JSON, escaped, whatever it
 * holds; the page shows it through textContent only. */
START_TEST(test_limits_escapes_keys)
{
    struct origin *o;
    struct proxy *p =
        proxy_start_with_origin(&o, 0,
                                "rate_limits:\n  - name: hosts\n    key: host\n    limit: 5\n"
                                "    window: 10s\n");
    struct raw *c = raw_connect(p->port);
    raw_sendf(c, "GET http://127.0.0.1:%d/bytes/1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", o->port,
              o->port);
    struct http_response r;
    ck_assert_int_eq(raw_read_response(c, &r, 0, T_MS), 0);
    http_response_free(&r);
    raw_close(c);
    char *json = limits_with(p, "\"key\":\"127.0.0.1\"", NULL);
    ck_assert_msg(strstr(json, "\"key\":\"127.0.0.1\",\"used\":1,\"limit\":5") != NULL, "%s", json);
    free(json);
    struct fetch_res rs;
    proxy_admin_fetch(p, NULL, "/", NULL, &rs);
    ck_assert_int_eq(rs.status, 200);
    ck_assert_ptr_nonnull(strstr(fetch_header(&rs, "Content-Type", 0), "text/html"));
    ck_assert_ptr_nonnull(strstr(rs.body, "textContent"));
    ck_assert_ptr_null(strstr(rs.body, "innerHTML"));
    ck_assert_ptr_null(strstr(rs.body, "src=")); /* no external script, image or frame */
    ck_assert_ptr_null(strstr(rs.body, "https://"));
    fetch_free(&rs);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- admin.token ------------------------------------------------------------------------------
 */

START_TEST(test_token_required_everywhere_but_the_page)
{
    struct proxy *p =
        proxy_start("admin:\n  listen: [\"127.0.0.1:0\"]\n  token: \"t0ken-42\"\n" HOLD_RULE);
    static const char *const paths[] = {"/limits", "/metrics", "/healthz"};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_int_eq(proxy_admin_status(p, NULL, paths[i], NULL), 401);
        ck_assert_int_eq(proxy_admin_status(p, NULL, paths[i], "Bearer t0ken-4"), 401);
        ck_assert_int_eq(proxy_admin_status(p, NULL, paths[i], "Bearer t0ken-42x"), 401);
        ck_assert_int_eq(proxy_admin_status(p, NULL, paths[i], "Basic dDBrZW4tNDI="), 401);
        ck_assert_int_eq(proxy_admin_status(p, NULL, paths[i], "Bearer t0ken-42"), 200);
    }
    ck_assert_int_eq(proxy_admin_status(p, "POST", "/limits/api/reset?key=x", NULL), 401);
    ck_assert_int_eq(proxy_admin_status(p, "POST", "/limits/api/reset?key=x", "Bearer t0ken-42"),
                     404);
    ck_assert_int_eq(proxy_admin_status(p, NULL, "/", NULL), 200); /* holds no data */
    proxy_stop(p);
}
END_TEST

START_TEST(test_non_loopback_admin_needs_a_token)
{
    char path[512];
    state_path(path, sizeof path, "exposed.yaml");
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("admin:\n  listen: [\"0.0.0.0:9128\"]\n", f);
    fclose(f);
    struct cmd_result r;
    char *const args[] = {"-t", "-c", path, NULL};
    run_rlproxy(args, T_MS, &r);
    ck_assert_int_ne(r.exit_code, 0);
    char want[600];
    snprintf(want, sizeof want, "%s:2:11: admin.listen: 0.0.0.0:9128 is not a loopback address",
             path);
    ck_assert_msg(strstr(r.err, want) != NULL, "stderr: %s", r.err);
    cmd_result_free(&r);
    f = fopen(path, "w");
    fputs("admin:\n  listen: [\"0.0.0.0:9128\"]\n  token: \"x\"\n", f);
    fclose(f);
    run_rlproxy(args, T_MS, &r);
    ck_assert_msg(r.exit_code == 0, "stderr: %s", r.err);
    cmd_result_free(&r);
}
END_TEST

/* ---- the page in a browser ---------------------------------------------------------------------
 */

static int have_chromium(void)
{
    struct cmd_result r;
    char *const which[] = {"sh", "-c", "command -v chromium", NULL};
    run_cmd(which, NULL, T_MS, &r);
    int have = r.exit_code == 0;
    cmd_result_free(&r);
    return have;
}

START_TEST(test_page_in_headless_chromium)
{
    if (harness_tool_missing(have_chromium(), "test_page_in_headless_chromium", "chromium",
                             "chromium"))
        return;
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, HOLD_RULE);
    ck_assert_int_eq(origin_status_via(p, o, "/bytes/1"), 200);
    struct raw *c = send_and_leave(p, o, "/bytes/1");
    free(limits_with(p, "\"held\":1,\"reset_ms\"", NULL));
    char profile[512], url[128];
    state_path(profile, sizeof profile, "chromium-profile");
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", proxy_admin_port(p));
    char user_data[600];
    snprintf(user_data, sizeof user_data, "--user-data-dir=%s", profile);
    /* --proxy-server=127.0.0.1:9 (discard, closed) keeps Chromium's own background traffic off
     * any network; 127.0.0.1 itself is never proxied */
    char *const argv[] = {"chromium",
                          "--headless",
                          "--no-sandbox",
                          "--disable-gpu",
                          "--disable-quic",
                          "--no-first-run",
                          "--disable-background-networking",
                          "--disable-component-update",
                          "--disable-sync",
                          user_data,
                          "--proxy-server=http://127.0.0.1:9",
                          "--virtual-time-budget=3000",
                          "--dump-dom",
                          url,
                          NULL};
    const char *const env[] = {"HOME=/tmp", NULL};
    struct cmd_result r;
    run_cmd(argv, env, 60000, &r);
    ck_assert_msg(r.exit_code == 0, "chromium exit %d: %.1500s", r.exit_code, r.err);
    /* the whole DOM for the log; messages of Check are short */
    fprintf(stderr, "--- chromium --dump-dom ---\n%s\n---\n", r.out);
    ck_assert_msg(strstr(r.out, "<section data-rule=\"api\" data-held=\"1\">") != NULL,
                  "the page does not show rule api with a held request (the DOM is in the log)");
    ck_assert_msg(strstr(r.out, "data-key=\"127.0.0.1 127.0.0.1\" data-held=\"1\"") != NULL,
                  "the page does not show the held key (the DOM is in the log)");
    ck_assert_msg(strstr(r.out, "<h2>api</h2>") != NULL, "no rule heading (the DOM is in the log)");
    ck_assert_msg(strstr(r.out, "<p id=\"status\">updated ") != NULL,
                  "the page did not say it read /limits (the DOM is in the log)");
    cmd_result_free(&r);
    raw_close(c);
    proxy_stop_with_origin(p, o);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("live_view");
    TCase *tc = harness_tcase("live_view", 120);
    tcase_add_test(tc, test_full_window_survives_restart);
    tcase_add_test(tc, test_delay_window_survives_restart);
    tcase_add_test(tc, test_origin_pause_survives_restart);
    tcase_add_test(tc, test_corrupt_or_truncated_file_is_an_empty_start);
    tcase_add_test(tc, test_unwritable_file_is_a_warning);
    tcase_add_test(tc, test_limits_shows_held_request_and_reset_clears);
    tcase_add_test(tc, test_limits_escapes_keys);
    tcase_add_test(tc, test_token_required_everywhere_but_the_page);
    tcase_add_test(tc, test_non_loopback_admin_needs_a_token);
    tcase_add_test(tc, test_page_in_headless_chromium);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
