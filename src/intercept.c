/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* intercept.c — see intercept.h. */
#include "intercept.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct intercept *intercept_new(const char *host, unsigned port, const char *user)
{
    struct intercept *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    snprintf(t->host, sizeof t->host, "%s", host);
    t->port = port;
    snprintf(t->user, sizeof t->user, "%s", user);
    return t;
}

int intercept_adopt(const struct intercept *t, struct http_request *r, char *why, size_t why_len)
{
    if (r->method == HTTP_CONNECT) {
        snprintf(why, why_len, "CONNECT inside an intercepted tunnel to %s", t->host);
        return 400;
    }
    if (r->target.scheme == HTTP_SCHEME_NONE) {
        r->target.scheme = HTTP_SCHEME_HTTPS;
        snprintf(r->target.host, sizeof r->target.host, "%s", t->host);
        r->target.host_is_ipv6 = strchr(t->host, ':') != NULL;
        r->target.port = t->port;
        r->target.path_off = r->target_off;
        r->target.path_len = r->target_len;
        return 0;
    }
    if (strcasecmp(r->target.host, t->host) != 0 || r->target.port != t->port) {
        snprintf(why, why_len, "request for %s:%u inside the tunnel to %s:%u", r->target.host,
                 r->target.port, t->host, t->port);
        return 400;
    }
    r->target.scheme = HTTP_SCHEME_HTTPS;
    return 0;
}

const char *intercept_target_text(const struct intercept *t, const struct http_request *r,
                                  char *buf, size_t buf_len, size_t *len)
{
    const char *target = http_arena(r, r->target_off);
    *len = r->target_len;
    if (t == NULL || r->method == HTTP_CONNECT || r->target_len == 0 || target[0] != '/')
        return target;
    int used = snprintf(buf, buf_len, "https://%s:%u%.*s", t->host, t->port, (int)r->target_len,
                        target);
    *len = used < 0 ? 0 : (size_t)used < buf_len ? (size_t)used : buf_len - 1;
    return buf;
}
