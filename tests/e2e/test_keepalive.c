/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_keepalive.c — connection handling toward the client (issue 2, item 3): keep-alive,
 * pipelining answered in order, HTTP/1.0 clients, Expect: 100-continue, chunked request bodies,
 * idle timeout; and toward the origin (item 4): upstream connections are reused, also with more
 * transfers in flight than one curl multi shard takes (src/upstream.c, SHARD_TRANSFERS). */
#include "harness.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define T_MS 10000

/* /sink's verdict on the body: length and sha256 must be what we sent */
static void expect_sink(struct raw *c, const void *body, size_t len)
{
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "sink response: %s", raw_result_name(rc));
    ck_assert_int_eq(r.status, 200);
    long long got = -1;
    char want[65];
    sha256_hex(body, len, want);
    ck_assert_msg(json_get_int(r.body, "length", &got) == 0 && got == (long long)len,
                  "origin got %lld bytes, sent %zu: %s", got, len, r.body);
    char *sha = json_get_str(r.body, "sha256");
    ck_assert_msg(sha != NULL && strcmp(sha, want) == 0, "body changed on the way: %s", r.body);
    free(sha);
    http_response_free(&r);
}

START_TEST(test_sequential_requests_one_connection)
{
    static const size_t sizes[] = {0, 1, 1000, 65536, 300000, 17};
    struct fixture f = fixture_up(0, NULL);
    struct raw *c = raw_connect(f.p->port);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char path[64], what[96];
        snprintf(path, sizeof path, "/bytes/%zu", sizes[i]);
        snprintf(what, sizeof what, "request %zu (%s)", i + 1, path);
        raw_send_proxy_request(c, "GET", f.o, path, NULL);
        raw_expect_pattern(c, sizes[i], what);
    }
    raw_send_proxy_request(c, "GET", f.o, "/status/404",
                           NULL); /* an error status keeps the connection too */
    raw_expect_status(c, 404, "a 404 on a kept-alive connection");
    raw_get_pattern(c, f.o, 5, "after a 404");
    raw_close(c);
    fixture_down(f);
}
END_TEST

START_TEST(test_pipelined_answered_in_order)
{
    struct fixture f = fixture_up(0, NULL);
    struct raw *c = raw_connect(f.p->port);
    /* the first is the slowest: answering in completion order would put it last */
    static const char *const requests[] = {"GET",  "/slow?delay=0.5", "GET", "/bytes/5",
                                           "HEAD", "/bytes/70000",    "GET", "/headers/third",
                                           NULL};
    raw_send_pipelined(c, f.o, requests);
    struct http_response r;
    ck_assert_int_eq(raw_read_response(c, &r, 0, T_MS), RAW_OK);
    ck_assert_str_eq(r.body, "slow");
    http_response_free(&r);
    raw_expect_pattern(c, 5, "second pipelined");
    ck_assert_int_eq(raw_read_response(c, &r, RESP_HEAD, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 200);
    http_response_free(&r);
    ck_assert_int_eq(raw_read_response(c, &r, 0, T_MS), RAW_OK);
    char *target = json_get_str(r.body, "target");
    ck_assert_msg(target != NULL && strcmp(target, "/headers/third") == 0, "fourth: %s", r.body);
    free(target);
    http_response_free(&r);
    raw_close(c);
    fixture_down(f);
}
END_TEST

/* An HTTP/1.0 client gets a body it can delimit (never chunked: 1.0 has no chunked coding) */
static void http10_get(struct fixture f, const char *path, size_t n, const char *extra)
{
    struct raw *c = raw_connect(f.p->port);
    raw_sendf(c, "GET http://127.0.0.1:%d%s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n%s\r\n", f.o->port,
              path, f.o->port, extra);
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "HTTP/1.0 %s: %s", path, raw_result_name(rc));
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(!r.chunked, "chunked response to an HTTP/1.0 client");
    ck_assert_uint_eq(r.body_len, n);
    ck_assert_int_eq(pattern_mismatch(r.body, n, 0), -1);
    const char *conn = resp_header(&r, "Connection", 0);
    int kept = conn != NULL && strcasestr(conn, "keep-alive") != NULL;
    if (!r.close_delimited && !kept)
        ck_assert_msg(raw_wait_closed(c, 3000), "HTTP/1.0 connection left open without keep-alive");
    http_response_free(&r);
    raw_close(c);
}

START_TEST(test_http10_client)
{
    struct fixture f = fixture_up(0, NULL);
    http10_get(f, "/bytes/5000", 5000, "");
    http10_get(f, "/bytes/100000?chunked=1", 100000, "");
    http10_get(f, "/bytes/3000", 3000, "Connection: keep-alive\r\n");
    fixture_down(f);
}
END_TEST

START_TEST(test_expect_100_continue)
{
    struct fixture f = fixture_up(0, NULL);
    struct raw *c = raw_connect(f.p->port);
    size_t len = 1 << 20;
    char *body = malloc(len);
    pattern_fill(body, len, 0);
    char extra[128];
    snprintf(extra, sizeof extra, "Content-Length: %zu\r\nExpect: 100-continue\r\n", len);
    raw_send_proxy_request(c, "POST", f.o, "/sink", extra);
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, 5000);
    ck_assert_msg(rc == RAW_OK, "no interim response: %s", raw_result_name(rc));
    ck_assert_msg(r.status == 100, "wanted 100 Continue, got %d", r.status);
    ck_assert_str_eq(r.version, "HTTP/1.1");
    http_response_free(&r);
    raw_send(c, body, len);
    expect_sink(c, body, len);
    /* and the connection is still usable */
    raw_get_pattern(c, f.o, 10, "after 100-continue");
    free(body);
    raw_close(c);
    fixture_down(f);
}
END_TEST

START_TEST(test_chunked_request_body)
{
    struct fixture f = fixture_up(0, NULL);
    struct raw *c = raw_connect(f.p->port);
    raw_send_proxy_request(c, "POST", f.o, "/sink", "Transfer-Encoding: chunked\r\n");
    /* sent in pieces, with an extension and a trailer, as a streaming client would */
    static const char *pieces[] = {"5\r\nhello\r\n", "1;ext=1\r\n \r\n", "A\r\n0123", "456789\r\n",
                                   "0\r\nX-Trailer: t\r\n\r\n"};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        raw_send_str(c, pieces[i]);
        sleep_ms(50);
    }
    expect_sink(c, "hello 0123456789", 16);
    /* a bigger one, in one go, then the connection carries on */
    size_t len = 3 * 65536 + 123;
    char *body = malloc(len);
    pattern_fill(body, len, 0);
    raw_send_proxy_request(c, "PUT", f.o, "/sink", "Transfer-Encoding: chunked\r\n");
    for (size_t off = 0; off < len; off += 10000) {
        size_t n = len - off < 10000 ? len - off : 10000;
        raw_sendf(c, "%zx\r\n", n);
        raw_send(c, body + off, n);
        raw_send_str(c, "\r\n");
    }
    raw_send_str(c, "0\r\n\r\n");
    expect_sink(c, body, len);
    raw_get_pattern(c, f.o, 10, "after chunked uploads");
    free(body);
    raw_close(c);
    fixture_down(f);
}
END_TEST

START_TEST(test_connection_close_honoured)
{
    struct fixture f = fixture_up(0, NULL);
    struct raw *c = raw_connect(f.p->port);
    raw_send_proxy_request(c, "GET", f.o, "/bytes/100", "Connection: close\r\n");
    raw_expect_pattern(c, 100, "Connection: close request");
    ck_assert_msg(raw_wait_closed(c, 3000), "connection not closed after Connection: close");
    raw_close(c);
    fixture_down(f);
}
END_TEST

START_TEST(test_client_idle_timeout)
{
    struct fixture f = fixture_up(0, "timeouts:\n  client_idle: 1s\n");
    struct raw *c = raw_connect(f.p->port);
    raw_get_pattern(c, f.o, 10, "before idling");
    raw_assert_closed_between(c, 700, 5000, "idle keep-alive connection (timeout 1 s)");
    raw_close(c);
    fixture_down(f);
}
END_TEST

/* An idle connection is folded to its socket after 1 s (rlproxy_idle_connections counts it), a
 * new one starts folded, and a folded one wakes for a whole or a split request; the idle timeout
 * still counts from the last response. */
START_TEST(test_idle_connection_folded)
{
    struct fixture f = fixture_up(0, "timeouts:\n  client_idle: 3s\n");
    struct raw *c = raw_connect(f.p->port);
    ck_assert_msg(proxy_wait_metric(f.p, "rlproxy_idle_connections", 1, 3000),
                  "a new connection is not held folded");
    raw_get_pattern(c, f.o, 10, "first request, from folded");
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_idle_connections"), 0);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_open_connections"), 1);
    uint64_t t0 = now_ms();
    ck_assert_msg(proxy_wait_metric(f.p, "rlproxy_idle_connections", 1, 5000),
                  "an idle keep-alive connection was not folded");
    fprintf(stderr, "keepalive: folded %llu ms after the response\n",
            (unsigned long long)(now_ms() - t0));
    /* the request line in two pieces: the first wakes it, the parser gets both */
    char *req = proxy_request("GET", f.o, "/bytes/2000", NULL);
    size_t half = strlen(req) / 2;
    raw_send(c, req, half);
    sleep_ms(100);
    raw_send_str(c, req + half);
    free(req);
    raw_expect_pattern(c, 2000, "split request on a folded connection");
    ck_assert_msg(proxy_wait_metric(f.p, "rlproxy_idle_connections", 1, 5000),
                  "not folded again");
    raw_get_pattern(c, f.o, 100, "third request");
    raw_assert_closed_between(c, 2500, 8000, "folded connection (timeout 3 s)");
    raw_close(c);
    ck_assert(proxy_wait_metric(f.p, "rlproxy_open_connections", 0, 3000));
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_idle_connections"), 0);
    fixture_down(f);
}
END_TEST

/* The origin numbers its connections: requests served on the same upstream connection share it */
static long long conn_of_last_request(struct fixture f)
{
    char *log = origin_get(f.o, "/log");
    const char *last = strrchr(log, '{');
    long long conn = -1;
    ck_assert_msg(last != NULL && json_get_int(last, "conn", &conn) == 0, "log: %s", log);
    free(log);
    return conn;
}

START_TEST(test_upstream_connection_reused)
{
    struct fixture f = fixture_up(0, "workers: 1\n");
    struct raw *c = raw_connect(f.p->port);
    long long first = -1;
    for (int i = 0; i < 5; i++) {
        raw_get_pattern(c, f.o, 100, "keep-alive request");
        long long conn = conn_of_last_request(f);
        if (i == 0)
            first = conn;
        ck_assert_msg(conn == first, "request %d used upstream connection %lld, first used %lld",
                      i + 1, conn, first);
    }
    raw_close(c);
    /* a new client connection on the same worker reuses the pooled upstream connection too */
    c = raw_connect(f.p->port);
    raw_get_pattern(c, f.o, 100, "new client connection");
    ck_assert_int_eq(conn_of_last_request(f), first);
    raw_close(c);
    fixture_down(f);
}
END_TEST

/* ---- many transfers in flight at once -------------------------------------------------------- */

#define WAVE_CLIENTS 200
/* src/upstream.c's SHARD_TRANSFERS: more requests than this in flight at once use a second shard */
#define SHARD_TRANSFERS 128
/* origin connections a wave may open beyond one per request in flight before the test calls the
 * reuse broken (curl may race a connection that is just going back to its cache) */
#define REUSE_SLACK 10
#define HOLD_CONNECTIONS_MAX 1024
#define HOLD_HEAD_MAX 2048

struct held_connection {
    int fd;                       /* -1: closed, to be compacted away */
    char head[HOLD_HEAD_MAX + 1]; /* NUL-terminated for sscanf */
    size_t len;
    uint64_t arrived_ms;   /* when its request was complete; 0 while none waits for an answer */
    uint64_t answer_at_ms; /* once its whole wave waits: when it is answered; else 0 */
    char path[128];
};

/* An origin on a thread of this test process, so it can count the TCP connections it accepts and
 * close its idle ones on demand (tests/origin/origin.py can do neither). It holds every answer
 * until `gate` requests are waiting at once, then answers them all hold_ms later; a request that
 * waited fallback_ms is answered anyway (a proxy that never gets a whole wave in flight then
 * fails on held_max, not on a hang). Releasing on the count, not after a fixed delay alone, keeps
 * a whole wave in flight together however loaded the machine is. */
struct hold_origin {
    int listen_fd;
    int port;
    long gate;
    uint64_t hold_ms, fallback_ms;
    pthread_t thread;
    _Atomic int stopping;
    _Atomic long accepted;    /* TCP connections, ever */
    _Atomic long held_max;    /* most requests waiting at once since hold_origin_take_held_max */
    _Atomic long bad;         /* connections dropped for an unreadable request or a short write */
    _Atomic int close_asked;  /* hold_origin_close_idle bumps it ... */
    _Atomic int close_done;   /* ... and the thread catches up once it closed them */
    _Atomic long closed_idle; /* idle connections closed on demand, ever */
    struct held_connection *connections;
    size_t count;
};

static void held_close(struct held_connection *c)
{
    close(c->fd);
    c->fd = -1;
}

/* A complete request head in c->head becomes a held request for its path */
static void held_take_request(struct hold_origin *h, struct held_connection *c)
{
    if (c->arrived_ms != 0)
        return;
    char *end = memmem(c->head, c->len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (c->len == HOLD_HEAD_MAX) { /* our clients' heads are small: this is not one */
            atomic_fetch_add(&h->bad, 1);
            held_close(c);
        }
        return;
    }
    char method[16];
    if (sscanf(c->head, "%15s %127s", method, c->path) != 2) {
        atomic_fetch_add(&h->bad, 1);
        held_close(c);
        return;
    }
    size_t used = (size_t)(end + 4 - c->head);
    memmove(c->head, end + 4, c->len - used); /* GETs only: nothing of a body follows */
    c->len -= used;
    c->head[c->len] = '\0';
    c->arrived_ms = now_ms();
}

/* The body names the request; a path ending in "?close" is answered with Connection: close and
 * the connection closed after it */
static void held_answer(struct hold_origin *h, struct held_connection *c)
{
    char body[160], response[360];
    int body_len = snprintf(body, sizeof body, "held %s", c->path);
    const char *query = strchr(c->path, '?');
    int closing = query != NULL && strcmp(query, "?close") == 0;
    int len = snprintf(response, sizeof response,
                       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s"
                       "\r\n%s",
                       body_len, closing ? "Connection: close\r\n" : "", body);
    c->arrived_ms = 0;
    c->answer_at_ms = 0;
    /* a few hundred bytes into an empty socket buffer go in one write */
    if (send(c->fd, response, (size_t)len, MSG_NOSIGNAL) != len) {
        atomic_fetch_add(&h->bad, 1);
        held_close(c);
    } else if (closing) {
        held_close(c);
    }
}

static void held_read(struct hold_origin *h, struct held_connection *c)
{
    ssize_t n = recv(c->fd, c->head + c->len, HOLD_HEAD_MAX - c->len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) { /* rlproxy closed it (or reset it) */
        held_close(c);
        return;
    }
    c->len += (size_t)n;
    c->head[c->len] = '\0';
    held_take_request(h, c);
}

static void hold_origin_accept(struct hold_origin *h)
{
    for (;;) {
        int fd = accept4(h->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        atomic_fetch_add(&h->accepted, 1);
        if (h->count == HOLD_CONNECTIONS_MAX) {
            atomic_fetch_add(&h->bad, 1);
            close(fd);
            continue;
        }
        struct held_connection *c = &h->connections[h->count++];
        memset(c, 0, sizeof *c);
        c->fd = fd;
    }
}

static void hold_origin_close_idle_now(struct hold_origin *h)
{
    int asked = atomic_load(&h->close_asked);
    if (asked == atomic_load(&h->close_done))
        return;
    for (size_t i = 0; i < h->count; i++)
        if (h->connections[i].fd >= 0 && h->connections[i].arrived_ms == 0 &&
            h->connections[i].len == 0) {
            held_close(&h->connections[i]);
            atomic_fetch_add(&h->closed_idle, 1);
        }
    atomic_store(&h->close_done, asked);
}

/* Answers what waits: a whole wave hold_ms after it was all there, else what waited fallback_ms */
static void hold_origin_release(struct hold_origin *h)
{
    long held = 0;
    for (size_t i = 0; i < h->count; i++)
        if (h->connections[i].fd >= 0 && h->connections[i].arrived_ms != 0)
            held++;
    long max = atomic_load(&h->held_max);
    while (held > max && !atomic_compare_exchange_weak(&h->held_max, &max, held)) {
    }
    uint64_t now = now_ms();
    for (size_t i = 0; i < h->count; i++) {
        struct held_connection *c = &h->connections[i];
        if (c->fd < 0 || c->arrived_ms == 0)
            continue;
        if (held >= h->gate && c->answer_at_ms == 0)
            c->answer_at_ms = now + h->hold_ms;
        if ((c->answer_at_ms != 0 && now >= c->answer_at_ms) ||
            now - c->arrived_ms >= h->fallback_ms)
            held_answer(h, c);
    }
}

static void hold_origin_compact(struct hold_origin *h)
{
    size_t kept = 0;
    for (size_t i = 0; i < h->count; i++)
        if (h->connections[i].fd >= 0) {
            if (kept != i)
                h->connections[kept] = h->connections[i];
            kept++;
        }
    h->count = kept;
}

static void *hold_origin_run(void *arg)
{
    struct hold_origin *h = arg;
    struct pollfd *fds = calloc(HOLD_CONNECTIONS_MAX + 1, sizeof *fds);
    if (fds == NULL) {
        atomic_fetch_add(&h->bad, 1);
        return NULL;
    }
    while (!atomic_load(&h->stopping)) {
        hold_origin_close_idle_now(h);
        hold_origin_compact(h);
        fds[0] = (struct pollfd){h->listen_fd, POLLIN, 0};
        for (size_t i = 0; i < h->count; i++)
            fds[i + 1] = (struct pollfd){h->connections[i].fd, POLLIN, 0};
        size_t watched = h->count; /* accepting below appends past these */
        /* 10 ms: how soon a close request, the stop flag or a fallback answer is noticed */
        if (poll(fds, watched + 1, 10) < 0 && errno != EINTR)
            break;
        for (size_t i = 0; i < watched; i++)
            if (fds[i + 1].revents != 0)
                held_read(h, &h->connections[i]);
        if (fds[0].revents & POLLIN)
            hold_origin_accept(h);
        hold_origin_release(h);
    }
    free(fds);
    return NULL;
}

static struct hold_origin *hold_origin_start(long gate, uint64_t hold_ms, uint64_t fallback_ms)
{
    struct hold_origin *h = calloc(1, sizeof *h);
    ck_assert(h != NULL);
    h->connections = calloc(HOLD_CONNECTIONS_MAX, sizeof *h->connections);
    ck_assert(h->connections != NULL);
    h->gate = gate;
    h->hold_ms = hold_ms;
    h->fallback_ms = fallback_ms;
    h->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ck_assert(h->listen_fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    ck_assert(bind(h->listen_fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    ck_assert(listen(h->listen_fd, 1024) == 0); /* a whole wave may connect at once */
    ck_assert(getsockname(h->listen_fd, (struct sockaddr *)&sa, &len) == 0);
    h->port = ntohs(sa.sin_port);
    ck_assert(pthread_create(&h->thread, NULL, hold_origin_run, h) == 0);
    return h;
}

static long hold_origin_take_held_max(struct hold_origin *h)
{
    return atomic_exchange(&h->held_max, 0);
}

/* Closes every idle connection (FIN, as an origin's keep-alive timeout does); how many */
static long hold_origin_close_idle(struct hold_origin *h)
{
    long before = atomic_load(&h->closed_idle);
    int asked = atomic_fetch_add(&h->close_asked, 1) + 1;
    uint64_t deadline = now_ms() + 5000;
    while (atomic_load(&h->close_done) != asked && now_ms() < deadline)
        sleep_ms(5);
    ck_assert_msg(atomic_load(&h->close_done) == asked, "the origin did not close its connections");
    return atomic_load(&h->closed_idle) - before;
}

static void hold_origin_stop(struct hold_origin *h)
{
    atomic_store(&h->stopping, 1);
    pthread_join(h->thread, NULL);
    for (size_t i = 0; i < h->count; i++)
        if (h->connections[i].fd >= 0)
            close(h->connections[i].fd);
    close(h->listen_fd);
    free(h->connections);
    free(h);
}

/* This process and rlproxy (which inherits the limit) hold a few hundred sockets each */
static void raise_nofile(rlim_t need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= need)
        return;
    struct rlimit want = {need, rl.rlim_max >= need ? rl.rlim_max : need};
    if (setrlimit(RLIMIT_NOFILE, &want) != 0) /* the wave still fits in 1024, barely */
        fprintf(stderr, "keepalive: RLIMIT_NOFILE stays %llu: %s\n",
                (unsigned long long)rl.rlim_cur, strerror(errno));
}

/* One GET per client (a new connection where clients[i] is NULL) of /waveW/clientI + query, all
 * sent before any answer is read, so they are in flight together; each must be a 200 whose body
 * names its own request. How many were; the first failure is described in failure. */
static int run_wave(struct proxy *p, struct hold_origin *h, struct raw **clients, int wave,
                    const char *query, int timeout_ms, char *failure, size_t failure_len)
{
    failure[0] = '\0';
    int sent[WAVE_CLIENTS] = {0};
    for (int i = 0; i < WAVE_CLIENTS; i++) {
        if (clients[i] == NULL)
            clients[i] = raw_connect(p->port);
        char path[80];
        snprintf(path, sizeof path, "/wave%d/client%d%s", wave, i, query);
        sent[i] = raw_send_request(clients[i], "GET", "127.0.0.1", h->port, path) == 0;
        if (!sent[i]) {
            if (failure[0] == '\0')
                snprintf(failure, failure_len, "wave %d, client %d: cannot send", wave, i);
            raw_close(clients[i]);
            clients[i] = NULL;
        }
    }
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    int ok = 0;
    for (int i = 0; i < WAVE_CLIENTS; i++) {
        if (!sent[i])
            continue;
        int64_t left = (int64_t)(deadline - now_ms());
        struct http_response r;
        int rc = raw_read_response(clients[i], &r, 0, left > 0 ? (int)left : 1);
        char want[96];
        snprintf(want, sizeof want, "held /wave%d/client%d%s", wave, i, query);
        if (rc == RAW_OK && r.status == 200 && r.body != NULL && strcmp(r.body, want) == 0)
            ok++;
        else if (failure[0] == '\0')
            snprintf(failure, failure_len, "wave %d, client %d: %s, status %d, body \"%.80s\"",
                     wave, i, raw_result_name(rc), r.status, r.body != NULL ? r.body : "");
        if (rc != RAW_OK || resp_wants_close(&r)) { /* the next wave connects again */
            raw_close(clients[i]);
            clients[i] = NULL;
        }
        http_response_free(&r);
    }
    return ok;
}

/* 200 requests in flight at once on one worker (default backpressure.max_inflight 1024: 8 shards
 * of 128 transfers) take two shards, in five waves of 200:
 *   1. on new client connections: 200 origin connections;
 *   2. on the same client connections: the first wave's origin connections, none new;
 *   3. after the origin closed all of them (FIN): curl finds them dead and opens 200 new ones;
 *   4. answered with Connection: close: curl closes every connection as its transfer ends, while
 *      the shard still watches it for reading (an idle connection stays registered);
 *   5. on 200 new client connections, which rlproxy accepts on the descriptor numbers wave 4 freed:
 *      a socket closed without its shard's watch dropped would leave libevent believing the number
 *      is still in epoll, and the client on it would never be read.
 * Connections curl closes must be unregistered from the shard that watches them (shard_bind). */
START_TEST(test_many_in_flight_reuse_origin_connections)
{
    enum { WAVES = 5 };
    raise_nofile(4096);
    int slow = harness_slow() || harness_wrapped();
    int timeout_ms = slow ? 60000 : 10000;
    struct hold_origin *h = hold_origin_start(WAVE_CLIENTS, 300, slow ? 20000 : 3000);
    /* all clients come from 127.0.0.1: no per-client cap */
    struct proxy *p = proxy_start("workers: 1\naccess:\n  max_connections_per_client: 0\n");
    struct raw *clients[WAVE_CLIENTS] = {0}, *fresh[WAVE_CLIENTS] = {0};
    char failure[256];
    long accepted[WAVES + 1] = {0}, held_max[WAVES + 1] = {0}, closed = 0;
    int ok[WAVES + 1] = {0};
    static const char *const what[WAVES + 1] = {
        "", /* waves count from 1 */
        "",
        "",
        ", after the origin closed its idle ones",
        ", answered with Connection: close",
        ", on new client connections",
    };

    for (int wave = 1; wave <= WAVES; wave++) {
        if (wave == 3) {
            closed = hold_origin_close_idle(h);
            /* the FINs reach rlproxy (a pass does not need it: curl checks at reuse) */
            sleep_ms(100);
        }
        uint64_t started_ms = now_ms();
        ok[wave] = run_wave(p, h, wave == 5 ? fresh : clients, wave, wave == 4 ? "?close" : "",
                            timeout_ms, failure, sizeof failure);
        uint64_t took_ms = now_ms() - started_ms;
        accepted[wave] = atomic_load(&h->accepted);
        held_max[wave] = hold_origin_take_held_max(h);
        fprintf(stderr,
                "keepalive: wave %d: %d of %d answered in %llu ms, %ld in flight at once at most, "
                "origin connections accepted %ld (total %ld)%s\n",
                wave, ok[wave], WAVE_CLIENTS, (unsigned long long)took_ms, held_max[wave],
                accepted[wave] - accepted[wave - 1], accepted[wave], what[wave]);
        ck_assert_msg(ok[wave] == WAVE_CLIENTS, "wave %d%s: %d of %d answered; %s", wave,
                      what[wave], ok[wave], WAVE_CLIENTS, failure);
        ck_assert_msg(held_max[wave] > SHARD_TRANSFERS,
                      "wave %d: only %ld requests reached the origin at once (more than %d take a "
                      "second shard)",
                      wave, held_max[wave], SHARD_TRANSFERS);
        ck_assert_msg(accepted[wave] - accepted[wave - 1] <= WAVE_CLIENTS + REUSE_SLACK,
                      "wave %d opened %ld origin connections for %d requests", wave,
                      accepted[wave] - accepted[wave - 1], WAVE_CLIENTS);
        if (wave == 2 || wave == 4)
            ck_assert_msg(accepted[wave] - accepted[wave - 1] <= REUSE_SLACK,
                          "wave %d did not reuse the previous wave's origin connections: it "
                          "opened %ld more",
                          wave, accepted[wave] - accepted[wave - 1]);
        if (wave == 3)
            ck_assert_msg(closed >= WAVE_CLIENTS - REUSE_SLACK,
                          "the origin closed only %ld idle connections before wave 3", closed);
    }
    ck_assert_int_eq(atomic_load(&h->bad), 0);
    for (int i = 0; i < WAVE_CLIENTS; i++) {
        if (clients[i] != NULL)
            raw_close(clients[i]);
        if (fresh[i] != NULL)
            raw_close(fresh[i]);
    }
    proxy_stop(p);
    hold_origin_stop(h);
}
END_TEST

HARNESS_MAIN("keepalive", 0, test_sequential_requests_one_connection,
             test_pipelined_answered_in_order, test_http10_client, test_expect_100_continue,
             test_chunked_request_body, test_connection_close_honoured, test_client_idle_timeout,
             test_idle_connection_folded, test_upstream_connection_reused,
             test_many_in_flight_reuse_origin_connections)
