/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* test_intercept.c — TLS interception for listed hosts (issue 10), end to end: `rlproxy ca init`
 * makes the interception CA; the test origin serves TLS with the harness's own test CA, which the
 * proxy trusts through tls_intercept.upstream_ca_file; clients trust the interception CA and talk
 * to https://127.0.0.1:PORT through a CONNECT tunnel (libcurl, or OpenSSL directly when the test
 * needs control over the bytes or the ALPN offer).
 *   1. `ca init`: key mode 0600, a P-256 CA certificate, the trust instructions; never overwrites;
 *   2. one keep-alive TLS connection, 50 requests, paced by `limit: 10 / 1s` request by request;
 *   3. a 503-then-200 origin is retried inside the tunnel;
 *   4. a host not listed keeps its origin certificate; a listed one shows the rlproxy CA's leaf;
 *   5. an origin certificate that does not verify gives a 502 naming the TLS reason, never a 200;
 *   6. a CA key readable by group/other is refused by -t, at start and on reload;
 *   7. absolute-form https:// on a plain connection is fetched over verified TLS;
 *   8. inside a tunnel: another host → 400, CONNECT → 400, h2-only ALPN still gets HTTP/1.1,
 *      pipelining, big bodies both ways, a 429 that keeps the tunnel, Connection: close;
 *   9. /metrics counts the requests inside tunnels and the leaf cache.
 * The "figures" case measures (prints, never asserts) handshakes/s through an intercepted
 * CONNECT, the leaf-cache hit rate, and 1 KiB req/s inside one intercepted keep-alive tunnel vs
 * plain HTTP through the same proxy. It uses a small in-process origin (C, TCP_NODELAY, head and
 * body in one write): tests/origin/origin.py writes a response's head and body separately without
 * TCP_NODELAY, so on a reused connection every response waits ~40 ms for a delayed ACK and any
 * req/s figure would measure that. bench/intercept.sh runs that case with bigger counts. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define T_MS 15000L
#define RELOAD_WAIT_MS 5000
/* see test_ratelimit.c: how much earlier than a window apart two admissions may be stamped */
#define JITTER_MS 5.0
/* how much closer two arrivals at the origin may be than their admissions (delivery delays) */
#define ARRIVAL_SLACK_MS 100.0

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v != NULL && *v ? strtol(v, NULL, 10) : dflt;
}

/* ---- the interception CA --------------------------------------------------------------------- */

struct ca {
    char dir[600], cert[640], key[640];
};

static void ca_paths(struct ca *ca, const char *name)
{
    snprintf(ca->dir, sizeof ca->dir, "%s/%s", harness_tmpdir(), name);
    snprintf(ca->cert, sizeof ca->cert, "%s/ca.pem", ca->dir);
    snprintf(ca->key, sizeof ca->key, "%s/ca.key", ca->dir);
}

/* `rlproxy ca init DIR` into harness_tmpdir()/name; r filled (caller frees) */
static void ca_init_cmd(struct ca *ca, const char *name, struct cmd_result *r)
{
    ca_paths(ca, name);
    char *args[] = {"ca", "init", ca->dir, NULL};
    run_rlproxy(args, 20000, r);
}

/* The CA shared by the tests (made once per run: the temp dir outlives each forked test) */
static const struct ca *shared_ca(void)
{
    static struct ca ca;
    ca_paths(&ca, "ica");
    if (access(ca.cert, R_OK) != 0) {
        struct cmd_result r;
        ca_init_cmd(&ca, "ica", &r);
        ck_assert_msg(r.exit_code == 0, "rlproxy ca init: exit %d: %s%s", r.exit_code, r.out,
                      r.err);
        cmd_result_free(&r);
    }
    return &ca;
}

/* A CA of its own, in a new directory (tests that change its key's mode) */
static struct ca fresh_ca(const char *name)
{
    struct ca ca;
    struct cmd_result r;
    ca_init_cmd(&ca, name, &r);
    ck_assert_msg(r.exit_code == 0, "rlproxy ca init %s: exit %d: %s%s", ca.dir, r.exit_code, r.out,
                  r.err);
    cmd_result_free(&r);
    return ca;
}

/* ---- fixtures -------------------------------------------------------------------------------- */

/* The YAML lines for interception of `hosts` with `ca`; upstream_ca: the harness CA or nothing */
static char *intercept_yaml(const struct ca *ca, const char *hosts, int upstream_ca)
{
    char *y = NULL;
    char extra[700] = "";
    if (upstream_ca)
        snprintf(extra, sizeof extra, "  upstream_ca_file: \"%s\"\n", harness_ca_path());
    ck_assert(asprintf(&y, "tls_intercept:\n  ca_cert: \"%s\"\n  ca_key: \"%s\"\n  hosts: %s\n%s",
                       ca->cert, ca->key, hosts, extra) > 0);
    return y;
}

/* A TLS origin and a proxy intercepting 127.0.0.1, CONNECT allowed to the origin's port only,
 * plus `more` (YAML lines or NULL) */
static struct fixture up(int upstream_ca, const char *more)
{
    struct fixture f;
    f.o = origin_start(1);
    char *tls = intercept_yaml(shared_ca(), "[\"127.0.0.1\"]", upstream_ca);
    f.p = proxy_startf("connect:\n  allowed_ports: [%d]\n%s%s", f.o->port, tls,
                       more != NULL ? more : "");
    free(tls);
    return f;
}

static const char *https_url(int port, const char *host, const char *path, char *buf, size_t len)
{
    snprintf(buf, len, "https://%s:%d%s", host, port, path);
    return buf;
}

/* ---- the proxy's view ------------------------------------------------------------------------ */

/* the status field: the number after the quoted request */
static int line_status(const char *line)
{
    const char *q = strchr(line, '"');
    q = q != NULL ? strchr(q + 1, '"') : NULL;
    ck_assert_msg(q != NULL, "no quoted request in %s", line);
    return atoi(q + 1);
}

static int line_has_limit(const char *line, const char *verdict_rule)
{
    char want[128];
    snprintf(want, sizeof want, " limit=%s ", verdict_rule);
    return strstr(line, want) != NULL;
}

/* When rlproxy let the request go (ms, wall clock): the line's time is the end of the exchange,
 * total= runs from the head's arrival, wait= is the time held. +-3 ms (three ms-rounded fields). */
static long long line_admit_ms(const char *line)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ms = 0;
    const char *rest = strptime(line, "%Y-%m-%dT%H:%M:%S", &tm);
    ck_assert_msg(rest != NULL && sscanf(rest, ".%dZ", &ms) == 1, "no time in %s", line);
    const char *total = strstr(line, " total=");
    ck_assert_msg(total != NULL, "no total= in %s", line);
    return (long long)timegm(&tm) * 1000 + ms - atoll(total + strlen(" total=")) +
           line_wait_ms(line);
}

/* ---- libcurl through the tunnel -------------------------------------------------------------- */

static size_t discard_write(char *data, size_t size, size_t nmemb, void *arg)
{
    (void)data, (void)arg;
    return size * nmemb;
}

/* An easy handle for url through the proxy (CONNECT when https), trusting cainfo */
static CURL *tunnel_handle(int proxy_port, const char *url, const char *cainfo, char *errbuf)
{
    CURL *h = curl_easy_init();
    ck_assert(h != NULL);
    char proxy[64];
    snprintf(proxy, sizeof proxy, "http://127.0.0.1:%d", proxy_port);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, proxy);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "");
    curl_easy_setopt(h, CURLOPT_HTTPPROXYTUNNEL, 1L);
    curl_easy_setopt(h, CURLOPT_CAINFO, cainfo);
    curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, T_MS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_write);
    return h;
}

/* The issuer of the peer certificate libcurl saw (CURLOPT_CERTINFO), into out; "" if none */
static void peer_issuer(CURL *h, char *out, size_t len)
{
    struct curl_certinfo *ci = NULL;
    out[0] = '\0';
    if (curl_easy_getinfo(h, CURLINFO_CERTINFO, &ci) != CURLE_OK || ci == NULL ||
        ci->num_of_certs < 1)
        return;
    for (struct curl_slist *s = ci->certinfo[0]; s != NULL; s = s->next)
        if (strncmp(s->data, "Issuer:", 7) == 0) {
            snprintf(out, len, "%s", s->data + 7);
            return;
        }
}

static int certinfo_has(CURL *h, const char *needle)
{
    struct curl_certinfo *ci = NULL;
    if (curl_easy_getinfo(h, CURLINFO_CERTINFO, &ci) != CURLE_OK || ci == NULL ||
        ci->num_of_certs < 1)
        return 0;
    for (struct curl_slist *s = ci->certinfo[0]; s != NULL; s = s->next)
        if (strstr(s->data, needle) != NULL)
            return 1;
    return 0;
}

/* ---- an OpenSSL client for byte-level control inside the tunnel -----------------------------
 * No ck_assert here: the figures run it from threads. Functions return 0 / -1 with err. */

struct tcli {
    int fd;
    SSL *ssl; /* NULL: plain */
    char *buf;
    size_t len, cap;
};

struct tresp {
    int status;
    char head[8192];
    char *body;
    size_t body_len;
    int has_close; /* Connection: close */
};

static SSL_CTX *client_ctx(const char *cafile, const char *alpn_wire, size_t alpn_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    if (SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF); /* every handshake a full one */
    if (alpn_wire != NULL)
        SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)alpn_wire, (unsigned)alpn_len);
    return ctx;
}

static int tcp_open(int port, char *err, size_t err_len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, err_len, "socket: %s", strerror(errno));
        return -1;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        snprintf(err, err_len, "connect 127.0.0.1:%d: %s", port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* 1 data, 0 the peer closed, -1 timeout or error */
static int tcli_fill(struct tcli *t)
{
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 65536;
        char *b = realloc(t->buf, cap);
        if (b == NULL)
            return -1;
        t->buf = b;
        t->cap = cap;
    }
    if (t->ssl == NULL) {
        ssize_t n = recv(t->fd, t->buf + t->len, t->cap - t->len, 0);
        if (n > 0)
            t->len += (size_t)n;
        return n > 0 ? 1 : n == 0 ? 0 : (errno == ECONNRESET ? 0 : -1);
    }
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(t->ssl, t->buf + t->len, (int)(t->cap - t->len));
    if (n > 0) {
        t->len += (size_t)n;
        return 1;
    }
    int e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    if (e == SSL_ERROR_SYSCALL && (errno == 0 || errno == ECONNRESET || errno == EPIPE))
        return 0; /* EOF without close_notify */
    if (e == SSL_ERROR_SSL) {
        unsigned long ec = ERR_peek_error();
        /* OpenSSL 3: "unexpected eof while reading" is a close without close_notify */
        if (ERR_GET_REASON(ec) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
            return 0;
    }
    return -1;
}

/* CONNECT host:port through the proxy, then TLS with ctx (NULL: stay plain after the CONNECT) */
static int tcli_open(struct tcli *t, int proxy_port, const char *host, int port, SSL_CTX *ctx,
                     char *err, size_t err_len)
{
    memset(t, 0, sizeof *t);
    t->fd = tcp_open(proxy_port, err, err_len);
    if (t->fd < 0)
        return -1;
    char req[600];
    int n = snprintf(req, sizeof req, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, port,
                     host, port);
    if (send(t->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        snprintf(err, err_len, "send CONNECT: %s", strerror(errno));
        goto fail;
    }
    /* the proxy sends nothing after its 200 until the ClientHello: reading all there is is safe */
    char *end = NULL;
    while (t->buf == NULL || (end = memmem(t->buf, t->len, "\r\n\r\n", 4)) == NULL) {
        if (tcli_fill(t) <= 0) {
            snprintf(err, err_len, "no answer to CONNECT");
            goto fail;
        }
    }
    int status = 0;
    if (sscanf(t->buf, "HTTP/1.%*d %d", &status) != 1 || status != 200) {
        snprintf(err, err_len, "CONNECT answered: %.*s", (int)(end - t->buf), t->buf);
        goto fail;
    }
    t->len -= (size_t)(end + 4 - t->buf);
    memmove(t->buf, end + 4, t->len);
    if (ctx == NULL)
        return 0;
    t->ssl = SSL_new(ctx);
    if (t->ssl == NULL) {
        snprintf(err, err_len, "SSL_new");
        goto fail;
    }
    unsigned char ip[16];
    if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
    } else {
        SSL_set_tlsext_host_name(t->ssl, host);
        SSL_set1_host(t->ssl, host);
    }
    SSL_set_fd(t->ssl, t->fd);
    ERR_clear_error();
    if (SSL_connect(t->ssl) != 1) {
        char detail[256] = "";
        ERR_error_string_n(ERR_get_error(), detail, sizeof detail);
        snprintf(err, err_len, "TLS handshake: %s (verify: %s)", detail,
                 X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
        goto fail;
    }
    return 0;
fail:
    if (t->ssl != NULL)
        SSL_free(t->ssl);
    t->ssl = NULL;
    close(t->fd);
    free(t->buf);
    t->buf = NULL;
    return -1;
}

static int tcli_send(struct tcli *t, const char *data, size_t len)
{
    while (len > 0) {
        int n =
            t->ssl ? SSL_write(t->ssl, data, (int)len) : (int)send(t->fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static void tcli_close(struct tcli *t)
{
    if (t->ssl != NULL) {
        SSL_shutdown(t->ssl); /* close_notify, not waiting for the peer's */
        SSL_free(t->ssl);
    }
    if (t->fd >= 0)
        close(t->fd);
    free(t->buf);
    memset(t, 0, sizeof *t);
    t->fd = -1;
}

static void tresp_free(struct tresp *r)
{
    free(r->body);
    r->body = NULL;
}

/* One response (Content-Length framed or close-delimited); 0, -1 timeout/error, -2 the peer
 * closed before a complete response. */
static int tcli_response(struct tcli *t, struct tresp *r)
{
    memset(r, 0, sizeof *r);
    char *end;
    while (t->buf == NULL || (end = memmem(t->buf, t->len, "\r\n\r\n", 4)) == NULL) {
        int f = tcli_fill(t);
        if (f <= 0)
            return f == 0 ? -2 : -1;
    }
    size_t head_len = (size_t)(end + 4 - t->buf);
    snprintf(r->head, sizeof r->head, "%.*s", (int)head_len, t->buf);
    t->len -= head_len;
    memmove(t->buf, t->buf + head_len, t->len);
    if (sscanf(r->head, "HTTP/1.%*d %d", &r->status) != 1)
        return -1;
    r->has_close = strcasestr(r->head, "\r\nConnection: close") != NULL;
    const char *cl = strcasestr(r->head, "\r\nContent-Length:");
    long long want = cl != NULL ? atoll(cl + 17) : -1;
    r->body = malloc(want >= 0 ? (size_t)want + 1 : 1);
    if (r->body == NULL)
        return -1;
    for (;;) {
        size_t take = t->len;
        if (want >= 0 && take > (size_t)want - r->body_len)
            take = (size_t)want - r->body_len;
        if (take > 0) {
            if (want < 0) {
                char *b = realloc(r->body, r->body_len + take + 1);
                if (b == NULL)
                    return -1;
                r->body = b;
            }
            memcpy(r->body + r->body_len, t->buf, take);
            r->body_len += take;
            t->len -= take;
            memmove(t->buf, t->buf + take, t->len);
        }
        r->body[r->body_len] = '\0';
        if (want >= 0 && r->body_len == (size_t)want)
            return 0;
        int f = tcli_fill(t);
        if (f == 0)
            return want < 0 ? 0 : -2;
        if (f < 0)
            return -1;
    }
}

/* 1 when the peer closed within timeout_ms (any bytes meanwhile are dropped) */
static int tcli_wait_closed(struct tcli *t, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    struct timeval tv = {0, 200000}; /* each read waits at most 200 ms, so the deadline holds */
    setsockopt(t->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (now_ms() < deadline) {
        t->len = 0;
        int f = tcli_fill(t);
        if (f == 0)
            return 1;
        if (f < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return 1;
    }
    return 0;
}

static const char *tcli_rc(int rc)
{
    return rc == 0    ? "ok"
           : rc == -2 ? "the proxy closed before a complete response"
                      : "timed out or failed";
}

/* ---- a small fast origin, for the figures only ------------------------------------------------
 * Any request → 200 with 1 KiB of the pattern, head and body in one write, TCP_NODELAY. Threads;
 * no ck_assert. TLS with the harness's leaf for 127.0.0.1/localhost (next to harness_ca_path()). */

struct fast_origin {
    int lfd, port;
    SSL_CTX *ctx;
    pthread_t acceptor;
    atomic_int stop;
    atomic_long requests, connections;
    char resp[2048];
    size_t resp_len;
};

struct fo_conn {
    struct fast_origin *o;
    int fd;
};

static void *fo_serve(void *arg)
{
    struct fo_conn *fc = arg;
    struct fast_origin *o = fc->o;
    int fd = fc->fd;
    free(fc);
    SSL *ssl = NULL;
    char buf[16384];
    size_t len = 0;
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (o->ctx != NULL) {
        ssl = SSL_new(o->ctx);
        if (ssl == NULL)
            goto out;
        SSL_set_fd(ssl, fd);
        if (SSL_accept(ssl) != 1)
            goto out;
    }
    for (;;) {
        char *end;
        while ((end = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
            if (len == sizeof buf)
                goto out;
            int n = ssl ? SSL_read(ssl, buf + len, (int)(sizeof buf - len))
                        : (int)recv(fd, buf + len, sizeof buf - len, 0);
            if (n <= 0)
                goto out;
            len += (size_t)n;
        }
        size_t head = (size_t)(end + 4 - buf);
        char saved = buf[head - 1];
        buf[head - 1] = '\0';
        int close_after = strcasestr(buf, "\r\nConnection: close") != NULL;
        buf[head - 1] = saved;
        len -= head;
        memmove(buf, buf + head, len);
        atomic_fetch_add(&o->requests, 1);
        int n = ssl ? SSL_write(ssl, o->resp, (int)o->resp_len)
                    : (int)send(fd, o->resp, o->resp_len, MSG_NOSIGNAL);
        if (n != (int)o->resp_len || close_after)
            break;
    }
out:
    if (ssl != NULL) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    close(fd);
    return NULL;
}

static void *fo_accept(void *arg)
{
    struct fast_origin *o = arg;
    int fd;
    while ((fd = accept_until_stopped(o->lfd, &o->stop, 100)) >= 0) {
        atomic_fetch_add(&o->connections, 1);
        struct fo_conn *fc = malloc(sizeof *fc);
        if (fc == NULL) {
            close(fd);
            continue;
        }
        fc->o = o;
        fc->fd = fd;
        if (thread_start_detached(fo_serve, fc, 256 * 1024) != 0) {
            close(fd);
            free(fc);
        }
    }
    return NULL;
}

static struct fast_origin *fast_origin_start(int tls)
{
    struct fast_origin *o = calloc(1, sizeof *o);
    ck_assert(o != NULL);
    int n = snprintf(o->resp, sizeof o->resp,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: 1024\r\n\r\n");
    pattern_fill(o->resp + n, 1024, 0);
    o->resp_len = (size_t)n + 1024;
    if (tls) {
        char leaf[700], key[700];
        const char *ca = harness_ca_path();
        const char *slash = strrchr(ca, '/');
        snprintf(leaf, sizeof leaf, "%.*s/leaf.pem", (int)(slash - ca), ca);
        snprintf(key, sizeof key, "%.*s/leaf.key", (int)(slash - ca), ca);
        o->ctx = SSL_CTX_new(TLS_server_method());
        ck_assert(o->ctx != NULL);
        ck_assert_msg(SSL_CTX_use_certificate_chain_file(o->ctx, leaf) == 1 &&
                          SSL_CTX_use_PrivateKey_file(o->ctx, key, SSL_FILETYPE_PEM) == 1,
                      "fast origin: cannot load %s / %s (the harness's TLS origin leaf)", leaf,
                      key);
    }
    o->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert(o->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t alen = sizeof a;
    ck_assert(bind(o->lfd, (struct sockaddr *)&a, sizeof a) == 0);
    ck_assert(listen(o->lfd, 512) == 0);
    ck_assert(getsockname(o->lfd, (struct sockaddr *)&a, &alen) == 0);
    o->port = ntohs(a.sin_port);
    ck_assert(pthread_create(&o->acceptor, NULL, fo_accept, o) == 0);
    /* kept reachable: connection threads may still use it until the process exits */
    static struct fast_origin *started[8];
    static size_t started_count;
    if (started_count < sizeof started / sizeof started[0])
        started[started_count++] = o;
    return o;
}

/* Stops accepting; connection threads end when their peers close (the test process exits next) */
static void fast_origin_stop(struct fast_origin *o)
{
    atomic_store(&o->stop, 1);
    pthread_join(o->acceptor, NULL);
    close(o->lfd);
}

/* ==== 1. rlproxy ca init =======================================================================
 */

START_TEST(test_ca_init)
{
    struct ca ca;
    struct cmd_result r;
    ca_init_cmd(&ca, "cainit", &r);
    ck_assert_msg(r.exit_code == 0, "rlproxy ca init: exit %d: %s%s", r.exit_code, r.out, r.err);
    /* how to make clients trust it */
    ck_assert_msg(strstr(r.out, "--cacert") != NULL, "no curl --cacert hint:\n%s", r.out);
    ck_assert_msg(strstr(r.out, "SSL_CERT_FILE") != NULL, "no SSL_CERT_FILE hint:\n%s", r.out);
    ck_assert_msg(strstr(r.out, "REQUESTS_CA_BUNDLE") != NULL, "no REQUESTS_CA_BUNDLE hint:\n%s",
                  r.out);
    ck_assert_msg(strstr(r.out, ca.cert) != NULL, "the output does not name %s:\n%s", ca.cert,
                  r.out);
    cmd_result_free(&r);

    struct stat st;
    ck_assert_msg(stat(ca.key, &st) == 0, "%s: %s", ca.key, strerror(errno));
    ck_assert_msg((st.st_mode & 07777) == 0600, "ca.key mode %04o, want 0600",
                  (unsigned)(st.st_mode & 07777));
    ck_assert_msg(stat(ca.cert, &st) == 0, "%s: %s", ca.cert, strerror(errno));
    ck_assert_msg((st.st_mode & 022) == 0, "ca.pem writable by others: %04o",
                  (unsigned)(st.st_mode & 07777));

    /* a CA certificate with a P-256 key, that verifies as its own trust anchor */
    char *x509[] = {"openssl", "x509", "-in", ca.cert, "-noout", "-text", NULL};
    run_cmd(x509, NULL, 10000, &r);
    ck_assert_msg(r.exit_code == 0, "openssl x509: %s", r.err);
    ck_assert_msg(strstr(r.out, "CA:TRUE") != NULL, "not a CA (basicConstraints):\n%s", r.out);
    ck_assert_msg(strstr(r.out, "Certificate Sign") != NULL, "no keyCertSign usage:\n%s", r.out);
    ck_assert_msg(strstr(r.out, "prime256v1") != NULL || strstr(r.out, "P-256") != NULL,
                  "not a P-256 key:\n%s", r.out);
    cmd_result_free(&r);
    char *verify[] = {"openssl", "verify", "-CAfile", ca.cert, ca.cert, NULL};
    run_cmd(verify, NULL, 10000, &r);
    ck_assert_msg(r.exit_code == 0 && strstr(r.out, ": OK") != NULL, "openssl verify: %s%s", r.out,
                  r.err);
    cmd_result_free(&r);
    char *pair[] = {"openssl", "x509", "-in", ca.cert, "-noout", "-pubkey", NULL};
    run_cmd(pair, NULL, 10000, &r);
    char *pub_from_cert = strdup(r.out);
    cmd_result_free(&r);
    char *pkey[] = {"openssl", "pkey", "-in", ca.key, "-pubout", NULL};
    run_cmd(pkey, NULL, 10000, &r);
    ck_assert_msg(r.exit_code == 0 && strcmp(r.out, pub_from_cert) == 0,
                  "ca.key does not belong to ca.pem:\n%s\nvs\n%s", r.out, pub_from_cert);
    cmd_result_free(&r);
    free(pub_from_cert);

    /* never overwrites an existing CA */
    size_t klen0 = 0, klen1 = 0;
    char *key0 = read_file(ca.key, &klen0);
    struct ca again;
    ca_init_cmd(&again, "cainit", &r);
    ck_assert_msg(r.exit_code != 0, "a second ca init into %s succeeded: %s", ca.dir, r.out);
    char *key1 = read_file(ca.key, &klen1);
    ck_assert_msg(key0 != NULL && key1 != NULL && klen0 == klen1 && memcmp(key0, key1, klen0) == 0,
                  "the second ca init changed ca.key");
    printf("ca init into an existing directory: exit %d: %s", r.exit_code, r.err);
    cmd_result_free(&r);
    free(key0);
    free(key1);
}
END_TEST

/* ==== 2. one keep-alive tunnel, 50 requests, paced 10 per second ================================
 */

START_TEST(test_keepalive_tunnel_paced)
{
    enum { N = 50, L = 10 };
    struct fixture f = up(1, "rate_limits:\n"
                             "  - name: pace\n"
                             "    match: { host: \"127.0.0.1\", path_prefix: \"/flaky\" }\n"
                             "    key: global\n"
                             "    limit: 10\n"
                             "    window: 1s\n"
                             "    over_limit: delay\n"
                             "    max_delay: 10s\n");
    char key[64], path[160], url[256], err[CURL_ERROR_SIZE] = "";
    snprintf(key, sizeof key, "pace-%d", (int)getpid());
    /* warm-up on the same tunnel (no rule matches it): rlproxy's TLS connection to the origin is
     * made now, so the first paced request is not stamped at the origin a handshake late */
    CURL *h =
        tunnel_handle(f.p->port, https_url(f.o->port, "127.0.0.1", "/bytes/1", url, sizeof url),
                      shared_ca()->cert, err);
    ck_assert_msg(curl_easy_perform(h) == CURLE_OK, "warm-up: %s", err);
    uint64_t t0 = now_ms();
    uint64_t done_at[N];
    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "/flaky?key=%s&i=%d", key, i);
        curl_easy_setopt(h, CURLOPT_URL, https_url(f.o->port, "127.0.0.1", path, url, sizeof url));
        CURLcode rc = curl_easy_perform(h);
        ck_assert_msg(rc == CURLE_OK, "request %d: curl %d: %s; %s", i, (int)rc, err,
                      proxy_log_tail(f.p, 1500));
        long status = 0, connects = -1;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &connects);
        ck_assert_msg(status == 200, "request %d: status %ld", i, status);
        ck_assert_msg(connects == 0,
                      "request %d opened %ld new connections: the tunnel was not kept alive", i,
                      connects);
        done_at[i] = now_ms() - t0;
    }
    uint64_t elapsed = now_ms() - t0;
    curl_easy_cleanup(h);
    printf("paced tunnel: %d requests on one TLS connection in %llu ms (10th done at %llu ms, "
           "11th at %llu ms)\n",
           N, (unsigned long long)elapsed, (unsigned long long)done_at[L - 1],
           (unsigned long long)done_at[L]);
    /* requests 41..50 cannot be admitted before 4 windows after the first */
    ck_assert_msg(elapsed >= 4000 - (uint64_t)JITTER_MS,
                  "%d requests at limit 10 / 1s took %llu ms, want >= 4 s", N,
                  (unsigned long long)elapsed);

    /* the access log: each request inside as https://host:port/path, limited one by one */
    char needle[128];
    snprintf(needle, sizeof needle, "\"GET https://127.0.0.1:%d/flaky?key=%s&i=", f.o->port, key);
    char *lines[N];
    uint64_t deadline = now_ms() + 3000;
    size_t got;
    while ((got = file_lines_with(f.p->log_path, needle, " attempts=", NULL, 0)) < N &&
           now_ms() < deadline)
        sleep_ms(20);
    got = file_lines_with(f.p->log_path, needle, " attempts=", lines, N);
    ck_assert_msg(got == N, "%zu access-log lines with %s, want %d; log:\n%s", got, needle, N,
                  proxy_log_tail(f.p, 1500));
    size_t delayed = 0;
    for (size_t i = 0; i < N; i++) {
        ck_assert_msg(line_status(lines[i]) == 200, "not 200: %s", lines[i]);
        ck_assert_msg(line_has_limit(lines[i], "admit:pace") ||
                          line_has_limit(lines[i], "delay:pace"),
                      "line %zu has no limit=admit:pace / delay:pace: %s", i, lines[i]);
        if (i < L)
            ck_assert_msg(line_has_limit(lines[i], "admit:pace") && line_wait_ms(lines[i]) == 0,
                          "request %zu (of the first 10) was not admitted at once: %s", i,
                          lines[i]);
        if (line_has_limit(lines[i], "delay:pace"))
            delayed++;
    }
    ck_assert_msg(line_has_limit(lines[L], "delay:pace") && line_wait_ms(lines[L]) > 300,
                  "the 11th request was not held: %s", lines[L]);
    printf("paced tunnel: %zu of %d requests held (limit=delay:pace), e.g.\n  %s\n", delayed, N,
           lines[L]);
    /* the origin's clock: never more than 10 arrivals in any 1 s window */
    long long count = origin_key_count(f.o, key);
    ck_assert_msg(count == N, "the origin saw %lld requests, want %d", count, N);
    double times[N];
    size_t n = origin_key_times(f.o, key, times, N);
    ck_assert_uint_eq(n, N);
    double tightest = 1e9, tightest_admit = 1e9;
    for (size_t i = L; i < n; i++) {
        double gap = times[i] - times[i - L];
        double admit_gap = (double)(line_admit_ms(lines[i]) - line_admit_ms(lines[i - L]));
        if (gap < tightest)
            tightest = gap;
        if (admit_gap < tightest_admit)
            tightest_admit = admit_gap;
        /* rlproxy's own decision is exact; the origin's arrivals also carry the delivery delay
         * through the tunnel, which a loaded machine stretches for one request and not the next */
        ck_assert_msg(admit_gap >= 1000.0 - 3.0,
                      "requests %zu and %zu admitted only %.0f ms apart by rlproxy's log:\n  %s\n"
                      "  %s",
                      i - L, i, admit_gap, lines[i - L], lines[i]);
        ck_assert_msg(gap >= 1000.0 - JITTER_MS - ARRIVAL_SLACK_MS,
                      "arrivals %zu and %zu only %.1f ms apart: 11 requests in one window (rlproxy "
                      "admitted them %.0f ms apart by its log, +-3 ms):\n  %s\n  %s",
                      i - L, i, gap, admit_gap, lines[i - L], lines[i]);
    }
    printf("paced tunnel: tightest 11-arrival span at the origin %.1f ms, between admissions by "
           "the access log %.0f ms (limit 1000 ms)\n",
           tightest, tightest_admit);

    for (size_t i = 0; i < N; i++)
        free(lines[i]);
    /* the tunnel itself was not counted: 50 decisions, all admitted or delayed */
    long long adm =
        proxy_metric(f.p, "rlproxy_limiter_decisions_total{rule=\"pace\",decision=\"admitted\"}");
    long long del =
        proxy_metric(f.p, "rlproxy_limiter_decisions_total{rule=\"pace\",decision=\"delayed\"}");
    long long rej =
        proxy_metric(f.p, "rlproxy_limiter_decisions_total{rule=\"pace\",decision=\"rejected\"}");
    ck_assert_msg(adm + del == N && rej == 0,
                  "limiter decisions: admitted %lld + delayed %lld (rejected %lld), want %d", adm,
                  del, rej, N);
    fixture_down(f);
}
END_TEST

/* ==== 3. retries inside the tunnel ==============================================================
 */

START_TEST(test_retry_inside_tunnel)
{
    struct fixture f = up(1, "retry:\n  attempts: 3\n  base_delay: 20ms\n  max_delay: 1s\n"
                             "  jitter: none\n  budget: 100%\n");
    char key[64], path[160], url[256];
    snprintf(key, sizeof key, "retry-%d", (int)getpid());
    snprintf(path, sizeof path, "/flaky?key=%s&fail=1&status=503", key);
    struct fetch_req rq = {.url = https_url(f.o->port, "127.0.0.1", path, url, sizeof url),
                           .proxy_port = f.p->port,
                           .tunnel = 1,
                           .cainfo = shared_ca()->cert,
                           .timeout_ms = T_MS};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK, "curl %d: %s", (int)rs.rc, rs.err);
    ck_assert_msg(rs.status == 200, "status %ld: %s", rs.status, rs.body);
    long long attempt = -1;
    ck_assert_msg(json_get_int(rs.body, "attempt", &attempt) == 0 && attempt == 2,
                  "the origin answered attempt %lld: %s", attempt, rs.body);
    fetch_free(&rs);
    char needle[200];
    snprintf(needle, sizeof needle, "\"GET https://127.0.0.1:%d%s\"", f.o->port, path);
    char *line = proxy_access_line(f.p, needle);
    ck_assert_msg(line_attempts(line) == 2 && line_status(line) == 200,
                  "want status 200 attempts=2: %s", line);
    free(line);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_retries_total"), 1);
    fixture_down(f);
}
END_TEST

/* ==== 4. which certificate the client sees ======================================================
 */

/* GET https://host:port/bytes/100 through the tunnel trusting cainfo: curl's code; issuer out */
static CURLcode cert_probe(const struct fixture *f, const char *host, const char *cainfo,
                           char *issuer, size_t issuer_len, int *ec_key)
{
    char url[256], err[CURL_ERROR_SIZE] = "";
    CURL *h = tunnel_handle(f->p->port, https_url(f->o->port, host, "/bytes/100", url, sizeof url),
                            cainfo, err);
    curl_easy_setopt(h, CURLOPT_CERTINFO, 1L);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK)
        ck_assert_msg(status == 200, "%s: status %ld", url, status);
    peer_issuer(h, issuer, issuer_len);
    if (ec_key != NULL)
        *ec_key = certinfo_has(h, "id-ecPublicKey") || certinfo_has(h, "prime256v1");
    printf("%s trusting %s: curl %d (%s), issuer \"%s\"\n", url,
           strcmp(cainfo, harness_ca_path()) == 0 ? "the origin's test CA" : "the rlproxy CA",
           (int)rc, rc == CURLE_OK ? "ok" : err, issuer);
    curl_easy_cleanup(h);
    return rc;
}

START_TEST(test_unlisted_host_keeps_origin_cert)
{
    struct fixture f = up(1, NULL);
    const char *ours = shared_ca()->cert, *theirs = harness_ca_path();
    char issuer[512];
    int ec = 0;
    /* localhost is not listed: an opaque tunnel, the origin's own certificate */
    CURLcode rc = cert_probe(&f, "localhost", theirs, issuer, sizeof issuer, NULL);
    ck_assert_msg(rc == CURLE_OK, "unlisted host, trusting the origin's CA: curl %d", (int)rc);
    ck_assert_msg(strstr(issuer, "rlproxy test CA") != NULL,
                  "unlisted host: the issuer is \"%s\", not the origin's test CA", issuer);
    rc = cert_probe(&f, "localhost", ours, issuer, sizeof issuer, NULL);
    ck_assert_msg(rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT,
                  "unlisted host trusting only the rlproxy CA: curl %d, want a verification "
                  "failure (the proxy must not open it)",
                  (int)rc);
    /* 127.0.0.1 is listed: a leaf made by rlproxy, signed by its CA */
    rc = cert_probe(&f, "127.0.0.1", ours, issuer, sizeof issuer, &ec);
    ck_assert_msg(rc == CURLE_OK, "listed host, trusting the rlproxy CA: curl %d", (int)rc);
    ck_assert_msg(strstr(issuer, "rlproxy interception CA") != NULL,
                  "listed host: the issuer is \"%s\", not the rlproxy CA", issuer);
    ck_assert_msg(ec, "the leaf for 127.0.0.1 has no EC (P-256) key");
    rc = cert_probe(&f, "127.0.0.1", theirs, issuer, sizeof issuer, NULL);
    ck_assert_msg(rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT,
                  "listed host trusting only the origin's CA: curl %d, want a verification failure",
                  (int)rc);
    /* the log: a plain CONNECT line for localhost, requests inside for 127.0.0.1 */
    char needle[128];
    snprintf(needle, sizeof needle, "\"CONNECT localhost:%d\"", f.o->port);
    free(proxy_access_line(f.p, needle));
    snprintf(needle, sizeof needle, "GET https://localhost:%d", f.o->port);
    ck_assert_msg(file_lines_with(f.p->log_path, needle, " attempts=", NULL, 0) == 0,
                  "the unlisted host was opened: %s", proxy_log_tail(f.p, 1500));
    snprintf(needle, sizeof needle, "\"GET https://127.0.0.1:%d/bytes/100\"", f.o->port);
    free(proxy_access_line(f.p, needle));
    fixture_down(f);
}
END_TEST

/* ==== 5. an origin certificate that does not verify =============================================
 */

START_TEST(test_bad_origin_cert_502)
{
    struct fixture f = up(0, NULL); /* no upstream_ca_file: the test CA is unknown to rlproxy */
    char url[256];
    struct fetch_req rq = {.url = https_url(f.o->port, "127.0.0.1", "/bytes/10", url, sizeof url),
                           .proxy_port = f.p->port,
                           .tunnel = 1,
                           .cainfo = shared_ca()->cert,
                           .timeout_ms = T_MS};
    struct fetch_res rs;
    fetch(&rq, &rs);
    printf("bad origin certificate, inside the tunnel: curl %d (%s), status %ld, body: %s\n",
           (int)rs.rc, rs.err, rs.status, rs.body ? rs.body : "");
    char needle[128];
    snprintf(needle, sizeof needle, "\"GET https://127.0.0.1:%d/bytes/10\"", f.o->port);
    char *line = proxy_access_line(f.p, needle);
    ck_assert_msg(line_status(line) == 502, "the proxy logged: %s", line);
    printf("  logged: %s\n", line);
    free(line);
    ck_assert_msg(rs.status != 200, "a 200 through an origin certificate that does not verify");
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 502,
                  "the client got curl %d (%s), status %ld: the 502 never reached it", (int)rs.rc,
                  rs.err, rs.status);
    ck_assert_msg(rs.body != NULL && (strcasestr(rs.body, "certificate") != NULL ||
                                      strstr(rs.body, "TLS") != NULL),
                  "the 502 does not name a TLS/certificate reason: %s", rs.body);
    ck_assert_msg(strstr(rs.body, "127.0.0.1") != NULL,
                  "the 502 does not name the origin (https://127.0.0.1:%d): %s", f.o->port,
                  rs.body);
    fetch_free(&rs);
    fixture_down(f);
}
END_TEST

/* The same on a plain connection (absolute-form https://): here the connection is not TLS */
START_TEST(test_bad_origin_cert_502_absolute_form)
{
    struct fixture f = up(0, NULL);
    char req[400];
    snprintf(req, sizeof req,
             "GET https://127.0.0.1:%d/bytes/10 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", f.o->port,
             f.o->port);
    struct http_response r;
    int rc = raw_exchange(f.p->port, req, &r, 0, T_MS);
    ck_assert_msg(rc == RAW_OK, "absolute-form https: %s", raw_result_name(rc));
    ck_assert_msg(r.status == 502, "status %d: %s", r.status, r.body);
    ck_assert_msg(strcasestr(r.body, "certificate") != NULL || strstr(r.body, "TLS") != NULL,
                  "the 502 does not name a TLS/certificate reason: %s", r.body);
    printf("bad origin certificate, absolute form: 502 %s", r.body);
    http_response_free(&r);
    fixture_down(f);
}
END_TEST

/* ==== 6. a CA key with loose permissions ========================================================
 */

START_TEST(test_loose_ca_key_refused)
{
    struct ca ca = fresh_ca("loose");
    char conf[700];
    snprintf(conf, sizeof conf, "%s/loose.yaml", harness_tmpdir());
    char *tls = intercept_yaml(&ca, "[\"127.0.0.1\"]", 1);
    char *yaml = NULL;
    ck_assert(asprintf(&yaml, "listen: [\"127.0.0.1:0\"]\nadmin:\n  listen: [\"127.0.0.1:0\"]\n%s",
                       tls) > 0);
    write_text(conf, yaml);
    struct cmd_result r;
    char *check[] = {"-t", "-c", conf, NULL};

    /* modes: 0600 and 0400 pass; anything for group or other fails */
    static const struct {
        mode_t mode;
        int ok;
    } modes[] = {{0600, 1}, {0400, 1}, {0644, 0}, {0640, 0}, {0604, 0}, {0620, 0}, {0602, 0}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        ck_assert(chmod(ca.key, modes[i].mode) == 0);
        run_rlproxy(check, 10000, &r);
        if (modes[i].ok) {
            ck_assert_msg(r.exit_code == 0, "-t with ca.key mode %04o: exit %d: %s%s",
                          (unsigned)modes[i].mode, r.exit_code, r.out, r.err);
        } else {
            ck_assert_msg(r.exit_code == 1, "-t with ca.key mode %04o: exit %d, want 1: %s%s",
                          (unsigned)modes[i].mode, r.exit_code, r.out, r.err);
            ck_assert_msg(strstr(r.err, ca.key) != NULL && strstr(r.err, "chmod 600") != NULL,
                          "-t with mode %04o does not name the key and chmod 600: %s",
                          (unsigned)modes[i].mode, r.err);
        }
        cmd_result_free(&r);
    }

    /* the daemon refuses to start */
    ck_assert(chmod(ca.key, 0644) == 0);
    run_rlproxy(check, 10000, &r);
    printf("-t with a 0644 key: exit %d: %s", r.exit_code, r.err);
    cmd_result_free(&r);
    char *start[] = {"-c", conf, NULL};
    run_rlproxy(start, 10000, &r);
    ck_assert_msg(!r.timed_out, "rlproxy started (ran 10 s) with a 0644 CA key: %s%s", r.out,
                  r.err);
    ck_assert_msg(r.exit_code != 0, "rlproxy exited 0 with a 0644 CA key: %s%s", r.out, r.err);
    ck_assert_msg(strstr(r.err, ca.key) != NULL && strstr(r.err, "chmod 600") != NULL,
                  "the start-up error does not name the key and chmod 600: %s", r.err);
    ck_assert_msg(strstr(r.err, "listening on") == NULL, "it listened before refusing: %s", r.err);
    printf("start with a 0644 key: exit %d: %s", r.exit_code, r.err);
    cmd_result_free(&r);
    free(yaml);
    free(tls);
}
END_TEST

START_TEST(test_loose_ca_key_reload_keeps_old)
{
    struct ca ca = fresh_ca("reloadca");
    struct origin *o = origin_start(1);
    char *tls = intercept_yaml(&ca, "[\"127.0.0.1\"]", 1);
    struct proxy *p = proxy_startf("connect:\n  allowed_ports: [%d]\n%s", o->port, tls);
    char url[256];
    struct fetch_req rq = {.url = https_url(o->port, "127.0.0.1", "/bytes/64", url, sizeof url),
                           .proxy_port = p->port,
                           .tunnel = 1,
                           .cainfo = ca.cert,
                           .timeout_ms = T_MS};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200, "before: curl %d %s status %ld",
                  (int)rs.rc, rs.err, rs.status);
    fetch_free(&rs);

    ck_assert(chmod(ca.key, 0644) == 0);
    char *yaml = NULL;
    ck_assert(asprintf(&yaml,
                       "listen: [\"127.0.0.1:0\"]\nadmin:\n  listen: [\"127.0.0.1:0\"]\n"
                       "connect:\n  allowed_ports: [%d]\n%s",
                       o->port, tls) > 0);
    ck_assert_msg(!proxy_reload(p, yaml, RELOAD_WAIT_MS),
                  "a reload with a 0644 CA key was accepted");
    char *tail = proxy_log_tail(p, 600);
    ck_assert_msg(strstr(tail, ca.key) != NULL && strstr(tail, "chmod 600") != NULL,
                  "the reload error does not name the key and chmod 600:\n%s", tail);
    free(tail);
    ck_assert_int_eq(proxy_metric(p, "rlproxy_config_reloads_total{result=\"failed\"}"), 1);
    /* the old configuration (and its CA) keeps serving, new tunnels included */
    for (int i = 0; i < 2; i++) {
        fetch(&rq, &rs);
        ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200,
                      "after the refused reload: curl %d %s "
                      "status %ld",
                      (int)rs.rc, rs.err, rs.status);
        ck_assert_uint_eq(rs.body_len, 64);
        fetch_free(&rs);
    }
    ck_assert(chmod(ca.key, 0600) == 0);
    ck_assert_msg(proxy_reload(p, yaml, RELOAD_WAIT_MS),
                  "a reload with the key back at 0600 failed: %s", proxy_log_tail(p, 600));
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200, "after the good reload: curl %d %s",
                  (int)rs.rc, rs.err);
    fetch_free(&rs);
    free(yaml);
    free(tls);
    proxy_stop_with_origin(p, o);
}
END_TEST

/* ==== 7. absolute-form https:// on a plain connection ===========================================
 */

START_TEST(test_absolute_form_https)
{
    struct fixture f = up(1, NULL);
    const char *hosts[] = {"127.0.0.1", "localhost"}; /* listed or not: both are fetched */
    for (int i = 0; i < 2; i++) {
        struct raw *c = raw_connect(f.p->port);
        for (int k = 0; k < 2; k++) { /* keep-alive: twice on one connection */
            raw_sendf(c, "GET https://%s:%d/bytes/1000 HTTP/1.1\r\nHost: %s:%d\r\n\r\n", hosts[i],
                      f.o->port, hosts[i], f.o->port);
            struct http_response r;
            int rc = raw_read_response(c, &r, RESP_PATTERN, T_MS);
            ck_assert_msg(rc == RAW_OK, "GET https://%s: %s", hosts[i], raw_result_name(rc));
            ck_assert_msg(r.status == 200, "GET https://%s: status %d", hosts[i], r.status);
            ck_assert_uint_eq(r.body_len, 1000);
            ck_assert_msg(r.pattern_bad < 0, "wrong byte at %lld", (long long)r.pattern_bad);
            http_response_free(&r);
        }
        raw_close(c);
        char needle[128];
        snprintf(needle, sizeof needle, "\"GET https://%s:%d/bytes/1000\" 200", hosts[i],
                 f.o->port);
        uint64_t deadline = now_ms() + 3000;
        while (file_lines_with(f.p->log_path, needle, " attempts=", NULL, 0) < 2 &&
               now_ms() < deadline)
            sleep_ms(20);
        ck_assert_msg(file_lines_with(f.p->log_path, needle, " attempts=", NULL, 0) == 2,
                      "want 2 lines with %s:\n%s", needle, proxy_log_tail(f.p, 1500));
    }
    fixture_down(f);
}
END_TEST

/* ==== 8. inside the tunnel ======================================================================
 */

static SSL_CTX *ctx_ours(void)
{
    static const char alpn[] = "\x08http/1.1";
    SSL_CTX *ctx = client_ctx(shared_ca()->cert, alpn, sizeof alpn - 1);
    ck_assert(ctx != NULL);
    return ctx;
}

static void open_tunnel(struct tcli *t, const struct fixture *f, SSL_CTX *ctx)
{
    char err[512];
    ck_assert_msg(tcli_open(t, f->p->port, "127.0.0.1", f->o->port, ctx, err, sizeof err) == 0,
                  "tunnel: %s; %s", err, proxy_log_tail(f->p, 800));
}

static void send_str(struct tcli *t, const char *s)
{
    ck_assert_msg(tcli_send(t, s, strlen(s)) == 0, "send inside the tunnel failed");
}

START_TEST(test_tunnel_alpn_pipelining)
{
    struct fixture f = up(1, NULL);
    SSL_CTX *ctx = ctx_ours();
    struct tcli t;
    open_tunnel(&t, &f, ctx);
    const unsigned char *sel = NULL;
    unsigned sel_len = 0;
    SSL_get0_alpn_selected(t.ssl, &sel, &sel_len);
    ck_assert_msg(sel_len == 8 && memcmp(sel, "http/1.1", 8) == 0, "ALPN selected: %.*s",
                  (int)sel_len, sel ? (const char *)sel : "");
    /* two requests in one write: two answers, in order */
    char req[600];
    snprintf(req, sizeof req,
             "GET /bytes/10 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
             "GET /bytes/20 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
             f.o->port, f.o->port);
    send_str(&t, req);
    for (int k = 0; k < 2; k++) {
        struct tresp r;
        int rc = tcli_response(&t, &r);
        ck_assert_msg(rc == 0, "pipelined response %d: %s", k, tcli_rc(rc));
        ck_assert_int_eq(r.status, 200);
        ck_assert_uint_eq(r.body_len, k == 0 ? 10 : 20);
        ck_assert_msg(pattern_mismatch(r.body, r.body_len, 0) < 0, "wrong bytes");
        tresp_free(&r);
    }
    /* the absolute form naming the tunnel's own host is fine too */
    snprintf(req, sizeof req,
             "GET https://127.0.0.1:%d/bytes/5 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", f.o->port,
             f.o->port);
    send_str(&t, req);
    struct tresp r;
    int rc = tcli_response(&t, &r);
    ck_assert_msg(rc == 0 && r.status == 200 && r.body_len == 5,
                  "absolute form for the tunnel's host: %s, status %d", tcli_rc(rc), r.status);
    tresp_free(&r);
    tcli_close(&t);

    /* a client offering only h2 gets no ALPN and speaks HTTP/1.1 */
    static const char h2[] = "\x02h2";
    SSL_CTX *h2ctx = client_ctx(shared_ca()->cert, h2, sizeof h2 - 1);
    open_tunnel(&t, &f, h2ctx);
    SSL_get0_alpn_selected(t.ssl, &sel, &sel_len);
    ck_assert_msg(sel_len == 0, "h2-only offer: the proxy selected %.*s", (int)sel_len,
                  (const char *)sel);
    snprintf(req, sizeof req, "GET /bytes/7 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", f.o->port);
    send_str(&t, req);
    rc = tcli_response(&t, &r);
    ck_assert_msg(rc == 0 && r.status == 200 && r.body_len == 7, "h2-only client: %s, status %d",
                  tcli_rc(rc), r.status);
    ck_assert_msg(strncmp(r.head, "HTTP/1.1 ", 9) == 0, "not HTTP/1.1: %.40s", r.head);
    tresp_free(&r);
    tcli_close(&t);
    SSL_CTX_free(h2ctx);

    /* libcurl asking for HTTP/2 over TLS falls back to HTTP/1.1 */
    char url[256], err[CURL_ERROR_SIZE] = "";
    CURL *h =
        tunnel_handle(f.p->port, https_url(f.o->port, "127.0.0.1", "/bytes/9", url, sizeof url),
                      shared_ca()->cert, err);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    CURLcode crc = curl_easy_perform(h);
    long status = 0, version = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &version);
    ck_assert_msg(crc == CURLE_OK && status == 200, "curl with HTTP/2 over TLS: %d %s status %ld",
                  (int)crc, err, status);
    ck_assert_msg(version == CURL_HTTP_VERSION_1_1, "curl negotiated HTTP version %ld", version);
    curl_easy_cleanup(h);
    SSL_CTX_free(ctx);
    /* the absolute-form request above is logged like the origin-form ones:
     * https://host:port/path, once */
    char needle[128];
    snprintf(needle, sizeof needle, "/bytes/5\" 200 ");
    char *line = proxy_access_line(f.p, needle);
    snprintf(needle, sizeof needle, "\"GET https://127.0.0.1:%d/bytes/5\"", f.o->port);
    ck_assert_msg(strstr(line, needle) != NULL, "absolute form inside the tunnel logged as: %s",
                  line);
    free(line);
    fixture_down(f);
}
END_TEST

/* Requests the tunnel cannot carry: answered 400, and the tunnel ends */
static void expect_400_inside(const struct fixture *f, const char *request, const char *what)
{
    SSL_CTX *ctx = ctx_ours();
    struct tcli t;
    open_tunnel(&t, f, ctx);
    send_str(&t, request);
    struct tresp r;
    int rc = tcli_response(&t, &r);
    printf("%s inside the tunnel: %s, status %d, body: %s", what, tcli_rc(rc), r.status,
           r.body ? r.body : "\n");
    ck_assert_msg(rc == 0, "%s inside the tunnel: %s (no 400 reached the client); log:\n%s", what,
                  tcli_rc(rc), proxy_log_tail(f->p, 800));
    ck_assert_msg(r.status == 400, "%s inside the tunnel: status %d", what, r.status);
    tresp_free(&r);
    ck_assert_msg(tcli_wait_closed(&t, 5000), "%s: the tunnel stayed open after the 400", what);
    tcli_close(&t);
    SSL_CTX_free(ctx);
}

START_TEST(test_tunnel_other_host_400)
{
    struct fixture f = up(1, NULL);
    char req[400];
    snprintf(req, sizeof req,
             "GET https://localhost:%d/bytes/5 HTTP/1.1\r\nHost: localhost:%d\r\n\r\n", f.o->port,
             f.o->port);
    expect_400_inside(&f, req, "a request for another host");
    snprintf(req, sizeof req,
             "GET https://127.0.0.1:%d/bytes/5 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
             f.o->port + 1 > 65535 ? 1 : f.o->port + 1, f.o->port);
    expect_400_inside(&f, req, "a request for another port");
    fixture_down(f);
}
END_TEST

START_TEST(test_tunnel_connect_inside_400)
{
    struct fixture f = up(1, NULL);
    char req[400];
    snprintf(req, sizeof req, "CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n",
             f.o->port, f.o->port);
    expect_400_inside(&f, req, "CONNECT");
    fixture_down(f);
}
END_TEST

/* The client asks the proxy to close after the response (Connection: close, or HTTP/1.0): the
 * whole response must still arrive before the close. */
START_TEST(test_tunnel_connection_close_delivers)
{
    struct fixture f = up(1, NULL);
    SSL_CTX *ctx = ctx_ours();
    static const struct {
        size_t size;
        const char *version, *extra;
    } cases[] = {{3, "1.1", "Connection: close\r\n"},
                 {70000, "1.1", "Connection: close\r\n"},
                 {300000, "1.0", ""}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct tcli t;
        open_tunnel(&t, &f, ctx);
        char req[400];
        snprintf(req, sizeof req, "GET /bytes/%zu HTTP/%s\r\nHost: 127.0.0.1:%d\r\n%s\r\n",
                 cases[i].size, cases[i].version, f.o->port, cases[i].extra);
        send_str(&t, req);
        struct tresp r;
        int rc = tcli_response(&t, &r);
        printf("HTTP/%s %s/bytes/%zu inside the tunnel: %s, status %d, %zu body bytes\n",
               cases[i].version, cases[i].extra[0] ? "Connection: close " : "", cases[i].size,
               tcli_rc(rc), r.status, r.body_len);
        ck_assert_msg(rc == 0 && r.status == 200 && r.body_len == cases[i].size,
                      "HTTP/%s %sGET /bytes/%zu inside the tunnel: %s, status %d, %zu of %zu "
                      "body bytes",
                      cases[i].version, cases[i].extra, cases[i].size, tcli_rc(rc), r.status,
                      r.body_len, cases[i].size);
        ck_assert_msg(pattern_mismatch(r.body, r.body_len, 0) < 0, "wrong bytes");
        tresp_free(&r);
        ck_assert_msg(tcli_wait_closed(&t, 5000), "the tunnel stayed open after the response");
        tcli_close(&t);
    }
    SSL_CTX_free(ctx);
    fixture_down(f);
}
END_TEST

/* Not TLS after the 200: the proxy closes, and keeps serving others */
START_TEST(test_tunnel_plaintext_after_200)
{
    struct fixture f = up(1, NULL);
    struct tcli t;
    char err[512], req[300];
    ck_assert_msg(tcli_open(&t, f.p->port, "127.0.0.1", f.o->port, NULL, err, sizeof err) == 0,
                  "%s", err);
    snprintf(req, sizeof req, "GET /bytes/5 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", f.o->port);
    send_str(&t, req);
    ck_assert_msg(tcli_wait_closed(&t, 5000), "the proxy kept a non-TLS intercepted tunnel open");
    tcli_close(&t);
    SSL_CTX *ctx = ctx_ours();
    open_tunnel(&t, &f, ctx);
    send_str(&t, req);
    struct tresp r;
    int rc = tcli_response(&t, &r);
    ck_assert_msg(rc == 0 && r.status == 200, "next tunnel: %s status %d", tcli_rc(rc), r.status);
    tresp_free(&r);
    tcli_close(&t);
    SSL_CTX_free(ctx);
    fixture_down(f);
}
END_TEST

/* Bodies both ways through the intercepted tunnel, and a 429 that keeps it open */
START_TEST(test_tunnel_bodies_and_429)
{
    struct fixture f = up(1, "rate_limits:\n"
                             "  - name: few\n"
                             "    match: { path_prefix: \"/bytes/3\" }\n"
                             "    key: global\n"
                             "    limit: 2\n"
                             "    window: 1m\n"
                             "    over_limit: reject\n");
    char url[256];
    uint64_t big = harness_size(8u << 20, 1u << 20);
    char path[64];
    snprintf(path, sizeof path, "/bytes/%llu", (unsigned long long)big);
    struct fetch_req rq = {.url = https_url(f.o->port, "127.0.0.1", path, url, sizeof url),
                           .proxy_port = f.p->port,
                           .tunnel = 1,
                           .cainfo = shared_ca()->cert,
                           .check_pattern = 1,
                           .timeout_ms = 30000};
    struct fetch_res rs;
    fetch(&rq, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200, "download: curl %d %s status %ld",
                  (int)rs.rc, rs.err, rs.status);
    ck_assert_msg(rs.received == big && rs.pattern_bad < 0, "download: %llu of %llu, bad at %lld",
                  (unsigned long long)rs.received, (unsigned long long)big,
                  (long long)rs.pattern_bad);
    fetch_free(&rs);

    uint64_t up_len = harness_size(4u << 20, 1u << 20);
    struct fetch_req ur = {.url = https_url(f.o->port, "127.0.0.1", "/sink", url, sizeof url),
                           .method = "POST",
                           .proxy_port = f.p->port,
                           .tunnel = 1,
                           .cainfo = shared_ca()->cert,
                           .gen_upload = (int64_t)up_len,
                           .timeout_ms = 30000};
    fetch(&ur, &rs);
    ck_assert_msg(rs.rc == CURLE_OK && rs.status == 200, "upload: curl %d %s status %ld",
                  (int)rs.rc, rs.err, rs.status);
    char *sha = json_get_str(rs.body, "sha256");
    ck_assert_msg(sha != NULL && strcmp(sha, rs.upload_sha256) == 0,
                  "the origin got sha256 %s, the client sent %s", sha, rs.upload_sha256);
    free(sha);
    fetch_free(&rs);

    /* limit 2: the third request inside one tunnel is a 429, and the tunnel carries on */
    SSL_CTX *ctx = ctx_ours();
    struct tcli t;
    open_tunnel(&t, &f, ctx);
    char req[300];
    snprintf(req, sizeof req, "GET /bytes/3 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", f.o->port);
    int want[] = {200, 200, 429, 429};
    for (int i = 0; i < 4; i++) {
        send_str(&t, req);
        struct tresp r;
        int rc = tcli_response(&t, &r);
        ck_assert_msg(rc == 0 && r.status == want[i], "request %d: %s, status %d, want %d", i,
                      tcli_rc(rc), r.status, want[i]);
        if (want[i] == 429)
            ck_assert_msg(strstr(r.body, "few") != NULL, "the 429 does not name the rule: %s",
                          r.body);
        tresp_free(&r);
    }
    snprintf(req, sizeof req, "GET /bytes/11 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", f.o->port);
    send_str(&t, req);
    struct tresp r;
    int rc = tcli_response(&t, &r);
    ck_assert_msg(rc == 0 && r.status == 200 && r.body_len == 11,
                  "after the 429s, same tunnel: %s status %d", tcli_rc(rc), r.status);
    tresp_free(&r);
    tcli_close(&t);
    SSL_CTX_free(ctx);
    fixture_down(f);
}
END_TEST

/* ==== 9. metrics =================================================================================
 */

START_TEST(test_metrics_count_inner_requests)
{
    struct fixture f = up(1, NULL);
    long long req0 = proxy_metric(f.p, "rlproxy_requests_total");
    long long ok0 = proxy_metric(f.p, "rlproxy_responses_total{class=\"2xx\"}");
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_tls_intercepted_total"), 0);
    enum { K = 7 };
    char url[256], err[CURL_ERROR_SIZE] = "";
    CURL *h =
        tunnel_handle(f.p->port, https_url(f.o->port, "127.0.0.1", "/bytes/10", url, sizeof url),
                      shared_ca()->cert, err);
    for (int i = 0; i < K; i++) {
        CURLcode rc = curl_easy_perform(h);
        ck_assert_msg(rc == CURLE_OK, "request %d: %s", i, err);
    }
    curl_easy_cleanup(h);
    /* one CONNECT head + K heads inside it; 2xx: the CONNECT's 200 and K 200s */
    long long req1 = -1, ok1 = -1;
    uint64_t deadline = now_ms() + 3000;
    do {
        req1 = proxy_metric(f.p, "rlproxy_requests_total");
        ok1 = proxy_metric(f.p, "rlproxy_responses_total{class=\"2xx\"}");
        if (req1 - req0 == K + 1 && ok1 - ok0 == K + 1)
            break;
        sleep_ms(20);
    } while (now_ms() < deadline);
    ck_assert_msg(req1 - req0 == K + 1, "rlproxy_requests_total grew by %lld, want %d", req1 - req0,
                  K + 1);
    ck_assert_msg(ok1 - ok0 == K + 1, "rlproxy_responses_total{2xx} grew by %lld, want %d",
                  ok1 - ok0, K + 1);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_tls_intercepted_total"), 1);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_tls_leaf_cache_total{result=\"miss\"}"), 1);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_tls_leaf_cache_total{result=\"hit\"}"), 0);
    /* a second tunnel to the same host: the leaf comes from the cache */
    h = tunnel_handle(f.p->port, url, shared_ca()->cert, err);
    ck_assert_msg(curl_easy_perform(h) == CURLE_OK, "second tunnel: %s", err);
    curl_easy_cleanup(h);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_tls_intercepted_total"), 2);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_tls_leaf_cache_total{result=\"hit\"}"), 1);
    ck_assert_int_eq(proxy_metric(f.p, "rlproxy_tls_leaf_cache_total{result=\"miss\"}"), 1);
    printf("metrics: rlproxy_tunnels_total %lld after 2 intercepted CONNECTs (%s)\n",
           proxy_metric(f.p, "rlproxy_tunnels_total"),
           "intercepted tunnels are not opaque tunnels; printed, not checked");
    fixture_down(f);
}
END_TEST

/* ==== figures (printed, never asserted) =========================================================
 */

struct hs_job {
    int proxy_port, origin_port, count;
    const char *host;
    SSL_CTX *ctx;
    long ok, failed;
    char err[512];
};

/* `count` fresh connections: CONNECT, TLS handshake, GET / (1 KiB), close */
static void *hs_run(void *arg)
{
    struct hs_job *j = arg;
    char req[200];
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s:%d\r\n\r\n", j->host, j->origin_port);
    for (int i = 0; i < j->count; i++) {
        struct tcli t;
        char err[512];
        if (tcli_open(&t, j->proxy_port, j->host, j->origin_port, j->ctx, err, sizeof err) != 0) {
            if (j->failed++ == 0)
                snprintf(j->err, sizeof j->err, "%s", err);
            continue;
        }
        struct tresp r = {0};
        int rc = tcli_send(&t, req, strlen(req)) == 0 ? tcli_response(&t, &r) : -1;
        if (rc == 0 && r.status == 200 && r.body_len == 1024) {
            j->ok++;
        } else if (j->failed++ == 0) {
            snprintf(j->err, sizeof j->err, "response: %s status %d", tcli_rc(rc), r.status);
        }
        tresp_free(&r);
        tcli_close(&t);
    }
    return NULL;
}

/* handshakes per second over `threads` threads; fills ok/failed */
static double hs_rate(int proxy_port, int origin_port, const char *host, SSL_CTX *ctx, int total,
                      int threads, long *ok, long *failed, char *err, size_t err_len)
{
    struct hs_job jobs[16];
    pthread_t th[16];
    uint64_t t0 = now_ms();
    for (int i = 0; i < threads; i++) {
        jobs[i] = (struct hs_job){.proxy_port = proxy_port,
                                  .origin_port = origin_port,
                                  .count = total / threads,
                                  .host = host,
                                  .ctx = ctx};
        ck_assert(pthread_create(&th[i], NULL, hs_run, &jobs[i]) == 0);
    }
    *ok = *failed = 0;
    err[0] = '\0';
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        *ok += jobs[i].ok;
        *failed += jobs[i].failed;
        if (err[0] == '\0' && jobs[i].err[0] != '\0')
            snprintf(err, err_len, "%s", jobs[i].err);
    }
    uint64_t ms = now_ms() - t0;
    return ms > 0 ? (double)*ok * 1000.0 / (double)ms : 0;
}

/* 1 KiB GETs on one reused libcurl handle for duration_ms; req/s, errors counted */
static double kib_rate(CURL *h, long duration_ms, long *done, long *errors)
{
    *done = *errors = 0;
    for (int i = 0; i < 20; i++) /* warm: the connection, both TLS legs, curl's pools */
        curl_easy_perform(h);
    uint64_t t0 = now_ms(), end = t0 + (uint64_t)duration_ms;
    while (now_ms() < end) {
        long status = 0;
        curl_off_t size = 0;
        CURLcode rc = curl_easy_perform(h);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &size);
        if (rc == CURLE_OK && status == 200 && size == 1024)
            (*done)++;
        else
            (*errors)++;
    }
    uint64_t ms = now_ms() - t0;
    return ms > 0 ? (double)*done * 1000.0 / (double)ms : 0;
}

START_TEST(test_figures)
{
    int quick = harness_quick() || harness_sanitizers();
    int hs_n = (int)env_long("INTERCEPT_HANDSHAKES", quick ? 40 : 400);
    long dur = env_long("INTERCEPT_DURATION_MS", quick ? 300 : 1500);
    int rounds = (int)env_long("INTERCEPT_ROUNDS", 2);
    struct fast_origin *tls_o = fast_origin_start(1), *plain_o = fast_origin_start(0);
    char *tls = intercept_yaml(shared_ca(), "[\"127.0.0.1\"]", 1);
    struct proxy *p = proxy_startf("connect:\n  allowed_ports: [%d]\n%s", tls_o->port, tls);
    free(tls);
    fprintf(stderr, "\n== figures (timings are printed, never asserted; workers: 2, access log "
                    "to a file, loopback, origin: in-process C, 1 KiB responses) ==\n");

    /* handshakes: CONNECT + TLS (full, P-256 leaf from the cache) + one GET, fresh connections */
    SSL_CTX *ctx = ctx_ours();
    long ok, failed;
    char err[512];
    long long hit0 = proxy_metric(p, "rlproxy_tls_leaf_cache_total{result=\"hit\"}");
    double seq =
        hs_rate(p->port, tls_o->port, "127.0.0.1", ctx, hs_n, 1, &ok, &failed, err, sizeof err);
    fprintf(stderr,
            "intercepted CONNECT+handshake+GET, sequential: %.0f /s (%ld ok, %ld failed%s%s)\n",
            seq, ok, failed, failed ? ": " : "", err);
    ck_assert_msg(ok > 0, "no intercepted handshake succeeded: %s", err);
    long total_ok = ok;
    double par =
        hs_rate(p->port, tls_o->port, "127.0.0.1", ctx, hs_n, 4, &ok, &failed, err, sizeof err);
    fprintf(stderr,
            "intercepted CONNECT+handshake+GET, 4 threads: %.0f /s (%ld ok, %ld failed%s%s)\n", par,
            ok, failed, failed ? ": " : "", err);
    total_ok += ok;
    long long hits = proxy_metric(p, "rlproxy_tls_leaf_cache_total{result=\"hit\"}") - hit0;
    long long misses = proxy_metric(p, "rlproxy_tls_leaf_cache_total{result=\"miss\"}");
    fprintf(stderr, "leaf cache, all to one host: %lld hits, %lld misses: hit rate %.2f%%\n", hits,
            misses, hits + misses > 0 ? 100.0 * (double)hits / (double)(hits + misses) : 0);
    /* not a timing: the cache is deterministic (the first handshake ever minted the one leaf) */
    ck_assert_msg(misses == 1, "%lld leaves minted for one host", misses);
    ck_assert_msg(hits >= total_ok - 1, "%lld cache hits for %ld handshakes", hits, total_ok);

    /* for scale: an opaque tunnel to the same origin (its own TLS handshake, rlproxy relays) */
    SSL_CTX *origin_ctx = client_ctx(harness_ca_path(), NULL, 0);
    double opaque = hs_rate(p->port, tls_o->port, "localhost", origin_ctx, hs_n, 1, &ok, &failed,
                            err, sizeof err);
    fprintf(stderr,
            "opaque CONNECT (localhost, not listed)+handshake+GET, sequential: %.0f /s "
            "(%ld ok, %ld failed%s%s)\n",
            opaque, ok, failed, failed ? ": " : "", err);

    /* 1 KiB requests on one keep-alive connection: intercepted tunnel vs plain HTTP vs plain
     * connection with an https:// absolute-form target (TLS to the origin only) */
    char url_tls[256], url_plain[256], url_abs[256], target_abs[256],
        e1[CURL_ERROR_SIZE] = "", e2[CURL_ERROR_SIZE] = "", e3[CURL_ERROR_SIZE] = "";
    CURL *hi =
        tunnel_handle(p->port, https_url(tls_o->port, "127.0.0.1", "/kib", url_tls, sizeof url_tls),
                      shared_ca()->cert, e1);
    snprintf(url_plain, sizeof url_plain, "http://127.0.0.1:%d/kib", plain_o->port);
    CURL *hp = tunnel_handle(p->port, url_plain, shared_ca()->cert, e2);
    curl_easy_setopt(hp, CURLOPT_HTTPPROXYTUNNEL, 0L);
    snprintf(url_abs, sizeof url_abs, "http://127.0.0.1:%d/kib", tls_o->port);
    snprintf(target_abs, sizeof target_abs, "https://127.0.0.1:%d/kib", tls_o->port);
    CURL *ha = tunnel_handle(p->port, url_abs, shared_ca()->cert, e3);
    curl_easy_setopt(ha, CURLOPT_HTTPPROXYTUNNEL, 0L);
    curl_easy_setopt(ha, CURLOPT_REQUEST_TARGET, target_abs);
    double sum_i = 0, sum_p = 0, sum_a = 0;
    long di, dp, da, xi, xp, xa;
    for (int r = 0; r < rounds; r++) { /* interleaved, so drift hits all three alike */
        double ri = kib_rate(hi, dur, &di, &xi);
        double rp = kib_rate(hp, dur, &dp, &xp);
        double ra = kib_rate(ha, dur, &da, &xa);
        fprintf(stderr,
                "round %d: 1 KiB GETs, one keep-alive connection: intercepted tunnel %.0f req/s "
                "(%ld, %ld errors), plain HTTP %.0f req/s (%ld, %ld errors), plain connection "
                "+ https:// target %.0f req/s (%ld, %ld errors)\n",
                r + 1, ri, di, xi, rp, dp, xp, ra, da, xa);
        sum_i += ri;
        sum_p += rp;
        sum_a += ra;
    }
    long connects = -1;
    curl_easy_getinfo(hi, CURLINFO_NUM_CONNECTS, &connects);
    fprintf(stderr,
            "1 KiB req/s, mean of %d rounds of %ld ms: intercepted %.0f, plain HTTP %.0f, "
            "https:// target on plain %.0f; intercepted/plain = %.2f, https-target/plain = %.2f\n",
            rounds, dur, sum_i / rounds, sum_p / rounds, sum_a / rounds,
            sum_p > 0 ? sum_i / sum_p : 0, sum_p > 0 ? sum_a / sum_p : 0);
    fprintf(stderr, "origin: TLS %ld connections / %ld requests, plain %ld / %ld\n",
            atomic_load(&tls_o->connections), atomic_load(&tls_o->requests),
            atomic_load(&plain_o->connections), atomic_load(&plain_o->requests));
    curl_easy_cleanup(hi);
    curl_easy_cleanup(hp);
    curl_easy_cleanup(ha);
    SSL_CTX_free(ctx);
    SSL_CTX_free(origin_ctx);
    proxy_stop(p);
    fast_origin_stop(tls_o);
    fast_origin_stop(plain_o);
}
END_TEST

/* ==== departure stamping =========================================================================
 * rlproxy's first connection to the origin takes 150 ms to open (a relay), the requests after it
 * reuse that connection. The API counts arrivals, so the window counts departures: the origin never
 * sees 11 requests within a window (less 5 ms of delivery jitter). With admission stamps the first
 * request reached the origin 150 ms after its admission, and the 11th, admitted a window after
 * the first, only ~850 ms after it. */
START_TEST(test_slow_first_connection_counted_at_departure)
{
    enum { N = 25, L = 10 };
    struct origin *o = origin_start(1);
    struct relay *relay = relay_start(o->port, 150);
    int port = relay_port(relay);
    char *tls = intercept_yaml(shared_ca(), "[\"127.0.0.1\"]", 1);
    struct proxy *p = proxy_startf("connect:\n  allowed_ports: [%d]\n%s"
                                   "rate_limits:\n"
                                   "  - name: pace\n"
                                   "    match: { host: \"127.0.0.1\", path_prefix: \"/flaky\" }\n"
                                   "    key: global\n"
                                   "    limit: 10\n"
                                   "    window: 1s\n"
                                   "    over_limit: delay\n"
                                   "    max_delay: 10s\n",
                                   port, tls);
    free(tls);
    char key[64], path[160], url[256], err[CURL_ERROR_SIZE] = "";
    snprintf(key, sizeof key, "dep-%d", (int)getpid());
    snprintf(path, sizeof path, "/flaky?key=%s&i=0", key);
    CURL *h = tunnel_handle(p->port, https_url(port, "127.0.0.1", path, url, sizeof url),
                            shared_ca()->cert, err);
    for (int i = 0; i < N; i++) { /* no warm-up: the first request opens the slow connection */
        snprintf(path, sizeof path, "/flaky?key=%s&i=%d", key, i);
        curl_easy_setopt(h, CURLOPT_URL, https_url(port, "127.0.0.1", path, url, sizeof url));
        CURLcode rc = curl_easy_perform(h);
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        ck_assert_msg(rc == CURLE_OK && status == 200, "request %d: curl %d (%s), status %ld", i,
                      (int)rc, err, status);
    }
    curl_easy_cleanup(h);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "/flaky?key=%s&", key);
    struct arrival *a = NULL;
    size_t n = origin_arrivals(o, prefix, &a);
    ck_assert_uint_eq(n, N);
    size_t worst = 0;
    double span = arrivals_min_span(a, n, L, &worst);
    printf("departure: %ld slow connection(s); tightest %d arrivals at the origin span %.1f ms "
           "(window 1000 ms), from arrival %zu\n",
           relay_connections(relay), L + 1, span, worst);
    ck_assert_msg(relay_connections(relay) >= 1, "rlproxy never went through the slow relay");
    /* rlproxy stamps a departure before it encrypts and writes the request: under valgrind
     * or the sanitizers (many times slower) that alone varies by several ms, still far below the
     * relay's 150 ms */
    double jitter_ms = harness_slow() ? 30.0 : JITTER_MS;
    ck_assert_msg(span >= 1000.0 - jitter_ms,
                  "%d arrivals at the origin within %.1f ms (arrivals %zu..%zu): the window "
                  "counted admissions, not departures",
                  L + 1, span, worst, worst + L);
    free(a);
    proxy_stop(p);
    relay_stop(relay);
    origin_stop(o);
}
END_TEST

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* a failing test's notes must reach the log */
    Suite *s = suite_create("intercept");
    unit_add_tcase(s, harness_tcase("intercept", 40),
                   UNIT_TESTS(test_ca_init, test_keepalive_tunnel_paced, test_retry_inside_tunnel,
                              test_unlisted_host_keeps_origin_cert, test_bad_origin_cert_502,
                              test_bad_origin_cert_502_absolute_form, test_loose_ca_key_refused,
                              test_loose_ca_key_reload_keeps_old, test_absolute_form_https,
                              test_tunnel_alpn_pipelining, test_tunnel_other_host_400,
                              test_tunnel_connect_inside_400, test_tunnel_connection_close_delivers,
                              test_tunnel_plaintext_after_200, test_tunnel_bodies_and_429,
                              test_metrics_count_inner_requests,
                              test_slow_first_connection_counted_at_departure));
    unit_add_tcase(s, harness_tcase("figures", 120), UNIT_TESTS(test_figures));
    return harness_run_suite(s);
}
