/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* limiter_queue.h — held requests of rules with fair_by or max_concurrent: they wait in their
 * key's fair queue (fair_queue.h decides whose turn) instead of reserving a time, and take their
 * entries when the window has room and the key is below max_concurrent. Private to the limiter's
 * files. Owns the queue, the waker and the wake-up calls; must not judge when a slot frees (the
 * window does) nor what the origin said (limiter.c does). Each function with the stripe locked
 * unless it says. */
#ifndef RLPROXY_LIMITER_QUEUE_H
#define RLPROXY_LIMITER_QUEUE_H

#include <stdint.h>

struct credential_key;
struct limiter_decision;
struct limiter_hold;
struct limiter_request;
struct rate_rule;
struct rule_state;
struct stripe;
struct window;

/* 1 when the rule holds requests in a queue (fair_by or max_concurrent); no lock needed. */
int limiter_queue_mode(const struct rate_rule *p);
/* The decision of a rule in queue mode for one window. */
void limiter_queue_decide(struct rule_state *st, struct stripe *s, struct window *w, uint64_t now,
                          const struct limiter_request *r, const struct rate_rule *rule,
                          const struct credential_key *credential_key, uint32_t cost,
                          uint32_t weight, struct limiter_decision *out);
/* Gives freed slots to the queue, in its order, and leaves a waker for the next one. */
void limiter_queue_pump(struct rule_state *st, struct window *w, uint64_t now);
/* limiter_hold_ready for a queued hold. */
uint64_t limiter_queue_ready(struct limiter_hold *hold, uint64_t now);
/* limiter_hold_cancel for a queued hold; takes the stripe lock itself. */
void limiter_queue_cancel(struct limiter_hold *hold);

#endif
