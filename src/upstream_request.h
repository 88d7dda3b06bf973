/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* upstream_request.h — turns a client's parsed request into what libcurl is given
 * (struct upstream_request): the origin's URL, the request target exactly as the client wrote
 * it, the header list in curl's conventions ("Name;" sends an empty value, "Name:" removes one
 * curl would add: Expect, Accept), hop-by-hop headers dropped, Via added, the parent proxy that
 * applies. Pure apart from allocating the header list; starts nothing (upstream.c does). */
#ifndef RLPROXY_UPSTREAM_REQUEST_H
#define RLPROXY_UPSTREAM_REQUEST_H

#include "config.h"
#include "http.h"
#include "upstream.h"

/* The texts an upstream_request points into, on the caller's stack for the call to
 * upstream_start; the target is allocated only when the path is long. */
struct upstream_request_text {
    char url[400];
    char target_small[512];
    char *target;
    char target_text[1200];
};

/* 0, or -1 when out of memory (nothing left to free). `intercepted`: the request came inside an
 * opened CONNECT tunnel (its messages name https://host:port/path). `drop_headers` (NULL-terminated,
 * or NULL) name request headers not to forward (a rule's cost_header, weight_header). The header list is taken
 * over by upstream_start; on any other path free(req->headers). */
int upstream_request_build(struct upstream_request *req, struct upstream_request_text *text,
                           const struct http_request *r, const struct config *config,
                           int intercepted, const char *const *drop_headers);
/* After upstream_start copied what it needs. */
void upstream_request_text_free(struct upstream_request_text *text);

/* The parent proxy (upstream_proxy) for host, or NULL when it goes direct. */
const char *upstream_request_parent(const struct config *config, const char *host);

#endif
