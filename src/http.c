/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* http.c — request parsing with llhttp in strict mode, plus the checks llhttp leaves to us (obs-fold,
 * empty header names, a bare LF ending a line, versions other than 1.0/1.1, Transfer-Encoding other
 * than a single final "chunked"). Each of these is a request-smuggling hole in a proxy. */
#include "http.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util.h"

enum header_state { HS_NONE, HS_FIELD, HS_FIELD_DONE, HS_VALUE, HS_VALUE_DONE };

static struct http_parser *parser_of(llhttp_t *l) { return (struct http_parser *)l->data; }

static int fail(struct http_parser *p, int status, const char *reason)
{
    p->error_status = status;
    p->error_reason = reason;
    return HPE_USER;
}

/* Appends to the arena. The arena is bounded by the header limit (plus slack for NULs), so a
 * hostile head can never make it grow past max_header_size. */
static int arena_append(struct http_parser *p, const char *data, size_t len)
{
    struct http_request *r = &p->req;
    if (r->arena_len + len + 1 > p->max_header_size + 64)
        return fail(p, 431, "request header fields too large");
    if (r->arena_len + len + 1 > r->arena_cap) {
        size_t cap = r->arena_cap ? r->arena_cap : 1024;
        while (cap < r->arena_len + len + 1)
            cap *= 2;
        char *grown = realloc(r->arena, cap);
        if (grown == NULL)
            return fail(p, 503, "out of memory");
        r->arena = grown;
        r->arena_cap = cap;
    }
    memcpy(r->arena + r->arena_len, data, len);
    r->arena_len += len;
    return 0;
}

/* Each token of the head is NUL-terminated in the arena so the rest of the proxy can use it as a C
 * string; llhttp rejects NUL bytes in every part of the head, so no token hides a NUL. */
static int arena_terminate(struct http_parser *p)
{
    if (arena_append(p, "", 0) != 0)
        return HPE_USER;
    p->req.arena[p->req.arena_len++] = '\0';
    return 0;
}

static int on_message_begin(llhttp_t *l)
{
    struct http_parser *p = parser_of(l);
    p->started = 1;
    return 0;
}

static int on_method(llhttp_t *l, const char *at, size_t len)
{
    struct http_parser *p = parser_of(l);
    if (p->req.method_len + len > 32)
        return fail(p, 400, "method too long");
    if (arena_append(p, at, len) != 0)
        return HPE_USER;
    p->req.method_len += (uint32_t)len; /* counted only once stored: the log reads these bytes */
    return 0;
}

static int on_method_complete(llhttp_t *l)
{
    struct http_parser *p = parser_of(l);
    p->req.method_off = (uint32_t)(p->req.arena_len - p->req.method_len);
    if (arena_terminate(p) != 0)
        return HPE_USER;
    p->req.target_off = (uint32_t)p->req.arena_len;
    return 0;
}

static int on_url(llhttp_t *l, const char *at, size_t len)
{
    struct http_parser *p = parser_of(l);
    if (p->req.method_len + p->req.target_len + len + 10 > p->max_request_line)
        return fail(p, 414, "request line too long");
    if (arena_append(p, at, len) != 0)
        return HPE_USER;
    p->req.target_len += (uint32_t)len; /* counted only once stored: the log reads these bytes */
    return 0;
}

static int on_url_complete(llhttp_t *l) { return arena_terminate(parser_of(l)); }

static int on_version_complete(llhttp_t *l)
{
    struct http_parser *p = parser_of(l);
    if (l->http_major != 1 || l->http_minor > 1)
        return fail(p, 505, "HTTP version not supported");
    return 0;
}

static int add_header(struct http_parser *p)
{
    struct http_request *r = &p->req;
    if (r->header_count == HTTP_MAX_HEADERS)
        return fail(p, 431, "too many header fields");
    if (r->header_count == r->header_cap) {
        size_t cap = r->header_cap ? r->header_cap * 2 : 16;
        struct http_header *grown = realloc(r->headers, cap * sizeof *grown);
        if (grown == NULL)
            return fail(p, 503, "out of memory");
        r->headers = grown;
        r->header_cap = cap;
    }
    struct http_header *h = &r->headers[r->header_count++];
    memset(h, 0, sizeof *h);
    h->name_off = (uint32_t)r->arena_len;
    return 0;
}

static int on_header_field(llhttp_t *l, const char *at, size_t len)
{
    struct http_parser *p = parser_of(l);
    if (p->header_state != HS_FIELD) {
        if (add_header(p) != 0)
            return HPE_USER;
        p->header_state = HS_FIELD;
    }
    if (arena_append(p, at, len) != 0)
        return HPE_USER;
    p->req.headers[p->req.header_count - 1].name_len += (uint32_t)len;
    return 0;
}

static int on_header_field_complete(llhttp_t *l)
{
    struct http_parser *p = parser_of(l);
    if (p->header_state != HS_FIELD || p->req.headers[p->req.header_count - 1].name_len == 0)
        return fail(p, 400, "empty header name");
    p->header_state = HS_FIELD_DONE;
    if (arena_terminate(p) != 0)
        return HPE_USER;
    p->req.headers[p->req.header_count - 1].value_off = (uint32_t)p->req.arena_len;
    return 0;
}

static int on_header_value(llhttp_t *l, const char *at, size_t len)
{
    struct http_parser *p = parser_of(l);
    /* A second value span after a completed value is a continuation line (obs-fold, RFC 9112 5.2):
     * refused, since proxies and origins disagree about where such a header ends. */
    if (p->header_state == HS_VALUE_DONE)
        return fail(p, 400, "obsolete line folding in header");
    if (p->header_state != HS_FIELD_DONE && p->header_state != HS_VALUE)
        return fail(p, 400, "malformed header");
    /* llhttp reports a folded line as a further span of the same value; a span that merely
     * continues after a read boundary starts where the previous input ended instead. */
    if (p->header_state == HS_VALUE && !p->value_span_at_end)
        return fail(p, 400, "obsolete line folding in header");
    p->value_span_at_end = at + len == p->feed_end;
    p->header_state = HS_VALUE;
    if (arena_append(p, at, len) != 0)
        return HPE_USER;
    p->req.headers[p->req.header_count - 1].value_len += (uint32_t)len;
    return 0;
}

static int on_header_value_complete(llhttp_t *l)
{
    struct http_parser *p = parser_of(l);
    if (p->header_state == HS_VALUE_DONE)
        return fail(p, 400, "obsolete line folding in header");
    if (p->header_state == HS_FIELD_DONE) /* empty value: no on_header_value span */
        p->header_state = HS_VALUE;
    struct http_header *h = &p->req.headers[p->req.header_count - 1];
    /* trailing whitespace is not part of the value (RFC 9110 5.5) */
    while (h->value_len > 0 &&
           (p->req.arena[h->value_off + h->value_len - 1] == ' ' ||
            p->req.arena[h->value_off + h->value_len - 1] == '\t'))
        h->value_len--;
    p->req.arena_len = h->value_off + h->value_len;
    p->header_state = HS_VALUE_DONE;
    return arena_terminate(p);
}

static int connection_token(const char *token, size_t len, void *arg)
{
    int *flags = arg;
    if (util_equals_nocase(token, len, "close"))
        *flags |= 1;
    else if (util_equals_nocase(token, len, "keep-alive"))
        *flags |= 2;
    return 0;
}

static int validate_framing(struct http_parser *p)
{
    struct http_request *r = &p->req;
    size_t te_len = 0;
    const char *te = http_header_find(r, "Transfer-Encoding", &te_len);
    if (te != NULL) {
        /* Only a single, final "chunked" is accepted: anything else cannot be framed safely. */
        if (http_header_count_named(r, "Transfer-Encoding") != 1 ||
            !util_equals_nocase(te, te_len, "chunked"))
            return fail(p, 400, "unsupported Transfer-Encoding");
        if (r->version_minor == 0)
            return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
        r->chunked = 1;
    }
    r->content_length = -1;
    if (p->llhttp.flags & F_CONTENT_LENGTH)
        r->content_length = (int64_t)p->llhttp.content_length;
    if (r->chunked && r->content_length >= 0)
        return fail(p, 400, "both Content-Length and Transfer-Encoding");
    r->has_body = r->chunked || r->content_length > 0;
    return 0;
}

static int validate_head(struct http_parser *p)
{
    struct http_request *r = &p->req;
    r->method = llhttp_get_method(&p->llhttp);
    r->version_major = p->llhttp.http_major;
    r->version_minor = p->llhttp.http_minor;
    if (r->version_major != 1 || r->version_minor > 1) /* HTTP/0.9: no version on the line */
        return fail(p, 505, "HTTP version not supported");
    if (validate_framing(p) != 0)
        return HPE_USER;

    size_t host_count = http_header_count_named(r, "Host");
    if (host_count > 1 || (host_count == 0 && r->version_minor == 1))
        return fail(p, 400, host_count ? "more than one Host header" : "missing Host header");

    size_t len = 0;
    const char *expect = http_header_find(r, "Expect", &len);
    if (expect != NULL) {
        if (!util_equals_nocase(expect, len, "100-continue"))
            return fail(p, 417, "unsupported Expect");
        r->expect_continue = r->version_minor == 1;
    }

    int flags = 0;
    for (size_t i = 0; i < r->header_count; i++) {
        const struct http_header *h = &r->headers[i];
        if (util_equals_nocase(r->arena + h->name_off, h->name_len, "Connection"))
            util_for_each_token(r->arena + h->value_off, h->value_len, connection_token, &flags);
    }
    r->keep_alive = r->version_minor == 1 ? !(flags & 1) : (flags & 2) && !(flags & 1);

    r->has_upgrade = http_header_find(r, "Upgrade", &len) != NULL;
    /* Upgrade cannot be carried through libcurl; without a body we drop the header (it is
     * hop-by-hop) and forward a plain request, with one we cannot tell where HTTP ends. */
    if (r->has_upgrade && r->method != HTTP_CONNECT && r->has_body)
        return fail(p, 501, "protocol upgrade is not supported; use CONNECT");

    const char *reason = NULL;
    int is_connect = r->method == HTTP_CONNECT;
    if (r->target_len > 0 && r->arena[r->target_off] == '/' && !is_connect)
        r->target.scheme = HTTP_SCHEME_NONE; /* origin-form: the caller explains how to use a proxy */
    else if (http_parse_target(r->arena + r->target_off, r->target_len, is_connect, &r->target,
                               &reason) != 0)
        return fail(p, 400, reason);
    else
        r->target.path_off += r->target_off;
    if (is_connect && r->has_body)
        return fail(p, 400, "CONNECT with a body");
    return 0;
}

static int on_headers_complete(llhttp_t *l)
{
    struct http_parser *p = parser_of(l);
    if (p->header_state == HS_FIELD || p->header_state == HS_FIELD_DONE)
        return fail(p, 400, "malformed header");
    if (validate_head(p) != 0)
        return -1;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *l, const char *at, size_t len)
{
    struct http_parser *p = parser_of(l);
    if (p->on_body != NULL && p->on_body(p->body_arg, at, len) != 0)
        return fail(p, 500, "body sink failed");
    return 0;
}

static int on_message_complete(llhttp_t *l) { return HPE_PAUSED; }

static llhttp_settings_t settings;

static void settings_init_once(void)
{
    static int done;
    if (done)
        return;
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_method = on_method;
    settings.on_method_complete = on_method_complete;
    settings.on_url = on_url;
    settings.on_url_complete = on_url_complete;
    settings.on_version_complete = on_version_complete;
    settings.on_header_field = on_header_field;
    settings.on_header_field_complete = on_header_field_complete;
    settings.on_header_value = on_header_value;
    settings.on_header_value_complete = on_header_value_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
    done = 1;
}

static void request_clear(struct http_request *r)
{
    char *arena = r->arena;
    size_t arena_cap = r->arena_cap;
    struct http_header *headers = r->headers;
    size_t header_cap = r->header_cap;
    memset(r, 0, sizeof *r);
    r->arena = arena;
    r->arena_cap = arena_cap;
    r->headers = headers;
    r->header_cap = header_cap;
    r->content_length = -1;
}

void http_parser_init(struct http_parser *p, size_t max_request_line, size_t max_header_size,
                      http_body_fn on_body_fn, void *body_arg)
{
    /* settings is written once before any worker thread starts (main calls this path first via
     * the config check) and only read afterwards; llhttp never writes it. */
    settings_init_once();
    memset(p, 0, sizeof *p);
    llhttp_init(&p->llhttp, HTTP_REQUEST, &settings);
    p->llhttp.data = p;
    p->max_request_line = max_request_line;
    p->max_header_size = max_header_size;
    p->on_body = on_body_fn;
    p->body_arg = body_arg;
    p->in_head = 1;
    p->req.content_length = -1;
}

void http_parser_free(struct http_parser *p)
{
    free(p->req.arena);
    free(p->req.headers);
    p->req.arena = NULL;
    p->req.headers = NULL;
}

/* Releases a big arena after a request. A small one is kept for the next request on the
 * connection: a connection that stays idle is folded into a sleeper (conn.c), which frees it. */
static void shrink_request(struct http_request *r)
{
    if (r->arena_cap > 4096) {
        free(r->arena);
        r->arena = NULL;
        r->arena_cap = 0;
    }
    if (r->header_cap > 64) {
        free(r->headers);
        r->headers = NULL;
        r->header_cap = 0;
    }
}

void http_parser_next(struct http_parser *p)
{
    shrink_request(&p->req);
    request_clear(&p->req);
    llhttp_reset(&p->llhttp);
    p->llhttp.data = p;
    p->head_bytes = 0;
    p->in_head = 1;
    p->started = 0;
    p->last_byte = 0;
    p->header_state = HS_NONE;
}

void http_parser_resume(struct http_parser *p) { llhttp_resume(&p->llhttp); }

/* llhttp accepts a bare LF as a line end even in strict mode; in a proxy that is a desync
 * between us and an origin that disagrees, so any LF not preceded by CR in the head is refused. */
static int has_bare_lf(struct http_parser *p, const char *data, size_t len)
{
    char prev = p->last_byte;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n' && prev != '\r')
            return 1;
        prev = data[i];
    }
    if (len > 0)
        p->last_byte = data[len - 1];
    return 0;
}

size_t http_parser_feed(struct http_parser *p, const char *data, size_t len,
                        enum http_feed_result *result)
{
    if (p->error_status != 0) {
        *result = HTTP_FEED_ERROR;
        return 0;
    }
    size_t offer = len;
    if (p->in_head && offer > p->max_header_size + 1 - p->head_bytes)
        offer = p->max_header_size + 1 - p->head_bytes; /* never parse far past the limit */
    p->feed_end = data + offer;
    llhttp_errno_t err = llhttp_execute(&p->llhttp, data, offer);
    size_t used = offer;
    if (err != HPE_OK)
        used = (size_t)(llhttp_get_error_pos(&p->llhttp) - data);
    if (p->in_head) {
        if (has_bare_lf(p, data, used)) {
            fail(p, 400, "bare LF in request head");
            *result = HTTP_FEED_ERROR;
            return used;
        }
        p->head_bytes += used;
    }
    switch (err) {
    case HPE_OK:
        if (p->in_head && p->head_bytes > p->max_header_size) {
            fail(p, 431, "request header fields too large");
            *result = HTTP_FEED_ERROR;
        } else {
            *result = HTTP_FEED_MORE;
        }
        return used;
    case HPE_PAUSED:
        if (p->in_head) {
            p->in_head = 0;
            *result = HTTP_FEED_HEAD;
        } else {
            *result = HTTP_FEED_DONE;
        }
        return used;
    case HPE_PAUSED_UPGRADE:
        /* only after message complete, which already paused: nothing more to parse */
        *result = HTTP_FEED_DONE;
        return used;
    default:
        if (p->error_status == 0) {
            p->error_status = (err == HPE_INVALID_VERSION) ? 505 : 400;
            p->error_reason = llhttp_get_error_reason(&p->llhttp);
        }
        *result = HTTP_FEED_ERROR;
        return used;
    }
}

const char *http_header_find(const struct http_request *r, const char *name, size_t *value_len)
{
    for (size_t i = 0; i < r->header_count; i++) {
        const struct http_header *h = &r->headers[i];
        if (util_equals_nocase(r->arena + h->name_off, h->name_len, name)) {
            if (value_len != NULL)
                *value_len = h->value_len;
            return r->arena + h->value_off;
        }
    }
    return NULL;
}

size_t http_header_count_named(const struct http_request *r, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < r->header_count; i++) {
        const struct http_header *h = &r->headers[i];
        if (util_equals_nocase(r->arena + h->name_off, h->name_len, name))
            n++;
    }
    return n;
}


static int parse_port(const char *s, size_t len, unsigned *port)
{
    if (len == 0 || len > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -1;
    *port = v;
    return 0;
}

static int valid_host_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_';
}

/* host[:port] or [v6][:port]; the authority must not carry userinfo. */
static int parse_authority(const char *s, size_t len, struct http_target *out, const char **reason)
{
    const char *host = s, *port = NULL;
    size_t host_len = 0, port_len = 0;
    if (memchr(s, '@', len) != NULL) {
        *reason = "credentials in the URL are not allowed";
        return -1;
    }
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL) {
            *reason = "bad IPv6 literal";
            return -1;
        }
        host = s + 1;
        host_len = (size_t)(close - host);
        size_t rest = len - (size_t)(close + 1 - s);
        if (rest > 0) {
            if (close[1] != ':') {
                *reason = "bad authority";
                return -1;
            }
            port = close + 2;
            port_len = rest - 1;
        }
        out->host_is_ipv6 = 1;
        for (size_t i = 0; i < host_len; i++)
            if (!isxdigit((unsigned char)host[i]) && host[i] != ':' && host[i] != '.') {
                *reason = "bad IPv6 literal";
                return -1;
            }
    } else {
        const char *colon = memchr(s, ':', len);
        host_len = colon ? (size_t)(colon - s) : len;
        if (colon) {
            port = colon + 1;
            port_len = len - host_len - 1;
        }
        for (size_t i = 0; i < host_len; i++)
            if (!valid_host_char(host[i])) {
                *reason = "bad host name";
                return -1;
            }
    }
    if (host_len == 0 || host_len >= sizeof out->host) {
        *reason = host_len ? "host name too long" : "missing host";
        return -1;
    }
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    if (port != NULL && parse_port(port, port_len, &out->port) != 0) {
        *reason = "bad port";
        return -1;
    }
    return 0;
}

int http_parse_target(const char *target, size_t len, int is_connect, struct http_target *out,
                      const char **reason)
{
    memset(out, 0, sizeof *out);
    if (is_connect) {
        if (parse_authority(target, len, out, reason) != 0)
            return -1;
        if (out->port == 0) {
            *reason = "CONNECT target needs host:port";
            return -1;
        }
        return 0;
    }
    size_t skip;
    if (len >= 7 && strncasecmp(target, "http://", 7) == 0) {
        out->scheme = HTTP_SCHEME_HTTP;
        out->port = 80;
        skip = 7;
    } else if (len >= 8 && strncasecmp(target, "https://", 8) == 0) {
        out->scheme = HTTP_SCHEME_HTTPS;
        out->port = 443;
        skip = 8;
    } else {
        *reason = "unsupported URL scheme (only http:// and https://)";
        return -1;
    }
    const char *auth = target + skip;
    size_t rest = len - skip;
    size_t auth_len = 0;
    while (auth_len < rest && auth[auth_len] != '/' && auth[auth_len] != '?')
        auth_len++;
    unsigned default_port = out->port;
    out->port = 0;
    if (parse_authority(auth, auth_len, out, reason) != 0)
        return -1;
    if (out->port == 0)
        out->port = default_port;
    if (memchr(target, '#', len) != NULL) {
        *reason = "fragment in request target";
        return -1;
    }
    out->path_off = (uint32_t)(skip + auth_len);
    out->path_len = (uint32_t)(rest - auth_len);
    return 0;
}
