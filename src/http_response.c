/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* http_response.c — what passes through between client and origin: the hop-by-hop rules both
 * ways, Via, the response head written to the client from curl's header block, status lines and
 * Retry-After. Pure functions over bytes (the Via token aside); the parser is http.c's. */
#include "http_response.h"

#include <curl/curl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "util.h"

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

/* Reads one "Name: value\r\n" line of curl's header block: its length. A line with no name
 * (the status line, the blank line at the end, one with no colon or starting with one) gets
 * name_len 0. */
static size_t read_header_line(const char *p, const char *end, const char **name, size_t *name_len,
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

/* The next header of the block from *p on, passing over lines with no name, and *p past it: 1,
 * or 0 when the block has no more. */
static int next_header(const char **p, const char *end, const char **name, size_t *name_len,
                       const char **value, size_t *value_len)
{
    while (*p < end) {
        *p += read_header_line(*p, end, name, name_len, value, value_len);
        if (*name_len > 0)
            return 1;
    }
    return 0;
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
    const char *name, *value;
    size_t name_len, value_len;
    while (next_header(&p, end, &name, &name_len, &value, &value_len)) {
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
    const char *name, *value;
    size_t name_len, value_len;
    while (next_header(&p, end, &name, &name_len, &value, &value_len)) {
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
