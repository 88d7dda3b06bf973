/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* http_response.h — the header rules between client and origin: hop-by-hop removal both ways,
 * our Via entry and loop detection, the client's response head written from the origin's, status
 * lines and Retry-After. No I/O beyond filling an evbuffer it is given; no parsing of requests
 * (http.h) and no knowledge of connections or curl handles. */
#ifndef RLPROXY_HTTP_RESPONSE_H
#define RLPROXY_HTTP_RESPONSE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "http.h"

struct evbuffer;

/* Our Via entry, both directions (RFC 9110 7.6.3): "1.1 rlproxy-XXXXXXXX", where the suffix is
 * random per process so that a request that comes back to us is recognised (a loop) while a chain
 * of rlproxies is not mistaken for one. */
const char *http_via(void);
void http_via_init(uint32_t instance_id);
/* 1 when one of the request's Via headers carries our own entry. */
int http_via_has_ours(const struct http_request *r);

/* 1 when a request header must not be forwarded: hop-by-hop per RFC 9110 7.6.1, the ones the
 * proxy regenerates (Host, Content-Length, Transfer-Encoding, Expect) and those the client's
 * Connection header names. */
int http_request_header_is_hop(const struct http_request *r, const char *name, size_t name_len);

/* Same for a response header, given the response's Connection value (may be NULL). */
int http_response_header_is_hop(const char *name, size_t name_len, const char *connection,
                                 size_t connection_len);

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
