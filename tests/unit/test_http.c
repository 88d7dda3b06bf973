/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_http.c — the request parser (http.c): strict framing, the checks llhttp leaves to us,
 * targets, hop-by-hop rules. Every input is fed whole and also one byte at a time, since a proxy
 * sees requests split at arbitrary read boundaries. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "http.h"

#include "http_response.h"
#include "unit.h"

struct collected {
    char body[4096];
    size_t body_len;
};

static int collect_body(void *arg, const char *data, size_t len)
{
    struct collected *c = arg;
    if (c->body_len + len > sizeof c->body)
        return -1;
    memcpy(c->body + c->body_len, data, len);
    c->body_len += len;
    return 0;
}

/* Feeds `in` in pieces of `step` bytes until the head is parsed (and, when finish is set, the whole
 * message); returns the final result. */
static enum http_feed_result feed(struct http_parser *p, const char *in, size_t step, int finish,
                                  size_t *consumed)
{
    size_t len = strlen(in), pos = 0;
    enum http_feed_result r = HTTP_FEED_MORE;
    while (pos <= len) {
        size_t n = len - pos < step ? len - pos : step;
        size_t used = http_parser_feed(p, in + pos, n, &r);
        pos += used;
        if (r == HTTP_FEED_ERROR)
            break;
        if (r == HTTP_FEED_HEAD) {
            http_parser_resume(p);
            if (!finish)
                break;
            continue;
        }
        if (r == HTTP_FEED_DONE)
            break;
        if (pos == len)
            break;
    }
    if (consumed)
        *consumed = pos;
    return r;
}

/* A parser with the proxy's default sizes that has read in, one whole request, fed 100 bytes at a
 * time; the caller frees it */
static void parse_whole(struct http_parser *p, const char *in)
{
    http_parser_init(p, 8192, 32768, NULL, NULL);
    ck_assert_int_eq(feed(p, in, 100, 1, NULL), HTTP_FEED_DONE);
}

static const size_t steps[] = {1, 3, 7, 100000};

static int parse_status(const char *in)
{
    int status = 0;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        struct http_parser p;
        struct collected c = {{0}, 0};
        http_parser_init(&p, 8192, 32768, collect_body, &c);
        enum http_feed_result r = feed(&p, in, steps[i], 1, NULL);
        int s = r == HTTP_FEED_ERROR ? p.error_status : 0;
        http_parser_free(&p);
        if (i > 0)
            ck_assert_int_eq(s, status); /* same verdict however the bytes are split */
        status = s;
    }
    return status;
}

START_TEST(test_simple_get)
{
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        struct http_parser p;
        http_parser_init(&p, 8192, 32768, NULL, NULL);
        const char *in = "GET http://example.com:8080/a/../b?x=%2F HTTP/1.1\r\nHost: example.com\r\n"
                         "X-Case: Keep Me  \r\nEmpty:\r\n\r\n";
        enum http_feed_result r = feed(&p, in, steps[i], 1, NULL);
        ck_assert_int_eq(r, HTTP_FEED_DONE);
        struct http_request *req = &p.req;
        ck_assert_str_eq(http_arena(req, req->method_off), "GET");
        ck_assert_int_eq(req->method, HTTP_GET);
        ck_assert_str_eq(http_arena(req, req->target_off), "http://example.com:8080/a/../b?x=%2F");
        ck_assert_str_eq(req->target.host, "example.com");
        ck_assert_uint_eq(req->target.port, 8080);
        ck_assert_int_eq(req->target.scheme, HTTP_SCHEME_HTTP);
        ck_assert_uint_eq(req->target.path_len, strlen("/a/../b?x=%2F"));
        ck_assert_int_eq(memcmp(http_arena(req, req->target.path_off), "/a/../b?x=%2F", 13), 0);
        ck_assert_uint_eq(req->header_count, 3);
        size_t vlen;
        const char *v = http_header_find(req, "x-case", &vlen);
        ck_assert_ptr_nonnull(v);
        ck_assert_uint_eq(vlen, 7); /* trailing whitespace is not part of the value */
        ck_assert_int_eq(memcmp(v, "Keep Me", 7), 0);
        v = http_header_find(req, "Empty", &vlen);
        ck_assert_ptr_nonnull(v);
        ck_assert_uint_eq(vlen, 0);
        ck_assert_int_eq(req->keep_alive, 1);
        ck_assert_int_eq(req->has_body, 0);
        http_parser_free(&p);
    }
}
END_TEST

START_TEST(test_pipelined_and_body)
{
    struct http_parser p;
    struct collected c = {{0}, 0};
    http_parser_init(&p, 8192, 32768, collect_body, &c);
    const char *in = "POST http://h/x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
                     "GET http://h/y HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    size_t used = 0;
    enum http_feed_result r = feed(&p, in, 100000, 1, &used);
    ck_assert_int_eq(r, HTTP_FEED_DONE);
    ck_assert_uint_eq(c.body_len, 5);
    ck_assert_int_eq(memcmp(c.body, "hello", 5), 0);
    ck_assert_int_eq(p.req.content_length, 5);
    http_parser_next(&p);
    r = feed(&p, in + used, 100000, 1, NULL);
    ck_assert_int_eq(r, HTTP_FEED_DONE);
    ck_assert_str_eq(http_arena(&p.req, p.req.target_off), "http://h/y");
    ck_assert_int_eq(p.req.keep_alive, 0);
    http_parser_free(&p);
}
END_TEST

START_TEST(test_chunked_body)
{
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        struct http_parser p;
        struct collected c = {{0}, 0};
        http_parser_init(&p, 8192, 32768, collect_body, &c);
        const char *in = "PUT http://h/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        ck_assert_int_eq(feed(&p, in, steps[i], 1, NULL), HTTP_FEED_DONE);
        ck_assert_int_eq(p.req.chunked, 1);
        ck_assert_uint_eq(c.body_len, 11);
        ck_assert_int_eq(memcmp(c.body, "hello world", 11), 0);
        http_parser_free(&p);
    }
}
END_TEST

START_TEST(test_http10_keepalive)
{
    struct http_parser p;
    parse_whole(&p, "GET http://h/ HTTP/1.0\r\n\r\n");
    ck_assert_int_eq(p.req.keep_alive, 0);
    http_parser_next(&p);
    ck_assert_int_eq(feed(&p, "GET http://h/ HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 100, 1,
                          NULL),
                     HTTP_FEED_DONE);
    ck_assert_int_eq(p.req.keep_alive, 1);
    http_parser_free(&p);
}
END_TEST

START_TEST(test_connect)
{
    struct http_parser p;
    http_parser_init(&p, 8192, 32768, NULL, NULL);
    size_t used = 0;
    const char *in = "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n\x16\x03\x01";
    ck_assert_int_eq(feed(&p, in, 100000, 0, &used), HTTP_FEED_HEAD);
    ck_assert_uint_eq(used, strlen(in) - 3); /* the tunnel's first bytes are left unparsed */
    ck_assert_int_eq(p.req.method, HTTP_CONNECT);
    ck_assert_str_eq(p.req.target.host, "::1");
    ck_assert_int_eq(p.req.target.host_is_ipv6, 1);
    ck_assert_uint_eq(p.req.target.port, 443);
    http_parser_free(&p);
}
END_TEST

START_TEST(test_origin_form_is_flagged)
{
    struct http_parser p;
    parse_whole(&p, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    ck_assert_int_eq(p.req.target.scheme, HTTP_SCHEME_NONE);
    http_parser_free(&p);
}
END_TEST

struct bad_case {
    const char *name;
    const char *input;
    int status;
};

static const struct bad_case bad_cases[] = {
    {"obs-fold", "GET http://h/ HTTP/1.1\r\nHost: h\r\nX: a\r\n  b\r\n\r\n", 400},
    {"obs-fold tab", "GET http://h/ HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n", 400},
    {"bare LF request line", "GET http://h/ HTTP/1.1\nHost: h\r\n\r\n", 400},
    {"bare LF header", "GET http://h/ HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400},
    {"HTTP/2.0", "GET http://h/ HTTP/2.0\r\nHost: h\r\n\r\n", 505},
    {"HTTP/1.2", "GET http://h/ HTTP/1.2\r\nHost: h\r\n\r\n", 505},
    {"CL+TE", "POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"TE+CL", "POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
    {"two CL", "POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400},
    {"same CL twice", "POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400},
    {"CL list", "POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc", 400},
    {"negative CL", "POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
    {"TE gzip", "POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
    {"TE chunked, gzip", "POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
    {"TE gzip, chunked", "POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400},
    {"two TE", "POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
    {"TE in 1.0", "POST http://h/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
    {"bad chunk size", "POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
    {"space before colon", "GET http://h/ HTTP/1.1\r\nHost: h\r\nX : y\r\n\r\n", 400},
    {"empty header name", "GET http://h/ HTTP/1.1\r\nHost: h\r\n: y\r\n\r\n", 400},
    {"NUL in value", "GET http://h/ HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 400},
    {"CR in value", "GET http://h/ HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400},
    {"missing Host", "GET http://h/ HTTP/1.1\r\n\r\n", 400},
    {"two Host", "GET http://h/ HTTP/1.1\r\nHost: h\r\nHost: g\r\n\r\n", 400},
    {"Expect other", "POST http://h/ HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417},
    {"userinfo", "GET http://u:p@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"bad port", "GET http://h:99999/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"port zero", "GET http://h:0/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"ftp scheme", "GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"fragment", "GET http://h/a#b HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"bad host char", "GET http://h%00x/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"CONNECT without port", "CONNECT h HTTP/1.1\r\nHost: h\r\n\r\n", 400},
    {"upgrade with body", "POST http://h/ HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 1\r\n\r\nx", 501},
    {"garbage", "\x01\x02\x03 garbage\r\n\r\n", 400},
    {"lowercase method", "get http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 400},
};

START_TEST(test_bad_input)
{
    const struct bad_case *c = &bad_cases[_i];
    /* inputs with an embedded NUL are measured by hand */
    if (strcmp(c->name, "NUL in value") == 0) {
        struct http_parser p;
        http_parser_init(&p, 8192, 32768, NULL, NULL);
        enum http_feed_result r;
        const char in[] = "GET http://h/ HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
        http_parser_feed(&p, in, sizeof in - 1, &r);
        ck_assert_int_eq(r, HTTP_FEED_ERROR);
        ck_assert_int_eq(p.error_status, 400);
        http_parser_free(&p);
        return;
    }
    ck_assert_msg(parse_status(c->input) == c->status, "%s: got %d, want %d", c->name,
                  parse_status(c->input), c->status);
}
END_TEST

START_TEST(test_limits)
{
    char big[40000];
    /* request line over 8 KiB: 414 */
    strcpy(big, "GET http://h/");
    memset(big + 13, 'a', 9000);
    strcpy(big + 13 + 9000, " HTTP/1.1\r\nHost: h\r\n\r\n");
    ck_assert_int_eq(parse_status(big), 414);
    /* header block over 32 KiB: 431 */
    strcpy(big, "GET http://h/ HTTP/1.1\r\nHost: h\r\nX: ");
    size_t at = strlen(big);
    memset(big + at, 'b', 34000);
    strcpy(big + at + 34000, "\r\n\r\n");
    ck_assert_int_eq(parse_status(big), 431);
    /* more than HTTP_MAX_HEADERS lines: 431 */
    char *many = malloc(300 * 8 + 64);
    strcpy(many, "GET http://h/ HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 300; i++)
        strcat(many, "A: b\r\n");
    strcat(many, "\r\n");
    ck_assert_int_eq(parse_status(many), 431);
    free(many);
}
END_TEST

START_TEST(test_hop_by_hop)
{
    struct http_parser p;
    http_parser_init(&p, 8192, 32768, NULL, NULL);
    const char *in = "GET http://h/ HTTP/1.1\r\nHost: h\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n"
                     "Keep-Alive: 5\r\nProxy-Authorization: Basic x\r\nTE: trailers\r\nX-End: 2\r\n\r\n";
    ck_assert_int_eq(feed(&p, in, 100000, 1, NULL), HTTP_FEED_DONE);
    struct http_request *r = &p.req;
    ck_assert_int_eq(http_request_header_is_hop(r, "x-hop", 5), 1);
    ck_assert_int_eq(http_request_header_is_hop(r, "Connection", 10), 1);
    ck_assert_int_eq(http_request_header_is_hop(r, "Keep-Alive", 10), 1);
    ck_assert_int_eq(http_request_header_is_hop(r, "Proxy-Authorization", 19), 1);
    ck_assert_int_eq(http_request_header_is_hop(r, "TE", 2), 1);
    ck_assert_int_eq(http_request_header_is_hop(r, "Host", 4), 1);
    ck_assert_int_eq(http_request_header_is_hop(r, "X-End", 5), 0);
    ck_assert_int_eq(http_request_header_is_hop(r, "X-Hopper", 8), 0);
    ck_assert_int_eq(http_response_header_is_hop("Transfer-Encoding", 17, NULL, 0), 1);
    ck_assert_int_eq(http_response_header_is_hop("Set-Cookie", 10, NULL, 0), 0);
    ck_assert_int_eq(http_response_header_is_hop("X-Private", 9, "x-private", 9), 1);
    http_parser_free(&p);
}
END_TEST

START_TEST(test_targets)
{
    struct http_target t;
    const char *reason = NULL;
    ck_assert_int_eq(http_parse_target("http://h", 8, 0, &t, &reason), 0);
    ck_assert_uint_eq(t.port, 80);
    ck_assert_uint_eq(t.path_len, 0);
    ck_assert_int_eq(http_parse_target("https://h?q", 11, 0, &t, &reason), 0);
    ck_assert_uint_eq(t.port, 443);
    ck_assert_int_eq(t.scheme, HTTP_SCHEME_HTTPS);
    ck_assert_uint_eq(t.path_len, 2);
    ck_assert_int_eq(http_parse_target("HTTP://[::1]:81/x", 17, 0, &t, &reason), 0);
    ck_assert_str_eq(t.host, "::1");
    ck_assert_uint_eq(t.port, 81);
    ck_assert_int_eq(http_parse_target("http://[::1/x", 13, 0, &t, &reason), -1);
    ck_assert_int_eq(http_parse_target("http:///x", 9, 0, &t, &reason), -1);
    ck_assert_int_eq(http_parse_target("h:443", 5, 1, &t, &reason), 0);
    ck_assert_int_eq(http_parse_target("h:", 2, 1, &t, &reason), -1);
    ck_assert_int_eq(http_parse_target("h:44a", 5, 1, &t, &reason), -1);
}
END_TEST

/* Parses `request`, rewrites `origin_head` for it and returns the client's head as a string. */
static char *rewrite(const char *request, int status, const char *reason, const char *origin_head,
                     enum http_framing *framing, int *close_after)
{
    struct http_parser p;
    http_parser_init(&p, 8192, 32768, NULL, NULL);
    ck_assert_int_eq(feed(&p, request, 100000, 1, NULL), HTTP_FEED_DONE);
    struct evbuffer *out = evbuffer_new();
    *close_after = 0;
    *framing = http_write_response_head(out, &p.req, status, reason, strlen(reason), origin_head,
                                        strlen(origin_head), NULL, close_after);
    size_t len = evbuffer_get_length(out);
    char *text = calloc(1, len + 1);
    evbuffer_remove(out, text, len);
    evbuffer_free(out);
    http_parser_free(&p);
    return text;
}

START_TEST(test_response_rewrite)
{
    http_via_init(0xabcd);
    enum http_framing framing;
    int close_after;
    char *head = rewrite("GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 299, "Custom Thing",
                         "Set-Cookie: a=1\r\nConnection: X-Private\r\nX-Private: 1\r\n"
                         "Set-Cookie: b=2\r\nKeep-Alive: timeout=5\r\nContent-Length: 10\r\n",
                         &framing, &close_after);
    ck_assert_str_eq(head, "HTTP/1.1 299 Custom Thing\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
                           "Content-Length: 10\r\nVia: 1.1 rlproxy-0000abcd\r\n\r\n");
    ck_assert_int_eq(framing, HTTP_FRAME_LENGTH);
    ck_assert_int_eq(close_after, 0);
    free(head);

    /* chunked from the origin: re-framed; the stale Content-Length is dropped */
    head = rewrite("GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 200, "OK",
                   "Transfer-Encoding: chunked\r\nContent-Length: 3\r\nX-A: 1\r\n", &framing,
                   &close_after);
    ck_assert_str_eq(head, "HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n"
                           "Via: 1.1 rlproxy-0000abcd\r\n\r\n");
    ck_assert_int_eq(framing, HTTP_FRAME_CHUNKED);
    free(head);

    /* no length for an HTTP/1.0 client: close-delimited */
    head = rewrite("GET http://h/ HTTP/1.0\r\n\r\n", 200, "OK", "X-A: 1\r\n", &framing,
                   &close_after);
    ck_assert_int_eq(framing, HTTP_FRAME_CLOSE);
    ck_assert_int_eq(close_after, 1);
    ck_assert_ptr_nonnull(strstr(head, "Connection: close\r\n"));
    free(head);

    /* HEAD and 304 have no body, whatever their Content-Length says */
    head = rewrite("HEAD http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 200, "OK",
                   "Content-Length: 99\r\n", &framing, &close_after);
    ck_assert_int_eq(framing, HTTP_FRAME_NONE);
    ck_assert_ptr_nonnull(strstr(head, "Content-Length: 99\r\n"));
    free(head);
    head = rewrite("GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 304, "Not Modified", "ETag: x\r\n",
                   &framing, &close_after);
    ck_assert_int_eq(framing, HTTP_FRAME_NONE);
    ck_assert_ptr_null(strstr(head, "Transfer-Encoding"));
    free(head);

    /* the client asked to close */
    head = rewrite("GET http://h/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 200, "OK",
                   "Content-Length: 0\r\n", &framing, &close_after);
    ck_assert_int_eq(close_after, 1);
    free(head);
}
END_TEST

START_TEST(test_via_loop)
{
    http_via_init(0x1234);
    ck_assert_str_eq(http_via(), "1.1 rlproxy-00001234");
    struct http_parser p;
    http_parser_init(&p, 8192, 32768, NULL, NULL);
    ck_assert_int_eq(feed(&p, "GET http://h/ HTTP/1.1\r\nHost: h\r\nVia: 1.0 fred, 1.1 rlproxy-00009999\r\n\r\n",
                          100000, 1, NULL),
                     HTTP_FEED_DONE);
    ck_assert_int_eq(http_via_has_ours(&p.req), 0); /* another rlproxy in a chain */
    http_parser_next(&p);
    ck_assert_int_eq(feed(&p, "GET http://h/ HTTP/1.1\r\nHost: h\r\nVia: 1.0 fred\r\nVia: 1.1 RLPROXY-00001234 (x)\r\n\r\n",
                          100000, 1, NULL),
                     HTTP_FEED_DONE);
    ck_assert_int_eq(http_via_has_ours(&p.req), 1);
    http_parser_free(&p);
}
END_TEST

/* What an origin's status line and Retry-After say (upstream.c hands curl's bytes to these). */
START_TEST(test_status_line_and_retry_after)
{
    int status = 0;
    const char *reason = NULL;
    size_t reason_len = 0;
    const char line[] = "HTTP/1.1 503 Service Unavailable\r\n";
    ck_assert_int_eq(http_parse_status_line(line, sizeof line - 1, &status, &reason, &reason_len), 0);
    ck_assert_int_eq(status, 503);
    ck_assert_uint_eq(reason_len, 19);
    ck_assert(memcmp(reason, "Service Unavailable", 19) == 0);
    const char bare[] = "HTTP/1.0 204\r\n"; /* no reason phrase at all */
    ck_assert_int_eq(http_parse_status_line(bare, sizeof bare - 1, &status, &reason, &reason_len), 0);
    ck_assert_int_eq(status, 204);
    ck_assert_uint_eq(reason_len, 0);
    ck_assert_int_eq(http_parse_status_line("HTTP/1.1 20x OK\r\n", 17, &status, &reason, &reason_len), -1);
    ck_assert_int_eq(http_parse_status_line("HTTP/1.1\r\n", 10, &status, &reason, &reason_len), -1);
    ck_assert_int_eq(http_parse_status_line("ICY 200 OK\r\n", 12, &status, &reason, &reason_len), -1);

    const time_t now = 1445412470; /* Wed, 21 Oct 2015 07:27:50 GMT */
#define RA(text) http_retry_after_ms(text, sizeof text - 1, now)
    ck_assert_int_eq(RA("Content-Type: x\r\nRetry-After: 120\r\n"), 120000);
    ck_assert_int_eq(RA("retry-after:   7  \r\n"), 7000);
    ck_assert_int_eq(RA("Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n"), 10000);
    ck_assert_int_eq(RA("Retry-After: Wed, 21 Oct 2015 07:00:00 GMT\r\n"), 0); /* past: now */
    ck_assert_int_eq(RA("Retry-After: 99999999999\r\n"), INT64_C(999999999) * 1000);
    ck_assert_int_eq(RA("Retry-After: soon\r\n"), -1);
    ck_assert_int_eq(RA("Retry-After: -5\r\n"), -1);
    ck_assert_int_eq(RA("Retry-After:\r\n"), -1);
    ck_assert_int_eq(RA("X-Retry-After: 5\r\n"), -1);
    ck_assert_int_eq(RA(""), -1);
#undef RA
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc =
        unit_add_tcase(s, tcase_create("parser"),
                       UNIT_TESTS(test_simple_get, test_pipelined_and_body, test_chunked_body,
                                  test_http10_keepalive, test_connect, test_origin_form_is_flagged,
                                  test_limits, test_hop_by_hop, test_targets, test_response_rewrite,
                                  test_via_loop, test_status_line_and_retry_after));
    tcase_add_loop_test(tc, test_bad_input, 0, (int)(sizeof bad_cases / sizeof bad_cases[0]));
    return s;
}

int main(void)
{
    return unit_run(http_suite());
}
