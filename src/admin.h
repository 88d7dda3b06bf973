/* admin.h — the admin endpoint (admin.listen): GET /metrics (Prometheus text) and GET /healthz,
 * served by libevent's evhttp on the main thread, apart from the proxy listeners so that operators
 * can firewall it separately. It reads counters only; it changes nothing. */
#ifndef RLPROXY_ADMIN_H
#define RLPROXY_ADMIN_H

#include <event2/event.h>

#include "config.h"
#include "metrics.h"

struct worker;
struct admin;

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
