/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* shared.h — rate limits shared by several rlproxy instances through Redis (rules with
 * `shared: true`). Each worker owns one hiredis async connection on its own event loop; every
 * decision is one atomic Lua script (EVALSHA) that keeps the same exact sliding window as
 * limiter.c in a sorted set, with time from Redis `TIME` so instances share one clock. Bounded:
 * a per-command timeout, reconnection with backoff, and `shared.on_error` when Redis cannot
 * answer. Never blocks the event loop (an IP address or unix: path avoids a DNS lookup). */
#ifndef RLPROXY_SHARED_H
#define RLPROXY_SHARED_H

#include <event2/event.h>
#include <stdint.h>

#include "config.h"
#include "limit_headers.h"
#include "limiter.h"

struct shared;
struct shared_request;

enum shared_outcome {
    SHARED_ADMIT,
    SHARED_DELAY,  /* delay_us set; the slot is reserved in Redis (member names it) */
    SHARED_REJECT, /* retry_after_us set */
    SHARED_ERROR,  /* Redis did not answer in time or is down: apply shared.on_error */
};

struct shared_result {
    enum shared_outcome outcome;
    uint64_t delay_us, retry_after_us;
    uint32_t remaining;
    int paused;      /* DELAY or REJECT because the key is held for what its origin said:
                        no reservation; ask again after delay_us */
    /* enforce: false: outcome is ADMIT, and this is what enforcing would have done (DELAY or
       REJECT, member empty: nothing was taken), or ADMIT when it would have admitted too */
    enum shared_outcome would;
    char member[48]; /* ADMIT: the entry, for shared_depart; DELAY: the reservation (the base
                        member of a request's units: it names them all) */
    char key[720];   /* the Redis key of the window, for shared_release */
};

typedef void (*shared_done_fn)(void *arg, const struct shared_result *result);

/* 1 when this build can talk to Redis. */
int shared_available(void);

/* NULL when config has no shared.redis (or the build has no hiredis). */
struct shared *shared_new(struct event_base *base, const struct config *config);
void shared_free(struct shared *s);

/* Asks Redis; done runs later from the loop (never from inside this call). Returns a handle
 * to cancel with shared_cancel when the request goes away first, or NULL when it could not even
 * be sent (done is not called then: apply on_error). */
struct shared_request *shared_decide(struct shared *s, const struct rate_rule *rule,
                                     const struct limiter_request *request, uint64_t timeout_ms,
                                     shared_done_fn done, void *arg);
void shared_cancel(struct shared_request *r);
/* A reservation (SHARED_DELAY) whose time came: done gets SHARED_ADMIT to go now, SHARED_DELAY
 * with delay_us to wait more (the entry it followed departed later than it was admitted, or, asked
 * late, it now follows requests that departed after its reserved time), or SHARED_ERROR (go: the
 * reservation was granted). NULL when it cannot be asked (then go). Ask no earlier than the
 * reserved time by your own clock: Redis judges a check by its clock, but a reservation that
 * cannot be asked goes unchecked. */
struct shared_request *shared_ready(struct shared *s, const struct rate_rule *rule,
                                    const char *key, const char *member, uint64_t timeout_ms,
                                    shared_done_fn done, void *arg);
/* The request of `member` departs now: its entry moves to Redis' current time (never earlier),
 * so the shared window counts arrivals at the origin, as limiter.c's does. learn (the rule follows
 * the origin's limits): it also takes the key's next departure number and waits for its answer,
 * for shared_learn. Fire and forget. */
void shared_depart(struct shared *s, const char *key, const char *member, int learn);
/* The answer to `member`, departed with learn (once per departure; said NULL, or without a
 * remaining and a reset: it is only answered): the fleet's budget for the key becomes what the
 * origin says remains, less the departures it has not counted yet and the requests on their way
 * (the lower for the same quota window), and shared_decide holds or refuses the key's requests
 * while it is spent, until the announced reset plus margin_ms. Fire and forget: the departure went
 * on this same connection, so Redis has it first. */
void shared_learn(struct shared *s, const char *key, const char *member,
                  const struct limit_headers *said, uint64_t margin_ms);
/* The origin said to hold the key of `key` (a 429/503's Retry-After, a quota spent until its
 * reset) for for_ms: every instance holds or refuses its requests until then (an existing longer
 * hold stays). Fire and forget. */
void shared_hold(struct shared *s, const char *key, uint64_t for_ms);
/* The request of `member` will not be sent (it failed or its client left): it stays counted at its
 * admission time and no longer holds back the reservations that follow it. */
void shared_abandon(struct shared *s, const char *key, const char *member);
/* While the request a reservation follows has not departed, shared_ready asks to be asked again
 * after this long (only when a request takes longer than its window's slack to leave). */
#define SHARED_PENDING_RECHECK_US 5000
/* A member still marked pending this long after it left the window belongs to an instance that
 * went away: it stops counting. */
#define SHARED_PENDING_STALE_US (60ULL * 1000000)
/* Gives back a reservation (a held request whose client went away). */
void shared_release(struct shared *s, const char *key, const char *member);

/* For /metrics: decisions by outcome, errors, and whether Redis is reachable now. */
struct shared_stats {
    uint64_t admitted, delayed, rejected, errors;
    int connected;
};
void shared_stats(struct shared *s, struct shared_stats *out);

#endif
