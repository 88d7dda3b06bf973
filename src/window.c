/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* window.c — see window.h.
 *
 * Each key's window is a ring of at most `limit` timestamps kept in ascending order; the ring
 * starts at 4 slots and doubles up to `limit`, so keys that send little cost little. Entries are
 * a multiset of times: two requests admitted in the same microsecond are interchangeable, so a
 * stamp names a time, not a slot. */
#include "window.h"

#include <stdlib.h>
#include <string.h>

int window_grow(struct window *w, uint32_t limit)
{
    uint32_t cap = w->cap ? w->cap * 2 : 4;
    if (cap > limit)
        cap = limit;
    uint64_t *times = malloc((size_t)cap * sizeof *times);
    if (times == NULL)
        return -1;
    for (uint32_t i = 0; i < w->count; i++)
        times[i] = window_at(w, i);
    free(w->times);
    w->times = times;
    w->head = 0;
    w->cap = cap;
    return 0;
}

/* Room for `need` entries (at most limit); 0, or -1 when out of memory. */
int window_reserve(struct window *w, uint32_t need, uint32_t limit)
{
    if (need > limit)
        need = limit;
    while (w->cap < need)
        if (window_grow(w, limit) != 0)
            return -1;
    return 0;
}

/* Inserts t keeping the order; the common case (t >= newest) is an append. */
void window_insert(struct window *w, uint64_t t)
{
    uint32_t i = w->count;
    while (i > 0 && window_at(w, i - 1) > t) {
        w->times[(w->head + i) % w->cap] = window_at(w, i - 1);
        i--;
    }
    w->times[(w->head + i) % w->cap] = t;
    w->count++;
}

void window_pop_oldest(struct window *w)
{
    w->head = (w->head + 1) % w->cap;
    w->count--;
}

/* The position of the first entry >= t (count when none). */
static uint32_t ring_lower_bound(const struct window *w, uint64_t t)
{
    uint32_t first = 0, last = w->count;
    while (first < last) {
        uint32_t mid = first + (last - first) / 2;
        if (window_at(w, mid) < t)
            first = mid + 1;
        else
            last = mid;
    }
    return first;
}

/* Takes one entry t out; 0 when there is none. Entries are a multiset of times: two requests
 * admitted in the same microsecond are interchangeable, so a stamp names a time, not a slot. */
int window_remove(struct window *w, uint64_t t)
{
    uint32_t i = ring_lower_bound(w, t);
    if (i == w->count || window_at(w, i) != t)
        return 0;
    /* The shorter side moves, without a division per step. A departing request's admission
     * stamp sits near the oldest end when many are in flight (the pending entries hold the ring's
     * head), near the newest when few are: with 1,000 in flight, moving the newer side cost 3% of
     * the proxy's CPU. */
    if (i < w->count - 1 - i) {
        uint32_t to = (w->head + i) % w->cap;
        while (i-- > 0) {
            uint32_t from = to == 0 ? w->cap - 1 : to - 1;
            w->times[to] = w->times[from];
            to = from;
        }
        w->head = w->head + 1 == w->cap ? 0 : w->head + 1;
    } else {
        uint32_t to = (w->head + i) % w->cap;
        for (; i + 1 < w->count; i++) {
            uint32_t from = to + 1 == w->cap ? 0 : to + 1;
            w->times[to] = w->times[from];
            to = from;
        }
    }
    w->count--;
    return 1;
}

/* Room for one more in a growing array of uint64_t; 0, or -1 when out of memory. */
static int grow_u64(uint64_t **items, uint32_t *cap, uint32_t count)
{
    if (count < *cap)
        return 0;
    uint32_t more = *cap ? *cap * 2 : 4;
    uint64_t *grown = realloc(*items, (size_t)more * sizeof *grown);
    if (grown == NULL)
        return -1;
    *items = grown;
    *cap = more;
    return 0;
}

/* The pending entries are kept in ascending order (they are added in admission order, so an add
 * is an append): a departure finds its entry by binary search among up to max_inflight. */
static uint32_t pending_lower_bound(const struct window *w, uint64_t t)
{
    uint32_t first = 0, last = w->pending_count;
    while (first < last) {
        uint32_t mid = first + (last - first) / 2;
        if (w->pending[mid] < t)
            first = mid + 1;
        else
            last = mid;
    }
    return first;
}

int window_pending_index(const struct window *w, uint64_t t)
{
    uint32_t i = pending_lower_bound(w, t);
    return i < w->pending_count && w->pending[i] == t ? (int)i : -1;
}

static int pending_add(struct window *w, uint64_t t)
{
    if (grow_u64(&w->pending, &w->pending_cap, w->pending_count) != 0)
        return -1;
    uint32_t i = w->pending_count++;
    for (; i > 0 && w->pending[i - 1] > t; i--)
        w->pending[i] = w->pending[i - 1];
    w->pending[i] = t;
    return 0;
}

/* 1 when t was pending (and is not any more). */
int window_pending_remove(struct window *w, uint64_t t)
{
    int i = window_pending_index(w, t);
    if (i < 0)
        return 0;
    w->pending_count--;
    memmove(&w->pending[i], &w->pending[i + 1], (w->pending_count - (uint32_t)i) * sizeof *w->pending);
    return 1;
}

/* Takes `cost` pending entries at t; 0, or -1 (none taken) when out of memory. */
int window_pending_add_units(struct window *w, uint64_t t, uint32_t cost)
{
    for (uint32_t i = 0; i < cost; i++)
        if (pending_add(w, t) != 0) {
            while (i-- > 0)
                window_pending_remove(w, t);
            return -1;
        }
    return 0;
}

int window_unanswered_add(struct window *w, uint64_t seq)
{
    if (grow_u64(&w->unanswered, &w->unanswered_cap, w->unanswered_count) != 0)
        return -1;
    w->unanswered[w->unanswered_count++] = seq;
    return 0;
}

/* Entries that still count at `now` (newer than now - window), and when the oldest of them
 * stops counting. */
uint32_t window_used(const struct window *w, uint64_t now, uint64_t window_us, uint64_t *reset_us)
{
    /* the ring is sorted: binary search, since a key far under its limit keeps many old entries */
    uint32_t first = 0, last = w->count;
    while (first < last) {
        uint32_t mid = first + (last - first) / 2;
        if (window_at(w, mid) + window_us <= now)
            first = mid + 1;
        else
            last = mid;
    }
    *reset_us = first < w->count ? window_at(w, first) + window_us - now : 0;
    return w->count - first;
}

/* Entries that no longer count leave, so the ring holds only the current window: without this a
 * key below its limit keeps up to `limit` stale entries, and window_used() walks all of them on
 * every request. A pending entry stays: its request has not reached the origin yet, so it counts
 * from its departure, which is later than now. */
void window_drop_stale(struct window *w, uint64_t now, uint64_t window_us)
{
    while (w->count > 0 && window_at(w, 0) + window_us <= now &&
           (w->pending_count == 0 || window_pending_index(w, window_at(w, 0)) < 0))
        window_pop_oldest(w);
}

void window_ranges_of(const struct window *w, uint64_t first, uint64_t last,
                      struct window_ranges *out)
{
    out->count = 0;
    out->first[out->count] = first;
    out->last[out->count++] = last;
    for (uint32_t k = 0; k < out->count; k++)
        for (uint32_t i = 0; i < w->releases_count && out->count < WINDOW_RANGES_MAX; i++) {
            const struct window_release *r = &w->releases[(w->releases_head + i) % w->releases_cap];
            if (r->linked && r->scheduled >= out->first[k] && r->scheduled <= out->last[k]) {
                out->first[out->count] = r->linked_first;
                out->last[out->count++] = r->linked_last;
            }
        }
}

int window_in_ranges(const struct window_ranges *rs, uint64_t t)
{
    for (uint32_t k = 0; k < rs->count; k++)
        if (t >= rs->first[k] && t <= rs->last[k])
            return 1;
    return 0;
}

/* With the stripe locked: when the requests scheduled within the ranges actually went, the latest
 * (0 if they went on time or are not known). */
uint64_t window_actual_release(const struct window *w, const struct window_ranges *rs)
{
    uint64_t actual = 0;
    for (uint32_t i = 0; i < w->releases_count; i++) {
        const struct window_release *r = &w->releases[(w->releases_head + i) % w->releases_cap];
        if (!r->linked && window_in_ranges(rs, r->scheduled) && r->actual > actual)
            actual = r->actual;
    }
    return actual;
}

/* With the stripe locked: 1 when an entry within the ranges has not departed. */
int window_pending_within(const struct window *w, const struct window_ranges *rs)
{
    for (uint32_t i = 0; i < w->pending_count; i++)
        if (window_in_ranges(rs, w->pending[i]))
            return 1;
    return 0;
}

/* Entries equal to t in the ring. */
uint32_t window_count_of(const struct window *w, uint64_t t)
{
    uint32_t n = 0;
    for (uint32_t i = ring_lower_bound(w, t); i < w->count && window_at(w, i) == t; i++)
        n++;
    return n;
}

uint32_t window_pending_count_of(const struct window *w, uint64_t t)
{
    uint32_t n = 0;
    for (uint32_t i = pending_lower_bound(w, t); i < w->pending_count && w->pending[i] == t; i++)
        n++;
    return n;
}

/* Late releases only: on-time ones change nothing. The log keeps the last 2 x limit + 64 of them
 * and of the links of cancelled reservations (one each per request, whatever its cost): the holds
 * still waiting were computed from at most `limit` entries of the window. */
void window_record_release(struct window *w, uint32_t limit, struct window_release release)
{
    if (release.actual <= release.scheduled && !release.linked)
        return;
    if (w->releases == NULL) {
        w->releases_cap = limit < 4096 ? 2 * limit + 64 : 8256;
        w->releases = calloc(w->releases_cap, sizeof *w->releases);
        if (w->releases == NULL)
            return;
    }
    uint32_t slot = (w->releases_head + w->releases_count) % w->releases_cap;
    if (w->releases_count == w->releases_cap)
        w->releases_head = (w->releases_head + 1) % w->releases_cap;
    else
        w->releases_count++;
    w->releases[slot] = release;
}
