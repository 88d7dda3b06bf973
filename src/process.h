/* process.h — the process-wide objects that every worker and connection share: made and freed by
 * server.c (which owns them), handed to each worker, read through worker_process(). Each object
 * is thread-safe on its own; this header only gathers them and has no code. */
#ifndef RLPROXY_PROCESS_H
#define RLPROXY_PROCESS_H

struct retry_budget;
struct client_slots;
struct credential_key;

struct process {
    struct retry_budget *retry_budget; /* retries over all workers (retry.budget) */
    struct client_slots *client_slots; /* access.max_connections_per_client */
    /* hashes header values of key: header:NAME; random per process, so the hashes of one run
     * cannot be matched with another's (shared rules hash under shared.key_secret instead) */
    struct credential_key *credential_key;
};

#endif
