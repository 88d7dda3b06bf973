/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* admin.h — the admin endpoint (admin.listen): GET /metrics (Prometheus text), GET /healthz,
 * GET /limits (every rule's keys nearest their limit, JSON), POST /limits/RULE/reset?key=KEY
 * (empties one window) and GET / (a page showing /limits), served by libevent's evhttp on the main
 * thread, apart from the proxy listeners so that operators can firewall it separately. With
 * admin.token every request but the page's needs the bearer token. A reset is the only change it
 * makes; it must not decide anything about requests. */
#ifndef RLPROXY_ADMIN_H
#define RLPROXY_ADMIN_H

#include <event2/event.h>

#include "config.h"
#include "metrics.h"

struct worker;
struct admin;

#define ADMIN_LIMITS_MAX_KEYS 100 /* keys per rule in /limits: the nearest to their limit */

struct admin_view {
    struct limiter *limiter; /* current rules, for per-rule metrics */
    struct worker *const *workers;
    unsigned worker_count;
    struct metrics_process process;
    int stopping;
};

/* NULL with an error logged if a listener cannot be bound; a config without admin.listen
 * entries gives an admin that serves nothing. */
struct admin *admin_start(struct event_base *base, const struct config *config,
                          struct admin_view *view);
void admin_free(struct admin *admin);

#endif
