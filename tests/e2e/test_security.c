/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_security.c — issue 8: rlproxy is not an open proxy, proxy authentication (Basic over
 * Proxy-Authorization, crypt(3) hashes, users file, reload, per-user limits, CONNECT), the
 * destination policy (default link-local deny, address blocks checked after DNS, name patterns,
 * CONNECT, destination ports), Via loop detection, the per-client connection cap and slow clients.
 * The proof that smuggled requests never reach the origin is test_smuggling.c.
 *
 * Nothing here leaves the machine. Requests to denied non-loopback destinations (169.254.169.254,
 * fe80::1, *.internal names) go through a proxy whose upstream_proxy is the local test origin: the
 * deny check must answer 403 before any forwarding, and if it ever failed to, the request would
 * land on the origin (which the test then reports) instead of going off-box or to a resolver. */
#include "harness.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define T_MS 10000
#define RELOAD_WAIT_MS 10000

/* ---- small helpers --------------------------------------------------------------------------- */

/* How many requests the origin logged whose entry contains needle (its /log is JSON) */
static size_t origin_seen(const struct origin *o, const char *needle)
{
    char *log = origin_get(o, "/log");
    size_t n = text_count(log, needle);
    free(log);
    return n;
}

/* sha512-crypt of password, as `mkpasswd -m sha-512` would make it (fixed salt: deterministic) */
static char *make_hash(const char *password)
{
    struct crypt_data data;
    memset(&data, 0, sizeof data);
    const char *h = crypt_r(password, "$6$rlproxytestsalt$", &data);
    ck_assert_msg(h != NULL && h[0] == '$', "crypt_r failed");
    return strdup(h);
}

static void base64(const char *in, char *out, size_t out_len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), j = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)in[i + 2];
        ck_assert(j + 5 < out_len);
        out[j++] = tab[(v >> 18) & 63];
        out[j++] = tab[(v >> 12) & 63];
        out[j++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[j++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[j] = '\0';
}

/* "Proxy-Authorization: Basic b64(user:password)\r\n" */
static void basic_header(const char *user, const char *password, char *out, size_t out_len)
{
    char plain[300], b64[420];
    snprintf(plain, sizeof plain, "%s:%s", user, password);
    base64(plain, b64, sizeof b64);
    snprintf(out, out_len, "Proxy-Authorization: Basic %s\r\n", b64);
}

/* One request on a fresh connection; fails the test unless a whole response arrives. */
static int exchange(int port, const char *request, struct http_response *r)
{
    int rc = raw_exchange(port, request, r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "request %.60s...: %s", request, raw_result_name(rc));
    return r->status;
}

/* GET path on the origin through the proxy, with extra header lines; fresh connection */
static int get_with(struct proxy *p, const struct origin *o, const char *path, const char *extra,
                    struct http_response *r)
{
    char *req = proxy_request("GET", o, path, extra);
    int status = exchange(p->port, req, r);
    free(req);
    return status;
}

static int get_status(struct proxy *p, const struct origin *o, const char *path, const char *extra)
{
    struct http_response r;
    int status = get_with(p, o, path, extra, &r);
    http_response_free(&r);
    return status;
}

/* A GET to an arbitrary absolute URL through the proxy, fresh connection */
static int get_url(struct proxy *p, const char *url, struct http_response *r)
{
    char req[1200];
    const char *host = strstr(url, "://");
    host = host != NULL ? host + 3 : url;
    size_t host_len = strcspn(host, "/?");
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %.*s\r\nConnection: close\r\n\r\n", url,
             (int)host_len, host);
    return exchange(p->port, req, r);
}

/* Rewrites the config file, SIGHUP, waits (bounded) for "configuration reloaded" */
static void reload_with(struct proxy *p, const char *yaml)
{
    ck_assert_msg(proxy_reload(p, yaml, RELOAD_WAIT_MS), "reload failed:\n%s",
                  proxy_log_tail(p, 1500));
    sleep_ms(100); /* the workers pick the new config up from their loops */
}

static void assert_closed(struct raw *c, const char *what)
{
    ck_assert_msg(raw_wait_closed(c, 2000), "%s: the proxy did not close the connection within 2 s",
                  what);
}

/* ---- not an open proxy ----------------------------------------------------------------------- */

START_TEST(test_not_open_proxy)
{
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("access:\n  allow: [\"10.0.0.0/8\"]\n"
                                   "connect:\n  allowed_ports: [%d]\n",
                                   o->port);
    struct http_response r;
    char *req = proxy_request("GET", o, "/headers/open-proxy-probe", NULL);
    struct raw *c = raw_connect(p->port);
    raw_send_str(c, req);
    free(req);
    int rc = raw_read_response(c, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "%s", raw_result_name(rc));
    ck_assert_int_eq(r.status, 403);
    ck_assert_msg(strstr(r.body, "access.allow") != NULL, "403 body: %s", r.body);
    http_response_free(&r);
    assert_closed(c, "403 for a client outside access.allow");
    raw_close(c);

    /* CONNECT too, with a body of tunnel bytes behind it */
    char connect[300];
    snprintf(connect, sizeof connect,
             "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
             "GET /headers/open-proxy-tunnel HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
             o->port, o->port);
    c = raw_connect(p->port);
    raw_send_str(c, connect);
    rc = raw_read_response(c, &r, RESP_CONNECT, T_MS);
    ck_assert_msg(rc == RAW_OK, "%s", raw_result_name(rc));
    ck_assert_int_eq(r.status, 403);
    http_response_free(&r);
    assert_closed(c, "403 to CONNECT");
    raw_close(c);

    ck_assert_msg(origin_seen(o, "open-proxy") == 0, "the origin saw a refused client's request");
    ck_assert_int_eq(origin_stat(o, "accepted"), 2); /* only this test's own /log and /stats */
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- authentication -------------------------------------------------------------------------- */

static struct proxy *auth_proxy(const struct origin *o, const char *extra)
{
    char *hash = make_hash("alice-pw"), *hash_bob = make_hash("bob-pw");
    struct proxy *p = proxy_startf("auth:\n  realm: \"Test Realm\"\n"
                                   "  users: {alice: \"%s\", bob: \"%s\"}\n"
                                   "connect:\n  allowed_ports: [%d]\n%s",
                                   hash, hash_bob, o->port, extra != NULL ? extra : "");
    free(hash);
    free(hash_bob);
    return p;
}

static void assert_challenge(const struct http_response *r, const char *what)
{
    ck_assert_msg(r->status == 407, "%s: status %d, want 407; body: %s", what, r->status, r->body);
    const char *challenge = resp_header(r, "Proxy-Authenticate", 0);
    ck_assert_msg(challenge != NULL, "%s: 407 without Proxy-Authenticate", what);
    ck_assert_msg(strncmp(challenge, "Basic realm=\"Test Realm\"", 24) == 0, "%s: challenge %s",
                  what, challenge);
}

/* A request with this header line (NULL: none) is answered with a 407 challenge */
static void assert_challenged(struct proxy *p, const struct origin *o, const char *path,
                              const char *header, const char *what)
{
    struct http_response r;
    get_with(p, o, path, header, &r);
    assert_challenge(&r, what);
    http_response_free(&r);
}

START_TEST(test_auth_basic)
{
    struct origin *o = origin_start(0);
    struct proxy *p = auth_proxy(o, NULL);
    struct http_response r;
    char h[600];

    assert_challenged(p, o, "/headers/no-credentials", NULL, "no credentials");

    basic_header("alice", "wrong", h, sizeof h);
    assert_challenged(p, o, "/headers/wrong-password", h, "wrong password");

    basic_header("mallory", "alice-pw", h, sizeof h);
    assert_challenged(p, o, "/headers/unknown-user", h, "unknown user");

    /* a user name that is a prefix of a real one, and a right password sent for the other user */
    basic_header("alic", "alice-pw", h, sizeof h);
    assert_challenged(p, o, "/headers/prefix-user", h, "user name prefix");
    basic_header("bob", "alice-pw", h, sizeof h);
    assert_challenged(p, o, "/headers/other-users-password", h, "another user's password");

    /* malformed credentials: 407 every time, never a 400/500 or a crash */
    static const char *const malformed[] = {
        "Proxy-Authorization: Basic !!!!\r\n",
        "Proxy-Authorization: Basic YWxpY2U=\r\n",            /* "alice": no colon */
        "Proxy-Authorization: Basic YWxpY2U6YWxpY2UtcHc\r\n", /* unpadded */
        "Proxy-Authorization: Basic YWxpY2U6YWxpY2UtcHc=x\r\n",
        "Proxy-Authorization: Basic =\r\n",
        "Proxy-Authorization: Basic ====\r\n",
        "Proxy-Authorization: Basic \r\n",
        "Proxy-Authorization: Basic\r\n",
        "Proxy-Authorization: Bearer x\r\n",
        "Proxy-Authorization: Digest username=\"alice\"\r\n",
        "Proxy-Authorization: \r\n",
        "Proxy-Authorization: Basic AGFsaWNlOmFsaWNlLXB3\r\n", /* "\0alice:alice-pw" */
        "Proxy-Authorization: Basic YWxpY2UAOmFsaWNlLXB3\r\n", /* "alice\0:alice-pw" */
        "Proxy-Authorization: Basic OmFsaWNlLXB3\r\n",         /* ":alice-pw" */
        "Proxy-Authorization: Basic YWxpY2U6\r\n",             /* "alice:" */
        NULL,
    };
    for (size_t i = 0; malformed[i] != NULL; i++) {
        get_with(p, o, "/headers/malformed", malformed[i], &r);
        char what[200];
        snprintf(what, sizeof what, "malformed credentials %zu (%.*s)", i,
                 (int)strlen(malformed[i]) - 2, malformed[i]);
        assert_challenge(&r, what);
        http_response_free(&r);
        ck_assert_msg(proxy_alive(p), "%s: %s", what, proxy_state(p));
    }
    /* an oversized token (4 KiB of base64) */
    char *big = malloc(5000);
    strcpy(big, "Proxy-Authorization: Basic ");
    size_t at = strlen(big);
    memset(big + at, 'Q', 4096);
    strcpy(big + at + 4096, "\r\n");
    assert_challenged(p, o, "/headers/huge-token", big, "4 KiB token");
    free(big);

    /* the right credentials: 200, and the origin never sees them */
    basic_header("alice", "alice-pw", h, sizeof h);
    ck_assert_int_eq(get_with(p, o, "/headers/authorized", h, &r), 200);
    struct http_header *hs = NULL;
    size_t n = 0;
    ck_assert_msg(json_headers(r.body, &hs, &n) == 0, "bad /headers JSON: %s", r.body);
    ck_assert_msg(hdr_find(hs, n, "Proxy-Authorization", 0) == NULL,
                  "credentials were forwarded to the origin: %s", r.body);
    ck_assert_msg(strstr(r.body, "YWxpY2U6") == NULL, "credentials reached the origin: %s", r.body);
    hdr_free(hs, n);
    http_response_free(&r);

    /* a 407 leaves the connection usable: the client retries with credentials on it */
    struct raw *c = raw_connect_send(p->port, "GET", o, "/headers/retry-after-407", NULL);
    ck_assert_int_eq(raw_read_response(c, &r, 0, T_MS), RAW_OK);
    assert_challenge(&r, "first request on a keep-alive connection");
    http_response_free(&r);
    raw_send_proxy_request(c, "GET", o, "/headers/retry-after-407", h);
    raw_expect_status(c, 200, "the retry with credentials");
    raw_close(c);

    /* the access log names the user (text format: "TIME CLIENT USER \"METHOD TARGET\" ...") */
    char line[300];
    snprintf(line, sizeof line, " alice \"GET http://127.0.0.1:%d/headers/authorized\" 200",
             o->port);
    ck_assert_msg(proxy_log_contains(p, line), "no access line with the user name (%s); log:\n%s",
                  line, proxy_log_tail(p, 2000));
    /* and a refused request has no user */
    snprintf(line, sizeof line, " - \"GET http://127.0.0.1:%d/headers/wrong-password\" 407",
             o->port);
    ck_assert_msg(proxy_log_contains(p, line), "no 407 access line (%s); log:\n%s", line,
                  proxy_log_tail(p, 2000));
    /* no password and no token in the log */
    ck_assert_msg(!proxy_log_contains(p, "alice-pw") && !proxy_log_contains(p, "YWxpY2U6"),
                  "credentials in the log:\n%s", proxy_log_tail(p, 3000));

    /* none of the refused requests reached the origin */
    ck_assert_uint_eq(origin_seen(o, "\"target\":\"/headers/"), 2);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* RFC 9110 15.5.8: the reason phrase of 407 is "Proxy Authentication Required" */
START_TEST(test_auth_407_reason)
{
    struct origin *o = origin_start(0);
    struct proxy *p = auth_proxy(o, NULL);
    struct http_response r;
    get_with(p, o, "/headers/reason", NULL, &r);
    ck_assert_int_eq(r.status, 407);
    ck_assert_msg(strcmp(r.reason, "Proxy Authentication Required") == 0,
                  "407 reason phrase \"%s\"", r.reason);
    http_response_free(&r);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_auth_connect)
{
    struct origin *o = origin_start(0);
    struct proxy *p = auth_proxy(o, NULL);
    struct http_response r;
    char req[800], h[600];

    /* without credentials: 407, and the tunnel bytes behind it never reach the origin */
    snprintf(req, sizeof req,
             "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
             "GET /headers/tunnel-unauthorized HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
             o->port, o->port);
    struct raw *c = raw_connect(p->port);
    raw_send_str(c, req);
    ck_assert_int_eq(raw_read_response(c, &r, RESP_CONNECT, T_MS), RAW_OK);
    assert_challenge(&r, "CONNECT without credentials");
    http_response_free(&r);
    raw_close(c);

    basic_header("alice", "nope", h, sizeof h);
    snprintf(req, sizeof req, "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n",
             o->port, o->port, h);
    ck_assert_int_eq(raw_exchange(p->port, req, &r, RESP_CONNECT, T_MS), RAW_OK);
    assert_challenge(&r, "CONNECT with a wrong password");
    http_response_free(&r);

    /* with credentials: a working tunnel */
    basic_header("alice", "alice-pw", h, sizeof h);
    snprintf(req, sizeof req, "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n",
             o->port, o->port, h);
    c = raw_connect(p->port);
    raw_send_str(c, req);
    ck_assert_int_eq(raw_read_response(c, &r, RESP_CONNECT, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 200);
    http_response_free(&r);
    raw_send_str(c, "GET /headers/tunnel-authorized HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Connection: close\r\n\r\n");
    raw_expect_status(c, 200, "a request in the authorized tunnel");
    raw_close(c);

    ck_assert_uint_eq(origin_seen(o, "tunnel-unauthorized"), 0);
    ck_assert_uint_eq(origin_seen(o, "tunnel-authorized"), 1);
    char line[200];
    snprintf(line, sizeof line, " alice \"CONNECT 127.0.0.1:%d\"", o->port);
    uint64_t deadline = now_ms() + 3000; /* the line is written when the tunnel ends */
    while (!proxy_log_contains(p, line) && now_ms() < deadline)
        sleep_ms(10);
    ck_assert_msg(proxy_log_contains(p, line), "no tunnel access line with the user (%s); log:\n%s",
                  line, proxy_log_tail(p, 2000));
    proxy_stop_with_origin(p, o);
}
END_TEST

/* key: user counts each user on their own */
START_TEST(test_auth_rate_limit_per_user)
{
    struct origin *o = origin_start(0);
    struct proxy *p = auth_proxy(o, "rate_limits:\n"
                                    "  - name: per-user\n"
                                    "    key: user\n"
                                    "    limit: 2\n"
                                    "    window: 1m\n"
                                    "    over_limit: reject\n");
    char alice[600], bob[600];
    basic_header("alice", "alice-pw", alice, sizeof alice);
    basic_header("bob", "bob-pw", bob, sizeof bob);
    ck_assert_int_eq(get_status(p, o, "/headers/a1", alice), 200);
    ck_assert_int_eq(get_status(p, o, "/headers/a2", alice), 200);
    ck_assert_int_eq(get_status(p, o, "/headers/a3", alice), 429);
    ck_assert_int_eq(get_status(p, o, "/headers/b1", bob), 200);
    ck_assert_int_eq(get_status(p, o, "/headers/b2", bob), 200);
    ck_assert_int_eq(get_status(p, o, "/headers/b3", bob), 429);
    ck_assert_int_eq(get_status(p, o, "/headers/a4", alice), 429);
    /* refused credentials are not counted against the user they name */
    char wrong[600];
    basic_header("alice", "wrong", wrong, sizeof wrong);
    ck_assert_int_eq(get_status(p, o, "/headers/w1", wrong), 407);
    ck_assert_uint_eq(origin_seen(o, "\"target\":\"/headers/"), 4);
    proxy_stop_with_origin(p, o);
}
END_TEST

static void write_users(const char *path, const char *users)
{
    char *text = NULL;
    char *hash_a = make_hash("alice-pw"), *hash_b = make_hash("bob-pw");
    /* "alice bob" -> lines for those users */
    ck_assert(asprintf(&text, "# test users\n\n%s%s%s%s%s%s",
                       strstr(users, "alice") ? "alice:" : "", strstr(users, "alice") ? hash_a : "",
                       strstr(users, "alice") ? "\n" : "", strstr(users, "bob") ? "bob:" : "",
                       strstr(users, "bob") ? hash_b : "", strstr(users, "bob") ? "\n" : "") > 0);
    write_text(path, text);
    free(text);
    free(hash_a);
    free(hash_b);
}

START_TEST(test_auth_users_file_and_reload)
{
    struct origin *o = origin_start(0);
    char users[600];
    snprintf(users, sizeof users, "%s/users-%d", harness_tmpdir(), (int)getpid());
    write_users(users, "alice bob");
    struct proxy *p = proxy_startf("auth:\n  realm: \"Test Realm\"\n  users_file: \"%s\"\n", users);
    char alice[600], bob[600];
    basic_header("alice", "alice-pw", alice, sizeof alice);
    basic_header("bob", "bob-pw", bob, sizeof bob);
    ck_assert_int_eq(get_status(p, o, "/headers/f1", alice), 200);
    ck_assert_int_eq(get_status(p, o, "/headers/f2", bob), 200);
    ck_assert_int_eq(get_status(p, o, "/headers/f3", NULL), 407);

    /* alice leaves: the file is rewritten and the proxy reloaded */
    write_users(users, "bob");
    char *conf = read_file(p->conf_path, NULL);
    reload_with(p, conf);
    free(conf);
    assert_challenged(p, o, "/headers/f4", alice, "a user removed by a reload (fresh connection)");
    ck_assert_int_eq(get_status(p, o, "/headers/f5", bob), 200);
    ck_assert_uint_eq(origin_seen(o, "/headers/f4"), 0);

    /* the file is read at reload: a bad line keeps the running config (alice still refused) */
    write_text(users, "bob\n");
    conf = read_file(p->conf_path, NULL);
    write_text(p->conf_path, conf);
    size_t bad0 = proxy_log_count(p, "reload failed");
    kill(p->pid, SIGHUP);
    uint64_t deadline = now_ms() + RELOAD_WAIT_MS;
    while (proxy_log_count(p, "reload failed") == bad0 && now_ms() < deadline)
        sleep_ms(5);
    ck_assert_msg(proxy_log_count(p, "reload failed") > bad0, "a users file without a hash was accepted");
    free(conf);
    ck_assert_int_eq(get_status(p, o, "/headers/f6", bob), 200);
    ck_assert_int_eq(get_status(p, o, "/headers/f7", alice), 407);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* A removed user must not keep working on a keep-alive connection opened before the reload */
START_TEST(test_auth_reload_revokes_keepalive)
{
    struct origin *o = origin_start(0);
    char users[600];
    snprintf(users, sizeof users, "%s/users-ka-%d", harness_tmpdir(), (int)getpid());
    write_users(users, "alice bob");
    struct proxy *p = proxy_startf("auth:\n  realm: \"Test Realm\"\n  users_file: \"%s\"\n", users);
    char alice[600];
    basic_header("alice", "alice-pw", alice, sizeof alice);
    struct raw *c = raw_connect(p->port);
    struct http_response r;
    raw_send_proxy_request(c, "GET", o, "/headers/ka-before", alice);
    raw_expect_status(c, 200, "alice's first request");

    write_users(users, "bob");
    char *conf = read_file(p->conf_path, NULL);
    reload_with(p, conf);
    free(conf);

    raw_send_proxy_request(c, "GET", o, "/headers/ka-after", alice);
    int rc = raw_read_response(c, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK || rc == RAW_CLOSED, "%s", raw_result_name(rc));
    ck_assert_msg(rc == RAW_CLOSED || r.status == 407,
                  "a user removed by a reload still gets %d on a keep-alive connection opened "
                  "before it",
                  r.status);
    http_response_free(&r);
    raw_close(c);
    ck_assert_uint_eq(origin_seen(o, "ka-after"), 0);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- destinations ---------------------------------------------------------------------------- */

/* 403 from the proxy itself (its Via, a text body naming destinations.deny or the port rule) */
static void assert_refused(const struct http_response *r, const char *what, const char *needle)
{
    ck_assert_msg(r->status == 403, "%s: status %d, want 403; body: %s", what, r->status, r->body);
    const char *via = resp_header(r, "Via", 0);
    ck_assert_msg(via != NULL && strstr(via, "rlproxy-") != NULL, "%s: 403 not from rlproxy", what);
    ck_assert_msg(needle == NULL || strstr(r->body, needle) != NULL, "%s: body \"%s\" lacks \"%s\"",
                  what, r->body, needle);
}

/* GET url through p: refused as assert_refused says (what NULL: named by the url) */
static void assert_url_refused(struct proxy *p, const char *url, const char *what,
                               const char *needle)
{
    struct http_response r;
    get_url(p, url, &r);
    assert_refused(&r, what != NULL ? what : url, needle);
    http_response_free(&r);
}

/* The CONNECT request text sent to p on a fresh connection: refused as assert_refused says */
static void assert_connect_refused(struct proxy *p, const char *request, const char *what,
                                   const char *needle)
{
    struct http_response r;
    ck_assert_int_eq(raw_exchange(p->port, request, &r, RESP_CONNECT, T_MS), RAW_OK);
    assert_refused(&r, what, needle);
    http_response_free(&r);
}

START_TEST(test_deny_default_link_local)
{
    struct origin *o = origin_start(0);
    /* The default deny list; the origin is the parent proxy, a local catch-all for anything the
     * deny check would have let through (nothing may leave the machine). */
    struct proxy *p = proxy_startf("upstream_proxy: \"http://127.0.0.1:%d\"\n", o->port);
    static const char *const urls[] = {
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.169.254:80/computeMetadata/v1/",
        "http://169.254.0.1:8080/",
        "https://169.254.169.254/",
        "http://[fe80::1]/",
        "http://[FE80::a:b:c:d]:8080/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        NULL,
    };
    for (size_t i = 0; urls[i] != NULL; i++)
        assert_url_refused(p, urls[i], NULL, "destinations.deny");
    ck_assert_uint_eq(origin_seen(o, "169.254"), 0);
    ck_assert_uint_eq(origin_seen(o, "fe80"), 0);
    ck_assert_uint_eq(origin_seen(o, "FE80"), 0);
    ck_assert_uint_eq(origin_seen(o, "a9fe"), 0);
    /* a CONNECT to the metadata address is refused the same way */
    char req[300];
    snprintf(req, sizeof req,
             "CONNECT 169.254.169.254:443 HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n");
    assert_connect_refused(p, req, "CONNECT 169.254.169.254:443", "destinations.deny");
    ck_assert_uint_eq(origin_seen(o, "169.254"), 0);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* An address block is checked on the address connected to, after DNS: names and unusual
 * spellings of a denied address are refused too, naming the address. */
START_TEST(test_deny_after_dns)
{
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("destinations:\n  deny: [\"127.0.0.1/32\", \"::1/128\"]\n"
                                   "connect:\n  allowed_ports: [%d]\n",
                                   o->port);
    static const char *const hosts[] = {"localhost", "LocalHost",  "2130706433", "127.1",
                                        "0x7f.1",    "0177.0.0.1", NULL};
    struct http_response r;
    for (size_t i = 0; hosts[i] != NULL; i++) {
        char url[300];
        snprintf(url, sizeof url, "http://%s:%d/headers/after-dns", hosts[i], o->port);
        get_url(p, url, &r);
        assert_refused(&r, url, "destinations.deny");
        ck_assert_msg(strstr(r.body, "resolves to") != NULL &&
                          (strstr(r.body, "127.0.0.1") != NULL || strstr(r.body, "::1") != NULL),
                      "%s: the 403 does not name the address: %s", url, r.body);
        http_response_free(&r);
    }
    /* literals are refused before any connection */
    char url[300];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/headers/after-dns", o->port);
    assert_url_refused(p, url, NULL, "127.0.0.1");
    snprintf(url, sizeof url, "http://[::ffff:127.0.0.1]:%d/headers/after-dns", o->port);
    assert_url_refused(p, url, NULL, "destinations.deny");

    /* CONNECT: by literal and by name */
    char req[300];
    snprintf(req, sizeof req, "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n", o->port);
    assert_connect_refused(p, req, "CONNECT 127.0.0.1", "destinations.deny");
    snprintf(req, sizeof req, "CONNECT localhost:%d HTTP/1.1\r\nHost: x\r\n\r\n", o->port);
    assert_connect_refused(p, req, "CONNECT localhost", "resolves to");

    ck_assert_uint_eq(origin_seen(o, "after-dns"), 0);
    ck_assert_int_eq(origin_stat(o, "accepted"), 2); /* our /log and /stats: nothing else */
    proxy_stop_with_origin(p, o);
}
END_TEST

/* 0.0.0.0 and :: as a destination reach this machine's own services (Linux connects them to
 * loopback), so a deny list that refuses loopback must refuse them too. */
START_TEST(test_deny_unspecified_address)
{
    struct origin *o = origin_start(0);
    struct proxy *p =
        proxy_start("destinations:\n  deny: [\"169.254.0.0/16\", \"fe80::/10\", "
                    "\"127.0.0.0/8\", \"::1/128\", \"10.0.0.0/8\", \"172.16.0.0/12\", "
                    "\"192.168.0.0/16\", \"fc00::/7\", \"*.internal\"]\n");
    static const char *const hosts[] = {"0.0.0.0", "0", "[::]", NULL};
    struct http_response r;
    for (size_t i = 0; hosts[i] != NULL; i++) {
        char url[300];
        snprintf(url, sizeof url, "http://%s:%d/headers/unspecified", hosts[i], o->port);
        get_url(p, url, &r);
        ck_assert_msg(r.status == 403,
                      "%s with loopback denied (the sample config's deny list): status %d: %s", url,
                      r.status, r.body);
        http_response_free(&r);
    }
    ck_assert_uint_eq(origin_seen(o, "unspecified"), 0);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_deny_name_patterns)
{
    struct origin *o = origin_start(0);
    /* the origin is the parent: a name the check let through lands there, never at a resolver */
    struct proxy *p = proxy_startf("upstream_proxy: \"http://127.0.0.1:%d\"\n"
                                   "destinations:\n  deny: [\"*.internal\", \"metadata\"]\n"
                                   "connect:\n  allowed_ports: [443]\n",
                                   o->port);
    static const char *const urls[] = {
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://a.b.c.internal:8080/",
        "http://FOO.INTERNAL/",
        "https://vault.internal/",
        "http://metadata/",
        "http://METADATA:80/",
        NULL,
    };
    struct http_response r;
    for (size_t i = 0; urls[i] != NULL; i++)
        assert_url_refused(p, urls[i], NULL, "destinations.deny");
    assert_connect_refused(p, "CONNECT vault.internal:443 HTTP/1.1\r\nHost: x\r\n\r\n",
                           "CONNECT vault.internal:443", "destinations.deny");
    /* "*.internal" is a suffix: the bare name and look-alikes are not denied (they go to the
     * parent, here the origin) */
    get_url(p, "http://internal/headers", &r);
    ck_assert_int_ne(r.status, 403);
    http_response_free(&r);
    get_url(p, "http://notinternal/headers", &r);
    ck_assert_int_ne(r.status, 403);
    http_response_free(&r);
    ck_assert_uint_eq(origin_seen(o, ".internal"), 0);
    ck_assert_uint_eq(origin_seen(o, "metadata"), 0);
    ck_assert_uint_eq(origin_seen(o, "METADATA"), 0);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* A fully qualified name with its trailing dot is the same name */
START_TEST(test_deny_name_trailing_dot)
{
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("upstream_proxy: \"http://127.0.0.1:%d\"\n"
                                   "destinations:\n  deny: [\"*.internal\", \"metadata\"]\n",
                                   o->port);
    static const char *const urls[] = {"http://metadata.google.internal./computeMetadata/v1/",
                                       "http://metadata./", NULL};
    struct http_response r;
    for (size_t i = 0; urls[i] != NULL; i++) {
        get_url(p, urls[i], &r);
        ck_assert_msg(r.status == 403, "%s: status %d (forwarded), want 403; body: %s", urls[i],
                      r.status, r.body);
        http_response_free(&r);
    }
    ck_assert_uint_eq(origin_seen(o, "internal."), 0);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_allow_ports)
{
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("destinations:\n  allow_ports: [%d]\n"
                                   "connect:\n  allowed_ports: [%d, 443]\n",
                                   o->port, o->port);
    int other = harness_closed_port();
    struct http_response r;
    ck_assert_int_eq(get_status(p, o, "/headers/allowed-port", NULL), 200);
    char url[200];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/headers/other-port", other);
    assert_url_refused(p, url, NULL, "allow_ports");
    get_url(p, "http://127.0.0.1/headers/default-port", &r); /* :80 implied */
    assert_refused(&r, "port 80 implied", "allow_ports");
    http_response_free(&r);
    /* CONNECT needs both lists */
    char req[200];
    snprintf(req, sizeof req, "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert_int_eq(raw_exchange(p->port, req, &r, RESP_CONNECT, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 403);
    http_response_free(&r);
    snprintf(req, sizeof req, "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n", o->port);
    struct raw *c = raw_connect(p->port);
    raw_send_str(c, req);
    ck_assert_int_eq(raw_read_response(c, &r, RESP_CONNECT, T_MS), RAW_OK);
    ck_assert_int_eq(r.status, 200);
    http_response_free(&r);
    raw_close(c);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- Via loops ------------------------------------------------------------------------------- */

static char *self_parent_config(struct proxy *p, const char *extra)
{
    char *yaml = NULL;
    ck_assert(asprintf(&yaml,
                       "listen: [\"127.0.0.1:0\"]\nadmin:\n  listen: [\"127.0.0.1:0\"]\n"
                       "upstream_proxy: \"http://127.0.0.1:%d\"\n%s",
                       p->port, extra != NULL ? extra : "") > 0);
    return yaml;
}

START_TEST(test_loop_self_parent)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    char *yaml = self_parent_config(p, NULL);
    reload_with(p, yaml);
    free(yaml);
    struct http_response r;
    uint64_t t0 = now_ms();
    int status = get_with(p, o, "/headers/loop", NULL, &r);
    ck_assert_msg(status == 508, "a request looping through the proxy got %d: %s", status, r.body);
    ck_assert_msg(now_ms() - t0 < 5000, "the loop took %llu ms to answer",
                  (unsigned long long)(now_ms() - t0));
    http_response_free(&r);
    ck_assert_msg(proxy_log_count(p, "\"GET http://127.0.0.1:") <= 3,
                  "the loop went round more than once:\n%s", proxy_log_tail(p, 2000));
    ck_assert_uint_eq(origin_seen(o, "/headers/loop"), 0);
    ck_assert_msg(proxy_alive(p), "%s", proxy_state(p));
    proxy_stop_with_origin(p, o);
}
END_TEST

/* A CONNECT through a parent that is this proxy: refused at once, not repeated until the
 * connection caps stop it (with max_connections_per_client: 0, until backpressure.max_connections)
 */
START_TEST(test_loop_self_parent_connect)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, NULL);
    char extra[200];
    snprintf(extra, sizeof extra, "connect:\n  allowed_ports: [%d]\n", o->port);
    char *yaml = self_parent_config(p, extra);
    reload_with(p, yaml);
    free(yaml);
    char req[200];
    snprintf(req, sizeof req, "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n", o->port);
    struct http_response r;
    uint64_t t0 = now_ms();
    int rc = raw_exchange(p->port, req, &r, RESP_CONNECT, T_MS);
    ck_assert_msg(rc == RAW_OK, "%s", raw_result_name(rc));
    size_t hops = proxy_log_count(p, "\"CONNECT 127.0.0.1:");
    /* refused at the first hop (508, 403, or the parent's refusal relayed as 502): not repeated
     * until a connection cap stops it */
    ck_assert_msg(hops <= 3,
                  "a CONNECT looping through the proxy went round %zu times (the loop is not "
                  "detected); the client got %d after %llu ms: %s",
                  hops, r.status, (unsigned long long)(now_ms() - t0), r.body);
    ck_assert_msg(r.status >= 400, "a looping CONNECT got %d", r.status);
    http_response_free(&r);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* Two different rlproxies in a chain are not a loop */
START_TEST(test_chain_of_two_is_not_a_loop)
{
    struct origin *o;
    struct proxy *b = proxy_start_with_origin(&o, 0, NULL);
    struct proxy *a = proxy_startf("upstream_proxy: \"http://127.0.0.1:%d\"\n", b->port);
    struct http_response r;
    ck_assert_int_eq(get_with(a, o, "/headers/chain", NULL, &r), 200);
    struct http_header *hs = NULL;
    size_t n = 0;
    ck_assert_msg(json_headers(r.body, &hs, &n) == 0, "bad /headers JSON: %s", r.body);
    char vias[600] = "";
    for (size_t i = 0; i < hdr_count(hs, n, "Via"); i++) {
        strncat(vias, hdr_find(hs, n, "Via", (int)i), sizeof vias - strlen(vias) - 2);
        strcat(vias, ";");
    }
    ck_assert_msg(text_count(vias, "rlproxy-") == 2, "Via at the origin: %s", vias);
    const char *first = strstr(vias, "rlproxy-"), *second = strstr(first + 8, "rlproxy-");
    ck_assert_msg(strncmp(first, second, 16) != 0, "both proxies have the same Via id: %s", vias);
    hdr_free(hs, n);
    http_response_free(&r);
    /* through a CONNECT too */
    proxy_stop(a);
    proxy_stop_with_origin(b, o);
}
END_TEST

/* ---- per-client connection cap --------------------------------------------------------------- */

static int get_on(struct raw *c, const struct origin *o, const char *path, struct http_response *r)
{
    char *req = proxy_request("GET", o, path, NULL);
    int rc = raw_try_send(c, req, strlen(req));
    free(req);
    if (rc != 0) {
        memset(r, 0, sizeof *r);
        return RAW_CLOSED;
    }
    return raw_read_response(c, r, 0, T_MS);
}

START_TEST(test_max_connections_per_client)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, "access:\n  max_connections_per_client: 3\n");
    struct raw *held[3];
    struct http_response r;
    for (int i = 0; i < 3; i++) {
        held[i] = raw_connect(p->port);
        ck_assert_int_eq(get_on(held[i], o, "/headers/held", &r), RAW_OK);
        ck_assert_int_eq(r.status, 200);
        http_response_free(&r);
    }
    /* the 4th: 429 with Retry-After, then closed */
    struct raw *fourth = raw_connect(p->port);
    int rc = raw_read_response(fourth, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "4th connection: %s", raw_result_name(rc));
    ck_assert_int_eq(r.status, 429);
    ck_assert_ptr_nonnull(resp_header(&r, "Retry-After", 0));
    http_response_free(&r);
    assert_closed(fourth, "4th connection");
    raw_close(fourth);
    /* another client address is not affected */
    struct raw *other = raw_connect_src(p->port, "127.0.0.2");
    ck_assert_int_eq(get_on(other, o, "/headers/other-client", &r), RAW_OK);
    ck_assert_int_eq(r.status, 200);
    http_response_free(&r);
    raw_close(other);
    /* the held connections still work */
    ck_assert_int_eq(get_on(held[0], o, "/headers/held-again", &r), RAW_OK);
    ck_assert_int_eq(r.status, 200);
    http_response_free(&r);
    /* one closes: a new connection works (once the proxy has seen the close) */
    raw_close(held[2]);
    uint64_t deadline = now_ms() + 3000;
    int status = 0;
    do {
        struct raw *c = raw_connect(p->port);
        rc = get_on(c, o, "/headers/after-close", &r);
        status = rc == RAW_OK ? r.status : -1;
        http_response_free(&r);
        raw_close(c);
        if (status != 200)
            sleep_ms(20);
    } while (status != 200 && now_ms() < deadline);
    ck_assert_msg(status == 200, "no connection slot came back after a close (last %d)", status);
    raw_close(held[0]);
    raw_close(held[1]);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- slow clients ---------------------------------------------------------------------------- */

/* One GET through the proxy on a fresh curl connection; returns its duration in ms */
static uint64_t timed_get(struct proxy *p, const struct origin *o, const char *path)
{
    char url[300];
    struct fetch_res rs;
    uint64_t t0 = now_ms();
    fetch_via(p->port, origin_url(o, path, url, sizeof url), &rs);
    uint64_t took = now_ms() - t0;
    ck_assert_int_eq(rs.status, 200);
    fetch_free(&rs);
    return took;
}

static uint64_t fast_limit_ms(void) { return harness_slow() ? 1000 : 200; }

START_TEST(test_slowloris_header_timeout)
{
    struct origin *o;
    struct proxy *p = proxy_start_with_origin(&o, 0, "timeouts:\n  client_header: 1s\n");
    char *req = proxy_request("GET", o, "/headers/slowloris", "X-Slow: 1\r\nX-Slower: 2\r\n");
    struct raw *slow = raw_connect(p->port);
    size_t sent = 0, len = strlen(req);
    uint64_t t0 = now_ms(), next_byte = t0, answered = 0, worst = 0;
    int gets = 0;
    struct http_response r;
    memset(&r, 0, sizeof r);
    while (answered == 0 && now_ms() - t0 < 4000) {
        if (now_ms() >= next_byte && sent < len) {
            if (raw_try_send(slow, req + sent, 1) == 0)
                sent++;
            next_byte += 300;
        }
        uint64_t took = timed_get(p, o, "/headers/bystander");
        gets++;
        if (took > worst)
            worst = took;
        if (raw_pending(slow, 20) > 0 || slow->eof) {
            answered = now_ms() - t0;
            int rc = raw_read_response(slow, &r, 0, 2000);
            ck_assert_msg(rc == RAW_OK, "slowloris client: %s", raw_result_name(rc));
        }
    }
    free(req);
    ck_assert_msg(answered > 0, "the slow client got nothing within 4 s");
    ck_assert_msg(r.status == 408, "slow client: status %d", r.status);
    ck_assert_msg(answered >= 900 && answered <= 1700,
                  "the 408 came %llu ms after the first byte (client_header: 1s)",
                  (unsigned long long)answered);
    http_response_free(&r);
    assert_closed(slow, "slowloris client after 408");
    raw_close(slow);
    printf("slowloris: 408 after %llu ms, %zu bytes sent; %d bystander GETs, slowest %llu ms\n",
           (unsigned long long)answered, sent, gets, (unsigned long long)worst);
    ck_assert_msg(worst < fast_limit_ms(), "a bystander's request took %llu ms",
                  (unsigned long long)worst);
    ck_assert_uint_eq(origin_seen(o, "slowloris"), 0);
    proxy_stop_with_origin(p, o);
}
END_TEST

START_TEST(test_idle_connections_do_not_block)
{
    struct origin *o;
    struct proxy *p =
        proxy_start_with_origin(&o, 0, "timeouts:\n  client_header: 1s\n  client_idle: 1s\n");
    enum { IDLE = 50 };
    struct raw *idle[IDLE];
    for (int i = 0; i < IDLE; i++)
        idle[i] = raw_connect(p->port);
    uint64_t worst = 0;
    for (int i = 0; i < 10; i++) {
        uint64_t took = timed_get(p, o, "/headers/beside-idle");
        if (took > worst)
            worst = took;
    }
    ck_assert_msg(worst < fast_limit_ms(), "with %d idle connections a request took %llu ms", IDLE,
                  (unsigned long long)worst);
    /* the idle ones are closed by timeouts.client_idle, silently (they never asked anything) */
    for (int i = 0; i < IDLE; i++) {
        ck_assert_msg(raw_wait_closed(idle[i], 3000), "idle connection %d still open after 3 s", i);
        raw_close(idle[i]);
    }
    ck_assert_msg(proxy_alive(p), "%s", proxy_state(p));
    timed_get(p, o, "/headers/after-idle");
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ---- password guessing ----------------------------------------------------------------------- */

struct guesser {
    int port;
    const char *request;
    _Atomic int *stop;
    int answered_407; /* read after join */
};

/* One request on a fresh blocking connection; the status, or -1. No ck_assert: runs on a thread. */
static int plain_exchange(int port, const char *request)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int status = -1;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        send(fd, request, strlen(request), MSG_NOSIGNAL) == (ssize_t)strlen(request)) {
        char buf[4096];
        size_t len = 0;
        ssize_t n;
        while (len < sizeof buf - 1 && (n = recv(fd, buf + len, sizeof buf - 1 - len, 0)) > 0) {
            len += (size_t)n;
            buf[len] = '\0';
            if (strstr(buf, "\r\n\r\n") != NULL)
                break; /* the status line is all we want */
        }
        if (len > 0)
            sscanf(buf, "HTTP/1.%*d %d", &status);
    }
    if (fd >= 0)
        close(fd);
    return status;
}

static void *guess_passwords(void *arg)
{
    struct guesser *g = arg;
    while (!atomic_load(g->stop))
        if (plain_exchange(g->port, g->request) == 407)
            g->answered_407++;
    return NULL;
}

/* Password hashes run off the event loop (auth.c): with workers: 1 and a user whose hash takes
 * about half a second, three clients guessing that user's password without pause do not slow
 * an authenticated client down. Before, each guess held the worker's loop for the whole hash: the
 * authenticated client's requests waited 0.5-1.5 s behind them. */
START_TEST(test_password_guessing_does_not_stall)
{
    struct crypt_data data;
    memset(&data, 0, sizeof data);
    uint64_t t = now_ms();
    /* under valgrind a hash runs 50x slower than the test's timeouts allow: a cheap one there,
     * which still takes the hash threads' path (what memcheck is for), and no timing verdict */
    const char *salt = harness_wrapped() ? "$6$rounds=5000$rlproxyslowsalt$"
                                         : "$6$rounds=3000000$rlproxyslowsalt$";
    const char *h = crypt_r("right", salt, &data);
    ck_assert_msg(h != NULL && h[0] == '$', "crypt_r failed");
    uint64_t hash_ms = now_ms() - t;
    char *hash = strdup(h);
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_startf("workers: 1\nauth:\n  users: {alice: \"%s\"}\n", hash);
    char good[600], bad[600];
    basic_header("alice", "right", good, sizeof good);
    basic_header("alice", "wrong", bad, sizeof bad);
    /* the first check pays the hash; afterwards alice's credentials are cached */
    ck_assert_int_eq(get_status(p, o, "/bytes/10", good), 200);
    char *guess = proxy_request("GET", o, "/bytes/10", bad);
    _Atomic int stop = 0;
    enum { GUESSERS = 3 };
    struct guesser g[GUESSERS];
    pthread_t threads[GUESSERS];
    for (int i = 0; i < GUESSERS; i++) {
        g[i] = (struct guesser){.port = p->port, .request = guess, .stop = &stop};
        ck_assert(pthread_create(&threads[i], NULL, guess_passwords, &g[i]) == 0);
    }
    sleep_ms(300); /* the hash threads are busy with guesses, more wait in their queue */
    uint64_t worst = 0;
    double sum = 0;
    for (int i = 0; i < 10; i++) {
        uint64_t t0 = now_ms();
        int status = get_status(p, o, "/bytes/10", good);
        uint64_t ms = now_ms() - t0;
        ck_assert_int_eq(status, 200);
        worst = ms > worst ? ms : worst;
        sum += (double)ms;
        sleep_ms(100);
    }
    atomic_store(&stop, 1);
    int guesses = 0;
    for (int i = 0; i < GUESSERS; i++) {
        pthread_join(threads[i], NULL);
        guesses += g[i].answered_407;
    }
    printf("password guessing: one hash %llu ms; %d wrong guesses answered 407 meanwhile; an "
           "authenticated client's requests took %.1f ms on average, %llu ms at most\n",
           (unsigned long long)hash_ms, guesses, sum / 10, (unsigned long long)worst);
    ck_assert_msg(guesses >= 3, "only %d guesses answered: the hashes did not run", guesses);
    ck_assert_msg(harness_wrapped() || (worst < 250 && worst * 2 < hash_ms),
                  "an authenticated request took %llu ms while passwords were guessed (one hash: "
                  "%llu ms): the hashes stall the worker",
                  (unsigned long long)worst, (unsigned long long)hash_ms);
    free(guess);
    free(hash);
    proxy_stop_with_origin(p, o);
}
END_TEST

HARNESS_MAIN("security", 60, test_not_open_proxy, test_auth_basic, test_auth_407_reason,
             test_auth_connect, test_auth_rate_limit_per_user, test_auth_users_file_and_reload,
             test_auth_reload_revokes_keepalive, test_password_guessing_does_not_stall,
             test_deny_default_link_local, test_deny_after_dns, test_deny_unspecified_address,
             test_deny_name_patterns, test_deny_name_trailing_dot, test_allow_ports,
             test_loop_self_parent, test_loop_self_parent_connect, test_chain_of_two_is_not_a_loop,
             test_max_connections_per_client, test_slowloris_header_timeout,
             test_idle_connections_do_not_block)
