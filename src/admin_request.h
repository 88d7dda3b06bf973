/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* admin_request.h — what an admin request asks for: its route from the method and the raw
 * request target (path, and for a reset the rule and the percent-decoded key), and whether its
 * Authorization header carries admin.token. Pure functions over bytes from the network, so they
 * are fuzzed (tests/fuzz/fuzz_admin.c); no I/O, no allocation, nothing about the limiter. */
#ifndef RLPROXY_ADMIN_REQUEST_H
#define RLPROXY_ADMIN_REQUEST_H

#include <stddef.h>

#include "limiter.h"

enum admin_route {
    ADMIN_ROUTE_NOT_FOUND,   /* 404 */
    ADMIN_ROUTE_BAD_REQUEST, /* 400: a reset without a valid key= */
    ADMIN_ROUTE_PAGE,        /* GET /: the HTML page */
    ADMIN_ROUTE_LIMITS,      /* GET /limits: JSON */
    ADMIN_ROUTE_METRICS,     /* GET /metrics */
    ADMIN_ROUTE_HEALTHZ,     /* GET /healthz */
    ADMIN_ROUTE_RESET,       /* POST /limits/RULE/reset?key=KEY */
};

enum admin_method { ADMIN_METHOD_GET, ADMIN_METHOD_HEAD, ADMIN_METHOD_POST, ADMIN_METHOD_OTHER };

struct admin_request {
    enum admin_route route;
    int method_allowed;             /* 0: the path exists but not for this method (405) */
    const char *allow;              /* the Allow header for a 405 */
    char rule[64];                  /* RESET: the rule name */
    char key[LIMITER_KEY_TEXT_MAX]; /* RESET: the key, percent-decoded ('+' is a space) */
    size_t key_len;
    const char *why; /* BAD_REQUEST: for the body */
};

/* Parses target[0..len) (origin-form, as sent) for `method` into *out. */
void admin_request_parse(enum admin_method method, const char *target, size_t len,
                         struct admin_request *out);

/* 1 when `authorization` (the header's value, or NULL when absent) is "Bearer TOKEN" with TOKEN
 * equal to `token`; the time taken depends on the lengths only, never on where they differ. */
int admin_request_token_ok(const char *authorization, const char *token);

#endif
