/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* fuzz_http.c — libFuzzer target for the request parser (http.c): the input is fed as a stream of
 * pipelined requests, split at a boundary taken from the first byte, the way conn.c feeds reads.
 * Besides crashes and sanitizer reports, every head the parser accepts must keep the promises the
 * rest of the proxy relies on (check_head): HTTP/1.0 or 1.1, unambiguous framing, clean header
 * names and values, a usable target. A broken promise is a smuggling hole, so it traps. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "http.h"
#include "http_response.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REQUEST_LINE 1024
#define MAX_HEADER_SIZE 4096

static int is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static size_t count_named(const struct http_request *req, const char *name)
{
    size_t n = 0, len = strlen(name);
    for (size_t i = 0; i < req->header_count; i++)
        n += req->headers[i].name_len == len &&
             strncasecmp(http_arena(req, req->headers[i].name_off), name, len) == 0;
    return n;
}

/* The invariants of an accepted head; __builtin_trap() when one does not hold */
static void check_head(const struct http_parser *p)
{
    const struct http_request *req = &p->req;
    if (req->version_major != 1 || req->version_minor > 1)
        __builtin_trap(); /* only HTTP/1.0 and HTTP/1.1 (no 0.9, no 2.0) */
    if (req->method_len == 0 || req->header_count > HTTP_MAX_HEADERS ||
        p->head_bytes > MAX_HEADER_SIZE)
        __builtin_trap();
    if (req->chunked && req->content_length >= 0)
        __builtin_trap(); /* one framing only */
    if (req->has_body != (req->chunked || req->content_length > 0))
        __builtin_trap();
    size_t te = count_named(req, "Transfer-Encoding");
    if (te > 1 || (te == 1) != (req->chunked != 0) || count_named(req, "Content-Length") > 1)
        __builtin_trap();
    if (count_named(req, "Host") > 1 || (req->version_minor == 1 && count_named(req, "Host") != 1))
        __builtin_trap();
    for (size_t i = 0; i < req->header_count; i++) {
        const struct http_header *h = &req->headers[i];
        const unsigned char *name = (const unsigned char *)http_arena(req, h->name_off);
        const unsigned char *value = (const unsigned char *)http_arena(req, h->value_off);
        if (h->name_len == 0)
            __builtin_trap();
        for (uint32_t k = 0; k < h->name_len; k++)
            if (!is_tchar(name[k]))
                __builtin_trap();
        for (uint32_t k = 0; k < h->value_len; k++)
            if (value[k] == '\r' || value[k] == '\n' || value[k] == '\0')
                __builtin_trap();
        if (h->value_len > 0 && (value[0] == ' ' || value[0] == '\t' ||
                                 value[h->value_len - 1] == ' ' || value[h->value_len - 1] == '\t'))
            __builtin_trap(); /* OWS is not part of a value */
    }
    const struct http_target *t = &req->target;
    if (req->method == HTTP_CONNECT || t->scheme != HTTP_SCHEME_NONE) {
        if (t->host[0] == '\0' || t->port == 0 || t->port > 65535 ||
            memchr(t->host, '@', strlen(t->host)) != NULL)
            __builtin_trap();
    }
}

static int sink(void *arg, const char *data, size_t len)
{
    size_t *total = arg;
    *total += len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] + 1;
    const char *in = (const char *)data + 1;
    size_t len = size - 1, pos = 0, body = 0;
    struct http_parser p;
    http_parser_init(&p, MAX_REQUEST_LINE, MAX_HEADER_SIZE, sink, &body);
    int messages = 0;
    while (pos < len && messages < 64) {
        size_t n = len - pos < step ? len - pos : step;
        enum http_feed_result r;
        size_t used = http_parser_feed(&p, in + pos, n, &r);
        pos += used;
        if (r == HTTP_FEED_ERROR)
            break;
        if (r == HTTP_FEED_HEAD) {
            const struct http_request *req = &p.req;
            check_head(&p);
            /* touch everything the proxy reads from a parsed head */
            for (size_t i = 0; i < req->header_count; i++)
                (void)http_request_header_is_hop(req, http_arena(req, req->headers[i].name_off),
                                                 req->headers[i].name_len);
            /* the same bytes as an origin's header block, rewritten for this client */
            struct evbuffer *out = evbuffer_new();
            int close_after = 0;
            http_write_response_head(out, req, 200, "OK", 2, in, len, NULL, &close_after);
            evbuffer_free(out);
            if (req->method == HTTP_CONNECT)
                break;
            http_parser_resume(&p);
            http_parser_feed(&p, "", 0, &r);
        }
        if (r == HTTP_FEED_DONE) {
            messages++;
            http_parser_next(&p);
        }
    }
    http_parser_free(&p);
    return 0;
}
