/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_errors.c — errors that say what happened (issue 2, item 7): 502/504 with a one-line body
 * naming cause and target; hostile or malformed requests get 400/414/431 and a clean close, and
 * the daemon keeps serving; a client that leaves mid-download aborts the upstream transfer;
 * access.allow refuses other clients. */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#define T_MS 10000

/* One line of text: nothing after the first newline */
static void assert_one_line(const char *body)
{
    ck_assert_msg(body[0] != '\0', "empty error body");
    const char *nl = strchr(body, '\n');
    ck_assert_msg(nl == NULL || nl[1] == '\0', "error body is not one line: %s", body);
}

static void get_via(struct fixture f, const char *url, long timeout_ms, struct fetch_res *rs)
{
    struct fetch_req rq = {.url = url, .proxy_port = f.p->port, .timeout_ms = timeout_ms};
    fetch(&rq, rs);
    ck_assert_msg(rs->rc == CURLE_OK, "GET %s: curl error %d: %s", url, (int)rs->rc, rs->err);
}

/* GET url through the proxy: the answer is status with a one-line body that says cause (any case)
 * and names target, and the proxy goes on serving. Returns how long the answer took. */
static uint64_t assert_upstream_error(struct fixture f, const char *url, int status,
                                      const char *cause, const char *target)
{
    struct fetch_res rs;
    uint64_t t0 = now_ms();
    get_via(f, url, 20000, &rs);
    uint64_t ms = now_ms() - t0;
    ck_assert_int_eq(rs.status, status);
    ck_assert_msg(strcasestr(rs.body, cause) != NULL, "body: %s", rs.body);
    ck_assert_msg(strstr(rs.body, target) != NULL, "body does not name %s: %s", target, rs.body);
    assert_one_line(rs.body);
    fetch_free(&rs);
    fixture_still_serving(f, 100);
    return ms;
}

/* A DNS label over 63 octets makes the resolver fail before any packet leaves this machine
 * (glibc's res_mkquery refuses it; checked with strace), so this test never leaves loopback. A
 * plain "nonexistent.invalid" would be sent to the configured nameserver. */
#define UNRESOLVABLE "nonexistent-host-name-with-a-dns-label-longer-than-sixty-three-octets.invalid"

START_TEST(test_unresolvable_host_502)
{
    struct fixture f = fixture_up(0, NULL);
    assert_upstream_error(f, "http://" UNRESOLVABLE "/some/path", 502, "resolve", UNRESOLVABLE);
    fixture_down(f);
}
END_TEST

START_TEST(test_connection_refused_502)
{
    struct fixture f = fixture_up(0, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/x", harness_closed_port());
    assert_upstream_error(f, url, 502, "refused", "127.0.0.1");
    fixture_down(f);
}
END_TEST

START_TEST(test_upstream_timeout_504)
{
    struct fixture f = fixture_up(0, "timeouts:\n  upstream_response: 1s\n");
    char url[256];
    uint64_t ms = assert_upstream_error(f, origin_url(f.o, "/slow?delay=5", url, sizeof url), 504,
                                        "timed out", "127.0.0.1");
    ck_assert_msg(ms >= 800 && ms < 4500, "504 after %llu ms for a 1 s timeout",
                  (unsigned long long)ms);
    fixture_down(f);
}
END_TEST

/* ---- malformed requests: one row each; the request line takes the origin's port ------------ */

#define BYTES(s) s, sizeof(s) - 1
static const char GET_LINE[] = "GET http://127.0.0.1:%d/bytes/1 HTTP/1.1\r\n";
static const char POST_LINE[] = "POST http://127.0.0.1:%d/sink HTTP/1.1\r\n";

static const struct bad_case {
    const char *name;
    const char *line; /* printf format with the origin port, or NULL: the tail is everything */
    const char *tail;
    size_t tail_len;
    int alt_status; /* another acceptable answer, or 0 */
} BAD[] = {
    {"garbage", NULL, BYTES("\x01\x02\x03 garbage \xff\r\n\r\n"), 0},
    {"HTTP/2.0 version", "GET http://127.0.0.1:%d/bytes/1 HTTP/2.0\r\n", BYTES("Host: a\r\n\r\n"),
     505},
    {"HTTP/0.9-ish version", "GET http://127.0.0.1:%d/bytes/1 HTTP/0.9\r\n",
     BYTES("Host: a\r\n\r\n"), 505},
    {"obs-fold", GET_LINE, BYTES("Host: a\r\nX-A: b\r\n c\r\n\r\n"), 0},
    {"space before colon", GET_LINE, BYTES("Host: a\r\nX-A : b\r\n\r\n"), 0},
    {"empty header name", GET_LINE, BYTES("Host: a\r\n: b\r\n\r\n"), 0},
    {"header line without colon", GET_LINE, BYTES("Host: a\r\nX-A b\r\n\r\n"), 0},
    {"Content-Length and Transfer-Encoding", POST_LINE,
     BYTES("Host: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 0},
    {"two different Content-Length", POST_LINE,
     BYTES("Host: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"), 0},
    {"negative Content-Length", POST_LINE, BYTES("Host: a\r\nContent-Length: -1\r\n\r\n"), 0},
    {"bad chunk size", POST_LINE,
     BYTES("Host: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"), 0},
    {"Transfer-Encoding not chunked", POST_LINE,
     BYTES("Host: a\r\nTransfer-Encoding: gzip\r\n\r\n"), 501},
    {"chunked not last", POST_LINE, BYTES("Host: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
     501},
    {"NUL in header value", GET_LINE, BYTES("Host: a\r\nX-A: b\0c\r\n\r\n"), 0},
    {"CR in header value", GET_LINE, BYTES("Host: a\r\nX-A: b\rc\r\n\r\n"), 0},
    {"bare LF request line", "GET http://127.0.0.1:%d/bytes/1 HTTP/1.1\n", BYTES("Host: a\r\n\r\n"),
     0},
    {"space in target", "GET http://127.0.0.1:%d/a b HTTP/1.1\r\n", BYTES("Host: a\r\n\r\n"), 0},
    {"bad method token", "G@T http://127.0.0.1:%d/bytes/1 HTTP/1.1\r\n", BYTES("Host: a\r\n\r\n"),
     501},
};
#define N_BAD ((int)(sizeof BAD / sizeof BAD[0]))

START_TEST(test_malformed_request_400_and_close)
{
    const struct bad_case *bc = &BAD[_i];
    struct fixture f = fixture_up(0, NULL);
    struct raw *c = raw_connect(f.p->port);
    if (bc->line != NULL)
        raw_sendf(c, bc->line, f.o->port);
    raw_try_send(c, bc->tail, bc->tail_len); /* the proxy may stop reading early: fine */
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "%s: %s", bc->name, raw_result_name(rc));
    ck_assert_msg(r.status == 400 || (bc->alt_status && r.status == bc->alt_status),
                  "%s: status %d, want 400%s", bc->name, r.status,
                  bc->alt_status ? " (or the alternative)" : "");
    ck_assert_msg(raw_wait_closed(c, 3000), "%s: connection not closed after %d", bc->name,
                  r.status);
    http_response_free(&r);
    raw_close(c);
    fixture_still_serving(f, 100);
    fixture_down(f);
}
END_TEST

START_TEST(test_random_bytes_do_not_crash)
{
    struct fixture f = fixture_up(0, NULL);
    size_t len = 256 * 1024;
    unsigned char *junk = malloc(len);
    uint32_t x = 2463534242u; /* xorshift32: the same bytes every run */
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        junk[i] = (unsigned char)x;
    }
    for (int round = 0; round < 4; round++) {
        struct raw *c = raw_connect(f.p->port);
        raw_try_send(c, junk + round * 4096, len - (size_t)round * 4096);
        struct http_response r;
        int rc = raw_read_response(c, &r, 0, T_MS);
        ck_assert_msg(rc == RAW_CLOSED || (rc == RAW_OK && r.status >= 400 && r.status < 500),
                      "random bytes: %s, status %d", raw_result_name(rc), r.status);
        ck_assert_msg(raw_wait_closed(c, 3000), "connection not closed after junk");
        http_response_free(&r);
        raw_close(c);
    }
    free(junk);
    fixture_still_serving(f, 100);
    fixture_down(f);
}
END_TEST

/* Sends a request whose header block is `size` bytes of X-Pad headers */
static int send_padded(struct fixture f, struct raw *c, size_t size)
{
    char *req = proxy_request("GET", f.o, "/bytes/10", NULL);
    size_t line_len = strlen(req) - 2; /* without the final CRLF */
    int rc = raw_try_send(c, req, line_len);
    char pad[1001];
    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (size_t sent = 0; rc == 0 && sent < size; sent += 1000 + 10)
        rc =
            raw_try_send(c, "X-Pad: ", 7) | raw_try_send(c, pad, 1000) | raw_try_send(c, "\r\n", 2);
    if (rc == 0)
        rc = raw_try_send(c, "\r\n", 2);
    free(req);
    return rc;
}

START_TEST(test_header_block_too_large_431)
{
    struct fixture f = fixture_up(0, "http:\n  max_header_size: 8KiB\n");
    struct raw *c = raw_connect(f.p->port);
    send_padded(f, c, 4000); /* under the limit: served */
    struct http_response r;
    raw_expect_status(c, 200, "a head under max_header_size");
    raw_close(c);
    c = raw_connect(f.p->port);
    send_padded(f, c, 20000);
    int rc = raw_read_response(c, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "oversized header block: %s (a reset instead of a 431?)",
                  raw_result_name(rc));
    ck_assert_int_eq(r.status, 431);
    ck_assert_msg(raw_wait_closed(c, 3000), "connection not closed after 431");
    http_response_free(&r);
    raw_close(c);
    fixture_still_serving(f, 100);
    fixture_down(f);
}
END_TEST

static int long_target_status(struct fixture f, size_t path_len, struct raw **out)
{
    char *path = malloc(path_len + 1);
    memcpy(path, "/headers/", 9);
    memset(path + 9, 'a', path_len - 9);
    path[path_len] = '\0';
    char *req = proxy_request("GET", f.o, path, NULL);
    struct raw *c = raw_connect(f.p->port);
    raw_try_send(c, req, strlen(req));
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "%zu-byte target: %s", path_len, raw_result_name(rc));
    int status = r.status;
    http_response_free(&r);
    free(req);
    free(path);
    *out = c;
    return status;
}

START_TEST(test_request_line_too_long_414)
{
    struct fixture f = fixture_up(0, "http:\n  max_request_line: 1KiB\n");
    struct raw *c;
    ck_assert_int_eq(long_target_status(f, 600, &c), 200);
    raw_close(c);
    int status = long_target_status(f, 4096, &c);
    ck_assert_msg(status == 414 || status == 431, "4 KiB request line: status %d", status);
    ck_assert_msg(raw_wait_closed(c, 3000), "connection not closed after %d", status);
    raw_close(c);
    fixture_still_serving(f, 100);
    fixture_down(f);
}
END_TEST

START_TEST(test_slow_header_times_out)
{
    struct fixture f = fixture_up(0, "timeouts:\n  client_header: 1s\n");
    struct raw *c = raw_connect(f.p->port);
    raw_sendf(c, "GET http://127.0.0.1:%d/bytes/1 HTTP/1.1\r\nHost: a\r\n", f.o->port);
    uint64_t t0 = now_ms();
    ck_assert_msg(raw_wait_closed(c, 5000), "an unfinished header block was held open");
    uint64_t ms = now_ms() - t0;
    ck_assert_msg(ms >= 700, "closed after %llu ms, before the 1 s timeout",
                  (unsigned long long)ms);
    raw_close(c);
    fixture_still_serving(f, 100);
    fixture_down(f);
}
END_TEST

START_TEST(test_client_abort_aborts_upstream)
{
    struct fixture f = fixture_up(0, NULL);
    char url[256];
    struct fetch_req rq = {.url = origin_url(f.o, "/bytes/1073741824", url, sizeof url),
                           .proxy_port = f.p->port,
                           .check_pattern = 1,
                           .abort_after = 8u << 20,
                           .timeout_ms = 60000};
    struct fetch_res rs;
    fetch(&rq, &rs); /* returns once the client has given up and closed its socket */
    ck_assert_msg(rs.rc == CURLE_WRITE_ERROR, "curl: %d %s", (int)rs.rc, rs.err);
    ck_assert_int_eq(rs.pattern_bad, -1);
    fetch_free(&rs);
    /* the origin stops sending only when rlproxy closes the upstream transfer */
    uint64_t deadline = now_ms() + 5000;
    long long active;
    while ((active = origin_stat(f.o, "streams_active")) != 0 && now_ms() < deadline)
        sleep_ms(100);
    ck_assert_msg(active == 0, "upstream transfer still running 5 s after the client left");
    /* ... and stopped then, rather than after reading the whole GiB into nowhere */
    long long sent = origin_stat(f.o, "bytes_sent");
    ck_assert_msg(sent < (256ll << 20), "origin sent %lld bytes for a client that left at 8 MiB",
                  sent);
    fixture_still_serving(f, 100);
    fixture_down(f);
}
END_TEST

START_TEST(test_client_not_allowed_403)
{
    struct fixture f = fixture_up(0, "access:\n  allow: [\"10.0.0.0/8\"]\n");
    char url[256];
    struct fetch_res rs;
    get_via(f, origin_url(f.o, "/bytes/10", url, sizeof url), 10000, &rs);
    ck_assert_int_eq(rs.status, 403);
    fetch_free(&rs);
    ck_assert_int_eq(origin_stat(f.o, "requests"), 0); /* nothing reached the origin */
    fixture_down(f);
}
END_TEST

/* An origin's head that a client could frame or read differently from us never reaches it as it
 * is: two Content-Lengths that disagree or one that is not a number get a 502 naming the cause;
 * "5, 5" is one length; a CR inside a value or a space before a colon cannot split or smuggle a
 * header. */
static struct http_response raw_head(struct fixture f, const char *kind)
{
    char path[64];
    snprintf(path, sizeof path, "/rawhead?kind=%s", kind);
    char *req = proxy_request("GET", f.o, path, NULL);
    struct http_response r;
    int rc = raw_exchange(f.p->port, req, &r, 0, T_MS);
    free(req);
    ck_assert_msg(rc == RAW_OK, "%s: %s", kind, raw_result_name(rc));
    return r;
}

START_TEST(test_invalid_origin_head)
{
    struct fixture f = fixture_up(0, NULL);
    static const char *const refused[] = {"dup-length", "bad-length"};
    for (int i = 0; i < 2; i++) {
        struct http_response r = raw_head(f, refused[i]);
        ck_assert_msg(r.status == 502, "%s: status %d, want 502", refused[i], r.status);
        ck_assert_msg(r.body != NULL && strstr(r.body, "Content-Length") != NULL,
                      "%s: 502 body does not name Content-Length: %s", refused[i], r.body);
        assert_one_line(r.body);
        http_response_free(&r);
    }
    struct http_response r = raw_head(f, "list-length");
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 5);
    ck_assert_str_eq(resp_header(&r, "Content-Length", 0), "5");
    ck_assert_ptr_null(resp_header(&r, "Content-Length", 1));
    http_response_free(&r);
    r = raw_head(f, "space-name");
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_null(resp_header(&r, "X-Space", 0));
    ck_assert_ptr_nonnull(resp_header(&r, "X-Fine", 0));
    http_response_free(&r);
    r = raw_head(f, "cr-value");
    ck_assert_msg(r.status == 200 || r.status == 502, "cr-value: status %d", r.status);
    ck_assert_msg(resp_header(&r, "Injected", 0) == NULL, "a CR in a value split the header");
    http_response_free(&r);
    fixture_still_serving(f, 100);
    fixture_down(f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("errors");
    unit_add_tcase(s, harness_tcase("upstream errors", 0),
                   UNIT_TESTS(test_unresolvable_host_502, test_connection_refused_502,
                              test_upstream_timeout_504, test_client_abort_aborts_upstream,
                              test_client_not_allowed_403, test_invalid_origin_head));
    TCase *bad =
        unit_add_tcase(s, harness_tcase("malformed requests", 0),
                       UNIT_TESTS(test_random_bytes_do_not_crash, test_header_block_too_large_431,
                                  test_request_line_too_long_414, test_slow_header_times_out));
    tcase_add_loop_test(bad, test_malformed_request_400_and_close, 0, N_BAD);
    return harness_run_suite(s);
}
