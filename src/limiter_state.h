/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* limiter_state.h — the limiter's private state, shared by its files only (limiter.c,
 * limiter_key.c, limiter_queue.c, limiter_view.c): the limiter object, each rule's striped table
 * of windows, held requests, and the decision helpers limiter.c lends the others. Nothing outside
 * those files may include it; everyone else goes through limiter.h. Must not include limiter.h
 * (limiter.h includes the modules that include this). */
#ifndef RLPROXY_LIMITER_STATE_H
#define RLPROXY_LIMITER_STATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "fair_queue.h"
#include "limiter_types.h"
#include "util.h"
#include "window.h"

#define STRIPES 64 /* lock stripes per rule: contention on one key never blocks the others */
#define KEY_MAX 600
#define WEIGHT_UNSAID UINT32_MAX /* no weight_header value: weights decides */

/* A key of a rule with fair_by or max_concurrent: its held requests wait in a queue and are given
 * the slot when it frees, in the queue's order; one of them (the waker) is told when to ask next.
 * Apart from the window, so that keys of other rules do not pay for it. */
struct key_queue {
    struct fair_queue queue;
    uint32_t inflight;          /* max_concurrent: admitted and not ended */
    struct limiter_hold *waker; /* NULL: nobody is to ask at wake_at */
    uint64_t wake_at;
    uint64_t seen_us; /* the latest time a decision or a hold was made at */
};

struct stripe {
    pthread_mutex_t lock;
    struct window **buckets;
    size_t bucket_count, window_count;
};

/* The number of windows over all rules, against rate_limits.max_keys. A limiter built over a
 * previous one shares its count, as it shares the windows of unchanged rules, so the count lives
 * with server.c's chain of limiters; limiters built apart (unit tests, the benchmark) count apart.
 * Each limiter and each rule state holds a reference. */
struct key_count {
    atomic_uint refs;
    _Atomic uint64_t keys;
};

/* The state of one rule; shared between the limiters of successive configs while the rule is
 * unchanged. */
struct rule_state {
    atomic_uint refs;
    struct key_count *total_keys;
    struct rate_rule params; /* copies of the fields that define the windows (no match lists) */
    struct stripe stripes[STRIPES];
    _Atomic uint64_t admitted, delayed, rejected, queued, keys;
    _Atomic uint64_t would_delay, would_reject; /* enforce: false */
};

struct limiter {
    atomic_uint refs;
    const struct rate_rule *rules; /* owned by the config the limiter was built for */
    size_t rule_count;
    struct rule_state **states;
    uint32_t max_keys;
    const struct credential_key *credential_key; /* hashes header values; the process owns it */
    struct key_count *total_keys;
};

struct limiter_hold {
    struct rule_state *state;
    struct stripe *stripe;
    struct window *window;
    uint64_t time_us; /* the reserved entries (cost of them) */
    /* the entries it displaced, oldest and newest: it may go no earlier than their actual
     * departures + window */
    uint64_t base_first_us, base_us;
    uint32_t cost, displaced;
    int depart_later; /* its entries are pending until limiter_depart */
    /* a queued hold (fair_by, max_concurrent); in_queue_mode never changes, so it may be read
     * without the lock (queued and granted change under it, from any thread) */
    int in_queue_mode;
    int queued;            /* in w->kq->queue: time_us is not known yet */
    int granted;           /* its turn came: entries taken at time_us */
    int posted, abandoned; /* a wake-up is on its way; cancelled meanwhile: the call frees it */
    uint64_t deadline_us;  /* max_delay after it was held */
    struct fair_queue_item item;
    struct util_call call;
    util_post_fn post;
    void *post_target;
    void (*woken)(void *arg);
    void *woken_arg;
};

/* The span the window counts over: the rule's window, widened by its margin. */
static inline uint64_t counted_window_us(const struct rate_rule *rule)
{
    return (rule->window_ms + rule->margin_ms) * 1000;
}

/* ---- limiter.c's helpers for the other files; each with the stripe locked unless it says ---- */

/* Finds or creates the window; NULL when the key cap is reached (or out of memory). */
struct window *limiter_window_get(struct rule_state *st, struct stripe *s, uint64_t hash,
                                  const char *key, size_t len, uint32_t max_keys);
/* Drops a reference to a rule's state (no lock needed). */
void limiter_state_unref(struct rule_state *st);
/* Answers 429 and counts it. */
void limiter_reject(struct rule_state *st, struct limiter_decision *out, uint64_t retry_after_us,
                    const char *reason);
/* enforce: false: counts what enforcing would have done and admits. */
void limiter_would(struct rule_state *st, enum limiter_verdict verdict,
                   struct limiter_decision *out);
/* Until when the origin's word holds the key (0: it does not), and why. */
uint64_t limiter_learned_until(const struct rate_rule *p, struct window *w, uint64_t now,
                               const char **why);
/* A request the origin's word holds until `until`: held within max_delay, else refused. */
void limiter_learned_verdict(struct rule_state *st, uint64_t until, uint64_t now, const char *why,
                             int enforce, struct limiter_decision *out);
/* Takes the entries of a request admitted at `t`: pending when the caller stamps its departure. */
int limiter_admit_entry(struct rule_state *st, struct stripe *s, struct window *w, uint64_t t,
                        int depart_later, uint32_t cost, struct limiter_decision *out);

#endif
