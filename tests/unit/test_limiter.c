/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_limiter.c — the sliding-window limiter (limiter.c) with an injected clock: exactness on
 * random arrivals, delay order and reservations, cancellation, rule matching, keys (header values
 * only as keyed hashes), expiry, the key cap, reload adoption and two threads on one key. No
 * sleeps. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "credential.h"
#include "limit_headers.h"
#include "limiter.h"

#include "limiter_fixture.h"
#include "unit.h"

#define MS 1000ULL /* microseconds */

static struct sockaddr_in client_addr(const char *ip)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(40000);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

/* A limiter over count rules with room for a million keys, as most tests want; the limiter keeps
 * the rules, not the config. */
static struct limiter *limiter_over(struct rate_rule *rules, size_t count)
{
    struct config c = limiter_fixture_config(rules, count, 1000000);
    return limiter_new(&c, NULL, NULL);
}

static enum limiter_verdict ask(struct limiter *l, const char *ip, const char *host,
                                const char *method, const char *path, uint64_t now,
                                struct limiter_decision *d)
{
    struct sockaddr_in a = client_addr(ip);
    struct limiter_request r = {.client = (struct sockaddr *)&a,
                                .user = "-",
                                .host = host,
                                .port = 80,
                                .method = method,
                                .path = path,
                                .path_len = strlen(path)};
    limiter_decide(l, &r, now, d);
    return d->verdict;
}

START_TEST(test_reject_exact)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("r", RATE_KEY_CLIENT, 5, 1000, RATE_OVER_REJECT)};
    struct limiter *l = limiter_over(rules, 1);
    struct limiter_decision d;
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(ask(l, "10.0.0.1", "h", "GET", "/", (uint64_t)i * 100 * MS, &d),
                         LIMITER_ADMIT);
        ck_assert_uint_eq(d.remaining, (uint32_t)(4 - i));
    }
    ck_assert_int_eq(ask(l, "10.0.0.1", "h", "GET", "/", 450 * MS, &d), LIMITER_REJECT);
    ck_assert_uint_eq(d.retry_after_us, 550 * MS); /* the first admission (t=0) leaves at 1000 */
    ck_assert_ptr_nonnull(d.reason);
    ck_assert_int_eq(ask(l, "10.0.0.1", "h", "GET", "/", 999 * MS, &d), LIMITER_REJECT);
    ck_assert_uint_eq(d.retry_after_us, 1 * MS);
    ck_assert_int_eq(ask(l, "10.0.0.1", "h", "GET", "/", 1000 * MS, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask(l, "10.0.0.1", "h", "GET", "/", 1000 * MS, &d), LIMITER_REJECT);
    ck_assert_uint_eq(d.retry_after_us, 100 * MS);
    /* another client has its own window */
    ck_assert_int_eq(ask(l, "10.0.0.2", "h", "GET", "/", 1000 * MS, &d), LIMITER_ADMIT);
    struct limiter_rule_stats st;
    limiter_rule_stats(l, 0, &st);
    ck_assert_uint_eq(st.admitted, 7);
    ck_assert_uint_eq(st.rejected, 3);
    limiter_unref(l);
}
END_TEST

/* Checks the invariant on a list of admission times (sorted): no half-open interval of length
 * window holds more than limit of them. */
static void assert_window_invariant(const uint64_t *t, size_t n, uint64_t window_us, uint32_t limit)
{
    size_t lo = 0;
    for (size_t hi = 0; hi < n; hi++) {
        while (t[hi] - t[lo] >= window_us)
            lo++;
        ck_assert_msg(hi - lo + 1 <= limit, "%zu admissions within %llu us ending at %llu",
                      hi - lo + 1, (unsigned long long)window_us, (unsigned long long)t[hi]);
    }
}

START_TEST(test_random_arrivals_never_exceed)
{
    const uint32_t limit = 50;
    const uint64_t window_ms = 1000;
    struct rate_rule rules[] = {
        limiter_fixture_rule("r", RATE_KEY_GLOBAL, limit, window_ms, RATE_OVER_REJECT)};
    struct limiter *l = limiter_over(rules, 1);
    unsigned seed = 12345;
    uint64_t now = 0;
    size_t cap = 100000, n = 0;
    uint64_t *admitted = malloc(cap * sizeof *admitted);
    /* 4x the limit for 20 windows: arrivals every 5 ms on average, bursty */
    while (now < 20 * window_ms * MS) {
        now += (uint64_t)(rand_r(&seed) % 10) * MS + (uint64_t)(rand_r(&seed) % 1000);
        struct limiter_decision d;
        if (ask(l, "10.0.0.1", "h", "GET", "/", now, &d) == LIMITER_ADMIT)
            admitted[n++] = now;
    }
    assert_window_invariant(admitted, n, window_ms * MS, limit);
    /* under sustained overload the admitted rate stays at the limit (>= 99%) */
    ck_assert_msg(n >= (size_t)(0.99 * 20 * limit), "admitted %zu of %u", n, 20 * limit);
    free(admitted);
    limiter_unref(l);
}
END_TEST

START_TEST(test_delay_reserves_in_order)
{
    struct rate_rule rules[] = {limiter_fixture_rule("d", RATE_KEY_HOST, 3, 1000, RATE_OVER_DELAY)};
    rules[0].max_delay_ms = 2500;
    rules[0].max_queue = 5;
    struct limiter *l = limiter_over(rules, 1);
    struct limiter_decision d;
    struct limiter_hold *holds[16];
    size_t held = 0;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(ask(l, "1.1.1.1", "API.example", "GET", "/", (uint64_t)i * 10 * MS, &d),
                         LIMITER_ADMIT);
    /* the next ones reserve the slots as they free: 1000, 1010, 1020, then 2000, 2010 */
    const uint64_t expect_at[] = {1000, 1010, 1020, 2000, 2010};
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(ask(l, "2.2.2.2", "api.example", "GET", "/", 100 * MS, &d),
                         LIMITER_DELAY);
        ck_assert_uint_eq(100 * MS + d.delay_us, expect_at[i] * MS);
        ck_assert_ptr_nonnull(d.hold);
        holds[held++] = d.hold;
    }
    /* the queue is full (max_queue 5) */
    ck_assert_int_eq(ask(l, "2.2.2.2", "api.example", "GET", "/", 100 * MS, &d), LIMITER_REJECT);
    struct limiter_rule_stats st;
    limiter_rule_stats(l, 0, &st);
    ck_assert_uint_eq(st.queued, 5);
    /* two are admitted, which makes room in the queue, but the next slot is 2020 ms: 1920 ms
     * away, under max_delay */
    limiter_hold_done(holds[0], 0);
    limiter_hold_done(holds[1], 0);
    ck_assert_int_eq(ask(l, "2.2.2.2", "api.example", "GET", "/", 100 * MS, &d), LIMITER_DELAY);
    ck_assert_uint_eq(100 * MS + d.delay_us, 2020 * MS);
    holds[held++] = d.hold;
    /* the next would be at 3000 ms: 2900 ms away, over max_delay 2500 */
    ck_assert_int_eq(ask(l, "2.2.2.2", "api.example", "GET", "/", 100 * MS, &d), LIMITER_REJECT);
    ck_assert_uint_eq(d.retry_after_us, 2900 * MS);
    for (size_t i = 2; i < held; i++)
        limiter_hold_done(holds[i], 0);
    limiter_rule_stats(l, 0, &st);
    ck_assert_uint_eq(st.queued, 0);
    ck_assert_uint_eq(st.delayed, 6);
    limiter_unref(l);
}
END_TEST

START_TEST(test_cancel_gives_slot_back)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("d", RATE_KEY_GLOBAL, 2, 1000, RATE_OVER_DELAY)};
    struct limiter *l = limiter_over(rules, 1);
    struct limiter_decision d;
    ck_assert_int_eq(ask(l, "1.1.1.1", "h", "GET", "/", 0, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask(l, "1.1.1.1", "h", "GET", "/", 0, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask(l, "1.1.1.1", "h", "GET", "/", 10 * MS, &d), LIMITER_DELAY);
    struct limiter_hold *first = d.hold; /* reserved 1000 */
    ck_assert_int_eq(ask(l, "1.1.1.1", "h", "GET", "/", 10 * MS, &d), LIMITER_DELAY);
    struct limiter_hold *second = d.hold; /* reserved 1000 */
    ck_assert_uint_eq(d.delay_us, 990 * MS);
    limiter_hold_cancel(second);
    /* the cancelled slot is free again: the next request takes it, not a later one */
    ck_assert_int_eq(ask(l, "1.1.1.1", "h", "GET", "/", 20 * MS, &d), LIMITER_DELAY);
    ck_assert_uint_eq(20 * MS + d.delay_us, 1000 * MS);
    limiter_hold_cancel(d.hold);
    limiter_hold_cancel(first);
    /* with both reservations gone only the two admissions at 0 count */
    ck_assert_int_eq(ask(l, "1.1.1.1", "h", "GET", "/", 1000 * MS, &d), LIMITER_ADMIT);
    limiter_unref(l);
}
END_TEST

/* A hold released late pushes the holds computed from it: the gap at the origin stays a window. */
START_TEST(test_late_release_propagates)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("d", RATE_KEY_GLOBAL, 1, 1000, RATE_OVER_DELAY)};
    struct limiter *l = limiter_over(rules, 1);
    struct limiter_decision d;
    ck_assert_int_eq(ask(l, "1.1.1.1", "h", "GET", "/", 0, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask(l, "1.1.1.1", "h", "GET", "/", 10 * MS, &d), LIMITER_DELAY);
    struct limiter_hold *a = d.hold; /* reserved 1000 */
    ck_assert_int_eq(ask(l, "1.1.1.1", "h", "GET", "/", 20 * MS, &d), LIMITER_DELAY);
    struct limiter_hold *b = d.hold; /* reserved 2000, computed from a's 1000 */
    ck_assert_uint_eq(limiter_hold_ready(a, 1000 * MS), 0);
    limiter_hold_done(a, 1050 * MS); /* its timer fired 50 ms late */
    ck_assert_uint_eq(limiter_hold_ready(b, 2000 * MS), 50 * MS);
    ck_assert_uint_eq(limiter_hold_ready(b, 2050 * MS), 0);
    limiter_hold_done(b, 2050 * MS);
    limiter_unref(l);
}
END_TEST

START_TEST(test_matching_first_rule_wins)
{
    struct rate_rule rules[3];
    rules[0] = limiter_fixture_rule("github", RATE_KEY_HOST, 1, 1000, RATE_OVER_REJECT);
    struct host_pattern hosts[2];
    memset(hosts, 0, sizeof hosts);
    snprintf(hosts[0].text, sizeof hosts[0].text, "api.github.com");
    snprintf(hosts[1].text, sizeof hosts[1].text, ".example.com");
    hosts[1].wildcard = 1;
    rules[0].match_host = hosts;
    rules[0].match_host_count = 2;
    snprintf(rules[0].match_method[0], sizeof rules[0].match_method[0], "GET");
    rules[0].match_method_count = 1;
    rules[0].match_path_prefix = "/repos";
    struct cidr nets[1];
    cidr_parse("10.0.0.0/8", &nets[0]);
    rules[0].match_client = nets;
    rules[0].match_client_count = 1;
    rules[1] = limiter_fixture_rule("post", RATE_KEY_CLIENT, 1, 1000, RATE_OVER_REJECT);
    snprintf(rules[1].match_method[0], sizeof rules[1].match_method[0], "POST");
    rules[1].match_method_count = 1;
    rules[2] = limiter_fixture_rule("default", RATE_KEY_CLIENT_HOST, 100, 1000, RATE_OVER_REJECT);
    rules[2].match_client = nets;
    rules[2].match_client_count = 1;
    struct limiter *l = limiter_over(rules, 3);
    struct limiter_decision d;
    ask(l, "10.1.2.3", "api.github.com", "GET", "/repos/x", 0, &d);
    ck_assert_str_eq(d.rule->name, "github");
    ck_assert_int_eq(d.verdict, LIMITER_ADMIT);
    ask(l, "10.1.2.3", "api.github.com", "GET", "/repos/y", 0, &d);
    ck_assert_int_eq(d.verdict, LIMITER_REJECT); /* key host: one window per host */
    ask(l, "10.1.2.3", "a.b.example.com", "GET", "/repos", 0, &d);
    ck_assert_str_eq(d.rule->name, "github");
    ck_assert_int_eq(d.verdict, LIMITER_ADMIT);
    ask(l, "10.1.2.3", "example.com", "GET", "/repos", 0, &d); /* *.example.com needs a label */
    ck_assert_str_eq(d.rule->name, "default");
    ask(l, "10.1.2.3", "api.github.com", "GET", "/users", 0, &d);
    ck_assert_str_eq(d.rule->name, "default");
    ask(l, "10.1.2.3", "api.github.com", "HEAD", "/repos", 0, &d);
    ck_assert_str_eq(d.rule->name, "default");
    ask(l, "192.168.1.1", "api.github.com", "GET", "/repos", 0, &d);
    ck_assert_int_eq(d.verdict, LIMITER_UNLIMITED);
    ck_assert_ptr_null(d.rule);
    ask(l, "192.168.1.1", "x", "POST", "/", 0, &d);
    ck_assert_str_eq(d.rule->name, "post");
    limiter_unref(l);
}
END_TEST

START_TEST(test_host_key_ignores_case)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("h", RATE_KEY_HOST, 1, 1000, RATE_OVER_REJECT)};
    struct limiter *l = limiter_over(rules, 1);
    struct limiter_decision d;
    ck_assert_int_eq(ask(l, "1.1.1.1", "API.Example.com", "GET", "/", 0, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask(l, "2.2.2.2", "api.example.com", "GET", "/", 0, &d), LIMITER_REJECT);
    ck_assert_int_eq(ask(l, "2.2.2.2", "other.example.com", "GET", "/", 0, &d), LIMITER_ADMIT);
    limiter_unref(l);
}
END_TEST

/* Request headers for key: header:NAME, as name/value pairs ending with a NULL name; the first
 * line of a name counts, compared without case (as conn.c's lookup does). */
static const char *find_test_header(const void *headers, const char *name, size_t *value_len)
{
    for (const char *const *h = headers; h[0] != NULL; h += 2)
        if (strcasecmp(h[0], name) == 0) {
            *value_len = strlen(h[1]);
            return h[1];
        }
    return NULL;
}

static enum limiter_verdict ask_with_headers(struct limiter *l, const char *host,
                                             const char *const *headers, uint64_t now,
                                             struct limiter_decision *d)
{
    struct sockaddr_in a = client_addr("10.0.0.1");
    struct limiter_request r = {.client = (struct sockaddr *)&a,
                                .user = "-",
                                .host = host,
                                .port = 80,
                                .method = "GET",
                                .path = "/",
                                .path_len = 1,
                                .find_header = find_test_header,
                                .headers = headers};
    limiter_decide(l, &r, now, d);
    return d->verdict;
}

START_TEST(test_header_values_get_own_windows)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("tokens", RATE_KEY_HEADER, 1, 1000, RATE_OVER_REJECT)};
    snprintf(rules[0].key_header, sizeof rules[0].key_header, "X-Api-Key");
    struct config c = limiter_fixture_config(rules, 1, 1000000);
    char err[256];
    struct credential_key *key = credential_key_new_random(err, sizeof err);
    ck_assert_msg(key != NULL, "%s", err);
    struct limiter *l = limiter_new(&c, NULL, key);
    struct limiter_decision d;
    const char *token_a[] = {"Accept", "*/*", "x-api-key", "token-A", NULL};
    const char *token_b[] = {"X-API-KEY", "token-B", NULL};
    const char *token_a_twice[] = {"X-Api-Key", "token-A", "X-Api-Key", "token-C", NULL};
    const char *token_c_first[] = {"X-Api-Key", "token-C", "X-Api-Key", "token-A", NULL};
    const char *none[] = {"Authorization", "token-A", NULL};
    const char *empty[] = {"X-Api-Key", "", NULL};
    ck_assert_int_eq(ask_with_headers(l, "h", token_a, 0, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask_with_headers(l, "h", token_a, 1 * MS, &d), LIMITER_REJECT);
    /* another token has its own window, while A's is full */
    ck_assert_int_eq(ask_with_headers(l, "h", token_b, 2 * MS, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask_with_headers(l, "h", token_b, 3 * MS, &d), LIMITER_REJECT);
    /* a repeated header counts by its first line */
    ck_assert_int_eq(ask_with_headers(l, "h", token_a_twice, 4 * MS, &d), LIMITER_REJECT);
    ck_assert_int_eq(ask_with_headers(l, "h", token_c_first, 5 * MS, &d), LIMITER_ADMIT);
    /* without the header: the empty value, one window for all such requests */
    ck_assert_int_eq(ask_with_headers(l, "h", none, 6 * MS, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask_with_headers(l, "h", empty, 7 * MS, &d), LIMITER_REJECT);
    ck_assert_int_eq(ask_with_headers(l, "other", none, 8 * MS, &d), LIMITER_REJECT);
    /* no lookup at all (a caller without headers) is the same empty value */
    ck_assert_int_eq(ask(l, "10.0.0.2", "h", "GET", "/", 9 * MS, &d), LIMITER_REJECT);
    struct limiter_rule_stats st;
    limiter_rule_stats(l, 0, &st);
    ck_assert_uint_eq(st.keys, 4); /* A, B, C and the empty value */
    /* the window frees as any other */
    ck_assert_int_eq(ask_with_headers(l, "h", token_a, 1000 * MS, &d), LIMITER_ADMIT);
    limiter_unref(l);
    credential_key_free(key);
}
END_TEST

START_TEST(test_host_header_key)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("r", RATE_KEY_HOST_HEADER, 1, 1000, RATE_OVER_REJECT)};
    snprintf(rules[0].key_header, sizeof rules[0].key_header, "Authorization");
    struct limiter *l = limiter_over(rules, 1);
    struct limiter_decision d;
    const char *token[] = {"Authorization", "Bearer t0k3n", NULL};
    const char *other[] = {"Authorization", "Bearer other", NULL};
    ck_assert_int_eq(ask_with_headers(l, "a.example", token, 0, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask_with_headers(l, "A.Example", token, 1 * MS, &d), LIMITER_REJECT);
    ck_assert_int_eq(ask_with_headers(l, "b.example", token, 2 * MS, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask_with_headers(l, "a.example", other, 3 * MS, &d), LIMITER_ADMIT);
    struct sockaddr_in a = client_addr("10.0.0.1");
    struct limiter_request r = {.client = (struct sockaddr *)&a, .user = "-", .host = "A.Example",
                                .method = "GET", .path = "/", .path_len = 1,
                                .find_header = find_test_header, .headers = token};
    char text[600];
    size_t len = limiter_key(&rules[0], &r, NULL, text, sizeof text);
    ck_assert_uint_eq(len, strlen("a.example h:") + 32);
    ck_assert_msg(strncmp(text, "a.example h:", 12) == 0, "%s", text);
    limiter_unref(l);
}
END_TEST

/* The key text is "h:" and 32 hex digits: never the value or a piece of it, the same for the same
 * value and key, different under another key (so a process's texts tell nothing about another's),
 * and HMAC-SHA256 as specified (RFC 4231 test case 2), or plain SHA-256 without a key. */
START_TEST(test_header_key_text)
{
    struct rate_rule r = limiter_fixture_rule("r", RATE_KEY_HEADER, 1, 1000, RATE_OVER_REJECT);
    snprintf(r.key_header, sizeof r.key_header, "Authorization");
    const char *secret_value = "Bearer ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    const char *headers[] = {"Authorization", secret_value, NULL};
    struct limiter_request request = {.host = "h", .method = "GET", .path = "/",
                                      .find_header = find_test_header, .headers = headers};
    char err[256], first[600], again[600], other[600];
    struct credential_key *k1 = credential_key_new_random(err, sizeof err);
    struct credential_key *k2 = credential_key_new_random(err, sizeof err);
    ck_assert_ptr_nonnull(k1);
    ck_assert_ptr_nonnull(k2);
    ck_assert_uint_eq(limiter_key(&r, &request, k1, first, sizeof first), 34);
    ck_assert_msg(strncmp(first, "h:", 2) == 0 && strspn(first + 2, "0123456789abcdef") == 32,
                  "%s", first);
    /* no 4-character piece of the value appears in the text; pieces made only of hex digits
     * ("abcd", "0123") are skipped: a random digest holds one of them in about 0.4% of runs */
    for (size_t i = 0; i + 4 <= strlen(secret_value); i++) {
        char piece[5];
        memcpy(piece, secret_value + i, 4);
        piece[4] = '\0';
        if (strspn(piece, "0123456789abcdef") == 4)
            continue;
        ck_assert_msg(strstr(first, piece) == NULL, "%s holds %s", first, piece);
    }
    limiter_key(&r, &request, k1, again, sizeof again);
    ck_assert_str_eq(first, again);
    limiter_key(&r, &request, k2, other, sizeof other);
    ck_assert_str_ne(first, other);
    credential_key_free(k1);
    credential_key_free(k2);

    char text[CREDENTIAL_TEXT_SIZE];
    struct credential_key *jefe = credential_key_new("Jefe", 4);
    credential_text(jefe, "what do ya want for nothing?", 28, text);
    ck_assert_str_eq(text, "h:5bdcc146bf60754e6a042426089575c7");
    credential_key_free(jefe);
    credential_text(NULL, "", 0, text);
    ck_assert_str_eq(text, "h:e3b0c44298fc1c149afbf4c8996fb924");
    credential_text(NULL, NULL, 0, text); /* absent: the empty value */
    ck_assert_str_eq(text, "h:e3b0c44298fc1c149afbf4c8996fb924");
}
END_TEST

/* Another header name is another rule's windows; the same name in another case is the same. */
START_TEST(test_reload_header_name)
{
    struct rate_rule r1[] = {limiter_fixture_rule("r", RATE_KEY_HEADER, 1, 1000, RATE_OVER_REJECT)};
    snprintf(r1[0].key_header, sizeof r1[0].key_header, "X-Api-Key");
    struct rate_rule r2[] = {r1[0]}, r3[] = {r1[0]};
    snprintf(r2[0].key_header, sizeof r2[0].key_header, "x-api-KEY");
    snprintf(r3[0].key_header, sizeof r3[0].key_header, "X-Other-Key");
    struct config c1 = limiter_fixture_config(r1, 1, 1000000),
                  c2 = limiter_fixture_config(r2, 1, 1000000),
                  c3 = limiter_fixture_config(r3, 1, 1000000);
    const char *headers[] = {"X-Api-Key", "t", "X-Other-Key", "t", NULL};
    struct limiter_decision d;
    struct limiter *l1 = limiter_new(&c1, NULL, NULL);
    ck_assert_int_eq(ask_with_headers(l1, "h", headers, 0, &d), LIMITER_ADMIT);
    struct limiter *l2 = limiter_new(&c2, l1, NULL);
    ck_assert_int_eq(ask_with_headers(l2, "h", headers, 1 * MS, &d), LIMITER_REJECT);
    struct limiter *l3 = limiter_new(&c3, l2, NULL);
    ck_assert_int_eq(ask_with_headers(l3, "h", headers, 2 * MS, &d), LIMITER_ADMIT);
    limiter_unref(l1);
    limiter_unref(l2);
    limiter_unref(l3);
}
END_TEST

/* The key count belongs to a limiter and the ones built over it, not to the process: a second,
 * unrelated limiter (another test, the benchmark) does not eat into the first one's cap, while a
 * reload keeps counting the windows it carries over. */
START_TEST(test_key_count_per_limiter)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("c", RATE_KEY_CLIENT, 2, 1000, RATE_OVER_REJECT)};
    struct config c = limiter_fixture_config(rules, 1, 2);
    struct limiter *a = limiter_new(&c, NULL, NULL);
    struct limiter *b = limiter_new(&c, NULL, NULL);
    struct limiter_decision d;
    ck_assert_int_eq(ask(a, "10.0.0.1", "h", "GET", "/", 0, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask(a, "10.0.0.2", "h", "GET", "/", 0, &d), LIMITER_ADMIT);
    ck_assert_uint_eq(limiter_total_keys(a), 2);
    ck_assert_uint_eq(limiter_total_keys(b), 0);
    ck_assert_int_eq(ask(b, "10.0.0.3", "h", "GET", "/", 0, &d), LIMITER_ADMIT);
    ck_assert_uint_eq(limiter_total_keys(b), 1);
    /* built over a: the same windows, the same count, the same cap */
    struct limiter *a2 = limiter_new(&c, a, NULL);
    limiter_unref(a);
    ck_assert_uint_eq(limiter_total_keys(a2), 2);
    ck_assert_int_eq(ask(a2, "10.0.0.4", "h", "GET", "/", 0, &d), LIMITER_REJECT);
    limiter_unref(a2);
    limiter_unref(b);
}
END_TEST

START_TEST(test_expiry_and_key_cap)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("c", RATE_KEY_CLIENT, 2, 1000, RATE_OVER_REJECT)};
    struct config c = limiter_fixture_config(rules, 1, 100);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    uint64_t before = limiter_total_keys(l);
    struct limiter_decision d;
    char ip[32];
    for (int i = 0; i < 100; i++) {
        snprintf(ip, sizeof ip, "10.0.%d.%d", i / 250, i % 250 + 1);
        ck_assert_int_eq(ask(l, ip, "h", "GET", "/", 0, &d), LIMITER_ADMIT);
    }
    ck_assert_uint_eq(limiter_total_keys(l), before + 100);
    /* the cap: a new key is refused while every window is still active */
    ck_assert_int_eq(ask(l, "10.9.9.9", "h", "GET", "/", 500 * MS, &d), LIMITER_REJECT);
    ck_assert_ptr_nonnull(strstr(d.reason, "rate_limits_max_keys"));
    /* a known key still works */
    ck_assert_int_eq(ask(l, "10.0.0.1", "h", "GET", "/", 500 * MS, &d), LIMITER_ADMIT);
    /* idle windows go after their window; the new key is then admitted */
    ck_assert_uint_eq(limiter_expire(l, 1000 * MS), 1); /* 10.0.0.1 was used at 500 ms */
    ck_assert_uint_eq(limiter_total_keys(l), before + 1);
    ck_assert_int_eq(ask(l, "10.9.9.9", "h", "GET", "/", 1000 * MS, &d), LIMITER_ADMIT);
    ck_assert_uint_eq(limiter_expire(l, 10000 * MS), 0);
    ck_assert_uint_eq(limiter_total_keys(l), before);
    limiter_unref(l);
}
END_TEST

START_TEST(test_reload_keeps_unchanged_rules)
{
    struct rate_rule rules1[] = {
        limiter_fixture_rule("a", RATE_KEY_GLOBAL, 1, 1000, RATE_OVER_REJECT),
        limiter_fixture_rule("b", RATE_KEY_GLOBAL, 1, 1000, RATE_OVER_REJECT)};
    snprintf(rules1[1].match_method[0], 24, "POST");
    rules1[1].match_method_count = 1;
    snprintf(rules1[0].match_method[0], 24, "GET");
    rules1[0].match_method_count = 1;
    struct config c1 = limiter_fixture_config(rules1, 2, 1000000);
    struct limiter *l1 = limiter_new(&c1, NULL, NULL);
    struct limiter_decision d;
    ck_assert_int_eq(ask(l1, "1.1.1.1", "h", "GET", "/", 0, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask(l1, "1.1.1.1", "h", "POST", "/", 0, &d), LIMITER_ADMIT);
    /* a keeps its parameters, b gets a new limit */
    struct rate_rule rules2[] = {rules1[0], rules1[1]};
    rules2[1].limit = 2;
    struct config c2 = limiter_fixture_config(rules2, 2, 1000000);
    struct limiter *l2 = limiter_new(&c2, l1, NULL);
    limiter_unref(l1);
    ck_assert_int_eq(ask(l2, "1.1.1.1", "h", "GET", "/", 10 * MS, &d), LIMITER_REJECT);
    ck_assert_int_eq(ask(l2, "1.1.1.1", "h", "POST", "/", 10 * MS, &d), LIMITER_ADMIT);
    limiter_unref(l2);
}
END_TEST

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Delays and cancellations at random: whatever is finally admitted (at once, or at its reserved
 * time if not cancelled) still obeys the window, for several limits. */
START_TEST(test_random_delays_and_cancels_never_exceed)
{
    const uint32_t limits[] = {1, 2, 3, 7, 20};
    unsigned seed = 777;
    for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
        uint32_t limit = limits[li];
        struct rate_rule rules[] = {
            limiter_fixture_rule("d", RATE_KEY_GLOBAL, limit, 100, RATE_OVER_DELAY)};
        rules[0].max_delay_ms = 1000;
        rules[0].max_queue = 50;
        struct config c = limiter_fixture_config(rules, 1, 1000000);
        struct limiter *l = limiter_new(&c, NULL, NULL);
        size_t cap = 20000, n = 0, nholds = 0;
        uint64_t *admitted = malloc(cap * sizeof *admitted);
        struct {
            struct limiter_hold *hold;
            uint64_t at;
        } holds[4096];
        uint64_t now = 0;
        for (int i = 0; i < 3000; i++) {
            now += (uint64_t)(rand_r(&seed) % 20) * MS;
            /* holds whose time has come are admitted; some others are cancelled */
            for (size_t h = 0; h < nholds;) {
                int due = holds[h].at <= now;
                int cancel = !due && rand_r(&seed) % 8 == 0;
                if (due || cancel) {
                    if (due) {
                        admitted[n++] = holds[h].at;
                        limiter_hold_done(holds[h].hold, holds[h].at);
                    } else {
                        limiter_hold_cancel(holds[h].hold);
                    }
                    holds[h] = holds[--nholds];
                } else {
                    h++;
                }
            }
            struct limiter_decision d;
            enum limiter_verdict v = ask(l, "1.1.1.1", "h", "GET", "/", now, &d);
            if (v == LIMITER_ADMIT)
                admitted[n++] = now;
            else if (v == LIMITER_DELAY && nholds < 4096)
                holds[nholds].hold = d.hold, holds[nholds++].at = now + d.delay_us;
            else if (v == LIMITER_DELAY)
                limiter_hold_cancel(d.hold);
        }
        for (size_t h = 0; h < nholds; h++) {
            admitted[n++] = holds[h].at;
            limiter_hold_done(holds[h].hold, holds[h].at);
        }
        qsort(admitted, n, sizeof *admitted, cmp_u64);
        assert_window_invariant(admitted, n, 100 * MS, limit);
        free(admitted);
        limiter_unref(l);
    }
}
END_TEST

struct contender {
    struct limiter *l;
    int admitted;
};

static void *contend(void *arg)
{
    struct contender *c = arg;
    struct limiter_decision d;
    for (int i = 0; i < 20000; i++)
        if (ask(c->l, "1.1.1.1", "h", "GET", "/", 5 * MS, &d) == LIMITER_ADMIT)
            c->admitted++;
    return NULL;
}

START_TEST(test_two_threads_one_key)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("g", RATE_KEY_GLOBAL, 1000, 60000, RATE_OVER_REJECT)};
    struct limiter *l = limiter_over(rules, 1);
    struct contender a = {l, 0}, b = {l, 0};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, contend, &a);
    pthread_create(&tb, NULL, contend, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    ck_assert_int_eq(a.admitted + b.admitted, 1000);
    limiter_unref(l);
}
END_TEST

START_TEST(test_remaining_and_reset)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("r", RATE_KEY_GLOBAL, 3, 10000, RATE_OVER_REJECT)};
    struct limiter *l = limiter_over(rules, 1);
    struct limiter_decision d;
    ask(l, "1.1.1.1", "h", "GET", "/", 1000 * MS, &d);
    ck_assert_uint_eq(d.remaining, 2);
    ck_assert_uint_eq(d.reset_us, 10000 * MS);
    ask(l, "1.1.1.1", "h", "GET", "/", 4000 * MS, &d);
    ck_assert_uint_eq(d.remaining, 1);
    ck_assert_uint_eq(d.reset_us, 7000 * MS); /* the first one leaves at 11000 */
    ask(l, "1.1.1.1", "h", "GET", "/", 11500 * MS, &d);
    ck_assert_uint_eq(d.remaining, 1); /* the one at 1000 left; 4000 and 11500 count */
    limiter_unref(l);
}
END_TEST

/* ---- departure stamping ------------------------------------------------------------------------ */

static enum limiter_verdict ask_departing(struct limiter *l, uint64_t now,
                                          struct limiter_decision *d)
{
    struct sockaddr_in a = client_addr("1.1.1.1");
    struct limiter_request r = {.client = (struct sockaddr *)&a, .user = "-", .host = "h",
                                .port = 80, .method = "GET", .path = "/", .path_len = 1,
                                .depart_later = 1};
    limiter_decide(l, &r, now, d);
    return d->verdict;
}

/* The window counts departures: an entry moves to when its request reached the origin. */
START_TEST(test_departure_moves_entry)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("d", RATE_KEY_GLOBAL, 2, 1000, RATE_OVER_DELAY)};
    struct limiter *l = limiter_over(rules, 1);
    struct limiter_decision a, b, d;
    ck_assert_int_eq(ask_departing(l, 0, &a), LIMITER_ADMIT);
    ck_assert_int_eq(ask_departing(l, 0, &b), LIMITER_ADMIT);
    limiter_depart(&a.stamp, 70 * MS, NULL); /* a new connection: 70 ms of connect and TLS */
    limiter_depart(&b.stamp, 0, NULL);
    limiter_depart(&b.stamp, 500 * MS, NULL); /* a second departure of one stamp changes nothing */
    ck_assert_int_eq(ask_departing(l, 1000 * MS, &d), LIMITER_ADMIT); /* b left, a counts */
    limiter_depart(&d.stamp, 1000 * MS, NULL);
    /* full until a (departed at 70) leaves: admission-time stamps would admit this at once */
    ck_assert_int_eq(ask_departing(l, 1000 * MS, &d), LIMITER_DELAY);
    ck_assert_uint_eq(d.delay_us, 70 * MS);
    ck_assert_uint_eq(limiter_hold_ready(d.hold, 1070 * MS), 0);
    struct limiter_stamp stamp;
    limiter_hold_go(d.hold, &stamp, NULL);
    limiter_depart(&stamp, 1080 * MS, NULL);
    limiter_unref(l);
}
END_TEST

/* A request still on its way counts however long it takes; a held request whose slot follows it
 * waits for its departure plus the window. */
START_TEST(test_pending_entry_never_expires)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("d", RATE_KEY_GLOBAL, 1, 1000, RATE_OVER_DELAY)};
    struct limiter *l = limiter_over(rules, 1);
    struct limiter_decision a, d;
    ck_assert_int_eq(ask_departing(l, 0, &a), LIMITER_ADMIT);
    ck_assert_int_eq(ask_departing(l, 1500 * MS, &d), LIMITER_DELAY); /* a has not departed */
    ck_assert_uint_eq(d.delay_us, 1000 * MS); /* a departs now at the earliest */
    ck_assert_uint_eq(limiter_hold_ready(d.hold, 2500 * MS), LIMITER_PENDING_RECHECK_US);
    limiter_depart(&a.stamp, 2600 * MS, NULL);
    ck_assert_uint_eq(limiter_hold_ready(d.hold, 2600 * MS), 1000 * MS);
    ck_assert_uint_eq(limiter_hold_ready(d.hold, 3600 * MS), 0);
    limiter_hold_done(d.hold, 3600 * MS);
    /* a reject rule says the same with Retry-After */
    struct rate_rule strict[] = {
        limiter_fixture_rule("r", RATE_KEY_GLOBAL, 1, 1000, RATE_OVER_REJECT)};
    struct config c2 = limiter_fixture_config(strict, 1, 1000000);
    struct limiter *l2 = limiter_new(&c2, NULL, NULL);
    ck_assert_int_eq(ask_departing(l2, 0, &a), LIMITER_ADMIT);
    ck_assert_int_eq(ask_departing(l2, 5000 * MS, &d), LIMITER_REJECT);
    ck_assert_uint_eq(d.retry_after_us, 1000 * MS);
    limiter_abandon(&a.stamp); /* never sent: it counts from its admission, which is long past */
    ck_assert_int_eq(ask_departing(l2, 5000 * MS, &d), LIMITER_ADMIT);
    limiter_abandon(&d.stamp);
    limiter_unref(l2);
    limiter_unref(l);
}
END_TEST

/* Random arrivals, random connect times (some longer than the window), some requests never
 * sent, holds released when hold_ready says so: at the origin, no window holds more than the
 * limit of departures. */
START_TEST(test_random_departures_never_exceed)
{
    const uint32_t limits[] = {1, 3, 10};
    unsigned seed = 4242;
    for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
        uint32_t limit = limits[li];
        const uint64_t window = 200 * MS;
        struct rate_rule rules[] = {
            limiter_fixture_rule("d", RATE_KEY_GLOBAL, limit, 200, RATE_OVER_DELAY)};
        rules[0].max_delay_ms = 60000;
        rules[0].max_queue = 100000;
        struct config c = limiter_fixture_config(rules, 1, 1000000);
        struct limiter *l = limiter_new(&c, NULL, NULL);
        enum { HELD, ON_THE_WAY };
        struct request {
            int phase;
            uint64_t at; /* when to look at it next */
            struct limiter_hold *hold;
            struct limiter_stamp stamp;
            int sent;
        } *reqs = calloc(4000, sizeof *reqs);
        size_t nreqs = 0, ndeparted = 0;
        uint64_t *departed = calloc(4000, sizeof *departed);
        uint64_t now = 0;
        for (int step = 0; step < 20000 && nreqs < 4000; step++) {
            now += (uint64_t)(rand_r(&seed) % 10) * MS;
            for (size_t i = 0; i < nreqs; i++) {
                struct request *q = &reqs[i];
                if (q->at > now || q->phase < 0)
                    continue;
                if (q->phase == HELD) {
                    uint64_t more = limiter_hold_ready(q->hold, now);
                    if (more > 0) {
                        q->at = now + more;
                        continue;
                    }
                    limiter_hold_go(q->hold, &q->stamp, NULL);
                    q->phase = ON_THE_WAY;
                    q->at = now + (uint64_t)(rand_r(&seed) % 60) * MS;
                    continue;
                }
                if (q->sent) {
                    limiter_depart(&q->stamp, now, NULL);
                    departed[ndeparted++] = now;
                } else {
                    limiter_abandon(&q->stamp);
                }
                q->phase = -1;
            }
            if (rand_r(&seed) % 3 != 0)
                continue;
            struct request *q = &reqs[nreqs++];
            struct limiter_decision d;
            enum limiter_verdict v = ask_departing(l, now, &d);
            /* connect and TLS: mostly short, now and then longer than the window */
            uint64_t connect = (uint64_t)(rand_r(&seed) % 20 == 0 ? 150 + rand_r(&seed) % 300
                                                                   : rand_r(&seed) % 60) * MS;
            q->sent = rand_r(&seed) % 10 != 0;
            if (v == LIMITER_ADMIT) {
                q->stamp = d.stamp;
                q->phase = ON_THE_WAY;
                q->at = now + connect;
            } else if (v == LIMITER_DELAY) {
                q->hold = d.hold;
                q->phase = HELD;
                q->at = now + d.delay_us;
            } else {
                q->phase = -1;
            }
        }
        for (size_t i = 0; i < nreqs; i++) { /* what is left goes now, in order */
            if (reqs[i].phase == HELD)
                limiter_hold_cancel(reqs[i].hold);
            else if (reqs[i].phase == ON_THE_WAY)
                limiter_abandon(&reqs[i].stamp);
        }
        ck_assert_uint_gt(ndeparted, 100);
        qsort(departed, ndeparted, sizeof *departed, cmp_u64);
        assert_window_invariant(departed, ndeparted, window, limit);
        free(departed);
        free(reqs);
        limiter_unref(l);
    }
}
END_TEST

/* ---- what the origin said ----------------------------------------------------------------------- */

static struct limit_headers said(int64_t limit, int64_t remaining, int64_t reset_ms,
                                 int64_t retry_after_ms)
{
    struct limit_headers h;
    memset(&h, 0, sizeof h);
    h.found = 1;
    h.limit = limit;
    h.remaining = remaining;
    h.reset_ms = retry_after_ms >= 0 ? retry_after_ms : reset_ms;
    h.window_ms = -1;
    h.retry_after_ms = retry_after_ms;
    return h;
}

/* One request admitted, departed and answered: what the origin said is learned. */
static enum limiter_verdict exchange(struct limiter *l, uint64_t now, int status,
                                     struct limit_headers h)
{
    struct limiter_decision d;
    enum limiter_verdict v = ask_departing(l, now, &d);
    if (v != LIMITER_ADMIT)
        return v;
    struct limiter_stamp answer = {0};
    limiter_depart(&d.stamp, now, &answer);
    ck_assert_ptr_nonnull(answer.window);
    limiter_learn(&answer, status, &h, now);
    limiter_answered(&answer);
    return v;
}

/* n requests of the key admitted and departed at 0, their answers to come in answer[] */
static void depart_at_zero(struct limiter *l, struct limiter_stamp *answer, int n)
{
    memset(answer, 0, (size_t)n * sizeof *answer);
    for (int i = 0; i < n; i++) {
        struct limiter_decision d;
        ck_assert_int_eq(ask_departing(l, 0, &d), LIMITER_ADMIT);
        limiter_depart(&d.stamp, 0, &answer[i]);
    }
}

/* The origin's quota is stricter than the rule: the key keeps under it and renews at its reset. */
START_TEST(test_learned_quota_holds_until_reset)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("q", RATE_KEY_GLOBAL, 100, 1000, RATE_OVER_DELAY)};
    struct config c = limiter_fixture_config(rules, 1, 1000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct limiter_decision d;
    /* the origin allows 3 per 2 s, with 2 s to go */
    ck_assert_int_eq(exchange(l, 0, 200, said(3, 2, 2000, -1)), LIMITER_ADMIT);
    ck_assert_int_eq(exchange(l, 10 * MS, 200, said(3, 1, 1990, -1)), LIMITER_ADMIT);
    ck_assert_int_eq(exchange(l, 20 * MS, 200, said(3, 0, 1980, -1)), LIMITER_ADMIT);
    ck_assert_int_eq(ask_departing(l, 30 * MS, &d), LIMITER_DELAY); /* spent: until the reset */
    ck_assert(d.paused && d.hold == NULL);
    ck_assert_uint_eq(d.delay_us, 1970 * MS);
    /* after the reset: the quota renews at its size, 3, then holds again */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ask_departing(l, 2000 * MS, &d), LIMITER_ADMIT);
        limiter_depart(&d.stamp, 2000 * MS, NULL);
    }
    ck_assert_int_eq(ask_departing(l, 2000 * MS, &d), LIMITER_DELAY);
    ck_assert(d.paused);
    limiter_unref(l);
}
END_TEST

/* Requests on their way and answers that overtake each other never loosen the budget: a response
 * counts as not including the requests that departed before it and are not answered yet. */
START_TEST(test_learned_budget_counts_requests_in_flight)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("q", RATE_KEY_GLOBAL, 100, 1000, RATE_OVER_REJECT)};
    struct limiter *l = limiter_over(rules, 1);
    struct limiter_stamp answer[4];
    depart_at_zero(l, answer, 4);
    /* the origin (limit 5) answers the 4th first: it counted only itself, 4 left */
    struct limit_headers h = said(5, 4, 60000, -1);
    limiter_learn(&answer[3], 200, &h, 1 * MS);
    limiter_answered(&answer[3]);
    /* the three before it may come after it in the origin's count: 4 - 3 = 1 left */
    struct limiter_decision e;
    ck_assert_int_eq(ask_departing(l, 2 * MS, &e), LIMITER_ADMIT);
    limiter_depart(&e.stamp, 2 * MS, NULL);
    ck_assert_int_eq(ask_departing(l, 3 * MS, &e), LIMITER_REJECT);
    ck_assert(e.paused);
    ck_assert_uint_eq(e.retry_after_us, 60000 * MS - 3 * MS + 1 * MS);
    /* an older answer cannot raise it again */
    h = said(5, 4, 60000, -1);
    limiter_learn(&answer[0], 200, &h, 4 * MS);
    ck_assert_int_eq(ask_departing(l, 5 * MS, &e), LIMITER_REJECT);
    for (int i = 0; i < 3; i++)
        limiter_answered(&answer[i]);
    limiter_unref(l);
}
END_TEST

/* Answers come back in another order than the origin counted their requests (a threaded origin,
 * one connection per request): the answer of the last request to leave is the last to arrive,
 * but the origin counted that request first. It says 4 left; the four answered before it said
 * 3, 2, 1, 0, so the quota is spent. Seen in test_learned, where the key then sent a request
 * into a full window and got the origin's 429. */
static void copy_view(const struct limiter_window_view *view, void *arg)
{
    *(struct limiter_window_view *)arg = *view;
}

static void copy_learned(const char *key, size_t key_len, const struct limiter_learned_view *learned,
                         void *arg)
{
    *(struct limiter_learned_view *)arg = *learned;
}

START_TEST(test_learned_answers_out_of_counting_order)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("q", RATE_KEY_GLOBAL, 100, 1000, RATE_OVER_REJECT)};
    struct limiter *l = limiter_over(rules, 1);
    struct limiter_stamp answer[5];
    depart_at_zero(l, answer, 5);
    /* the origin (5 per window, resetting at 2 s) counted the 5th first, then the 1st to 4th */
    static const int64_t remaining_said[5] = {3, 2, 1, 0, 4};
    for (int i = 0; i < 5; i++) {
        struct limit_headers h = said(5, remaining_said[i], 1999 - i, -1);
        limiter_learn(&answer[i], 200, &h, (uint64_t)(1 + i) * MS);
        limiter_answered(&answer[i]);
    }
    struct limiter_decision e;
    ck_assert_int_eq(ask_departing(l, 10 * MS, &e), LIMITER_REJECT);
    ck_assert(e.paused);
    ck_assert_uint_eq(e.retry_after_us, 2000 * MS - 10 * MS);
    /* /limits shows the origin's latest count, not the late answer's "4 left" */
    struct limiter_window_view shown = {.origin_remaining = -2};
    limiter_foreach_window(l, 0, 10 * MS, copy_view, &shown);
    ck_assert_int_eq(shown.origin_remaining, 0);
    ck_assert_uint_eq(shown.origin_reset_us, 2000 * MS - 10 * MS);
    /* and the state file saves it */
    struct limiter_learned_view saved = {.remaining = -2};
    limiter_export_learned(l, 0, 10 * MS, copy_learned, &saved);
    ck_assert_int_eq(saved.remaining, 0);
    /* the origin's next window is the key's */
    ck_assert_int_eq(ask_departing(l, 2001 * MS, &e), LIMITER_ADMIT);
    limiter_abandon(&e.stamp);
    limiter_unref(l);
}
END_TEST

/* A key held by what its origin said keeps it past the reset its held requests wake at: an expiry
 * pass between the reset and their turn left them an unknown key, and all of them went at once
 * (test_learned: 19 held requests of a token, 9 of them into the origin's 429). */
START_TEST(test_learned_quota_outlives_expiry_at_reset)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("q", RATE_KEY_GLOBAL, 100, 1000, RATE_OVER_DELAY)};
    struct limiter *l = limiter_over(rules, 1);
    struct limiter_decision d;
    struct limiter_stamp answer[2];
    depart_at_zero(l, answer, 2);
    /* the origin (3 per window) counted the 2nd first; the 1st's answer, later, has a later
     * reset (delta seconds are counted from when the origin answered) */
    struct limit_headers h = said(3, 1, 2000, -1);
    limiter_learn(&answer[1], 200, &h, 1 * MS);
    h = said(3, 0, 2003, -1);
    limiter_learn(&answer[0], 200, &h, 2 * MS);
    for (int i = 0; i < 2; i++)
        limiter_answered(&answer[i]);
    ck_assert_int_eq(ask_departing(l, 10 * MS, &d), LIMITER_DELAY);
    ck_assert(d.paused);
    ck_assert_uint_eq(d.delay_us, 2005 * MS - 10 * MS); /* the later reset */
    /* the held requests' turn: the key renews at 3, whenever the expiry pass runs */
    ck_assert_uint_eq(limiter_expire(l, 2005 * MS), 1);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(ask_departing(l, 2005 * MS, &d), LIMITER_ADMIT);
        limiter_depart(&d.stamp, 2005 * MS, NULL);
    }
    ck_assert_int_eq(ask_departing(l, 2005 * MS, &d), LIMITER_DELAY);
    ck_assert(d.paused);
    limiter_unref(l);
}
END_TEST

/* A 429's Retry-After pauses the key that got it, not another key of the rule. */
START_TEST(test_learned_pause_scoped_to_key)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("p", RATE_KEY_CLIENT, 100, 1000, RATE_OVER_REJECT)};
    struct config c = limiter_fixture_config(rules, 1, 1000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct sockaddr_in a = client_addr("1.1.1.1"), b = client_addr("2.2.2.2");
    struct limiter_request ra = {.client = (struct sockaddr *)&a, .user = "-", .host = "h",
                                 .port = 80, .method = "GET", .path = "/", .path_len = 1,
                                 .depart_later = 1};
    struct limiter_request rb = ra;
    rb.client = (struct sockaddr *)&b;
    struct limiter_decision d;
    limiter_decide(l, &ra, 0, &d);
    struct limiter_stamp answer = {0};
    limiter_depart(&d.stamp, 0, &answer);
    struct limit_headers h = said(-1, 0, -1, 5000);
    limiter_learn(&answer, 429, &h, 0);
    limiter_answered(&answer);
    limiter_decide(l, &ra, 1000 * MS, &d);
    ck_assert_int_eq(d.verdict, LIMITER_REJECT);
    ck_assert(d.paused);
    ck_assert_uint_eq(d.retry_after_us, 4000 * MS);
    ck_assert_uint_eq(limiter_paused_keys(l, 0, 1000 * MS), 1);
    limiter_decide(l, &rb, 1000 * MS, &d); /* the other client is another key */
    ck_assert_int_eq(d.verdict, LIMITER_ADMIT);
    limiter_abandon(&d.stamp);
    limiter_decide(l, &ra, 5000 * MS, &d); /* the pause is over */
    ck_assert_int_eq(d.verdict, LIMITER_ADMIT);
    limiter_abandon(&d.stamp);
    ck_assert_uint_eq(limiter_paused_keys(l, 0, 5000 * MS), 0);
    /* upstream_limits: ignore learns nothing */
    rules[0].upstream_limits = RATE_UPSTREAM_IGNORE;
    struct limiter *l2 = limiter_new(&c, NULL, NULL);
    limiter_decide(l2, &ra, 0, &d);
    memset(&answer, 0, sizeof answer);
    limiter_depart(&d.stamp, 0, &answer);
    ck_assert_ptr_null(answer.window);
    limiter_unref(l2);
    limiter_unref(l);
}
END_TEST

/* A held request whose slot was computed from a reservation that was then cancelled waits for
 * what that reservation was computed from: here a request still on its way. */
START_TEST(test_cancelled_reservation_keeps_what_it_followed)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("d", RATE_KEY_GLOBAL, 1, 1000, RATE_OVER_DELAY)};
    struct config c = limiter_fixture_config(rules, 1, 1000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct limiter_decision a, h1, h2;
    ck_assert_int_eq(ask_departing(l, 0, &a), LIMITER_ADMIT); /* connecting for a long time */
    ck_assert_int_eq(ask_departing(l, 10 * MS, &h1), LIMITER_DELAY);
    ck_assert_uint_eq(10 * MS + h1.delay_us, 1000 * MS);
    ck_assert_int_eq(ask_departing(l, 20 * MS, &h2), LIMITER_DELAY); /* computed from h1 */
    ck_assert_uint_eq(20 * MS + h2.delay_us, 2000 * MS);
    limiter_hold_cancel(h1.hold);
    /* h2's time comes while a has not departed: it waits for a, as h1 would have */
    ck_assert_uint_eq(limiter_hold_ready(h2.hold, 2000 * MS), LIMITER_PENDING_RECHECK_US);
    limiter_depart(&a.stamp, 1500 * MS, NULL);
    ck_assert_uint_eq(limiter_hold_ready(h2.hold, 2000 * MS), 500 * MS);
    ck_assert_uint_eq(limiter_hold_ready(h2.hold, 2500 * MS), 0);
    struct limiter_stamp stamp;
    limiter_hold_go(h2.hold, &stamp, NULL);
    limiter_depart(&stamp, 2500 * MS, NULL);
    limiter_unref(l);
}
END_TEST

/* A cancelled reservation puts back what it displaced no earlier than that request departed. */
START_TEST(test_cancelled_reservation_puts_back_departure)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("d", RATE_KEY_GLOBAL, 1, 1000, RATE_OVER_DELAY)};
    struct config c = limiter_fixture_config(rules, 1, 1000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct limiter_decision a, h, d;
    ck_assert_int_eq(ask_departing(l, 0, &a), LIMITER_ADMIT);
    ck_assert_int_eq(ask_departing(l, 10 * MS, &h), LIMITER_DELAY); /* displaces a's entry */
    limiter_depart(&a.stamp, 500 * MS, NULL);                         /* a left late */
    limiter_hold_cancel(h.hold);
    /* a reached the origin at 500: the next may go at 1500, not at once */
    ck_assert_int_eq(ask_departing(l, 1200 * MS, &d), LIMITER_DELAY);
    ck_assert_uint_eq(d.delay_us, 300 * MS);
    limiter_hold_cancel(d.hold);
    limiter_unref(l);
}
END_TEST

/* ---- costs and dry runs -------------------------------------------------------------------------- */

/* cost_header for the tests: the request's "headers" are its cost as text (NULL: no header). */
static const char *find_cost(const void *headers, const char *name, size_t *len)
{
    (void)name;
    if (headers == NULL)
        return NULL;
    *len = strlen(headers);
    return headers;
}

static enum limiter_verdict ask_cost(struct limiter *l, const char *cost, uint64_t now,
                                     int depart_later, struct limiter_decision *d)
{
    struct sockaddr_in a = client_addr("1.1.1.1");
    struct limiter_request r = {.client = (struct sockaddr *)&a, .user = "-", .host = "h",
                                .port = 80, .method = "GET", .path = "/", .path_len = 1,
                                .find_header = find_cost, .headers = cost,
                                .depart_later = depart_later};
    limiter_decide(l, &r, now, d);
    return d->verdict;
}

/* A request of cost n takes n units of the window; the RateLimit numbers and Retry-After are in
 * units; a header's cost replaces the rule's, and a value that is no cost is a bad request. */
START_TEST(test_cost_takes_units)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("c", RATE_KEY_GLOBAL, 10, 1000, RATE_OVER_REJECT)};
    rules[0].cost = 4;
    snprintf(rules[0].cost_header, sizeof rules[0].cost_header, "X-Cost");
    struct config c = limiter_fixture_config(rules, 1, 1000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct limiter_decision d;
    ck_assert_int_eq(ask_cost(l, NULL, 0, 0, &d), LIMITER_ADMIT);
    ck_assert_uint_eq(d.cost, 4);
    ck_assert_uint_eq(d.remaining, 6);
    ck_assert_int_eq(ask_cost(l, NULL, 100 * MS, 0, &d), LIMITER_ADMIT);
    ck_assert_uint_eq(d.remaining, 2);
    /* 4 more units fit once two have left: both of the first request's, at 1000 */
    ck_assert_int_eq(ask_cost(l, NULL, 200 * MS, 0, &d), LIMITER_REJECT);
    ck_assert_uint_eq(d.retry_after_us, 800 * MS);
    ck_assert_uint_eq(d.remaining, 2);
    /* the header's 2 fit now */
    ck_assert_int_eq(ask_cost(l, "2", 200 * MS, 0, &d), LIMITER_ADMIT);
    ck_assert_uint_eq(d.cost, 2);
    ck_assert_uint_eq(d.remaining, 0);
    ck_assert_int_eq(ask_cost(l, "1", 200 * MS, 0, &d), LIMITER_REJECT);
    /* at 1000 the first request's 4 units left: 4 fit, 5 do not */
    ck_assert_int_eq(ask_cost(l, "5", 1000 * MS, 0, &d), LIMITER_REJECT);
    ck_assert_uint_eq(d.retry_after_us, 100 * MS);
    ck_assert_int_eq(ask_cost(l, "4", 1000 * MS, 0, &d), LIMITER_ADMIT);
    /* values that are no cost: refused as a bad request, nothing counted */
    const char *bad[] = {"0", "11", "-1", "1.5", "", "abc", "99999999999", " 2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(ask_cost(l, bad[i], 5000 * MS, 0, &d), LIMITER_REJECT);
        ck_assert_msg(d.bad_request, "\"%s\"", bad[i]);
    }
    struct limiter_rule_stats st;
    limiter_rule_stats(l, 0, &st);
    ck_assert_uint_eq(st.admitted, 4);
    ck_assert_uint_eq(st.rejected, 3);
    limiter_unref(l);
}
END_TEST

/* A held request of cost n reserves n units: it waits until n have left, and when cancelled
 * gives them back. */
START_TEST(test_cost_holds_and_cancels)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("c", RATE_KEY_GLOBAL, 3, 1000, RATE_OVER_DELAY)};
    snprintf(rules[0].cost_header, sizeof rules[0].cost_header, "X-Cost");
    struct config c = limiter_fixture_config(rules, 1, 1000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct limiter_decision d;
    ck_assert_int_eq(ask_cost(l, NULL, 0, 0, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask_cost(l, NULL, 100 * MS, 0, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask_cost(l, NULL, 200 * MS, 0, &d), LIMITER_ADMIT);
    /* 2 units: the second-oldest must leave, at 1100 */
    ck_assert_int_eq(ask_cost(l, "2", 300 * MS, 0, &d), LIMITER_DELAY);
    ck_assert_uint_eq(300 * MS + d.delay_us, 1100 * MS);
    struct limiter_hold *two = d.hold;
    /* the window is spoken for until 1200 (the one at 200) and then 2100 (the held two) */
    ck_assert_int_eq(ask_cost(l, NULL, 300 * MS, 0, &d), LIMITER_DELAY);
    ck_assert_uint_eq(300 * MS + d.delay_us, 1200 * MS);
    struct limiter_hold *one = d.hold;
    /* 3 units: all three entries before it must leave, the last at 1200 */
    ck_assert_int_eq(ask_cost(l, "3", 300 * MS, 0, &d), LIMITER_DELAY);
    ck_assert_uint_eq(300 * MS + d.delay_us, 2200 * MS);
    limiter_hold_cancel(d.hold);
    limiter_hold_cancel(one);
    limiter_hold_cancel(two);
    /* all gone: what they displaced comes back no earlier than it was (the reservations at 1100
     * and 1200 that the 3 displaced return as 1200: stricter, never looser), and nothing of
     * theirs stays: at 1200 the window has a unit free */
    ck_assert_int_eq(ask_cost(l, NULL, 1100 * MS, 0, &d), LIMITER_DELAY);
    ck_assert_uint_eq(1100 * MS + d.delay_us, 1200 * MS);
    limiter_hold_cancel(d.hold);
    ck_assert_int_eq(ask_cost(l, NULL, 1200 * MS, 0, &d), LIMITER_ADMIT);
    ck_assert_int_eq(ask_cost(l, NULL, 1200 * MS, 0, &d), LIMITER_DELAY);
    ck_assert_uint_eq(1200 * MS + d.delay_us, 2200 * MS);
    limiter_hold_cancel(d.hold);
    limiter_unref(l);
}
END_TEST

/* Random arrivals of random costs, random connect times, some never sent, some holds cancelled:
 * at the origin no window holds more than limit units. */
static void random_costs_run(uint32_t limit, unsigned seed)
{
    const uint64_t window = 200 * MS;
    struct rate_rule rules[] = {
        limiter_fixture_rule("c", RATE_KEY_GLOBAL, limit, 200, RATE_OVER_DELAY)};
    snprintf(rules[0].cost_header, sizeof rules[0].cost_header, "X-Cost");
    rules[0].max_delay_ms = 60000;
    rules[0].max_queue = 100000;
    struct config c = limiter_fixture_config(rules, 1, 1000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    enum { HELD, ON_THE_WAY };
    struct request {
        int phase;
        uint64_t at;
        struct limiter_hold *hold;
        struct limiter_stamp stamp;
        uint32_t cost;
        int sent;
    } *reqs = calloc(3000, sizeof *reqs);
    size_t nreqs = 0, nunits = 0;
    uint64_t *units = calloc(3000 * 3, sizeof *units);
    uint64_t now = 0;
    static const char *const costs[] = {"1", "2", "3"};
    for (int step = 0; step < 20000 && nreqs < 3000; step++) {
        now += (uint64_t)(rand_r(&seed) % 10) * MS;
        for (size_t i = 0; i < nreqs; i++) {
            struct request *q = &reqs[i];
            if (q->at > now || q->phase < 0)
                continue;
            if (q->phase == HELD) {
                if (rand_r(&seed) % 20 == 0) { /* its client went away */
                    limiter_hold_cancel(q->hold);
                    q->phase = -1;
                    continue;
                }
                uint64_t more = limiter_hold_ready(q->hold, now);
                if (more > 0) {
                    q->at = now + more;
                    continue;
                }
                limiter_hold_go(q->hold, &q->stamp, NULL);
                q->phase = ON_THE_WAY;
                q->at = now + (uint64_t)(rand_r(&seed) % 60) * MS;
                continue;
            }
            if (q->sent) {
                limiter_depart(&q->stamp, now, NULL);
                for (uint32_t u = 0; u < q->cost; u++)
                    units[nunits++] = now;
            } else {
                limiter_abandon(&q->stamp);
            }
            q->phase = -1;
        }
        if (rand_r(&seed) % 3 != 0)
            continue;
        struct request *q = &reqs[nreqs++];
        struct limiter_decision d;
        enum limiter_verdict v = ask_cost(l, costs[rand_r(&seed) % 3], now, 1, &d);
        q->cost = d.cost;
        q->sent = rand_r(&seed) % 10 != 0;
        if (v == LIMITER_ADMIT) {
            q->stamp = d.stamp;
            q->phase = ON_THE_WAY;
            q->at = now + (uint64_t)(rand_r(&seed) % 20 == 0 ? 150 + rand_r(&seed) % 300
                                                              : rand_r(&seed) % 60) * MS;
        } else if (v == LIMITER_DELAY) {
            q->hold = d.hold;
            q->phase = HELD;
            q->at = now + d.delay_us;
        } else {
            q->phase = -1;
        }
    }
    for (size_t i = 0; i < nreqs; i++) {
        if (reqs[i].phase == HELD)
            limiter_hold_cancel(reqs[i].hold);
        else if (reqs[i].phase == ON_THE_WAY)
            limiter_abandon(&reqs[i].stamp);
    }
    ck_assert_uint_gt(nunits, 300);
    qsort(units, nunits, sizeof *units, cmp_u64);
    assert_window_invariant(units, nunits, window, limit);
    free(units);
    free(reqs);
    limiter_unref(l);
}
START_TEST(test_random_costs_never_exceed)
{
    const uint32_t limits[] = {3, 6, 10};
    for (unsigned run = 0; run < 9; run++)
        random_costs_run(limits[run % 3], 777 + run);
}
END_TEST

/* enforce: false decides and counts, holds nothing, and takes entries only for what would have
 * gone; a reload that turns enforcing on keeps the window. */
START_TEST(test_dry_run_counts_and_lets_through)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("d", RATE_KEY_GLOBAL, 2, 1000, RATE_OVER_DELAY),
        limiter_fixture_rule("r", RATE_KEY_CLIENT, 1, 1000, RATE_OVER_REJECT)};
    rules[0].enforce = 0;
    rules[0].max_delay_ms = 1500;
    snprintf(rules[0].match_method[0], sizeof rules[0].match_method[0], "GET");
    rules[0].match_method_count = 1;
    rules[1].enforce = 0;
    struct config c = limiter_fixture_config(rules, 2, 1000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct limiter_decision d;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(ask(l, "1.1.1.1", "h", "GET", "/", 0, &d), LIMITER_ADMIT);
        ck_assert_int_eq(d.would, LIMITER_UNLIMITED);
    }
    /* the third would be held until 1000, the fourth too (nothing was reserved for the third) */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(ask(l, "1.1.1.1", "h", "GET", "/", 100 * MS, &d), LIMITER_ADMIT);
        ck_assert_int_eq(d.would, LIMITER_DELAY);
        ck_assert_ptr_null(d.hold);
        ck_assert_uint_eq(d.delay_us, 900 * MS);
    }
    /* a reject rule would refuse */
    ck_assert_int_eq(ask(l, "1.1.1.1", "h", "POST", "/", 0, &d), LIMITER_ADMIT);
    ck_assert_int_eq(d.would, LIMITER_UNLIMITED);
    ck_assert_int_eq(ask(l, "1.1.1.1", "h", "POST", "/", 0, &d), LIMITER_ADMIT);
    ck_assert_int_eq(d.would, LIMITER_REJECT);
    struct limiter_rule_stats st;
    limiter_rule_stats(l, 0, &st);
    ck_assert_uint_eq(st.admitted, 2);
    ck_assert_uint_eq(st.would_delay, 2);
    ck_assert_uint_eq(st.delayed + st.rejected + st.queued + st.would_reject, 0);
    limiter_rule_stats(l, 1, &st);
    ck_assert_uint_eq(st.admitted, 1);
    ck_assert_uint_eq(st.would_reject, 1);
    ck_assert_uint_eq(st.rejected, 0);
    /* enforcing from a reload: the same windows, now held */
    struct rate_rule enforced[] = {rules[0], rules[1]};
    enforced[0].enforce = enforced[1].enforce = 1;
    struct config c2 = limiter_fixture_config(enforced, 2, 1000000);
    struct limiter *l2 = limiter_new(&c2, l, NULL);
    limiter_unref(l);
    ck_assert_int_eq(ask(l2, "1.1.1.1", "h", "GET", "/", 200 * MS, &d), LIMITER_DELAY);
    ck_assert_uint_eq(d.delay_us, 800 * MS);
    limiter_hold_cancel(d.hold);
    ck_assert_int_eq(ask(l2, "1.1.1.1", "h", "POST", "/", 200 * MS, &d), LIMITER_REJECT);
    limiter_rule_stats(l2, 0, &st);
    ck_assert_uint_eq(st.would_delay, 2);
    limiter_unref(l2);
}
END_TEST

/* ---- held requests in a queue: fair_by, max_concurrent ------------------------------------------- */

/* The limiter's wake-ups, as a worker would run them: posted calls queue here until run_posted. */
static struct util_call *posted_first, *posted_last;
static unsigned posted_count;

static void test_post(void *target, struct util_call *call)
{
    (void)target;
    call->next = NULL;
    if (posted_last != NULL)
        posted_last->next = call;
    else
        posted_first = call;
    posted_last = call;
    posted_count++;
}

static void run_posted(void)
{
    struct util_call *call = posted_first;
    posted_first = posted_last = NULL;
    while (call != NULL) {
        struct util_call *next = call->next;
        call->fn(call->arg);
        call = next;
    }
}

static void woken_flag(void *arg) { (*(int *)arg)++; }

static enum limiter_verdict ask_from(struct limiter *l, const char *ip, const char *cost,
                                     uint64_t now, int *woken, struct limiter_decision *d)
{
    struct sockaddr_in a = client_addr(ip);
    struct limiter_request r = {.client = (struct sockaddr *)&a, .user = "-", .host = "h",
                                .port = 80, .method = "GET", .path = "/", .path_len = 1,
                                .find_header = find_cost, .headers = cost, .depart_later = 1,
                                .post = test_post, .woken = woken_flag, .woken_arg = woken};
    limiter_decide(l, &r, now, d);
    return d->verdict;
}

static struct rate_rule fair_rule(uint32_t limit, uint64_t window_ms)
{
    struct rate_rule r =
        limiter_fixture_rule("f", RATE_KEY_GLOBAL, limit, window_ms, RATE_OVER_DELAY);
    r.fair_by = RATE_FAIR_CLIENT;
    r.max_delay_ms = 60000;
    snprintf(r.cost_header, sizeof r.cost_header, "X-Cost");
    return r;
}

/* Slots go round robin over the clients with held requests, not in arrival order. */
START_TEST(test_fair_release_round_robin)
{
    struct rate_rule rules[] = {fair_rule(1, 100)};
    struct config c = limiter_fixture_config(rules, 1, 1000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct limiter_decision d;
    struct {
        struct limiter_hold *hold;
        char who;
        int woken;
    } held[12];
    size_t n = 0;
    ck_assert_int_eq(ask_from(l, "10.0.0.1", NULL, 0, NULL, &d), LIMITER_ADMIT);
    limiter_depart(&d.stamp, 0, NULL);
    for (int i = 0; i < 9; i++, n++) { /* a: nine more at once */
        held[n].who = 'a';
        held[n].woken = 0;
        ck_assert_int_eq(ask_from(l, "10.0.0.1", NULL, 1 * MS, &held[n].woken, &d), LIMITER_DELAY);
        held[n].hold = d.hold;
    }
    for (int i = 0; i < 3; i++, n++) { /* b: three, after all of a's */
        held[n].who = 'b';
        held[n].woken = 0;
        ck_assert_int_eq(ask_from(l, "10.0.0.2", NULL, 2 * MS, &held[n].woken, &d), LIMITER_DELAY);
        held[n].hold = d.hold;
    }
    /* every 100 ms one slot frees; whoever is told asks, and the one whose turn it is goes */
    char order[16] = {0};
    size_t went = 0;
    for (uint64_t t = 100; went < n && t < 5000; t += 100) {
        run_posted();
        for (size_t i = 0; i < n; i++) {
            if (held[i].hold == NULL)
                continue;
            uint64_t wait = limiter_hold_ready(held[i].hold, t * MS);
            ck_assert_uint_ne(wait, LIMITER_HOLD_EXPIRED);
            if (wait == 0) {
                ck_assert_msg(held[i].woken > 0, "%c went without being told", held[i].who);
                struct limiter_stamp stamp;
                limiter_hold_go(held[i].hold, &stamp, NULL);
                limiter_depart(&stamp, t * MS, NULL);
                held[i].hold = NULL;
                order[went++] = held[i].who;
            }
        }
    }
    ck_assert_str_eq(order, "abababaaaaaa");
    limiter_unref(l);
}
END_TEST

/* A request that leaves the queue gives its place to the one behind it: the freed slot is used
 * at once, not left to whoever arrives next. */
START_TEST(test_cancelled_hold_moves_queue_up)
{
    struct rate_rule rules[] = {fair_rule(1, 1000)};
    struct config c = limiter_fixture_config(rules, 1, 1000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct limiter_decision d;
    int woken_b = 0, woken_c = 0;
    ck_assert_int_eq(ask_from(l, "10.0.0.1", NULL, 0, NULL, &d), LIMITER_ADMIT);
    limiter_depart(&d.stamp, 0, NULL);
    ck_assert_int_eq(ask_from(l, "10.0.0.2", NULL, 10 * MS, &woken_b, &d), LIMITER_DELAY);
    struct limiter_hold *b = d.hold;
    ck_assert_int_eq(ask_from(l, "10.0.0.3", NULL, 20 * MS, &woken_c, &d), LIMITER_DELAY);
    struct limiter_hold *hc = d.hold;
    run_posted();
    ck_assert_int_eq(woken_b, 1); /* told to ask at 1000 (the waker) */
    ck_assert_uint_eq(limiter_hold_ready(b, 20 * MS), 980 * MS);
    ck_assert_int_eq(woken_c, 0);
    limiter_hold_cancel(b); /* b's client went away */
    run_posted();
    ck_assert_int_eq(woken_c, 1); /* c is the waker now */
    ck_assert_uint_eq(limiter_hold_ready(hc, 500 * MS), 500 * MS);
    ck_assert_uint_eq(limiter_hold_ready(hc, 1000 * MS), 0);
    struct limiter_stamp stamp;
    limiter_hold_go(hc, &stamp, NULL);
    limiter_depart(&stamp, 1000 * MS, NULL);
    /* the window is whole: the next slot is at 2000 */
    ck_assert_int_eq(ask_from(l, "10.0.0.4", NULL, 1000 * MS, NULL, &d), LIMITER_DELAY);
    ck_assert_uint_eq(limiter_hold_ready(d.hold, 1999 * MS), 1 * MS);
    limiter_hold_cancel(d.hold);
    /* a hold whose wake-up is on its way is freed by it */
    ck_assert_int_eq(ask_from(l, "10.0.0.5", NULL, 1000 * MS, &woken_b, &d), LIMITER_DELAY);
    limiter_hold_cancel(d.hold);
    run_posted();
    limiter_unref(l);
}
END_TEST

/* max_concurrent: at most N in flight per key; the next goes when one ends, told at once. */
START_TEST(test_max_concurrent)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("c", RATE_KEY_GLOBAL, 100, 1000, RATE_OVER_DELAY),
        limiter_fixture_rule("r", RATE_KEY_GLOBAL, 100, 1000, RATE_OVER_REJECT)};
    rules[0].max_concurrent = 2;
    rules[0].max_delay_ms = 1000;
    snprintf(rules[0].match_method[0], sizeof rules[0].match_method[0], "GET");
    rules[0].match_method_count = 1;
    rules[1].max_concurrent = 1;
    struct config c = limiter_fixture_config(rules, 2, 1000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct limiter_decision a, b, d;
    int woken = 0;
    ck_assert_int_eq(ask_from(l, "10.0.0.1", NULL, 0, NULL, &a), LIMITER_ADMIT);
    ck_assert_ptr_nonnull(a.flight.window);
    ck_assert_int_eq(ask_from(l, "10.0.0.1", NULL, 0, NULL, &b), LIMITER_ADMIT);
    ck_assert_int_eq(ask_from(l, "10.0.0.1", NULL, 0, &woken, &d), LIMITER_DELAY);
    struct limiter_hold *third = d.hold;
    run_posted();
    ck_assert_uint_eq(limiter_hold_ready(third, 10 * MS), 990 * MS); /* until max_delay */
    limiter_depart(&a.stamp, 5 * MS, NULL);
    ck_assert_uint_gt(limiter_hold_ready(third, 10 * MS), 0); /* departed, still in flight */
    limiter_flight_end(&a.flight, 20 * MS);
    limiter_flight_end(&a.flight, 20 * MS); /* twice changes nothing */
    run_posted();
    ck_assert_int_eq(woken, 1);
    ck_assert_uint_eq(limiter_hold_ready(third, 20 * MS), 0);
    struct limiter_stamp stamp;
    struct limiter_flight flight;
    limiter_hold_go(third, &stamp, &flight);
    ck_assert_ptr_nonnull(flight.window);
    /* two in flight again: the next waits, and past max_delay is refused */
    woken = 0;
    ck_assert_int_eq(ask_from(l, "10.0.0.1", NULL, 30 * MS, &woken, &d), LIMITER_DELAY);
    ck_assert_uint_eq(limiter_hold_ready(d.hold, 1030 * MS), LIMITER_HOLD_EXPIRED);
    limiter_hold_cancel(d.hold);
    limiter_flight_end(&b.flight, 1040 * MS);
    limiter_flight_end(&flight, 1040 * MS);
    limiter_abandon(&b.stamp);
    limiter_abandon(&stamp);
    /* a reject rule refuses over the cap */
    struct sockaddr_in addr = client_addr("10.0.0.1");
    struct limiter_request post = {.client = (struct sockaddr *)&addr, .user = "-", .host = "h",
                                   .port = 80, .method = "POST", .path = "/", .path_len = 1};
    limiter_decide(l, &post, 2000 * MS, &a);
    ck_assert_int_eq(a.verdict, LIMITER_ADMIT);
    limiter_decide(l, &post, 2000 * MS, &d);
    ck_assert_int_eq(d.verdict, LIMITER_REJECT);
    ck_assert_ptr_nonnull(strstr(d.reason, "max_concurrent"));
    limiter_flight_end(&a.flight, 2000 * MS);
    limiter_decide(l, &post, 2000 * MS, &d);
    ck_assert_int_eq(d.verdict, LIMITER_ADMIT);
    limiter_flight_end(&d.flight, 2000 * MS);
    run_posted();
    limiter_unref(l);
}
END_TEST

/* Weights: a client of weight 3 takes three slots for every one of a client of weight 1 while
 * both wait; weight_header names the weight per request, and a bad one is a bad request. */
struct named_headers {
    const char *weight; /* X-Weight, or NULL */
};

static const char *find_named(const void *headers, const char *name, size_t *len)
{
    const struct named_headers *h = headers;
    if (h == NULL || strcasecmp(name, "X-Weight") != 0 || h->weight == NULL)
        return NULL;
    *len = strlen(h->weight);
    return h->weight;
}

static enum limiter_verdict ask_weighted(struct limiter *l, const char *ip, const char *weight,
                                         uint64_t now, struct limiter_decision *d)
{
    struct sockaddr_in a = client_addr(ip);
    struct named_headers h = {weight};
    struct limiter_request r = {.client = (struct sockaddr *)&a, .user = "-", .host = "h",
                                .port = 80, .method = "GET", .path = "/", .path_len = 1,
                                .find_header = find_named, .headers = &h, .depart_later = 1};
    limiter_decide(l, &r, now, d);
    return d->verdict;
}

/* a holds 12, then b 12; slots every 100 ms: the order of the first `n` that go */
static void weighted_order(struct limiter *l, const char *weight_a, char *order, size_t n)
{
    struct limiter_decision d;
    struct limiter_hold *held[24];
    char who[24];
    ck_assert_int_eq(ask_weighted(l, "10.0.0.9", NULL, 0, &d), LIMITER_ADMIT);
    limiter_depart(&d.stamp, 0, NULL);
    for (int i = 0; i < 24; i++) {
        ck_assert_int_eq(ask_weighted(l, i < 12 ? "10.0.0.1" : "10.0.0.2", i < 12 ? weight_a : NULL,
                                      1 * MS, &d),
                         LIMITER_DELAY);
        held[i] = d.hold;
        who[i] = i < 12 ? 'a' : 'b';
    }
    size_t went = 0;
    for (uint64_t t = 100; went < n; t += 100)
        for (int i = 0; i < 24; i++)
            if (held[i] != NULL && limiter_hold_ready(held[i], t * MS) == 0) {
                struct limiter_stamp stamp;
                limiter_hold_go(held[i], &stamp, NULL);
                limiter_depart(&stamp, t * MS, NULL);
                held[i] = NULL;
                order[went++] = who[i];
            }
    order[went] = '\0';
    for (int i = 0; i < 24; i++)
        limiter_hold_cancel(held[i]);
}

START_TEST(test_weighted_turns)
{
    struct fair_weight weights[] = {{"10.0.0.1", 3}};
    struct rate_rule rules[] = {fair_rule(1, 100)};
    rules[0].weights = weights;
    rules[0].weights_count = 1;
    snprintf(rules[0].weight_header, sizeof rules[0].weight_header, "X-Weight");
    struct config c = limiter_fixture_config(rules, 1, 1000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    char order[32];
    weighted_order(l, NULL, order, 12);
    ck_assert_str_eq(order, "aaabaaabaaab");
    limiter_unref(l);
    /* the header's weight instead of the list's */
    l = limiter_new(&c, NULL, NULL);
    weighted_order(l, "2", order, 9);
    ck_assert_str_eq(order, "aabaabaab");
    struct limiter_decision d;
    ck_assert_int_eq(ask_weighted(l, "10.0.0.1", "1001", 10000 * MS, &d), LIMITER_REJECT);
    ck_assert(d.bad_request);
    ck_assert_str_eq(d.bad_header, "X-Weight");
    limiter_unref(l);
}
END_TEST

/* Random arrivals from three clients (one sending 8x the others), random costs, connect times,
 * cancellations, expiries, with and without max_concurrent: no window holds more than limit
 * units at the origin, and every hold is given back. */
START_TEST(test_random_fair_never_exceed)
{
    for (unsigned run = 0; run < 6; run++) {
        uint32_t limit = run % 2 ? 3 : 6;
        unsigned seed = 99 + run;
        struct rate_rule rules[] = {fair_rule(limit, 200)};
        rules[0].max_queue = 100000;
        rules[0].max_concurrent = run >= 3 ? 2 : 0;
        struct config c = limiter_fixture_config(rules, 1, 1000000);
        struct limiter *l = limiter_new(&c, NULL, NULL);
        enum { HELD, ON_THE_WAY };
        struct request {
            int phase, woken;
            uint64_t at;
            struct limiter_hold *hold;
            struct limiter_stamp stamp;
            struct limiter_flight flight;
            uint32_t cost;
            int sent;
        } *reqs = calloc(3000, sizeof *reqs);
        size_t nreqs = 0, nunits = 0;
        uint64_t *units = calloc(3000 * 3, sizeof *units);
        uint64_t now = 0;
        static const char *const costs[] = {"1", "2", "3"};
        for (int step = 0; step < 20000 && nreqs < 3000; step++) {
            now += (uint64_t)(rand_r(&seed) % 10) * MS;
            run_posted();
            for (size_t i = 0; i < nreqs; i++) {
                struct request *q = &reqs[i];
                if (q->phase < 0 || (q->at > now && !(q->phase == HELD && q->woken)))
                    continue;
                if (q->phase == HELD) {
                    q->woken = 0;
                    if (rand_r(&seed) % 40 == 0) {
                        limiter_hold_cancel(q->hold);
                        q->phase = -1;
                        continue;
                    }
                    uint64_t more = limiter_hold_ready(q->hold, now);
                    if (more == LIMITER_HOLD_EXPIRED) {
                        limiter_hold_cancel(q->hold);
                        q->phase = -1;
                        continue;
                    }
                    if (more > 0) {
                        q->at = now + more;
                        continue;
                    }
                    limiter_hold_go(q->hold, &q->stamp, &q->flight);
                    q->phase = ON_THE_WAY;
                    q->at = now + (uint64_t)(rand_r(&seed) % 60) * MS;
                    continue;
                }
                if (q->sent) {
                    limiter_depart(&q->stamp, now, NULL);
                    for (uint32_t u = 0; u < q->cost; u++)
                        units[nunits++] = now;
                } else {
                    limiter_abandon(&q->stamp);
                }
                limiter_flight_end(&q->flight, now);
                q->phase = -1;
            }
            if (rand_r(&seed) % 2 != 0)
                continue;
            unsigned who = rand_r(&seed) % 10;
            const char *ip = who < 8 ? "10.0.0.1" : who == 8 ? "10.0.0.2" : "10.0.0.3";
            struct request *q = &reqs[nreqs++];
            struct limiter_decision d;
            enum limiter_verdict v = ask_from(l, ip, costs[rand_r(&seed) % 3], now, &q->woken, &d);
            q->cost = d.cost;
            q->sent = rand_r(&seed) % 10 != 0;
            if (v == LIMITER_ADMIT) {
                q->stamp = d.stamp;
                q->flight = d.flight;
                q->phase = ON_THE_WAY;
                q->at = now + (uint64_t)(rand_r(&seed) % 20 == 0 ? 150 + rand_r(&seed) % 300
                                                                  : rand_r(&seed) % 60) * MS;
            } else if (v == LIMITER_DELAY) {
                q->hold = d.hold;
                q->phase = HELD;
                q->at = now + d.delay_us;
            } else {
                q->phase = -1;
            }
        }
        for (size_t i = 0; i < nreqs; i++) {
            if (reqs[i].phase == HELD) {
                limiter_hold_cancel(reqs[i].hold);
            } else if (reqs[i].phase == ON_THE_WAY) {
                limiter_abandon(&reqs[i].stamp);
                limiter_flight_end(&reqs[i].flight, now);
            }
        }
        run_posted();
        ck_assert_uint_gt(nunits, 150);
        qsort(units, nunits, sizeof *units, cmp_u64);
        assert_window_invariant(units, nunits, 200 * MS, limit);
        struct limiter_rule_stats st;
        limiter_rule_stats(l, 0, &st);
        ck_assert_uint_eq(st.queued, 0);
        free(units);
        free(reqs);
        limiter_unref(l);
    }
}
END_TEST

/* ---- an operator's reset (POST /limits/RULE/reset) and held requests ------------------------- */

/* Two requests of a global `delay` rule of 2 per second, admitted and departed at t0: the window
 * is full. A third is held, its reservation at t0 + 1 s displacing one of them: its hold. */
static struct limiter_hold *full_window_and_hold(struct limiter *l, uint64_t t0_us)
{
    struct limiter_decision a, b, held;
    ck_assert_int_eq(ask_departing(l, t0_us, &a), LIMITER_ADMIT);
    ck_assert_int_eq(ask_departing(l, t0_us, &b), LIMITER_ADMIT);
    limiter_depart(&a.stamp, t0_us, NULL);
    limiter_depart(&b.stamp, t0_us, NULL);
    ck_assert_int_eq(ask_departing(l, t0_us + 5 * MS, &held), LIMITER_DELAY);
    ck_assert_uint_eq(t0_us + 5 * MS + held.delay_us, t0_us + 1000 * MS);
    return held.hold;
}

static const char *verdict_text(enum limiter_verdict v)
{
    static const char *const text[] = {"unlimited", "admit", "delay", "reject"};
    return (size_t)v < sizeof text / sizeof *text ? text[v] : "?";
}

/* A request of the key that must go at once: admitted, and departed at now_us. */
static void assert_admitted_now(struct limiter *l, uint64_t now_us, const char *which)
{
    struct limiter_decision d;
    enum limiter_verdict v = ask_departing(l, now_us, &d);
    ck_assert_msg(v == LIMITER_ADMIT, "%s request at %llu ms: %s, delay %llu ms (want admit)",
                  which, (unsigned long long)(now_us / MS), verdict_text(v),
                  (unsigned long long)(d.delay_us / MS));
    limiter_depart(&d.stamp, now_us, NULL);
}

/* A request of the key that must wait: the window holds exactly its limit. */
static void assert_held_now(struct limiter *l, uint64_t now_us, const char *which)
{
    struct limiter_decision d;
    enum limiter_verdict v = ask_departing(l, now_us, &d);
    ck_assert_msg(v == LIMITER_DELAY, "%s request at %llu ms: %s (want delay)", which,
                  (unsigned long long)(now_us / MS), verdict_text(v));
    limiter_hold_cancel(d.hold);
}

/* The reset emptied the window of the two entries at t0. The held request, cancelled after it,
 * must not bring back the entry its reservation displaced (the reset removed that entry): the key
 * then has its whole limit again, and no more. */
START_TEST(test_reset_then_cancelled_hold_gives_nothing_back)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("d", RATE_KEY_GLOBAL, 2, 1000, RATE_OVER_DELAY)};
    struct limiter *l = limiter_over(rules, 1);
    const uint64_t t0_us = 5000 * MS;
    struct limiter_hold *held = full_window_and_hold(l, t0_us);
    ck_assert_int_eq(limiter_reset_window(l, 0, "", 0, t0_us + 10 * MS), 0);
    limiter_hold_cancel(held); /* its client went away */
    assert_admitted_now(l, t0_us + 20 * MS, "first");
    assert_admitted_now(l, t0_us + 20 * MS, "second");
    assert_held_now(l, t0_us + 20 * MS, "third"); /* the limit still holds: 2 in the window */
    limiter_unref(l);
}
END_TEST

/* The reset keeps the held request's reservation: not cancelled, it goes at its time and counts,
 * so just after it only limit - 1 more go at once. */
START_TEST(test_reset_then_held_request_goes_and_counts)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("d", RATE_KEY_GLOBAL, 2, 1000, RATE_OVER_DELAY)};
    struct limiter *l = limiter_over(rules, 1);
    const uint64_t t0_us = 5000 * MS;
    struct limiter_hold *held = full_window_and_hold(l, t0_us);
    ck_assert_int_eq(limiter_reset_window(l, 0, "", 0, t0_us + 10 * MS), 0);
    const uint64_t its_time_us = t0_us + 1000 * MS;
    ck_assert_uint_eq(limiter_hold_ready(held, its_time_us), 0);
    struct limiter_stamp stamp;
    limiter_hold_go(held, &stamp, NULL);
    limiter_depart(&stamp, its_time_us, NULL);
    assert_admitted_now(l, its_time_us + 10 * MS, "first");
    assert_held_now(l, its_time_us + 10 * MS, "second"); /* the held request is the other one */
    limiter_unref(l);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("limiter");
    unit_add_tcase(
        s, tcase_create("windows"),
        UNIT_TESTS(test_reject_exact, test_random_arrivals_never_exceed,
                   test_delay_reserves_in_order, test_cancel_gives_slot_back,
                   test_late_release_propagates, test_random_delays_and_cancels_never_exceed,
                   test_matching_first_rule_wins, test_host_key_ignores_case,
                   test_header_values_get_own_windows, test_host_header_key, test_header_key_text,
                   test_reload_header_name, test_expiry_and_key_cap, test_key_count_per_limiter,
                   test_reload_keeps_unchanged_rules, test_two_threads_one_key,
                   test_remaining_and_reset, test_departure_moves_entry,
                   test_pending_entry_never_expires, test_random_departures_never_exceed,
                   test_learned_quota_holds_until_reset,
                   test_learned_budget_counts_requests_in_flight,
                   test_learned_answers_out_of_counting_order,
                   test_learned_quota_outlives_expiry_at_reset, test_learned_pause_scoped_to_key,
                   test_cancelled_reservation_keeps_what_it_followed,
                   test_cancelled_reservation_puts_back_departure, test_cost_takes_units,
                   test_cost_holds_and_cancels, test_random_costs_never_exceed,
                   test_dry_run_counts_and_lets_through, test_fair_release_round_robin,
                   test_cancelled_hold_moves_queue_up, test_max_concurrent, test_weighted_turns,
                   test_random_fair_never_exceed));
    unit_add_tcase(s, tcase_create("reset"),
                   UNIT_TESTS(test_reset_then_cancelled_hold_gives_nothing_back,
                              test_reset_then_held_request_goes_and_counts));
    return unit_run(s);
}
