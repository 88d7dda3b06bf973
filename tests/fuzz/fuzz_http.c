/* fuzz_http.c — libFuzzer target for the request parser (http.c): the input is fed as a stream of
 * pipelined requests, split at a boundary taken from the first byte, the way conn.c feeds reads. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <event2/buffer.h>

#include "http.h"

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
    http_parser_init(&p, 1024, 4096, sink, &body);
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
