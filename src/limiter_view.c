/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* limiter_view.c — see limiter_view.h. */
#include "limiter_view.h"

#include <stdlib.h>
#include <string.h>

#include "limiter_key.h"
#include "limiter_state.h"
#include "window.h"

_Static_assert(KEY_MAX <= LIMITER_KEY_TEXT_MAX,
               "limiter_view.h promises keys fit LIMITER_KEY_TEXT_MAX");

/* With the stripe locked: the window of `key`, or NULL; never creates one. */
static struct window *find_window(struct stripe *s, uint64_t hash, const char *key, size_t len)
{
    if (s->bucket_count == 0)
        return NULL;
    for (struct window *w = s->buckets[(hash / STRIPES) % s->bucket_count]; w; w = w->next)
        if (w->hash == hash && w->key_len == len && memcmp(w->key, key, len) == 0)
            return w;
    return NULL;
}

/* Calls visit for every window of one rule, one stripe locked at a time. */
static void rule_visit(struct rule_state *st,
                       void (*visit)(struct rule_state *, struct window *, void *), void *arg)
{
    for (size_t i = 0; i < STRIPES; i++) {
        struct stripe *s = &st->stripes[i];
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < s->bucket_count; b++)
            for (struct window *w = s->buckets[b]; w != NULL; w = w->next)
                visit(st, w, arg);
        pthread_mutex_unlock(&s->lock);
    }
}

struct view_visit {
    uint64_t now_us;
    limiter_window_fn fn;
    void *arg;
};

/* 1 when the lowest remaining said for the origin's current window is below what the key learned
 * from its latest departure: the origin's latest count, shown and saved as what is left. */
static int lowest_holds(const struct learned *k, uint64_t now_us)
{
    return k->lowest_reset_us > now_us && k->lowest_remaining >= 0 &&
           (k->remaining < 0 || k->lowest_remaining < k->remaining);
}

static void view_one(struct rule_state *st, struct window *w, void *arg)
{
    struct view_visit *v = arg;
    struct limiter_window_view view = {
        .key = w->key, .key_len = w->key_len, .limit = st->params.limit, .held = w->queued};
    view.used = window_used(w, v->now_us, counted_window_us(&st->params), &view.reset_us);
    /* admitted and not departed, or departed and not answered (rules that follow their origin) */
    view.in_flight =
        w->pending_count - (w->pending_count >= w->queued ? w->queued : 0) + w->unanswered_count;
    const struct learned *k = &w->learned;
    view.origin_limit = k->limit > 0 ? (int64_t)k->limit : -1;
    view.origin_remaining = k->remaining;
    view.origin_reset_us = k->reset_us > v->now_us ? k->reset_us - v->now_us : 0;
    if (lowest_holds(k, v->now_us)) { /* answers came back out of the origin's counting order */
        view.origin_remaining = k->lowest_remaining;
        view.origin_reset_us = k->lowest_reset_us - v->now_us;
    }
    view.paused_us = k->paused_until_us > v->now_us ? k->paused_until_us - v->now_us : 0;
    if (view.used > 0 || view.held > 0 || view.in_flight > 0 || view.paused_us > 0 ||
        view.origin_reset_us > 0)
        v->fn(&view, v->arg);
}

void limiter_foreach_window(struct limiter *l, size_t rule_index, uint64_t now_us,
                            limiter_window_fn fn, void *arg)
{
    if (rule_index >= l->rule_count)
        return;
    struct view_visit v = {now_us, fn, arg};
    rule_visit(l->states[rule_index], view_one, &v);
}

struct export_visit {
    uint64_t now_us;
    limiter_entries_fn fn;
    void *arg;
    uint64_t *times; /* scratch of `limit` entries */
};

static void export_one(struct rule_state *st, struct window *w, void *arg)
{
    struct export_visit *v = arg;
    uint64_t window_us = counted_window_us(&st->params);
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->count; i++) {
        uint64_t t = window_at(w, i);
        if (t + window_us > v->now_us && t <= v->now_us)
            v->times[n++] = t;
    }
    if (n > 0)
        v->fn(w->key, w->key_len, v->times, n, v->arg);
}

void limiter_export_windows(struct limiter *l, size_t rule_index, uint64_t now_us,
                            limiter_entries_fn fn, void *arg)
{
    if (rule_index >= l->rule_count)
        return;
    struct rule_state *st = l->states[rule_index];
    struct export_visit v = {now_us, fn, arg, malloc((size_t)st->params.limit * sizeof(uint64_t))};
    if (v.times == NULL)
        return;
    rule_visit(st, export_one, &v);
    free(v.times);
}

static int compare_times(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int limiter_restore_window(struct limiter *l, size_t rule_index, const char *key, size_t key_len,
                           const uint64_t *times_us, uint32_t count, uint64_t now_us)
{
    if (rule_index >= l->rule_count || key_len >= KEY_MAX)
        return -1;
    struct rule_state *st = l->states[rule_index];
    uint64_t window_us = st->params.window_ms * 1000;
    uint64_t *kept = malloc(((size_t)count + 1) * sizeof *kept);
    if (kept == NULL)
        return -1;
    uint32_t n = 0;
    for (uint32_t i = 0; i < count; i++)
        if (times_us[i] <= now_us && times_us[i] + window_us > now_us)
            kept[n++] = times_us[i];
    qsort(kept, n, sizeof *kept, compare_times);
    uint64_t hash = limiter_key_hash(key, key_len);
    struct stripe *s = &st->stripes[hash % STRIPES];
    pthread_mutex_lock(&s->lock);
    struct window *w = n > 0 ? limiter_window_get(st, s, hash, key, key_len, l->max_keys) : NULL;
    int rc = n > 0 && w == NULL ? -1 : 0;
    uint32_t before = w != NULL ? w->count : 0;
    for (uint32_t i = 0; w != NULL && i < n; i++) {
        while (w->count > 0 && window_at(w, 0) + window_us <= now_us)
            window_pop_oldest(w);
        if (w->count == st->params.limit)
            window_pop_oldest(w); /* the newest `limit` entries are the ones that matter */
        if (w->count == w->cap && window_grow(w, st->params.limit) != 0) {
            rc = -1;
            break;
        }
        window_insert(w, kept[i]);
        rc = w->count > before ? (int)(w->count - before) : 0;
    }
    pthread_mutex_unlock(&s->lock);
    free(kept);
    return rc;
}

struct learned_visit {
    uint64_t now_us;
    limiter_learned_fn fn;
    void *arg;
};

static void export_learned_one(struct rule_state *st, struct window *w, void *arg)
{
    (void)st;
    struct learned_visit *v = arg;
    const struct learned *k = &w->learned;
    if (k->reset_us <= v->now_us && k->paused_until_us <= v->now_us)
        return; /* said nothing that still holds */
    struct limiter_learned_view view = {k->remaining, k->reset_us, k->limit, k->period_us,
                                        k->paused_until_us};
    /* departures since the answered request count against it here; after a restart there is
     * no departure sequence to count them from */
    uint64_t since = w->departures > k->seq ? w->departures - k->seq : 0;
    if (view.remaining > 0)
        view.remaining = since < (uint64_t)view.remaining ? view.remaining - (int64_t)since : 0;
    if (lowest_holds(k, v->now_us) && k->lowest_remaining < view.remaining)
        view.remaining = k->lowest_remaining;
    v->fn(w->key, w->key_len, &view, v->arg);
}

void limiter_export_learned(struct limiter *l, size_t rule_index, uint64_t now_us,
                            limiter_learned_fn fn, void *arg)
{
    if (rule_index >= l->rule_count)
        return;
    struct learned_visit v = {now_us, fn, arg};
    rule_visit(l->states[rule_index], export_learned_one, &v);
}

int limiter_restore_learned(struct limiter *l, size_t rule_index, const char *key, size_t key_len,
                            const struct limiter_learned_view *learned)
{
    if (rule_index >= l->rule_count || key_len >= KEY_MAX)
        return -1;
    struct rule_state *st = l->states[rule_index];
    uint64_t hash = limiter_key_hash(key, key_len);
    struct stripe *s = &st->stripes[hash % STRIPES];
    pthread_mutex_lock(&s->lock);
    struct window *w = limiter_window_get(st, s, hash, key, key_len, l->max_keys);
    if (w != NULL) {
        struct learned *k = &w->learned;
        k->remaining = learned->remaining;
        k->seq = w->departures; /* remaining is as of now: only later departures count */
        k->reset_us = k->last_reset_us = learned->reset_us;
        k->limit = learned->limit;
        k->period_us = learned->period_us;
        k->paused_until_us = learned->paused_until_us;
    }
    pthread_mutex_unlock(&s->lock);
    return w != NULL ? 0 : -1;
}

int limiter_reset_window(struct limiter *l, size_t rule_index, const char *key, size_t key_len,
                         uint64_t now_us)
{
    if (rule_index >= l->rule_count || key_len >= KEY_MAX)
        return -1;
    struct rule_state *st = l->states[rule_index];
    uint64_t hash = limiter_key_hash(key, key_len);
    struct stripe *s = &st->stripes[hash % STRIPES];
    pthread_mutex_lock(&s->lock);
    struct window *w = find_window(s, hash, key, key_len);
    if (w != NULL) {
        /* the ring is sorted: the reservations of held requests are its suffix after now, and
         * they stay, since those requests will still go. A held request cancelled later gives
         * back nothing it displaced before now (reset_us), which is what an emptied window wants.
         */
        uint32_t past = 0;
        while (past < w->count && window_at(w, past) <= now_us)
            past++;
        w->head = w->cap > 0 ? (w->head + past) % w->cap : 0;
        w->count -= past;
        w->reset_us = now_us;
        w->releases_count = 0;
    }
    pthread_mutex_unlock(&s->lock);
    return w != NULL ? 0 : -1;
}

size_t limiter_rule_count(const struct limiter *l) { return l->rule_count; }

const struct rate_rule *limiter_rule(const struct limiter *l, size_t index)
{
    return &l->rules[index];
}

void limiter_rule_stats(struct limiter *l, size_t index, struct limiter_rule_stats *out)
{
    struct rule_state *st = l->states[index];
    out->admitted = atomic_load(&st->admitted);
    out->delayed = atomic_load(&st->delayed);
    out->rejected = atomic_load(&st->rejected);
    out->would_delay = atomic_load(&st->would_delay);
    out->would_reject = atomic_load(&st->would_reject);
    out->queued = atomic_load(&st->queued);
    out->keys = atomic_load(&st->keys);
}

void limiter_count_would(struct limiter *l, size_t index, int would_delay)
{
    struct rule_state *st = l->states[index];
    atomic_fetch_add(would_delay ? &st->would_delay : &st->would_reject, 1);
}

struct paused_visit {
    uint64_t now_us;
    size_t count;
};

static void count_paused_one(struct rule_state *st, struct window *w, void *arg)
{
    struct paused_visit *v = arg;
    const char *why;
    v->count += limiter_learned_until(&st->params, w, v->now_us, &why) > v->now_us;
}

size_t limiter_paused_keys(struct limiter *l, size_t rule_index, uint64_t now_us)
{
    struct paused_visit v = {now_us, 0};
    rule_visit(l->states[rule_index], count_paused_one, &v);
    return v.count;
}
