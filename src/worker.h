/* worker.h — one thread: its event_base, its CURLM (struct upstream_multi), its listeners and every
 * client connection and tunnel it accepted, start to finish. Nothing here is touched by another
 * thread except through worker_post_* (which wake the loop through an eventfd: the base has no
 * lock). */
#ifndef RLPROXY_WORKER_H
#define RLPROXY_WORKER_H

#include <event2/event.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "limiter.h"
#include "upstream.h"
#include "util.h"

struct conn;
struct sleeper;
struct tunnel;

struct worker_stats {
    _Atomic uint64_t requests;
    _Atomic uint64_t responses_by_class[6]; /* index status/100; 0 = aborted */
    _Atomic uint64_t bytes_from_clients, bytes_to_clients;
    _Atomic uint64_t connections_accepted;
    _Atomic uint64_t connections_handed_over; /* accepted here, served by a lighter worker */
    _Atomic uint64_t tunnels_opened;
    _Atomic uint64_t retries;
    _Atomic uint64_t open_connections, open_tunnels; /* gauges */
    _Atomic uint64_t idle_connections; /* gauge: open connections folded into sleepers (conn.c) */
};

struct worker {
    unsigned id;
    pthread_t thread;
    struct event_base *base;
    struct upstream_multi *upstream;
    struct shared *shared; /* Redis for shared rate limits, or NULL */
    struct config *config;   /* current; connections take a reference when they start */
    struct limiter *limiter; /* built for config; likewise */
    struct event **listeners; /* EV_READ on this worker's copies of the listening sockets */
    size_t listener_count;
    int wakeup_fd;       /* eventfd: worker_post_* write it, on_wakeup reads it */
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
    struct conn *conns;     /* intrusive list */
    struct sleeper *sleepers; /* idle connections folded to their socket (conn.c), a list */
    struct pool *sleeper_pool; /* where they live (made by conn.c when first needed) */
    size_t sleeper_count;
    struct event *trim_timer; /* returns freed heap to the system after many connections folded */
    unsigned freed_since_trim;
    struct conn *slot_first, *slot_last; /* waiting for an upstream slot (max_inflight), FIFO */
    size_t slot_waiting;
    struct event *slot_event;   /* runs conn_start_waiting from the loop */
    struct event *resume_timer; /* while accepting is paused: checks whether to resume */
    int accept_paused;
    int stopped; /* its loop ended */
    uint64_t pauses;                /* of accepting, since start */
    uint64_t pause_said_ms;         /* when a pause was last logged (at most every 10 s) */
    int pause_said;                 /* this pause was: its end is logged too */
    uint64_t accept_error_said_ms;  /* likewise for accept() running out of descriptors */
    _Atomic int accepting;                /* neither draining nor paused: may take hand-overs */
    _Atomic uint64_t handovers_pending; /* connections handed to this worker, not yet taken */
#define WORKER_PARKED_MAX 64
    struct parked {
        evutil_socket_t fd;
        struct sockaddr_storage addr;
        int addr_len;
    } parked[WORKER_PARKED_MAX]; /* accepted over max_connections, waiting to be served */
    size_t parked_count;
    struct tunnel *tunnels; /* intrusive list */
    size_t conn_count, tunnel_count;
    struct worker_stats stats;
};

/* listen_fds are shared by every worker (each watches its own copies of them). */
int worker_init(struct worker *w, unsigned id, struct config *config, struct limiter *limiter,
                const int *listen_fds, size_t listen_count);
int worker_run(struct worker *w); /* starts the thread */
void worker_join(struct worker *w);
void worker_destroy(struct worker *w);

/* From any thread: call->fn(call->arg) runs soon on w's loop (w is a struct worker *; void * so
 * that it fits util_post_fn). After the worker stopped, pending calls run at worker_destroy. */
void worker_post_call(void *w, struct util_call *call);

/* From the main thread: once every worker runs, workers hand connections to a lighter one
 * (worker.c); stop before they are destroyed. */
void worker_group_start(struct worker *workers, unsigned count);
void worker_group_stop(void);

/* From the main thread. */
void worker_post_stop(struct worker *w, int force);
void worker_post_config(struct worker *w, struct config *config, struct limiter *limiter);
/* Replace the worker's listeners by ones on these sockets (the worker dups them). 0 or -1. */
int worker_post_listeners(struct worker *w, const int *listen_fds, size_t count);

/* From the worker's own thread. */
/* Client connections (struct conn or sleeper), counted against max_connections. */
void worker_conn_added(struct worker *w);
void worker_conn_removed(struct worker *w);
/* A connection's state was freed (folded into a sleeper): after many, the heap is trimmed. */
void worker_memory_freed(struct worker *w);
void worker_tunnel_added(struct worker *w, struct tunnel *t);
void worker_tunnel_removed(struct worker *w, struct tunnel *t);
void worker_count_response(struct worker *w, int status, uint64_t bytes_in, uint64_t bytes_out);
/* Backpressure: stop accepting until connections drop below 90% of max_connections and no
 * request waits for an upstream slot. */
void worker_pause_accept(struct worker *w, const char *why);
/* An upstream transfer ended: let a waiting request start (from the loop, not from here). */
void worker_slot_freed(struct worker *w);
uint64_t worker_open_total(void); /* client connections + tunnels, process-wide */

/* ---- read-only views for metrics (from any thread) -------------------------------------------- */
/* A copy of one worker's counters and gauges, read with atomic loads: readers outside worker.c
 * (metrics.c) need no knowledge of struct worker's layout. */
struct worker_stats_snapshot {
    uint64_t requests;
    uint64_t responses_by_class[6]; /* index status/100; 0 = aborted */
    uint64_t bytes_from_clients, bytes_to_clients;
    uint64_t connections_accepted, connections_handed_over;
    uint64_t tunnels_opened, retries;
    uint64_t open_connections, open_tunnels, idle_connections; /* gauges */
    uint64_t upstream_transfers;                               /* gauge: in the worker's CURLM */
    uint64_t shared_admitted, shared_delayed, shared_rejected, shared_errors;
    uint64_t shared_configured, shared_connected; /* 0 or 1 */
};
void worker_stats_read(const struct worker *w, struct worker_stats_snapshot *out);
/* The index-th of `count` workers started together (server.c's array); the one place that knows
 * how the group is laid out, so that callers can walk it without struct worker's size. */
const struct worker *worker_nth(const struct worker *workers, unsigned index);
/* 0 .. workers-1: the worker's place in its group, for per-worker tables kept elsewhere. */
unsigned worker_index(const struct worker *w);

#endif
