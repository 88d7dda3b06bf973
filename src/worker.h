/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* worker.h — one thread: its event_base, its CURLM (struct upstream_multi), its listeners, its
 * admission queue, and the counts of the client connections and tunnels it serves. It knows
 * nothing of what a connection is: server.c gives it the functions that accept, drain and close
 * connections (struct worker_clients, conn.c's), so conn.c and tunnel.c depend on the worker and
 * never the other way round. struct worker is opaque; nothing here is touched by another thread
 * except through worker_post_* (which wake the loop through an eventfd: the base has no lock)
 * and the atomic counters read by worker_stats_read. */
#ifndef RLPROXY_WORKER_H
#define RLPROXY_WORKER_H

#include <event2/event.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "config.h"
#include "limiter.h"
#include "process.h"
#include "util.h"

struct worker;
struct admission_queue;
struct shared;
struct upstream_multi;

/* What a worker does with client connections; the per-worker state they need is made by attach
 * on the worker's own thread before it serves and freed by detach after it stopped. */
struct worker_clients {
    void *(*attach)(struct worker *w); /* NULL when out of memory */
    void (*accept)(void *clients, evutil_socket_t fd, const struct sockaddr *addr, int addr_len);
    void (*drain)(void *clients);     /* close the idle ones; the others after their response */
    void (*close_all)(void *clients); /* a forced stop, or the end of a drain */
    void (*detach)(void *clients);
};

/* A copy of one worker's counters and gauges, read with atomic loads (from any thread): readers
 * outside worker.c (metrics.c) need no knowledge of struct worker. */
struct worker_stats_snapshot {
    uint64_t requests;
    uint64_t responses_by_class[6]; /* index status/100; 0 = aborted */
    uint64_t bytes_from_clients, bytes_to_clients;
    uint64_t connections_accepted;
    uint64_t connections_handed_over; /* accepted here, served by a lighter worker */
    uint64_t tunnels_opened, retries;
    uint64_t open_connections, open_tunnels, idle_connections; /* gauges */
    uint64_t upstream_transfers;                               /* gauge: in the worker's CURLM */
    uint64_t shared_admitted, shared_delayed, shared_rejected, shared_errors;
    uint64_t shared_configured, shared_connected; /* 0 or 1 */
};

/* listen_fds are shared by every worker (each watches its own copies of them). NULL on failure. */
struct worker *worker_new(unsigned id, struct config *config, struct limiter *limiter,
                          const int *listen_fds, size_t listen_count,
                          const struct process *process, const struct worker_clients *clients);
int worker_run(struct worker *w); /* starts the thread */
void worker_join(struct worker *w);
/* 0 when joined before `until` (CLOCK_REALTIME), else -1. */
int worker_timedjoin(struct worker *w, const struct timespec *until);
void worker_free(struct worker *w);

/* From any thread: call->fn(call->arg) runs soon on w's loop (w is a struct worker *; void * so
 * that it fits util_post_fn). After the worker stopped, pending calls run at worker_free. */
void worker_post_call(void *w, struct util_call *call);

/* The workers of a process as one object (struct process's worker_group): server.c makes it before
 * the workers and frees it after they are joined. From the main thread: once every worker runs,
 * workers hand connections to a lighter one (worker.c); stop before they are freed. The array
 * must outlive the group. */
struct worker_group;
struct worker_group *worker_group_new(void);
void worker_group_free(struct worker_group *group);
void worker_group_start(struct worker_group *group, struct worker *const *workers, unsigned count);
void worker_group_stop(struct worker_group *group);

/* From the main thread. */
void worker_post_stop(struct worker *w, int force);
void worker_post_config(struct worker *w, struct config *config, struct limiter *limiter);
/* Replace the worker's listeners by ones on these sockets (the worker dups them). 0 or -1. */
int worker_post_listeners(struct worker *w, const int *listen_fds, size_t count);

/* From any thread. */
void worker_stats_read(const struct worker *w, struct worker_stats_snapshot *out);
/* 0 .. workers-1: the worker's place in its group, for per-worker tables kept elsewhere. */
unsigned worker_index(const struct worker *w);
/* client connections + tunnels of every worker of the group */
uint64_t worker_open_total(const struct worker_group *group);

/* From the worker's own thread. */
struct event_base *worker_base(const struct worker *w);
struct upstream_multi *worker_upstream(const struct worker *w);
struct admission_queue *worker_admission(const struct worker *w);
const struct process *worker_process(const struct worker *w);
/* The current config and limiter; a connection takes references when a request starts. */
struct config *worker_config(const struct worker *w);
struct limiter *worker_limiter(const struct worker *w);
int worker_draining(const struct worker *w);
void *worker_clients_state(const struct worker *w); /* what clients->attach returned */
/* Client connections (struct conn or sleeper), counted against max_connections. */
void worker_conn_added(struct worker *w);
void worker_conn_removed(struct worker *w);
size_t worker_conn_count(const struct worker *w);
void worker_idle_changed(struct worker *w, int delta); /* connections folded into sleepers */
/* A connection's state was freed (folded into a sleeper): after many, the heap is trimmed. */
void worker_memory_freed(struct worker *w);
void worker_tunnel_added(struct worker *w);
void worker_tunnel_removed(struct worker *w);
void worker_count_request(struct worker *w);
void worker_count_retry(struct worker *w);
void worker_count_response(struct worker *w, int status, uint64_t bytes_in, uint64_t bytes_out);
/* Backpressure: stop accepting until connections drop below 90% of max_connections and no
 * request waits for an upstream slot. */
void worker_pause_accept(struct worker *w, const char *why);
/* An upstream transfer ended: let a waiting request start (from the loop, not from here). */
void worker_slot_freed(struct worker *w);

#endif
