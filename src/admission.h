/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* admission.h — one request's way to the origin, between its checked head and its upstream
 * transfer: the wait for an upstream slot (backpressure.max_inflight, a FIFO per worker), the
 * rate-limit decision (local limiter, or Redis for shared rules, with shared.on_error), the hold
 * until a reserved slot, origin pauses, and the retry policy with the process's retry budget.
 * Owns its timers and reservations and gives every one of them back; never writes to a client
 * and never frees its owner: it reports through callbacks and the owner (conn.c) answers. Lives
 * on its worker's thread. */
#ifndef RLPROXY_ADMISSION_H
#define RLPROXY_ADMISSION_H

#include <event2/event.h>
#include <stdint.h>

#include "config.h"
#include "limiter.h"
#include "retry.h"

struct shared;
struct shared_request;
struct upstream_multi;

/* A worker's part: its FIFO of requests waiting for an upstream slot and its link to Redis. */
struct admission_queue;

struct admission_queue *admission_queue_new(struct event_base *base,
                                            struct upstream_multi *upstream, struct shared *shared,
                                            struct retry_budget *retry_budget);
void admission_queue_free(struct admission_queue *q);
/* Requests waiting for an upstream slot now. */
size_t admission_queue_waiting(const struct admission_queue *q);
/* An upstream transfer ended: the first waiting request starts, from the loop. */
void admission_queue_slot_freed(struct admission_queue *q);
/* max_inflight of the worker's current config, for starting waiting requests. */
void admission_queue_set_max_inflight(struct admission_queue *q, uint32_t max_inflight);
/* How another thread hands this worker a call (worker_post_call and the worker): a request held
 * in a rule's queue (fair_by, max_concurrent) is told its turn through it. */
void admission_queue_set_post(struct admission_queue *q, util_post_fn post, void *target);

enum admission_wait {
    ADMISSION_WAIT_SLOT,  /* for an upstream slot: the owner stops parsing, the worker accepting */
    ADMISSION_SLOT_GRANTED, /* left the slot queue: the owner may read again */
    ADMISSION_WAIT_ADMIT, /* held by the limiter, Redis, an origin's pause or a retry's back-off */
};

struct admission_callbacks {
    void (*wait)(void *owner, enum admission_wait what);
    /* Admitted: start the upstream side now. */
    void (*proceed)(void *owner);
    /* Over the limit: answer 429 from admission->decision. */
    void (*refuse)(void *owner);
    /* Cannot be served now (queue full, Redis down with on_error: deny): answer overload_status. */
    void (*overload)(void *owner, const char *why);
};

/* Embedded in its owner; zeroed by admission_init. The owner reads decision, wait_ms and attempt
 * (for replies and the access log) and changes nothing here itself. */
struct admission {
    struct limiter_decision decision;
    uint64_t wait_ms;   /* held before the first attempt started */
    unsigned attempt;   /* 1 for the first try; 0 before admission started */

    /* private */
    struct admission_queue *queue;
    const struct admission_callbacks *callbacks;
    void *owner;
    const struct config *config;
    struct limiter *limiter;
    struct limiter_request request;
    uint64_t start_ms;
    struct limiter_hold *hold;
    struct limiter_stamp stamp; /* admitted: the window entry its departure moves */
    struct limiter_stamp answer; /* departed: the response it waits for, to learn from */
    int64_t origin_remaining, origin_reset_ms; /* what the last response said (-1: nothing) */
    struct limiter_flight flight; /* max_concurrent: its place in flight until it is over */
    struct shared_request *shared_request;
    char shared_member[48]; /* our entry in Redis: departure moves it, a cancelled hold frees it */
    char *shared_key;       /* its Redis key (allocated only for a shared rule's request) */
    char shared_unanswered[48]; /* departed, following the origin's limits: Redis waits for its
                                   answer (shared_learn) */
    int shared_held;        /* the member is a reservation we wait for */
    uint64_t shared_due_us; /* held: when that reservation comes by our clock (never before
                               Redis' own: read when its answer was) */
    struct event *timer;    /* made the first time a request waits */
    int pause_before;       /* the last wait was an origin's pause: the log shows it */
    int held;               /* it waited for admission (not only for a slot) */
    int in_queue;
    struct admission *queue_prev, *queue_next;
};

void admission_init(struct admission *a, struct admission_queue *queue,
                    const struct admission_callbacks *callbacks, void *owner);
/* Starts admitting a request that arrived at start_ms; `request` is copied (its strings must
 * live until admission_reset). */
void admission_start(struct admission *a, const struct config *config, struct limiter *limiter,
                     const struct limiter_request *request, uint64_t start_ms);
/* Gives back whatever the request still holds (queue place, reservation, Redis request, timer)
 * and forgets it: the owner's next request starts clean. */
void admission_reset(struct admission *a);
/* admission_reset, and frees the timer: before the owner is freed. */
void admission_release(struct admission *a);

/* A CONNECT tunnel that outlives its request takes over the request's place in flight
 * (max_concurrent) and ends it with limiter_flight_end when it closes. */
struct limiter_flight admission_take_flight(struct admission *a);

/* The request headers the admitting rule reads for rlproxy alone (cost_header, weight_header),
 * NULL-terminated in out: they are never forwarded. */
void admission_own_headers(const struct admission *a, const char *out[3]);

/* The request's head goes to the origin now (forward.c, from libcurl's pre-request callback, or
 * when a CONNECT's connection is up): the window counts it from here. Once per attempt; later
 * calls change nothing. */
void admission_depart(struct admission *a);

/* The origin answered `status` with this header block (curl's "Name: value\r\n" lines): what it
 * says about its limits (RateLimit fields, X-RateLimit-*, a 429/503's Retry-After) is learned for
 * the key of the rule that matched (upstream_limits: follow). Requests that matched no rule learn
 * nothing and pause nothing: the response reaches their client. */
void admission_note_response(struct admission *a, int status, const char *headers,
                             size_t headers_len);
/* The retry policy for a response of `status`, or for a failed attempt: the wait before the
 * next attempt in ms (the budget is taken), or -1 when the client gets this answer. */
int64_t admission_retry_for_status(struct admission *a, const char *method, int status,
                                   int64_t retry_after_ms, int body_replayable);
int64_t admission_retry_for_failure(struct admission *a, const char *method,
                                    enum retry_failure failure, int nothing_sent);
/* The next attempt: after delay_ms it is admitted again (a retry is another request to the
 * origin), then proceed runs. */
void admission_retry(struct admission *a, int64_t delay_ms);

#endif
