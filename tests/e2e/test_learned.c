/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_learned.c — limits as the API sees them (issue 16, upstream_limits: follow), end to end:
 * the test origin's /api enforces its own limit per token (10 requests per fixed 2 s window,
 * aligned to the clock) and announces it in one vendor's header family (GitHub, X, Reddit,
 * OpenAI, the IETF fields). rlproxy's rule is far looser (100 per 1 s, keyed by Authorization),
 * so only what the origin says can keep the clients under the origin's limit. Clients offer 3x
 * the origin's limit per token for 3 s, then wait for their answers.
 *   1. Every client request ends 200 (held, never refused); the origin hands out at most one 429
 *      per token; the windows in which a token's clients were backlogged are >= 90% used.
 *   2. With upstream_limits: ignore the same run gets the origin's 429s (the test can fail).
 * The windows are the origin's own count, so no timing of rlproxy's decides a result. */
#include "harness.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* getpid */

#define LIMIT 10     /* the origin's: requests per window per token */
#define WINDOW_S 2   /* its window */
#define PER_TOKEN 45 /* requests each token's clients send */
#define TOKENS 2     /* per family */
#define OFFER_MS (1000 * WINDOW_S / (3 * LIMIT)) /* 3x the origin's rate */

static const char *const families[] = {"github", "x", "reddit", "openai", "ietf"};
#define FAMILIES (sizeof families / sizeof families[0])
#define CLIENTS (FAMILIES * TOKENS * PER_TOKEN)

static size_t discard(char *data, size_t size, size_t n, void *arg) { return size * n; }

struct client {
    CURL *h;
    struct curl_slist *headers;
    long status;
    CURLcode rc;
};

/* Every token's requests, one every OFFER_MS from t0, each on its own connection through the
 * proxy; waits for all the answers (bounded). statuses filled in order. */
static void run_clients(struct proxy *p, const struct origin *o, struct client *c)
{
    CURLM *m = curl_multi_init();
    uint64_t t0 = now_ms();
    size_t added = 0, done = 0;
    uint64_t give_up = t0 + 60000;
    while (done < CLIENTS && now_ms() < give_up) {
        /* the j-th request of every token goes at t0 + j * OFFER_MS */
        while (added < CLIENTS && now_ms() >= t0 + (added / (FAMILIES * TOKENS)) * OFFER_MS) {
            size_t token = added % (FAMILIES * TOKENS), j = added / (FAMILIES * TOKENS);
            const char *family = families[token / TOKENS];
            char url[256], auth[128];
            snprintf(url, sizeof url,
                     "http://127.0.0.1:%d/api?family=%s&limit=%d&window=%d&j=%zu", o->port,
                     family, LIMIT, WINDOW_S, j);
            snprintf(auth, sizeof auth, "Authorization: Bearer %s-%zu-%d", family,
                     token % TOKENS, (int)getpid());
            struct client *cl = &c[added];
            cl->h = curl_easy_init();
            cl->headers = curl_slist_append(NULL, auth);
            curl_easy_setopt(cl->h, CURLOPT_URL, url);
            curl_easy_setopt(cl->h, CURLOPT_PROXY, "127.0.0.1");
            curl_easy_setopt(cl->h, CURLOPT_PROXYPORT, (long)p->port);
            curl_easy_setopt(cl->h, CURLOPT_HTTPHEADER, cl->headers);
            curl_easy_setopt(cl->h, CURLOPT_WRITEFUNCTION, discard);
            curl_easy_setopt(cl->h, CURLOPT_TIMEOUT_MS, 50000L);
            curl_easy_setopt(cl->h, CURLOPT_FORBID_REUSE, 1L);
            curl_easy_setopt(cl->h, CURLOPT_PRIVATE, cl);
            curl_multi_add_handle(m, cl->h);
            added++;
        }
        int running = 0;
        curl_multi_perform(m, &running);
        for (struct multi_done d; multi_next_done(m, &d); done++) {
            struct client *cl = d.private;
            cl->rc = d.result;
            cl->status = d.status;
            curl_multi_remove_handle(m, d.easy);
        }
        curl_multi_poll(m, NULL, 0, 10, NULL);
    }
    for (size_t i = 0; i < added; i++) {
        curl_multi_remove_handle(m, c[i].h);
        curl_easy_cleanup(c[i].h);
        curl_slist_free_all(c[i].headers);
    }
    curl_multi_cleanup(m);
    ck_assert_msg(done == CLIENTS, "%zu of %zu clients got an answer within 60 s", done,
                  (size_t)CLIENTS);
}

struct token_figures {
    long limited;           /* the origin's 429s */
    long served;            /* its 200s */
    long backlogged_windows; /* windows strictly between the token's first and last */
    long backlogged_served;
};

/* What the origin counted for one token: 429s, and its windows as [start, served] pairs. */
static struct token_figures token_figures(const struct origin *o, const char *family, size_t i)
{
    char path[200];
    snprintf(path, sizeof path, "/api/stats?token=Bearer%%20%s-%zu-%d", family, i, (int)getpid());
    char *json = origin_get(o, path);
    struct token_figures t = {0, 0, 0, 0};
    long long limited = -1;
    ck_assert_msg(json_get_int(json, "limited", &limited) == 0, "/api/stats: %s", json);
    t.limited = (long)limited;
    /* "windows":[[start,served],...] */
    const char *w = strstr(json, "\"windows\":[");
    ck_assert_msg(w != NULL, "/api/stats: %s", json);
    w += strlen("\"windows\":[");
    long starts[64], served[64];
    size_t n = 0;
    while (n < 64 && sscanf(w, "[%ld,%ld]", &starts[n], &served[n]) == 2) {
        t.served += served[n++];
        w = strchr(w, ']');
        w = w != NULL ? w + 1 : "";
        if (*w == ',')
            w++;
    }
    free(json);
    /* the first and last windows are only partly backlogged: the clients start and end there;
     * the windows between must each have been used to the origin's limit */
    for (size_t k = 1; k + 1 < n; k++) {
        t.backlogged_windows++;
        t.backlogged_served += served[k];
        ck_assert_msg(starts[k] == starts[k - 1] + WINDOW_S,
                      "%s token %zu: no request in the window at %ld (backlogged)", family, i,
                      starts[k - 1] + WINDOW_S);
    }
    return t;
}

static struct proxy *start_proxy(const char *upstream_limits)
{
    return proxy_startf("access:\n  max_connections_per_client: 0\n"
                        "retry:\n  deadline: 60s\n"
                        "rate_limits:\n"
                        "  - name: api\n"
                        "    match: { host: \"127.0.0.1\" }\n"
                        "    key: header:Authorization\n"
                        "    limit: 100\n"
                        "    window: 1s\n"
                        "    over_limit: delay\n"
                        "    max_delay: 30s\n"
                        "    upstream_limits: %s\n",
                        upstream_limits);
}

/* An origin, a proxy with upstream_limits set so, and every client's requests run through it */
struct run {
    struct origin *o;
    struct proxy *p;
    struct client *c; /* the clients' results */
};

static struct run start_and_run(const char *upstream_limits)
{
    struct run r = {.o = origin_start(0)};
    r.p = start_proxy(upstream_limits);
    r.c = calloc(CLIENTS, sizeof *r.c);
    ck_assert_ptr_nonnull(r.c);
    run_clients(r.p, r.o, r.c);
    return r;
}

static void stop_after_run(struct run r)
{
    free(r.c);
    proxy_stop_with_origin(r.p, r.o);
}

/* The 429s the origin answered, over every family's tokens */
static long origin_429s(const struct origin *o)
{
    long limited = 0;
    for (size_t f = 0; f < FAMILIES; f++)
        for (size_t t = 0; t < TOKENS; t++)
            limited += token_figures(o, families[f], t).limited;
    return limited;
}

START_TEST(test_follow_every_family)
{
    struct run r = start_and_run("follow");
    size_t not_ok = 0;
    for (size_t i = 0; i < CLIENTS; i++)
        not_ok += r.c[i].rc != CURLE_OK || r.c[i].status != 200;
    for (size_t f = 0; f < FAMILIES; f++) {
        long limited = 0, windows = 0, served_in = 0, served = 0;
        for (size_t t = 0; t < TOKENS; t++) {
            struct token_figures fig = token_figures(r.o, families[f], t);
            ck_assert_msg(fig.limited <= 1, "%s token %zu got %ld 429s from the origin",
                          families[f], t, fig.limited);
            limited += fig.limited;
            windows += fig.backlogged_windows;
            served_in += fig.backlogged_served;
            served += fig.served;
        }
        double used = windows > 0 ? 100.0 * (double)served_in / (double)(windows * LIMIT) : 0;
        printf("learned [%s]: %d tokens x %d requests: %ld served, %ld 429s from the origin, "
               "backlogged windows %.1f%% used (%ld requests in %ld windows of %d)\n",
               families[f], TOKENS, PER_TOKEN, served, limited, used, served_in, windows, LIMIT);
        ck_assert_msg(windows >= 2 && used >= 90.0,
                      "%s: the backlogged windows were %.1f%% used (%ld of %ld), want >= 90%%",
                      families[f], used, served_in, windows * LIMIT);
    }
    ck_assert_msg(not_ok == 0, "%zu of %zu client requests did not end 200", not_ok,
                  (size_t)CLIENTS);
    ck_assert_msg(proxy_metric(r.p, "rlproxy_upstream_pause_decisions_total") > 0,
                  "nothing was held for what the origin said");
    stop_after_run(r);
}
END_TEST

/* The same run with the origin's word ignored: the rule alone (100 per 1 s) lets the clients
 * through and the origin refuses most of them. Shows the first test measures what it claims. */
START_TEST(test_ignore_gets_the_origins_429s)
{
    struct run r = start_and_run("ignore");
    long limited = origin_429s(r.o);
    printf("learned, ignored: %ld 429s from the origin for %zu requests\n", limited,
           (size_t)CLIENTS);
    ck_assert_msg(limited > (long)(FAMILIES * TOKENS), "only %ld 429s with upstream_limits: ignore",
                  limited);
    stop_after_run(r);
}
END_TEST

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    Suite *s = suite_create("learned");
    TCase *tc = harness_tcase("learned", 180);
    tcase_add_test(tc, test_follow_every_family);
    tcase_add_test(tc, test_ignore_gets_the_origins_429s);
    suite_add_tcase(s, tc);
    return harness_run_suite(s);
}
