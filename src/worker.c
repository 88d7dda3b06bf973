/* worker.c — see worker.h. Every worker watches the same listening sockets with its own
 * evconnlistener: whichever loop is idle wakes first and accepts, which spreads load without a
 * hand-off queue, and a worker that must stop accepting (draining, later backpressure) simply
 * disables its own listeners. */
#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "tunnel.h"

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *addr,
                      int addr_len, void *arg)
{
    struct worker *w = arg;
    atomic_fetch_add(&w->stats.connections_accepted, 1);
    conn_accept(w, fd, addr, addr_len);
}

static void on_accept_error(struct evconnlistener *listener, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    log_warn("worker %u: accept failed: %s", ((struct worker *)arg)->id,
             evutil_socket_error_to_string(err));
}

static void maybe_finish_drain(struct worker *w)
{
    if (w->draining && w->conn_count == 0 && w->tunnel_count == 0)
        event_base_loopbreak(w->base);
}

static void free_all_connections(struct worker *w)
{
    while (w->conns != NULL)
        conn_free(w->conns);
    while (w->tunnels != NULL)
        tunnel_free(w->tunnels);
}

static void start_drain(struct worker *w)
{
    w->draining = 1;
    for (size_t i = 0; i < w->listener_count; i++)
        evconnlistener_disable(w->listeners[i]);
    struct conn *c = w->conns;
    while (c != NULL) {
        struct conn *next = conn_next(c);
        conn_drain(c);
        c = next;
    }
    maybe_finish_drain(w);
}

/* Runs on the worker's thread when the main thread posts a message. */
static void on_wakeup(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    pthread_mutex_lock(&w->lock);
    struct config *config = w->pending_config;
    w->pending_config = NULL;
    int stop = w->stop_requested, force = w->force_stop;
    pthread_mutex_unlock(&w->lock);
    if (config != NULL) {
        config_unref(w->config);
        w->config = config;
    }
    if (force) {
        free_all_connections(w);
        event_base_loopbreak(w->base);
        return;
    }
    if (stop && !w->draining)
        start_drain(w);
}

int worker_init(struct worker *w, unsigned id, struct config *config, const int *listen_fds,
                size_t listen_count)
{
    memset(w, 0, sizeof *w);
    w->id = id;
    pthread_mutex_init(&w->lock, NULL);
    w->config = config_ref(config);
    w->base = event_base_new();
    if (w->base == NULL)
        return -1;
    w->upstream = upstream_multi_new(w->base);
    w->wakeup = event_new(w->base, -1, EV_PERSIST, on_wakeup, w);
    w->listeners = calloc(listen_count ? listen_count : 1, sizeof *w->listeners);
    if (w->upstream == NULL || w->wakeup == NULL || w->listeners == NULL)
        return -1;
    for (size_t i = 0; i < listen_count; i++) {
        /* each worker gets its own descriptor for the shared socket so each can free its own */
        int fd = dup(listen_fds[i]);
        if (fd < 0)
            return -1;
        evutil_make_socket_nonblocking(fd);
        w->listeners[i] = evconnlistener_new(w->base, on_accept, w,
                                             LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, -1, fd);
        if (w->listeners[i] == NULL) {
            close(fd);
            return -1;
        }
        w->listener_count++;
        evconnlistener_set_error_cb(w->listeners[i], on_accept_error);
    }
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_dispatch(w->base);
    free_all_connections(w); /* after a forced stop or when draining is complete */
    return NULL;
}

int worker_run(struct worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

void worker_join(struct worker *w) { pthread_join(w->thread, NULL); }

void worker_destroy(struct worker *w)
{
    for (size_t i = 0; i < w->listener_count; i++)
        evconnlistener_free(w->listeners[i]);
    free(w->listeners);
    upstream_multi_free(w->upstream);
    if (w->wakeup != NULL)
        event_free(w->wakeup);
    if (w->base != NULL)
        event_base_free(w->base);
    config_unref(w->pending_config);
    config_unref(w->config);
    pthread_mutex_destroy(&w->lock);
}

void worker_post_stop(struct worker *w, int force)
{
    pthread_mutex_lock(&w->lock);
    w->stop_requested = 1;
    w->force_stop |= force;
    pthread_mutex_unlock(&w->lock);
    event_active(w->wakeup, EV_TIMEOUT, 0);
}

void worker_post_config(struct worker *w, struct config *config)
{
    pthread_mutex_lock(&w->lock);
    config_unref(w->pending_config);
    w->pending_config = config_ref(config);
    pthread_mutex_unlock(&w->lock);
    event_active(w->wakeup, EV_TIMEOUT, 0);
}

/* ---- bookkeeping for conn.c and tunnel.c ------------------------------------------------------ */

/* conn.c and tunnel.c link themselves into w->conns / w->tunnels; the worker keeps the counts that
 * decide when a drain is complete. */
void worker_conn_added(struct worker *w, struct conn *c) { w->conn_count++; }

void worker_conn_removed(struct worker *w, struct conn *c)
{
    w->conn_count--;
    maybe_finish_drain(w);
}

void worker_tunnel_added(struct worker *w, struct tunnel *t)
{
    w->tunnel_count++;
    atomic_fetch_add(&w->stats.tunnels_opened, 1);
}

void worker_tunnel_removed(struct worker *w, struct tunnel *t)
{
    w->tunnel_count--;
    maybe_finish_drain(w);
}

void worker_count_response(struct worker *w, int status, uint64_t bytes_in, uint64_t bytes_out)
{
    unsigned cls = status >= 100 && status < 600 ? (unsigned)status / 100 : 0;
    atomic_fetch_add(&w->stats.responses_by_class[cls], 1);
    atomic_fetch_add(&w->stats.bytes_from_clients, bytes_in);
    atomic_fetch_add(&w->stats.bytes_to_clients, bytes_out);
}
