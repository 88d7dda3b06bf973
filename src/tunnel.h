/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* tunnel.h — a CONNECT tunnel: two bufferevents spliced together with watermarks (a side whose
 * peer is slow stops being read), an idle timeout, half-close, and one access-log line at the end.
 * Owns both sockets once started. */
#ifndef RLPROXY_TUNNEL_H
#define RLPROXY_TUNNEL_H

#include <event2/bufferevent.h>
#include <stdint.h>
#include <sys/socket.h>

#include "limiter.h"

struct worker;
struct tunnel;
struct tunnels;

struct tunnel_info {
    char client[64];
    char target[300];
    uint64_t start_ms;
    uint64_t connect_ms; /* time to open the upstream connection */
    uint64_t wait_ms;    /* held by the limiter */
    const char *verdict; /* the limiter's, as in the access log (a static string) */
    char rule[128];      /* the rule that decided, "" for none */
    int paused;
    char user[256];
    struct sockaddr_storage client_addr; /* its access.max_connections_per_client slot */
    struct limiter_flight flight; /* max_concurrent: a tunnel counts in flight while open */
};

/* A worker's open tunnels. */
struct tunnels *tunnels_new(struct worker *w);
void tunnels_close_all(struct tunnels *set);
void tunnels_free(struct tunnels *set); /* closes every tunnel */

/* Takes over `client` (a bufferevent whose input may already hold bytes for the origin) and
 * `upstream_fd`. Returns 0, or -1 having freed both. */
int tunnel_start(struct tunnels *set, struct bufferevent *client, int upstream_fd,
                 const struct tunnel_info *info);

#endif
