/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* sleeper.c — see sleeper.h. A new connection starts as a sleeper, so a connection that never
 * sends costs as little as an idle one. */
#include "sleeper.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "access.h"
#include "log.h"
#include "pool.h"
#include "util.h"
#include "worker.h"

#define SLEEPER_BLOCK_BYTES (64 * 1024) /* sleepers are pooled in mmap'd blocks of this size */

struct sleeper {
    struct event ev;
    struct sleepers *set;
    struct sleeper *prev, *next;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } addr;
    socklen_t addr_len;
    int has_client_slot;
};

struct sleepers {
    struct worker *worker;
    sleeper_wake_fn wake;
    void *wake_arg;
    struct sleeper *first;
    struct pool *pool; /* made when the first connection sleeps */
    size_t count;
};

struct sleepers *sleepers_new(struct worker *w, sleeper_wake_fn wake, void *arg)
{
    struct sleepers *set = calloc(1, sizeof *set);
    if (set == NULL)
        return NULL;
    set->worker = w;
    set->wake = wake;
    set->wake_arg = arg;
    return set;
}

static void sleeper_free(struct sleeper *s, int close_socket)
{
    struct sleepers *set = s->set;
    struct worker *w = set->worker;
    evutil_socket_t fd = event_get_fd(&s->ev);
    event_del(&s->ev);
    UTIL_LIST_UNLINK(set->first, s);
    set->count--;
    worker_idle_changed(w, -1);
    if (close_socket) {
        if (s->has_client_slot)
            access_client_slot_give(worker_process(w)->client_slots, &s->addr.sa);
        evutil_closesocket(fd);
        pool_put(set->pool, s);
        worker_conn_removed(w);
        return;
    }
    pool_put(set->pool, s);
}

void sleepers_close_all(struct sleepers *set)
{
    while (set->first != NULL)
        sleeper_free(set->first, 1);
}

void sleepers_free(struct sleepers *set)
{
    if (set == NULL)
        return;
    sleepers_close_all(set);
    pool_free(set->pool);
    free(set);
}

size_t sleepers_count(const struct sleepers *set) { return set->count; }

static void on_sleeper_event(evutil_socket_t fd, short what, void *arg)
{
    struct sleeper *s = arg;
    struct sleepers *set = s->set;
    if (!(what & EV_READ) || worker_draining(set->worker)) {
        sleeper_free(s, 1); /* idle timeout */
        return;
    }
    /* unfolded while our event still watches the socket, so epoll keeps it registered */
    if (set->wake(set->wake_arg, fd, &s->addr.sa, s->addr_len, s->has_client_slot) != 0) {
        log_error("out of memory for a connection: closed");
        sleeper_free(s, 1);
        return;
    }
    sleeper_free(s, 0);
}

int sleepers_add(struct sleepers *set, evutil_socket_t fd, const struct sockaddr *addr,
                 socklen_t addr_len, int has_client_slot, uint64_t timeout_ms)
{
    if (addr_len > sizeof(((struct sleeper *)NULL)->addr))
        return 0; /* not an IP address: stays unfolded */
    if (set->pool == NULL)
        set->pool = pool_new(sizeof(struct sleeper), SLEEPER_BLOCK_BYTES);
    struct sleeper *s = set->pool != NULL ? pool_get(set->pool) : NULL;
    if (s == NULL)
        return 0;
    struct timeval tv;
    util_ms_to_timeval(timeout_ms, &tv);
    if (event_assign(&s->ev, worker_base(set->worker), fd, EV_READ | EV_PERSIST, on_sleeper_event,
                     s) != 0 ||
        event_add(&s->ev, &tv) != 0) {
        pool_put(set->pool, s);
        return 0;
    }
    s->set = set;
    memcpy(&s->addr, addr, addr_len);
    s->addr_len = addr_len;
    s->has_client_slot = has_client_slot;
    UTIL_LIST_PUSH(set->first, s);
    set->count++;
    worker_idle_changed(set->worker, 1);
    return 1;
}
