/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* limiter_queue.c — see limiter_queue.h.
 *
 * Such a rule's held requests reserve no slot: they wait in the window's fair queue, and when the
 * ring has room (and the key has fewer than max_concurrent in flight) the queue's next request
 * takes its entries there and then. The ring stays the only judge of when; the queue only says
 * who. Nobody polls: the one request told to (the waker) asks again when the next slot frees,
 * a request whose turn comes is told at once through its post function, and a cancelled or
 * finished request passes its place on at once. */
#include "limiter_queue.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "fair_queue.h"
#include "limiter_key.h"
#include "limiter_state.h"
#include "limiter_types.h"
#include "window.h"

int limiter_queue_mode(const struct rate_rule *p)
{
    return p->fair_by != RATE_FAIR_NONE || p->max_concurrent > 0;
}

static struct limiter_hold *hold_of(struct fair_queue_item *item)
{
    return (struct limiter_hold *)(void *)((char *)item - offsetof(struct limiter_hold, item));
}

/* Runs on the held request's own thread. A hold cancelled while its call was on the way is freed
 * here, where nothing else can reach it any more. */
static void on_posted(void *arg)
{
    struct limiter_hold *hold = arg;
    pthread_mutex_lock(&hold->stripe->lock);
    hold->posted = 0;
    int gone = hold->abandoned;
    pthread_mutex_unlock(&hold->stripe->lock);
    if (gone) {
        struct rule_state *st = hold->state;
        free(hold);
        limiter_state_unref(st);
        return;
    }
    hold->woken(hold->woken_arg);
}

/* With the stripe locked: tells the held request to ask limiter_hold_ready. */
static void notify(struct limiter_hold *hold)
{
    if (hold->post == NULL || hold->posted)
        return;
    hold->posted = 1;
    hold->call.fn = on_posted;
    hold->call.arg = hold;
    hold->post(hold->post_target, &hold->call);
}

/* With the stripe locked: someone must ask again at `at`. The waker keeps its place (told only
 * when that is sooner than it thinks); without one, the request whose turn it is becomes it. */
static void set_waker(struct window *w, struct limiter_hold *next, uint64_t at)
{
    if (w->kq->waker != NULL) {
        uint64_t before = w->kq->wake_at;
        w->kq->wake_at = at;
        if (at < before)
            notify(w->kq->waker);
        return;
    }
    w->kq->waker = next;
    w->kq->wake_at = at;
    notify(next);
}

/* With the stripe locked: the slot is the hold's: its entries are taken now. */
static void grant(struct rule_state *st, struct window *w, struct limiter_hold *hold, uint64_t now)
{
    fair_queue_remove(&w->kq->queue, &hold->item, 1);
    hold->queued = 0;
    hold->granted = 1;
    hold->time_us = now;
    if (hold->depart_later && window_pending_add_units(w, now, hold->cost) != 0)
        hold->depart_later = 0; /* out of memory: counted from now, as if it departed now */
    for (uint32_t i = 0; i < hold->cost; i++)
        window_insert(w, now);
    if (!hold->depart_later)
        w->departures++;
    if (st->params.max_concurrent > 0)
        w->kq->inflight++;
    if (w->kq->waker == hold)
        w->kq->waker = NULL;
    notify(hold);
}

/* With the stripe locked: gives freed slots to the queue, in its order, and leaves a waker for
 * the next one. Time never runs backwards here: a call without a clock of its own (a cancel) uses
 * the latest time the window saw. */
void limiter_queue_pump(struct rule_state *st, struct window *w, uint64_t now)
{
    const struct rate_rule *p = &st->params;
    uint64_t window_us = counted_window_us(p);
    if (now < w->kq->seen_us)
        now = w->kq->seen_us;
    w->kq->seen_us = now;
    window_drop_stale(w, now, window_us);
    while (w->kq->queue.items > 0) {
        if (p->max_concurrent > 0 && w->kq->inflight >= p->max_concurrent)
            return; /* limiter_flight_end pumps */
        struct limiter_hold *next = hold_of(fair_queue_peek(&w->kq->queue));
        const char *why = NULL;
        uint64_t until = limiter_learned_until(p, w, now, &why);
        if (until > now) { /* the origin's word holds the key */
            set_waker(w, next, until);
            return;
        }
        if (window_reserve(w, w->count + next->cost, p->limit) != 0)
            return; /* out of memory: the waker or a deadline asks again */
        if (w->count + next->cost <= p->limit) {
            grant(st, w, next, now);
            continue;
        }
        uint64_t oldest = window_at(w, w->count + next->cost - p->limit - 1);
        uint64_t at = oldest + window_us;
        if (at <= now) /* it has not departed yet: ask again shortly */
            at = now + LIMITER_PENDING_RECHECK_US;
        set_waker(w, next, at);
        return;
    }
}

/* With the stripe locked: holds the request in the queue until its turn, at most max_delay. */
static void enqueue(struct rule_state *st, struct window *w, uint64_t now,
                    const struct limiter_request *r, const struct rate_rule *rule,
                    const struct credential_key *credential_key, uint32_t cost, uint32_t weight,
                    struct limiter_decision *out)
{
    const struct rate_rule *p = &st->params;
    char value[KEY_MAX];
    size_t len = limiter_key_fair_value(p, r, credential_key, value, sizeof value);
    /* weights: the current config's, by value; a weight_header's value wins; a flow keeps the
     * weight it was made with while it has requests held */
    if (weight == WEIGHT_UNSAID) {
        weight = 1;
        for (size_t i = 0; i < rule->weights_count; i++)
            if (strcmp(rule->weights[i].value, value) == 0)
                weight = rule->weights[i].weight;
    }
    struct limiter_hold *hold = calloc(1, sizeof *hold);
    if (hold == NULL ||
        fair_queue_push(&w->kq->queue, &hold->item, value, len, weight, cost) != 0) {
        free(hold);
        limiter_reject(st, out, 1000000, "out of memory");
        return;
    }
    hold->state = st;
    hold->stripe = &st->stripes[w->hash % STRIPES];
    hold->window = w;
    hold->cost = cost;
    hold->depart_later = r->depart_later;
    hold->in_queue_mode = 1;
    hold->queued = 1;
    hold->deadline_us = now + p->max_delay_ms * 1000;
    hold->post = r->post;
    hold->post_target = r->post_target;
    hold->woken = r->woken;
    hold->woken_arg = r->woken_arg;
    atomic_fetch_add(&st->refs, 1); /* a hold outlives nothing it points into */
    w->queued++;
    out->verdict = LIMITER_DELAY;
    out->delay_us = p->max_delay_ms * 1000; /* at the latest; its turn is told */
    out->hold = hold;
    atomic_fetch_add(&st->delayed, 1);
    atomic_fetch_add(&st->queued, 1);
    limiter_queue_pump(st, w, now);
}

/* With the stripe locked: the decision of a rule with fair_by or max_concurrent. */
void limiter_queue_decide(struct rule_state *st, struct stripe *s, struct window *w, uint64_t now,
                          const struct limiter_request *r, const struct rate_rule *rule,
                          const struct credential_key *credential_key, uint32_t cost,
                          uint32_t weight, struct limiter_decision *out)
{
    const struct rate_rule *p = &st->params;
    int enforce = rule->enforce;
    uint64_t window_us = counted_window_us(p);
    if (w->kq == NULL && (w->kq = calloc(1, sizeof *w->kq)) == NULL) {
        limiter_reject(st, out, 1000000, "out of memory");
        return;
    }
    if (now > w->kq->seen_us)
        w->kq->seen_us = now;
    window_drop_stale(w, now, window_us);
    const char *why = NULL;
    uint64_t until = limiter_learned_until(p, w, now, &why);
    if (until > now) {
        limiter_learned_verdict(st, until, now, why, enforce, out);
        out->reset_us = until - now;
        return;
    }
    if (window_reserve(w, w->count + cost, p->limit) != 0) {
        limiter_reject(st, out, 1000000, "out of memory");
        return;
    }
    int room = w->count + cost <= p->limit;
    int below_cap = p->max_concurrent == 0 || w->kq->inflight < p->max_concurrent;
    if (room && below_cap && w->kq->queue.items == 0) { /* nobody waits before it */
        if (limiter_admit_entry(st, s, w, now, r->depart_later, cost, out) != 0) {
            limiter_reject(st, out, 1000000, "out of memory");
            return;
        }
        if (p->max_concurrent > 0) {
            w->kq->inflight++;
            out->flight = (struct limiter_flight){st, s, w};
        }
    } else {
        /* at the earliest when the window has room for it: a wait can only be longer */
        uint64_t free_at = now;
        if (!room) {
            uint64_t oldest = window_at(w, w->count + cost - p->limit - 1);
            free_at = oldest + window_us > now ? oldest + window_us : now + window_us;
        }
        uint64_t retry_us = free_at > now ? free_at - now : 1000000;
        if (p->over_limit == RATE_OVER_REJECT)
            limiter_reject(st, out, retry_us,
                           room ? "too many requests of this key in flight (max_concurrent)"
                                : "over the limit");
        else if (free_at - now > p->max_delay_ms * 1000)
            limiter_reject(st, out, retry_us, "the wait would exceed max_delay");
        else if (atomic_load(&st->queued) >= p->max_queue)
            limiter_reject(st, out, retry_us, "the queue of held requests is full (max_queue)");
        else if (!enforce)
            limiter_would(st, LIMITER_DELAY, out);
        else
            enqueue(st, w, now, r, rule, credential_key, cost, weight, out);
        if (!enforce && out->verdict == LIMITER_REJECT) {
            atomic_fetch_sub(&st->rejected, 1);
            limiter_would(st, LIMITER_REJECT, out);
        }
    }
    if (out->verdict == LIMITER_ADMIT && out->would == LIMITER_UNLIMITED)
        atomic_fetch_add(&st->admitted, 1);
    uint32_t used = window_used(w, now, window_us, &out->reset_us);
    out->remaining = used >= p->limit ? 0 : p->limit - used;
}

/* limiter_hold_ready for a queued hold, with the stripe locked. */
uint64_t limiter_queue_ready(struct limiter_hold *hold, uint64_t now)
{
    struct window *w = hold->window;
    if (hold->queued)
        limiter_queue_pump(hold->state, w, now);
    if (hold->granted)
        return 0;
    if (now >= hold->deadline_us)
        return LIMITER_HOLD_EXPIRED;
    uint64_t until = hold->deadline_us;
    if (w->kq->waker == hold && w->kq->wake_at < until)
        until = w->kq->wake_at;
    return until > now ? until - now : 1;
}

/* limiter_hold_cancel for a queued hold: its place, or the slot it was given and did not use,
 * goes to the next in the queue at once. */
void limiter_queue_cancel(struct limiter_hold *hold)
{
    struct rule_state *st = hold->state;
    struct window *w = hold->window;
    pthread_mutex_lock(&hold->stripe->lock);
    if (hold->queued) {
        fair_queue_remove(&w->kq->queue, &hold->item, 0);
        hold->queued = 0;
        if (w->kq->waker == hold)
            w->kq->waker = NULL;
    } else { /* granted, never sent: its entries and its place in flight go back */
        for (uint32_t i = 0; i < hold->cost; i++) {
            if (hold->depart_later)
                window_pending_remove(w, hold->time_us);
            window_remove(w, hold->time_us);
        }
        if (st->params.max_concurrent > 0 && w->kq->inflight > 0)
            w->kq->inflight--;
    }
    w->queued--;
    limiter_queue_pump(st, w, w->kq->seen_us);
    int keep = hold->posted; /* on_posted frees it */
    hold->abandoned = keep;
    pthread_mutex_unlock(&hold->stripe->lock);
    atomic_fetch_sub(&st->queued, 1);
    if (!keep) {
        free(hold);
        limiter_state_unref(st);
    }
}
