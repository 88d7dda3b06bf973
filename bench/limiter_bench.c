/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* limiter_bench.c — micro-benchmark of the sliding-window limiter (src/limiter.c), no network:
 * limiter_decide() called in a loop with a fake clock, so the figures are the cost of one decision
 * (rule match, key, hash, stripe lock, ring update), not of the event loop around it.
 *
 *   one thread, one key, every call admitted      (the clock advances window/limit per call)
 *   one thread, 10,000 keys in turn, all admitted (each key sees exactly limit per window)
 *   one thread, a new key per call, all admitted  (window creation included)
 *   one thread, one key over its limit, all rejected
 *   two threads, one key (contended stripe lock), and two threads, a key each
 *   the same without a destination host, which skips the global origin-pause table
 *   memory: heap (mallinfo2) and RSS before and after 1,000,000 distinct client keys with limit 100
 *   that sent one request each, then after they expire.
 *
 * Build and run: make bench-programs && bench/limiter_bench [quick]
 * (quick: a tenth of the calls and keys, for a smoke test). Timings are not tests: nothing here
 * fails on a slow machine; it exits non-zero only if a verdict is not what the set-up implies. */
#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "limiter.h"
#include "limiter_fixture.h"

#define MS 1000ULL /* microseconds */

static int failures;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) /* CPU time of the whole process, all threads */
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* the measured part of a case: from start_timing() to row() */
static double wall0, cpu0;
static void start_timing(void)
{
    wall0 = now_s();
    cpu0 = cpu_s();
}

/* client address number i: 10.x.y.z */
static struct sockaddr_in client(uint32_t i)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(40000);
    a.sin_addr.s_addr = htonl((10u << 24) | (i & 0xffffffu));
    return a;
}

static const char *host = "api.example.com"; /* NULL: see two_threads_no_host() */

static enum limiter_verdict decide(struct limiter *l, const struct sockaddr_in *a, uint64_t now)
{
    struct limiter_request r = {.client = (const struct sockaddr *)a,
                                .user = "-",
                                .host = host,
                                .port = 443,
                                .method = "GET",
                                .path = "/repos/x",
                                .path_len = 8};
    struct limiter_decision d;
    limiter_decide(l, &r, now, &d);
    return d.verdict;
}

/* One table row: decisions per second of wall time; CPU time per decision (all threads: on a
 * shared machine the figure that does not depend on how much CPU the benchmark got); "CPUs", the
 * CPU time over the wall time — 2 threads should show about 2.0, less means the machine did not
 * give the benchmark two CPUs at once and the two-thread wall figures say little. */
static void row(const char *what, uint64_t calls, uint64_t expected_ok, uint64_t ok,
                const char *verdict)
{
    double seconds = now_s() - wall0, cpu = cpu_s() - cpu0;
    printf("| %-46s | %8.2f M/s | %7.1f ns | %10llu | %4.2f | %s\n", what,
           (double)calls / seconds / 1e6, cpu / (double)calls * 1e9, (unsigned long long)calls,
           cpu / seconds, verdict);
    if (ok != expected_ok) {
        printf("  !! %llu of %llu calls gave the expected verdict\n", (unsigned long long)ok,
               (unsigned long long)expected_ok);
        failures++;
    }
}

/* ---- one thread ------------------------------------------------------------------------------ */

static void one_key_admit_note(uint64_t calls, const char *note)
{
    /* limit 100 per 1 s, one call every 10 ms: the oldest entry leaves exactly as the next
     * arrives, so every call admits (after the first 100 the ring is full: pop + insert) */
    struct rate_rule rules[] = {
        limiter_fixture_rule("one", RATE_KEY_CLIENT, 100, 1000, RATE_OVER_REJECT)};
    struct config c = limiter_fixture_config(rules, 1, 2000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct sockaddr_in a = client(1);
    uint64_t ok = 0, t = 0;
    start_timing();
    for (uint64_t i = 0; i < calls; i++, t += 10 * MS)
        ok += decide(l, &a, t) == LIMITER_ADMIT;
    char what[80];
    snprintf(what, sizeof what, "1 thread, 1 key, all admitted%s", note);
    row(what, calls, calls, ok, "admit");
    limiter_unref(l);
}

/* The same key and clock under a rule whose held requests take turns (fair_by: client, delay) and
 * are capped in flight: nothing is ever held, so this is the queue's cost to a decision that
 * finds it empty. */
static void one_key_admit_fair(uint64_t calls)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("fair", RATE_KEY_CLIENT, 100, 1000, RATE_OVER_DELAY)};
    rules[0].fair_by = RATE_FAIR_CLIENT;
    struct config c = limiter_fixture_config(rules, 1, 2000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct sockaddr_in a = client(1);
    uint64_t ok = 0, t = 0;
    start_timing();
    for (uint64_t i = 0; i < calls; i++, t += 10 * MS)
        ok += decide(l, &a, t) == LIMITER_ADMIT;
    row("1 thread, 1 key, all admitted, fair_by: client", calls, calls, ok, "admit");
    limiter_unref(l);
}

static void rotating_keys_admit(uint64_t calls, uint32_t keys)
{
    /* keys in turn, 1 µs apart: each key gets a call every `keys` µs = 10 ms for 10,000 keys,
     * exactly its limit (100 per second) */
    struct rate_rule rules[] = {
        limiter_fixture_rule("rot", RATE_KEY_CLIENT, 100, 1000, RATE_OVER_REJECT)};
    struct config c = limiter_fixture_config(rules, 1, 2000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct sockaddr_in *addrs = malloc(keys * sizeof *addrs);
    for (uint32_t k = 0; k < keys; k++)
        addrs[k] = client(k);
    uint64_t ok = 0, t = 0;
    uint64_t step = 10 * MS / keys;
    start_timing();
    for (uint64_t i = 0; i < calls; i++, t += step)
        ok += decide(l, &addrs[i % keys], t) == LIMITER_ADMIT;
    char what[80];
    snprintf(what, sizeof what, "1 thread, %u keys in turn, all admitted", keys);
    row(what, calls, calls, ok, "admit");
    free(addrs);
    limiter_unref(l);
}

static void new_keys_admit(uint64_t calls)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("new", RATE_KEY_CLIENT, 100, 1000, RATE_OVER_REJECT)};
    struct config c = limiter_fixture_config(rules, 1, 100000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    uint64_t ok = 0;
    start_timing();
    for (uint64_t i = 0; i < calls; i++) {
        struct sockaddr_in a = client((uint32_t)i);
        ok += decide(l, &a, i) == LIMITER_ADMIT;
    }
    row("1 thread, a new key per call (creates windows)", calls, calls, ok, "admit");
    limiter_unref(l);
}

static void one_key_reject(uint64_t calls)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("over", RATE_KEY_CLIENT, 100, 3600000, RATE_OVER_REJECT)};
    struct config c = limiter_fixture_config(rules, 1, 2000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct sockaddr_in a = client(1);
    for (uint64_t t = 0; t < 100; t++)
        decide(l, &a, t);
    uint64_t ok = 0, t = 100;
    start_timing();
    for (uint64_t i = 0; i < calls; i++, t++)
        ok += decide(l, &a, t) == LIMITER_REJECT;
    row("1 thread, 1 key over its limit, all rejected", calls, calls, ok, "reject");
    limiter_unref(l);
}

/* ---- two threads ----------------------------------------------------------------------------- */

/* each thread's state on its own cache lines: no false sharing between the two */
struct padded_clock {
    _Alignas(64) _Atomic uint64_t t;
};

struct contender {
    _Alignas(64) struct limiter *l;
    struct sockaddr_in addr;
    _Atomic uint64_t *clock; /* fake clock, µs: shared on one key, the thread's own otherwise */
    uint64_t step;
    uint64_t calls, admitted, rejected;
};

static void *contend(void *arg)
{
    struct contender *c = arg;
    for (uint64_t i = 0; i < c->calls; i++) {
        uint64_t t = atomic_fetch_add_explicit(c->clock, c->step, memory_order_relaxed);
        enum limiter_verdict v = decide(c->l, &c->addr, t);
        c->admitted += v == LIMITER_ADMIT;
        c->rejected += v == LIMITER_REJECT;
    }
    return NULL;
}

static void two_threads(uint64_t calls_each, int same_key, const char *note)
{
    /* limit 100 per 1 s. One key: both threads advance one shared clock by 5 ms per call, so the
     * key is asked twice as often as it allows and half the calls admit. A key each: each thread
     * has its own clock advancing 10 ms per call (exactly the limit), so every call admits. */
    struct rate_rule rules[] = {
        limiter_fixture_rule("two", RATE_KEY_CLIENT, 100, 1000, RATE_OVER_REJECT)};
    struct config c = limiter_fixture_config(rules, 1, 2000000);
    struct limiter *l = limiter_new(&c, NULL, NULL);
    struct padded_clock clocks[2];
    atomic_init(&clocks[0].t, 0);
    atomic_init(&clocks[1].t, 0);
    struct contender th[2];
    pthread_t tid[2];
    for (int i = 0; i < 2; i++) {
        th[i] = (struct contender){l,
                                   client(same_key ? 7 : 7 + (uint32_t)i),
                                   same_key ? &clocks[0].t : &clocks[i].t,
                                   same_key ? 5 * MS : 10 * MS,
                                   calls_each,
                                   0,
                                   0};
    }
    start_timing();
    for (int i = 0; i < 2; i++)
        pthread_create(&tid[i], NULL, contend, &th[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(tid[i], NULL);
    uint64_t admitted = th[0].admitted + th[1].admitted, rejected = th[0].rejected + th[1].rejected;
    char what[80], verdict[80];
    snprintf(what, sizeof what, "2 threads, %s, total%s",
             same_key ? "1 key (contended)" : "a key each", note);
    snprintf(verdict, sizeof verdict, "%.1f%% admit",
             100.0 * (double)admitted / (2.0 * calls_each));
    /* a key each: all admitted; one key: exactness under contention — over the clock's span T
     * the key admits at most limit × (T / window + 1), and at least 99% of limit × T / window */
    uint64_t span_ms = atomic_load(&clocks[0].t) / MS;
    uint64_t cap = 100 * (span_ms / 1000 + 1);
    uint64_t expect_ok = same_key ? admitted + rejected : admitted;
    if (same_key &&
        (admitted > cap || (double)admitted < 0.99 * 100.0 * (double)span_ms / 1000.0)) {
        printf("  !! %llu admitted over %llu ms: want between 99%% of %llu and %llu\n",
               (unsigned long long)admitted, (unsigned long long)span_ms,
               (unsigned long long)(span_ms / 10), (unsigned long long)cap);
        failures++;
    }
    row(what, 2 * calls_each, 2 * calls_each, expect_ok, verdict);
    limiter_unref(l);
}

/* ---- memory ---------------------------------------------------------------------------------- */

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    if (f != NULL)
        fclose(f);
    return kib;
}

static size_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd; /* in use: small blocks + mmapped ones */
}

static void memory(uint32_t keys)
{
    struct rate_rule rules[] = {
        limiter_fixture_rule("mem", RATE_KEY_CLIENT, 100, 1000, RATE_OVER_REJECT)};
    struct config c = limiter_fixture_config(rules, 1, 100000000);
    malloc_trim(0);
    size_t heap0 = heap_bytes();
    long rss0 = rss_kib();
    struct limiter *l = limiter_new(&c, NULL, NULL);
    uint64_t ok = 0;
    for (uint32_t i = 0; i < keys; i++) {
        struct sockaddr_in a = client(i);
        ok += decide(l, &a, i) == LIMITER_ADMIT; /* 1 µs apart: all within one window */
    }
    size_t heap1 = heap_bytes();
    long rss1 = rss_kib();
    struct limiter_rule_stats st;
    limiter_rule_stats(l, 0, &st);
    size_t left = limiter_expire(l, keys + 1000 * MS); /* a window after the last one */
    size_t heap2 = heap_bytes();
    long rss2 = rss_kib();
    malloc_trim(0);
    long rss3 = rss_kib();
    printf("\nmemory, %u distinct client keys (limit 100, window 1 s), one request each:\n", keys);
    printf("| %-34s | %12s | %12s |\n", "", "heap in use", "RSS");
    printf("| %-34s | %9.1f MiB | %9.1f MiB |\n", "before", heap0 / 1048576.0, rss0 / 1024.0);
    printf("| %-34s | %9.1f MiB | %9.1f MiB |\n", "keys active", heap1 / 1048576.0, rss1 / 1024.0);
    printf("| %-34s | %9.1f MiB | %9.1f MiB |\n", "after expiry", heap2 / 1048576.0, rss2 / 1024.0);
    printf("| %-34s | %12s | %9.1f MiB |\n", "after expiry + malloc_trim(0)", "", rss3 / 1024.0);
    printf("per active key: %.1f bytes of heap, %.1f bytes of RSS (windows kept: %llu, after "
           "expiry: %zu)\n",
           (double)(heap1 - heap0) / keys, (double)(rss1 - rss0) * 1024.0 / keys,
           (unsigned long long)st.keys, left);
    if (ok != keys || st.keys != keys || left != 0) {
        printf("  !! %llu admitted, %llu windows, %zu left after expiry\n", (unsigned long long)ok,
               (unsigned long long)st.keys, left);
        failures++;
    }
    limiter_unref(l);
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    uint64_t calls = quick ? 1000000 : 10000000;
    uint32_t keys = quick ? 100000 : 1000000;
    printf("rlproxy limiter micro-benchmark (%s): limiter_decide() with a fake clock\n\n",
           quick ? "quick" : "full");
    printf("| %-46s | %12s | %10s | %10s | %4s | %s\n", "case", "decisions/s", "CPU/call", "calls",
           "CPUs", "verdict");
    printf("|%s|%s|%s|%s|------|---\n", "------------------------------------------------",
           "--------------", "------------", "------------");
    one_key_admit_note(calls, "");
    one_key_admit_fair(calls);
    rotating_keys_admit(calls, 10000);
    new_keys_admit(keys);
    one_key_reject(calls);
    two_threads(calls / 2, 1, "");
    two_threads(calls / 2, 0, "");
    /* Every decision for a request with a host also looks the host up in the process-wide table
     * of origin pauses (limiter_pause_host), under one global mutex. Without a host that lookup is
     * skipped: the difference is the cost of that lock. */
    host = NULL;
    one_key_admit_note(calls, " (no host)");
    two_threads(calls / 2, 0, " (no host)");
    host = "api.example.com";
    memory(keys);
    return failures == 0 ? 0 : 1;
}
