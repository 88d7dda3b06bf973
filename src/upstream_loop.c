/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* upstream_loop.c — see upstream_loop.h. curl tells us which sockets to watch and when to wake
 * it; we call curl_multi_socket_action and then drain curl_multi_info_read. libcurl is never
 * called from inside its own callbacks: handles are removed only in the info_read loop or from
 * libevent callbacks. */
#include "upstream_loop.h"

#include <event2/event_struct.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

struct upstream_loop {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    int in_timer;                  /* inside on_timer_event's socket_action */
    struct socket_watch **watches; /* by fd */
    size_t watch_cap;
    uint64_t closes; /* connection sockets curl closed, ever */
    upstream_loop_done_fn done;
};


/* One per socket curl asked us to watch, kept with its event for the socket's whole life.
 * curl says CURL_POLL_REMOVE whenever a transfer ends and its connection goes back to the cache,
 * and CURL_POLL_IN again when the next transfer on it waits for the answer; unregistering and
 * registering again in between cost an epoll_ctl DEL and ADD (and an event_new/free) per request.
 * A connection socket (opened through open_socket_cb) last watched for reading stays registered
 * while idle. curl closes connection sockets through close_socket_cb, which unregisters first, so
 * a reused fd number never inherits a stale registration; other sockets (the threaded resolver's
 * socketpair, closed without a callback) are unregistered at CURL_POLL_REMOVE as before. An idle
 * socket that turns readable (the origin closed it) is unregistered; curl finds it dead when it
 * next tries to reuse it, as it does today. */
struct socket_watch {
    struct event ev;
    struct upstream_loop *m;
    curl_socket_t fd;
    short events;     /* what ev is registered for; 0: not registered */
    int curl_watches; /* between curl's CURL_POLL_IN/OUT and its CURL_POLL_REMOVE */
    int conn_socket;  /* opened by open_socket_cb: curl closes it through close_socket_cb */
};

static void on_socket_event(evutil_socket_t fd, short what, void *arg);

static struct socket_watch *watch_get(struct upstream_loop *m, curl_socket_t s, int create)
{
    if (s < 0)
        return NULL;
    if ((size_t)s >= m->watch_cap) {
        if (!create)
            return NULL;
        size_t cap = m->watch_cap ? m->watch_cap : 64;
        while (cap <= (size_t)s)
            cap *= 2;
        struct socket_watch **grown = realloc(m->watches, cap * sizeof *grown);
        if (grown == NULL)
            return NULL;
        memset(grown + m->watch_cap, 0, (cap - m->watch_cap) * sizeof *grown);
        m->watches = grown;
        m->watch_cap = cap;
    }
    struct socket_watch *w = m->watches[s];
    if (w == NULL && create) {
        w = calloc(1, sizeof *w);
        if (w == NULL)
            return NULL;
        w->m = m;
        w->fd = s;
        m->watches[s] = w;
    }
    return w;
}

static int watch_set(struct socket_watch *w, short events)
{
    if (w->events == events)
        return 0;
    if (w->events != 0)
        event_del(&w->ev);
    w->events = 0;
    if (events == 0)
        return 0;
    event_assign(&w->ev, w->m->base, w->fd, events, on_socket_event, w);
    if (event_add(&w->ev, NULL) != 0)
        return -1;
    w->events = events;
    return 0;
}

static void watch_drop(struct upstream_loop *m, curl_socket_t s)
{
    struct socket_watch *w = watch_get(m, s, 0);
    if (w == NULL)
        return;
    watch_set(w, 0);
    m->watches[s] = NULL;
    free(w);
}

/* Finished transfers go to their owner, from here only: never from inside a curl callback. */
static void check_done(struct upstream_loop *m)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE)
            m->done(msg->easy_handle, msg->data.result);
}

/* ---- libevent <-> curl glue ------------------------------------------------------------------- */

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    struct socket_watch *w = arg;
    struct upstream_loop *m = w->m;
    if (!w->curl_watches) { /* idle in curl's cache and readable: the origin closed it */
        watch_set(w, 0);
        return;
    }
    int flags = 0;
    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    int running = 0;
    curl_multi_socket_action(m->multi, fd, flags, &running);
    check_done(m);
}

static void on_timer_event(evutil_socket_t fd, short what, void *arg)
{
    struct upstream_loop *m = arg;
    int running = 0;
    m->in_timer = 1;
    curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    m->in_timer = 0;
    check_done(m);
}

static int curl_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct upstream_loop *m = userp;
    if (what == CURL_POLL_REMOVE) {
        struct socket_watch *w = watch_get(m, s, 0);
        if (w == NULL)
            return 0;
        w->curl_watches = 0;
        if (!w->conn_socket)
            watch_drop(m, s);
        else if (w->events != (EV_READ | EV_PERSIST))
            watch_set(w, 0);
        return 0;
    }
    struct socket_watch *w = watch_get(m, s, 1);
    if (w == NULL)
        return -1;
    short events = EV_PERSIST;
    if (what & CURL_POLL_IN)
        events |= EV_READ;
    if (what & CURL_POLL_OUT)
        events |= EV_WRITE;
    w->curl_watches = 1;
    return watch_set(w, events);
}

/* Set on every easy handle: curl keeps it with each connection it opens. */
static int close_socket_cb(void *arg, curl_socket_t s)
{
    struct upstream_loop *m = arg;
    m->closes++;
    watch_drop(m, s);
    return close(s);
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct upstream_loop *m = userp;
    if (timeout_ms < 0) {
        evtimer_del(m->timer);
        return 0;
    }
    if (timeout_ms == 0 && !m->in_timer) {
        /* due now: run socket_action from the loop (not from here) in this same pass, where a
         * 0 ms timer would first cost an epoll_wait with a zero timeout. Not when the timer's
         * own callback asks again: the loop must get to I/O in between. */
        evtimer_del(m->timer);
        event_active(m->timer, EV_TIMEOUT, 0);
        return 0;
    }
    struct timeval tv;
    util_ms_to_timeval((uint64_t)timeout_ms, &tv);
    evtimer_add(m->timer, &tv);
    return 0;
}

struct upstream_loop *upstream_loop_new(struct event_base *base, upstream_loop_done_fn done)
{
    struct upstream_loop *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->base = base;
    m->done = done;
    m->multi = curl_multi_init();
    m->timer = evtimer_new(base, on_timer_event, m);
    if (m->multi == NULL || m->timer == NULL) {
        upstream_loop_free(m);
        return NULL;
    }
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    return m;
}

void upstream_loop_free(struct upstream_loop *m)
{
    if (m == NULL)
        return;
    if (m->multi != NULL)
        curl_multi_cleanup(m->multi); /* closes cached connections through close_socket_cb */
    for (size_t i = 0; i < m->watch_cap; i++)
        if (m->watches[i] != NULL)
            watch_drop(m, (curl_socket_t)i);
    free(m->watches);
    if (m->timer != NULL)
        event_free(m->timer);
    free(m);
}

CURLM *upstream_loop_multi(const struct upstream_loop *m) { return m->multi; }

uint64_t upstream_loop_closes(const struct upstream_loop *m) { return m->closes; }

void upstream_loop_watch_closes(struct upstream_loop *m, CURL *easy)
{
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, close_socket_cb);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, m);
}

curl_socket_t upstream_loop_open_socket(struct upstream_loop *m,
                                        const struct curl_sockaddr *address)
{
    curl_socket_t s = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    if (s == CURL_SOCKET_BAD)
        return s;
    /* A socket curl closed without the callback (a connect attempt it gave up) may have left a
     * watch under this fd number: the new socket starts from scratch. */
    watch_drop(m, s);
    struct socket_watch *w = watch_get(m, s, 1);
    if (w != NULL)
        w->conn_socket = 1; /* else it is simply unregistered at CURL_POLL_REMOVE */
    return s;
}
