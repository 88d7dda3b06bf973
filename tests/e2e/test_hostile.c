/* test_hostile.c — issue 8, item 7: hostile input, table-driven. Each case connects, sends its
 * bytes and expects the proxy's status (or, where the table says so, a clean close with no response
 * at all), then the proxy's close within 2 s; after every case the daemon must be alive and a
 * normal request on a new connection must succeed.
 *
 * In the table, "%1$d" is the origin's port and "{NUL}" stands for a 0 byte. Cases that need many
 * bytes build them with a generator. One proxy serves the whole table (a crash in any case shows as
 * proxy_alive failing right after it); every case's outcome is collected and the test fails once,
 * listing every case that went wrong. */
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#define T_MS 5000
#define CLOSE_MS 2000

enum send_how {
    SEND_ALL,     /* send, then read the reply */
    SEND_SHUT_WR, /* send, half-close, then read */
    SEND_CLOSE,   /* send, then close at once: nothing to observe but the proxy's survival */
};

struct buf {
    char *data;
    size_t len;
};

struct hostile {
    const char *name;
    const char *text; /* printf template; NULL when gen builds the bytes */
    void (*gen)(struct buf *b, int port);
    int status;     /* expected status; 0: no response at all, just a close */
    int alt_status; /* another acceptable status, or 0 */
    enum send_how how;
    int first_ok; /* pipelined: a 200 comes first */
};

#define U "http://127.0.0.1:%1$d"
#define H "Host: 127.0.0.1:%1$d\r\n"

/* ---- generators ------------------------------------------------------------------------------ */

static void buf_add(struct buf *b, const void *data, size_t len)
{
    b->data = realloc(b->data, b->len + len + 1);
    ck_assert(b->data != NULL);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void buf_addf(struct buf *b, const char *fmt, int port)
{
    char *s = NULL;
    ck_assert(asprintf(&s, fmt, port) >= 0);
    buf_add(b, s, strlen(s));
    free(s);
}

static void buf_fill(struct buf *b, char c, size_t n)
{
    char *s = malloc(n);
    ck_assert(s != NULL);
    memset(s, c, n);
    buf_add(b, s, n);
    free(s);
}

static void gen_long_method(struct buf *b, int port)
{
    buf_fill(b, 'A', 100);
    buf_addf(b, " " U "/ HTTP/1.1\r\n" H "\r\n", port);
}

static void gen_long_url(struct buf *b, int port)
{
    buf_addf(b, "GET " U "/", port);
    buf_fill(b, 'a', 9000);
    buf_addf(b, " HTTP/1.1\r\n" H "\r\n", port);
}

static void gen_big_header(struct buf *b, int port)
{
    buf_addf(b, "GET " U "/ HTTP/1.1\r\n" H "X-Big: ", port);
    buf_fill(b, 'b', 40000);
    buf_add(b, "\r\n\r\n", 4);
}

static void gen_long_header_name(struct buf *b, int port)
{
    buf_addf(b, "GET " U "/ HTTP/1.1\r\n" H, port);
    buf_fill(b, 'X', 40000);
    buf_add(b, ": y\r\n\r\n", 7);
}

static void gen_many_headers(struct buf *b, int port)
{
    buf_addf(b, "GET " U "/ HTTP/1.1\r\n" H, port);
    for (int i = 0; i < 300; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "X-%d: v\r\n", i);
        buf_add(b, line, (size_t)n);
    }
    buf_add(b, "\r\n", 2);
}

/* A head under the byte limit made of many small chunks of a huge chunk extension: the proxy
 * must stream past it without buffering (accepted: 200), like any body bytes */
static void gen_long_chunk_ext(struct buf *b, int port)
{
    buf_addf(b,
             "POST " U "/sink HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n"
             "Connection: close\r\n\r\n5;",
             port);
    buf_fill(b, 'x', 256 * 1024);
    buf_add(b, "\r\nhello\r\n0\r\n\r\n", 14);
}

/* 256 KiB of deterministic random bytes (xorshift), first byte not a method letter */
static void gen_random_blob(struct buf *b, int port)
{
    (void)port;
    size_t n = 256 * 1024;
    char *s = malloc(n);
    ck_assert(s != NULL);
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s[i] = (char)(x >> 24);
    }
    s[0] = '\x8f';
    buf_add(b, s, n);
    free(s);
}

/* A TLS 1.2/1.3 ClientHello with SNI example.com, as a client that mistook the port for TLS sends
 */
static void gen_tls_client_hello(struct buf *b, int port)
{
    (void)port;
    static const unsigned char sni[] = {0x00, 0x00, 0x00, 0x10, 0x00, 0x0e, 0x00, 0x00, 0x0b, 'e',
                                        'x',  'a',  'm',  'p',  'l',  'e',  '.',  'c',  'o',  'm'};
    static const unsigned char versions[] = {0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03};
    unsigned char hello[512];
    size_t n = 0;
    hello[n++] = 0x03; /* client_version TLS 1.2 */
    hello[n++] = 0x03;
    for (int i = 0; i < 32; i++)
        hello[n++] = (unsigned char)(i * 7 + 1); /* random */
    hello[n++] = 0;                              /* session id */
    hello[n++] = 0x00;                           /* cipher suites: 3 */
    hello[n++] = 0x06;
    hello[n++] = 0x13, hello[n++] = 0x01, hello[n++] = 0xc0, hello[n++] = 0x2f, hello[n++] = 0x00,
    hello[n++] = 0xff;
    hello[n++] = 1, hello[n++] = 0; /* compression: null */
    size_t ext_len = sizeof sni + sizeof versions;
    hello[n++] = (unsigned char)(ext_len >> 8), hello[n++] = (unsigned char)ext_len;
    memcpy(hello + n, sni, sizeof sni), n += sizeof sni;
    memcpy(hello + n, versions, sizeof versions), n += sizeof versions;
    unsigned char rec[600];
    size_t r = 0;
    rec[r++] = 0x16, rec[r++] = 0x03, rec[r++] = 0x01; /* handshake record, TLS 1.0 framing */
    rec[r++] = (unsigned char)((n + 4) >> 8), rec[r++] = (unsigned char)(n + 4);
    rec[r++] = 0x01; /* ClientHello */
    rec[r++] = 0, rec[r++] = (unsigned char)(n >> 8), rec[r++] = (unsigned char)n;
    memcpy(rec + r, hello, n), r += n;
    buf_add(b, rec, r);
}

/* ---- the table ------------------------------------------------------------------------------- */

// clang-format off
static const struct hostile cases[] = {
    /* the request line */
    {"garbage bytes", "\x01\x02\x03 garbage\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"NUL in the request target", "GET " U "/a{NUL}b HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"NUL in the method", "GE{NUL}T " U "/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"very long method", NULL, gen_long_method, 400, 0, SEND_ALL, 0},
    {"URL over http.max_request_line", NULL, gen_long_url, 414, 0, SEND_ALL, 0},
    {"lowercase method", "get " U "/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"method with odd chars", "G{T " U "/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"unknown method token", "FROB " U "/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"method only", "GET\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"tab in the target", "GET " U "/a\tb HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"DEL in the target", "GET " U "/a\x7f" "b HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"HTTP/0.9 request line", "GET " U "/headers/h09\r\n\r\n", NULL, 505, 400, SEND_ALL, 0},
    {"HTTP/0.9 request line with headers",
     "POST " U "/sink\r\nContent-Length: 5\r\n\r\nhello", NULL, 505, 400, SEND_ALL, 0},
    {"HTTP/2.0", "GET " U "/ HTTP/2.0\r\n" H "\r\n", NULL, 505, 0, SEND_ALL, 0},
    {"HTTP/1.2", "GET " U "/ HTTP/1.2\r\n" H "\r\n", NULL, 505, 0, SEND_ALL, 0},
    {"HTTP/1.10", "GET " U "/ HTTP/1.10\r\n" H "\r\n", NULL, 505, 400, SEND_ALL, 0},
    {"h2 prior-knowledge preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", NULL, 505, 400, SEND_ALL, 0},
    {"bare CR after the version", "GET " U "/ HTTP/1.1\r" H "\r\n", NULL, 400, 505, SEND_ALL, 0},
    {"bare LF after the request line", "GET " U "/ HTTP/1.1\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    /* header fields */
    {"header block over http.max_header_size", NULL, gen_big_header, 431, 0, SEND_ALL, 0},
    {"header name over the limit", NULL, gen_long_header_name, 431, 0, SEND_ALL, 0},
    {"too many header fields", NULL, gen_many_headers, 431, 0, SEND_ALL, 0},
    {"obs-fold", "GET " U "/ HTTP/1.1\r\n" H "X-A: a\r\n  b\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"obs-fold with a tab", "GET " U "/ HTTP/1.1\r\n" H "X-A: a\r\n\tb\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"fold before the first field", "GET " U "/ HTTP/1.1\r\n " H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"space before colon", "GET " U "/ HTTP/1.1\r\n" H "X-A : b\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"empty header name", "GET " U "/ HTTP/1.1\r\n" H ": b\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"header line without colon", "GET " U "/ HTTP/1.1\r\n" H "Foo\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"bad char in a header name", "GET " U "/ HTTP/1.1\r\n" H "X(y): z\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"bare CR in a header value", "GET " U "/ HTTP/1.1\r\n" H "X-A: a\rb\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"bare LF between header fields", "GET " U "/ HTTP/1.1\r\n" H "X-A: a\nX-B: b\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"NUL in a header value", "GET " U "/ HTTP/1.1\r\n" H "X-A: a{NUL}b\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"DEL in a header value", "GET " U "/ HTTP/1.1\r\n" H "X-A: a\x7f" "b\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"HTTP/1.1 without Host", "GET " U "/ HTTP/1.1\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"two Host headers", "GET " U "/ HTTP/1.1\r\n" H H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"Expect: something-else", "POST " U "/sink HTTP/1.1\r\n" H "Expect: 200-ok\r\nContent-Length: 1\r\n\r\nx", NULL, 417, 0, SEND_ALL, 0},
    {"Upgrade with a body", "POST " U "/sink HTTP/1.1\r\n" H "Upgrade: websocket\r\nConnection: upgrade\r\nContent-Length: 1\r\n\r\nx", NULL, 501, 0, SEND_ALL, 0},
    /* framing */
    {"Content-Length and Transfer-Encoding", "POST " U "/sink HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"Transfer-Encoding and Content-Length: 0", "POST " U "/sink HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"two Content-Length", "POST " U "/sink HTTP/1.1\r\n" H "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", NULL, 400, 0, SEND_ALL, 0},
    {"Content-Length with a sign", "POST " U "/sink HTTP/1.1\r\n" H "Content-Length: +5\r\n\r\nhello", NULL, 400, 0, SEND_ALL, 0},
    {"negative Content-Length", "POST " U "/sink HTTP/1.1\r\n" H "Content-Length: -1\r\n\r\nhello", NULL, 400, 0, SEND_ALL, 0},
    {"Content-Length overflow", "POST " U "/sink HTTP/1.1\r\n" H "Content-Length: 99999999999999999999\r\n\r\nhello", NULL, 400, 0, SEND_ALL, 0},
    {"Content-Length in hex", "POST " U "/sink HTTP/1.1\r\n" H "Content-Length: 0x5\r\n\r\nhello", NULL, 400, 0, SEND_ALL, 0},
    {"Transfer-Encoding: gzip", "POST " U "/sink HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\nxxxx", NULL, 400, 0, SEND_ALL, 0},
    {"Transfer-Encoding: chunked, identity", "POST " U "/sink HTTP/1.1\r\n" H "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"Transfer-Encoding in HTTP/1.0", "POST " U "/sink HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"bad chunk size", "POST " U "/sink HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"chunk size overflow", "POST " U "/sink HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"chunk size in 0x form", "POST " U "/sink HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"negative chunk size", "POST " U "/sink HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"chunk lines ended by bare LF", "POST " U "/sink HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n", NULL, 400, 0, SEND_ALL, 0},
    {"chunk data longer than its size", "POST " U "/sink HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"obs-fold in a trailer", "POST " U "/sink HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n folded\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    /* a 256 KiB chunk extension is streamed past, not buffered: the request goes through */
    {"very long chunk extension (accepted, streamed)", NULL, gen_long_chunk_ext, 200, 0, SEND_ALL, 0},
    {"missing final CRLF, then half-close (no response)", "POST " U "/sink HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n", NULL, 0, 0, SEND_SHUT_WR, 0},
    /* targets */
    {"userinfo in the URL", "GET http://user:pw@127.0.0.1:%1$d/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"empty userinfo in the URL", "GET http://@127.0.0.1:%1$d/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"fragment in the URL", "GET " U "/a#b HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"ftp:// scheme", "GET ftp://127.0.0.1:%1$d/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"asterisk-form", "OPTIONS * HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"origin-form without Host", "GET / HTTP/1.1\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"origin-form (not a proxy request)", "GET /headers HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"port 0", "GET http://127.0.0.1:0/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"port 99999", "GET http://127.0.0.1:99999/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"empty port", "GET http://127.0.0.1:/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"unterminated IPv6 literal", "GET http://[::1/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"bad IPv6 literal", "GET http://[::g]/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"percent-encoded host", "GET http://127.0.0.%%31:%1$d/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"backslash in the authority", "GET http://127.0.0.1:%1$d\\@evil/ HTTP/1.1\r\n" H "\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"CONNECT without port", "CONNECT 127.0.0.1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"CONNECT to a disallowed port", "CONNECT 127.0.0.1:25 HTTP/1.1\r\nHost: 127.0.0.1:25\r\n\r\n", NULL, 403, 0, SEND_ALL, 0},
    {"CONNECT with a body", "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", NULL, 400, 0, SEND_ALL, 0},
    {"CONNECT to an absolute URL", "CONNECT http://127.0.0.1:443/ HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    {"CONNECT to an unterminated IPv6 literal", "CONNECT [::1:443 HTTP/1.1\r\nHost: x\r\n\r\n", NULL, 400, 0, SEND_ALL, 0},
    /* not HTTP at all */
    {"256 KiB random binary blob", NULL, gen_random_blob, 400, 0, SEND_ALL, 0},
    {"TLS ClientHello on the plain port", NULL, gen_tls_client_hello, 400, 0, SEND_ALL, 0},
    {"CRLF flood, then half-close (no response)", "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n", NULL, 0, 0, SEND_SHUT_WR, 0},
    /* clients that go away */
    {"half-sent request, then half-close (no response)", "GET " U "/headers HTT", NULL, 0, 0, SEND_SHUT_WR, 0},
    {"half-sent request, then close", "GET " U "/headers HTTP/1.1\r\nHost: 127.0.0.1", NULL, 0, 0, SEND_CLOSE, 0},
    {"half-sent body, then close", "POST " U "/sink HTTP/1.1\r\n" H "Content-Length: 100\r\n\r\nhello", NULL, 0, 0, SEND_CLOSE, 0},
    /* pipelining: the valid request is answered, then the bad one */
    {"pipelined valid + invalid", "GET " U "/headers/pipelined HTTP/1.1\r\n" H "\r\n\x01junk\r\n\r\n", NULL, 400, 0, SEND_ALL, 1},
    {"pipelined valid + smuggling attempt", "GET " U "/headers/pipelined2 HTTP/1.1\r\n" H "\r\nPOST " U "/sink HTTP/1.1\r\n" H "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", NULL, 400, 0, SEND_ALL, 1},
    {NULL, NULL, NULL, 0, 0, SEND_ALL, 0},
};
// clang-format on

/* Formats a case: the template with the port, "{NUL}" turned into 0 bytes */
static void build(const struct hostile *h, int port, struct buf *b)
{
    memset(b, 0, sizeof *b);
    if (h->gen != NULL) {
        h->gen(b, port);
        return;
    }
    char *s = NULL;
    ck_assert(asprintf(&s, h->text, port) >= 0);
    for (const char *p = s; *p != '\0';) {
        if (strncmp(p, "{NUL}", 5) == 0) {
            buf_add(b, "", 1);
            p += 5;
        } else {
            buf_add(b, p, 1);
            p++;
        }
    }
    free(s);
}

static void note(char *report, size_t cap, const char *fmt, const char *name, const char *detail)
{
    size_t used = strlen(report);
    if (used + 200 < cap)
        snprintf(report + used, cap - used, fmt, name, detail);
}

/* Runs one case; "" when it went as the table says, else what went wrong (static buffer) */
static const char *run_case(const struct hostile *h, struct proxy *p, const struct origin *o)
{
    static char why[1200];
    why[0] = '\0';
    struct buf b;
    build(h, o->port, &b);
    struct raw *c = raw_connect(p->port);
    /* the proxy may answer and close before it has read everything: a failed send is fine */
    (void)raw_try_send(c, b.data, b.len);
    free(b.data);
    if (h->how == SEND_CLOSE) {
        raw_close(c);
        return why;
    }
    if (h->how == SEND_SHUT_WR)
        shutdown(c->fd, SHUT_WR);
    struct http_response r;
    if (h->first_ok) {
        int rc = raw_read_response(c, &r, 0, T_MS);
        if (rc != RAW_OK || r.status != 200)
            snprintf(why, sizeof why, "the valid pipelined request got %s / %d",
                     raw_result_name(rc), r.status);
        http_response_free(&r);
        if (why[0] != '\0') {
            raw_close(c);
            return why;
        }
    }
    if (h->status == 0) {
        size_t pending = raw_pending(c, CLOSE_MS);
        if (pending > 0)
            snprintf(why, sizeof why, "expected no response, got: %.*s",
                     (int)(pending < 120 ? pending : 120), c->buf);
    } else {
        int rc = raw_read_response(c, &r, 0, T_MS);
        if (rc != RAW_OK)
            snprintf(why, sizeof why, "expected %d, got no response: %s", h->status,
                     raw_result_name(rc));
        else if (r.status != h->status && (h->alt_status == 0 || r.status != h->alt_status))
            snprintf(why, sizeof why, "expected %d%s, got %d %s: %.200s", h->status,
                     h->alt_status ? " (or the alternative)" : "", r.status, r.reason, r.body);
        http_response_free(&r);
    }
    if (why[0] == '\0' && !raw_wait_closed(c, CLOSE_MS))
        snprintf(why, sizeof why, "the proxy did not close the connection within %d ms", CLOSE_MS);
    raw_close(c);
    return why;
}

/* ---- each case on a fresh proxy (one Check test per case) ------------------------------------ */

static struct origin *g_origin;    /* one origin for the loop, started before the forks */
static struct proxy *g_case_proxy; /* the running case's proxy, for the teardown */

static void origin_up(void) { g_origin = origin_start(0); }

static void origin_down(void)
{
    origin_stop(g_origin);
    g_origin = NULL;
}

static void case_teardown(void)
{
    if (g_case_proxy != NULL && g_case_proxy->running)
        kill(g_case_proxy->pid, SIGKILL);
    g_case_proxy = NULL;
}

#define NCASES ((int)(sizeof cases / sizeof cases[0]) - 1)

START_TEST(test_hostile_case)
{
    const struct hostile *h = &cases[_i];
    struct proxy *p = proxy_start(NULL);
    g_case_proxy = p;
    const char *why = run_case(h, p, g_origin);
    ck_assert_msg(why[0] == '\0', "hostile case \"%s\": %s", h->name, why);
    ck_assert_msg(proxy_alive(p), "hostile case \"%s\": %s", h->name, proxy_state(p));
    char url[300];
    struct fetch_res rs;
    fetch_via(p->port, origin_url(g_origin, "/bytes/10", url, sizeof url), &rs);
    ck_assert_msg(rs.status == 200 && rs.body_len == 10,
                  "hostile case \"%s\": the next request got %ld", h->name, rs.status);
    fetch_free(&rs);
    g_case_proxy = NULL;
    proxy_stop(p);
}
END_TEST

/* ---- the whole table on one proxy: nothing accumulates, nothing leaks into later requests ---- */

START_TEST(test_hostile_inputs_one_proxy)
{
    struct origin *o = origin_start(0);
    struct proxy *p = proxy_start(NULL);
    size_t cap = 64 * 1024;
    char *report = calloc(1, cap);
    ck_assert(report != NULL);
    int n = 0, bad = 0;
    char url[300];
    origin_url(o, "/bytes/10", url, sizeof url);
    for (const struct hostile *h = cases; h->name != NULL; h++, n++) {
        uint64_t t0 = now_ms();
        const char *why = run_case(h, p, o);
        if (why[0] != '\0') {
            bad++;
            note(report, cap, "\n  %s: %s", h->name, why);
        }
        if (!proxy_alive(p))
            ck_abort_msg("rlproxy died on hostile case \"%s\": %s%s", h->name, proxy_state(p),
                         report);
        /* a normal request on a new connection */
        struct fetch_req rq = {.url = url, .proxy_port = p->port, .timeout_ms = T_MS};
        struct fetch_res rs;
        fetch(&rq, &rs);
        if (rs.rc != CURLE_OK || rs.status != 200 || rs.body_len != 10) {
            bad++;
            char detail[300];
            snprintf(detail, sizeof detail, "curl %d (%s), status %ld", (int)rs.rc, rs.err,
                     rs.status);
            note(report, cap, "\n  %s: the next normal request failed: %s", h->name, detail);
        }
        fetch_free(&rs);
        printf("hostile: %-55s %s (%llu ms)\n", h->name, why[0] ? "FAILED" : "ok",
               (unsigned long long)(now_ms() - t0));
    }
    fflush(stdout);
    ck_assert_msg(n >= 30, "only %d cases", n);
    ck_assert_msg(bad == 0, "%d of %d hostile cases went wrong:%s", bad, n, report);
    free(report);
    /* nothing that was refused reached the origin: only the valid requests did */
    char *log = origin_get(o, "/log");
    ck_assert_msg(strstr(log, "/h09") == NULL, "a refused request reached the origin: %s", log);
    free(log);
    proxy_stop(p);
    origin_stop(o);
}
END_TEST

static Suite *hostile_suite(void)
{
    Suite *s = suite_create("hostile");
    /* not harness_tcase: its teardown would kill the shared origin from inside each forked case */
    TCase *each = tcase_create("each");
    tcase_set_timeout(each, 30);
    tcase_add_unchecked_fixture(each, origin_up, origin_down);
    tcase_add_checked_fixture(each, NULL, case_teardown);
    tcase_add_loop_test(each, test_hostile_case, 0, NCASES);
    suite_add_tcase(s, each);
    TCase *all = harness_tcase("one proxy", 120);
    tcase_add_test(all, test_hostile_inputs_one_proxy);
    suite_add_tcase(s, all);
    return s;
}

int main(void) { return harness_run_suite(hostile_suite()); }
