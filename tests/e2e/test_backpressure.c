/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_backpressure.c — backpressure and overload (issue 6): memory stays bounded whatever the mix
 * of slow peers, and rlproxy keeps serving the clients it can.
 *
 *   slow_client        a client reading 64 MiB at 16 MB/s: curl is paused, not buffered
 *   slow_upstream      an origin reading a 64 MiB PUT body at 4 MB/s: the client's sends block
 *   tunnel_slow_client the slow reader of slow_client, through a CONNECT tunnel
 *   max_inflight       4 in flight, 4 waiting unread, the rest answered 503 + Retry-After
 *   max_connections    at the cap nothing more is accepted; below 90% accepting resumes
 *   idle_connections   10,000 idle keep-alive connections cost <= 1 KiB each (folded into sleepers,
 *                      see conn.c); requests stay fast
 *   overload_recovery  4x max_inflight clients hammering: RSS flat, recovery within a second
 *   listen_backlog, max_connections_all_workers: gaps found while writing these (see each test)
 *
 * Figures (RSS deltas, per-connection bytes, latencies) go to stderr, so they are in the test log.
 * RLPROXY_SANITIZERS=1 (or a sanitizer runtime mapped into rlproxy) skips the RSS assertions;
 * RLPROXY_QUICK=1 shrinks sizes and counts (and so does RLPROXY_SANITIZERS=1 for the idle count).
 * The bench at the sizes is bench/backpressure.py (figures in bench/backpressure.md).
 *
 * Each test fails when the bound it checks is removed: the suite was run against private builds
 * of rlproxy with one bound disabled at a time (RLPROXY_BIN=...), with these results:
 *   - conn.c on_upstream_body never pausing curl: slow_client fails (RSS +63 MiB, the origin
 *     62 MiB ahead of the client);
 *   - conn.c wants_input/process_input without the backpressure.buffer check: slow_upstream
 *     fails (the whole 64 MiB taken in 95 ms, RSS +61 MiB);
 *   - tunnel.c on_read never disabling reading: tunnel_slow_client fails (RSS +116 MiB, origin
 *     59 MiB ahead);
 *   - conn.c wait_for_slot admitting every request: max_inflight fails (the 8 answered together
 *     after 1 s) and overload_recovery fails (no 503; the origin saw 32 at once);
 *   - wait_for_slot without its hard cap (never send_overload): max_inflight fails (12 x 200, the
 *     last 4 after 3 s) and overload_recovery fails (no 503);
 *   - worker.c on_accept never pausing: max_connections fails (the 21st client was answered).
 * (Checked at 5c9ed2f and again at 55ae7d1; the figures are from the first.)
 * idle_connections checks a cost, not a switchable bound. Before idle connections were folded
 * into sleepers (conn.c) it failed at 1 KiB: 4.1 KB per connection just opened and 5.8 KB after one
 * request at 55ae7d1, 3.8 KB at 93d6bc2 (see bench/backpressure.md). listen_backlog and
 * max_connections_all_workers failed until the gaps they found were fixed. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define KIB 1024L
#define MIB (1024L * 1024L)

/* ---- helpers --------------------------------------------------------------------------------- */

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("backpressure: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
}

/* RSS figures mean nothing under sanitizers (shadow memory) or valgrind (RLPROXY_WRAPPER) */
static int rss_checked(struct proxy *p)
{
    if (harness_sanitizers() || harness_wrapped())
        return 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)p->pid);
    char *maps = read_file(path, NULL);
    int sanitized =
        maps != NULL && (strstr(maps, "libasan") != NULL || strstr(maps, "libubsan") != NULL ||
                         strstr(maps, "libtsan") != NULL);
    free(maps);
    return !sanitized;
}

static long rss_kib(struct proxy *p)
{
    long kib = proxy_rss_kib(p);
    ck_assert_msg(kib > 0, "cannot read rlproxy's VmRSS");
    return kib;
}

/* A blocking TCP connection to 127.0.0.1:port; buffer sizes are set before connect() so the
 * window is small from the start (0: kernel default). */
static int tcp_connect(int port, int rcvbuf, int sndbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert(fd >= 0);
    if (rcvbuf > 0)
        ck_assert(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0);
    if (sndbuf > 0)
        ck_assert(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) == 0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0, "connect :%d: %s", port,
                  strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_str(int fd, const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        ck_assert_msg(n > 0, "send: %s", n < 0 ? strerror(errno) : "0 bytes");
        s += n, len -= (size_t)n;
    }
}

/* recv with a bounded wait: >0 bytes, 0 EOF, -1 error, -2 timeout */
static ssize_t recv_wait(int fd, void *buf, size_t len, int timeout_ms)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    int n = poll(&pfd, 1, timeout_ms);
    if (n == 0)
        return -2;
    if (n < 0)
        return -1;
    return recv(fd, buf, len, MSG_DONTWAIT);
}

/* Reads a response head; returns its status, *extra gets body bytes that came with it */
static int read_head_fd(int fd, char *buf, size_t cap, size_t *head_len, size_t *extra,
                        int timeout_ms)
{
    size_t len = 0;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    char *end = NULL;
    while ((end = len ? memmem(buf, len, "\r\n\r\n", 4) : NULL) == NULL) {
        int64_t left = (int64_t)deadline - (int64_t)now_ms();
        ck_assert_msg(left > 0 && len < cap, "no response head within %d ms (%zu bytes)",
                      timeout_ms, len);
        ssize_t n = recv_wait(fd, buf + len, cap - len, (int)left);
        ck_assert_msg(n > 0 || n == -2, "connection ended before the response head (%s): %s",
                      raw_result_name(n == 0 ? RAW_CLOSED : RAW_BAD), strerror(errno));
        if (n > 0)
            len += (size_t)n;
    }
    *head_len = (size_t)(end + 4 - buf);
    *extra = len - *head_len;
    int status = 0;
    ck_assert_msg(sscanf(buf, "HTTP/1.%*d %d", &status) == 1, "bad response head: %.200s", buf);
    return status;
}

/* One GET through the proxy on a fresh connection; its latency in ms, the test fails unless 2xx */
static uint64_t timed_get(struct proxy *p, struct origin *o, const char *path, long timeout_ms)
{
    char url[256];
    struct fetch_req rq = {.url = origin_url(o, path, url, sizeof url),
                           .proxy_port = p->port,
                           .timeout_ms = timeout_ms};
    struct fetch_res rs;
    uint64_t t0 = now_ms();
    fetch(&rq, &rs);
    uint64_t ms = now_ms() - t0;
    ck_assert_msg(rs.rc == CURLE_OK && rs.status / 100 == 2,
                  "GET %s via proxy: curl %d (%s), status %ld", path, (int)rs.rc, rs.err,
                  rs.status);
    fetch_free(&rs);
    return ms;
}

/* ---- slow readers ---------------------------------------------------------------------------- */

struct slow_stats {
    uint64_t got, ms;
    long rss_base, rss_max;
    long long gap_max; /* origin's bytes_sent (since the request) minus bytes the client got */
};

/* Reads total body bytes from fd at about rate bytes/s (some may already be in pre), checking the
 * pattern, and samples rlproxy's RSS and the origin's run-ahead every 100 ms. */
static void slow_read(int fd, const char *pre, size_t pre_len, uint64_t total, double rate,
                      struct proxy *p, struct origin *o, long long sent_base, struct slow_stats *st)
{
    enum { STEP = 16 * 1024 };
    static char buf[STEP];
    ck_assert_msg(pattern_mismatch(pre, pre_len, 0) < 0, "wrong body bytes");
    st->got = pre_len;
    st->rss_max = st->rss_base;
    st->gap_max = 0;
    uint64_t t0 = now_ms(), next_sample = t0;
    uint64_t deadline = t0 + (uint64_t)((double)total / rate * 1000.0) + 60000;
    while (st->got < total) {
        uint64_t now = now_ms();
        ck_assert_msg(now < deadline, "body stalled at %llu of %llu bytes",
                      (unsigned long long)st->got, (unsigned long long)total);
        if (now >= next_sample) {
            long rss = rss_kib(p);
            if (rss > st->rss_max)
                st->rss_max = rss;
            long long gap = origin_stat(o, "bytes_sent") - sent_base - (long long)st->got;
            if (gap > st->gap_max)
                st->gap_max = gap;
            next_sample = now + 100;
        }
        uint64_t due = t0 + (uint64_t)((double)st->got / rate * 1000.0);
        if (due > now) {
            sleep_ms((unsigned)(due - now < 20 ? due - now : 20));
            continue;
        }
        size_t want = total - st->got < STEP ? (size_t)(total - st->got) : STEP;
        ssize_t n = recv_wait(fd, buf, want, 10000);
        ck_assert_msg(n > 0, "body ended at %llu of %llu bytes (%s)", (unsigned long long)st->got,
                      (unsigned long long)total,
                      n == -2 ? "10 s without data" : "connection closed");
        ck_assert_msg(pattern_mismatch(buf, (size_t)n, st->got) < 0, "wrong byte near %llu",
                      (unsigned long long)st->got);
        st->got += (uint64_t)n;
    }
    st->ms = now_ms() - t0;
}

/* The bounds for a slow reader: proxy memory flat, the origin no further ahead than buffers. */
#define SLOW_RSS_LIMIT_KIB (2 * 1024)
#define SLOW_GAP_LIMIT (16 * MIB)
#define SLOW_RATE (16e6)  /* bytes per second */
#define SLOW_RCVBUF 65536 /* the kernel doubles it */

static void check_slow(struct proxy *p, const struct slow_stats *st, uint64_t total,
                       const char *label)
{
    note("%s: %llu bytes at %.1f MB/s in %llu ms; rlproxy RSS %ld KiB -> max %ld KiB (+%ld KiB);"
         " origin ahead of the client by at most %.2f MiB",
         label, (unsigned long long)st->got, (double)st->got / (double)st->ms / 1000.0,
         (unsigned long long)st->ms, st->rss_base, st->rss_max, st->rss_max - st->rss_base,
         (double)st->gap_max / MIB);
    ck_assert_uint_eq(st->got, total);
    ck_assert_msg(st->gap_max < SLOW_GAP_LIMIT,
                  "%s: the origin ran %.1f MiB ahead of the client: rlproxy (or curl) buffered",
                  label, (double)st->gap_max / MIB);
    if (rss_checked(p))
        ck_assert_msg(st->rss_max - st->rss_base < SLOW_RSS_LIMIT_KIB,
                      "%s: rlproxy RSS grew by %ld KiB (limit %ld KiB)", label,
                      st->rss_max - st->rss_base, (long)SLOW_RSS_LIMIT_KIB);
    else
        note("%s: sanitizer build: RSS not checked", label);
}

/* Warm-up: one fast transfer through the proxy, so the baseline includes what any transfer
 * allocates once (curl handle, buffers, pages of code). */
static void warm_up(struct proxy *p, struct origin *o)
{
    char url[256];
    struct fetch_req rq = {.url = origin_url(o, "/bytes/4194304", url, sizeof url),
                           .proxy_port = p->port,
                           .check_pattern = 1,
                           .timeout_ms = 30000};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200 && rs.received == 4194304,
                  "warm-up: curl %d (%s), status %ld", (int)rs.rc, rs.err, rs.status);
    fetch_free(&rs);
}

/* The rest of a slow client's exchange on fd, whose request is sent: a 200 head, then total body
 * bytes read at SLOW_RATE, and rlproxy's memory and the origin's lead checked (check_slow) */
static void read_slowly(int fd, uint64_t total, struct proxy *p, struct origin *o,
                        long long sent_base, struct slow_stats *st, const char *label)
{
    char head[8192];
    size_t head_len, extra;
    int status = read_head_fd(fd, head, sizeof head, &head_len, &extra, 10000);
    ck_assert_msg(status == 200, "%s: status %d", label, status);
    slow_read(fd, head + head_len, extra, total, SLOW_RATE, p, o, sent_base, st);
    close(fd);
    check_slow(p, st, total, label);
}

/* 1. A client reading a big response at 16 MB/s: rlproxy pauses curl (CURL_WRITEFUNC_PAUSE) when
 * the client's output is over backpressure.buffer, so neither its memory nor the origin runs
 * ahead. Unbounded, the origin sends the whole body in well under a second and rlproxy holds it. */
START_TEST(test_slow_client)
{
    uint64_t total = harness_size(64 * MIB, 16 * MIB);
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, "workers: 1\n");
    warm_up(p, o);
    struct slow_stats st = {.rss_base = rss_kib(p)};
    long long sent_base = origin_stat(o, "bytes_sent");
    int fd = tcp_connect(p->port, SLOW_RCVBUF, 0);
    char path[64];
    snprintf(path, sizeof path, "/bytes/%llu", (unsigned long long)total);
    char *req = proxy_request("GET", o, path, NULL);
    send_str(fd, req);
    free(req);
    read_slowly(fd, total, p, o, sent_base, &st, "slow client");
    proxy_stop_with_origin(p, o);
}
END_TEST

/* 2. A PUT of 64 MiB to an origin that reads 4 MB/s: rlproxy stops reading the client once
 * backpressure.buffer of body waits for curl, so the client's sends block. After 3 s the client
 * can have sent what the origin read plus what buffers hold (socket buffers both ways, rlproxy's
 * own 2 x 256 KiB), far from the 64 MiB that an unbounded proxy would take at once. */
START_TEST(test_slow_upstream)
{
    const double rate = 4e6;
    const uint64_t total = 64 * MIB, run_ms = 3000;
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, "workers: 1\n");
    warm_up(p, o);
    long base = rss_kib(p), rss_max = base;
    int fd = tcp_connect(p->port, 0, 128 * 1024);
    char path[64], extra_hdr[64];
    snprintf(path, sizeof path, "/slowsink?rate=%.0f", rate);
    snprintf(extra_hdr, sizeof extra_hdr, "Content-Length: %llu\r\n", (unsigned long long)total);
    char *req = proxy_request("PUT", o, path, extra_hdr);
    send_str(fd, req);
    free(req);
    ck_assert(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
    static char block[64 * 1024 + 256];
    pattern_fill(block, sizeof block, 0);
    uint64_t sent = 0, sent_at_1s = 0, t0 = now_ms(), next_sample = t0;
    while (now_ms() - t0 < run_ms && sent < total) {
        if (now_ms() >= next_sample) {
            long rss = rss_kib(p);
            if (rss > rss_max)
                rss_max = rss;
            next_sample += 100;
        }
        if (sent_at_1s == 0 && now_ms() - t0 >= 1000)
            sent_at_1s = sent;
        struct pollfd pfd = {fd, POLLOUT, 0};
        if (poll(&pfd, 1, 50) <= 0)
            continue;
        size_t off = sent % 256, n = total - sent < 65536 ? (size_t)(total - sent) : 65536;
        ssize_t w = send(fd, block + off, n, MSG_NOSIGNAL);
        if (w > 0)
            sent += (uint64_t)w;
        else
            ck_assert_msg(w < 0 && (errno == EAGAIN || errno == EINTR),
                          "the upload failed after %llu bytes: %s", (unsigned long long)sent,
                          w == 0 ? "?" : strerror(errno));
    }
    uint64_t elapsed = now_ms() - t0;
    long rss_end = rss_kib(p);
    if (rss_end > rss_max)
        rss_max = rss_end;
    double origin_read = rate * (double)elapsed / 1000.0;
    if (elapsed > 1000 && sent_at_1s > 0)
        note(
            "slow upstream: client sent %.2f MiB in %llu ms (%.2f MiB in the first second, then "
            "%.2f MB/s; the origin reads %.1f MB/s); rlproxy RSS %ld KiB -> max %ld KiB (+%ld KiB)",
            (double)sent / MIB, (unsigned long long)elapsed, (double)sent_at_1s / MIB,
            (double)(sent - sent_at_1s) / (double)(elapsed - 1000) / 1000.0, rate / 1e6, base,
            rss_max, rss_max - base);
    else
        note("slow upstream: client sent %.2f MiB in %llu ms; rlproxy RSS %ld KiB -> max %ld KiB "
             "(+%ld KiB)",
             (double)sent / MIB, (unsigned long long)elapsed, base, rss_max, rss_max - base);
    ck_assert_msg((double)sent < origin_read + 16.0 * MIB,
                  "the client sent %.1f MiB in %llu ms to an origin reading %.1f MB/s: rlproxy "
                  "kept reading the body",
                  (double)sent / MIB, (unsigned long long)elapsed, rate / 1e6);
    if (rss_checked(p))
        ck_assert_msg(rss_max - base < 4 * 1024, "rlproxy RSS grew by %ld KiB (limit 4096 KiB)",
                      rss_max - base);
    else
        note("slow upstream: sanitizer build: RSS not checked");
    close(fd); /* the upload is abandoned: rlproxy aborts the transfer and goes on serving */
    uint64_t ms = timed_get(p, o, "/bytes/100", 10000);
    note("slow upstream: a request after the abandoned upload took %llu ms",
         (unsigned long long)ms);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* 3. The slow reader of test 1 through a CONNECT tunnel (plain HTTP inside): a side whose peer's
 * output is over backpressure.buffer is not read. */
START_TEST(test_tunnel_slow_client)
{
    uint64_t total = harness_size(64 * MIB, 16 * MIB);
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("workers: 1\nconnect:\n  allowed_ports: [%d]\n", o->port);
    warm_up(p, o);
    struct slow_stats st = {.rss_base = rss_kib(p)};
    long long sent_base = origin_stat(o, "bytes_sent");
    int fd = tcp_connect(p->port, SLOW_RCVBUF, 0);
    char text[256];
    snprintf(text, sizeof text, "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
             o->port, o->port);
    send_str(fd, text);
    char head[8192];
    size_t head_len, extra;
    int status = read_head_fd(fd, head, sizeof head, &head_len, &extra, 10000);
    ck_assert_msg(status == 200, "CONNECT answered %d", status);
    ck_assert_uint_eq(extra, 0);
    snprintf(text, sizeof text,
             "GET /bytes/%llu HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
             (unsigned long long)total, o->port);
    send_str(fd, text);
    read_slowly(fd, total, p, o, sent_base, &st, "tunnel slow client");
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- max_inflight ---------------------------------------------------------------------------- */

static int max_concurrent(struct origin *o, const char *target, double span);

struct answer {
    int status;
    uint64_t ms; /* since the requests were sent */
    char retry_after[16];
};

/* Sends GET path on n connections accepted beforehand, then collects each answer as it comes */
static void fire(struct proxy *p, struct origin *o, const char *path, int n, struct answer *ans)
{
    struct raw *c[16];
    ck_assert(n <= 16);
    for (int i = 0; i < n; i++)
        c[i] = raw_connect(p->port);
    /* all accepted before any request arrives: which requests run, wait or are refused then
     * depends only on the counts (accepting pauses once one waits) */
    ck_assert_msg(proxy_wait_metric(p, "rlproxy_open_connections", n, 3000),
                  "rlproxy did not accept %d connections", n);
    char *req = proxy_request("GET", o, path, NULL);
    uint64_t t0 = now_ms();
    for (int i = 0; i < n; i++)
        raw_send_str(c[i], req);
    free(req);
    int left = n;
    for (int i = 0; i < n; i++)
        ans[i].status = 0;
    while (left > 0) {
        ck_assert_msg(now_ms() - t0 < 10000, "%d of %d requests unanswered after 10 s", left, n);
        struct pollfd pfd[16];
        for (int i = 0; i < n; i++)
            pfd[i] = (struct pollfd){ans[i].status ? -1 : c[i]->fd, POLLIN, 0};
        if (poll(pfd, (nfds_t)n, 100) <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            if (ans[i].status || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ans[i].ms = now_ms() - t0;
            struct http_response r;
            int rc = raw_read_response(c[i], &r, 0, 3000);
            ck_assert_msg(rc == RAW_OK, "request %d: %s", i, raw_result_name(rc));
            ans[i].status = r.status;
            const char *ra = resp_header(&r, "Retry-After", 0);
            snprintf(ans[i].retry_after, sizeof ans[i].retry_after, "%s", ra ? ra : "");
            http_response_free(&r);
            left--;
        }
    }
    for (int i = 0; i < n; i++)
        raw_close(c[i]);
}

static int by_ms(const void *a, const void *b)
{
    const struct answer *x = a, *y = b;
    return x->ms < y->ms ? -1 : x->ms > y->ms;
}

static void print_answers(const char *label, struct answer *ans, int n)
{
    char line[1024];
    size_t used = 0;
    for (int i = 0; i < n && used < sizeof line - 40; i++)
        used += (size_t)snprintf(line + used, sizeof line - used, " %d@%llums", ans[i].status,
                                 (unsigned long long)ans[i].ms);
    note("%s:%s", label, line);
}

/* 4. workers: 1, max_inflight: 4, origin /slow?delay=1 (each request takes 1 s).
 *   8 at once: all 200; 4 in flight answered after ~1 s, 4 waiting (unread, before the limiter)
 *   answered after ~2 s.
 *   12 at once: exactly 4 x 503 with Retry-After: 1 at once (the hard cap: as many waiting as
 *   max_inflight), 4 x 200 after ~1 s, 4 x 200 after ~2 s. */
START_TEST(test_max_inflight)
{
    struct origin *o;
    struct proxy *p =
        proxy_start_with_origin(&o, 0, "workers: 1\nbackpressure:\n  max_inflight: 4\n");
    struct answer ans[16];

    fire(p, o, "/slow?delay=1", 8, ans);
    qsort(ans, 8, sizeof ans[0], by_ms);
    print_answers("max_inflight 4, 8 requests", ans, 8);
    for (int i = 0; i < 8; i++)
        ck_assert_msg(ans[i].status == 200, "8 requests: #%d got %d", i, ans[i].status);
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(ans[i].ms >= 900 && ans[i].ms < 1700,
                      "8 requests: in-flight #%d answered after %llu ms, want ~1 s", i,
                      (unsigned long long)ans[i].ms);
        ck_assert_msg(ans[4 + i].ms >= 1900 && ans[4 + i].ms < 3500,
                      "8 requests: waiting #%d answered after %llu ms, want ~2 s", i,
                      (unsigned long long)ans[4 + i].ms);
    }
    /* accepting resumes once nothing waits (polled every 50 ms) */
    ck_assert(proxy_wait_metric(p, "rlproxy_open_connections", 0, 3000));
    sleep_ms(200);

    fire(p, o, "/slow?delay=1", 12, ans);
    qsort(ans, 12, sizeof ans[0], by_ms);
    print_answers("max_inflight 4, 12 requests", ans, 12);
    for (int i = 0; i < 4; i++) {
        ck_assert_msg(ans[i].status == 503 && ans[i].ms < 500,
                      "12 requests: want 4 x 503 at once, #%d got %d after %llu ms", i,
                      ans[i].status, (unsigned long long)ans[i].ms);
        ck_assert_msg(strcmp(ans[i].retry_after, "1") == 0, "503 with Retry-After \"%s\"",
                      ans[i].retry_after);
    }
    for (int i = 4; i < 8; i++)
        ck_assert_msg(ans[i].status == 200 && ans[i].ms >= 900 && ans[i].ms < 1700,
                      "12 requests: in-flight #%d got %d after %llu ms, want 200 after ~1 s", i,
                      ans[i].status, (unsigned long long)ans[i].ms);
    for (int i = 8; i < 12; i++)
        ck_assert_msg(ans[i].status == 200 && ans[i].ms >= 1900 && ans[i].ms < 3500,
                      "12 requests: waiting #%d got %d after %llu ms, want 200 after ~2 s", i,
                      ans[i].status, (unsigned long long)ans[i].ms);
    /* the refused requests never reached the origin, which never had more than 4 at once */
    ck_assert_int_eq(origin_stat(o, "requests"), 16);
    int concurrent = max_concurrent(o, "/slow?delay=1", 0.9);
    ck_assert_msg(concurrent == 4, "the origin saw %d requests at once", concurrent);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- max_connections ------------------------------------------------------------------------- */

/* 5. workers: 1, max_connections: 20. With 20 idle connections open, a 21st is accepted by the
 * kernel's backlog but not by rlproxy: its request gets no answer within 1 s. After 5 of the 20
 * close (15 < 90% of 20), accepting resumes: the waiting request and a new one are answered
 * within about a second. (workers: 1 — each worker checks the cap when it accepts, so with more
 * workers another one may accept a connection or so past it.) */
START_TEST(test_max_connections)
{
    struct origin *o;
    struct proxy *p =
        proxy_start_with_origin(&o, 0, "workers: 1\nbackpressure:\n  max_connections: 20\n");
    struct raw *idle[20];
    for (int i = 0; i < 20; i++)
        idle[i] = raw_connect(p->port);
    ck_assert_msg(proxy_wait_metric(p, "rlproxy_open_connections", 20, 3000),
                  "20 idle connections not accepted");
    struct raw *extra = raw_connect(p->port); /* completes: the kernel's backlog holds it */
    char *req = proxy_request("GET", o, "/bytes/10", NULL);
    raw_send_str(extra, req);
    size_t pending = raw_pending(extra, 1000);
    long long open = proxy_metric(p, "rlproxy_open_connections");
    note("max_connections 20: the 21st connection got %zu bytes in 1 s; rlproxy has %lld open",
         pending, open);
    ck_assert_msg(pending == 0 && !extra->eof,
                  "the 21st connection was served (or closed) over max_connections: %.*s",
                  (int)(pending < 200 ? pending : 200), extra->buf ? extra->buf : "");
    ck_assert_int_eq(open, 20);

    for (int i = 0; i < 5; i++)
        raw_close(idle[i]);
    uint64_t t0 = now_ms();
    struct http_response r;
    int rc = raw_read_response(extra, &r, 0, 2000);
    uint64_t waited_ms = now_ms() - t0;
    ck_assert_msg(rc == RAW_OK && r.status == 200, "the waiting request after 5 closed: %s %d",
                  raw_result_name(rc), r.status);
    http_response_free(&r);
    uint64_t fresh_ms = timed_get(p, o, "/bytes/10", 2000);
    note("max_connections 20: after 5 closed, the waiting request was answered in %llu ms, a new "
         "one took %llu ms",
         (unsigned long long)waited_ms, (unsigned long long)fresh_ms);
    ck_assert_msg(waited_ms < 1000, "waiting request answered after %llu ms",
                  (unsigned long long)waited_ms);
    ck_assert_msg(fresh_ms < 1000, "new request took %llu ms", (unsigned long long)fresh_ms);
    free(req);
    raw_close(extra);
    for (int i = 5; i < 20; i++)
        raw_close(idle[i]);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- many idle connections ------------------------------------------------------------------- */

/* Reads one small Content-Length response on a nonblocking fd; its status, or -1 */
static int small_response(int fd, int timeout_ms)
{
    char buf[4096];
    size_t len = 0;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *end = len ? memmem(buf, len, "\r\n\r\n", 4) : NULL;
        if (end != NULL) {
            const char *cl = strcasestr(buf, "\r\ncontent-length:");
            size_t body = cl != NULL && cl < end ? strtoul(cl + 17, NULL, 10) : 0;
            if (len >= (size_t)(end + 4 - buf) + body) {
                int status = -1;
                sscanf(buf, "HTTP/1.%*d %d", &status);
                return status;
            }
        }
        int64_t left = (int64_t)deadline - (int64_t)now_ms();
        if (left <= 0 || len >= sizeof buf - 1)
            return -1;
        ssize_t n = recv_wait(fd, buf + len, sizeof buf - 1 - len, (int)left);
        if (n == 0 || n == -1)
            return -1;
        if (n > 0) {
            len += (size_t)n;
            buf[len] = '\0';
        }
    }
}

/* Closes with RST (SO_LINGER 0): thousands of test connections must not leave thousands of
 * TIME_WAIT sockets behind, which would starve later connects (and other suites) of ports. */
static void close_rst(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* Opens n connections to the proxy, nonblocking, in batches of 100, each accepted by rlproxy
 * (its open-connection gauge counts them, base already open) before the next batch: a burst
 * beyond the listen queue would have SYNs dropped and connects retried a second later. */
static void open_many(struct proxy *p, int *fds, int n, long long base)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)p->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    enum { BATCH = 100 };
    for (int start = 0; start < n; start += BATCH) {
        int end = start + BATCH < n ? start + BATCH : n;
        for (int i = start; i < end; i++) {
            fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            ck_assert_msg(fds[i] >= 0, "socket #%d: %s", i, strerror(errno));
            int rc = connect(fds[i], (struct sockaddr *)&sa, sizeof sa);
            ck_assert_msg(rc == 0 || errno == EINPROGRESS, "connect #%d: %s", i, strerror(errno));
        }
        for (int i = start; i < end; i++) {
            struct pollfd pfd = {fds[i], POLLOUT, 0};
            ck_assert_msg(poll(&pfd, 1, 10000) == 1, "connect #%d timed out", i);
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &len);
            ck_assert_msg(err == 0, "connect #%d: %s", i, strerror(err));
        }
        uint64_t deadline = now_ms() + 10000;
        long long open;
        while ((open = proxy_metric(p, "rlproxy_open_connections")) < base + end) {
            ck_assert_msg(now_ms() < deadline, "rlproxy accepted %lld of %d connections",
                          open - base, end);
            sleep_ms(2);
        }
    }
}

/* A request on each of the n connections, at most window outstanding at a time */
static void request_on_all(struct origin *o, const int *fds, int n, int window)
{
    char *req = proxy_request("GET", o, "/bytes/16", NULL);
    size_t len = strlen(req);
    for (int start = 0; start < n; start += window) {
        int end = start + window < n ? start + window : n;
        for (int i = start; i < end; i++)
            ck_assert_msg(send(fds[i], req, len, MSG_NOSIGNAL) == (ssize_t)len, "send #%d: %s", i,
                          strerror(errno));
        for (int i = start; i < end; i++) {
            int status = small_response(fds[i], 10000);
            ck_assert_msg(status == 200, "request on idle connection #%d: status %d", i, status);
        }
    }
    free(req);
}

/* Request latencies on fresh connections: a response without a body (/status/204) and a small
 * one (/bytes/16). */
struct latency {
    double avg_empty, avg_body;
    uint64_t max_empty, max_body;
};

static struct latency latencies(struct proxy *p, struct origin *o)
{
    struct latency l = {0};
    for (int i = 0; i < 10; i++) {
        uint64_t a = timed_get(p, o, "/status/204", 5000);
        uint64_t b = timed_get(p, o, "/bytes/16", 5000);
        l.avg_empty += (double)a / 10.0;
        l.avg_body += (double)b / 10.0;
        l.max_empty = a > l.max_empty ? a : l.max_empty;
        l.max_body = b > l.max_body ? b : l.max_body;
    }
    return l;
}

/* Raises RLIMIT_NOFILE (the hard limit too, which root may) so this process and rlproxy, which
 * inherits it, can hold need descriptors each; 0 with the reason in why when it cannot. */
static int raise_nofile(rlim_t need, char *why, size_t why_len)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        snprintf(why, why_len, "getrlimit: %s", strerror(errno));
        return 0;
    }
    if (rl.rlim_cur >= need)
        return 1;
    struct rlimit want = {need, rl.rlim_max >= need ? rl.rlim_max : need};
    if (setrlimit(RLIMIT_NOFILE, &want) != 0) {
        snprintf(why, why_len, "RLIMIT_NOFILE is %llu/%llu and cannot be raised to %llu: %s",
                 (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                 (unsigned long long)need, strerror(errno));
        return 0;
    }
    return 1;
}

#define WINDOW 100 /* requests outstanding at once while the idle connections are used */

/* 6. 10,000 idle keep-alive connections (each has had one request answered) cost rlproxy at most
 * 1 KiB of RSS each, and a normal request meanwhile completes in under 100 ms. workers: 2;
 * max_connections above the count (its default, 10000, would pause accepting at exactly 10,000)
 * and no per-client cap. */
START_TEST(test_idle_connections)
{
    const int n = (harness_sanitizers() || harness_quick()) ? 2000 : 10000;
    char why[256];
    if (!raise_nofile((rlim_t)n + 1024, why, sizeof why)) {
        note("idle connections: SKIPPED: %s", why);
        return;
    }
    int *fds = calloc((size_t)n, sizeof *fds);
    ck_assert(fds != NULL);
    struct origin *o = origin_start(0);
    /* all come from 127.0.0.1: access.max_connections_per_client (default 256) off */
    struct proxy *p = proxy_startf("workers: 2\naccess:\n  max_connections_per_client: 0\n"
                                   "backpressure:\n  max_connections: %d\n",
                                   n + 1000);
    /* warm-up: the same path as the idle connections take, on a few of them */
    int warm[WINDOW];
    open_many(p, warm, WINDOW, 0);
    request_on_all(o, warm, WINDOW, WINDOW);
    for (int i = 0; i < WINDOW; i++)
        close_rst(warm[i]);
    ck_assert(proxy_wait_metric(p, "rlproxy_open_connections", 0, 3000));
    struct latency before_ms = latencies(p, o);
    long before = rss_kib(p);

    uint64_t t0 = now_ms();
    open_many(p, fds, n, 0);
    uint64_t open_ms = now_ms() - t0;
    long opened = rss_kib(p);
    request_on_all(o, fds, n, WINDOW);
    uint64_t setup_ms = now_ms() - t0;
    ck_assert_msg(proxy_wait_metric(p, "rlproxy_open_connections", n, 5000),
                  "rlproxy does not hold %d connections", n);
    /* folded one second after their response, and the freed heap trimmed a second later */
    uint64_t t_fold = now_ms();
    ck_assert_msg(proxy_wait_metric(p, "rlproxy_idle_connections", n, 15000),
                  "of %d idle connections %lld are folded", n,
                  proxy_metric(p, "rlproxy_idle_connections"));
    uint64_t fold_ms = now_ms() - t_fold;
    sleep_ms(1500);
    long after = rss_kib(p);
    struct latency after_ms = latencies(p, o);
    double per_conn = (double)(after - before) * 1024.0 / n;
    double per_opened = (double)(opened - before) * 1024.0 / n;
    note("idle connections: %d opened in %llu ms, each used once by %llu ms, all folded %llu ms "
         "later; rlproxy RSS %ld KiB -> %ld KiB opened (%.0f bytes each) -> %ld KiB after one "
         "request each (+%ld KiB: %.0f bytes per connection)",
         n, (unsigned long long)open_ms, (unsigned long long)setup_ms,
         (unsigned long long)fold_ms, before, opened, per_opened, after, after - before, per_conn);
    note("idle connections: request latency (ms, fresh connection, 10 each) with none open: "
         "/status/204 avg %.1f max %llu, /bytes/16 avg %.1f max %llu; with %d open: /status/204 "
         "avg %.1f max %llu, /bytes/16 avg %.1f max %llu",
         before_ms.avg_empty, (unsigned long long)before_ms.max_empty, before_ms.avg_body,
         (unsigned long long)before_ms.max_body, n, after_ms.avg_empty,
         (unsigned long long)after_ms.max_empty, after_ms.avg_body,
         (unsigned long long)after_ms.max_body);
    /* the figure is 100 ms (the log has the latencies); the check only catches a stall,
     * since this machine is shared */
    ck_assert_msg(after_ms.max_empty < 1000 && after_ms.max_body < 1000,
                  "with %d idle connections open a request took %llu ms (/status/204) or %llu ms "
                  "(/bytes/16)",
                  n, (unsigned long long)after_ms.max_empty, (unsigned long long)after_ms.max_body);
    if (rss_checked(p)) {
        ck_assert_msg(per_opened <= 1024.0,
                      "a new connection costs %.0f bytes of RSS before its request (limit 1024)",
                      per_opened);
        ck_assert_msg(per_conn <= 1024.0, "an idle connection costs %.0f bytes of RSS (limit 1024)",
                      per_conn);
    } else
        note("idle connections: sanitizer build: RSS not checked");
    /* they are still usable */
    request_on_all(o, fds, n < 200 ? n : 200, WINDOW);
    for (int i = 0; i < n; i++)
        close_rst(fds[i]);
    free(fds);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- overload -------------------------------------------------------------------------------- */

#define HAMMER_INFLIGHT 8
#define HAMMER_CLIENTS (4 * HAMMER_INFLIGHT)
#define HAMMER_PATH "/slow?delay=0.1"

struct hammer {
    uint64_t ok, overloaded, other;
    int answered[HAMMER_CLIENTS]; /* responses (any status) each client got */
};

static CURL *hammer_handle(struct proxy *p, const char *url)
{
    CURL *h = curl_easy_init();
    ck_assert(h != NULL);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, "127.0.0.1");
    curl_easy_setopt(h, CURLOPT_PROXYPORT, (long)p->port);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "");
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fwrite);
    static FILE *devnull;
    if (devnull == NULL)
        devnull = fopen("/dev/null", "w");
    curl_easy_setopt(h, CURLOPT_WRITEDATA, devnull);
    return h;
}

/* HAMMER_CLIENTS clients, each sending its next request as soon as the last is answered, for
 * run_ms; samples rlproxy's RSS every 100 ms into rss[] */
static void hammer(struct proxy *p, const char *url, uint64_t run_ms, struct hammer *h, long *rss,
                   int rss_cap, int *rss_n)
{
    CURLM *m = curl_multi_init();
    CURL *easy[HAMMER_CLIENTS];
    for (int i = 0; i < HAMMER_CLIENTS; i++) {
        easy[i] = hammer_handle(p, url);
        curl_easy_setopt(easy[i], CURLOPT_PRIVATE, (void *)&h->answered[i]);
        curl_multi_add_handle(m, easy[i]);
    }
    uint64_t t0 = now_ms(), next_sample = t0;
    *rss_n = 0;
    int running = 1;
    while (now_ms() - t0 < run_ms) {
        if (now_ms() >= next_sample && *rss_n < rss_cap) {
            rss[(*rss_n)++] = rss_kib(p);
            next_sample += 100;
        }
        curl_multi_perform(m, &running);
        struct multi_done d;
        while (multi_next_done(m, &d)) {
            int *answered = d.private;
            if (d.result == CURLE_OK && answered != NULL)
                (*answered)++;
            if (d.result == CURLE_OK && d.status == 200)
                h->ok++;
            else if (d.result == CURLE_OK && d.status == 503)
                h->overloaded++;
            else
                h->other++;
            curl_multi_remove_handle(m, d.easy);
            curl_multi_add_handle(m, d.easy); /* the next request at once */
        }
        curl_multi_poll(m, NULL, 0, 10, NULL);
    }
    for (int i = 0; i < HAMMER_CLIENTS; i++) {
        curl_multi_remove_handle(m, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_multi_cleanup(m); /* every client connection closes here */
}

/* Most requests for target that reached the origin within any span of `span` seconds, from the
 * origin's log. A request lasting at least span that started in such a window is still running at
 * its end, so this is the origin's concurrency for requests that take longer than span. */
static int max_concurrent(struct origin *o, const char *target, double span)
{
    char *log = origin_get(o, "/log");
    char needle[256];
    snprintf(needle, sizeof needle, "\"target\":\"%s\"", target);
    static double t[20000];
    int n = 0;
    for (const char *s = log; (s = strstr(s, needle)) != NULL && n < 20000; s++) {
        const char *m = strstr(s, "\"mono\":");
        if (m != NULL)
            t[n++] = strtod(m + 7, NULL);
    }
    free(log);
    int best = 0;
    for (int i = 0, j = 0; i < n; i++) { /* the log is in arrival order */
        while (t[i] - t[j] >= span)
            j++;
        best = i - j + 1 > best ? i - j + 1 : best;
    }
    return best;
}

/* max_inflight requests at once, each on a fresh connection: how many were answered 200 */
static int burst(struct proxy *p, const char *url, int n)
{
    CURLM *m = curl_multi_init();
    CURL *easy[HAMMER_CLIENTS];
    for (int i = 0; i < n; i++) {
        easy[i] = hammer_handle(p, url);
        curl_easy_setopt(easy[i], CURLOPT_FRESH_CONNECT, 1L);
        curl_multi_add_handle(m, easy[i]);
    }
    int running = 1, ok = 0;
    uint64_t t0 = now_ms();
    while (running > 0 && now_ms() - t0 < 5000) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 10, NULL);
    }
    CURLMsg *msg;
    int q;
    while ((msg = curl_multi_info_read(m, &q)) != NULL) {
        long status = 0;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        if (msg->msg == CURLMSG_DONE && msg->data.result == CURLE_OK && status == 200)
            ok++;
    }
    for (int i = 0; i < n; i++) {
        curl_multi_remove_handle(m, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_multi_cleanup(m);
    return ok;
}

/* 7. 4 x max_inflight clients hammering /slow?delay=0.1 for 3 s (workers: 1, max_inflight: 8):
 * the origin never sees more than 8 requests at once (the cap holds under load), some clients get
 * 503, rlproxy's RSS after the first second stays within 8 MiB of its value then, and once the
 * load stops, throughput is back within a second: max_inflight requests at once are all answered
 * 200 (tried every 50 ms: requests of clients that left, still queued or in the listen queue, are
 * served first — rlproxy cannot tell a client that half-closed from one that went away). */
START_TEST(test_overload_recovery)
{
    struct origin *o = origin_start(0);
    struct proxy *p =
        proxy_startf("workers: 1\nbackpressure:\n  max_inflight: %d\n", HAMMER_INFLIGHT);
    char url[256];
    origin_url(o, HAMMER_PATH, url, sizeof url);
    timed_get(p, o, "/status/204", 5000);
    struct hammer h = {0};
    long rss[64];
    int rss_n = 0;
    hammer(p, url, 3000, &h, rss, 64, &rss_n);
    uint64_t stopped = now_ms(), first_ok_ms = 0, recovered_ms = 0;
    int tries = 0, ok = 0;
    while (now_ms() - stopped < 3000) {
        tries++;
        ok = burst(p, url, HAMMER_INFLIGHT);
        if (ok > 0 && first_ok_ms == 0)
            first_ok_ms = now_ms() - stopped;
        if (ok == HAMMER_INFLIGHT) {
            recovered_ms = now_ms() - stopped;
            break;
        }
        sleep_ms(50);
    }

    long at_1s = rss_n > 10 ? rss[10] : rss[rss_n - 1], max_after = at_1s;
    for (int i = 10; i < rss_n; i++)
        max_after = rss[i] > max_after ? rss[i] : max_after;
    int concurrent = max_concurrent(o, HAMMER_PATH, 0.1 * 0.9), unanswered = 0;
    for (int i = 0; i < HAMMER_CLIENTS; i++)
        unanswered += h.answered[i] == 0;
    note("overload: %d clients on max_inflight %d for 3 s: %llu x 200, %llu x 503, %llu other; "
         "origin saw at most %d at once; rlproxy RSS %ld KiB at start, %ld KiB at 1 s, max %ld "
         "KiB after (+%ld KiB)",
         HAMMER_CLIENTS, HAMMER_INFLIGHT, (unsigned long long)h.ok,
         (unsigned long long)h.overloaded, (unsigned long long)h.other, concurrent, rss[0], at_1s,
         max_after, max_after - at_1s);
    /* printed, not asserted: accepting stays paused while any request waits for a slot, so
     * under sustained load from keep-alive clients new connections can wait in the listen queue
     * until the load stops, answered neither 200 nor 503 (bench/backpressure.py shows it) */
    note("overload: %d of %d clients got no answer at all during the load", unanswered,
         HAMMER_CLIENTS);
    note("overload: after the load stopped, the first 200 came after %llu ms, %d requests at once "
         "were all answered 200 by %llu ms (burst #%d)",
         (unsigned long long)first_ok_ms, HAMMER_INFLIGHT, (unsigned long long)recovered_ms, tries);
    ck_assert_msg(h.ok > 0 && h.overloaded > 0, "want both 200 and 503 under overload");
    ck_assert_msg(h.other == 0, "%llu requests failed otherwise", (unsigned long long)h.other);
    ck_assert_msg(concurrent <= HAMMER_INFLIGHT, "the origin saw %d requests at once (max %d)",
                  concurrent, HAMMER_INFLIGHT);
    if (rss_checked(p))
        ck_assert_msg(max_after - at_1s < 8 * 1024, "RSS grew by %ld KiB under load",
                      max_after - at_1s);
    else
        note("overload: sanitizer build: RSS not checked");
    ck_assert_msg(recovered_ms > 0 && recovered_ms < 1000,
                  "after the load: %d requests at once not all answered 200 within 1 s (last "
                  "burst: %d, took until %llu ms)",
                  HAMMER_INFLIGHT, ok, (unsigned long long)(now_ms() - stopped));
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- known gaps (see the comments) ----------------------------------------------------------- */

/* The listen queue is where clients wait while rlproxy does not accept (max_connections,
 * max_inflight): server.c listens with a backlog of 1024, so 600 connects must complete while
 * accepting is paused. (libevent's evconnlistener_new() with backlog -1 calls listen(fd, 128)
 * again, so today only 129 do; the rest have their SYNs dropped and retry after 1 s, 3 s, ...) */
START_TEST(test_listen_backlog)
{
    const int n = 600;
    char *somax = read_file("/proc/sys/net/core/somaxconn", NULL);
    long max = somax != NULL ? strtol(somax, NULL, 10) : 0;
    free(somax);
    if (max < 1024) {
        note("listen backlog: SKIPPED: net.core.somaxconn is %ld (< 1024)", max);
        return;
    }
    char why[256];
    if (!raise_nofile(n + 256, why, sizeof why)) {
        note("listen backlog: SKIPPED: %s", why);
        return;
    }
    struct proxy *p = proxy_start("workers: 1\nbackpressure:\n  max_connections: 1\n");
    int first = tcp_connect(p->port, 0, 0); /* at the cap: accepting pauses */
    ck_assert(proxy_wait_metric(p, "rlproxy_open_connections", 1, 3000));
    static int fds[600];
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)p->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        ck_assert(fds[i] >= 0);
        int rc = connect(fds[i], (struct sockaddr *)&sa, sizeof sa);
        ck_assert_msg(rc == 0 || errno == EINPROGRESS, "connect #%d: %s", i, strerror(errno));
    }
    sleep_ms(500);
    int done = 0;
    for (int i = 0; i < n; i++) {
        struct pollfd pfd = {fds[i], POLLOUT, 0};
        int err = 0;
        socklen_t len = sizeof err;
        if (poll(&pfd, 1, 0) == 1 && getsockopt(fds[i], SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
            err == 0)
            done++;
    }
    note("listen backlog: while rlproxy does not accept, %d of %d connects completed within "
         "500 ms",
         done, n);
    for (int i = 0; i < n; i++)
        close_rst(fds[i]);
    close_rst(first);
    proxy_stop(p);
    ck_assert_msg(done == n,
                  "only %d of %d clients got into the listen queue (backlog 1024 configured)", done,
                  n);
}
END_TEST

/* max_connections is process-wide, but each worker checks it only after an accept of its own and
 * then pauses only itself: with workers: 2 the other worker accepts one more connection. */
START_TEST(test_max_connections_all_workers)
{
    struct proxy *p = proxy_start("workers: 2\nbackpressure:\n  max_connections: 20\n");
    int fds[25];
    for (int i = 0; i < 20; i++)
        fds[i] = tcp_connect(p->port, 0, 0);
    ck_assert(proxy_wait_metric(p, "rlproxy_open_connections", 20, 3000));
    for (int i = 20; i < 25; i++)
        fds[i] = tcp_connect(p->port, 0, 0);
    sleep_ms(300);
    long long open = proxy_metric(p, "rlproxy_open_connections");
    note("max_connections 20, workers 2: %lld open after 25 connects", open);
    for (int i = 0; i < 25; i++)
        close_rst(fds[i]);
    proxy_stop(p);
    ck_assert_msg(open == 20, "max_connections 20 with 2 workers: %lld connections accepted", open);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backpressure");
    unit_add_tcase(s, harness_tcase("flow", 120),
                   UNIT_TESTS(test_slow_client, test_slow_upstream, test_tunnel_slow_client));
    unit_add_tcase(s, harness_tcase("caps", 120),
                   UNIT_TESTS(test_max_inflight, test_max_connections, test_idle_connections,
                              test_overload_recovery));
    unit_add_tcase(s, harness_tcase("gaps", 60),
                   UNIT_TESTS(test_listen_backlog, test_max_connections_all_workers));
    return harness_run_suite(s);
}
