/* http.h — HTTP/1.x request parsing on top of llhttp (strict mode) plus the header rules a proxy
 * needs: hop-by-hop removal, target parsing, response head rewriting. No I/O: bytes in, structs out,
 * so every hostile input can be a unit test or a fuzz case. */
#ifndef RLPROXY_HTTP_H
#define RLPROXY_HTTP_H

#include <llhttp.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define HTTP_MAX_HEADERS 256
/* Our Via entry, both directions (RFC 9110 7.6.3): "1.1 rlproxy-XXXXXXXX", where the suffix is
 * random per process so that a request that comes back to us is recognised (a loop) while a chain
 * of rlproxies is not mistaken for one. */
struct http_request;
const char *http_via(void);
void http_via_init(uint32_t instance_id);
/* 1 when one of the request's Via headers carries our own entry. */
int http_via_has_ours(const struct http_request *r);

struct evbuffer; /* more header lines than this is a 431 even under the byte limit */

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

/* 1 when a request header must not be forwarded: hop-by-hop per RFC 9110 7.6.1, the ones the
 * proxy regenerates (Host, Content-Length, Transfer-Encoding, Expect) and those the client's
 * Connection header names. */
int http_request_header_is_hop(const struct http_request *r, const char *name, size_t name_len);

/* Same for a response header, given the response's Connection value (may be NULL). */
int http_response_header_is_hop(const char *name, size_t name_len, const char *connection,
                                 size_t connection_len);

/* Parse an absolute-form ("http://h:p/x") or authority-form (CONNECT "h:p") target.
 * Returns 0, or -1 with a reason. */
int http_parse_target(const char *target, size_t len, int is_connect, struct http_target *out,
                      const char **reason);

/* How the body of a response is delimited toward the client. */
enum http_framing {
    HTTP_FRAME_NONE,
    HTTP_FRAME_LENGTH,
    HTTP_FRAME_CHUNKED,
    HTTP_FRAME_CLOSE,
    HTTP_FRAME_INVALID /* the origin's Content-Length is malformed or ambiguous: nothing written */
};

/* Writes the client's response head: our status line with the origin's code and reason, the
 * origin's end-to-end headers in order (duplicates kept), Via, and framing headers. `headers` is
 * curl's raw header block. *close_after is in/out: set when the connection must close after this
 * response. extra_headers (may be NULL) are whole "Name: value\r\n" lines of our own to add.
 * Returns the framing the body must use (HTTP_FRAME_INVALID: the response must not be
 * forwarded). curl has already removed chunked framing. Content-Length is written by us, once,
 * from the origin's checked value; names that are not tokens are dropped, and CR or NUL inside a
 * value or the reason phrase becomes a space. */
enum http_framing http_write_response_head(struct evbuffer *out, const struct http_request *req,
                                           int status, const char *reason, size_t reason_len,
                                           const char *headers, size_t headers_len,
                                           const char *extra_headers, int *close_after);

const char *http_status_reason(int status);

/* An origin's status line as curl hands it over ("HTTP/1.1 200 OK\r\n"): the three-digit code,
 * and the reason phrase as sent (not terminated, without the line end). 0, or -1 when the line is
 * not a status line. */
int http_parse_status_line(const char *line, size_t len, int *status, const char **reason,
                           size_t *reason_len);

/* Retry-After in a response header block (curl's, "Name: value\r\n" lines): delta-seconds or an
 * HTTP-date (RFC 9110 10.2.3), as milliseconds from now (a date in the past is 0); -1 when there
 * is none or it cannot be used. Capped at 999999999 s. */
int64_t http_retry_after_ms(const char *head, size_t len, time_t now);

#endif
