/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* conn.h — one client connection and its state machine: reads requests (llhttp via http.c),
 * checks them (access, auth, destinations), hands them to admission.c, then to forward.c for the
 * exchange with the origin or to tunnel.c for a CONNECT, answers in rlproxy's own name through
 * reply.c, logs each request (accesslog.c), keeps the connection alive, and folds an idle one
 * into a sleeper (sleeper.c). Lives and dies on its worker's thread.
 *
 * Its states and their moves are conn_state.h's. */
#ifndef RLPROXY_CONN_H
#define RLPROXY_CONN_H

#include <event2/util.h>
#include <sys/socket.h>

#include "worker.h"

struct conn;
struct sleepers;
struct tunnels;

/* Where a worker's connections live (conn_set.c makes it): conn.c links each connection into
 * the list and folds idle ones into the sleepers; CONNECTs become tunnels there. */
struct conn_home {
    struct worker *worker;
    struct conn *first;
    struct sleepers *sleepers;
    struct tunnels *tunnels;
};

/* A connection reading its first request from fd, counted by the caller already; NULL when out
 * of memory (fd, and the client's slot when has_client_slot, stay the caller's). */
struct conn *conn_open(struct conn_home *home, evutil_socket_t fd, const struct sockaddr *addr,
                       socklen_t addr_len, int has_client_slot);
void conn_free(struct conn *c);
/* Draining: close now if idle, else after the current response. */
void conn_drain(struct conn *c);
struct conn *conn_next(const struct conn *c);
/* Over access.max_connections_per_client: a 429, then the close. */
void conn_refuse_over_cap(struct conn *c);

#endif
