/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* worker.c — see worker.h. Every worker watches the same listening sockets with its own read
 * event. Whichever wakes first takes what is queued, so by itself that spreads nothing: wrk's 50
 * connections, opened at once, all went to one worker and the other stayed idle. So a worker
 * that accepts a connection while it holds more than one connection above the least-loaded
 * accepting worker hands it over to that worker (Envoy's "exact balance"): keep-alive clients
 * stay where they landed, so their spread at accept time is the spread of the load. A worker
 * that must stop accepting (draining, backpressure) removes its own events and takes no
 * hand-overs. */
#include "worker.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admission.h"
#include "log.h"
#include "shared.h"
#include "upstream.h"

/* Atomic counters: the worker's thread writes them, /metrics reads them from another thread. */
struct worker_counters {
    _Atomic uint64_t requests;
    _Atomic uint64_t responses_by_class[6];
    _Atomic uint64_t bytes_from_clients, bytes_to_clients;
    _Atomic uint64_t connections_accepted;
    _Atomic uint64_t connections_handed_over;
    _Atomic uint64_t tunnels_opened;
    _Atomic uint64_t retries;
    _Atomic uint64_t open_connections, open_tunnels;
    _Atomic uint64_t idle_connections;
};

#define WORKER_PARKED_MAX 64

struct parked {
    evutil_socket_t fd;
    struct sockaddr_storage addr;
    int addr_len;
};

struct worker {
    unsigned id;
    pthread_t thread;
    struct event_base *base;
    struct upstream_multi *upstream;
    struct shared *shared; /* Redis for shared rate limits, or NULL */
    struct admission_queue *admission;
    const struct process *process;
    const struct worker_clients *clients;
    void *clients_state;     /* what clients->attach made */
    struct config *config;   /* current; connections take a reference when they start */
    struct limiter *limiter; /* built for config; likewise */
    struct event **listeners; /* EV_READ on this worker's copies of the listening sockets */
    size_t listener_count;
    int wakeup_fd;        /* eventfd: worker_post_* write it, on_wakeup reads it */
    struct event *wakeup; /* EV_READ on wakeup_fd */
    pthread_mutex_t lock; /* guards pending_config, the message flags and calls */
    struct util_call *calls, *calls_last; /* posted by other threads, run on the loop, in order */
    struct config *pending_config;
    struct limiter *pending_limiter;
    int *pending_listen_fds; /* already this worker's own descriptors */
    size_t pending_listen_count;
    int listen_update;
    int stop_requested, force_stop;
    int draining;
    struct event *trim_timer; /* returns freed heap to the system after many connections folded */
    unsigned freed_since_trim;
    struct event *resume_timer; /* while accepting is paused: checks whether to resume */
    int accept_paused;
    int stopped; /* its loop ended */
    uint64_t pauses;               /* of accepting, since start */
    uint64_t pause_said_ms;        /* when a pause was last logged (at most every 10 s) */
    int pause_said;                /* this pause was: its end is logged too */
    uint64_t accept_error_said_ms; /* likewise for accept() running out of descriptors */
    _Atomic int accepting;              /* neither draining nor paused: may take hand-overs */
    _Atomic uint64_t handovers_pending; /* connections handed to this worker, not yet taken */
    struct parked parked[WORKER_PARKED_MAX]; /* accepted over max_connections, waiting */
    size_t parked_count;
    size_t conn_count, tunnel_count;
    struct worker_counters stats;
};

/* The workers of one process (process.h; server.c makes it before them and frees it after they
 * are joined): who takes a hand-over, and the counts backpressure.max_connections is held to
 * across all of them. */
struct worker_group {
    struct worker *const *_Atomic members; /* NULL until all of them run (worker_group_start) */
    unsigned count;
    /* client connections and tunnels of all workers */
    _Atomic uint64_t open_total;
    /* connections handed over to a worker that has not taken them yet (it counts them in
     * open_total when it does): counted against max_connections meanwhile */
    _Atomic uint64_t handovers_total;
};

struct worker_group *worker_group_new(void) { return calloc(1, sizeof(struct worker_group)); }

void worker_group_free(struct worker_group *g) { free(g); }

uint64_t worker_open_total(const struct worker_group *g) { return atomic_load(&g->open_total); }

static uint64_t committed_total(const struct worker *w)
{
    const struct worker_group *g = w->process->worker_group;
    return atomic_load(&g->open_total) + atomic_load(&g->handovers_total);
}

#define RESUME_CHECK_MS 50
#define REPEAT_LOG_MS 10000

/* For messages about a state that can repeat every RESUME_CHECK_MS: 1 (and *last_ms updated) when
 * the last one is REPEAT_LOG_MS old or there was none. */
static int due(uint64_t *last_ms)
{
    uint64_t now = util_now_ms();
    if (*last_ms != 0 && now - *last_ms < REPEAT_LOG_MS)
        return 0;
    *last_ms = now;
    return 1;
}
/* Connections folded since the last trim before one is worth it, and how often at most. */
#define TRIM_AFTER_FREES 64
#define TRIM_DELAY_MS 1000

/* Workers accept from one socket independently: one may accept right after another reached the
 * cap. Such a connection waits here, unread, until the count is under the cap again, so the cap
 * holds exactly however many workers there are. */
static void keep(struct parked *p, evutil_socket_t fd, const struct sockaddr *addr, int addr_len)
{
    p->fd = fd;
    p->addr_len = addr_len < (int)sizeof p->addr ? addr_len : (int)sizeof p->addr;
    memcpy(&p->addr, addr, (size_t)p->addr_len);
}

static void park(struct worker *w, evutil_socket_t fd, const struct sockaddr *addr, int addr_len)
{
    if (w->parked_count == WORKER_PARKED_MAX) {
        evutil_closesocket(fd); /* cannot happen while accepting pauses at the first parked */
        return;
    }
    keep(&w->parked[w->parked_count++], fd, addr, addr_len);
}

void worker_group_start(struct worker_group *g, struct worker *const *workers, unsigned count)
{
    g->count = count;
    atomic_store(&g->members, workers);
}

void worker_group_stop(struct worker_group *g) { atomic_store(&g->members, NULL); }

static void set_accepting(struct worker *w)
{
    atomic_store(&w->accepting, !w->draining && !w->accept_paused);
}

static uint64_t load_of(struct worker *w)
{
    return atomic_load(&w->stats.open_connections) + atomic_load(&w->stats.open_tunnels) +
           atomic_load(&w->handovers_pending);
}

/* The accepting worker with the fewest connections if it has more than one fewer than w. */
static struct worker *lighter_worker(struct worker *w)
{
    const struct worker_group *g = w->process->worker_group;
    struct worker *const *all = atomic_load(&g->members);
    if (all == NULL || g->count < 2)
        return NULL;
    struct worker *best = NULL;
    uint64_t best_load = load_of(w);
    if (best_load < 2)
        return NULL;
    best_load -= 1; /* hysteresis: a lone connection's difference is no reason to move it */
    for (unsigned i = 0; i < g->count; i++) {
        struct worker *other = all[i];
        if (other == w || !atomic_load(&other->accepting))
            continue;
        uint64_t load = load_of(other);
        if (load < best_load) {
            best = other;
            best_load = load;
        }
    }
    return best;
}

struct handover {
    struct util_call call;
    struct worker *to;
    struct parked conn;
};

/* On the receiving worker's loop; or at worker_destroy, after its loop ended. */
static void on_handover(void *arg)
{
    struct handover *h = arg;
    struct worker *w = h->to;
    if (w->draining || w->stopped)
        evutil_closesocket(h->conn.fd); /* as if it had come after the listener closed */
    else
        w->clients->accept(w->clients_state, h->conn.fd, (struct sockaddr *)&h->conn.addr,
                           h->conn.addr_len);
    /* after accept counted it in open_total, so the cap never sees it missing */
    atomic_fetch_sub(&w->handovers_pending, 1);
    atomic_fetch_sub(&w->process->worker_group->handovers_total, 1);
    free(h);
}

static int hand_over(struct worker *to, evutil_socket_t fd, const struct sockaddr *addr,
                     int addr_len)
{
    struct handover *h = malloc(sizeof *h);
    if (h == NULL)
        return -1;
    h->to = to;
    keep(&h->conn, fd, addr, addr_len);
    h->call.fn = on_handover;
    h->call.arg = h;
    atomic_fetch_add(&to->handovers_pending, 1);
    atomic_fetch_add(&to->process->worker_group->handovers_total, 1);
    worker_post_call(to, &h->call);
    return 0;
}

static void accepted(struct worker *w, evutil_socket_t fd, struct sockaddr *addr, int addr_len)
{
    atomic_fetch_add(&w->stats.connections_accepted, 1);
    uint32_t max = w->config->max_connections;
    if (max > 0 && committed_total(w) >= max) {
        park(w, fd, addr, addr_len);
        worker_pause_accept(w, "max_connections reached");
        return;
    }
    struct worker *lighter = lighter_worker(w);
    if (lighter != NULL && hand_over(lighter, fd, addr, addr_len) == 0)
        atomic_fetch_add(&w->stats.connections_handed_over, 1);
    else
        w->clients->accept(w->clients_state, fd, addr, addr_len);
    if (max > 0 && committed_total(w) >= max)
        worker_pause_accept(w, "max_connections reached");
}

static void unpark(struct worker *w)
{
    uint32_t max = w->config->max_connections;
    size_t served = 0;
    while (served < w->parked_count && (max == 0 || committed_total(w) < max)) {
        struct parked *p = &w->parked[served++];
        w->clients->accept(w->clients_state, p->fd, (struct sockaddr *)&p->addr, p->addr_len);
    }
    memmove(w->parked, w->parked + served, (w->parked_count - served) * sizeof *w->parked);
    w->parked_count -= served;
}

/* Under sustained load keep-alive clients keep some requests waiting for a slot: accepting
 * resumes once the wait is under half of max_inflight, so new clients get their turn (or their
 * 503) instead of starving in the listen queue. */
static int may_resume(const struct worker *w)
{
    uint32_t max = w->config->max_connections;
    return !w->draining &&
           admission_queue_waiting(w->admission) < w->config->max_inflight / 2 + 1 &&
           (max == 0 || committed_total(w) < (uint64_t)max * 9 / 10);
}

/* Polled rather than triggered: connections close on every worker, and a paused worker must
 * notice another worker's closes too. 50 ms is far below any client's patience. */
static void on_resume_check(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    if (!w->accept_paused)
        return;
    unpark(w);
    if (w->parked_count > 0 || !may_resume(w)) {
        struct timeval tv = {0, RESUME_CHECK_MS * 1000};
        evtimer_add(w->resume_timer, &tv);
        return;
    }
    w->accept_paused = 0;
    set_accepting(w);
    for (size_t i = 0; i < w->listener_count; i++)
        event_add(w->listeners[i], NULL);
    if (w->pause_said)
        log_info("worker %u: accepting again", w->id);
}

void worker_pause_accept(struct worker *w, const char *why)
{
    if (w->accept_paused || w->draining)
        return;
    w->accept_paused = 1;
    set_accepting(w);
    for (size_t i = 0; i < w->listener_count; i++)
        event_del(w->listeners[i]);
    w->pauses++;
    /* a cause that lasts pauses and resumes every 50 ms: said once every 10 s, with the count */
    w->pause_said = due(&w->pause_said_ms);
    if (w->pause_said) {
        log_info("worker %u: not accepting: %s (%" PRIu64 " pauses in all)", w->id, why,
                 w->pauses);
    }
    struct timeval tv = {0, RESUME_CHECK_MS * 1000};
    evtimer_add(w->resume_timer, &tv);
}

void worker_slot_freed(struct worker *w) { admission_queue_slot_freed(w->admission); }

/* free() keeps the pages of freed connection state: when thousands of connections go idle at
 * once, their ~4 KB each would stay in RSS as holes in the heap under the small sleepers.
 * malloc_trim gives those pages back; it walks every arena, so at most once a second. */
static void on_trim(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    if (w->freed_since_trim < TRIM_AFTER_FREES)
        return;
    w->freed_since_trim = 0;
    malloc_trim(0);
}

void worker_memory_freed(struct worker *w)
{
    if (++w->freed_since_trim >= TRIM_AFTER_FREES && !evtimer_pending(w->trim_timer, NULL)) {
        struct timeval tv = {TRIM_DELAY_MS / 1000, (TRIM_DELAY_MS % 1000) * 1000};
        evtimer_add(w->trim_timer, &tv);
    }
}

/* Up to ACCEPT_BATCH connections per wake-up: a burst is taken at once (clients over the
 * backpressure caps get their 503 instead of waiting unseen in the queue), yet a storm of
 * connects cannot keep the loop from the connections it serves. Running out of descriptors or
 * memory leaves the connection in the queue, where it would wake this loop again at once:
 * accepting pauses instead, and the resume check retries in 50 ms. */
#define ACCEPT_BATCH 64

static void on_listener_readable(evutil_socket_t listen_fd, short what, void *arg)
{
    struct worker *w = arg;
    for (int n = 0; n < ACCEPT_BATCH && !w->accept_paused && !w->draining; n++) {
        struct sockaddr_storage addr;
        socklen_t addr_len = sizeof addr;
        int fd = accept4(listen_fd, (struct sockaddr *)&addr, &addr_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            accepted(w, fd, (struct sockaddr *)&addr, (int)addr_len);
            continue;
        }
        switch (errno) {
        case EINTR:
        case ECONNABORTED: /* the client gave up while queued */
        case EPROTO:
            continue;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM: {
            if (due(&w->accept_error_said_ms))
                log_warn("worker %u: accept failed: %s (retrying every %d ms)", w->id,
                         strerror(errno), RESUME_CHECK_MS);
            worker_pause_accept(w, "out of descriptors or memory");
            return;
        }
        default:
            if (errno != EAGAIN && errno != EWOULDBLOCK) /* else: the queue is empty */
                log_warn("worker %u: accept failed: %s", w->id, strerror(errno));
            return;
        }
    }
}

static int add_listeners(struct worker *w, int *fds, size_t count);
static void free_listeners(struct worker *w);

static void maybe_finish_drain(struct worker *w)
{
    if (w->draining && w->conn_count == 0 && w->tunnel_count == 0)
        event_base_loopbreak(w->base);
}

static void free_all_connections(struct worker *w)
{
    for (size_t i = 0; i < w->parked_count; i++)
        evutil_closesocket(w->parked[i].fd);
    w->parked_count = 0;
    if (w->clients_state != NULL)
        w->clients->close_all(w->clients_state);
}

static void start_drain(struct worker *w)
{
    w->draining = 1;
    set_accepting(w);
    /* closed, not just disabled: a connect during the drain is refused at once instead of
     * waiting in the backlog until the process exits */
    free_listeners(w);
    w->clients->drain(w->clients_state);
    maybe_finish_drain(w);
}

static void run_calls(struct util_call *call)
{
    while (call != NULL) {
        struct util_call *next = call->next; /* fn may free the node */
        call->fn(call->arg);
        call = next;
    }
}

/* Runs on the worker's thread when another thread posts a message. */
static void on_wakeup(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    uint64_t posted;
    if (read(fd, &posted, sizeof posted) < 0 && errno != EAGAIN)
        log_warn("worker %u: reading its wake-up eventfd: %s", w->id, strerror(errno));
    pthread_mutex_lock(&w->lock);
    struct util_call *calls = w->calls;
    w->calls = w->calls_last = NULL;
    struct config *config = w->pending_config;
    struct limiter *limiter = w->pending_limiter;
    w->pending_config = NULL;
    w->pending_limiter = NULL;
    int stop = w->stop_requested, force = w->force_stop;
    int *listen_fds = w->pending_listen_fds;
    size_t listen_count = w->pending_listen_count;
    int listen_update = w->listen_update;
    w->pending_listen_fds = NULL;
    w->pending_listen_count = 0;
    w->listen_update = 0;
    pthread_mutex_unlock(&w->lock);
    run_calls(calls);
    if (listen_update) {
        free_listeners(w);
        if (add_listeners(w, listen_fds, listen_count) != 0)
            log_error("worker %u: cannot watch the new listeners", w->id);
        free(listen_fds);
    }
    if (config != NULL) {
        config_unref(w->config);
        w->config = config;
        limiter_unref(w->limiter);
        w->limiter = limiter;
        admission_queue_set_max_inflight(w->admission, config->max_inflight);
    }
    if (force) {
        free_all_connections(w);
        event_base_loopbreak(w->base);
        return;
    }
    if (stop && !w->draining)
        start_drain(w);
}

/* Takes ownership of fds (this worker's own duplicates). */
static int add_listeners(struct worker *w, int *fds, size_t count)
{
    struct event **grown = realloc(w->listeners, (count ? count : 1) * sizeof *grown);
    if (grown == NULL) {
        for (size_t i = 0; i < count; i++)
            close(fds[i]);
        return -1;
    }
    w->listeners = grown;
    int status = 0;
    for (size_t i = 0; i < count; i++) {
        evutil_make_socket_nonblocking(fds[i]);
        struct event *l = event_new(w->base, fds[i], EV_READ | EV_PERSIST, on_listener_readable, w);
        if (l == NULL) {
            close(fds[i]);
            status = -1;
            continue;
        }
        if (!w->draining && !w->accept_paused)
            event_add(l, NULL);
        w->listeners[w->listener_count++] = l;
    }
    return status;
}

static void free_listeners(struct worker *w)
{
    for (size_t i = 0; i < w->listener_count; i++) {
        evutil_socket_t fd = event_get_fd(w->listeners[i]);
        event_free(w->listeners[i]);
        close(fd);
    }
    w->listener_count = 0;
}

static int *dup_all(const int *fds, size_t count)
{
    int *copies = calloc(count ? count : 1, sizeof *copies);
    if (copies == NULL)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        copies[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
        if (copies[i] < 0) {
            while (i-- > 0)
                close(copies[i]);
            free(copies);
            return NULL;
        }
    }
    return copies;
}

struct worker *worker_new(unsigned id, struct config *config, struct limiter *limiter,
                          const int *listen_fds, size_t listen_count,
                          const struct process *process, const struct worker_clients *clients)
{
    struct worker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->id = id;
    w->wakeup_fd = -1;
    w->process = process;
    w->clients = clients;
    pthread_mutex_init(&w->lock, NULL);
    w->config = config_ref(config);
    w->limiter = limiter_ref(limiter);
    /* precise timers: held requests are released by timers, and libevent's default coarse clock
     * can fire them a few ms early. No lock: only this worker's thread touches its base once it
     * runs (other threads wake it through wakeup_fd), and the lock cost ~30 lock/unlock pairs per
     * request. */
    struct event_config *cfg = event_config_new();
    if (cfg != NULL)
        event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER | EVENT_BASE_FLAG_NOLOCK);
    w->base = cfg != NULL ? event_base_new_with_config(cfg) : event_base_new();
    if (cfg != NULL)
        event_config_free(cfg);
    if (w->base == NULL)
        goto failed;
    w->upstream = upstream_multi_new(w->base, config->max_inflight);
    w->wakeup_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wakeup_fd < 0)
        goto failed;
    w->wakeup = event_new(w->base, w->wakeup_fd, EV_READ | EV_PERSIST, on_wakeup, w);
    if (w->wakeup != NULL && event_add(w->wakeup, NULL) != 0)
        goto failed;
    w->resume_timer = evtimer_new(w->base, on_resume_check, w);
    w->trim_timer = evtimer_new(w->base, on_trim, w);
    if (w->upstream == NULL || w->wakeup == NULL || w->resume_timer == NULL ||
        w->trim_timer == NULL)
        goto failed;
    w->shared = shared_new(w->base, config);
    w->admission = admission_queue_new(w->base, w->upstream, w->shared, process->retry_budget);
    if (w->admission != NULL)
        admission_queue_set_post(w->admission, worker_post_call, w);
    if (w->admission == NULL)
        goto failed;
    admission_queue_set_max_inflight(w->admission, config->max_inflight);
    w->clients_state = clients->attach(w);
    if (w->clients_state == NULL)
        goto failed;
    /* each worker gets its own descriptors for the shared sockets so each can free its own */
    int *fds = dup_all(listen_fds, listen_count);
    if (fds == NULL)
        goto failed;
    int status = add_listeners(w, fds, listen_count);
    free(fds);
    if (status != 0)
        goto failed;
    set_accepting(w);
    return w;
failed:
    worker_free(w);
    return NULL;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_dispatch(w->base);
    w->stopped = 1; /* hand-overs that still arrive run at worker_destroy and close */
    atomic_store(&w->accepting, 0);
    free_all_connections(w); /* after a forced stop or when draining is complete */
    return NULL;
}

int worker_run(struct worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

void worker_join(struct worker *w) { pthread_join(w->thread, NULL); }

int worker_timedjoin(struct worker *w, const struct timespec *until)
{
    return pthread_timedjoin_np(w->thread, NULL, until) == 0 ? 0 : -1;
}

void worker_free(struct worker *w)
{
    if (w == NULL)
        return;
    run_calls(w->calls); /* posted after the loop stopped: they only free what they carry */
    w->calls = w->calls_last = NULL;
    free_listeners(w);
    free(w->listeners);
    if (w->clients_state != NULL)
        w->clients->detach(w->clients_state);
    admission_queue_free(w->admission);
    for (size_t i = 0; i < w->pending_listen_count; i++)
        close(w->pending_listen_fds[i]);
    free(w->pending_listen_fds);
    shared_free(w->shared);
    upstream_multi_free(w->upstream);
    if (w->wakeup != NULL)
        event_free(w->wakeup);
    if (w->wakeup_fd >= 0)
        close(w->wakeup_fd);
    if (w->resume_timer != NULL)
        event_free(w->resume_timer);
    if (w->trim_timer != NULL)
        event_free(w->trim_timer);
    if (w->base != NULL)
        event_base_free(w->base);
    config_unref(w->pending_config);
    config_unref(w->config);
    limiter_unref(w->pending_limiter);
    limiter_unref(w->limiter);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* The worker's base has no lock (see worker_new): another thread must never call event_active
 * on it. An eventfd write is safe from any thread and wakes the loop through on_wakeup. */
static void wake(struct worker *w)
{
    uint64_t one = 1;
    if (write(w->wakeup_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        log_error("worker %u: cannot wake it: %s", w->id, strerror(errno));
}

void worker_post_call(void *target, struct util_call *call)
{
    struct worker *w = target;
    call->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->calls_last != NULL)
        w->calls_last->next = call;
    else
        w->calls = call;
    w->calls_last = call;
    pthread_mutex_unlock(&w->lock);
    wake(w);
}

void worker_post_stop(struct worker *w, int force)
{
    pthread_mutex_lock(&w->lock);
    w->stop_requested = 1;
    w->force_stop |= force;
    pthread_mutex_unlock(&w->lock);
    wake(w);
}

int worker_post_listeners(struct worker *w, const int *listen_fds, size_t count)
{
    int *fds = dup_all(listen_fds, count);
    if (fds == NULL)
        return -1;
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < w->pending_listen_count; i++)
        close(w->pending_listen_fds[i]);
    free(w->pending_listen_fds);
    w->pending_listen_fds = fds;
    w->pending_listen_count = count;
    w->listen_update = 1;
    pthread_mutex_unlock(&w->lock);
    wake(w);
    return 0;
}

void worker_post_config(struct worker *w, struct config *config, struct limiter *limiter)
{
    pthread_mutex_lock(&w->lock);
    config_unref(w->pending_config);
    limiter_unref(w->pending_limiter);
    w->pending_config = config_ref(config);
    w->pending_limiter = limiter_ref(limiter);
    pthread_mutex_unlock(&w->lock);
    wake(w);
}

/* ---- bookkeeping for conn.c and tunnel.c ------------------------------------------------------ */

/* The worker keeps the counts that decide when a drain is complete. */
void worker_conn_added(struct worker *w)
{
    w->conn_count++;
    atomic_fetch_add(&w->stats.open_connections, 1);
    atomic_fetch_add(&w->process->worker_group->open_total, 1);
}

void worker_conn_removed(struct worker *w)
{
    w->conn_count--;
    atomic_fetch_sub(&w->stats.open_connections, 1);
    atomic_fetch_sub(&w->process->worker_group->open_total, 1);
    maybe_finish_drain(w);
}

void worker_tunnel_added(struct worker *w)
{
    w->tunnel_count++;
    atomic_fetch_add(&w->stats.tunnels_opened, 1);
    atomic_fetch_add(&w->stats.open_tunnels, 1);
    atomic_fetch_add(&w->process->worker_group->open_total, 1);
}

void worker_tunnel_removed(struct worker *w)
{
    w->tunnel_count--;
    atomic_fetch_sub(&w->stats.open_tunnels, 1);
    atomic_fetch_sub(&w->process->worker_group->open_total, 1);
    maybe_finish_drain(w);
}

void worker_count_response(struct worker *w, int status, uint64_t bytes_in, uint64_t bytes_out)
{
    unsigned cls = status >= 100 && status < 600 ? (unsigned)status / 100 : 0;
    atomic_fetch_add(&w->stats.responses_by_class[cls], 1);
    atomic_fetch_add(&w->stats.bytes_from_clients, bytes_in);
    atomic_fetch_add(&w->stats.bytes_to_clients, bytes_out);
}

void worker_count_request(struct worker *w) { atomic_fetch_add(&w->stats.requests, 1); }
void worker_count_retry(struct worker *w) { atomic_fetch_add(&w->stats.retries, 1); }

void worker_idle_changed(struct worker *w, int delta)
{
    if (delta > 0)
        atomic_fetch_add(&w->stats.idle_connections, (uint64_t)delta);
    else
        atomic_fetch_sub(&w->stats.idle_connections, (uint64_t)-delta);
}

size_t worker_conn_count(const struct worker *w) { return w->conn_count; }
struct event_base *worker_base(const struct worker *w) { return w->base; }
struct upstream_multi *worker_upstream(const struct worker *w) { return w->upstream; }
struct admission_queue *worker_admission(const struct worker *w) { return w->admission; }
const struct process *worker_process(const struct worker *w) { return w->process; }
struct config *worker_config(const struct worker *w) { return w->config; }
struct limiter *worker_limiter(const struct worker *w) { return w->limiter; }
int worker_draining(const struct worker *w) { return w->draining; }
void *worker_clients_state(const struct worker *w) { return w->clients_state; }
unsigned worker_index(const struct worker *w) { return w->id; }

void worker_stats_read(const struct worker *w, struct worker_stats_snapshot *out)
{
    /* the fields are _Atomic: atomic_load needs a non-const object in C11's generic signature */
    struct worker_counters *c = (struct worker_counters *)&w->stats;
    out->requests = atomic_load(&c->requests);
    for (size_t i = 0; i < 6; i++)
        out->responses_by_class[i] = atomic_load(&c->responses_by_class[i]);
    out->bytes_from_clients = atomic_load(&c->bytes_from_clients);
    out->bytes_to_clients = atomic_load(&c->bytes_to_clients);
    out->connections_accepted = atomic_load(&c->connections_accepted);
    out->connections_handed_over = atomic_load(&c->connections_handed_over);
    out->tunnels_opened = atomic_load(&c->tunnels_opened);
    out->retries = atomic_load(&c->retries);
    out->open_connections = atomic_load(&c->open_connections);
    out->open_tunnels = atomic_load(&c->open_tunnels);
    out->idle_connections = atomic_load(&c->idle_connections);
    out->upstream_transfers = w->upstream != NULL ? upstream_multi_active(w->upstream) : 0;
    struct shared_stats shared;
    shared_stats(w->shared, &shared);
    out->shared_admitted = shared.admitted;
    out->shared_delayed = shared.delayed;
    out->shared_rejected = shared.rejected;
    out->shared_errors = shared.errors;
    out->shared_configured = w->shared != NULL;
    out->shared_connected = shared.connected != 0;
}
