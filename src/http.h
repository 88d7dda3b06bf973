/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* http.h — HTTP/1.x request parsing on top of llhttp (strict mode) and target parsing. No I/O:
 * bytes in, structs out, so every hostile input can be a unit test or a fuzz case. What passes
 * between client and origin (hop-by-hop, Via, the response head) is http_response.h's. */
#ifndef RLPROXY_HTTP_H
#define RLPROXY_HTTP_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 256 /* more header lines than this is a 431 even under the byte limit */

struct http_header {
    uint32_t name_off, name_len, value_off, value_len; /* into the request's arena */
};

enum http_scheme { HTTP_SCHEME_NONE, HTTP_SCHEME_HTTP, HTTP_SCHEME_HTTPS };

/* The target, split. For CONNECT only host and port are set. */
struct http_target {
    enum http_scheme scheme;
    char host[256]; /* without brackets for IPv6 literals */
    int host_is_ipv6;
    unsigned port;
    uint32_t path_off, path_len; /* origin-form part ("/a?b") inside the arena; "/" if absent */
};

struct http_request {
    char *arena; /* method, target, header names and values; grows up to the header limit */
    size_t arena_len, arena_cap;
    uint32_t method_off, method_len;
    uint32_t target_off, target_len;
    int method; /* llhttp_method_t */
    unsigned version_major, version_minor;
    struct http_header *headers;
    size_t header_count, header_cap;

    /* derived at the end of the head */
    int64_t content_length; /* -1: none */
    int chunked;
    int has_body;         /* Content-Length > 0 or chunked */
    int keep_alive;       /* what the client asked for (version + Connection) */
    int expect_continue;
    int has_upgrade;
    struct http_target target;
};

enum http_feed_result {
    HTTP_FEED_MORE,  /* everything consumed; feed more */
    HTTP_FEED_HEAD,  /* the head is complete (request struct filled); call http_parser_resume() */
    HTTP_FEED_DONE,  /* the message is complete; call http_parser_next() before the next request */
    HTTP_FEED_ERROR, /* error_status/error_reason set; the connection must close after the reply */
};

typedef int (*http_body_fn)(void *arg, const char *data, size_t len);

struct http_parser {
    llhttp_t llhttp;
    struct http_request req;
    size_t max_request_line, max_header_size;
    size_t head_bytes; /* bytes of the current head seen so far */
    int in_head;
    int started;       /* at least one byte of this request seen */
    char last_byte;    /* to spot a bare LF across feeds */
    int header_state;  /* see http.c */
    const char *feed_end;  /* end of the bytes being fed, to tell folds from read boundaries */
    int value_span_at_end; /* the last header value span ended at feed_end */
    int error_status;
    const char *error_reason;
    http_body_fn on_body;
    void *body_arg;
};

void http_parser_init(struct http_parser *p, size_t max_request_line, size_t max_header_size,
                      http_body_fn on_body, void *body_arg);
void http_parser_free(struct http_parser *p);
/* Consumes up to len bytes and says why it stopped; returns the bytes consumed. */
size_t http_parser_feed(struct http_parser *p, const char *data, size_t len,
                        enum http_feed_result *result);
void http_parser_resume(struct http_parser *p);
void http_parser_next(struct http_parser *p); /* forget the request, expect a new one */

/* Accessors into the arena. */
static inline const char *http_arena(const struct http_request *r, uint32_t off) { return r->arena + off; }
const char *http_header_find(const struct http_request *r, const char *name, size_t *value_len);
size_t http_header_count_named(const struct http_request *r, const char *name);

/* Parse an absolute-form ("http://h:p/x") or authority-form (CONNECT "h:p") target.
 * Returns 0, or -1 with a reason. */
int http_parse_target(const char *target, size_t len, int is_connect, struct http_target *out,
                      const char **reason);

#endif
