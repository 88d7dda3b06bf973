/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* admin_request.c — see admin_request.h. */
#include "admin_request.h"

#include <string.h>

static int is_rule_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-';
}

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..len) into out (at most cap - 1 bytes, NUL-terminated); -1 on a bad escape
 * or when it does not fit. A key may hold any byte but NUL (the limiter's keys never do). */
static int decode(const char *s, size_t len, char *out, size_t cap, size_t *out_len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (len - i < 3)
                return -1;
            int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            ch = (char)(hi << 4 | lo);
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (n + 1 >= cap)
            return -1;
        out[n++] = ch;
    }
    out[n] = '\0';
    *out_len = n;
    return 0;
}

/* The value of parameter `name` in query q[0..len) ("a=1&key=x"): its start and length, or -1. */
static int query_param(const char *q, size_t len, const char *name, const char **value,
                       size_t *value_len)
{
    size_t name_len = strlen(name);
    size_t i = 0;
    while (i <= len) {
        size_t end = i;
        while (end < len && q[end] != '&')
            end++;
        if (end - i > name_len && memcmp(q + i, name, name_len) == 0 && q[i + name_len] == '=') {
            *value = q + i + name_len + 1;
            *value_len = end - i - name_len - 1;
            return 0;
        }
        if (end - i == name_len && memcmp(q + i, name, name_len) == 0) { /* "key" alone: empty */
            *value = q + end;
            *value_len = 0;
            return 0;
        }
        i = end + 1;
    }
    return -1;
}

static void route(struct admin_request *out, enum admin_route r, enum admin_method method, int post)
{
    out->route = r;
    if (post) {
        out->method_allowed = method == ADMIN_METHOD_POST;
        out->allow = "POST";
    } else {
        out->method_allowed = method == ADMIN_METHOD_GET || method == ADMIN_METHOD_HEAD;
        out->allow = "GET, HEAD";
    }
}

/* "/limits/RULE/reset" with the query after it. */
static void parse_reset(enum admin_method method, const char *path, size_t path_len,
                        const char *query, size_t query_len, int has_query,
                        struct admin_request *out)
{
    static const char prefix[] = "/limits/", suffix[] = "/reset";
    size_t p = sizeof prefix - 1, s = sizeof suffix - 1;
    if (path_len <= p + s || memcmp(path + path_len - s, suffix, s) != 0)
        return;
    size_t name_len = path_len - p - s;
    if (name_len >= sizeof out->rule)
        return;
    for (size_t i = 0; i < name_len; i++)
        if (!is_rule_char(path[p + i]))
            return;
    memcpy(out->rule, path + p, name_len);
    out->rule[name_len] = '\0';
    route(out, ADMIN_ROUTE_RESET, method, 1);
    const char *value;
    size_t value_len;
    if (!has_query || query_param(query, query_len, "key", &value, &value_len) != 0) {
        out->route = ADMIN_ROUTE_BAD_REQUEST;
        out->why = "name the key: ?key=KEY (percent-encoded; empty for key: global)";
    } else if (decode(value, value_len, out->key, sizeof out->key, &out->key_len) != 0) {
        out->route = ADMIN_ROUTE_BAD_REQUEST;
        out->why = "the key is not percent-encoded correctly, or is too long";
    }
}

void admin_request_parse(enum admin_method method, const char *target, size_t len,
                         struct admin_request *out)
{
    memset(out, 0, sizeof *out);
    out->route = ADMIN_ROUTE_NOT_FOUND;
    out->method_allowed = 1;
    if (target == NULL || len == 0 || target[0] != '/')
        return;
    const char *question = memchr(target, '?', len);
    size_t path_len = question != NULL ? (size_t)(question - target) : len;
    const char *query = question != NULL ? question + 1 : target + len;
    size_t query_len = len - path_len - (question != NULL);
    static const struct {
        const char *path;
        enum admin_route route;
    } fixed[] = {{"/", ADMIN_ROUTE_PAGE},
                 {"/limits", ADMIN_ROUTE_LIMITS},
                 {"/metrics", ADMIN_ROUTE_METRICS},
                 {"/healthz", ADMIN_ROUTE_HEALTHZ}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        if (strlen(fixed[i].path) == path_len && memcmp(fixed[i].path, target, path_len) == 0) {
            route(out, fixed[i].route, method, 0);
            return;
        }
    }
    parse_reset(method, target, path_len, query, query_len, question != NULL, out);
}

int admin_request_token_ok(const char *authorization, const char *token)
{
    static const char scheme[] = "bearer ";
    if (authorization == NULL || token == NULL)
        return 0;
    size_t n = strlen(authorization);
    if (n < sizeof scheme - 1)
        return 0;
    for (size_t i = 0; i < sizeof scheme - 1; i++) {
        char ch = authorization[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (ch != scheme[i])
            return 0;
    }
    const unsigned char *given = (const unsigned char *)authorization + sizeof scheme - 1;
    const unsigned char *want = (const unsigned char *)token;
    size_t given_len = n - (sizeof scheme - 1), want_len = strlen(token);
    /* every byte of the token is compared whatever the others hold; a different length is a
     * difference too, found without an early return */
    unsigned diff = given_len != want_len;
    for (size_t i = 0; i < want_len; i++)
        diff |= (unsigned)(want[i] ^ (i < given_len ? given[i] : 0u));
    return want_len > 0 && diff == 0;
}
