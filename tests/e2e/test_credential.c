/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_credential.c — rate-limit keys by credential (issue 16, `key: header:NAME`), end to end
 * through a real rlproxy to the real test origin with libcurl clients:
 *   1. two API tokens through one rule each get their own window: one token exhausted gets 429
 *      while the other still gets 200; the header name is matched without case; a request without
 *      the header and one with an empty value share the empty value's window; the origin still
 *      receives the token as sent;
 *   2. the token appears nowhere rlproxy writes: not in the 429 (body or headers), the access log
 *      (JSON), the error log at level debug, or /metrics;
 *   3. a reload keeps each token's window (the hashing key is the process's, not the config's);
 *   4. host+header:NAME counts each host and token pair.
 * No timing decides a result: every window is an hour long. */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RELOAD_WAIT_MS 5000

/* Tokens as an API would issue them; the marker makes any leak easy to find in any output. */
#define TOKEN_A "Bearer tokA-LEAKMARK-7f3c9a1e5b2d4c6e"
#define TOKEN_B "Bearer tokB-LEAKMARK-0a1b2c3d4e5f6a7b"
#define TOKEN_C "Bearer tokC-LEAKMARK-99aa88bb77cc66dd"
#define LEAK_MARK "LEAKMARK"

static void access_path(char *buf, size_t len)
{
    snprintf(buf, len, "%s/access-%d-credential.log", harness_tmpdir(), (int)getpid());
}

/* GET path through the proxy with one extra header line (NULL: none); the status. The body and
 * headers of the answer are checked not to hold the marker. */
static long get_with(struct proxy *p, const struct origin *o, const char *path, const char *header)
{
    char url[256];
    const char *headers[] = {header, NULL};
    struct fetch_req rq = {.url = origin_url(o, path, url, sizeof url),
                           .proxy_port = p->port,
                           .headers = header != NULL ? headers : NULL};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK, "GET %s: %s", path, rs.err);
    long status = rs.status;
    ck_assert_msg(rs.body == NULL || strstr(rs.body, LEAK_MARK) == NULL || status == 200,
                  "the %ld answer holds the token: %s", status, rs.body);
    for (size_t i = 0; i < rs.nheaders && status != 200; i++)
        ck_assert_msg(strstr(rs.headers[i].value, LEAK_MARK) == NULL, "%ld answer: %s: %s", status,
                      rs.headers[i].name, rs.headers[i].value);
    fetch_free(&rs);
    return status;
}

/* `n` GETs that must all get `want` */
static void expect(struct proxy *p, const struct origin *o, const char *path, const char *header,
                   int n, long want, const char *what)
{
    for (int i = 0; i < n; i++) {
        long status = get_with(p, o, path, header);
        ck_assert_msg(status == want, "%s, request %d: %ld, want %ld", what, i + 1, status, want);
    }
}

/* Appends `more` to the running config, SIGHUPs, and waits until the worker serves the new config:
 * a GET of probe_path carries the RateLimit-Policy of rule "probe", which only the new config has.
 */
static void reload_adding(struct proxy *p, const struct origin *o, const char *more,
                          const char *probe_path)
{
    size_t len = 0;
    char *old = read_file(p->conf_path, &len);
    ck_assert_ptr_nonnull(old);
    char *yaml = NULL;
    ck_assert(asprintf(&yaml, "%s%s", old, more) > 0);
    free(old);
    size_t before = proxy_log_count(p, "configuration reloaded from ");
    write_text(p->conf_path, yaml);
    free(yaml);
    ck_assert_msg(kill(p->pid, SIGHUP) == 0, "kill -HUP: %s", strerror(errno));
    uint64_t deadline = now_ms() + RELOAD_WAIT_MS;
    while (proxy_log_count(p, "configuration reloaded from ") == before) {
        ck_assert_msg(!proxy_log_contains(p, "reload failed"), "reload failed:\n%s",
                      proxy_log_tail(p, 1500));
        ck_assert_msg(now_ms() < deadline && proxy_alive(p), "no reload:\n%s",
                      proxy_log_tail(p, 1500));
        sleep_ms(5);
    }
    for (;;) {
        char url[256];
        struct fetch_req rq = {.url = origin_url(o, probe_path, url, sizeof url),
                               .proxy_port = p->port};
        struct fetch_res rs;
        fetch(&rq, &rs);
        const char *policy = fetch_header(&rs, "RateLimit-Policy", 0);
        int seen = policy != NULL && strstr(policy, "\"probe\"") != NULL;
        fetch_free(&rs);
        if (seen)
            break;
        ck_assert_msg(now_ms() < deadline, "the worker never served the reloaded config");
        sleep_ms(5);
    }
}

static char *metrics_text(struct proxy *p)
{
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/metrics", p->admin_port);
    struct fetch_req rq = {.url = url};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200, "/metrics: %s (%ld)", rs.err, rs.status);
    char *text = strdup(rs.body);
    fetch_free(&rs);
    ck_assert_ptr_nonnull(text);
    return text;
}

START_TEST(test_tokens_get_own_windows)
{
    char log_path[600];
    access_path(log_path, sizeof log_path);
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("log:\n"
                                   "  level: debug\n"
                                   "  access: \"%s\"\n"
                                   "  access_format: json\n"
                                   "  access_buffer: 0\n" /* read while it runs */
                                   "rate_limits:\n"
                                   "  - name: tokens\n"
                                   "    match: { path_prefix: \"/bytes/1/api\" }\n"
                                   "    key: header:Authorization\n"
                                   "    limit: 3\n"
                                   "    window: 1h\n",
                                   log_path);
    /* 1. each token its own window; the name in any case */
    expect(p, o, "/bytes/1/api/a", "Authorization: " TOKEN_A, 2, 200, "token A");
    expect(p, o, "/bytes/1/api/a", "authorization: " TOKEN_A, 1, 200, "token A, lower-case name");
    expect(p, o, "/bytes/1/api/a", "AUTHORIZATION: " TOKEN_A, 2, 429, "token A exhausted");
    expect(p, o, "/bytes/1/api/b", "Authorization: " TOKEN_B, 3, 200, "token B while A is out");
    expect(p, o, "/bytes/1/api/b", "Authorization: " TOKEN_B, 1, 429, "token B exhausted");
    expect(p, o, "/bytes/1/api/a", "Authorization: " TOKEN_A, 1, 429, "token A still out");
    /* no header, and an empty value ("Name;" is curl's way to send one): one window */
    expect(p, o, "/bytes/1/api/none", NULL, 2, 200, "no header");
    expect(p, o, "/bytes/1/api/none", "Authorization;", 1, 200, "empty value");
    expect(p, o, "/bytes/1/api/none", NULL, 1, 429, "no header, after 3 without a token");
    /* the origin gets the credential as sent (outside the rule: /headers) */
    char url[256];
    const char *headers[] = {"Authorization: " TOKEN_C, NULL};
    struct fetch_req rq = {.url = origin_url(o, "/headers", url, sizeof url),
                           .proxy_port = p->port,
                           .headers = headers};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200, "/headers: %s (%ld)", rs.err, rs.status);
    ck_assert_msg(strstr(rs.body, TOKEN_C) != NULL, "the origin did not get the token: %s",
                  rs.body);
    fetch_free(&rs);

    /* 2. nowhere in what rlproxy writes */
    long long rejected = proxy_metric(p, "rlproxy_limiter_decisions_total{rule=\"tokens\","
                                         "decision=\"rejected\"}");
    ck_assert_int_eq(rejected, 5);
    ck_assert_int_eq(proxy_metric(p, "rlproxy_limiter_keys{rule=\"tokens\"}"), 3);
    char *metrics = metrics_text(p);
    ck_assert_msg(strstr(metrics, LEAK_MARK) == NULL, "/metrics holds a token:\n%s", metrics);
    free(metrics);
    size_t len = 0;
    char *access = read_file(log_path, &len);
    ck_assert_ptr_nonnull(access);
    ck_assert_msg(text_count(access, "/bytes/1/api/") == 14, "access log:\n%s", access);
    ck_assert_msg(text_count(access, "429") >= 5, "access log:\n%s", access);
    ck_assert_msg(strstr(access, LEAK_MARK) == NULL, "the access log holds a token:\n%s", access);
    free(access);
    ck_assert_msg(!proxy_log_contains(p, LEAK_MARK), "the log holds a token:\n%s",
                  proxy_log_tail(p, 3000));

    /* 3. a reload keeps the windows: the same token has the same key */
    reload_adding(p, o,
                  "  - name: probe\n"
                  "    match: { path_prefix: \"/bytes/1/probe\" }\n"
                  "    limit: 1000\n"
                  "    window: 1s\n"
                  "    headers: true\n",
                  "/bytes/1/probe");
    expect(p, o, "/bytes/1/api/a", "Authorization: " TOKEN_A, 1, 429, "token A after the reload");
    expect(p, o, "/bytes/1/api/c", "Authorization: " TOKEN_C, 3, 200, "token C after the reload");
    ck_assert_msg(!proxy_log_contains(p, LEAK_MARK), "the log holds a token:\n%s",
                  proxy_log_tail(p, 3000));
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_host_and_token)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0,
                                              "rate_limits:\n"
                                              "  - name: pairs\n"
                                              "    key: host+header:X-Api-Key\n"
                                              "    limit: 1\n"
                                              "    window: 1h\n");
    /* 127.0.0.1 and localhost are two hosts to the limiter, the same origin to the test */
    char url[256];
    snprintf(url, sizeof url, "http://localhost:%d/bytes/1", o->port);
    const char *headers[] = {"X-Api-Key: " TOKEN_A, NULL};
    struct fetch_req rq = {.url = url, .proxy_port = p->port, .headers = headers};
    struct fetch_res rs;
    expect(p, o, "/bytes/1", "X-Api-Key: " TOKEN_A, 1, 200, "127.0.0.1, token A");
    expect(p, o, "/bytes/1", "X-Api-Key: " TOKEN_A, 1, 429, "127.0.0.1, token A again");
    expect(p, o, "/bytes/1", "X-Api-Key: " TOKEN_B, 1, 200, "127.0.0.1, token B");
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200, "localhost, token A: %s (%ld)", rs.err,
                  rs.status);
    fetch_free(&rs);
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 429, "localhost, token A again: %s (%ld)",
                  rs.err, rs.status);
    fetch_free(&rs);
    ck_assert_int_eq(proxy_metric(p, "rlproxy_limiter_keys{rule=\"pairs\"}"), 3);
    proxy_stop_with_origin(p, o);
}
END_TEST

HARNESS_MAIN("credential", 60, test_tokens_get_own_windows, test_host_and_token)
