/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_ratelimit.c — the sliding-window limiter end to end (issue 4), through a real rlproxy to the
 * real test origin, judged on the arrival times the origin records (its /log "mono" field,
 * CLOCK_MONOTONIC like now_ms()) and on the clients' own send and answer times:
 *   1. exactness: with 4× the limit sent for 5 windows, no interval shorter than the window holds
 *      more than `limit` arrivals at the origin (less JITTER_MS), nor, proven from the clients'
 *      times with no tolerance, more than `limit` decisions; the admitted count is at least 99% of
 *      what the window allows (minus one window at the edges); every other answer is a 429; the
 *      same under a flood (100×);
 *   2. delay: held requests are released in arrival order, each within 25 ms (median 10 ms) of
 *      the time its slot frees (the distribution is printed), never before; a held request whose
 *      client went away gives its slot back and leaves the queue gauge;
 *   3. 429: body naming the rule, Retry-After = the real time until a slot frees (rounded up),
 *      RateLimit-Policy / RateLimit fields, `headers: true` on admitted responses; max_delay and
 *      max_queue overflow answer 429 at once;
 *   4. CONNECT tunnels count against the rule matching their host;
 *   keys: client (a second client bound to 127.0.0.2), host (127.0.0.1 vs localhost), client+host;
 *   7. reload: an unchanged rule keeps its window, a changed limit starts a new one;
 *   8. access-log fields limit=/wait= and /metrics counters match what was sent, exactly;
 *   first matching rule wins, and a request no rule matches is never limited. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define T_MS 10000
#define RELOAD_WAIT_MS 5000

/* The origin stamps a request once it has read its head; the limiter decided a moment earlier in
 * rlproxy, and the forwarding (libevent → libcurl → loopback → a Python thread waking up) takes a
 * variable time. Two admissions exactly one window apart can therefore be recorded up to that
 * variation less than a window apart. 5 ms is far above what loopback jitter is on an idle
 * machine (well under 1 ms) and far below the spacing a broken window would produce (a fixed
 * window or an off-by-one admits the extra request at any point of the window). The delay tests
 * use it too, for the granularity of rlproxy's timers (libevent's coarse clock ticks: 4 ms). */
#define JITTER_MS 5.0

/* ---- clocks ---------------------------------------------------------------------------------- */

/* ---- clients that threads may use (no ck_assert inside) -------------------------------------- */

/* A request on a fresh connection from src (NULL: any) to host:port through the proxy; fails
 * the test unless a response arrives. Returns the status. */
static int fresh_req(int proxy_port, const char *src, const char *method, const char *host,
                     int port, const char *path, struct http_response *r)
{
    struct raw *c = raw_connect_src(proxy_port, src);
    int rc = raw_request_on(c, method, host, port, path, r, T_MS);
    raw_close(c);
    ck_assert_msg(rc == RAW_OK, "%s http://%s:%d%s from %s: %s", method, host, port, path,
                  src ? src : "127.0.0.1", raw_result_name(rc));
    return r->status;
}

static int fresh_get(int proxy_port, const char *src, const char *host, int port, const char *path,
                     struct http_response *r)
{
    return fresh_req(proxy_port, src, "GET", host, port, path, r);
}

/* fresh_req to the origin by address, the response discarded */
static int status_of(int proxy_port, const char *method, const struct origin *o, const char *path)
{
    struct http_response r;
    int status = fresh_req(proxy_port, NULL, method, "127.0.0.1", o->port, path, &r);
    http_response_free(&r);
    return status;
}

/* ---- the RateLimit fields -------------------------------------------------------------------- */

struct ratelimit {
    char policy_name[64], name[64];
    long q, w, r, t;
};

/* Parses `RateLimit-Policy: "name";q=Q;w=W` and `RateLimit: "name";r=R;t=T`; fails the test unless
 * both are present, well formed and name the same rule. */
static void parse_ratelimit(const struct http_response *r, struct ratelimit *rl)
{
    memset(rl, 0, sizeof *rl);
    const char *policy = resp_header(r, "RateLimit-Policy", 0);
    const char *limit = resp_header(r, "RateLimit", 0);
    ck_assert_msg(policy != NULL && limit != NULL, "no RateLimit-Policy/RateLimit in a %d response",
                  r->status);
    int used = -1;
    ck_assert_msg(
        sscanf(policy, "\"%63[^\"]\";q=%ld;w=%ld%n", rl->policy_name, &rl->q, &rl->w, &used) == 3 &&
            used == (int)strlen(policy),
        "RateLimit-Policy not \"name\";q=N;w=N: %s", policy);
    used = -1;
    ck_assert_msg(sscanf(limit, "\"%63[^\"]\";r=%ld;t=%ld%n", rl->name, &rl->r, &rl->t, &used) ==
                          3 &&
                      used == (int)strlen(limit),
                  "RateLimit not \"name\";r=N;t=N: %s", limit);
    ck_assert_msg(strcmp(rl->name, rl->policy_name) == 0, "RateLimit names %s, the policy %s",
                  rl->name, rl->policy_name);
    ck_assert_int_eq(hdr_count(r->headers, r->nheaders, "RateLimit-Policy"), 1);
    ck_assert_int_eq(hdr_count(r->headers, r->nheaders, "RateLimit"), 1);
}

static long retry_after(const struct http_response *r)
{
    const char *v = resp_header(r, "Retry-After", 0);
    ck_assert_msg(v != NULL, "a %d response without Retry-After", r->status);
    char *end;
    long s = strtol(v, &end, 10);
    ck_assert_msg(end != v && *end == '\0' && s >= 0, "Retry-After is not delay-seconds: %s", v);
    return s;
}

/* Checks a 429 from rule `name`: status line, body naming the rule (and saying why when `why` is
 * not NULL), Retry-After, RateLimit-Policy q/w, RateLimit r=0 with t equal to Retry-After. */
static long expect_429(const struct http_response *r, const char *name, long q, long w,
                       const char *why)
{
    ck_assert_msg(r->status == 429, "status %d, want 429 from rule %s; body: %s", r->status, name,
                  r->body);
    ck_assert_str_eq(r->reason, "Too Many Requests");
    char quoted[80];
    snprintf(quoted, sizeof quoted, "\"%s\"", name);
    ck_assert_msg(strstr(r->body, quoted) != NULL, "429 body does not name rule %s: %s", quoted,
                  r->body);
    if (why != NULL)
        ck_assert_msg(strstr(r->body, why) != NULL, "429 body does not say \"%s\": %s", why,
                      r->body);
    long ra = retry_after(r);
    ck_assert_msg(ra >= 1, "Retry-After %ld", ra);
    struct ratelimit rl;
    parse_ratelimit(r, &rl);
    ck_assert_str_eq(rl.name, name);
    ck_assert_int_eq(rl.q, q);
    ck_assert_int_eq(rl.w, w);
    ck_assert_int_eq(rl.r, 0);
    ck_assert_msg(rl.t == ra, "RateLimit t=%ld but Retry-After %ld", rl.t, ra);
    return ra;
}

/* ---- the origin's log ------------------------------------------------------------------------ */

/* ---- /metrics -------------------------------------------------------------------------------- */

static long long limiter_metric(struct proxy *p, const char *family, const char *rule,
                                const char *decision)
{
    char series[256];
    if (decision != NULL)
        snprintf(series, sizeof series, "%s{rule=\"%s\",decision=\"%s\"}", family, rule, decision);
    else
        snprintf(series, sizeof series, "%s{rule=\"%s\"}", family, rule);
    long long v = proxy_metric(p, series);
    ck_assert_msg(v >= 0, "series %s missing from /metrics", series);
    return v;
}

static long long decisions(struct proxy *p, const char *rule, const char *decision)
{
    return limiter_metric(p, "rlproxy_limiter_decisions_total", rule, decision);
}

static long long queued(struct proxy *p, const char *rule)
{
    return limiter_metric(p, "rlproxy_limiter_queued", rule, NULL);
}

/* Polls (bounded) until rlproxy_limiter_queued{rule} is want; returns the last value */
static long long wait_queued(struct proxy *p, const char *rule, long long want, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    long long v;
    while ((v = queued(p, rule)) != want && now_ms() < deadline)
        sleep_ms(10);
    return v;
}

static void expect_decisions(struct proxy *p, const char *rule, long long admitted,
                             long long delayed, long long rejected)
{
    long long a = decisions(p, rule, "admitted"), d = decisions(p, rule, "delayed"),
              r = decisions(p, rule, "rejected");
    ck_assert_msg(a == admitted && d == delayed && r == rejected,
                  "rlproxy_limiter_decisions_total{rule=\"%s\"}: admitted %lld delayed %lld "
                  "rejected %lld; want %lld %lld %lld",
                  rule, a, d, r, admitted, delayed, rejected);
}

/* ---- the access log -------------------------------------------------------------------------- */

static void access_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/ratelimit-access-%d-%s.log", harness_tmpdir(), (int)getpid(), name);
}

/* Polls (bounded) until the access log has want lines containing needle; returns the count.
 * rlproxy writes a line as it finishes a response, which may be just after the client read it. */
static size_t wait_access_lines(const char *path, const char *needle, size_t want)
{
    uint64_t deadline = now_ms() + 3000;
    size_t n;
    while ((n = file_lines_with(path, needle, NULL, NULL, 0)) < want && now_ms() < deadline)
        sleep_ms(10);
    return n;
}

/* ---- 1. exactness ---------------------------------------------------------------------------- */

/* Timing on a shared machine: other processes can hold a CPU for tens of milliseconds, which
 * delays a request on its way to the origin (or a client's send) by as much. The checks that read
 * arrival times therefore run up to ATTEMPTS times, each on a fresh rlproxy and origin, and fail
 * only if no attempt passes: a limiter that is wrong is wrong every time, noise rarely strikes
 * thrice. Checks that noise cannot break (counts, statuses, the client-side proof of exactness
 * below) fail the first attempt that breaks them. */
#define ATTEMPTS 3

/* threads clients send GET prefix?t=..&j=.. from start to end, each every period (the harness's
 * load_run, spans kept); results summed into total (free total->admitted) */
static void run_load(struct proxy *p, struct origin *o, const char *prefix, int threads,
                     uint64_t start, uint64_t end, uint64_t period, struct load *total)
{
    struct load l[16];
    load_run(&p, &prefix, 1, o, threads, start, end, period, LOAD_KEEP_SPANS, l);
    *total = load_sum(l, threads, 1, -1);
}

static int by_sent(const void *a, const void *b)
{
    uint64_t x = ((const struct span *)a)->sent_us, y = ((const struct span *)b)->sent_us;
    return x < y ? -1 : x > y;
}

/* Rule `name` (key global, limit 10, window 500 ms, reject) under 4 client threads for 5 windows,
 * each thread sending one request every `period` (so 4 × window/period requests per window).
 * Returns 1 when the timing checks passed, else 0 with the reason in why. */
static int exactness_attempt(const char *name, uint64_t period_us, int flood, char *why,
                             size_t why_len)
{
    enum { L = 10, W = 500, THREADS = 4, WINDOWS = 5 };
    char acc[600], prefix[64];
    access_path(acc, sizeof acc, name);
    unlink(acc);
    snprintf(prefix, sizeof prefix, "/bytes/1/%s", name);
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("workers: 2\n"
                                   "log:\n  access: \"%s\"\n"
                                   "rate_limits:\n"
                                   "  - name: %s\n"
                                   "    match: { path_prefix: \"%s\" }\n"
                                   "    key: global\n"
                                   "    limit: %d\n"
                                   "    window: %dms\n"
                                   "    over_limit: reject\n",
                                   acc, name, prefix, L, W);
    struct load total;
    /* warm up (no rule matches): rlproxy's workers open their upstream connections now, so the
     * measured run sees steady forwarding times */
    uint64_t t = now_us();
    run_load(p, o, "/bytes/1/warm", THREADS, t, t + 150000, 5000, &total);
    free(total.admitted);
    ck_assert_msg(total.errors == 0 && total.other == 0 && total.ok == total.sent,
                  "warm-up: %ld sent, %ld ok, %ld errors (%s)", total.sent, total.ok, total.errors,
                  total.error);

    uint64_t start = now_us() + 50000, duration_us = (uint64_t)WINDOWS * W * 1000;
    run_load(p, o, prefix, THREADS, start, start + duration_us, period_us, &total);
    ck_assert_msg(total.errors == 0, "%ld requests failed; first: %s", total.errors, total.error);
    ck_assert_msg(total.other == 0, "%ld answers neither 200 nor 429 (e.g. %d)", total.other,
                  total.other_status);
    ck_assert_int_eq(total.ok + total.limited, total.sent);
    size_t n = (size_t)total.ok;
    ck_assert_msg(n > L, "only %zu admitted", n);

    /* The proof that needs no tolerance: rlproxy decided on each admitted request between the
     * moment the client sent it and the moment the answer was back. Of L+1 admitted requests
     * (consecutive by send time), the first was decided at or after its send, the last at or
     * before the latest answer among them: if those two moments are less than a window apart,
     * L+1 admissions fell inside one window. Noise only widens the bracket. */
    qsort(total.admitted, n, sizeof *total.admitted, by_sent);
    double proof_min = 1e18;
    for (size_t i = 0; i + L < n; i++) {
        uint64_t last = 0;
        for (size_t j = i; j <= i + L; j++)
            if (total.admitted[j].answered_us > last)
                last = total.admitted[j].answered_us;
        double span = (double)(last - total.admitted[i].sent_us) / 1000.0;
        if (span < proof_min)
            proof_min = span;
    }
    free(total.admitted);
    ck_assert_msg(proof_min >= W,
                  "%d admissions were decided within %.3f ms (window %d ms): client-side bracket",
                  L + 1, proof_min, W);

    /* The origin's view: every L+1 consecutive arrivals span at least a window, less the
     * forwarding jitter (JITTER_MS) */
    struct arrival *a;
    ck_assert_uint_eq(origin_arrivals(o, prefix, &a), n);
    size_t worst = 0;
    double min_span = arrivals_min_span(a, n, L, &worst);
    double d_ms = (double)duration_us / 1000.0, ideal = (double)L * d_ms / W;
    fprintf(stderr,
            "ratelimit exactness [%s]: %ld requests in %.0f ms (%.1f× the limit), %zu admitted "
            "(%.1f%% of limit×duration/window = %.0f), %ld answered 429; shortest span of %d "
            "admissions: %.2f ms at the origin, %.2f ms client-side upper bound (window %d ms)\n",
            name, total.sent, d_ms, (double)total.sent / ideal, n, 100.0 * (double)n / ideal, ideal,
            total.limited, L + 1, min_span, proof_min, W);
    int timing_ok = 1;
    if (min_span < W - JITTER_MS) {
        snprintf(why, why_len,
                 "%d admissions reached the origin within %.2f ms (window %d ms): arrivals "
                 "%zu..%zu at %.2f..%.2f ms",
                 L + 1, min_span, W, worst, worst + L, a[worst].ms - a[0].ms,
                 a[worst + L].ms - a[0].ms);
        timing_ok = 0;
    }
    /* Throughput. Paced at 4× (the load): at least 99% of limit × duration / window, less
     * one window's worth (L) for the edges: a slot that frees is only taken by the next request to
     * arrive, up to one sending period later, and the run ends mid-window.
     *   admitted >= floor(0.99 × L × D / W) − L   (= 39 for D = 5 windows)
     * Flood (a request every 0.5 ms overall): the first L go at once and each slot is taken again
     * within a fraction of a ms of freeing, so every one of the D/W windows is used in full:
     *   admitted >= L × floor(D / W)              (= 50) */
    long bound = flood ? (long)L * (long)(d_ms / W) : (long)floor(0.99 * ideal) - L;
    if ((long)n < bound) {
        snprintf(why, why_len, "%zu admitted in %.0f ms, want at least %ld", n, d_ms, bound);
        timing_ok = 0;
    }
    free(a);

    /* 8. every decision in the access log and in /metrics, exactly */
    char admit[96], reject[96];
    snprintf(admit, sizeof admit, " limit=admit:%s wait=0ms", name);
    snprintf(reject, sizeof reject, " limit=reject:%s wait=0ms", name);
    ck_assert_uint_eq(wait_access_lines(acc, admit, n), n);
    ck_assert_uint_eq(wait_access_lines(acc, reject, (size_t)total.limited), (size_t)total.limited);
    ck_assert_uint_eq(file_lines_with(acc, " limit=admit:", NULL, NULL, 0), n);
    ck_assert_uint_eq(file_lines_with(acc, " limit=reject:", NULL, NULL, 0), (size_t)total.limited);
    ck_assert_uint_eq(file_lines_with(acc, " 429 ", NULL, NULL, 0), (size_t)total.limited);
    expect_decisions(p, name, (long long)n, 0, total.limited);
    proxy_stop_with_origin(p, o);
    return timing_ok;
}

static void exactness_run(const char *name, uint64_t period_us, int flood)
{
    char why[400] = "";
    for (int attempt = 1; attempt <= ATTEMPTS; attempt++) {
        if (exactness_attempt(name, period_us, flood, why, sizeof why))
            return;
        fprintf(stderr, "ratelimit exactness [%s]: attempt %d of %d: %s\n", name, attempt, ATTEMPTS,
                why);
    }
    ck_abort_msg("exactness [%s], %d attempts: %s", name, ATTEMPTS, why);
}

START_TEST(test_exact_window_4x)
{
    /* 4 threads × one request per 48 ms = 41.7 per 500 ms window: about 4× the limit. Not 50 ms:
     * then the requests would fall on a 12.5 ms grid that the window (40 steps) maps onto itself,
     * and every freed slot would be met by a request arriving exactly as it frees — a limiter that
     * admitted a few ms early would go unnoticed. With 12 ms steps the arrivals sweep across the
     * moments the slots free. */
    exactness_run("paced", 48000, 0);
}
END_TEST

START_TEST(test_exact_window_flood)
{
    /* 4 threads × one request per 2 ms = 1000 per window: 100× the limit */
    exactness_run("flood", 2000, 1);
}
END_TEST

/* ---- 2. delay -------------------------------------------------------------------------------- */

/* Requests #1..#15 leave the clients STAGGER_MS apart, so their order of arrival at rlproxy is
 * known (the checks use the times they were actually sent). Not 2 ms: rlproxy's timers run on
 * libevent's default clock, CLOCK_MONOTONIC_COARSE (4 ms ticks at HZ=250), so two slots 2 ms apart
 * are often released in the same tick, and on two workers in either order (measured: the origin
 * then sees e.g. 7 before 6), and a loaded machine adds its own milliseconds. At 20 ms an
 * out-of-order release is a real one. */
enum { HELD = 15, STAGGER_MS = 20 };

struct held {
    int proxy_port, origin_port, index; /* 1-based */
    struct raw *c;
    pthread_barrier_t *warm, *go;
    const uint64_t *t0; /* set by the test between the barriers */
    uint64_t sent_us, done_us;
    int status, rc;
};

static void *held_thread(void *arg)
{
    struct held *h = arg;
    struct http_response r;
    /* warm-up on the same connection, all at once: rlproxy opens its upstream connections now */
    h->rc = raw_request_on(h->c, "GET", "127.0.0.1", h->origin_port, "/bytes/1/warm", &r, T_MS);
    http_response_free(&r);
    pthread_barrier_wait(h->warm);
    pthread_barrier_wait(h->go);
    if (h->rc != RAW_OK)
        return NULL;
    char path[64];
    snprintf(path, sizeof path, "/bytes/1/hold?i=%d", h->index);
    sleep_until_us(*h->t0 + (uint64_t)(h->index - 1) * STAGGER_MS * 1000); /* in index order */
    h->sent_us = now_us();
    h->rc = raw_request_on(h->c, "GET", "127.0.0.1", h->origin_port, path, &r, 8000);
    h->done_us = now_us();
    h->status = r.status;
    http_response_free(&r);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const struct held *g_sort_held;
static int by_held_sent(const void *a, const void *b)
{
    uint64_t x = g_sort_held[*(const int *)a].sent_us, y = g_sort_held[*(const int *)b].sent_us;
    return x < y ? -1 : x > y;
}

/* One run: 15 requests, limit 5 per second, over_limit delay. Functional and noise-proof checks
 * fail the test at once; the timing checks return 0 with the reason in why. */
static int delay_attempt(char *why, size_t why_len)
{
    enum { L = 5, W = 1000, NH = HELD - L };
    char acc[600];
    access_path(acc, sizeof acc, "hold");
    unlink(acc);
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("log:\n  access: \"%s\"\n"
                                   "rate_limits:\n"
                                   "  - name: hold5\n"
                                   "    match: { path_prefix: \"/bytes/1/hold\" }\n"
                                   "    key: global\n"
                                   "    limit: %d\n"
                                   "    window: 1s\n"
                                   "    over_limit: delay\n"
                                   "    max_delay: 5s\n",
                                   acc, L);
    struct held h[HELD];
    pthread_t tid[HELD];
    pthread_barrier_t warm, go;
    uint64_t t0 = 0;
    pthread_barrier_init(&warm, NULL, HELD + 1);
    pthread_barrier_init(&go, NULL, HELD + 1);
    for (int i = 0; i < HELD; i++) {
        h[i] = (struct held){.proxy_port = p->port,
                             .origin_port = o->port,
                             .index = i + 1,
                             .c = raw_connect_src(p->port, NULL),
                             .warm = &warm,
                             .go = &go,
                             .t0 = &t0};
        ck_assert(pthread_create(&tid[i], NULL, held_thread, &h[i]) == 0);
    }
    pthread_barrier_wait(&warm);
    t0 = now_us() + 50000;
    pthread_barrier_wait(&go);
    for (int i = 0; i < HELD; i++) {
        pthread_join(tid[i], NULL);
        raw_close(h[i].c);
    }
    pthread_barrier_destroy(&warm);
    pthread_barrier_destroy(&go);
    for (int i = 0; i < HELD; i++)
        ck_assert_msg(h[i].rc == RAW_OK && h[i].status == 200, "request #%d: %s, status %d", i + 1,
                      raw_result_name(h[i].rc), h[i].status);

    struct arrival *a;
    size_t n = origin_arrivals(o, "/bytes/1/hold?i=", &a);
    ck_assert_msg(n == HELD, "the origin saw %zu of the %d requests", n, HELD);
    double at[HELD];
    for (size_t k = 0; k < n; k++) {
        int i = atoi(a[k].target + strlen("/bytes/1/hold?i="));
        ck_assert(i >= 1 && i <= HELD);
        at[i - 1] = a[k].ms;
    }
    free(a);

    /* In the order rlproxy got them (by the time each was sent): the first 5 go at once, the
     * other 10 are held. The r-th held one (r = 0..9) takes the r-th slot to free: one window
     * after the (r mod 5)-th admission for r < 5, two windows after it for r >= 5 — t0 + 1 s and
     * t0 + 2 s with t0 the first five's admissions. */
    int ord[HELD];
    for (int i = 0; i < HELD; i++)
        ord[i] = i;
    g_sort_held = h;
    qsort(ord, HELD, sizeof ord[0], by_held_sent);
    for (int r = 0; r < HELD; r++) {
        double answered = (double)(h[ord[r]].done_us - h[ord[r]].sent_us) / 1000.0;
        ck_assert_msg((r < L) == (answered < W / 2), "#%d (sent %d-th) answered after %.1f ms",
                      ord[r] + 1, r + 1, answered);
    }
    /* admission times of the first five: at the origin (same forwarding delay as a release) and
     * the client's lower bound (the moment it sent them) */
    double adm_origin[L], adm_sent[L];
    for (int r = 0; r < L; r++) {
        adm_origin[r] = at[ord[r]];
        adm_sent[r] = (double)h[ord[r]].sent_us / 1000.0;
    }
    qsort(adm_origin, L, sizeof adm_origin[0], cmp_double);
    qsort(adm_sent, L, sizeof adm_sent[0], cmp_double);

    char table[2000] = "", list[400] = "";
    for (int r = 0; r < HELD; r++) {
        int i = ord[r];
        snprintf(table + strlen(table), sizeof table - strlen(table),
                 "  #%-2d sent %+8.3f ms, at the origin %+9.3f ms, answered %+9.3f ms\n", i + 1,
                 ((double)h[i].sent_us - (double)t0) / 1000.0, at[i] - (double)t0 / 1000.0,
                 ((double)h[i].done_us - (double)t0) / 1000.0);
    }

    /* (a) released in arrival order: of two held requests sent at least 2 ms apart, the second
     * does not reach the origin before the first (by more than JITTER_MS: when a stall makes both
     * overdue, rlproxy's two workers release them in the same instant) */
    int timing_ok = 1;
    for (int x = L; x < HELD && timing_ok; x++)
        for (int y = x + 1; y < HELD && timing_ok; y++)
            if (h[ord[y]].sent_us >= h[ord[x]].sent_us + 2000 &&
                at[ord[y]] < at[ord[x]] - JITTER_MS) {
                snprintf(why, why_len,
                         "released out of arrival order: #%d (sent %.1f ms after #%d) reached the "
                         "origin %.2f ms before it",
                         ord[y] + 1, (double)(h[ord[y]].sent_us - h[ord[x]].sent_us) / 1000.0,
                         ord[x] + 1, at[ord[x]] - at[ord[y]]);
                timing_ok = 0;
            }

    /* (b) precision, measured at the origin: release minus the slot's time */
    double late[NH], sorted[NH];
    for (int r = 0; r < NH; r++) {
        double slot = adm_origin[r % L] + (double)(r / L + 1) * W;
        late[r] = at[ord[L + r]] - slot;
        snprintf(list + strlen(list), sizeof list - strlen(list), " #%d:%+.2f", ord[L + r] + 1,
                 late[r]);
    }
    memcpy(sorted, late, sizeof late);
    qsort(sorted, NH, sizeof sorted[0], cmp_double);
    double median = (sorted[NH / 2 - 1] + sorted[NH / 2]) / 2;
    fprintf(stderr,
            "ratelimit delay precision: %d held requests reached the origin min %+.2f ms, median "
            "%+.2f ms, max %+.2f ms after their slot freed;%s\n",
            NH, sorted[0], median, sorted[NH - 1], list);
    /* The issue asks for 10 ms; each request may take 25 ms (a loaded machine can deschedule a
     * worker for that long), the median 10 ms. */
    if (timing_ok && sorted[NH - 1] > 25.0) {
        snprintf(why, why_len, "a held request went %.2f ms late:%s", sorted[NH - 1], list);
        timing_ok = 0;
    }
    if (timing_ok && median > 10.0) {
        snprintf(why, why_len, "held requests went %.2f ms late (median):%s", median, list);
        timing_ok = 0;
    }

    /* (c) never early, proven without the origin's clock: the r-th release (in time) cannot come
     * before the r-th slot, which is no earlier than the client's send of the admission it
     * waits on plus one or two windows. Noise only delays. JITTER_MS allows for the
     * timer's clock granularity. */
    double rel[NH], answers[NH];
    for (int r = 0; r < NH; r++) {
        rel[r] = at[ord[L + r]];
        answers[r] = (double)h[ord[L + r]].done_us / 1000.0;
    }
    qsort(rel, NH, sizeof rel[0], cmp_double);
    /* in time order too: two clients that send a millisecond apart can reach rlproxy (two
     * workers) in either order, and the one that arrives first takes the earlier slot */
    qsort(answers, NH, sizeof answers[0], cmp_double);
    for (int r = 0; r < NH; r++) {
        double floor_ms = adm_sent[r % L] + (double)(r / L + 1) * W;
        ck_assert_msg(rel[r] >= floor_ms - JITTER_MS,
                      "the %d-th held request reached the origin %.2f ms before its slot could "
                      "free:\n%s",
                      r + 1, floor_ms - rel[r], table);
        /* the clients saw it too, and not much later */
        double answered = answers[r];
        ck_assert_msg(answered >= adm_sent[r % L] + (double)(r / L + 1) * W - JITTER_MS,
                      "the %d-th held answer came before its slot could free:\n%s", r + 1,
                      table);
        if (timing_ok && answered > floor_ms + 200) {
            snprintf(why, why_len, "the %d-th held answer came %.1f ms after its slot:\n%s",
                     r + 1, answered - floor_ms, table);
            timing_ok = 0;
        }
    }

    /* 8. the access log: 5 admitted, 10 delayed, each with its wait (from the moment rlproxy
     * read it to its slot) */
    ck_assert_uint_eq(wait_access_lines(acc, " limit=admit:hold5 wait=0ms", L), L);
    ck_assert_uint_eq(wait_access_lines(acc, " limit=delay:hold5 wait=", NH), NH);
    char *log = read_file(acc, NULL);
    ck_assert(log != NULL);
    for (int r = 0; r < NH && timing_ok; r++) {
        int i = ord[L + r];
        char needle[64];
        snprintf(needle, sizeof needle, "/bytes/1/hold?i=%d\" ", i + 1);
        const char *line = strstr(log, needle);
        ck_assert_msg(line != NULL, "no access line for #%d", i + 1);
        const char *lim = strstr(line, " limit=");
        const char *w = strstr(line, " wait=");
        ck_assert_msg(lim != NULL && w != NULL && strncmp(lim, " limit=delay:hold5 ", 19) == 0,
                      "#%d: %.200s", i + 1, line);
        double want = adm_sent[r % L] + (double)(r / L + 1) * W - (double)h[i].sent_us / 1000.0;
        long got = strtol(w + 6, NULL, 10);
        if (fabs((double)got - want) > 30) {
            snprintf(why, why_len, "#%d logged wait=%ldms, it waited about %.0f ms", i + 1, got,
                     want);
            timing_ok = 0;
        }
    }
    free(log);
    ck_assert_uint_eq(file_lines_with(acc, " limit=", NULL, NULL, 0), HELD + HELD); /* + warm-ups */
    ck_assert_uint_eq(file_lines_with(acc, " limit=none wait=0ms", NULL, NULL, 0), HELD);
    expect_decisions(p, "hold5", L, NH, 0);
    ck_assert_int_eq(wait_queued(p, "hold5", 0, 2000), 0);
    if (!timing_ok)
        fprintf(stderr, "%s", table);
    proxy_stop_with_origin(p, o);
    return timing_ok;
}

START_TEST(test_delay_order_and_precision)
{
    char why[2400] = "";
    for (int attempt = 1; attempt <= ATTEMPTS; attempt++) {
        if (delay_attempt(why, sizeof why))
            return;
        fprintf(stderr, "ratelimit delay: attempt %d of %d: %s\n", attempt, ATTEMPTS, why);
    }
    ck_abort_msg("delay, %d attempts: %s", ATTEMPTS, why);
}
END_TEST

/* A held request whose client disconnects gives its slot back: the next request gets it, one
 * window after the admission it waits on, not two. */
START_TEST(test_delay_disconnect_gives_slot_back)
{
    enum { W = 2000 }; /* ms: room for slow scrapes of /metrics on a loaded machine */
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0,
                                              "rate_limits:\n"
                                              "  - name: hold1\n"
                                              "    match: { path_prefix: \"/bytes/1/cancel\" }\n"
                                              "    key: global\n"
                                              "    limit: 1\n"
                                              "    window: 2s\n"
                                              "    over_limit: delay\n"
                                              "    max_delay: 10s\n");
    ck_assert_int_eq(status_of(p->port, "GET", o, "/bytes/1/warm"), 200);
    uint64_t sent_a = now_us();
    ck_assert_int_eq(status_of(p->port, "GET", o, "/bytes/1/cancel?n=A"), 200);
    uint64_t done_a = now_us();

    /* C waits for A's slot (one window after A) */
    struct raw *c = raw_connect_src(p->port, NULL);
    ck_assert_int_eq(raw_send_request(c, "GET", "127.0.0.1", o->port, "/bytes/1/cancel?n=C"), 0);
    ck_assert_msg(raw_pending(c, 150) == 0, "the over-limit request was answered at once: %.*s",
                  (int)c->len, c->buf);
    ck_assert_int_eq(wait_queued(p, "hold1", 1, 2000), 1);
    raw_close(c);
    ck_assert_int_eq(wait_queued(p, "hold1", 0, 2000), 0);

    /* D arrives while A's window is still full: with C's reservation given back it gets A's slot
     * (one window after A); had C kept it, D would wait for the next one (two windows after A) */
    struct http_response r;
    struct raw *d = raw_connect_src(p->port, NULL);
    ck_assert_msg(now_us() < sent_a + (W - 500) * 1000, "too slow to test inside the window");
    ck_assert_int_eq(raw_send_request(d, "GET", "127.0.0.1", o->port, "/bytes/1/cancel?n=D"), 0);
    ck_assert_msg(raw_pending(d, 100) == 0, "D was not held");
    ck_assert_int_eq(queued(p, "hold1"), 1);
    int rc = raw_read_response(d, &r, 0, 3 * W);
    uint64_t done_d = now_us();
    raw_close(d);
    ck_assert_msg(rc == RAW_OK && r.status == 200, "D: %s, status %d", raw_result_name(rc),
                  r.status);
    http_response_free(&r);
    double after = (double)(done_d - done_a) / 1000.0, since = (double)(done_d - sent_a) / 1000.0;
    fprintf(stderr, "ratelimit cancel: D answered %.1f ms after A was (%.1f ms after A was sent)\n",
            after, since);
    ck_assert_msg(since >= W - JITTER_MS && after <= W + 300,
                  "D answered %.1f ms after A (sent %.1f ms after A): want A's slot, %d ms later",
                  after, since, W);

    struct arrival *a;
    size_t n = origin_arrivals(o, "/bytes/1/cancel", &a);
    ck_assert_msg(n == 2 && strstr(a[0].target, "n=A") && strstr(a[1].target, "n=D"),
                  "the origin saw %zu requests (want A and D only; C disconnected)", n);
    double gap = a[1].ms - a[0].ms;
    ck_assert_msg(gap >= W - JITTER_MS && gap <= W + 300, "A to D at the origin: %.2f ms", gap);
    free(a);
    ck_assert_int_eq(wait_queued(p, "hold1", 0, 2000), 0);
    expect_decisions(p, "hold1", 1, 2, 0);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- 3. 429 ---------------------------------------------------------------------------------- */

START_TEST(test_429_fields)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0,
                                              "rate_limits:\n"
                                              "  - name: rej\n"
                                              "    match: { path_prefix: \"/bytes/1/rej\" }\n"
                                              "    key: global\n"
                                              "    limit: 3\n"
                                              "    window: 3s\n"
                                              "    headers: true\n"
                                              "  - name: plain\n"
                                              "    match: { path_prefix: \"/bytes/1/plain\" }\n"
                                              "    key: global\n"
                                              "    limit: 2\n"
                                              "    window: 10s\n"
                                              "    over_limit: reject\n");
    struct http_response r;
    uint64_t sent1 = 0, done1 = 0, sent2 = 0;
    /* headers: true — admitted responses carry the fields, r counting down; #2 and #3 go 500 ms
     * after #1 so that #1 leaves the window alone */
    for (int i = 0; i < 3; i++) {
        if (i == 1)
            sleep_until_us(sent1 + 500000);
        uint64_t s = now_us();
        ck_assert_int_eq(fresh_get(p->port, NULL, "127.0.0.1", o->port, "/bytes/1/rej", &r), 200);
        if (i == 0)
            sent1 = s, done1 = now_us();
        if (i == 1)
            sent2 = s;
        struct ratelimit rl;
        parse_ratelimit(&r, &rl);
        ck_assert_str_eq(rl.name, "rej");
        ck_assert_int_eq(rl.q, 3);
        ck_assert_int_eq(rl.w, 3);
        ck_assert_msg(rl.r == 2 - i, "admitted #%d: r=%ld, want %d", i + 1, rl.r, 2 - i);
        ck_assert_msg(rl.t >= 2 && rl.t <= 3, "admitted #%d: t=%ld, want 3 (the window)", i + 1,
                      rl.t);
        ck_assert_ptr_null(resp_header(&r, "Retry-After", 0));
        http_response_free(&r);
    }
    /* the default (headers: false): none on admitted responses; 429s always have them */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(fresh_get(p->port, NULL, "127.0.0.1", o->port, "/bytes/1/plain", &r), 200);
        ck_assert_ptr_null(resp_header(&r, "RateLimit-Policy", 0));
        ck_assert_ptr_null(resp_header(&r, "RateLimit", 0));
        http_response_free(&r);
    }
    fresh_get(p->port, NULL, "127.0.0.1", o->port, "/bytes/1/plain", &r);
    ck_assert_int_eq(expect_429(&r, "plain", 2, 10, "over the limit"), 10);
    http_response_free(&r);

    /* 1.2 s into rej's window: Retry-After is the time until #1 leaves it, rounded up. #1 was
     * admitted between sent1 and done1, this decision between s4 and d4, so the real remaining
     * time lies in [sent1 + 3 s - d4, done1 + 3 s - s4] and Retry-After in the ceilings of that. */
    sleep_until_us(sent1 + 1200000);
    uint64_t s4 = now_us();
    fresh_get(p->port, NULL, "127.0.0.1", o->port, "/bytes/1/rej", &r);
    uint64_t d4 = now_us();
    long ra = expect_429(&r, "rej", 3, 3, "over the limit");
    long lo = (long)ceil((double)(sent1 + 3000000 - d4) / 1e6),
         hi = (long)ceil((double)(done1 + 3000000 - s4) / 1e6);
    ck_assert_msg(ra >= lo && ra <= hi,
                  "Retry-After %ld, the real remaining time rounds up to %ld..%ld", ra, lo, hi);
    ck_assert_msg(ra < 3, "Retry-After %ld: the whole window, not the time left", ra);
    /* the connection stays usable after a 429 of a request without a body */
    ck_assert_msg(!resp_wants_close(&r), "a 429 closed the connection");
    http_response_free(&r);

    /* the window slides: once #1 has left it (not #2 and #3) there is room for exactly one */
    sleep_until_us(done1 + 3000000 + 20000);
    ck_assert_msg(now_us() + 300000 < sent2 + 3000000,
                  "too slow to test between #1 and #2 leaving");
    ck_assert_int_eq(fresh_get(p->port, NULL, "127.0.0.1", o->port, "/bytes/1/rej", &r), 200);
    struct ratelimit rl;
    parse_ratelimit(&r, &rl);
    ck_assert_int_eq(rl.r, 0); /* #2, #3 and this one */
    ck_assert_int_eq(rl.t, 1); /* #2 leaves in under 500 ms */
    http_response_free(&r);
    fresh_get(p->port, NULL, "127.0.0.1", o->port, "/bytes/1/rej", &r);
    ck_assert_int_eq(expect_429(&r, "rej", 3, 3, "over the limit"), 1);
    http_response_free(&r);
    expect_decisions(p, "rej", 4, 0, 2);
    expect_decisions(p, "plain", 2, 0, 1);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_429_over_max_delay_and_max_queue)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0,
                                              "rate_limits:\n"
                                              "  - name: md\n"
                                              "    match: { path_prefix: \"/bytes/1/md\" }\n"
                                              "    key: global\n"
                                              "    limit: 1\n"
                                              "    window: 10s\n"
                                              "    over_limit: delay\n"
                                              "    max_delay: 1s\n"
                                              "  - name: mq\n"
                                              "    match: { path_prefix: \"/bytes/1/mq\" }\n"
                                              "    key: global\n"
                                              "    limit: 1\n"
                                              "    window: 3s\n"
                                              "    over_limit: delay\n"
                                              "    max_delay: 10s\n"
                                              "    max_queue: 2\n");
    struct http_response r;
    /* max_delay: the wait would be about 10 s > 1 s, so 429 at once, not after a second */
    ck_assert_int_eq(status_of(p->port, "GET", o, "/bytes/1/md"), 200);
    uint64_t t = now_us();
    fresh_get(p->port, NULL, "127.0.0.1", o->port, "/bytes/1/md", &r);
    double took = (double)(now_us() - t) / 1000.0;
    long ra = expect_429(&r, "md", 1, 10, "max_delay");
    ck_assert_msg(ra >= 9 && ra <= 10, "Retry-After %ld, want 10 (the slot frees in ~10 s)", ra);
    ck_assert_msg(took < 500, "the 429 over max_delay took %.0f ms", took);
    http_response_free(&r);
    expect_decisions(p, "md", 1, 0, 1);

    /* max_queue: two held, the third over the limit gets 429 at once */
    ck_assert_int_eq(status_of(p->port, "GET", o, "/bytes/1/mq?n=1"), 200);
    struct raw *held[2];
    for (int i = 0; i < 2; i++) {
        held[i] = raw_connect_src(p->port, NULL);
        ck_assert_int_eq(
            raw_send_request(held[i], "GET", "127.0.0.1", o->port, "/bytes/1/mq?n=held"), 0);
    }
    ck_assert_int_eq(wait_queued(p, "mq", 2, 2000), 2);
    t = now_us();
    fresh_get(p->port, NULL, "127.0.0.1", o->port, "/bytes/1/mq?n=4", &r);
    took = (double)(now_us() - t) / 1000.0;
    expect_429(&r, "mq", 1, 3, "max_queue");
    ck_assert_msg(took < 500, "the 429 over max_queue took %.0f ms", took);
    http_response_free(&r);
    for (int i = 0; i < 2; i++) {
        ck_assert_msg(raw_pending(held[i], 0) == 0, "a held request was answered early");
        raw_close(held[i]);
    }
    ck_assert_int_eq(wait_queued(p, "mq", 0, 2000), 0);
    expect_decisions(p, "mq", 1, 2, 1);
    struct arrival *a;
    ck_assert_uint_eq(origin_arrivals(o, "/bytes/1/mq", &a), 1); /* neither held one nor the 429 */
    free(a);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- 4. CONNECT ------------------------------------------------------------------------------ */

START_TEST(test_connect_tunnels_limited)
{
    char acc[600];
    access_path(acc, sizeof acc, "connect");
    struct origin *o = origin_start(1);
    struct proxy *p = proxy_startf("log:\n  access: \"%s\"\n"
                                   "connect:\n  allowed_ports: [%d]\n"
                                   "rate_limits:\n"
                                   "  - name: tun\n"
                                   "    match: { host: [\"127.0.0.1\"] }\n"
                                   "    key: host\n"
                                   "    limit: 2\n"
                                   "    window: 10s\n",
                                   acc, o->port);
    char url[256];
    for (int i = 0; i < 2; i++) { /* two whole HTTPS exchanges through tunnels */
        struct fetch_req rq = {.url = origin_url(o, "/bytes/100", url, sizeof url),
                               .proxy_port = p->port,
                               .tunnel = 1,
                               .cainfo = harness_ca_path(),
                               .timeout_ms = T_MS};
        struct fetch_res rs;
        fetch(&rq, &rs);
        ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200 && rs.connect_code == 200,
                      "tunnel %d: %s (CONNECT %ld, status %ld)", i + 1, rs.err, rs.connect_code,
                      rs.status);
        fetch_free(&rs);
    }
    /* the third CONNECT to 127.0.0.1 within the window */
    struct raw *c = raw_connect_src(p->port, NULL);
    struct http_response r;
    int rc = raw_tunnel_request(c, o->port, &r, T_MS);
    ck_assert_msg(rc == RAW_OK, "CONNECT #3: %s", raw_result_name(rc));
    long ra = expect_429(&r, "tun", 2, 10, "over the limit");
    ck_assert_msg(ra >= 9 && ra <= 10, "Retry-After %ld", ra);
    http_response_free(&r);
    raw_close(c);
    /* libcurl sees the refusal as a failed CONNECT */
    struct fetch_req rq = {.url = origin_url(o, "/bytes/100", url, sizeof url),
                           .proxy_port = p->port,
                           .tunnel = 1,
                           .cainfo = harness_ca_path(),
                           .timeout_ms = T_MS};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc != CURLE_OK && rs.connect_code == 429, "CONNECT #4: %s (CONNECT %ld)",
                  rs.err, rs.connect_code);
    fetch_free(&rs);
    /* another host name is another rule match: localhost is not limited by this rule */
    c = raw_connect_src(p->port, NULL);
    raw_sendf(c, "CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n", o->port, o->port);
    rc = raw_read_response(c, &r, RESP_CONNECT, T_MS);
    ck_assert_msg(rc == RAW_OK && r.status == 200, "CONNECT localhost: %s, status %d",
                  raw_result_name(rc), r.status);
    http_response_free(&r);
    raw_close(c);
    expect_decisions(p, "tun", 2, 0, 2);
    /* tunnels log their decision too (their line is written when the tunnel closes) */
    ck_assert_uint_eq(wait_access_lines(acc, " limit=admit:tun ", 2), 2);
    ck_assert_uint_eq(wait_access_lines(acc, " limit=reject:tun ", 2), 2);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- keys ------------------------------------------------------------------------------------ */

/* statuses of n GETs, each on a fresh connection from src to host:port/path, as "200,200,429" */
static void statuses(struct proxy *p, const char *src, const char *host, int port, const char *path,
                     int n, char *out, size_t len)
{
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        struct http_response r;
        int status = fresh_get(p->port, src, host, port, path, &r);
        http_response_free(&r);
        snprintf(out + strlen(out), len - strlen(out), "%s%d", i ? "," : "", status);
    }
}

START_TEST(test_keys)
{
    char acc[600];
    access_path(acc, sizeof acc, "keys");
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("log:\n  access: \"%s\"\n"
                                   "rate_limits:\n"
                                   "  - name: pc\n"
                                   "    match: { path_prefix: \"/bytes/1/pc\" }\n"
                                   "    key: client\n"
                                   "    limit: 2\n"
                                   "    window: 30s\n"
                                   "  - name: ph\n"
                                   "    match: { path_prefix: \"/bytes/1/ph\" }\n"
                                   "    key: host\n"
                                   "    limit: 2\n"
                                   "    window: 30s\n"
                                   "  - name: gl\n"
                                   "    match: { path_prefix: \"/bytes/1/gl\" }\n"
                                   "    key: global\n"
                                   "    limit: 2\n"
                                   "    window: 30s\n",
                                   acc);
    char got[64];
    statuses(p, NULL, "127.0.0.1", o->port, "/bytes/1/pc", 3, got, sizeof got);
    ck_assert_str_eq(got, "200,200,429");
    /* a second client address (still loopback) has its own window */
    statuses(p, "127.0.0.2", "127.0.0.1", o->port, "/bytes/1/pc", 3, got, sizeof got);
    ck_assert_str_eq(got, "200,200,429");
    ck_assert_msg(wait_access_lines(acc, " 127.0.0.2:", 3) == 3,
                  "the access log does not show client 127.0.0.2 three times");
    ck_assert_int_eq(limiter_metric(p, "rlproxy_limiter_keys", "pc", NULL), 2);

    /* key: host — 127.0.0.1 and localhost are two keys; host names ignore case */
    statuses(p, NULL, "127.0.0.1", o->port, "/bytes/1/ph", 3, got, sizeof got);
    ck_assert_str_eq(got, "200,200,429");
    statuses(p, NULL, "localhost", o->port, "/bytes/1/ph", 3, got, sizeof got);
    ck_assert_str_eq(got, "200,200,429");
    statuses(p, "127.0.0.2", "LocalHost", o->port, "/bytes/1/ph", 1, got, sizeof got);
    ck_assert_str_eq(got, "429");
    ck_assert_int_eq(limiter_metric(p, "rlproxy_limiter_keys", "ph", NULL), 2);

    /* key: global — one window whatever the client and host */
    statuses(p, NULL, "127.0.0.1", o->port, "/bytes/1/gl", 1, got, sizeof got);
    ck_assert_str_eq(got, "200");
    statuses(p, "127.0.0.2", "localhost", o->port, "/bytes/1/gl", 2, got, sizeof got);
    ck_assert_str_eq(got, "200,429");
    ck_assert_int_eq(limiter_metric(p, "rlproxy_limiter_keys", "gl", NULL), 1);
    expect_decisions(p, "pc", 4, 0, 2);
    expect_decisions(p, "ph", 4, 0, 3);
    expect_decisions(p, "gl", 2, 0, 1);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_key_client_host)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0,
                                              "rate_limits:\n"
                                              "  - name: ch\n"
                                              "    key: client+host\n"
                                              "    limit: 1\n"
                                              "    window: 30s\n");
    char got[64];
    statuses(p, NULL, "127.0.0.1", o->port, "/bytes/1", 2, got, sizeof got);
    ck_assert_str_eq(got, "200,429");
    statuses(p, "127.0.0.2", "127.0.0.1", o->port, "/bytes/1", 2, got, sizeof got);
    ck_assert_str_eq(got, "200,429");
    statuses(p, NULL, "localhost", o->port, "/bytes/1", 2, got, sizeof got);
    ck_assert_str_eq(got, "200,429");
    statuses(p, "127.0.0.2", "localhost", o->port, "/bytes/1", 2, got, sizeof got);
    ck_assert_str_eq(got, "200,429");
    ck_assert_int_eq(limiter_metric(p, "rlproxy_limiter_keys", "ch", NULL), 4);
    expect_decisions(p, "ch", 4, 0, 4);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- 7. reload ------------------------------------------------------------------------------- */

/* The harness's first lines (listen, admin on an ephemeral port) + rules; a reload with the same
 * listen and admin lines keeps both sockets. */
#define RELOAD_BASE "listen: [\"127.0.0.1:0\"]\nadmin:\n  listen: [\"127.0.0.1:0\"]\nworkers: 1\n"

/* Rewrites the config, SIGHUPs, waits for "configuration reloaded", then until the worker runs
 * the new config: a request to probe_path must meet rule `probe` (its RateLimit-Policy on the
 * 200, or its 429), where the old config had no rule for it. */
static void reload_with(struct proxy *p, struct origin *o, const char *yaml, const char *probe)
{
    uint64_t deadline = now_ms() + RELOAD_WAIT_MS;
    ck_assert_msg(proxy_reload(p, yaml, RELOAD_WAIT_MS), "reload failed:\n%s",
                  proxy_log_tail(p, 1500));
    char path[64], quoted[80];
    snprintf(path, sizeof path, "/bytes/1/%s", probe);
    snprintf(quoted, sizeof quoted, "\"%s\";", probe);
    for (;;) {
        struct http_response r;
        fresh_get(p->port, NULL, "127.0.0.1", o->port, path, &r);
        const char *policy = resp_header(&r, "RateLimit-Policy", 0);
        int active = policy != NULL && strncmp(policy, quoted, strlen(quoted)) == 0;
        http_response_free(&r);
        if (active)
            return;
        ck_assert_msg(now_ms() < deadline, "the worker never ran the reloaded config");
        sleep_ms(5);
    }
}

START_TEST(test_reload_keeps_unchanged_windows)
{
    static const char rl2[] = "  - name: rl\n"
                              "    match: { path_prefix: \"/bytes/1/rl\" }\n"
                              "    key: global\n"
                              "    limit: 2\n"
                              "    window: 30s\n";
    static const char rl3[] = "  - name: rl\n"
                              "    match: { path_prefix: \"/bytes/1/rl\" }\n"
                              "    key: global\n"
                              "    limit: 3\n"
                              "    window: 30s\n";
    static const char probe[] = "  - name: %s\n"
                                "    match: { path_prefix: \"/bytes/1/%s\" }\n"
                                "    limit: 1000\n"
                                "    window: 1s\n"
                                "    headers: true\n";
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("workers: 1\nrate_limits:\n%s", rl2);
    char got[64];
    uint64_t first_sent = now_us();
    statuses(p, NULL, "127.0.0.1", o->port, "/bytes/1/rl", 3, got, sizeof got);
    ck_assert_str_eq(got, "200,200,429");
    uint64_t filled = now_us(); /* the first admission was between first_sent and this */

    /* same rule (now second in the list, after a new one): the window is kept */
    char *yaml, *probe_rule;
    ck_assert(asprintf(&probe_rule, probe, "probe", "probe") > 0);
    ck_assert(asprintf(&yaml, RELOAD_BASE "rate_limits:\n%s%s", probe_rule, rl2) > 0);
    reload_with(p, o, yaml, "probe");
    free(yaml);
    free(probe_rule);
    struct http_response r;
    uint64_t asked = now_us();
    fresh_get(p->port, NULL, "127.0.0.1", o->port, "/bytes/1/rl", &r);
    uint64_t answered = now_us();
    long ra = expect_429(&r, "rl", 2, 30, NULL);
    /* the time until the first admission leaves the window, rounded up, as before the reload */
    long lo = (long)ceil((double)(first_sent + 30000000 - answered) / 1e6),
         hi = (long)ceil((double)(filled + 30000000 - asked) / 1e6);
    ck_assert_msg(ra >= lo && ra <= hi, "Retry-After %ld after the reload, want %ld..%ld", ra, lo,
                  hi);
    http_response_free(&r);
    expect_decisions(p, "rl", 2, 0, 2); /* the counters stay with the window */

    /* limit changed: a new window, three admitted */
    ck_assert(asprintf(&probe_rule, probe, "probe2", "probe2") > 0);
    ck_assert(asprintf(&yaml, RELOAD_BASE "rate_limits:\n%s%s", rl3, probe_rule) > 0);
    reload_with(p, o, yaml, "probe2");
    free(yaml);
    free(probe_rule);
    statuses(p, NULL, "127.0.0.1", o->port, "/bytes/1/rl", 3, got, sizeof got);
    ck_assert_msg(strcmp(got, "200,200,200") == 0, "after changing limit: %s", got);
    fresh_get(p->port, NULL, "127.0.0.1", o->port, "/bytes/1/rl", &r);
    expect_429(&r, "rl", 3, 30, NULL);
    http_response_free(&r);
    expect_decisions(p, "rl", 3, 0, 1);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- first match wins; no match, no limit ---------------------------------------------------- */

START_TEST(test_first_match_and_unlimited)
{
    char acc[600];
    access_path(acc, sizeof acc, "match");
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("log:\n  access: \"%s\"\n"
                                   "rate_limits:\n"
                                   "  - name: first\n"
                                   "    match: { path_prefix: \"/bytes/1/fm\", method: [GET] }\n"
                                   "    key: global\n"
                                   "    limit: 1\n"
                                   "    window: 30s\n"
                                   "  - name: second\n"
                                   "    match: { path_prefix: \"/bytes/1/\" }\n"
                                   "    key: global\n"
                                   "    limit: 1000\n"
                                   "    window: 30s\n"
                                   "    headers: true\n",
                                   acc);
    struct http_response r;
    /* /bytes/1/fm matches both: the first rule applies (no fields: its headers is false) */
    ck_assert_int_eq(fresh_get(p->port, NULL, "127.0.0.1", o->port, "/bytes/1/fm", &r), 200);
    ck_assert_ptr_null(resp_header(&r, "RateLimit-Policy", 0));
    http_response_free(&r);
    fresh_get(p->port, NULL, "127.0.0.1", o->port, "/bytes/1/fm", &r);
    expect_429(&r, "first", 1, 30, NULL);
    http_response_free(&r);
    /* a HEAD does not match `first` (method), so `second` applies */
    struct raw *c = raw_connect_src(p->port, NULL);
    raw_sendf(c, "HEAD http://127.0.0.1:%d/bytes/1/fm HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
              o->port, o->port);
    ck_assert_int_eq(raw_read_response(c, &r, RESP_HEAD, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 200);
    struct ratelimit rl;
    parse_ratelimit(&r, &rl);
    ck_assert_str_eq(rl.name, "second");
    ck_assert_int_eq(rl.r, 999);
    http_response_free(&r);
    raw_close(c);

    /* no rule matches /bytes/2: 300 requests as fast as one connection goes, none limited */
    enum { FREE = 300 };
    c = raw_connect_src(p->port, NULL);
    int ok = 0;
    for (int i = 0; i < FREE; i++) {
        int rc = raw_request_on(c, "GET", "127.0.0.1", o->port, "/bytes/2", &r, T_MS);
        ck_assert_msg(rc == RAW_OK, "free request %d: %s", i, raw_result_name(rc));
        ok += r.status == 200 && resp_header(&r, "RateLimit-Policy", 0) == NULL;
        http_response_free(&r);
    }
    raw_close(c);
    ck_assert_int_eq(ok, FREE);
    ck_assert_uint_eq(wait_access_lines(acc, " limit=none wait=0ms", FREE), FREE);
    ck_assert_uint_eq(file_lines_with(acc, " limit=admit:first ", NULL, NULL, 0), 1);
    ck_assert_uint_eq(file_lines_with(acc, " limit=reject:first ", NULL, NULL, 0), 1);
    ck_assert_uint_eq(file_lines_with(acc, " limit=admit:second ", NULL, NULL, 0), 1);
    expect_decisions(p, "first", 1, 0, 1);
    expect_decisions(p, "second", 1, 0, 0);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* One TCase per test, so CK_RUN_CASE=delay_order_and_precision (say) runs just that one */
#define ADD(s, name)                                                                               \
    do {                                                                                           \
        TCase *tc = harness_tcase(#name, 30);                                                      \
        tcase_add_test(tc, test_##name);                                                           \
        suite_add_tcase(s, tc);                                                                    \
    } while (0)

int main(void)
{
    Suite *s = suite_create("ratelimit");
    ADD(s, exact_window_4x);
    ADD(s, exact_window_flood);
    ADD(s, delay_order_and_precision);
    ADD(s, delay_disconnect_gives_slot_back);
    ADD(s, 429_fields);
    ADD(s, 429_over_max_delay_and_max_queue);
    ADD(s, connect_tunnels_limited);
    ADD(s, keys);
    ADD(s, key_client_host);
    ADD(s, reload_keeps_unchanged_windows);
    ADD(s, first_match_and_unlimited);
    return harness_run_suite(s);
}
