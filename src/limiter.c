/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* limiter.c — see limiter.h.
 *
 * Each key's window (window.h) is a ring of at most `limit` timestamps kept in ascending order.
 * Admitting at time t when the ring is full needs ring[0] + window <= t; otherwise the earliest
 * moment is ring[0] + window, which a delayed request reserves by taking ring[0]'s place. Because
 * every new entry is at least the newest one, the ring stays sorted and delayed requests go in
 * arrival order, with no polling: the caller sleeps until its reserved time. A cancelled
 * reservation is removed from the ring, which leaves room for the next request.
 *
 * This file keeps the limiter object, each rule's striped table of windows, the decisions,
 * departures and what the origin said. Rules with fair_by or max_concurrent hold requests in a
 * queue instead (limiter_queue.c); keys and costs are limiter_key.c's; views, snapshots and the
 * counts /metrics reads limiter_view.c's.
 *
 * Memory: a window costs ~64 bytes plus 8 bytes per ring slot; the ring starts at 4 slots and
 * doubles up to `limit`, so keys that send little cost little. */
#include "limiter.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "limit_headers.h"
#include "limiter_key.h"
#include "limiter_queue.h"
#include "limiter_state.h"
#include "util.h"
#include "window.h"

static _Atomic uint64_t pause_decisions; /* requests held or refused for what an origin said */

uint64_t limiter_pause_decisions(void) { return atomic_load(&pause_decisions); }

uint64_t limiter_total_keys(const struct limiter *l) { return atomic_load(&l->total_keys->keys); }

static void key_count_unref(struct key_count *count)
{
    if (count != NULL && atomic_fetch_sub(&count->refs, 1) == 1)
        free(count);
}

static void window_free(struct rule_state *st, struct window *w)
{
    free(w->kq);
    free(w->unanswered);
    free(w->pending);
    free(w->releases);
    free(w->times);
    free(w);
    atomic_fetch_sub(&st->total_keys->keys, 1);
    atomic_fetch_sub(&st->keys, 1);
}

static int stripe_grow(struct stripe *s)
{
    size_t count = s->bucket_count ? s->bucket_count * 2 : 64;
    struct window **buckets = calloc(count, sizeof *buckets);
    if (buckets == NULL)
        return -1;
    for (size_t i = 0; i < s->bucket_count; i++) {
        struct window *w = s->buckets[i];
        while (w != NULL) {
            struct window *next = w->next;
            size_t b = (w->hash / STRIPES) % count;
            w->next = buckets[b];
            buckets[b] = w;
            w = next;
        }
    }
    free(s->buckets);
    s->buckets = buckets;
    s->bucket_count = count;
    return 0;
}

/* Finds or creates the window; NULL when the key cap is reached (or out of memory). Called with
 * the stripe locked. */
struct window *limiter_window_get(struct rule_state *st, struct stripe *s, uint64_t hash,
                                  const char *key, size_t len, uint32_t max_keys)
{
    if (s->bucket_count > 0) {
        for (struct window *w = s->buckets[(hash / STRIPES) % s->bucket_count]; w; w = w->next)
            if (w->hash == hash && w->key_len == len && memcmp(w->key, key, len) == 0)
                return w;
    }
    if (atomic_load(&st->total_keys->keys) >= max_keys)
        return NULL;
    if ((s->window_count >= s->bucket_count * 2 || s->bucket_count == 0) && stripe_grow(s) != 0)
        return NULL;
    struct window *w = calloc(1, sizeof *w + len + 1);
    if (w == NULL)
        return NULL;
    w->hash = hash;
    w->learned.remaining = -1;
    w->key_len = len;
    memcpy(w->key, key, len);
    size_t b = (hash / STRIPES) % s->bucket_count;
    w->next = s->buckets[b];
    s->buckets[b] = w;
    s->window_count++;
    atomic_fetch_add(&st->total_keys->keys, 1);
    atomic_fetch_add(&st->keys, 1);
    return w;
}

/* The last time what the key learned holds it: a reset (its own or its lowest count's) or a
 * pause; 0 when it learned none. */
static uint64_t learned_last_us(const struct learned *k)
{
    uint64_t last = k->reset_us > k->lowest_reset_us ? k->reset_us : k->lowest_reset_us;
    return k->paused_until_us > last ? k->paused_until_us : last;
}

static int window_idle(const struct window *w, uint64_t now, uint64_t window_us)
{
    /* A key that learned something keeps it a window past its last reset or pause: the requests
     * held for it (no reservation counts them) wake then, plus the margin, and must find the
     * quota to renew at, not a key that knows nothing and lets all of them go. */
    uint64_t learned_us = learned_last_us(&w->learned);
    return w->queued == 0 && w->pending_count == 0 && w->unanswered_count == 0 &&
           (w->kq == NULL || w->kq->inflight == 0) &&
           (learned_us == 0 || learned_us + window_us <= now) &&
           (w->count == 0 || window_at(w, w->count - 1) + window_us <= now);
}

static size_t stripe_expire(struct rule_state *st, struct stripe *s, uint64_t now)
{
    uint64_t window_us = counted_window_us(&st->params);
    for (size_t b = 0; b < s->bucket_count; b++) {
        struct window **link = &s->buckets[b];
        while (*link != NULL) {
            struct window *w = *link;
            if (window_idle(w, now, window_us)) {
                *link = w->next;
                s->window_count--;
                window_free(st, w);
            } else {
                link = &w->next;
            }
        }
    }
    return s->window_count;
}

/* ---- rules -------------------------------------------------------------------------------- */

static int same_params(const struct rate_rule *a, const struct rate_rule *b)
{
    return strcmp(a->name, b->name) == 0 && a->key == b->key &&
           strcasecmp(a->key_header, b->key_header) == 0 && a->limit == b->limit &&
           a->window_ms == b->window_ms && a->over_limit == b->over_limit &&
           a->max_delay_ms == b->max_delay_ms && a->max_queue == b->max_queue &&
           a->shared == b->shared && a->margin_ms == b->margin_ms && a->fair_by == b->fair_by &&
           strcasecmp(a->fair_header, b->fair_header) == 0 &&
           a->max_concurrent == b->max_concurrent;
}

static struct rule_state *state_new(const struct rate_rule *rule, struct key_count *total_keys)
{
    struct rule_state *st = calloc(1, sizeof *st);
    if (st == NULL)
        return NULL;
    atomic_init(&st->refs, 1);
    st->total_keys = total_keys;
    atomic_fetch_add(&total_keys->refs, 1);
    st->params = *rule;
    /* the match lists belong to the config; the state keeps only the window parameters */
    st->params.match_client = NULL;
    st->params.match_host = NULL;
    st->params.match_path_prefix = NULL;
    st->params.match_user = NULL;
    st->params.weights = NULL; /* read from the current config's rule */
    st->params.weights_count = 0;
    for (size_t i = 0; i < STRIPES; i++)
        pthread_mutex_init(&st->stripes[i].lock, NULL);
    return st;
}

void limiter_state_unref(struct rule_state *st)
{
    if (st == NULL || atomic_fetch_sub(&st->refs, 1) != 1)
        return;
    for (size_t i = 0; i < STRIPES; i++) {
        struct stripe *s = &st->stripes[i];
        for (size_t b = 0; b < s->bucket_count; b++) {
            struct window *w = s->buckets[b];
            while (w != NULL) {
                struct window *next = w->next;
                window_free(st, w);
                w = next;
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    key_count_unref(st->total_keys);
    free(st);
}

struct limiter *limiter_new(const struct config *config, struct limiter *previous,
                            const struct credential_key *credential_key)
{
    struct limiter *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    atomic_init(&l->refs, 1);
    l->rules = config->rate_limits;
    l->rule_count = config->rate_limits_count;
    l->max_keys = config->rate_limits_max_keys;
    l->credential_key = credential_key;
    l->total_keys = previous != NULL ? previous->total_keys : calloc(1, sizeof *l->total_keys);
    l->states = calloc(l->rule_count ? l->rule_count : 1, sizeof *l->states);
    if (l->total_keys == NULL || l->states == NULL) {
        if (previous == NULL)
            free(l->total_keys);
        free(l->states);
        free(l);
        return NULL;
    }
    atomic_fetch_add(&l->total_keys->refs, 1);
    for (size_t i = 0; i < l->rule_count; i++) {
        const struct rate_rule *rule = &l->rules[i];
        for (size_t j = 0; previous != NULL && j < previous->rule_count; j++) {
            if (same_params(&previous->states[j]->params, rule)) {
                l->states[i] = previous->states[j];
                atomic_fetch_add(&l->states[i]->refs, 1);
                break;
            }
        }
        if (l->states[i] == NULL)
            l->states[i] = state_new(rule, l->total_keys);
        if (l->states[i] == NULL) {
            limiter_unref(l);
            return NULL;
        }
    }
    return l;
}

struct limiter *limiter_ref(struct limiter *l)
{
    if (l != NULL)
        atomic_fetch_add(&l->refs, 1);
    return l;
}

void limiter_unref(struct limiter *l)
{
    if (l == NULL || atomic_fetch_sub(&l->refs, 1) != 1)
        return;
    for (size_t i = 0; i < l->rule_count; i++)
        limiter_state_unref(l->states[i]);
    key_count_unref(l->total_keys);
    free(l->states);
    free(l);
}

/* ---- decisions ---------------------------------------------------------------------------- */

void limiter_reject(struct rule_state *st, struct limiter_decision *out, uint64_t retry_after_us,
                    const char *reason)
{
    out->verdict = LIMITER_REJECT;
    out->retry_after_us = retry_after_us;
    out->reason = reason;
    atomic_fetch_add(&st->rejected, 1);
}

/* ---- what the origin said (upstream_limits: follow) -------------------------------------------
 */

/* With the stripe locked: 1 when the lowest remaining said for the origin's current window is
 * taken by the requests it may not have counted yet. Every answered request of that window is in
 * the lowest count, in whatever order the answers came; the others are on their way. */
static int lowest_spent(const struct learned *k, const struct window *w, uint64_t now,
                        uint64_t margin_us)
{
    if (k->lowest_reset_us == 0 || k->lowest_reset_us + margin_us <= now)
        return 0;
    return (int64_t)w->unanswered_count + (int64_t)w->pending_count >= k->lowest_remaining;
}

/* With the stripe locked: until when the origin's word holds the key (0: it does not), and why.
 * A quota whose reset passed renews at its announced size, counting from now. */
uint64_t limiter_learned_until(const struct rate_rule *p, struct window *w, uint64_t now,
                               const char **why)
{
    struct learned *k = &w->learned;
    if (p->upstream_limits != RATE_UPSTREAM_FOLLOW)
        return 0;
    uint64_t margin_us = p->margin_ms * 1000;
    if (k->paused_until_us > now) {
        *why = "the origin asked for a pause (Retry-After)";
        return k->paused_until_us + margin_us;
    }
    if (lowest_spent(k, w, now, margin_us)) {
        *why = "the origin's quota for this key is spent";
        return k->lowest_reset_us + margin_us;
    }
    if (k->remaining < 0)
        return 0;
    if (k->reset_us != 0 && k->reset_us + margin_us <= now) {
        if (k->limit == 0) { /* nothing to renew to: forget it */
            k->remaining = -1;
            k->reset_us = 0;
            return 0;
        }
        k->remaining = (int64_t)k->limit;
        k->seq = w->departures;
        if (k->period_us > 0) /* the next reset, one quota window after the last */
            k->reset_us += ((now - k->reset_us) / k->period_us + 1) * k->period_us;
        else
            k->reset_us = 0;
    }
    if (k->seq > w->departures) /* the window was made anew since */
        k->seq = w->departures;
    uint64_t used = w->departures - k->seq + w->pending_count;
    if ((int64_t)used < k->remaining)
        return 0;
    *why = "the origin's quota for this key is spent";
    /* no reset said: ask again a window later, or when a response says more */
    return k->reset_us != 0 ? k->reset_us + margin_us : now + counted_window_us(p);
}

/* enforce: false: what enforcing would have done is counted and shown, and the request goes on
 * at once without an entry, so a dry run changes nothing for the requests that would go. */
void limiter_would(struct rule_state *st, enum limiter_verdict verdict,
                   struct limiter_decision *out)
{
    out->would = verdict;
    out->verdict = LIMITER_ADMIT;
    out->hold = NULL;
    atomic_fetch_add(verdict == LIMITER_DELAY ? &st->would_delay : &st->would_reject, 1);
}

/* With the stripe locked: a request the origin's word holds until `until`: held within max_delay
 * (no reservation: it asks again then), else refused. */
void limiter_learned_verdict(struct rule_state *st, uint64_t until, uint64_t now, const char *why,
                             int enforce, struct limiter_decision *out)
{
    const struct rate_rule *p = &st->params;
    int delay = p->over_limit == RATE_OVER_DELAY && until - now <= p->max_delay_ms * 1000;
    if (!enforce) {
        limiter_would(st, delay ? LIMITER_DELAY : LIMITER_REJECT, out);
        return;
    }
    atomic_fetch_add(&pause_decisions, 1);
    out->paused = 1;
    if (delay) {
        out->verdict = LIMITER_DELAY;
        out->delay_us = until - now;
        atomic_fetch_add(&st->delayed, 1);
    } else {
        limiter_reject(st, out, until - now, why);
    }
}
/* Takes the entries of a request admitted at `t`: pending when the caller stamps its departure. */
int limiter_admit_entry(struct rule_state *st, struct stripe *s, struct window *w, uint64_t t,
                        int depart_later, uint32_t cost, struct limiter_decision *out)
{
    if (depart_later && window_pending_add_units(w, t, cost) != 0)
        return -1;
    for (uint32_t i = 0; i < cost; i++)
        window_insert(w, t);
    if (!depart_later)
        w->departures++; /* stamped at admission */
    out->verdict = LIMITER_ADMIT;
    if (depart_later)
        out->stamp = (struct limiter_stamp){st, s, w, t, cost};
    return 0;
}

/* With the stripe locked: a request over the limit reserves the slot that frees first for its
 * `cost` units: the `displaced` oldest entries make room and its entries take their place at
 * free_at. Entries are added at the end, so the ring stays sorted. */
static void reserve(struct rule_state *st, struct stripe *s, struct window *w, uint64_t now,
                    uint64_t free_at, uint32_t displaced, int depart_later, uint32_t cost,
                    struct limiter_decision *out)
{
    struct limiter_hold *hold = malloc(sizeof *hold);
    if (hold == NULL || (depart_later && window_pending_add_units(w, free_at, cost) != 0)) {
        free(hold);
        limiter_reject(st, out, free_at - now, "out of memory");
        return;
    }
    uint64_t first = window_at(w, 0), last = window_at(w, displaced - 1);
    for (uint32_t i = 0; i < displaced; i++)
        window_pop_oldest(w);
    for (uint32_t i = 0; i < cost; i++)
        window_insert(w, free_at);
    w->queued++;
    *hold = (struct limiter_hold){.state = st,
                                  .stripe = s,
                                  .window = w,
                                  .time_us = free_at,
                                  .base_first_us = first,
                                  .base_us = last,
                                  .cost = cost,
                                  .displaced = displaced,
                                  .depart_later = depart_later};
    out->verdict = LIMITER_DELAY;
    out->delay_us = free_at - now;
    out->hold = hold;
    atomic_fetch_add(&st->delayed, 1);
    atomic_fetch_add(&st->queued, 1);
}

/* With the stripe locked: the decision for one window. */
static void decide_window(struct rule_state *st, struct stripe *s, struct window *w, uint64_t now,
                          int depart_later, uint32_t cost, int enforce,
                          struct limiter_decision *out)
{
    const struct rate_rule *p = &st->params;
    uint64_t window_us = counted_window_us(p);
    /* Entries that no longer count leave now, so the ring holds only the current window: without
     * this a key below its limit keeps up to `limit` stale entries, and window_used() below
     * walks all of them on every request (O(limit) per request, a modulo per step). An entry
     * displaced by a reservation (see cancel_reservation) is never among them: it is newer than
     * now - window until the reservation's own time has come. A pending entry stays: its request
     * has not reached the origin yet, so it counts from its departure, which is later than now. */
    window_drop_stale(w, now, window_us);
    const char *why = NULL;
    uint64_t until = limiter_learned_until(p, w, now, &why);
    if (until > now) { /* the stricter of the rule and the origin's word */
        limiter_learned_verdict(st, until, now, why, enforce, out);
        out->reset_us = until - now;
        return;
    }
    if (window_reserve(w, w->count + cost, p->limit) != 0) {
        limiter_reject(st, out, 1000000, "out of memory");
    } else if (w->count + cost <= p->limit) {
        if (limiter_admit_entry(st, s, w, now, depart_later, cost, out) != 0)
            limiter_reject(st, out, 1000000, "out of memory");
    } else {
        /* the request's units fit once this many of the oldest entries have left */
        uint32_t displaced = w->count + cost - p->limit;
        uint64_t newest_displaced = window_at(w, displaced - 1);
        /* an entry counts until window after it departs; a pending one has not: at the
         * earliest it departs now */
        uint64_t free_at =
            newest_displaced + window_us > now ? newest_displaced + window_us : now + window_us;
        if (p->over_limit == RATE_OVER_REJECT) {
            limiter_reject(st, out, free_at - now, "over the limit");
        } else if (free_at - now > p->max_delay_ms * 1000) {
            limiter_reject(st, out, free_at - now, "the wait would exceed max_delay");
        } else if (atomic_load(&st->queued) >= p->max_queue) { /* per rule, as documented */
            limiter_reject(st, out, free_at - now,
                           "the queue of held requests is full (max_queue)");
        } else if (!enforce) {
            limiter_would(st, LIMITER_DELAY, out);
            out->delay_us = free_at - now;
        } else {
            reserve(st, s, w, now, free_at, displaced, depart_later, cost, out);
        }
        if (!enforce && out->verdict == LIMITER_REJECT) {
            atomic_fetch_sub(&st->rejected,
                             1); /* limiter_reject() counted it: it was not enforced */
            limiter_would(st, LIMITER_REJECT, out);
        }
    }
    if (out->verdict == LIMITER_ADMIT && out->would == LIMITER_UNLIMITED)
        atomic_fetch_add(&st->admitted, 1);
    /* what the RateLimit fields report: room left at the moment the request goes ahead */
    uint64_t at = out->verdict == LIMITER_DELAY ? now + out->delay_us : now;
    uint32_t used = window_used(w, at, window_us, &out->reset_us);
    out->remaining = used >= p->limit ? 0 : p->limit - used;
}

void limiter_decide(struct limiter *l, const struct limiter_request *r, uint64_t now_us,
                    struct limiter_decision *out)
{
    memset(out, 0, sizeof *out);
    out->verdict = LIMITER_UNLIMITED;
    size_t i = 0;
    while (i < l->rule_count && !limiter_key_matches(&l->rules[i], r))
        i++;
    if (i == l->rule_count)
        return;
    struct rule_state *st = l->states[i];
    /* cost and enforce come from this config's rule, not the kept state: a reload that changes
     * only them keeps the windows */
    const struct rate_rule *rule = &l->rules[i];
    out->rule = rule;
    out->rule_index = i;
    out->cost = limiter_key_cost(rule, r);
    if (out->cost == 0) {
        out->verdict = LIMITER_REJECT;
        out->bad_request = 1;
        out->bad_header = rule->cost_header;
        out->reason = "the cost header's value is not a whole number from 1 to the rule's limit";
        return;
    }
    uint32_t weight = limiter_key_weight(rule, r);
    if (weight == 0) {
        out->verdict = LIMITER_REJECT;
        out->bad_request = 1;
        out->bad_header = rule->weight_header;
        out->reason = "the weight header's value is not a whole number from 1 to 1000";
        return;
    }
    if (out->cost > st->params.limit) /* a reload lowered the limit under a kept cost */
        out->cost = st->params.limit;
    char key[KEY_MAX];
    size_t len = limiter_key_build(&st->params, r, l->credential_key, key);
    uint64_t hash = limiter_key_hash(key, len);
    struct stripe *s = &st->stripes[hash % STRIPES];
    pthread_mutex_lock(&s->lock);
    struct window *w = limiter_window_get(st, s, hash, key, len, l->max_keys);
    if (w == NULL) { /* at the cap: make room from this stripe's idle windows, then try once more */
        stripe_expire(st, s, now_us);
        w = limiter_window_get(st, s, hash, key, len, l->max_keys);
    }
    if (w == NULL)
        limiter_reject(st, out, st->params.window_ms * 1000,
                       "too many distinct keys (rate_limits_max_keys)");
    else if (limiter_queue_mode(&st->params))
        limiter_queue_decide(st, s, w, now_us, r, rule, l->credential_key, out->cost, weight, out);
    else
        decide_window(st, s, w, now_us, r->depart_later, out->cost, rule->enforce, out);
    pthread_mutex_unlock(&s->lock);
}

/* A remaining said for the quota window that resets at reset_us, by an answer to any request:
 * a window is known by its reset (within the slack of whole seconds), and its lowest remaining
 * is the origin's latest count. A late answer about an earlier window says nothing of this one. */
static void learn_lowest(struct learned *k, int64_t remaining, uint64_t reset_us)
{
    uint64_t known = k->lowest_reset_us;
    if (remaining < 0 || reset_us == 0)
        return;
    if (known != 0 && reset_us + LIMITER_RESET_SLACK_US > known &&
        reset_us < known + LIMITER_RESET_SLACK_US) {
        if (remaining < k->lowest_remaining)
            k->lowest_remaining = remaining;
        if (reset_us > known) /* the later reset holds longer */
            k->lowest_reset_us = reset_us;
    } else if (known == 0 || reset_us > known) {
        k->lowest_remaining = remaining;
        k->lowest_reset_us = reset_us;
    }
}

void limiter_learn(struct limiter_stamp *answer, int status, const struct limit_headers *h,
                   uint64_t now_us)
{
    struct window *w = answer->window;
    if (w == NULL || !h->found)
        return;
    struct stripe *s = answer->stripe;
    uint64_t departure = answer->time_us;
    pthread_mutex_lock(&s->lock);
    struct learned *k = &w->learned;
    if (h->retry_after_ms >= 0 && (status == 429 || status == 503)) {
        uint64_t wait = (uint64_t)h->retry_after_ms * 1000;
        uint64_t until = now_us + (wait < LIMITER_MAX_PAUSE_US ? wait : LIMITER_MAX_PAUSE_US);
        if (until > k->paused_until_us)
            k->paused_until_us = until;
    }
    if (h->limit > 0)
        k->limit = (uint64_t)h->limit;
    if (h->window_ms > 0)
        k->period_us = (uint64_t)h->window_ms * 1000;
    uint64_t reset = h->reset_ms >= 0 ? now_us + (uint64_t)h->reset_ms * 1000 : 0;
    learn_lowest(k, h->remaining, reset);
    /* a response to an earlier request than the one the key learned from says less when the
     * origin counted in departure order (when it did not, the lowest count above holds) */
    if (h->remaining >= 0 && (k->remaining < 0 || departure >= k->seq)) {
        /* a quota window seen from two resets (X-RateLimit-Reset says when, not how long) */
        uint64_t known = reset != 0 && k->reset_us == 0 ? k->last_reset_us : k->reset_us;
        if (h->window_ms <= 0 && reset != 0 && known != 0 && reset > known + LIMITER_RESET_SLACK_US)
            k->period_us = reset - known;
        /* requests that left before this one and are not answered yet may reach the origin's
         * count after it: they are taken as not counted */
        int64_t earlier = 0;
        for (uint32_t i = 0; i < w->unanswered_count; i++)
            earlier += w->unanswered[i] < departure;
        k->remaining = h->remaining > earlier ? h->remaining - earlier : 0;
        k->seq = departure;
        if (reset != 0)
            k->reset_us = k->last_reset_us = reset;
    }
    pthread_mutex_unlock(&s->lock);
}

void limiter_answered(struct limiter_stamp *answer)
{
    struct window *w = answer->window;
    if (w == NULL)
        return;
    pthread_mutex_lock(&((struct stripe *)answer->stripe)->lock);
    for (uint32_t i = 0; i < w->unanswered_count; i++)
        if (w->unanswered[i] == answer->time_us) {
            w->unanswered[i] = w->unanswered[--w->unanswered_count];
            break;
        }
    pthread_mutex_unlock(&((struct stripe *)answer->stripe)->lock);
    answer->window = NULL;
}

/* With the stripe locked: takes a cancelled reservation's entries out and puts back the entries it
 * displaced. Entries of it that later reservations displaced in turn stand for as many of its own
 * (those reservations wait a window after it, later than after any of them), so only the rest
 * come back, and the later ones learn to wait for what it was computed from instead. Each entry
 * comes back no earlier than its request reached the origin: one still on its way at its own
 * time (its departure moves it), the others at the newest displaced time or the latest late
 * departure among them, which is exact for the newest and stricter for the rest. */
static void cancel_reservation(struct window *w, const struct limiter_hold *hold)
{
    uint32_t removed = 0;
    while (removed < hold->cost && window_remove(w, hold->time_us))
        removed++;
    uint32_t superseded = hold->cost - removed;
    if (superseded > 0)
        window_record_release(
            w, hold->state->params.limit,
            (struct window_release){hold->time_us, 0, hold->base_first_us, hold->base_us, 1});
    uint32_t back = hold->displaced > superseded ? hold->displaced - superseded : 0;
    if (hold->base_us < w->reset_us)
        back = 0; /* what it displaced was reset */
    struct window_ranges rs;
    window_ranges_of(w, hold->base_first_us, hold->base_us, &rs);
    for (uint32_t i = 0; i < w->pending_count && back > 0 && w->count < w->cap; i++) {
        uint64_t p = w->pending[i];
        if (window_in_ranges(&rs, p) && window_count_of(w, p) < window_pending_count_of(w, p)) {
            window_insert(w, p);
            back--;
        }
    }
    uint64_t at = window_actual_release(w, &rs);
    if (at < hold->base_us)
        at = hold->base_us;
    for (; back > 0 && w->count < w->cap; back--)
        window_insert(w, at);
}

uint64_t limiter_hold_ready(struct limiter_hold *hold, uint64_t now_us)
{
    pthread_mutex_lock(&hold->stripe->lock);
    if (hold->in_queue_mode) {
        uint64_t wait = limiter_queue_ready(hold, now_us);
        pthread_mutex_unlock(&hold->stripe->lock);
        return wait;
    }
    struct window_ranges rs;
    window_ranges_of(hold->window, hold->base_first_us, hold->base_us, &rs);
    if (window_pending_within(hold->window, &rs)) {
        pthread_mutex_unlock(&hold->stripe->lock); /* it follows a request still on its way */
        return LIMITER_PENDING_RECHECK_US;
    }
    uint64_t actual = window_actual_release(hold->window, &rs);
    pthread_mutex_unlock(&hold->stripe->lock);
    uint64_t earliest = hold->time_us; /* timers may fire early by the loop's cached time */
    uint64_t window_us = counted_window_us(&hold->state->params);
    if (actual != 0 && actual + window_us > earliest)
        earliest = actual + window_us;
    return earliest > now_us ? earliest - now_us : 0;
}

void limiter_hold_done(struct limiter_hold *hold, uint64_t now_us)
{
    if (hold == NULL)
        return;
    if (hold->depart_later || hold->in_queue_mode) { /* went and departed at once */
        struct limiter_stamp stamp;
        limiter_hold_go(hold, &stamp, NULL);
        limiter_depart(&stamp, now_us, NULL);
        return;
    }
    pthread_mutex_lock(&hold->stripe->lock);
    window_record_release(hold->window, hold->state->params.limit,
                          (struct window_release){hold->time_us, now_us, 0, 0, 0});
    hold->window->queued--;
    pthread_mutex_unlock(&hold->stripe->lock);
    atomic_fetch_sub(&hold->state->queued, 1);
    free(hold);
}

void limiter_hold_go(struct limiter_hold *hold, struct limiter_stamp *stamp,
                     struct limiter_flight *flight)
{
    struct rule_state *st = hold->state;
    *stamp = (struct limiter_stamp){st, hold->stripe, hold->window, hold->time_us, hold->cost};
    struct limiter_flight taken = {NULL, NULL, NULL};
    if (hold->granted && st->params.max_concurrent > 0)
        taken = (struct limiter_flight){st, hold->stripe, hold->window};
    int counted = hold->in_queue_mode; /* a queued hold holds a reference to its rule's state */
    pthread_mutex_lock(&hold->stripe->lock);
    hold->window->queued--;  /* its entry stays pending until the stamp departs */
    int keep = hold->posted; /* its wake-up is on the way: on_posted frees it */
    hold->abandoned = keep;
    pthread_mutex_unlock(&hold->stripe->lock);
    atomic_fetch_sub(&st->queued, 1);
    if (!keep)
        free(hold);
    if (flight != NULL)
        *flight = taken;
    else
        limiter_flight_end(&taken, 0);
    if (counted && !keep)
        limiter_state_unref(st);
}

void limiter_flight_end(struct limiter_flight *flight, uint64_t now_us)
{
    struct window *w = flight->window;
    if (w == NULL)
        return;
    struct stripe *s = flight->stripe;
    pthread_mutex_lock(&s->lock);
    if (w->kq->inflight > 0)
        w->kq->inflight--;
    limiter_queue_pump(flight->state, w, now_us);
    pthread_mutex_unlock(&s->lock);
    flight->window = NULL;
}

uint64_t limiter_depart(struct limiter_stamp *stamp, uint64_t now_us, struct limiter_stamp *answer)
{
    struct window *w = stamp->window;
    if (w == NULL)
        return 0;
    struct stripe *s = stamp->stripe;
    struct rule_state *st = stamp->state;
    uint64_t seq = 0;
    pthread_mutex_lock(&s->lock);
    uint32_t units = 0;
    while (units < stamp->cost && window_pending_remove(w, stamp->time_us))
        units++;
    if (units > 0) {
        seq = ++w->departures;
        if (answer != NULL && st->params.upstream_limits == RATE_UPSTREAM_FOLLOW &&
            window_unanswered_add(w, seq) == 0) { /* pins the window until answered */
            *answer = (struct limiter_stamp){st, s, w, seq, 0};
        }
        int displaced = 0;
        for (uint32_t i = 0; i < units && now_us > stamp->time_us; i++) {
            if (window_remove(w, stamp->time_us))
                window_insert(w, now_us);
            else /* displaced by a held request's reservation: that request waits for this one */
                displaced = 1;
        }
        if (displaced)
            window_record_release(w, st->params.limit,
                                  (struct window_release){stamp->time_us, now_us, 0, 0, 0});
    }
    pthread_mutex_unlock(&s->lock);
    stamp->window = NULL;
    return seq;
}

void limiter_abandon(struct limiter_stamp *stamp)
{
    if (stamp->window == NULL)
        return;
    struct stripe *s = stamp->stripe;
    pthread_mutex_lock(&s->lock);
    for (uint32_t i = 0; i < stamp->cost; i++)
        window_pending_remove(stamp->window, stamp->time_us);
    pthread_mutex_unlock(&s->lock);
    stamp->window = NULL;
}

void limiter_hold_cancel(struct limiter_hold *hold)
{
    if (hold == NULL)
        return;
    if (hold->in_queue_mode) {
        limiter_queue_cancel(hold);
        return;
    }
    pthread_mutex_lock(&hold->stripe->lock);
    for (uint32_t i = 0; hold->depart_later && i < hold->cost; i++)
        window_pending_remove(hold->window, hold->time_us);
    cancel_reservation(hold->window, hold);
    hold->window->queued--;
    pthread_mutex_unlock(&hold->stripe->lock);
    atomic_fetch_sub(&hold->state->queued, 1);
    free(hold);
}

size_t limiter_expire(struct limiter *l, uint64_t now_us)
{
    size_t left = 0;
    for (size_t i = 0; i < l->rule_count; i++) {
        struct rule_state *st = l->states[i];
        for (size_t j = 0; j < STRIPES; j++) {
            pthread_mutex_lock(&st->stripes[j].lock);
            left += stripe_expire(st, &st->stripes[j], now_us);
            pthread_mutex_unlock(&st->stripes[j].lock);
        }
    }
    return left;
}
