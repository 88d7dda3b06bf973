/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* fuzz_response.c — libFuzzer target for what an origin's response head turns into on its way to
 * the client (http.c): the status line's reason phrase and curl's header block go through
 * http_write_response_head for a GET or HEAD request over HTTP/1.0 or 1.1. The origin is outside
 * input, so besides crashes and sanitizer reports the head we write must keep the promises a
 * client relies on (check_head), or it traps:
 *   - one status line "HTTP/1.1 DDD ...", then "Name: value" lines, each ending in CRLF, and one
 *     empty line at the very end: no bare CR or LF anywhere (no response splitting);
 *   - no hop-by-hop header of the origin's (Connection, Keep-Alive, Proxy-*, TE, Trailer, Upgrade,
 *     and Transfer-Encoding other than our own "chunked");
 *   - unambiguous framing: at most one Content-Length, never together with Transfer-Encoding,
 *     and one of them whenever the body is delimited by anything but the close; a head whose
 *     lengths disagree is refused whole (HTTP_FRAME_INVALID, nothing written).
 * The status line goes through http_parse_status_line and the header block through
 * http_retry_after_ms too (in range, and the reason phrase inside the line).
 * Input: byte 0 picks the method, version and keep-alive; bytes 1-2 the status (100-599); up to
 * the first LF the reason phrase, or a whole status line ("HTTP/1.1 503 Busy"); the rest is the
 * header block, as curl hands it over. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>

#include "http.h"
#include "http_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t count_header(const char *head, size_t len, const char *name)
{
    size_t n = 0, name_len = strlen(name);
    for (const char *p = head; p < head + len;) {
        const char *eol = memchr(p, '\n', (size_t)(head + len - p));
        if (eol == NULL)
            break;
        if ((size_t)(eol - p) > name_len && strncasecmp(p, name, name_len) == 0 && p[name_len] == ':')
            n++;
        p = eol + 1;
    }
    return n;
}

static void check_head(const char *h, size_t len, enum http_framing framing)
{
    if (len < 17 || memcmp(h, "HTTP/1.1 ", 9) != 0)
        abort();
    for (int i = 9; i < 12; i++)
        if (h[i] < '0' || h[i] > '9')
            abort();
    if (memcmp(h + len - 4, "\r\n\r\n", 4) != 0)
        abort();
    const char *blank = NULL;
    for (size_t i = 0; i + 3 < len; i++)
        if (memcmp(h + i, "\r\n\r\n", 4) == 0) {
            blank = h + i;
            break;
        }
    if (blank != h + len - 4)
        abort(); /* a second head (or a body) inside the head */
    for (size_t i = 0; i < len; i++) {
        if (h[i] == '\r' && (i + 1 == len || h[i + 1] != '\n'))
            abort();
        if (h[i] == '\n' && (i == 0 || h[i - 1] != '\r'))
            abort();
        if (h[i] == '\0')
            abort();
    }
    /* every line after the status line is "Name: value" with a token for a name */
    const char *p = memchr(h, '\n', len) + 1;
    while (p < h + len - 2) {
        const char *eol = memchr(p, '\n', (size_t)(h + len - p));
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon == NULL || colon == p)
            abort();
        for (const char *c = p; c < colon; c++)
            if (*c <= ' ' || *c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", *c) != NULL)
                abort();
        p = eol + 1;
    }
    static const char *const hop[] = {"Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
                                      "Proxy-Connection", "TE", "Trailer", "Upgrade"};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        if (count_header(h, len, hop[i]) != 0)
            abort();
    size_t te = count_header(h, len, "Transfer-Encoding");
    size_t cl = count_header(h, len, "Content-Length");
    size_t connection = count_header(h, len, "Connection");
    if (connection > 1 || cl > 1 || (te > 0 && cl > 0))
        abort();
    if (framing == HTTP_FRAME_CHUNKED && (te != 1 || strstr(h, "Transfer-Encoding: chunked\r\n") == NULL))
        abort();
    if (framing == HTTP_FRAME_LENGTH && cl != 1)
        abort();
    if (framing != HTTP_FRAME_CHUNKED && te != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    unsigned flags = data[0];
    int status = 100 + (int)(((unsigned)data[1] << 8 | data[2]) % 500);
    const char *rest = (const char *)data + 3;
    size_t rest_len = size - 3;
    const char *lf = memchr(rest, '\n', rest_len);
    size_t reason_len = lf != NULL ? (size_t)(lf - rest) : rest_len;
    const char *headers = lf != NULL ? lf + 1 : rest + rest_len;
    size_t headers_len = lf != NULL ? rest_len - reason_len - 1 : 0;

    /* the client's request, parsed the way conn.c does it */
    static const char *const requests[] = {
        "GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n",
        "HEAD http://o.test/ HTTP/1.1\r\nHost: o.test\r\n\r\n",
        "GET http://o.test/ HTTP/1.0\r\nHost: o.test\r\n\r\n",
        "GET http://o.test/ HTTP/1.0\r\nHost: o.test\r\nConnection: keep-alive\r\n\r\n",
        "GET http://o.test/ HTTP/1.1\r\nHost: o.test\r\nConnection: close\r\n\r\n",
    };
    const char *req_text = requests[flags % 5];
    struct http_parser parser;
    http_parser_init(&parser, 1024, 4096, NULL, NULL);
    enum http_feed_result fed;
    http_parser_feed(&parser, req_text, strlen(req_text), &fed);
    if (fed != HTTP_FEED_HEAD)
        abort();

    /* the first line read as curl's status line; the header block as one with a Retry-After */
    int parsed_status;
    const char *parsed_reason;
    size_t parsed_reason_len;
    if (http_parse_status_line(rest, lf != NULL ? reason_len + 1 : reason_len, &parsed_status,
                               &parsed_reason, &parsed_reason_len) == 0) {
        if (parsed_status < 0 || parsed_status > 999 || parsed_reason < rest ||
            parsed_reason + parsed_reason_len > rest + reason_len)
            abort();
        if (parsed_status >= 100 && parsed_status <= 599) {
            status = parsed_status;
            rest = parsed_reason; /* the reason phrase as the proxy would pass it on */
            reason_len = parsed_reason_len;
        }
    }
    int64_t retry_ms = http_retry_after_ms(headers, headers_len, (time_t)1700000000);
    if (retry_ms < -1 || retry_ms > INT64_C(999999999) * 1000)
        abort();

    struct evbuffer *out = evbuffer_new();
    int close_after = (flags >> 3) & 1;
    const char *extra = (flags >> 4) & 1 ? "RateLimit: \"r\";r=1;t=1\r\n" : NULL;
    enum http_framing framing = http_write_response_head(out, &parser.req, status,
                                                         reason_len ? rest : "", reason_len,
                                                         headers, headers_len, extra, &close_after);
    size_t len = evbuffer_get_length(out);
    if (framing == HTTP_FRAME_INVALID) {
        if (len != 0)
            abort(); /* refused heads are not half written */
        evbuffer_free(out);
        http_parser_free(&parser);
        return 0;
    }
    char *head = malloc(len + 1);
    if (head != NULL) {
        evbuffer_copyout(out, head, len);
        head[len] = '\0';
        check_head(head, len, framing);
        free(head);
    }
    evbuffer_free(out);
    http_parser_free(&parser);
    return 0;
}
