/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_keepalive.c — connection handling toward the client (issue 2, item 3): keep-alive,
 * pipelining answered in order, HTTP/1.0 clients, Expect: 100-continue, chunked request bodies,
 * idle timeout; and toward the origin (item 4): upstream connections are reused. */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

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

HARNESS_MAIN("keepalive", 0, test_sequential_requests_one_connection,
             test_pipelined_answered_in_order, test_http10_client, test_expect_100_continue,
             test_chunked_request_body, test_connection_close_honoured, test_client_idle_timeout,
             test_idle_connection_folded, test_upstream_connection_reused)
