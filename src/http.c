/* http.c — request parsing with llhttp in strict mode, plus the checks llhttp leaves to us (obs-fold,
 * empty header names, a bare LF ending a line, versions other than 1.0/1.1, Transfer-Encoding other
 * than a single final "chunked"). Each of these is a request-smuggling hole in a proxy. */
#include "http.h"

#include <curl/curl.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

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

struct listed_name {
    const char *name;
    size_t len;
};
#define LISTED(s) {s, sizeof s - 1}

/* With their lengths: most header names differ in length from every listed one, so the check
 * (made for every response header) is mostly integer compares, no strlen. */
static const struct listed_name hop_by_hop[] = {
    LISTED("Connection"), LISTED("Keep-Alive"), LISTED("Proxy-Connection"),
    LISTED("Proxy-Authorization"), LISTED("Proxy-Authenticate"), LISTED("TE"), LISTED("Trailer"),
    LISTED("Transfer-Encoding"), LISTED("Upgrade"), {NULL, 0},
};

static int is_listed(const char *name, size_t len, const struct listed_name *list)
{
    for (size_t i = 0; list[i].name != NULL; i++)
        if (len == list[i].len && strncasecmp(name, list[i].name, len) == 0)
            return 1;
    return 0;
}

struct named_token {
    const char *name;
    size_t len;
};

static int token_matches(const char *token, size_t len, void *arg)
{
    const struct named_token *n = arg;
    return len == n->len && strncasecmp(token, n->name, len) == 0;
}

static int named_by_connection(const char *name, size_t name_len, const char *value, size_t len)
{
    struct named_token n = {name, name_len};
    return util_for_each_token(value, len, token_matches, &n);
}

int http_request_header_is_hop(const struct http_request *r, const char *name, size_t name_len)
{
    static const struct listed_name regenerated[] = {
        LISTED("Host"), LISTED("Content-Length"), LISTED("Expect"), {NULL, 0}};
    if (is_listed(name, name_len, hop_by_hop) || is_listed(name, name_len, regenerated))
        return 1;
    for (size_t i = 0; i < r->header_count; i++) {
        const struct http_header *h = &r->headers[i];
        if (util_equals_nocase(r->arena + h->name_off, h->name_len, "Connection") &&
            named_by_connection(name, name_len, r->arena + h->value_off, h->value_len))
            return 1;
    }
    return 0;
}

int http_response_header_is_hop(const char *name, size_t name_len, const char *connection,
                                 size_t connection_len)
{
    if (is_listed(name, name_len, hop_by_hop))
        return 1;
    return connection != NULL && named_by_connection(name, name_len, connection, connection_len);
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

/* name equals the literal, ignoring case: the length first, without a strlen per call */
#define NAME_IS(name, len, lit) ((len) == sizeof(lit) - 1 && strncasecmp((name), (lit), (len)) == 0)

#define HEAD_CONNECTION_TOKENS 16

struct head_scan {
    const char *connection;
    size_t connection_len;
    /* the names the Connection header lists, once, for the copy loop (more: checked the slow way) */
    struct {
        const char *name;
        size_t len;
    } named[HEAD_CONNECTION_TOKENS];
    size_t named_count;
    int named_overflow;
    int64_t content_length;
    int transfer_encoded;
    int invalid; /* Content-Length unusable: not digits, or values that disagree */
};

/* A Content-Length field value: 1*DIGIT, or a list of the same number (RFC 9110 8.6, "5, 5").
 * The number, or -1. */
static int64_t parse_content_length(const char *v, size_t len)
{
    int64_t value = -1;
    size_t i = 0;
    for (;;) {
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        size_t digits = 0;
        int64_t n = 0;
        while (i < len && v[i] >= '0' && v[i] <= '9') {
            if (++digits > 18)
                return -1; /* beyond any body we could count */
            n = n * 10 + (v[i++] - '0');
        }
        if (digits == 0 || (value >= 0 && n != value))
            return -1;
        value = n;
        while (i < len && (v[i] == ' ' || v[i] == '\t'))
            i++;
        if (i == len)
            return value;
        if (v[i++] != ',')
            return -1;
    }
}

/* Iterates "Name: value\r\n" lines of curl's header block. */
static size_t next_header(const char *p, const char *end, const char **name, size_t *name_len,
                          const char **value, size_t *value_len)
{
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    const char *line_end = eol ? eol + 1 : end;
    const char *stop = eol ? eol : end;
    if (stop > p && stop[-1] == '\r')
        stop--;
    const char *colon = memchr(p, ':', (size_t)(stop - p));
    if (colon == NULL) {
        *name_len = 0;
        return (size_t)(line_end - p);
    }
    *name = p;
    *name_len = (size_t)(colon - p);
    const char *v = colon + 1;
    while (v < stop && (*v == ' ' || *v == '\t'))
        v++;
    const char *v_end = stop;
    while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
        v_end--;
    *value = v;
    *value_len = (size_t)(v_end - v);
    return (size_t)(line_end - p);
}

static int note_connection_token(const char *token, size_t len, void *arg)
{
    struct head_scan *s = arg;
    if (s->named_count == HEAD_CONNECTION_TOKENS) {
        s->named_overflow = 1;
        return 1;
    }
    s->named[s->named_count].name = token;
    s->named[s->named_count].len = len;
    s->named_count++;
    return 0;
}

/* http_response_header_is_hop with the Connection header's names already split out */
static int scanned_hop(const struct head_scan *s, const char *name, size_t len)
{
    if (is_listed(name, len, hop_by_hop))
        return 1;
    if (s->named_overflow)
        return http_response_header_is_hop(name, len, s->connection, s->connection_len);
    for (size_t i = 0; i < s->named_count; i++)
        if (len == s->named[i].len && strncasecmp(name, s->named[i].name, len) == 0)
            return 1;
    return 0;
}

static void scan_response_head(const char *h, size_t len, struct head_scan *s)
{
    const char *p = h, *end = h + len;
    s->connection = NULL;
    s->connection_len = 0;
    s->content_length = -1;
    s->transfer_encoded = 0;
    s->invalid = 0;
    s->named_count = 0;
    s->named_overflow = 0;
    while (p < end) {
        const char *name, *value;
        size_t name_len, value_len;
        p += next_header(p, end, &name, &name_len, &value, &value_len);
        if (name_len == 0)
            continue;
        if (NAME_IS(name, name_len, "Connection")) {
            s->connection = value;
            s->connection_len = value_len;
        } else if (NAME_IS(name, name_len, "Transfer-Encoding")) {
            s->transfer_encoded = 1;
        } else if (NAME_IS(name, name_len, "Content-Length")) {
            /* two that disagree would let the client and us frame the body differently */
            int64_t n = parse_content_length(value, value_len);
            if (n < 0 || (s->content_length >= 0 && n != s->content_length))
                s->invalid = 1;
            s->content_length = n;
        }
    }
    if (s->connection != NULL)
        util_for_each_token(s->connection, s->connection_len, note_connection_token, s);
}

/* Appends to space reserved in advance (see http_write_response_head). */
static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* The same for a value or reason phrase from the origin: a CR or NUL inside becomes a space
 * (RFC 9110 5.5), so no line ends anywhere but where we end it. */
static char *put_text(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    if (memchr(s, '\r', n) != NULL || memchr(s, '\0', n) != NULL || memchr(s, '\n', n) != NULL)
        for (size_t i = 0; i < n; i++)
            if (p[i] == '\r' || p[i] == '\0' || p[i] == '\n')
                p[i] = ' ';
    return p + n;
}

/* RFC 9110 5.6.2 tchar */
static const unsigned char tchar[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
    ['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
    ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1,
    ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1,
    ['Q'] = 1, ['R'] = 1, ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
    ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1,
    ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1,
    ['q'] = 1, ['r'] = 1, ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
    ['y'] = 1, ['z'] = 1,
};

static int is_token(const char *s, size_t n)
{
    unsigned char all = n > 0;
    for (size_t i = 0; i < n; i++)
        all &= tchar[(unsigned char)s[i]];
    return all;
}

enum http_framing http_write_response_head(struct evbuffer *out, const struct http_request *r,
                                           int status, const char *reason, size_t reason_len,
                                           const char *headers, size_t headers_len,
                                           const char *extra_headers, int *close_after)
{
    struct head_scan scan;
    scan_response_head(headers, headers_len, &scan);
    if (scan.invalid && !scan.transfer_encoded)
        return HTTP_FRAME_INVALID;
    int no_body = r->method == HTTP_HEAD || status == 204 || status == 304;
    enum http_framing framing;
    if (no_body)
        framing = HTTP_FRAME_NONE;
    else if (scan.content_length >= 0 && !scan.transfer_encoded)
        framing = HTTP_FRAME_LENGTH;
    else if (r->version_minor == 1)
        framing = HTTP_FRAME_CHUNKED;
    else
        framing = HTTP_FRAME_CLOSE;
    if (!r->keep_alive || framing == HTTP_FRAME_CLOSE)
        *close_after = 1;
    const char *via = http_via();
    size_t via_len = strlen(via);
    size_t extra_len = extra_headers != NULL ? strlen(extra_headers) : 0;
    /* The whole head goes in with one reserve/commit: every evbuffer_add on a bufferevent's
     * output runs its callbacks (event_pending, event_add, the base lock), which cost more than
     * the bytes; this loop used to make four of them per header. A header line of n >= 2 bytes
     * ("a:") comes out as at most n + 3 ("a: \r\n"), so 3 * headers_len bounds the lines we
     * copy; the rest is our own text. */
    size_t cap = 3 * headers_len + reason_len + via_len + extra_len + 192;
    struct evbuffer_iovec vec;
    if (evbuffer_reserve_space(out, (ev_ssize_t)cap, &vec, 1) < 1)
        return framing; /* out of memory: no head, the client sees a broken reply */
    char *o = vec.iov_base;
    char code[4] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                    (char)('0' + status % 10), ' '};
    o = put(o, "HTTP/1.1 ", 9);
    o = put(o, code, 4);
    o = put_text(o, reason, reason_len);
    o = put(o, "\r\n", 2);
    const char *p = headers, *end = headers + headers_len;
    while (p < end) {
        const char *name, *value;
        size_t name_len, value_len;
        p += next_header(p, end, &name, &name_len, &value, &value_len);
        if (name_len == 0)
            continue;
        if (scanned_hop(&scan, name, name_len))
            continue;
        /* written once below, from the value checked above */
        if (NAME_IS(name, name_len, "Content-Length"))
            continue;
        /* a name that is not a token (a space before the colon, say) is dropped: a client that
         * read it differently from us could be fed a header we never saw (RFC 9112 5.1) */
        if (!is_token(name, name_len))
            continue;
        o = put(o, name, name_len);
        o = put(o, ": ", 2);
        o = put_text(o, value, value_len);
        o = put(o, "\r\n", 2);
    }
    /* curl decoded a chunked body: a Content-Length next to it is not the body's length. A HEAD
     * or 304 answer keeps the origin's (the length of the body it stands for); 204 has none. */
    if (scan.content_length >= 0 && !scan.transfer_encoded && status != 204) {
        char digits[24]; /* at most 18 (parse_content_length) */
        size_t n = 0;
        for (uint64_t v = (uint64_t)scan.content_length; v > 0 || n == 0; v /= 10)
            digits[n++] = (char)('0' + v % 10);
        o = put(o, "Content-Length: ", 16);
        while (n > 0)
            *o++ = digits[--n];
        o = put(o, "\r\n", 2);
    }
    if (framing == HTTP_FRAME_CHUNKED)
        o = put(o, "Transfer-Encoding: chunked\r\n", 28);
    o = put(o, "Via: ", 5);
    o = put(o, via, via_len);
    o = put(o, "\r\n", 2);
    if (extra_len > 0)
        o = put(o, extra_headers, extra_len);
    if (*close_after)
        o = put(o, "Connection: close\r\n", 19);
    else if (r->version_minor == 0)
        o = put(o, "Connection: keep-alive\r\n", 24);
    o = put(o, "\r\n", 2);
    vec.iov_len = (size_t)(o - (char *)vec.iov_base);
    evbuffer_commit_space(out, &vec, 1);
    return framing;
}

static char via_token[32] = "1.1 rlproxy";

void http_via_init(uint32_t instance_id)
{
    snprintf(via_token, sizeof via_token, "1.1 rlproxy-%08x", instance_id);
}

const char *http_via(void) { return via_token; }

static int via_token_is_ours(const char *token, size_t len, void *arg)
{
    (void)arg;
    size_t ours = strlen(via_token);
    /* "1.1 rlproxy-0123abcd (comment)" still names us */
    return len >= ours && strncasecmp(token, via_token, ours) == 0 &&
           (len == ours || token[ours] == ' ');
}

int http_via_has_ours(const struct http_request *r)
{
    for (size_t i = 0; i < r->header_count; i++) {
        const struct http_header *h = &r->headers[i];
        if (util_equals_nocase(r->arena + h->name_off, h->name_len, "Via") &&
            util_for_each_token(r->arena + h->value_off, h->value_len, via_token_is_ours, NULL))
            return 1;
    }
    return 0;
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 508: return "Loop Detected";
    default: return "Unknown";
    }
}

int http_parse_status_line(const char *line, size_t len, int *status, const char **reason,
                           size_t *reason_len)
{
    if (len < 12 || memcmp(line, "HTTP/", 5) != 0)
        return -1;
    const char *sp = memchr(line, ' ', len);
    if (sp == NULL || (size_t)(line + len - sp) < 4)
        return -1;
    int code = 0;
    for (int i = 1; i <= 3; i++) {
        if (sp[i] < '0' || sp[i] > '9')
            return -1;
        code = code * 10 + (sp[i] - '0');
    }
    const char *r = sp + 4;
    const char *end = line + len;
    while (end > r && (end[-1] == '\r' || end[-1] == '\n'))
        end--;
    if (r < end && *r == ' ')
        r++;
    *status = code;
    *reason = r;
    *reason_len = r < end ? (size_t)(end - r) : 0;
    return 0;
}

int64_t http_retry_after_ms(const char *head, size_t len, time_t now)
{
    const char *p = head, *end = head + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end;
        if ((size_t)(line_end - p) > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
            char value[64];
            const char *v = p + 12;
            while (v < line_end && (*v == ' ' || *v == '\t'))
                v++;
            size_t n = (size_t)(line_end - v);
            while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == ' ' || v[n - 1] == '\t'))
                n--;
            if (n == 0 || n >= sizeof value)
                return -1;
            memcpy(value, v, n);
            value[n] = '\0';
            if (strspn(value, "0123456789") == n)
                return n > 9 ? INT64_C(999999999) * 1000 : (int64_t)strtoll(value, NULL, 10) * 1000;
            time_t when = curl_getdate(value, NULL);
            if (when < 0)
                return -1;
            if (when <= now)
                return 0;
            /* a date decades away (or a misparse of one) gets the same cap as huge seconds */
            return when - now > 999999999 ? INT64_C(999999999) * 1000 : (int64_t)(when - now) * 1000;
        }
        p = eol ? eol + 1 : end;
    }
    return -1;
}
