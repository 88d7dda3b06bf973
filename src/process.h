/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* process.h — the process-wide objects that every worker and connection share: made and freed by
 * server.c (which owns them), handed to each worker, read through worker_process(). Each object
 * is thread-safe on its own; this header only gathers them and has no code. */
#ifndef RLPROXY_PROCESS_H
#define RLPROXY_PROCESS_H

struct retry_budget;
struct client_slots;
struct credential_key;
struct worker_group;
struct metrics_histograms;
struct tls_interceptor;
struct auth_pool;

struct process {
    struct retry_budget *retry_budget; /* retries over all workers (retry.budget) */
    struct client_slots *client_slots; /* access.max_connections_per_client */
    /* hashes header values of key: header:NAME; random per process, so the hashes of one run
     * cannot be matched with another's (shared rules hash under shared.key_secret instead) */
    struct credential_key *credential_key;
    /* every worker, for hand-overs, and the connection counts backpressure.max_connections caps */
    struct worker_group *worker_group;
    /* per worker, per rule request histograms (/metrics); workers write, the admin reads */
    struct metrics_histograms *histograms;
    /* tls_intercept: the CA, the leaf key and the cache of minted leaves */
    struct tls_interceptor *tls;
    /* the threads that check proxy passwords (crypt(3)) off the workers' loops */
    struct auth_pool *auth_pool;
    /* (the count of rate-limit keys is not here: it belongs to server.c's limiter and the ones
     * reloads build over it, as the windows it counts do; limiter.c) */
};

#endif
