/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* intercept.h — an opened (intercepted) CONNECT tunnel as the requests inside it see it: the
 * host and port the client asked to CONNECT to (every request inside must be for them) and the
 * user who opened it. Pure: the TLS itself is client.c's and tls.c's. */
#ifndef RLPROXY_INTERCEPT_H
#define RLPROXY_INTERCEPT_H

#include <stddef.h>

#include "http.h"

struct intercept {
    char host[256];
    unsigned port;
    char user[256];
};

/* NULL when out of memory. */
struct intercept *intercept_new(const char *host, unsigned port, const char *user);

/* Requests inside come in origin form ("GET /x"); they are for the tunnel's host. An absolute URL
 * must name that host too, and a CONNECT cannot be nested. 0 when r now targets
 * https://host:port; else 400 with why. */
int intercept_adopt(const struct intercept *t, struct http_request *r, char *why, size_t why_len);

/* What the access log shows: "https://host:port/path" for an origin-form request inside the
 * tunnel, else the target as sent. Returns the text and its length in *len (buf may be used). */
const char *intercept_target_text(const struct intercept *t, const struct http_request *r,
                                  char *buf, size_t buf_len, size_t *len);

#endif
