/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_parent.c — parent proxy (issue 3, item 8), tested with a second rlproxy as the parent: plain
 * requests and CONNECT tunnels from the child go through the parent; upstream_proxy_bypass sends
 * matching destinations direct (an address block matches address literals, a name pattern only
 * names); a parent that is down gives a 502 that names it; credentials in the URL are sent to
 * the parent as Basic proxy authorization and go no further. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define T_MS 10000

/* ---- helpers ----------------------------------------------------------------------------------
 */

/* The access-log fragment of a request line: "\"GET http://127.0.0.1:PORT/path\" STATUS " */
static void access_text(char *buf, size_t len, const char *method, const struct origin *o,
                        const char *path, int status)
{
    if (strcmp(method, "CONNECT") == 0)
        snprintf(buf, len, "\"CONNECT 127.0.0.1:%d\" %d ", o->port, status);
    else
        snprintf(buf, len, "\"%s http://127.0.0.1:%d%s\" %d ", method, o->port, path, status);
}

/* How many proxies a request went through, from the Via entries the origin saw */
static int via_hops(const char *headers_json)
{
    struct http_header *h = NULL;
    size_t n = 0;
    ck_assert_msg(json_headers(headers_json, &h, &n) == 0, "bad /headers JSON: %s", headers_json);
    int hops = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(h[i].name, "Via") != 0)
            continue;
        hops++;
        for (const char *c = h[i].value; (c = strchr(c, ',')) != NULL; c++)
            hops++;
    }
    hdr_free(h, n);
    return hops;
}

/* GET /headers from the origin through the proxy on port; the Via hop count */
static int hops_via(int port, const struct origin *o)
{
    char url[256];
    struct fetch_res rs;
    fetch_via(port, origin_url(o, "/headers", url, sizeof url), &rs);
    ck_assert_msg(rs.status == 200, "GET /headers: %ld %s", rs.status, rs.body);
    int hops = via_hops(rs.body);
    fetch_free(&rs);
    return hops;
}

/* An rlproxy whose parent proxy is the one on parent_port, allowing CONNECT to connect_port;
 * extra: more YAML lines ("" for none) */
static struct proxy *start_child(int connect_port, int parent_port, const char *extra)
{
    return proxy_startf("connect:\n  allowed_ports: [%d]\n"
                        "upstream_proxy: \"http://127.0.0.1:%d\"\n%s",
                        connect_port, parent_port, extra);
}

/* Stops a child proxy, then its parent and the origin behind them */
static void stop_chain(struct proxy *child, struct proxy *parent, struct origin *o)
{
    proxy_stop(child);
    proxy_stop_with_origin(parent, o);
}

/* ---- plain requests through the parent --------------------------------------------------------
 */

START_TEST(test_get_goes_through_parent)
{
    struct origin *o;
    struct proxy *parent = proxy_start_with_origin(&o, 0, NULL);
    struct proxy *child = proxy_startf("upstream_proxy: \"http://127.0.0.1:%d\"\n", parent->port);
    ck_assert_int_eq(hops_via(child->port, o), 2);
    char line[256];
    access_text(line, sizeof line, "GET", o, "/headers", 200);
    ck_assert_msg(proxy_wait_log(parent, line, 2000), "parent's log lacks %s:\n%s", line,
                  proxy_log_tail(parent, 1000));
    ck_assert_msg(proxy_wait_log(child, line, 2000), "child's log lacks %s", line);
    /* the parent's client is the child: exactly one request there */
    size_t n = proxy_log_count(parent, "\"GET http://");
    ck_assert_msg(n == 1, "parent logged %zu GETs for one request", n);
    /* a body through both, byte for byte */
    char url[256];
    struct fetch_req rq = {.url = origin_url(o, "/bytes/300000", url, sizeof url),
                           .proxy_port = child->port,
                           .check_pattern = 1};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200, "body via parent: %s", rs.err);
    ck_assert_uint_eq(rs.received, 300000);
    ck_assert_int_eq(rs.pattern_bad, -1);
    fetch_free(&rs);
    /* and an upload */
    struct fetch_req up = {.url = origin_url(o, "/sink", url, sizeof url),
                           .proxy_port = child->port,
                           .gen_upload = 100000};
    fetch(&up, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200, "upload via parent: %s", rs.err);
    char *sha = json_get_str(rs.body, "sha256");
    ck_assert_msg(sha != NULL && strcmp(sha, rs.upload_sha256) == 0, "origin got %s", rs.body);
    free(sha);
    fetch_free(&rs);
    stop_chain(child, parent, o);
}
END_TEST

START_TEST(test_connect_goes_through_parent)
{
    struct origin *o;
    struct proxy *parent = proxy_start_tunnel_to(&o, 1);
    struct proxy *child = start_child(o->port, parent->port, "");
    fetch_tls_via_tunnel(child->port, o, 100000);
    char line[256];
    access_text(line, sizeof line, "CONNECT", o, NULL, 200);
    ck_assert_msg(proxy_wait_log(parent, line, 3000), "parent's log lacks %s:\n%s", line,
                  proxy_log_tail(parent, 1000));
    ck_assert_msg(proxy_wait_log(child, line, 3000), "child's log lacks %s", line);
    stop_chain(child, parent, o);
}
END_TEST

/* rlproxy(8): "takes no settings from the environment". libcurl reads no_proxy/NO_PROXY on every
 * transfer unless told otherwise, which bypassed the configured parent for every host (found
 * while profiling: two getenv calls per request; this test failed before CURLOPT_NOPROXY ""). */
START_TEST(test_proxy_environment_ignored)
{
    struct origin *o = origin_start(0);
    struct origin *tls;
    struct proxy *parent = proxy_start_tunnel_to(&tls, 1);
    char dead[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d", harness_closed_port());
    static const char *const names[] = {"no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY",
                                        "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        setenv(names[i], i < 2 ? "*" : dead, 1);
    struct proxy *child = start_child(tls->port, parent->port, "");
    struct proxy *direct = proxy_start(NULL);
    /* the test's own libcurl obeys them too */
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unsetenv(names[i]);
    ck_assert_msg(hops_via(child->port, o) == 2, "no_proxy=* took the child past its parent");
    fetch_tls_via_tunnel(child->port, tls, 1000);
    char line[256];
    access_text(line, sizeof line, "CONNECT", tls, NULL, 200);
    ck_assert_msg(proxy_wait_log(parent, line, 3000), "the tunnel did not go through the parent");
    ck_assert_msg(hops_via(direct->port, o) == 1, "http_proxy sent a proxy without a parent on");
    proxy_stop(direct);
    stop_chain(child, parent, tls);
    origin_stop(o);
}
END_TEST

/* The parent's own rules apply: it refuses the port, the child cannot open the tunnel */
START_TEST(test_parent_refusing_connect)
{
    struct origin *o;
    struct proxy *parent = proxy_start_with_origin(&o, 1, NULL); /* allowed_ports: [443] */
    struct proxy *child = start_child(o->port, parent->port, "");
    struct raw *c = raw_connect(child->port);
    struct http_response r;
    int rc = raw_tunnel_request(c, o->port, &r, T_MS);
    ck_assert_msg(rc == RAW_OK, "CONNECT via a refusing parent: %s", raw_result_name(rc));
    ck_assert_msg(r.status >= 400, "CONNECT via a refusing parent got %d", r.status);
    http_response_free(&r);
    raw_close(c);
    char line[256];
    access_text(line, sizeof line, "CONNECT", o, NULL, 403);
    ck_assert_msg(proxy_wait_log(parent, line, 2000), "parent's log lacks %s:\n%s", line,
                  proxy_log_tail(parent, 1000));
    ck_assert_msg(origin_stat(o, "accepted") == 1, "the origin was reached anyway");
    stop_chain(child, parent, o);
}
END_TEST

/* ---- bypass ------------------------------------------------------------------------------------
 */

START_TEST(test_bypass_address_block_goes_direct)
{
    struct origin *plain = origin_start(0);
    struct origin *o;
    struct proxy *parent = proxy_start_tunnel_to(&o, 1);
    struct proxy *child = start_child(o->port, parent->port,
                                      "upstream_proxy_bypass: [\"*.internal\", \"127.0.0.0/8\"]\n");
    ck_assert_int_eq(hops_via(child->port, plain), 1);
    fetch_tls_via_tunnel(child->port, o, 5000);
    char get_line[256], connect_line[256];
    access_text(get_line, sizeof get_line, "GET", plain, "/headers", 200);
    access_text(connect_line, sizeof connect_line, "CONNECT", o, NULL, 200);
    ck_assert(proxy_wait_log(child, get_line, 2000));
    ck_assert(proxy_wait_log(child, connect_line, 3000));
    ck_assert_msg(!proxy_log_contains(parent, "\"GET http://") &&
                      !proxy_log_contains(parent, "\"CONNECT "),
                  "bypassed requests reached the parent:\n%s", proxy_log_tail(parent, 1000));
    /* the parent is up and would have been used: check it serves */
    ck_assert_int_eq(hops_via(parent->port, plain), 1);
    stop_chain(child, parent, plain);
    origin_stop(o);
}
END_TEST

/* Name patterns match names only: an address-literal target is not bypassed by them */
START_TEST(test_bypass_name_patterns_skip_address_literals)
{
    struct origin *o;
    struct proxy *parent = proxy_start_with_origin(&o, 0, NULL);
    struct proxy *child = proxy_startf("upstream_proxy: \"http://127.0.0.1:%d\"\n"
                                       "upstream_proxy_bypass: [\"localhost\", \"*.internal\", "
                                       "\"10.0.0.0/8\"]\n",
                                       parent->port);
    ck_assert_int_eq(hops_via(child->port, o), 2);
    proxy_stop(child);
    /* a wildcard whose suffix happens to end an address literal is still a name pattern */
    child = proxy_startf("upstream_proxy: \"http://127.0.0.1:%d\"\n"
                         "upstream_proxy_bypass: [\"*.0.0.1\"]\n",
                         parent->port);
    int hops = hops_via(child->port, o);
    ck_assert_msg(hops == 2,
                  "bypass [\"*.0.0.1\"] sent a request for 127.0.0.1 direct (%d hop): a name "
                  "pattern matched an address literal",
                  hops);
    stop_chain(child, parent, o);
}
END_TEST

/* ---- failures ----------------------------------------------------------------------------------
 */

START_TEST(test_parent_down_502)
{
    struct origin *o = origin_start(0);
    int down = harness_closed_port();
    struct proxy *child = start_child(o->port, down, "");
    char parent_addr[64];
    snprintf(parent_addr, sizeof parent_addr, "127.0.0.1:%d", down);
    char url[256];
    struct fetch_res rs;
    fetch_via(child->port, origin_url(o, "/bytes/10", url, sizeof url), &rs);
    ck_assert_int_eq(rs.status, 502);
    ck_assert_msg(strcasestr(rs.body, "refused") != NULL, "502 body: %s", rs.body);
    ck_assert_msg(strstr(rs.body, parent_addr) != NULL,
                  "the 502 does not name the parent proxy %s that refused: \"%s\"", parent_addr,
                  rs.body);
    fetch_free(&rs);
    /* a tunnel likewise */
    struct raw *c = raw_connect(child->port);
    struct http_response r;
    ck_assert_int_eq(raw_tunnel_request(c, o->port, &r, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 502);
    ck_assert_msg(strstr(r.body, parent_addr) != NULL,
                  "the CONNECT 502 does not name the parent proxy %s: \"%s\"", parent_addr, r.body);
    http_response_free(&r);
    raw_close(c);
    ck_assert_msg(origin_stat(o, "accepted") == 1, "the child went direct to the origin");
    proxy_stop_with_origin(child, o);
}
END_TEST

/* ---- credentials --------------------------------------------------------------------------------
 */

/* A stand-in parent that records one request head and answers 200 "ok" */
struct fake_parent {
    int fd;
    int port;
    char head[8192];
    size_t len;
    int got;
    pthread_t thread;
};

static void *fake_parent_main(void *arg)
{
    struct fake_parent *f = arg;
    struct pollfd pfd = {f->fd, POLLIN, 0};
    if (poll(&pfd, 1, 5000) != 1)
        return NULL;
    int c = accept(f->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    uint64_t deadline = now_ms() + 5000;
    while (f->len < sizeof f->head - 1) {
        f->head[f->len] = '\0';
        if (strstr(f->head, "\r\n\r\n") != NULL) {
            f->got = 1;
            break;
        }
        struct pollfd cp = {c, POLLIN, 0};
        int64_t left = (int64_t)deadline - (int64_t)now_ms();
        if (left <= 0 || poll(&cp, 1, (int)left) != 1)
            break;
        ssize_t n = read(c, f->head + f->len, sizeof f->head - 1 - f->len);
        if (n <= 0)
            break;
        f->len += (size_t)n;
    }
    f->head[f->len] = '\0';
    static const char reply[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    ssize_t unused = write(c, reply, sizeof reply - 1);
    (void)unused;
    shutdown(c, SHUT_WR);
    char drain[256];
    struct pollfd cp = {c, POLLIN, 0};
    while (poll(&cp, 1, 1000) == 1 && read(c, drain, sizeof drain) > 0) {
    }
    close(c);
    return NULL;
}

static void fake_parent_start(struct fake_parent *f)
{
    memset(f, 0, sizeof *f);
    f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    ck_assert(f->fd >= 0 && bind(f->fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
              listen(f->fd, 4) == 0 && getsockname(f->fd, (struct sockaddr *)&sa, &len) == 0);
    f->port = ntohs(sa.sin_port);
    ck_assert(pthread_create(&f->thread, NULL, fake_parent_main, f) == 0);
}

START_TEST(test_credentials_sent_to_parent)
{
    struct origin *o = origin_start(0);
    struct fake_parent f;
    fake_parent_start(&f);
    struct proxy *child = proxy_startf("upstream_proxy: \"http://user:pw@127.0.0.1:%d\"\n", f.port);
    char url[256];
    struct fetch_res rs;
    fetch_via(child->port, origin_url(o, "/headers", url, sizeof url), &rs);
    pthread_join(f.thread, NULL);
    close(f.fd);
    ck_assert_msg(rs.status == 200 && strcmp(rs.body, "ok") == 0, "via the fake parent: %ld %s",
                  rs.status, rs.body);
    fetch_free(&rs);
    ck_assert_msg(f.got, "the fake parent got no complete request head: %s", f.head);
    char start[128];
    snprintf(start, sizeof start, "GET http://127.0.0.1:%d/headers HTTP/1.1\r\n", o->port);
    ck_assert_msg(strncmp(f.head, start, strlen(start)) == 0,
                  "the parent must get the absolute form; got:\n%s", f.head);
    /* base64("user:pw") */
    ck_assert_msg(strcasestr(f.head, "\r\nProxy-Authorization: Basic dXNlcjpwdw==\r\n") != NULL,
                  "no Basic credentials for the parent:\n%s", f.head);
    ck_assert_msg(!proxy_log_contains(child, "user:pw"), "the password is in the log");
    proxy_stop(child);

    /* a real parent (which does not check credentials yet): the request works, and the
     * credentials stop at the parent */
    struct proxy *parent = proxy_start(NULL);
    child = proxy_startf("upstream_proxy: \"http://user:pw@127.0.0.1:%d\"\n", parent->port);
    fetch_via(child->port, origin_url(o, "/headers", url, sizeof url), &rs);
    ck_assert_int_eq(rs.status, 200);
    ck_assert_int_eq(via_hops(rs.body), 2);
    ck_assert_msg(strcasestr(rs.body, "Proxy-Authorization") == NULL,
                  "the parent passed the credentials on to the origin: %s", rs.body);
    fetch_free(&rs);
    stop_chain(child, parent, o);
}
END_TEST

/* One worker, requests in turn: each gets the curl handle the previous one used. A handle that
 * went through the parent must not take the next, bypassed, request there too, nor the reverse. */
START_TEST(test_parent_and_direct_alternate_on_one_handle)
{
    struct origin *o;
    struct proxy *parent = proxy_start_with_origin(&o, 0, NULL);
    struct proxy *child = proxy_startf("workers: 1\n"
                                       "upstream_proxy: \"http://127.0.0.1:%d\"\n"
                                       "upstream_proxy_bypass: [\"localhost\"]\n",
                                       parent->port);
    char direct[256];
    snprintf(direct, sizeof direct, "http://localhost:%d/headers", o->port);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(hops_via(child->port, o), 2);
        struct fetch_res rs;
        fetch_via(child->port, direct, &rs);
        ck_assert_msg(rs.status == 200, "GET %s: %ld %s", direct, rs.status, rs.body);
        ck_assert_msg(via_hops(rs.body) == 1, "bypassed request went through the parent: %s",
                      rs.body);
        fetch_free(&rs);
    }
    ck_assert_msg(!proxy_log_contains(parent, "http://localhost:"),
                  "bypassed requests reached the parent:\n%s", proxy_log_tail(parent, 1000));
    stop_chain(child, parent, o);
}
END_TEST

HARNESS_MAIN("parent", 25, test_parent_and_direct_alternate_on_one_handle,
             test_get_goes_through_parent, test_connect_goes_through_parent,
             test_parent_refusing_connect, test_bypass_address_block_goes_direct,
             test_bypass_name_patterns_skip_address_literals, test_parent_down_502,
             test_credentials_sent_to_parent, test_proxy_environment_ignored)
