/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* conn_set.c — see conn_set.h. */
#include "conn_set.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>

#include "access.h"
#include "conn.h"
#include "sleeper.h"
#include "tunnel.h"

/* A sleeper's client sent again. */
static int on_sleeper_wake(void *arg, evutil_socket_t fd, const struct sockaddr *addr,
                           socklen_t addr_len, int has_client_slot)
{
    return conn_open(arg, fd, addr, addr_len, has_client_slot) != NULL ? 0 : -1;
}

static void *set_attach(struct worker *w)
{
    struct conn_home *home = calloc(1, sizeof *home);
    if (home == NULL)
        return NULL;
    home->worker = w;
    home->sleepers = sleepers_new(w, on_sleeper_wake, home);
    home->tunnels = tunnels_new(w);
    if (home->sleepers == NULL || home->tunnels == NULL) {
        sleepers_free(home->sleepers);
        tunnels_free(home->tunnels);
        free(home);
        return NULL;
    }
    return home;
}

static void set_accept(void *clients, evutil_socket_t fd, const struct sockaddr *addr,
                       int addr_len)
{
    struct conn_home *home = clients;
    struct worker *w = home->worker;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    worker_conn_added(w);
    socklen_t len = addr_len > 0 ? (socklen_t)addr_len : 0;
    struct client_slots *slots = worker_process(w)->client_slots;
    const struct config *config = worker_config(w);
    if (access_client_slot_take(slots, addr, config->max_connections_per_client)) {
        /* a connection that never sends costs no more than an idle one */
        if (sleepers_add(home->sleepers, fd, addr, len, 1, config->client_idle_timeout_ms) ||
            conn_open(home, fd, addr, len, 1) != NULL)
            return;
        access_client_slot_give(slots, addr);
        evutil_closesocket(fd);
        worker_conn_removed(w);
        return;
    }
    struct conn *c = conn_open(home, fd, addr, len, 0);
    if (c == NULL) {
        evutil_closesocket(fd);
        worker_conn_removed(w);
        return;
    }
    conn_refuse_over_cap(c);
}

/* Draining: idle connections close now, the others after their current response. */
static void set_drain(void *clients)
{
    struct conn_home *home = clients;
    sleepers_close_all(home->sleepers); /* idle: nothing to finish */
    struct conn *c = home->first;
    while (c != NULL) {
        struct conn *next = conn_next(c);
        conn_drain(c);
        c = next;
    }
}

static void set_close_all(void *clients)
{
    struct conn_home *home = clients;
    while (home->first != NULL)
        conn_free(home->first);
    sleepers_close_all(home->sleepers);
    tunnels_close_all(home->tunnels);
}

static void set_detach(void *clients)
{
    struct conn_home *home = clients;
    if (home == NULL)
        return;
    set_close_all(home);
    sleepers_free(home->sleepers);
    tunnels_free(home->tunnels);
    free(home);
}

const struct worker_clients conn_set_clients = {
    .attach = set_attach,
    .accept = set_accept,
    .drain = set_drain,
    .close_all = set_close_all,
    .detach = set_detach,
};
