/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_connect.c — CONNECT tunnels (issue 2, item 6): TLS end to end through the tunnel, only
 * allowed ports (403 otherwise), 502 when the target refuses, idle timeout, bytes that follow the
 * CONNECT head in the same packet, and either side closing tears the tunnel down. */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#define T_MS 10000

/* An origin (TLS or not) and a proxy whose allowed_ports is exactly the origin's port */
static struct fixture up(int tls, const char *yaml_more)
{
    struct fixture f;
    f.o = origin_start(tls);
    f.p = proxy_startf("connect:\n  allowed_ports: [%d]\n%s", f.o->port,
                       yaml_more != NULL ? yaml_more : "");
    return f;
}

/* Sends CONNECT 127.0.0.1:port (plus any bytes that follow in the same write) */
static struct raw *connect_raw(struct fixture f, int port, const char *after)
{
    struct raw *c = raw_connect(f.p->port);
    raw_sendf(c, "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n%s", port, port,
              after != NULL ? after : "");
    return c;
}

static int connect_status(struct raw *c)
{
    struct http_response r;
    int rc = raw_read_response(c, &r, RESP_CONNECT, T_MS);
    ck_assert_msg(rc == RAW_OK, "CONNECT response: %s", raw_result_name(rc));
    int status = r.status;
    http_response_free(&r);
    return status;
}

/* An HTTP request to the plain origin through an established tunnel (origin-form: it is the
 * origin that reads it, not the proxy) */
static void tunnel_get(struct raw *c, size_t n)
{
    raw_sendf(c, "GET /bytes/%zu HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", n);
    struct http_response r;
    int rc = raw_read_response(c, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "request through the tunnel: %s", raw_result_name(rc));
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, n);
    ck_assert_int_eq(pattern_mismatch(r.body, n, 0), -1);
    ck_assert_msg(resp_header(&r, "Via", 0) == NULL, "a tunnel must be opaque, saw Via");
    http_response_free(&r);
}

START_TEST(test_tls_through_tunnel)
{
    struct fixture f = up(1, NULL);
    fetch_tls_via_tunnel(f.p->port, f.o, 100000);
    fixture_down(f);
}
END_TEST

START_TEST(test_tunnel_bulk_both_ways)
{
    struct fixture f = up(1, NULL);
    char url[256];
    uint64_t down_size = harness_size(64ull << 20, 4ull << 20);
    char path[64];
    snprintf(path, sizeof path, "/bytes/%llu", (unsigned long long)down_size);
    struct fetch_req get = {.url = origin_url(f.o, path, url, sizeof url),
                            .proxy_port = f.p->port,
                            .tunnel = 1,
                            .cainfo = harness_ca_path(),
                            .check_pattern = 1,
                            .timeout_ms = 300000};
    struct fetch_res rs;
    fetch(&get, &rs);
    ck_assert_msg(rs.rc == CURLE_OK, "download via tunnel: %s", rs.err);
    ck_assert_uint_eq(rs.received, down_size);
    ck_assert_int_eq(rs.pattern_bad, -1);
    fetch_free(&rs);
    uint64_t up_size = harness_size(32ull << 20, 2ull << 20);
    struct fetch_req put = {.url = origin_url(f.o, "/sink", url, sizeof url),
                            .proxy_port = f.p->port,
                            .tunnel = 1,
                            .cainfo = harness_ca_path(),
                            .gen_upload = (int64_t)up_size,
                            .timeout_ms = 300000};
    fetch(&put, &rs);
    ck_assert_msg(rs.rc == CURLE_OK, "upload via tunnel: %s", rs.err);
    char *sha = json_get_str(rs.body, "sha256");
    ck_assert_msg(sha != NULL && strcmp(sha, rs.upload_sha256) == 0, "origin got %s", rs.body);
    free(sha);
    fetch_free(&rs);
    assert_peak_rss_below(f.p, 32 * 1024, "after tunnel transfers");
    fixture_down(f);
}
END_TEST

START_TEST(test_port_not_allowed_403)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 1, NULL); /* default allowed_ports: [443] */
    struct fixture f = {o, p};
    struct raw *c = connect_raw(f, o->port, NULL);
    ck_assert_int_eq(connect_status(c), 403);
    raw_close(c);
    ck_assert_msg(origin_stat(o, "accepted") == 1, "the proxy connected to a refused port");
    proxy_stop(p);
    /* listed explicitly, a different port is still refused */
    p = proxy_startf("connect:\n  allowed_ports: [443, %d]\n", o->port == 65535 ? 1 : o->port + 1);
    f.p = p;
    c = connect_raw(f, o->port, NULL);
    ck_assert_int_eq(connect_status(c), 403);
    raw_close(c);
    fixture_down(f);
}
END_TEST

START_TEST(test_connect_refused_502)
{
    int closed = harness_closed_port();
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("connect:\n  allowed_ports: [%d]\n", closed);
    struct fixture f = {o, p};
    struct raw *c = connect_raw(f, closed, NULL);
    struct http_response r;
    int rc = raw_read_response(c, &r, RESP_CONNECT, T_MS);
    ck_assert_msg(rc == RAW_OK, "CONNECT to a closed port: %s", raw_result_name(rc));
    ck_assert_int_eq(r.status, 502);
    ck_assert_msg(strcasestr(r.body, "refused") != NULL, "502 body: %s", r.body);
    http_response_free(&r);
    raw_close(c);
    fixture_down(f);
}
END_TEST

START_TEST(test_tunnel_idle_timeout)
{
    struct fixture f = up(0, "timeouts:\n  tunnel_idle: 1s\n");
    /* an active tunnel outlives the idle timeout: every 400 ms for 2.4 s */
    struct raw *c = connect_raw(f, f.o->port, NULL);
    ck_assert_int_eq(connect_status(c), 200);
    for (int i = 0; i < 6; i++) {
        tunnel_get(c, 1000);
        sleep_ms(400);
    }
    /* an idle one is closed */
    raw_assert_closed_between(c, 500, 3500, "idle tunnel (timeout 1 s)");
    raw_close(c);
    fixture_down(f);
}
END_TEST

START_TEST(test_bytes_after_connect_head_forwarded)
{
    struct fixture f = up(0, NULL);
    struct raw *c = connect_raw(f, f.o->port, "GET /bytes/777 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    ck_assert_int_eq(connect_status(c), 200);
    raw_expect_pattern(c, 777, "early bytes lost");
    tunnel_get(c, 5); /* and the tunnel carries on */
    raw_close(c);
    fixture_down(f);
}
END_TEST

/* Waits (bounded) for the origin to report this many open connections */
static long long wait_connections(struct fixture f, long long want)
{
    uint64_t deadline = now_ms() + 5000;
    long long n;
    /* /stats counts its own connection too */
    while ((n = origin_stat(f.o, "connections") - 1) != want && now_ms() < deadline)
        sleep_ms(100);
    return n;
}

START_TEST(test_client_close_closes_upstream)
{
    struct fixture f = up(0, NULL);
    struct raw *c = connect_raw(f, f.o->port, NULL);
    ck_assert_int_eq(connect_status(c), 200);
    tunnel_get(c, 10);
    ck_assert_int_eq(wait_connections(f, 1), 1);
    raw_close(c);
    long long left = wait_connections(f, 0);
    ck_assert_msg(left == 0, "origin still has %lld tunnel connection(s) after the client left",
                  left);
    fixture_down(f);
}
END_TEST

START_TEST(test_origin_close_closes_client)
{
    struct fixture f = up(0, NULL);
    struct raw *c = connect_raw(f, f.o->port, NULL);
    ck_assert_int_eq(connect_status(c), 200);
    raw_send_str(c, "GET /bytes/10 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    struct http_response r;
    ck_assert_int_eq(raw_read_response(c, &r, 0, T_MS), RAW_OK);
    ck_assert_uint_eq(r.body_len, 10);
    http_response_free(&r);
    ck_assert_msg(raw_wait_closed(c, 3000), "origin closed, the client's side stayed open");
    raw_close(c);
    fixture_down(f);
}
END_TEST

HARNESS_MAIN("connect", 0, test_tls_through_tunnel, test_tunnel_bulk_both_ways,
             test_port_not_allowed_403, test_connect_refused_502, test_tunnel_idle_timeout,
             test_bytes_after_connect_head_forwarded, test_client_close_closes_upstream,
             test_origin_close_closes_client)
