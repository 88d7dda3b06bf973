/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_retry.c — retries with backoff, the upstream's Retry-After, and "upstream says stop"
 * (issue 5), end to end against tests/origin/origin.py's /flaky endpoint: the first N requests
 * of a key fail (a status, a reset or a hang), later ones answer 200 with the sha256 of the body
 * they got; /count tells how many requests of a key reached the origin and when.
 *
 * Every test starts its own rlproxy: the origin pauses and the retry budget are process-wide.
 * Timing checks use `jitter: none`; `budget: 100%` unless the budget is what is tested. */
#include "harness.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define T_MS 15000L

static struct fixture up(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static struct fixture up(const char *fmt, ...)
{
    struct fixture f;
    char *yaml = NULL;
    va_list ap;
    va_start(ap, fmt);
    ck_assert(vasprintf(&yaml, fmt, ap) >= 0);
    va_end(ap);
    f.o = origin_start(0);
    f.p = proxy_start(yaml);
    free(yaml);
    return f;
}

/* retry settings with the defaults the brief gives, jitter off and no budget in the way */
#define RETRY_YAML(attempts, base)                                                                 \
    "retry:\n  attempts: " #attempts "\n  base_delay: " base "\n  max_delay: 10s\n"                \
    "  jitter: none\n  budget: 100%%\n"

/* How late a timer may fire: 30 ms, more under valgrind (RLPROXY_QUICK) */
#define SLACK_MS (harness_quick() ? 250.0 : 30.0)

/* "http://HOST:PORT/flaky?QUERY" */
static const char *flaky_url(const struct fixture *f, const char *host, const char *query,
                             char *buf, size_t len)
{
    snprintf(buf, len, "http://%s:%d/flaky?%s", host, f->o->port, query);
    return buf;
}

/* ---- the origin's view -------------------------------------------------------------------------
 */

/* ---- the proxy's view --------------------------------------------------------------------------
 */

/* the limit= field */
static void line_limit(const char *line, char *out, size_t len)
{
    const char *a = strstr(line, " limit=");
    ck_assert_msg(a != NULL, "no limit= in %s", line);
    a += strlen(" limit=");
    size_t n = strcspn(a, " ");
    snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), a);
}

static void expect_attempts(struct proxy *p, const char *needle, int want)
{
    char *line = proxy_access_line(p, needle);
    ck_assert_msg(line_attempts(line) == want, "attempts=%d, want %d: %s", line_attempts(line),
                  want, line);
    free(line);
}

/* ---- requests ----------------------------------------------------------------------------------
 */

static void send_req(const struct fixture *f, const char *method, const char *url, const void *body,
                     size_t body_len, struct fetch_res *rs)
{
    struct fetch_req rq = {.url = url,
                           .method = method,
                           .proxy_port = f->p->port,
                           .body = body,
                           .body_len = body_len,
                           .timeout_ms = T_MS};
    fetch(&rq, rs);
    ck_assert_msg(rs->rc == CURLE_OK, "%s %s: curl error %d: %s", method ? method : "GET", url,
                  (int)rs->rc, rs->err);
}

static void get(const struct fixture *f, const char *url, struct fetch_res *rs)
{
    send_req(f, NULL, url, NULL, 0, rs);
}

/* method (NULL: GET) /flaky?query at the origin on 127.0.0.1 through the proxy, with body */
static void send_flaky(const struct fixture *f, const char *method, const char *query,
                       const void *body, size_t len, struct fetch_res *rs)
{
    char url[256];
    send_req(f, method, flaky_url(f, "127.0.0.1", query, url, sizeof url), body, len, rs);
}

static void get_flaky(const struct fixture *f, const char *query, struct fetch_res *rs)
{
    send_flaky(f, NULL, query, NULL, 0, rs);
}

/* Random bytes (xorshift, seeded) so a replay that starts at the wrong offset cannot pass */
static unsigned char *random_body(size_t len, uint64_t seed)
{
    unsigned char *b = malloc(len);
    ck_assert(b != NULL);
    uint64_t s = seed | 1;
    for (size_t i = 0; i < len; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        b[i] = (unsigned char)(s >> 24);
    }
    return b;
}

/* The 200 from /flaky: the body reached the origin whole, on the attempt expected */
static void expect_flaky_ok(const struct fetch_res *rs, const void *body, size_t len,
                            long long attempt, const char *what)
{
    ck_assert_msg(rs->status == 200, "%s: status %ld: %s", what, rs->status, rs->body);
    long long got_len = -1, got_attempt = -1;
    ck_assert_msg(json_get_int(rs->body, "length", &got_len) == 0 && got_len == (long long)len,
                  "%s: origin got %lld bytes of %zu: %s", what, got_len, len, rs->body);
    ck_assert_msg(json_get_int(rs->body, "attempt", &got_attempt) == 0 && got_attempt == attempt,
                  "%s: answered by attempt %lld, want %lld", what, got_attempt, attempt);
    char want[65];
    sha256_hex(body, len, want);
    char *sha = json_get_str(rs->body, "sha256");
    ck_assert_msg(sha != NULL && strcmp(sha, want) == 0,
                  "%s: the origin's sha256 of the final attempt is %s, the client sent %s", what,
                  sha ? sha : "(none)", want);
    ck_assert_msg(strcmp(rs->upload_sha256, want) == 0, "%s: the client sent %s, not %s", what,
                  rs->upload_sha256, want);
    free(sha);
}

/* ---- 1, 2: the schedule, and giving up ---------------------------------------------------------
 */

START_TEST(test_503_twice_then_200)
{
    struct fixture f = up(RETRY_YAML(3, "100ms"));
    long long retries0 = proxy_metric(f.p, "rlproxy_retries_total");
    ck_assert_msg(retries0 == 0, "rlproxy_retries_total starts at %lld", retries0);
    struct fetch_res rs;
    get_flaky(&f, "key=t1&fail=2", &rs);
    ck_assert_msg(rs.status == 200, "status %ld: %s", rs.status, rs.body);
    ck_assert_msg(strstr(rs.body, "\"attempt\":3") != NULL, "body: %s", rs.body);
    fetch_free(&rs);

    ck_assert_int_eq(origin_key_count(f.o, "t1"), 3);
    expect_attempts(f.p, "key=t1", 3);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_retries_total"), retries0 + 2);

    /* base_delay, then twice that, between the origin's arrivals */
    double t[8];
    ck_assert_uint_eq(origin_key_times(f.o, "t1", t, 8), 3);
    double gap1 = t[1] - t[0], gap2 = t[2] - t[1];
    printf("retry: 503x2 gaps %.1f ms, %.1f ms (want 100, 200)\n", gap1, gap2);
    ck_assert_msg(gap1 >= 100 - 30 && gap1 <= 100 + SLACK_MS, "first retry %.1f ms after, want 100",
                  gap1);
    ck_assert_msg(gap2 >= 200 - 30 && gap2 <= 200 + SLACK_MS,
                  "second retry %.1f ms after, want 200", gap2);
    ck_assert_msg(proxy_log_contains(f.p, "attempt 1 got 503, retrying in 100 ms") &&
                      proxy_log_contains(f.p, "attempt 2 got 503, retrying in 200 ms"),
                  "retry log lines missing:\n%s", proxy_log_tail(f.p, 2000));
    fixture_down(f);
}
END_TEST

/* jitter: full draws each delay from [0, min(max_delay, base * 2^(k-1))] */
START_TEST(test_full_jitter_bounds)
{
    struct fixture f = up("retry:\n  attempts: 3\n  base_delay: 100ms\n  max_delay: 10s\n"
                          "  jitter: full\n  budget: 100%%\n");
    enum { N = 5 }; /* 2 retries each: 10, the budget's floor (100% of 5 requests is less) */
    for (int i = 0; i < N; i++) {
        char url[256], q[64];
        snprintf(q, sizeof q, "key=j%d&fail=2", i);
        struct fetch_res rs;
        get(&f, flaky_url(&f, "127.0.0.1", q, url, sizeof url), &rs);
        ck_assert_msg(rs.status == 200, "status %ld: %s", rs.status, rs.body);
        fetch_free(&rs);
    }
    char *log = read_file(f.p->log_path, NULL);
    ck_assert(log != NULL);
    int seen[2] = {0, 0}, at_cap = 0, distinct = 0;
    long first = -1;
    for (const char *p = log; (p = strstr(p, "attempt ")) != NULL; p++) {
        int k = 0;
        long ms = -1;
        if (sscanf(p, "attempt %d got 503, retrying in %ld ms", &k, &ms) != 2)
            continue;
        ck_assert_msg(k == 1 || k == 2, "attempt %d retried with attempts: 3", k);
        long cap = k == 1 ? 100 : 200;
        ck_assert_msg(ms >= 0 && ms <= cap, "retry %d drawn %ld ms, outside [0, %ld]", k, ms, cap);
        seen[k - 1]++;
        at_cap += ms == cap;
        if (first < 0)
            first = ms;
        distinct += ms != first;
    }
    free(log);
    ck_assert_msg(seen[0] == N && seen[1] == N, "retry lines: %d first, %d second, want %d each",
                  seen[0], seen[1], N);
    /* 10 draws from a uniform range: all at the cap, or all alike, means no jitter */
    ck_assert_msg(at_cap < 2 * N && distinct > 0,
                  "jitter: full drew %d of %d at the cap, %d distinct", at_cap, 2 * N, distinct);
    fixture_down(f);
}
END_TEST

START_TEST(test_attempts_exhausted)
{
    struct fixture f = up(RETRY_YAML(2, "10ms"));
    struct fetch_res rs;
    get_flaky(&f, "key=t2&fail=5", &rs);
    ck_assert_msg(rs.status == 503, "status %ld: %s", rs.status, rs.body);
    /* the origin's own answer, from the last attempt */
    ck_assert_msg(strstr(rs.body, "flaky: attempt 2 fails with 503") != NULL, "body: %s", rs.body);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "t2"), 2);
    expect_attempts(f.p, "key=t2", 2);

    /* 502 is in the default list too; 500 is not */
    get_flaky(&f, "key=t2b&fail=1&status=502", &rs);
    ck_assert_msg(rs.status == 200, "502 then 200: status %ld: %s", rs.status, rs.body);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "t2b"), 2);
    get_flaky(&f, "key=t2c&fail=1&status=500", &rs);
    ck_assert_msg(rs.status == 500, "500 is not in retry.on: status %ld: %s", rs.status, rs.body);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "t2c"), 1);
    expect_attempts(f.p, "key=t2c", 1);
    fixture_down(f);
}
END_TEST

/* The response head reached the client, then the origin died mid-body: nothing is retried */
START_TEST(test_no_retry_after_head_sent)
{
    struct fixture f = up(RETRY_YAML(3, "10ms"));
    char url[256];
    struct fetch_req rq = {.url = origin_url(f.o, "/truncate", url, sizeof url),
                           .proxy_port = f.p->port,
                           .timeout_ms = T_MS};
    struct fetch_res rs;
    fetch(&rq, &rs);
    /* the head was out when the origin died: the client sees a failure, not a second try */
    ck_assert_msg(rs.rc != CURLE_OK && rs.rc != CURLE_OPERATION_TIMEDOUT,
                  "truncated upstream: curl %d, status %ld, %zu bytes", (int)rs.rc, rs.status,
                  rs.body_len);
    fetch_free(&rs);
    sleep_ms(200);
    char *log = origin_get(f.o, "/log");
    int n = 0;
    for (const char *p = log; (p = strstr(p, "\"target\":\"/truncate\"")) != NULL; p++)
        n++;
    free(log);
    ck_assert_msg(n == 1, "the origin saw /truncate %d times", n);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_retries_total"), 0);
    fixture_down(f);
}
END_TEST

/* ---- 3: Retry-After ----------------------------------------------------------------------------
 */

START_TEST(test_retry_after_seconds)
{
    struct fixture f = up(RETRY_YAML(3, "10ms"));
    struct fetch_res rs;
    uint64_t t0 = now_ms();
    get_flaky(&f, "key=ra1&fail=1&status=429&retry_after=1", &rs);
    uint64_t ms = now_ms() - t0;
    ck_assert_msg(rs.status == 200, "status %ld after %llu ms: %s\nlog:\n%s", rs.status,
                  (unsigned long long)ms, rs.body, proxy_log_tail(f.p, 1500));
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "ra1"), 2);
    double t[4];
    ck_assert_uint_eq(origin_key_times(f.o, "ra1", t, 4), 2);
    printf("retry: Retry-After: 1 -> retried after %.1f ms\n", t[1] - t[0]);
    ck_assert_msg(t[1] - t[0] >= 900 && t[1] - t[0] < 1300 + SLACK_MS,
                  "Retry-After: 1 retried after %.1f ms (backoff would be 10 ms)", t[1] - t[0]);
    ck_assert_msg(proxy_log_contains(f.p, "attempt 1 got 429, retrying in 1000 ms"), "log:\n%s",
                  proxy_log_tail(f.p, 1500));
    fixture_down(f);
}
END_TEST

START_TEST(test_retry_after_http_date)
{
    struct fixture f = up(RETRY_YAML(3, "10ms"));
    struct fetch_res rs;
    get_flaky(&f, "key=rad&fail=1&status=503&retry_after=date%2B2", &rs);
    ck_assert_msg(rs.status == 200, "status %ld: %s\nlog:\n%s", rs.status, rs.body,
                  proxy_log_tail(f.p, 1500));
    fetch_free(&rs);
    double t[4];
    ck_assert_uint_eq(origin_key_times(f.o, "rad", t, 4), 2);
    printf("retry: Retry-After: <date 2 s ahead> -> retried after %.1f ms\n", t[1] - t[0]);
    /* the date has whole seconds: 2 s ahead of a truncated now is 1 to 2 s away */
    ck_assert_msg(t[1] - t[0] >= 900 && t[1] - t[0] < 3500,
                  "Retry-After (HTTP-date ~2 s ahead) retried after %.1f ms", t[1] - t[0]);

    /* a date in the past means now */
    uint64_t t0 = now_ms();
    get_flaky(&f, "key=radp&fail=1&status=503&retry_after=date%2B-100", &rs);
    uint64_t ms = now_ms() - t0;
    ck_assert_msg(rs.status == 200, "past date: status %ld: %s", rs.status, rs.body);
    ck_assert_msg(ms < 800, "Retry-After in the past: waited %llu ms", (unsigned long long)ms);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "radp"), 2);
    fixture_down(f);
}
END_TEST

START_TEST(test_retry_after_above_max_delay)
{
    struct fixture f = up(RETRY_YAML(3, "10ms"));
    struct fetch_res rs;
    uint64_t t0 = now_ms();
    get_flaky(&f, "key=ra30&fail=1&status=429&retry_after=30", &rs);
    uint64_t ms = now_ms() - t0;
    ck_assert_msg(rs.status == 429, "status %ld: %s", rs.status, rs.body);
    ck_assert_msg(strstr(rs.body, "flaky: attempt 1 fails with 429") != NULL,
                  "not the origin's 429: %s", rs.body);
    const char *ra = fetch_header(&rs, "Retry-After", 0);
    ck_assert_msg(ra != NULL && strcmp(ra, "30") == 0, "Retry-After: %s", ra ? ra : "(none)");
    ck_assert_msg(ms < 1000, "the 429 took %llu ms", (unsigned long long)ms);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "ra30"), 1);
    expect_attempts(f.p, "key=ra30", 1);
    fixture_down(f);
}
END_TEST

/* ---- 4: upstream says stop ---------------------------------------------------------------------
 */

/* GET url through the proxy with one extra request header (e.g. a token) */
static void get_as(const struct fixture *f, const char *url, const char *header,
                   struct fetch_res *rs)
{
    const char *headers[] = {header, NULL};
    struct fetch_req rq = {.url = url, .proxy_port = f->p->port, .headers = headers,
                           .timeout_ms = T_MS};
    fetch(&rq, rs);
    ck_assert_msg(rs->rc == CURLE_OK, "GET %s: curl error %d: %s", url, (int)rs->rc, rs->err);
}

/* A request that matches no rule: its origin's 429 + Retry-After reaches its client and pauses
 * nobody (other clients of that host are not held for one client's answer). */
START_TEST(test_origin_429_without_rule_pauses_nobody)
{
    struct fixture f = up("retry:\n  attempts: 1\n");
    struct fetch_res rs;
    get_flaky(&f, "key=n&fail=1&status=429&retry_after=5", &rs);
    ck_assert_msg(rs.status == 429 && strstr(rs.body, "flaky:") != NULL,
                  "the origin's 429 should pass: %ld %s", rs.status, rs.body);
    const char *ra = fetch_header(&rs, "Retry-After", 0);
    ck_assert_msg(ra != NULL && strcmp(ra, "5") == 0, "Retry-After: %s", ra ? ra : "(none)");
    fetch_free(&rs);
    uint64_t t0 = now_ms();
    get_flaky(&f, "key=n&after=1", &rs);
    ck_assert_msg(rs.status == 200 && now_ms() - t0 < 1000,
                  "the same host right after another request's 429: %ld in %llu ms: %s", rs.status,
                  (unsigned long long)(now_ms() - t0), rs.body);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "n"), 2);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_upstream_pause_decisions_total"), 0);
    fixture_down(f);
}
END_TEST

/* With a rule, the 429's Retry-After pauses the rule's key: key header:Authorization pauses that
 * token alone; its next request is refused by rlproxy (the origin never sees it) until the pause
 * is over, while another token goes on at once. */
START_TEST(test_origin_pause_scoped_to_key)
{
    struct fixture f = up("retry:\n  attempts: 1\n"
                          "rate_limits:\n"
                          "  - name: tokens\n"
                          "    match: { host: \"127.0.0.1\" }\n"
                          "    key: header:Authorization\n"
                          "    limit: 1000\n"
                          "    window: 1s\n"
                          "    over_limit: reject\n");
    char url[256];
    struct fetch_res rs;
    const char *a = "Authorization: Bearer token-a", *b = "Authorization: Bearer token-b";
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_upstream_paused_keys{rule=\"tokens\"}"), 0);
    get_as(&f, flaky_url(&f, "127.0.0.1", "key=pa&fail=1&status=429&retry_after=2", url, sizeof url),
           a, &rs);
    uint64_t paused_at = now_ms();
    ck_assert_msg(rs.status == 429 && strstr(rs.body, "flaky:") != NULL,
                  "the origin's 429 should pass: %ld %s", rs.status, rs.body);
    fetch_free(&rs);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_upstream_paused_keys{rule=\"tokens\"}"), 1);
    long long decisions0 = proxy_metric(f.p, "rlproxy_upstream_pause_decisions_total");

    /* token A within 2 s: refused by the proxy, the origin never sees it */
    get_as(&f, flaky_url(&f, "127.0.0.1", "key=pa&after=1", url, sizeof url), a, &rs);
    ck_assert_msg(now_ms() - paused_at < 1500, "too slow to test the pause");
    ck_assert_msg(rs.status == 429, "during the pause: status %ld: %s", rs.status, rs.body);
    ck_assert_msg(strstr(rs.body, "flaky:") == NULL && strcasestr(rs.body, "pause") != NULL,
                  "not the proxy's pause answer: %s", rs.body);
    const char *ra = fetch_header(&rs, "Retry-After", 0);
    ck_assert_msg(ra != NULL && atoi(ra) >= 1 && atoi(ra) <= 2, "Retry-After: %s",
                  ra ? ra : "(none)");
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "pa"), 1);
    char *line = proxy_access_line(f.p, "key=pa&after=1");
    char limit[64];
    line_limit(line, limit, sizeof limit);
    ck_assert_msg(strcmp(limit, "reject:origin-pause") == 0, "limit=%s: %s", limit, line);
    free(line);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_upstream_pause_decisions_total"), decisions0 + 1);

    /* token B is another key: served at once */
    uint64_t t0 = now_ms();
    get_as(&f, flaky_url(&f, "127.0.0.1", "key=pb", url, sizeof url), b, &rs);
    ck_assert_msg(rs.status == 200 && now_ms() - t0 < 1000,
                  "token B during token A's pause: %ld in %llu ms: %s", rs.status,
                  (unsigned long long)(now_ms() - t0), rs.body);
    fetch_free(&rs);

    /* after 2 s token A is served again */
    while (now_ms() - paused_at < 2300)
        sleep_ms(50);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_upstream_paused_keys{rule=\"tokens\"}"), 0);
    get_as(&f, flaky_url(&f, "127.0.0.1", "key=pa&after=3", url, sizeof url), a, &rs);
    ck_assert_msg(rs.status == 200, "after the pause: status %ld: %s", rs.status, rs.body);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "pa"), 2);
    fixture_down(f);
}
END_TEST

START_TEST(test_origin_pause_holds_with_delay_rule)
{
    struct fixture f = up("retry:\n  attempts: 1\n"
                          "rate_limits:\n"
                          "  - name: held\n"
                          "    match: { host: \"localhost\" }\n"
                          "    key: host\n"
                          "    limit: 1000\n"
                          "    window: 1s\n"
                          "    over_limit: delay\n"
                          "    max_delay: 5s\n");
    char url[256];
    struct fetch_res rs;
    get(&f, flaky_url(&f, "localhost", "key=h&fail=1&status=503&retry_after=2", url, sizeof url),
        &rs);
    uint64_t paused_at = now_ms();
    ck_assert_msg(rs.status == 503 && strstr(rs.body, "flaky:") != NULL,
                  "the origin's 503 should pass: %ld %s", rs.status, rs.body);
    fetch_free(&rs);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_upstream_paused_keys{rule=\"held\"}"), 1);

    get(&f, flaky_url(&f, "localhost", "key=h&after=1", url, sizeof url), &rs);
    uint64_t held = now_ms() - paused_at;
    printf("retry: request held %llu ms by a 2 s origin pause\n", (unsigned long long)held);
    ck_assert_msg(rs.status == 200, "held request: status %ld: %s", rs.status, rs.body);
    ck_assert_msg(strstr(rs.body, "\"attempt\":2") != NULL, "body: %s", rs.body);
    ck_assert_msg(held >= 1800 && held < 3500, "held %llu ms for a 2 s pause",
                  (unsigned long long)held);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "h"), 2);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_upstream_paused_keys{rule=\"held\"}"), 0);
    ck_assert_msg(proxy_metric(f.p, "rlproxy_upstream_pause_decisions_total") >= 1,
                  "pause decisions not counted");

    char *line = proxy_access_line(f.p, "key=h&after=1");
    char limit[64];
    line_limit(line, limit, sizeof limit);
    long long wait = line_wait_ms(line);
    ck_assert_msg(strcmp(limit, "delay:origin-pause") == 0 && wait >= 1500,
                  "the held request's access line says limit=%s wait=%lldms: %s", limit, wait,
                  line);
    free(line);
    fixture_down(f);
}
END_TEST

/* ---- 5: methods and bodies ---------------------------------------------------------------------
 */

START_TEST(test_post_not_retried_by_default)
{
    struct fixture f = up(RETRY_YAML(3, "10ms"));
    struct fetch_res rs;
    send_flaky(&f, "POST", "key=post1&fail=1", "a=1", 3, &rs);
    ck_assert_msg(rs.status == 503, "POST: status %ld: %s", rs.status, rs.body);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "post1"), 1);
    expect_attempts(f.p, "key=post1", 1);

    /* HEAD and DELETE are in the default list */
    send_flaky(&f, "HEAD", "key=head1&fail=1", NULL, 0, &rs);
    ck_assert_msg(rs.status == 200, "HEAD: status %ld", rs.status);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "head1"), 2);
    send_flaky(&f, "DELETE", "key=del1&fail=1", NULL, 0, &rs);
    ck_assert_msg(rs.status == 200, "DELETE: status %ld: %s", rs.status, rs.body);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "del1"), 2);
    fixture_down(f);
}
END_TEST

START_TEST(test_post_replayed_when_listed)
{
    struct fixture f = up("retry:\n  attempts: 3\n  base_delay: 10ms\n  jitter: none\n"
                          "  methods: [GET, POST]\n  budget: 100%%\n");
    size_t len = 300 * 1024;
    unsigned char *body = random_body(len, 0x5eed);
    struct fetch_res rs;
    send_flaky(&f, "POST", "key=post2&fail=2", body, len, &rs);
    expect_flaky_ok(&rs, body, len, 3, "POST 300 KiB after two 503s");
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "post2"), 3);
    expect_attempts(f.p, "key=post2", 3);
    /* PUT is not in this list any more */
    send_flaky(&f, "PUT", "key=put0&fail=1", body, 100, &rs);
    ck_assert_msg(rs.status == 503, "PUT with methods [GET, POST]: status %ld", rs.status);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "put0"), 1);
    free(body);
    fixture_down(f);
}
END_TEST

START_TEST(test_put_replayed_by_default)
{
    struct fixture f = up(RETRY_YAML(3, "10ms"));
    size_t len = 300 * 1024;
    unsigned char *body = random_body(len, 0xfeed);
    char url[256];
    struct fetch_res rs;
    send_flaky(&f, "PUT", "key=put1&fail=1", body, len, &rs);
    expect_flaky_ok(&rs, body, len, 2, "PUT 300 KiB after a 503");
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "put1"), 2);

    /* chunked: the spool replays the decoded bytes, re-framed */
    struct fetch_req rq = {.url = flaky_url(&f, "127.0.0.1", "key=put2&fail=2", url, sizeof url),
                           .method = "PUT",
                           .proxy_port = f.p->port,
                           .body = body,
                           .body_len = len,
                           .chunked = 1,
                           .timeout_ms = T_MS};
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK, "chunked PUT: %s", rs.err);
    expect_flaky_ok(&rs, body, len, 3, "chunked PUT 300 KiB after two 503s");
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "put2"), 3);
    free(body);
    fixture_down(f);
}
END_TEST

/* ---- 6, 7, 8: failures without a status --------------------------------------------------------
 */

START_TEST(test_connect_error_retried_any_method)
{
    struct fixture f = up(RETRY_YAML(3, "10ms"));
    int port = harness_closed_port();
    char url[256];
    struct fetch_res rs;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/closed-get", port);
    get(&f, url, &rs);
    ck_assert_msg(rs.status == 502 && strcasestr(rs.body, "refused") != NULL, "GET: %ld %s",
                  rs.status, rs.body);
    fetch_free(&rs);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/closed-post", port);
    send_req(&f, "POST", url, "x=1", 3, &rs);
    ck_assert_msg(rs.status == 502 && strcasestr(rs.body, "refused") != NULL, "POST: %ld %s",
                  rs.status, rs.body);
    fetch_free(&rs);
    expect_attempts(f.p, "/closed-get", 3);
    expect_attempts(f.p, "/closed-post", 3);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_retries_total"), 4);
    ck_assert_msg(proxy_log_contains(f.p, "attempt 1 failed (connection refused") &&
                      proxy_log_contains(f.p, "attempt 2 failed (connection refused"),
                  "log:\n%s", proxy_log_tail(f.p, 2000));
    fixture_down(f);
}
END_TEST

/* A reset after the request was sent is "other": not in retry.on, so not retried. The proxy is
 * fresh, so its first upstream connection is new and libcurl has no reason to resend on its own. */
START_TEST(test_reset_after_send_not_retried)
{
    struct fixture f = up(RETRY_YAML(3, "10ms"));
    struct fetch_res rs;
    get_flaky(&f, "key=rst&fail=1&mode=reset", &rs);
    ck_assert_msg(rs.status == 502, "reset: status %ld: %s", rs.status, rs.body);
    ck_assert_msg(strstr(rs.body, "127.0.0.1") != NULL, "502 does not name the target: %s",
                  rs.body);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "rst"), 1);
    expect_attempts(f.p, "key=rst", 1);
    fixture_down(f);
}
END_TEST

/* libcurl resends by itself when a *reused* connection dies before the first response byte
 * (DESIGN "Upstream and retries"): POST included. The rule is that a non-idempotent
 * request that reached the origin is never sent twice. */
START_TEST(test_reset_on_reused_connection_post)
{
    /* one worker: one pool of upstream connections, so the second request reuses the first's */
    struct fixture f = up(RETRY_YAML(3, "10ms") "workers: 1\n");
    struct fetch_res rs;
    /* a pooled upstream connection to the origin */
    send_flaky(&f, "POST", "key=warm", "w", 1, &rs);
    ck_assert_int_eq(rs.status, 200);
    fetch_free(&rs);
    send_flaky(&f, "POST", "key=rstp&fail=1&mode=reset", "p=1", 3, &rs);
    long status = rs.status;
    fetch_free(&rs);
    long long seen = origin_key_count(f.o, "rstp");
    printf("retry: POST reset on a reused connection: client got %ld, origin saw it %lld times\n",
           status, seen);
    ck_assert_msg(seen == 1 && status == 502,
                  "a POST that reached the origin was sent %lld times (client got %ld)", seen,
                  status);
    fixture_down(f);
}
END_TEST

START_TEST(test_timeout_retried_get)
{
    struct fixture f = up(RETRY_YAML(3, "10ms") "timeouts:\n  upstream_response: 500ms\n");
    struct fetch_res rs;
    uint64_t t0 = now_ms();
    get_flaky(&f, "key=hang1&fail=1&mode=hang", &rs);
    uint64_t ms = now_ms() - t0;
    ck_assert_msg(rs.status == 200, "GET after a timeout: status %ld: %s", rs.status, rs.body);
    ck_assert_msg(ms >= 450 && ms < 3000, "GET took %llu ms", (unsigned long long)ms);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "hang1"), 2);
    expect_attempts(f.p, "key=hang1", 2);
    ck_assert_msg(proxy_log_contains(f.p, "attempt 1 failed (upstream timed out"), "log:\n%s",
                  proxy_log_tail(f.p, 1500));

    /* POST without a body: sent, so not retried */
    send_flaky(&f, "POST", "key=hang0&fail=1&mode=hang", NULL, 0, &rs);
    ck_assert_msg(rs.status == 504, "POST after a timeout: status %ld: %s", rs.status, rs.body);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "hang0"), 1);
    fixture_down(f);
}
END_TEST

/* The same with request bodies (Content-Length): PUT is retried, POST gets the 504 */
START_TEST(test_timeout_with_body)
{
    struct fixture f = up(RETRY_YAML(3, "10ms") "timeouts:\n  upstream_response: 500ms\n");
    char url[256];
    struct fetch_res rs;
    struct fetch_req rq = {
        .url = flaky_url(&f, "127.0.0.1", "key=hang2&fail=1&mode=hang", url, sizeof url),
        .method = "POST",
        .proxy_port = f.p->port,
        .body = "q=1",
        .body_len = 3,
        .timeout_ms = 4000};
    uint64_t t0 = now_ms();
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 504,
                  "POST with a body to an origin that never answers, upstream_response 500ms: "
                  "curl %d (%s), status %ld after %llu ms",
                  (int)rs.rc, rs.err, rs.status, (unsigned long long)(now_ms() - t0));
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "hang2"), 1);

    rq.url = flaky_url(&f, "127.0.0.1", "key=hang3&fail=1&mode=hang", url, sizeof url);
    rq.method = "PUT";
    t0 = now_ms();
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200,
                  "PUT with a body, first attempt hangs, upstream_response 500ms: curl %d (%s), "
                  "status %ld after %llu ms",
                  (int)rs.rc, rs.err, rs.status, (unsigned long long)(now_ms() - t0));
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "hang3"), 2);
    fixture_down(f);
}
END_TEST

/* ---- 9: bodies too big to keep -----------------------------------------------------------------
 */

START_TEST(test_body_over_max_body_not_retried)
{
    struct fixture f = up(RETRY_YAML(3, "10ms") "  max_body: 64KiB\n");
    size_t len = 1 << 20;
    unsigned char *body = random_body(len, 0xb16);
    struct fetch_res rs;
    send_flaky(&f, "PUT", "key=big1&fail=1", body, len, &rs);
    ck_assert_msg(rs.status == 503, "PUT 1 MiB, max_body 64 KiB: status %ld: %s", rs.status,
                  rs.body);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "big1"), 1);
    expect_attempts(f.p, "key=big1", 1);
    /* at the limit it is kept */
    send_flaky(&f, "PUT", "key=big2&fail=1", body, 64 * 1024, &rs);
    expect_flaky_ok(&rs, body, 64 * 1024, 2, "PUT of exactly max_body");
    fetch_free(&rs);
    free(body);
    fixture_down(f);
}
END_TEST

/* A big PUT from a generator, straight through libcurl: fetch() hashes what it uploads, which
 * would make the client, not the proxy, the slow part of a 2 GiB transfer. */
struct gen {
    uint64_t left, sent;
    uint64_t stall_at; /* >0: after this many bytes, stall once for 300 ms */
};

static size_t gen_read(char *buf, size_t size, size_t n, void *arg)
{
    static char zeros[256 * 1024];
    struct gen *g = arg;
    if (g->stall_at > 0 && g->sent >= g->stall_at) {
        g->stall_at = 0;
        sleep_ms(300);
    }
    size_t len = size * n;
    if (len > sizeof zeros)
        len = sizeof zeros;
    if (len > g->left)
        len = (size_t)g->left;
    memcpy(buf, zeros, len);
    g->left -= len;
    g->sent += len;
    return len;
}

static size_t discard_body(char *data, size_t size, size_t n, void *arg)
{
    (void)data;
    (void)arg;
    return size * n;
}

/* status, or 0 when curl failed; *sent: body bytes curl took */
static long huge_put(const struct fixture *f, const char *query, uint64_t size, uint64_t stall_at,
                     uint64_t *sent)
{
    char url[256], proxy[64];
    flaky_url(f, "127.0.0.1", query, url, sizeof url);
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", f->p->port);
    struct gen g = {size, 0, stall_at};
    CURL *h = curl_easy_init();
    ck_assert(h != NULL);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, proxy);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    curl_easy_setopt(h, CURLOPT_READFUNCTION, gen_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &g);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 120000L);
    uint64_t t0 = now_ms();
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    printf("retry: PUT %llu bytes (%s): curl %d, status %ld in %llu ms, %llu sent\n",
           (unsigned long long)size, query, (int)rc, status, (unsigned long long)(now_ms() - t0),
           (unsigned long long)g.sent);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    *sent = g.sent;
    return status;
}

/* The origin reads all 2 GiB, then answers 503: the spool overflowed long ago, no replay */
START_TEST(test_2gib_upload_not_retried)
{
    struct fixture f = up(RETRY_YAML(3, "10ms"));
    uint64_t size = harness_size(2ull << 30, 64ull << 20), sent = 0;
    long status = huge_put(&f, "key=huge&fail=1", size, 0, &sent);
    ck_assert_msg(status == 503, "status %ld", status);
    ck_assert_uint_eq(sent, size);
    ck_assert_int_eq(origin_key_count(f.o, "huge"), 1);
    expect_attempts(f.p, "key=huge", 1);
    assert_peak_rss_below(f.p, 64 * 1024, "after a 2 GiB PUT answered 503");
    fixture_down(f);
}
END_TEST

/* The origin answers 503 (Connection: close) after the head, before reading the body. The client
 * stalls for 300 ms after its first bytes, so what the proxy has passed on when the 503 comes fits
 * the spool; but the body (Content-Length) is far over max_body and must not be sent again. */
START_TEST(test_big_upload_early_503_not_retried)
{
    struct fixture f = up(RETRY_YAML(3, "10ms"));
    uint64_t size = harness_size(64ull << 20, 16ull << 20), sent = 0;
    long status = huge_put(&f, "key=early&fail=1&early=1", size, 64 * 1024, &sent);
    long long seen = origin_key_count(f.o, "early");
    ck_assert_msg(status == 503 && seen == 1,
                  "a %llu-byte PUT (max_body 1 MiB) was sent %lld times; the client got %ld",
                  (unsigned long long)size, seen, status);
    assert_peak_rss_below(f.p, 64 * 1024, "after a big PUT answered 503 early");
    fixture_down(f);
}
END_TEST

/* ---- 10: the budget ----------------------------------------------------------------------------
 */

START_TEST(test_budget_floor)
{
    struct fixture f = up("retry:\n  attempts: 3\n  base_delay: 1ms\n  jitter: none\n"
                          "  budget: 0%%\n");
    enum { N = 15 };
    for (int i = 0; i < N; i++) {
        struct fetch_res rs;
        get_flaky(&f, "key=bud&fail=1000", &rs);
        ck_assert_msg(rs.status == 503, "request %d: status %ld", i, rs.status);
        fetch_free(&rs);
    }
    long long seen = origin_key_count(f.o, "bud");
    ck_assert_msg(seen == N + 10,
                  "%d requests with budget 0%% reached the origin %lld times, want %d", N, seen,
                  N + 10);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_retries_total"), 10);
    fixture_down(f);
}
END_TEST

/* ---- 11: a retry is another admission ----------------------------------------------------------
 */

START_TEST(test_retry_passes_limiter)
{
    struct fixture f = up(RETRY_YAML(3, "10ms") "rate_limits:\n"
                                                "  - name: two\n"
                                                "    key: host\n"
                                                "    limit: 2\n"
                                                "    window: 1s\n"
                                                "    over_limit: reject\n");
    struct fetch_res rs;
    /* two admissions fit: the first attempt and its retry */
    get_flaky(&f, "key=lim0&fail=1", &rs);
    ck_assert_msg(rs.status == 200, "first attempt + retry within limit 2: %ld %s", rs.status,
                  rs.body);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "lim0"), 2);
    sleep_ms(1100); /* the window is empty again */

    /* one admission used, then a request whose retry would be the third */
    get_flaky(&f, "key=warm", &rs);
    ck_assert_int_eq(rs.status, 200);
    fetch_free(&rs);
    get_flaky(&f, "key=lim&fail=1", &rs);
    ck_assert_msg(rs.status == 429, "retry over the limit: status %ld: %s", rs.status, rs.body);
    ck_assert_msg(strstr(rs.body, "rate limit \"two\"") != NULL && strstr(rs.body, "flaky") == NULL,
                  "not the proxy's 429: %s", rs.body);
    ck_assert_msg(fetch_header(&rs, "RateLimit-Policy", 0) != NULL, "no RateLimit-Policy");
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "lim"), 1);
    char *line = proxy_access_line(f.p, "key=lim&fail=1");
    char limit[64];
    line_limit(line, limit, sizeof limit);
    ck_assert_msg(strcmp(limit, "reject:two") == 0 && line_attempts(line) == 2, "%s", line);
    free(line);
    fixture_down(f);
}
END_TEST

/* retry.deadline: an origin that answers 429 + Retry-After: 2 twice would hold the client 4 s;
 * with a 3 s deadline the second retry is not made and the client gets the origin's 429 (with
 * its Retry-After) at about 2 s. Without a deadline (0) the same request waits and gets 200. */
START_TEST(test_deadline_passes_the_last_answer)
{
    struct fixture f = up("retry:\n  deadline: 3s\n");
    struct fetch_res rs;
    uint64_t t0 = now_ms();
    get_flaky(&f, "key=dl&fail=2&status=429&retry_after=2", &rs);
    uint64_t took = now_ms() - t0;
    printf("retry: deadline 3 s, two 429s with Retry-After 2: %ld after %llu ms\n", rs.status,
           (unsigned long long)took);
    ck_assert_msg(rs.status == 429 && strstr(rs.body, "flaky:") != NULL,
                  "want the origin's second 429, got %ld: %s", rs.status, rs.body);
    const char *ra = fetch_header(&rs, "Retry-After", 0);
    ck_assert_msg(ra != NULL && strcmp(ra, "2") == 0, "Retry-After: %s", ra ? ra : "(none)");
    ck_assert_msg(took >= 1800 && took < 3000, "answered after %llu ms", (unsigned long long)took);
    fetch_free(&rs);
    ck_assert_int_eq(origin_key_count(f.o, "dl"), 2);
    expect_attempts(f.p, "key=dl", 2);
    fixture_down(f);

    f = up("retry:\n  deadline: 0s\n");
    t0 = now_ms();
    get_flaky(&f, "key=dn&fail=2&status=429&retry_after=2", &rs);
    took = now_ms() - t0;
    ck_assert_msg(rs.status == 200 && took >= 3800, "no deadline: %ld after %llu ms", rs.status,
                  (unsigned long long)took);
    fetch_free(&rs);
    fixture_down(f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("retry");
    unit_add_tcase(
        s, harness_tcase("retry", 30),
        UNIT_TESTS(
            test_503_twice_then_200, test_full_jitter_bounds, test_attempts_exhausted,
            test_no_retry_after_head_sent, test_retry_after_seconds, test_retry_after_http_date,
            test_retry_after_above_max_delay, test_origin_429_without_rule_pauses_nobody,
            test_origin_pause_scoped_to_key, test_deadline_passes_the_last_answer,
            test_origin_pause_holds_with_delay_rule, test_post_not_retried_by_default,
            test_post_replayed_when_listed, test_put_replayed_by_default,
            test_connect_error_retried_any_method, test_reset_after_send_not_retried,
            test_reset_on_reused_connection_post, test_timeout_retried_get, test_timeout_with_body,
            test_body_over_max_body_not_retried, test_budget_floor, test_retry_passes_limiter));
    unit_add_tcase(s, harness_tcase("big", 300),
                   UNIT_TESTS(test_2gib_upload_not_retried, test_big_upload_early_503_not_retried));
    return harness_run_suite(s);
}
