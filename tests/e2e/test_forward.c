/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_forward.c — a request through rlproxy reaches the origin as the client sent it, and the
 * response comes back as the origin sent it (issue 2, items 3 and 4): methods, status and reason,
 * duplicate headers, exact bytes, nothing invented, hop-by-hop headers removed, Via both ways. */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#define T_MS 10000

/* One raw request through the proxy; fails unless a complete response came back. */
static void via_raw(struct fixture f, const char *method, const char *path, const char *extra,
                    struct http_response *r, int flags)
{
    char *req = proxy_request(method, f.o, path, extra);
    int rc = raw_exchange(f.p->port, req, r, flags, T_MS);
    ck_assert_msg(rc == RAW_OK, "%s %s via proxy: %s", method, path, raw_result_name(rc));
    free(req);
}

/* The header list the origin reported in its /headers JSON */
static void origin_saw(const struct http_response *r, struct http_header **h, size_t *n)
{
    ck_assert_int_eq(r->status, 200);
    ck_assert_msg(json_headers(r->body, h, n) == 0, "bad /headers JSON: %s", r->body);
}

/* All values of a header joined with ", " (a list may arrive split or combined) */
static char *joined(const struct http_header *h, size_t n, const char *name)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(h[i].value) + 2;
    char *out = calloc(1, len);
    const char *v;
    for (int i = 0; (v = hdr_find(h, n, name, i)) != NULL; i++) {
        if (i > 0)
            strcat(out, ", ");
        strcat(out, v);
    }
    return out;
}

START_TEST(test_methods_without_body)
{
    static const char *methods[] = {"GET", "DELETE", "OPTIONS"};
    struct fixture f = fixture_up(0, NULL);
    char url[256];
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        struct fetch_req rq = {.url = origin_url(f.o, "/headers", url, sizeof url),
                               .method = methods[i],
                               .proxy_port = f.p->port};
        struct fetch_res rs;
        fetch(&rq, &rs);
        ck_assert_msg(rs.rc == CURLE_OK, "%s: %s", methods[i], rs.err);
        ck_assert_int_eq(rs.status, 200);
        char *m = json_get_str(rs.body, "method");
        ck_assert_msg(m != NULL && strcmp(m, methods[i]) == 0, "sent %s, origin saw %s", methods[i],
                      m ? m : "(nothing)");
        free(m);
        fetch_free(&rs);
    }
    fixture_down(f);
}
END_TEST

START_TEST(test_head)
{
    struct fixture f = fixture_up(0, NULL);
    char url[256];
    struct fetch_req rq = {.url = origin_url(f.o, "/bytes/1000", url, sizeof url),
                           .method = "HEAD",
                           .proxy_port = f.p->port};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK, "HEAD: %s", rs.err);
    ck_assert_int_eq(rs.status, 200);
    ck_assert_uint_eq(rs.body_len, 0);
    fetch_free(&rs);
    char *log = origin_get(f.o, "/log");
    ck_assert_msg(strstr(log, "\"method\":\"HEAD\",\"target\":\"/bytes/1000\"") != NULL,
                  "origin did not see a HEAD: %s", log);
    free(log);
    fixture_down(f);
}
END_TEST

START_TEST(test_methods_with_body)
{
    static const char *methods[] = {"POST", "PUT", "PATCH"};
    struct fixture f = fixture_up(0, NULL);
    char url[256];
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        struct fetch_req rq = {.url = origin_url(f.o, "/sink", url, sizeof url),
                               .method = methods[i],
                               .proxy_port = f.p->port,
                               .gen_upload = 100000 + (int64_t)i};
        struct fetch_res rs;
        fetch(&rq, &rs);
        ck_assert_msg(rs.rc == CURLE_OK, "%s: %s", methods[i], rs.err);
        ck_assert_int_eq(rs.status, 200);
        char *m = json_get_str(rs.body, "method");
        char *sha = json_get_str(rs.body, "sha256");
        long long len = -1;
        json_get_int(rs.body, "length", &len);
        ck_assert_msg(m != NULL && strcmp(m, methods[i]) == 0, "sent %s, origin: %s", methods[i],
                      rs.body);
        ck_assert_int_eq(len, 100000 + (long long)i);
        ck_assert_str_eq(sha, rs.upload_sha256);
        free(m);
        free(sha);
        fetch_free(&rs);
    }
    fixture_down(f);
}
END_TEST

START_TEST(test_echo_body_and_content_type)
{
    struct fixture f = fixture_up(0, NULL);
    struct http_response r;
    /* a binary body with a NUL inside */
    struct raw *c = raw_connect(f.p->port);
    char *head = proxy_request("POST", f.o, "/echo",
                               "Content-Type: application/x-rlproxy-test; q=1\r\n"
                               "Content-Length: 11\r\n");
    raw_send_str(c, head);
    raw_send(c, "hello\0world", 11);
    ck_assert_int_eq(raw_read_response(c, &r, 0, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 11);
    ck_assert(memcmp(r.body, "hello\0world", 11) == 0);
    ck_assert_str_eq(resp_header(&r, "Content-Type", 0), "application/x-rlproxy-test; q=1");
    http_response_free(&r);
    raw_close(c);
    free(head);
    fixture_down(f);
}
END_TEST

START_TEST(test_status_and_reason_preserved)
{
    static const struct {
        const char *path;
        int status;
        const char *reason;
    } cases[] = {
        {"/status/299?reason=Custom+Thing", 299, "Custom Thing"},
        {"/status/404?reason=Nothing+Here+At+All", 404, "Nothing Here At All"},
        {"/status/503", 503, "Service Unavailable"},
        {"/status/201?reason=Made+It", 201, "Made It"},
    };
    struct fixture f = fixture_up(0, NULL);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct http_response r;
        via_raw(f, "GET", cases[i].path, NULL, &r, 0);
        ck_assert_int_eq(r.status, cases[i].status);
        ck_assert_str_eq(r.reason, cases[i].reason);
        http_response_free(&r);
    }
    fixture_down(f);
}
END_TEST

START_TEST(test_duplicate_headers_kept_in_order)
{
    struct fixture f = fixture_up(0, NULL);
    struct http_response r;
    via_raw(f, "GET", "/cookies", NULL, &r, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(hdr_count(r.headers, r.nheaders, "Set-Cookie"), 2);
    ck_assert_str_eq(resp_header(&r, "Set-Cookie", 0), "a=1; Path=/");
    ck_assert_str_eq(resp_header(&r, "Set-Cookie", 1), "b=2; Path=/");
    /* X-Dup may legally be combined into "1, 2" (RFC 9110 5.3) but the order must hold */
    char *dup = joined(r.headers, r.nheaders, "X-Dup");
    ck_assert_str_eq(dup, "1, 2");
    free(dup);
    ck_assert_str_eq(r.body, "cookies\n");
    http_response_free(&r);
    fixture_down(f);
}
END_TEST

START_TEST(test_gzip_bytes_exact)
{
    struct fixture f = fixture_up(0, NULL);
    char url[256];
    static const char *const hdrs[] = {"Accept-Encoding: gzip", NULL};
    struct fetch_req rq = {
        .url = origin_url(f.o, "/gzip", url, sizeof url), .proxy_port = f.p->port, .headers = hdrs};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK, "%s", rs.err);
    ck_assert_int_eq(rs.status, 200);
    const char *ce = fetch_header(&rs, "Content-Encoding", 0);
    const char *want = fetch_header(&rs, "X-Raw-Sha256", 0);
    ck_assert_msg(ce != NULL && strcmp(ce, "gzip") == 0, "Content-Encoding lost");
    ck_assert_msg(want != NULL, "X-Raw-Sha256 lost");
    char got[65];
    sha256_hex(rs.body, rs.body_len, got);
    ck_assert_str_eq(got, want);
    ck_assert(rs.body_len > 2 && (unsigned char)rs.body[0] == 0x1f &&
              (unsigned char)rs.body[1] == 0x8b);
    fetch_free(&rs);
    fixture_down(f);
}
END_TEST

static void assert_not_sent(const struct http_header *h, size_t n, const char *name)
{
    const char *v = hdr_find(h, n, name, 0);
    ck_assert_msg(v == NULL, "the origin received '%s: %s', which the client never sent", name, v);
}

START_TEST(test_nothing_added_toward_origin)
{
    struct fixture f = fixture_up(0, NULL);
    struct http_response r;
    struct http_header *h;
    size_t n;
    via_raw(f, "GET", "/headers", NULL, &r, 0);
    origin_saw(&r, &h, &n);
    static const char *never[] = {"Accept",           "Expect",       "User-Agent",
                                  "Accept-Encoding",  "Content-Type", "Content-Length",
                                  "Transfer-Encoding"};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        assert_not_sent(h, n, never[i]);
    hdr_free(h, n);
    http_response_free(&r);
    /* a POST without Expect or Content-Type must not gain either */
    via_raw(f, "POST", "/headers", "Content-Length: 3\r\n\r\nabc", &r, 0);
    origin_saw(&r, &h, &n);
    for (size_t i = 0; i < 5; i++)
        assert_not_sent(h, n, never[i]);
    long long body_len = -1;
    json_get_int(r.body, "body_length", &body_len);
    ck_assert_int_eq(body_len, 3);
    hdr_free(h, n);
    http_response_free(&r);
    fixture_down(f);
}
END_TEST

/* The extra header lines of a request that carries every hop-by-hop field, plus end-to-end ones */
static const char HOP_HEADERS[] = "X-Hop: must-not-pass\r\n"
                                  "Keep-Alive: timeout=5, max=100\r\n"
                                  "Proxy-Connection: keep-alive\r\n"
                                  "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
                                  "TE: trailers\r\n"
                                  "Trailer: X-Checksum\r\n"
                                  "X-KeEp-Me: Yes\r\n"
                                  "Authorization: Bearer end-to-end\r\n"
                                  "Cache-Control: no-cache\r\n";

static void check_hop_by_hop(struct fixture f, const char *connection)
{
    char extra[1024];
    snprintf(extra, sizeof extra, "Connection: %s\r\n%s", connection, HOP_HEADERS);
    struct http_response r;
    struct http_header *h;
    size_t n;
    via_raw(f, "GET", "/headers", extra, &r, 0);
    origin_saw(&r, &h, &n);
    static const char *hop[] = {"X-Hop", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization",
                                "TE",    "Trailer"};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        assert_not_sent(h, n, hop[i]);
    char *conn = joined(h, n, "Connection");
    ck_assert_msg(strcasestr(conn, "x-hop") == NULL, "Connection reached the origin: %s", conn);
    free(conn);
    ck_assert_msg(hdr_has_exact(h, n, "X-KeEp-Me", "Yes"), "end-to-end X-KeEp-Me lost or recased");
    ck_assert_msg(hdr_has_exact(h, n, "Authorization", "Bearer end-to-end"), "Authorization lost");
    ck_assert_msg(hdr_has_exact(h, n, "Cache-Control", "no-cache"), "Cache-Control lost");
    hdr_free(h, n);
    http_response_free(&r);
}

START_TEST(test_hop_by_hop_removed)
{
    struct fixture f = fixture_up(0, NULL);
    check_hop_by_hop(f, "X-Hop");
    check_hop_by_hop(f, "close, X-Hop");
    check_hop_by_hop(f, "keep-alive, X-Hop, TE");
    fixture_down(f);
}
END_TEST

START_TEST(test_end_to_end_headers_kept)
{
    struct fixture f = fixture_up(0, NULL);
    struct http_response r;
    struct http_header *h;
    size_t n;
    via_raw(f, "GET", "/headers",
            "X-lower: a\r\nX-UPPER: B\r\nX-Mixed-Case: c d\r\nX-Repeat: 1\r\nX-Repeat: 2\r\n"
            "Accept: text/x-only-this\r\nUser-Agent: rlproxy-e2e/1\r\n",
            &r, 0);
    origin_saw(&r, &h, &n);
    ck_assert(hdr_has_exact(h, n, "X-lower", "a"));
    ck_assert(hdr_has_exact(h, n, "X-UPPER", "B"));
    ck_assert(hdr_has_exact(h, n, "X-Mixed-Case", "c d"));
    char *rep = joined(h, n, "X-Repeat");
    ck_assert_str_eq(rep, "1, 2");
    free(rep);
    ck_assert_uint_eq(hdr_count(h, n, "Accept"), 1);
    ck_assert_str_eq(hdr_find(h, n, "Accept", 0), "text/x-only-this");
    ck_assert_uint_eq(hdr_count(h, n, "User-Agent"), 1);
    ck_assert_str_eq(hdr_find(h, n, "User-Agent", 0), "rlproxy-e2e/1");
    char host[64];
    snprintf(host, sizeof host, "127.0.0.1:%d", f.o->port);
    ck_assert_str_eq(hdr_find(h, n, "Host", 0), host);
    hdr_free(h, n);
    http_response_free(&r);
    fixture_down(f);
}
END_TEST

START_TEST(test_via_both_ways)
{
    struct fixture f = fixture_up(0, NULL);
    struct http_response r;
    struct http_header *h;
    size_t n;
    via_raw(f, "GET", "/headers", NULL, &r, 0);
    origin_saw(&r, &h, &n);
    char *toward_origin = joined(h, n, "Via");
    char *toward_client = joined(r.headers, r.nheaders, "Via");
    ck_assert_msg(strstr(toward_origin, "1.1 rlproxy") != NULL, "origin saw Via '%s'",
                  toward_origin);
    ck_assert_msg(strstr(toward_client, "1.1 rlproxy") != NULL, "client saw Via '%s'",
                  toward_client);
    free(toward_origin);
    free(toward_client);
    hdr_free(h, n);
    http_response_free(&r);
    /* an existing Via is kept and ours appended (RFC 9110 7.6.3) */
    via_raw(f, "GET", "/headers", "Via: 1.0 upstream-hop\r\n", &r, 0);
    origin_saw(&r, &h, &n);
    toward_origin = joined(h, n, "Via");
    char *first = strstr(toward_origin, "1.0 upstream-hop");
    char *ours = strstr(toward_origin, "1.1 rlproxy");
    ck_assert_msg(first != NULL && ours != NULL && first < ours, "Via toward origin: '%s'",
                  toward_origin);
    free(toward_origin);
    hdr_free(h, n);
    http_response_free(&r);
    fixture_down(f);
}
END_TEST

/* After a response that has no body, the next response on the connection must parse cleanly:
 * a stray byte would show up as a bad status line or a wrong body. */
static void next_is_clean(struct fixture f, struct raw *c)
{
    raw_get_pattern(c, f.o, 10, "response after a bodiless one");
}

static void bodiless(struct fixture f, struct raw *c, const char *method, const char *path,
                     int status)
{
    raw_send_proxy_request(c, method, f.o, path, NULL);
    struct http_response r;
    int rc = raw_read_response(c, &r, strcmp(method, "HEAD") == 0 ? RESP_HEAD : 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "%s %s: %s", method, path, raw_result_name(rc));
    ck_assert_int_eq(r.status, status);
    const char *cl = resp_header(&r, "Content-Length", 0);
    if (strcmp(method, "HEAD") == 0 && cl != NULL)
        ck_assert_str_eq(cl, "1000"); /* what a GET would have said, or nothing */
    if (status == 204) {              /* RFC 9110 8.6, RFC 9112 6.1 */
        ck_assert_msg(cl == NULL, "204 with Content-Length");
        ck_assert_msg(resp_header(&r, "Transfer-Encoding", 0) == NULL, "204 with TE");
    }
    http_response_free(&r);
    next_is_clean(f, c);
}

START_TEST(test_no_body_for_head_204_304)
{
    struct fixture f = fixture_up(0, NULL);
    struct raw *c = raw_connect(f.p->port);
    bodiless(f, c, "HEAD", "/bytes/1000", 200);
    bodiless(f, c, "GET", "/status/204", 204);
    bodiless(f, c, "GET", "/status/304", 304);
    bodiless(f, c, "HEAD", "/bytes/1000?chunked=1", 200);
    ck_assert_msg(raw_pending(c, 300) == 0, "bytes after the last response");
    raw_close(c);
    fixture_down(f);
}
END_TEST

/* The same responses pipelined: requests in one write, responses read back to back */
START_TEST(test_no_body_pipelined)
{
    struct fixture f = fixture_up(0, NULL);
    struct raw *c = raw_connect(f.p->port);
    static const char *const requests[] = {"HEAD",        "/bytes/1000", "GET",
                                           "/status/204", "GET",         "/status/304",
                                           "GET",         "/bytes/10",   NULL};
    raw_send_pipelined(c, f.o, requests);
    static const int want[] = {200, 204, 304};
    for (int i = 0; i < 3; i++) {
        struct http_response r;
        int rc = raw_read_response(c, &r, i == 0 ? RESP_HEAD : 0, T_MS);
        ck_assert_msg(rc == RAW_OK, "pipelined response %d: %s", i + 1, raw_result_name(rc));
        ck_assert_int_eq(r.status, want[i]);
        http_response_free(&r);
    }
    raw_expect_pattern(c, 10, "response after bodiless ones");
    ck_assert_msg(raw_pending(c, 300) == 0, "bytes after the last response");
    raw_close(c);
    fixture_down(f);
}
END_TEST

START_TEST(test_request_target_unchanged)
{
    static const char *targets[] = {
        "/headers/a/../b?x=%2F",
        "/headers/./c//d/%2e%2e/e?y=%20z&q=a+b",
        "/headers?key=%41%42&empty=&=v",
    };
    struct fixture f = fixture_up(0, NULL);
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        struct http_response r;
        via_raw(f, "GET", targets[i], NULL, &r, 0);
        ck_assert_int_eq(r.status, 200);
        char *t = json_get_str(r.body, "target");
        ck_assert_msg(t != NULL && strcmp(t, targets[i]) == 0, "sent %s, origin saw %s", targets[i],
                      t ? t : "(nothing)");
        free(t);
        http_response_free(&r);
    }
    fixture_down(f);
}
END_TEST

START_TEST(test_no_content_type_invented)
{
    struct fixture f = fixture_up(0, NULL);
    struct http_response r;
    /* first make sure the origin itself sends none, or this test proves nothing */
    char req[256];
    snprintf(req, sizeof req, "GET /status/200 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", f.o->port);
    ck_assert_int_eq(raw_exchange(f.o->port, req, &r, 0, T_MS), RAW_OK);
    ck_assert(resp_header(&r, "Content-Type", 0) == NULL);
    http_response_free(&r);
    via_raw(f, "GET", "/status/200", NULL, &r, 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(resp_header(&r, "Content-Type", 0) == NULL, "proxy added Content-Type: %s",
                  resp_header(&r, "Content-Type", 0));
    ck_assert_str_eq(r.body, "status 200\n");
    http_response_free(&r);
    fixture_down(f);
}
END_TEST

START_TEST(test_origin_form_is_400_with_usage)
{
    struct fixture f = fixture_up(0, NULL);
    static const char *paths[] = {"/", "/bytes/10"};
    for (size_t i = 0; i < 2; i++) {
        char req[256];
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", paths[i],
                 f.p->port);
        struct http_response r;
        int rc = raw_exchange(f.p->port, req, &r, 0, T_MS);
        ck_assert_msg(rc == RAW_OK, "origin-form request: %s", raw_result_name(rc));
        ck_assert_int_eq(r.status, 400);
        ck_assert_msg(strcasestr(r.body, "proxy") != NULL, "400 body does not explain: %s", r.body);
        http_response_free(&r);
    }
    fixture_down(f);
}
END_TEST

/* rlproxy keeps its curl handles configured from one request to the next: nothing a request set
 * (HEAD, a body, a method, a target, an origin) may reach the next one on the same handle. One
 * worker and requests in turn, so each one gets the handle the previous one used. */
static void reuse_step(struct raw *c, const struct origin *o, const char *method, const char *path,
                       const char *extra, const char *body, long long want_body_length)
{
    raw_send_proxy_request(c, method, o, path, extra);
    if (body != NULL)
        raw_send_str(c, body);
    struct http_response r;
    int head = strcmp(method, "HEAD") == 0;
    int rc = raw_read_response(c, &r, head ? RESP_HEAD : 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "%s %s: %s", method, path, raw_result_name(rc));
    ck_assert_int_eq(r.status, 200);
    if (!head) {
        char *m = json_get_str(r.body, "method");
        char *t = json_get_str(r.body, "target");
        long long len = -1;
        json_get_int(r.body, "body_length", &len);
        ck_assert_msg(m != NULL && strcmp(m, method) == 0, "sent %s, origin saw %s", method, r.body);
        ck_assert_msg(t != NULL && strcmp(t, path) == 0, "sent %s, origin saw %s", path, r.body);
        ck_assert_msg(len == want_body_length, "%s %s: origin got a body of %lld: %s", method,
                      path, len, r.body);
        struct http_header *h = NULL;
        size_t n = 0;
        origin_saw(&r, &h, &n);
        if (want_body_length == 0) {
            assert_not_sent(h, n, "Content-Length");
            assert_not_sent(h, n, "Transfer-Encoding");
            assert_not_sent(h, n, "Expect");
        }
        hdr_free(h, n);
        free(m);
        free(t);
    }
    http_response_free(&r);
}

START_TEST(test_reused_handle_carries_nothing)
{
    struct origin *o = origin_start(0), *other = origin_start(0);
    struct proxy *p = proxy_start("workers: 1\n");
    struct raw *c = raw_connect(p->port);
    reuse_step(c, o, "HEAD", "/headers", NULL, NULL, 0);
    reuse_step(c, o, "GET", "/headers", NULL, NULL, 0);
    reuse_step(c, o, "POST", "/headers/a/../b?x=%2F", "Content-Length: 5\r\n", "hello", 5);
    reuse_step(c, o, "GET", "/headers", NULL, NULL, 0);
    reuse_step(c, o, "PUT", "/headers", "Transfer-Encoding: chunked\r\n", "3\r\nabc\r\n0\r\n\r\n",
               3);
    reuse_step(c, o, "DELETE", "/headers/./c//d", NULL, NULL, 0);
    reuse_step(c, o, "GET", "/headers?y=1", NULL, NULL, 0);
    /* another origin, then the first again: each request reaches its own */
    reuse_step(c, other, "GET", "/headers/for-other", NULL, NULL, 0);
    reuse_step(c, o, "GET", "/headers/for-first", NULL, NULL, 0);
    raw_close(c);
    char *log = origin_get(o, "/log"), *other_log = origin_get(other, "/log");
    ck_assert_msg(strstr(log, "/headers/for-other") == NULL, "first origin got: %s", log);
    ck_assert_msg(strstr(other_log, "/headers/for-other") != NULL &&
                      strstr(other_log, "/headers/for-first") == NULL,
                  "other origin got: %s", other_log);
    free(log);
    free(other_log);
    proxy_stop_with_origin(p, other);
    origin_stop(o);
}
END_TEST

HARNESS_MAIN("forward", 0, test_methods_without_body, test_head, test_methods_with_body,
             test_echo_body_and_content_type, test_status_and_reason_preserved,
             test_duplicate_headers_kept_in_order, test_gzip_bytes_exact,
             test_nothing_added_toward_origin, test_hop_by_hop_removed,
             test_end_to_end_headers_kept, test_via_both_ways, test_no_body_for_head_204_304,
             test_no_body_pipelined, test_request_target_unchanged, test_no_content_type_invented,
             test_origin_form_is_400_with_usage, test_reused_handle_carries_nothing)
